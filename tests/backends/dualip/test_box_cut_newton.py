"""The iteration's box-cut projection (fast_projection.box_cut_project) against the brute-force oracle, and a solve.

x = clip(v - tau, l, u) with tau from safeguarded Newton steps on s(tau) = sum clip(v - tau, l, u) = r: from a
cold start enough steps (at most one per breakpoint, 2 m + 1) give the oracle's projection on every block kind,
with ties, infinite bounds, fixed columns, empty and single-column blocks, in float64 and float32 and in the
three block layouts (membership mat-vecs, segment reductions, per-size row reductions); from a warm start one step
is exact once the free set has settled; and a solve of a delivery-like model through it meets HiGHS's optimum.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_projections import TOL, _scale, as_dtype, check_feasible, make_sf, oracle_project, random_blocks

import dualip_model as dm
from dualip_model.backends.dualip import block_order
from dualip_model.backends.dualip.fast_projection import box_cut_project
from dualip_model.backends.dualip.options import DualipOptions
from dualip_model.backends.dualip.problem import Blocks, ScaledProblem
from dualip_model.backends.dualip.projections import BlockStructure, project
from dualip_model.backends.dualip.solver import DualAscentSolver
from dualip_model.polytopes import BlockKind

CPU = torch.device("cpu")
LAYOUTS = ["given", "compact", "by size"]
BLE, BEQ = BlockKind.BOXCUT_LE, BlockKind.BOXCUT_EQ


def laid_out(blocks, v, layout):
    """(blocks, v) in the layout's block order: "by size" sorts the blocks by their number of columns."""
    if layout != "by size":
        return blocks, v
    ends = np.cumsum([len(b[1]) for b in blocks])
    parts = np.split(np.asarray(v, dtype=np.float64), ends[:-1]) if blocks else []
    order = np.argsort([len(b[1]) for b in blocks], kind="stable")
    return [blocks[i] for i in order], np.concatenate([parts[i] for i in order]) if blocks else v


def build_blocks(sf, dtype, layout):
    """Blocks of ``sf``: "given" (membership mat-vecs), "compact" (segment reductions), "by size" (one row reduction
    per size: sf's blocks must be sorted by size)."""
    if layout != "by size":
        return Blocks.build(sf, CPU, dtype, compact=layout == "compact")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(block_order, "MIN_GROUP_COLUMNS", 0)
        B = Blocks.build(sf, CPU, dtype, compact=False)
    assert B.groups is not None
    return B


def assert_projects_like_oracle(blocks, v, dtype, layout, steps=None, tau0=None):
    """box_cut_project from tau0 (default 0) with ``steps`` (default 2 m + 3 for the largest block) equals the
    oracle; returns (x, tau, Blocks, v as a tensor, the blocks), all in the layout's block order."""
    blocks, v = as_dtype(*laid_out(blocks, v, layout), dtype)
    sf = make_sf(blocks)
    B = build_blocks(sf, dtype, layout)
    steps = steps if steps is not None else 2 * int(np.diff(sf.block_ptr).max(initial=0)) + 3
    tau0 = torch.zeros(sf.n_blocks, dtype=dtype) if tau0 is None else tau0
    vt = torch.as_tensor(v, dtype=dtype)
    x, tau = box_cut_project(vt.clone(), tau0, B, steps)
    assert x.dtype == dtype and tau.dtype == dtype and tau.shape == (sf.n_blocks,)
    ref = oracle_project(blocks, v)
    tol = TOL[dtype] * _scale(blocks, v) * 10
    np.testing.assert_allclose(x.double().numpy(), ref, rtol=0, atol=tol)
    check_feasible(blocks, x.double().numpy(), tol)
    kinds = sf.block_kind
    assert torch.all(tau[torch.as_tensor(kinds == BlockKind.BOX)] == 0)
    assert torch.all(tau[torch.as_tensor(np.isin(kinds, (BlockKind.SIMPLEX_LE, BLE)))] >= 0)
    return x, tau, B, vt, blocks


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(4))
def test_cold_start_equals_oracle_on_every_kind(seed, dtype, layout):
    rng = np.random.default_rng(seed)
    for ties, infinite in [(True, True), (False, True), (True, False), (False, False)]:
        blocks = random_blocks(rng, 80, ties=ties, infinite=infinite)
        n = sum(len(b[1]) for b in blocks)
        v = rng.normal(scale=rng.choice([0.5, 2.0, 6.0]), size=n) + rng.normal()
        assert_projects_like_oracle(blocks, v, dtype, layout)


@pytest.mark.parametrize("kind", [BLE, BEQ], ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cold_start_box_cut_blocks_with_ties_and_degenerate_ones(kind, dtype):
    """Only box-cut blocks: many equal breakpoints, fixed columns (l = u), r at sum l or at sum u."""
    rng = np.random.default_rng(30 + int(kind))
    blocks = random_blocks(rng, 150, kinds=[kind], ties=True, infinite=False)
    blocks += [(kind, [0.0, 0.5, 1.0], [0.0, 0.5, 2.0], 1.5),  # fixed columns
               (kind, [0.0, 0.0], [0.5, 0.5], 1.0),  # r = sum u
               (kind, [0.5, 0.5], [1.0, 1.0], 1.0),  # r = sum l
               (kind, [], [], 0.0), (kind, [-1.0], [1.0], 0.25)]
    n = sum(len(b[1]) for b in blocks)
    v = rng.integers(-6, 7, size=n) / 4.0  # ties among the values and with the bounds
    for layout in LAYOUTS:
        assert_projects_like_oracle(blocks, v, dtype, layout)


def test_blocks_whose_sum_does_not_bind_keep_tau_at_zero():
    """LE blocks with s(0) <= r: tau = 0 and x = clip(v, l, u); from the warm start 0 in one step."""
    blocks = [(BLE, [0.0, 0.0, 0.0], [0.5, 0.5, 0.5], 2.0),  # sum u < r: never binds
              (BLE, [0.0, 0.0], [0.5, 0.5], 1.0),  # s(0) = 0.3 < r
              (BLE, [-1.0, 0.0], [1.0, 1.0], 0.5)]  # s(0) = 0.5 = r
    v = np.array([3.0, -1.0, 0.2, 0.1, 0.2, -0.5, 1.0])
    for tau0, steps in [(0.0, 1), (5.0, 2 * 3 + 3), (100.0, 2 * 3 + 3)]:
        x, tau, _, _, _ = assert_projects_like_oracle(blocks, v, torch.float64, "given", steps=steps,
                                                      tau0=torch.full((3,), tau0, dtype=torch.float64))
        assert torch.all(tau == 0)


def test_a_flat_piece_is_left_in_one_step():
    """A warm start on a flat piece of s (every column at a bound, far from the root) reaches the root in 3 steps.

    From a block of a delivery model that stalled a bracketing Newton/secant method: one column far above the others,
    tau far right of the root, s = 0.5 < r = 1 on the whole piece between the breakpoints 23.63 and 233.26.
    Steps: onto 23.63, past the breakpoint 23.38 to 23.13 (s = 1.25 > r), back to the root 23.25.
    """
    v = np.array([6.407037300382, 20.486206570923, 23.380624571951, 23.627061202785, 233.755942608530,
                  9.952393420901])
    blocks = [(BLE, [0.0] * 6, [0.5] * 6, 1.0)]
    x, tau, _, _, _ = assert_projects_like_oracle(blocks, v, torch.float64, "given", steps=3,
                                                  tau0=torch.tensor([56.127573792270], dtype=torch.float64))
    np.testing.assert_allclose(x.numpy()[2:5], [0.126781684583, 0.373218315417, 0.5], atol=1e-10)


def test_a_step_onto_a_breakpoint_is_not_followed_by_steps_of_rounding_size():
    """Jumps onto breakpoints whose column then computes as just outside its bound (rounding) still converge."""
    blocks = [(BLE, [-np.inf], [0.2109375], 0.1875),
              (BLE, [-3.52636719, -3.90625e-03, -2.93847656, -5.86914062, -9.9609375e-01, -2.23632812e-01],
               [-2.52636719, 0.49609375, -1.93847656, -3.36914062, -0.49609375, 0.77636719], -10.4248046875)]
    v = np.array([6.26675545, 1.8582132396, -2.0122652002, 4.4015597117, 5.3213770795, 0.4401384508, 0.6540286433])
    for layout in LAYOUTS:
        assert_projects_like_oracle(blocks, v, torch.float64, layout, steps=2 * 6 + 3)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(4))
def test_warm_start_is_exact_in_one_step_once_the_free_set_settles(seed, layout):
    rng = np.random.default_rng(40 + seed)
    blocks = random_blocks(rng, 100, kinds=[BLE, BEQ, BlockKind.SIMPLEX_LE, BlockKind.BOX], ties=False,
                           infinite=seed % 2 == 0)
    n = sum(len(b[1]) for b in blocks)
    v0 = rng.normal(scale=2.0, size=n)
    _, tau, B, v_laid, laid_blocks = assert_projects_like_oracle(blocks, v0, torch.float64, layout)
    for _ in range(3):
        v1 = v_laid + torch.as_tensor(rng.normal(size=n) * 1e-9, dtype=torch.float64)
        x, _ = box_cut_project(v1.clone(), tau, B, 1)
        np.testing.assert_allclose(x.numpy(), oracle_project(laid_blocks, v1.numpy()), rtol=0, atol=1e-10)


def test_overwrite_returns_x_in_v_memory():
    rng = np.random.default_rng(5)
    blocks = random_blocks(rng, 20, kinds=[BLE, BEQ], infinite=False)
    sf = make_sf(blocks)
    B = Blocks.build(sf, CPU, torch.float64, compact=False)
    v = torch.as_tensor(rng.normal(size=sf.n_cols))
    expected, _ = box_cut_project(v.clone(), torch.zeros(sf.n_blocks, dtype=torch.float64), B, 20)
    x, _ = box_cut_project(v, torch.zeros(sf.n_blocks, dtype=torch.float64), B, 20, overwrite=True)
    assert x.data_ptr() == v.data_ptr()
    torch.testing.assert_close(x, expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------- the solver


def delivery(n_users=300, n_camps=12, seed=0, lower=0.0, sense="max"):
    """0 <= x <= 0.5 per edge (lower > 0: x >= lower), per-user sum <= 1, per-campaign floor and cap rows."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), rng.integers(1, 8, n_users))
    camp = rng.integers(0, n_camps, user.shape[0])
    keys = np.unique(user * n_camps + camp)
    user, camp = keys // n_camps, keys % n_camps
    reach = np.bincount(camp, minlength=n_camps) * 0.5
    m = dm.Model("delivery")
    users, camps = m.entities("user", n_users), m.entities("campaign", n_camps)
    edges = m.edges("eligible", users, camps, src=user, dst=camp)
    x = m.variable("x", over=edges, lower=lower, upper=0.5)
    value = rng.lognormal(0.0, 1.0, size=keys.shape[0])
    (m.maximize if sense == "max" else m.minimize)((value * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="per_user", block=True)
    m.subject_to(x.sum(by=camps) >= 0.2 * reach, name="floor", block=False)
    m.subject_to(x.sum(by=camps) <= 0.6 * reach, name="cap", block=False)
    return m


def test_the_iteration_projects_box_cut_blocks_by_newton_steps():
    """DualAscentSolver.primal on box-cut blocks: warm-started steps that move tau (the exact projection returned
    tau unchanged), exact after enough of them."""
    sf = delivery().compile()
    assert set(sf.block_kind) == {int(BLE)}
    prob = ScaledProblem.build(sf, CPU, torch.float64)
    assert not prob.fast_projection and bool(prob.blocks.is_le.all())
    solver = DualAscentSolver(prob, DualipOptions())
    v = torch.as_tensor(np.random.default_rng(1).normal(scale=2.0, size=sf.n_cols))
    tau0 = torch.zeros(sf.n_blocks, dtype=torch.float64)
    x, tau = solver.kernels.primal(v.clone(), tau0, 2 * 7 + 3)
    torch.testing.assert_close(x, project(v, BlockStructure.from_standard_form(sf)), rtol=0, atol=1e-12)
    assert bool((tau > 0).any())


@pytest.mark.parametrize("newton_steps", [1, 2])
def test_delivery_solve_matches_highs(newton_steps):
    m = delivery()
    ref = m.solve("highs")
    res = m.solve("dualip", newton_steps=newton_steps, tol=1e-5)
    assert res.status == dm.Status.OPTIMAL
    assert abs(res.objective - ref.objective) <= 1e-4 * abs(ref.objective)


def test_equality_box_cut_solve_with_nonzero_lower_bounds_matches_highs():
    """BOXCUT_EQ blocks (each user's edges sum to 1, 0.05 <= x <= 0.5) and a minimization."""
    m = dm.Model("assign")
    rng = np.random.default_rng(3)
    n_users, n_camps = 200, 10
    user = np.repeat(np.arange(n_users), 4)
    camp = (np.arange(user.shape[0]) * 7 + user) % n_camps
    users, camps = m.entities("user", n_users), m.entities("campaign", n_camps)
    edges = m.edges("eligible", users, camps, src=user, dst=camp)
    x = m.variable("x", over=edges, lower=0.05, upper=0.5)
    m.minimize((rng.lognormal(size=user.shape[0]) * x).sum())
    m.subject_to(x.sum(by=users) == 1.0, name="per_user", block=True)
    m.subject_to(x.sum(by=camps) <= 0.3 * n_users, name="cap", block=False)
    sf = m.compile()
    assert set(sf.block_kind) == {int(BEQ)}
    ref = m.solve("highs")
    res = m.solve("dualip", tol=1e-5)
    assert res.status == dm.Status.OPTIMAL
    assert abs(res.objective - ref.objective) <= 1e-4 * abs(ref.objective)
