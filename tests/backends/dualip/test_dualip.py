"""Tests specific to the `dualip` backend (ridge-regularized dual decomposition).

Objective parity with HiGHS on the shared models lives in tests/test_parity.py; this file checks what only
this backend promises: the fast (Newton / segment-reduction) block kernels against the exact sort-based
reference, the float64 certificates (bound, primal feasibility, Farkas ray), statuses, the convergence
history, warm starts, determinism, float32, duals, option validation, the separable path and the int32
device layout.

All solves run with one torch thread (conftest's ``one_torch_thread``): on a loaded 2-core machine
``torch.repeat_interleave`` (called 2-3 times per iteration) wakes the intra-op pool on every call and
costs ~8 ms instead of ~5 us, which makes a 500-iteration solve take 20 s instead of 0.2 s.
"""

from __future__ import annotations

import dataclasses
import math
from unittest import mock

import numpy as np
import pytest
import scipy.sparse
import torch

import dualip_model as dm
from dualip_model.backends.dualip import block_order, check_loop, fast_projection, projections
from dualip_model.backends.dualip import solver as solver_module
from dualip_model.backends.dualip.memory import held_bytes
from dualip_model.backends.dualip.operators import SparseRows
from dualip_model.backends.dualip.options import DualipOptions
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.backends.dualip.solver import DualAscentSolver
from dualip_model.polytopes import BlockKind
from dualip_model.status import relative_gap
from dualip_model.standard_form import Layout, StandardForm
from dualip_model.synthetic import matching_model, synthetic_matching
from test_parity import (assignment_short_of_capacity, assignment_with_capacity, check_optimal, mildly_infeasible_matching,
                         scaled_matching)

F64 = torch.float64
CPU = torch.device("cpu")


# ----------------------------------------------------------------------------------------------- helpers
def matching(users=200, items=20, density=0.3, seed=3):
    data = synthetic_matching(users, items, density, seed=seed)
    return data, matching_model(data)


_CACHE: dict = {}


def cached(key, fn):
    """Solves shared by several tests (module-level memo; every solve here is deterministic)."""
    if key not in _CACHE:
        _CACHE[key] = fn()
    return _CACHE[key]


def base():
    """(data, model, HiGHS result, default dualip result) on the 200 x 20 matching model."""
    def make():
        data, m = matching()
        ref = m.solve("highs")
        assert ref.status == dm.Status.OPTIMAL
        return data, m, ref, m.solve("dualip")
    return cached("base", make)


def compiled_x(res) -> np.ndarray:
    """The primal in the standard form's column order, taken from Result.primal (not raw.x)."""
    sf = res.standard_form
    x = res.primal(next(iter(res.model.variables)), labeled=False)
    return x if sf.layout.column_order is None else x[sf.layout.column_order]


def assert_primal_feasible(res, atol=1e-9, rtol=0.0):
    """Rows within atol + rtol |bound|, column bounds and block sums within atol (standard-form order)."""
    sf = res.standard_form
    x = compiled_x(res)
    ax = sf.A @ x
    up = np.where(np.isfinite(sf.row_upper), sf.row_upper, 0.0)
    lo = np.where(np.isfinite(sf.row_lower), sf.row_lower, 0.0)
    assert np.all(ax <= sf.row_upper + atol + rtol * np.abs(up)), np.max(ax - sf.row_upper)
    assert np.all(ax >= sf.row_lower - atol - rtol * np.abs(lo)), np.max(sf.row_lower - ax)
    assert np.all(x >= sf.col_lower - atol) and np.all(x <= sf.col_upper + atol)
    counts = np.diff(sf.block_ptr)
    sums = np.add.reduceat(np.append(x, 0.0), sf.block_ptr[:-1]) * (counts > 0)
    has_sum = sf.block_kind != BlockKind.BOX
    assert np.all(sums[has_sum] <= sf.block_rhs[has_sum] + atol), np.max(sums[has_sum] - sf.block_rhs[has_sum])


def bound_above_optimum(res, ref):
    """Maximization: the certified bound is an upper bound on the HiGHS optimum."""
    return res.bound >= ref.objective - 1e-9 * max(1.0, abs(ref.objective))


def make_sf(blocks, rows=None) -> StandardForm:
    """A StandardForm from (kind, lower, upper, r) blocks and optional dense coupling rows (A, lo, hi)."""
    lower, upper, kinds, rhs, ptr = [], [], [], [], [0]
    for kind, lo, hi, r in blocks:
        lower += list(lo)
        upper += list(hi)
        kinds.append(int(kind))
        rhs.append(float(r) if kind != BlockKind.BOX else 0.0)
        ptr.append(ptr[-1] + len(lo))
    n = len(lower)
    if rows is None:
        A, rlo, rhi = np.zeros((0, n)), np.zeros(0), np.zeros(0)
    else:
        A, rlo, rhi = rows
    import scipy.sparse as sp

    csc = sp.csc_matrix(A)
    csc.sort_indices()
    return StandardForm(
        name="handmade", c=np.zeros(n), offset=0.0,
        col_lower=np.asarray(lower, dtype=np.float64), col_upper=np.asarray(upper, dtype=np.float64),
        A_indptr=csc.indptr.astype(np.int32), A_indices=csc.indices.astype(np.int32),
        A_data=csc.data.astype(np.float64), row_lower=np.asarray(rlo, float), row_upper=np.asarray(rhi, float),
        block_ptr=np.asarray(ptr, dtype=np.int64), block_kind=np.asarray(kinds, dtype=np.int8),
        block_rhs=np.asarray(rhs, dtype=np.float64),
        layout=Layout(sense=1, column_order=None, variables=(), constraints=()),
    )


def random_fast_blocks(rng, n_blocks=40):
    """BOX / SIMPLEX_LE / SIMPLEX_EQ blocks of 0..7 columns; every kind gets an empty and a singleton block."""
    kinds = [BlockKind.BOX, BlockKind.SIMPLEX_LE, BlockKind.SIMPLEX_EQ]
    sizes = [0, 1] * 3 + list(rng.integers(0, 8, size=n_blocks))
    out = []
    for i, m in enumerate(sizes):
        kind = kinds[i % 3] if i < 6 else kinds[rng.integers(3)]
        m = int(m)
        if kind == BlockKind.BOX:
            lo = rng.uniform(-2, 0, m)
            out.append((kind, lo, lo + rng.uniform(0, 2, m), 0.0))
        else:
            r = 0.0 if (m == 0 and kind == BlockKind.SIMPLEX_EQ) else float(rng.choice([0.5, 1.0, 2.5]))
            out.append((kind, np.zeros(m), np.full(m, np.inf), r))
    return out


def fast_structures(seed, layout="given"):
    """(sf, Blocks of ScaledProblem.build, exact BlockStructure) for one random block layout with two coupling
    rows; ``layout="by size"``: the blocks sorted by size, reduced per size (the grouped layout, thresholds off)."""
    rng = np.random.default_rng(seed)
    blocks = random_fast_blocks(rng)
    n = sum(len(b[1]) for b in blocks)
    A = rng.uniform(0, 1, (2, n)) * (rng.random((2, n)) < 0.5)
    sf = make_sf(blocks, (A, np.full(2, -np.inf), np.ones(2)))
    with mock.patch.object(block_order, "MIN_GROUP_COLUMNS", 0):
        if layout == "by size":
            sf = block_order.BlockOrder.of(sf).sf
        prob = ScaledProblem.build(sf, CPU, F64)
    assert prob.fast_projection and (prob.blocks.groups is not None) == (layout == "by size")
    return sf, prob.blocks, projections.BlockStructure.from_standard_form(sf, CPU, F64)


def random_v(rng, n, scale):
    # a mix of scales so that some simplex blocks are entirely negative, some have sum(v+) < r, some > r
    return torch.as_tensor(rng.normal(size=n) * scale + rng.normal(), dtype=F64)


# ---------------------------------------------------------------------------------- 1. fast block kernels
LAYOUTS = ["given", "by size"]  # blocks as compiled (membership mat-vecs), or sorted by size (row reductions)


@pytest.mark.parametrize("per_column", [2, 40])
def test_norm_estimate_is_an_upper_bound_within_three_percent(per_column):
    """||A||_2^2 by power iteration, on A A^T formed once (few entries per column) or through products with A and
    A^T (many): at least the true value and at most 1.02 times it, both ways alike."""
    from dualip_model.backends.dualip import problem as problem_module

    rng = np.random.default_rng(per_column)
    m, n = 60, 500
    rows = np.concatenate([rng.choice(m, per_column, replace=False) for _ in range(n)])
    A = scipy.sparse.csr_matrix((rng.random(rows.size) + 0.1, (rows, np.repeat(np.arange(n), per_column))),
                                shape=(m, n))
    true = np.linalg.norm(A.toarray(), 2) ** 2
    gram_used = per_column * per_column <= problem_module.GRAM_FLOPS * per_column
    assert gram_used == (per_column == 2)
    estimates = [problem_module._norm_sq_upper(A, 0)]
    with mock.patch.object(problem_module, "GRAM_FLOPS", 0 if gram_used else 10 ** 6):  # the other way
        estimates.append(problem_module._norm_sq_upper(A, 0))
    for est in estimates:
        assert true * (1 - 1e-12) <= est <= 1.02 * true * (1 + 1e-12)
    np.testing.assert_allclose(estimates[0], estimates[1], rtol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(6))
def test_newton_projection_from_zero_equals_exact_projection(seed, layout):
    sf, blocks, bs = fast_structures(seed, layout)
    rng = np.random.default_rng(100 + seed)
    for scale in (0.3, 1.0, 5.0):
        v = random_v(rng, sf.n_cols, scale)
        tau0 = torch.zeros(sf.n_blocks, dtype=F64)
        x, tau = fast_projection.simplex_box_project(v, tau0, blocks, 50)
        exact = projections.project(v, bs)
        np.testing.assert_allclose(x.numpy(), exact.numpy(), rtol=0, atol=1e-12)
        assert torch.all(tau[blocks.is_box] == 0) and torch.all(tau[blocks.is_le] >= 0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("steps", sorted({1, 2, DualipOptions().newton_steps}))
def test_newton_projection_warm_started_few_steps_is_exact(seed, steps, layout):
    sf, blocks, bs = fast_structures(seed, layout)
    rng = np.random.default_rng(200 + seed)
    v0 = random_v(rng, sf.n_cols, 1.0)
    _, tau_exact = fast_projection.simplex_box_project(v0, torch.zeros(sf.n_blocks, dtype=F64), blocks, 60)
    for _ in range(5):
        v1 = v0 + torch.as_tensor(rng.normal(size=sf.n_cols) * 1e-7, dtype=F64)
        x, _ = fast_projection.simplex_box_project(v1, tau_exact, blocks, steps)
        np.testing.assert_allclose(x.numpy(), projections.project(v1, bs).numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_segment_linear_minimize_equals_exact(seed, ties, layout):
    sf, blocks, bs = fast_structures(seed, layout)
    rng = np.random.default_rng(300 + seed)
    n = sf.n_cols
    g = rng.integers(-3, 4, n) / 2.0 if ties else rng.normal(size=n)
    g = torch.as_tensor(g, dtype=F64)
    value, x, mu = fast_projection.simplex_box_linear_minimize(g, blocks)
    ref_value, _, ref_mu = projections.linear_minimize(g, bs)
    np.testing.assert_allclose(value.numpy(), ref_value.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(mu.numpy(), ref_mu.numpy(), rtol=0, atol=1e-12)
    # x attains the value in every block, and lies in the block polytope
    per_block = projections.block_sums(g * x, bs)
    np.testing.assert_allclose(per_block.numpy(), value.numpy(), rtol=0, atol=1e-12)
    xs = projections.block_sums(x, bs).numpy()
    assert np.all(x.numpy() >= sf.col_lower - 1e-15) and np.all(x.numpy() <= sf.col_upper)
    eq, le = sf.block_kind == BlockKind.SIMPLEX_EQ, sf.block_kind == BlockKind.SIMPLEX_LE
    np.testing.assert_allclose(xs[eq], sf.block_rhs[eq], atol=1e-12)
    assert np.all(xs[le] <= sf.block_rhs[le] + 1e-12)


# ------------------------------------------------------------------------------------- 2. certificates
def test_bound_and_primal_are_certified_at_optimality():
    _, m, ref, res = base()
    assert res.status == dm.Status.OPTIMAL
    assert bound_above_optimum(res, ref)
    assert res.objective <= ref.objective + 1e-9 * abs(ref.objective)  # a feasible point cannot beat the optimum
    assert_primal_feasible(res, 1e-9)
    assert any("feasible" in g for g in res.guarantees), res.guarantees
    assert any("bound" in g for g in res.guarantees), res.guarantees


@pytest.mark.parametrize("seed", [1, 4])
def test_bound_and_primal_are_certified_at_the_iteration_limit(seed):
    _, m = matching(users=200, items=20, density=0.3, seed=seed)
    ref = m.solve("highs")
    res = m.solve("dualip", max_iter=25)
    assert res.status == dm.Status.ITERATION_LIMIT
    assert res.iterations == 25
    assert bound_above_optimum(res, ref)
    assert_primal_feasible(res, 1e-9)
    assert res.objective <= ref.objective + 1e-9 * abs(ref.objective)


# ------------------------------------------------------------------------------------------- 3. statuses
@pytest.mark.parametrize("tol", [1e-3, 1e-5])
def test_optimal_means_gap_within_tol(tol):
    _, m = matching(users=100, items=10, density=0.25, seed=2)
    res = m.solve("dualip", tol=tol)
    assert res.status == dm.Status.OPTIMAL
    assert 0 <= res.gap <= tol
    assert res.gap == relative_gap(-res.objective, -res.bound)


def farkas_value(sf: StandardForm, y: np.ndarray) -> float:
    """min_{x in C} (A^T y)^T x - h(y) in float64 (h(y) = sum u_r y_r^+ - l_r y_r^-; -inf off the dual domain)."""
    pos, neg = y > 0, y < 0
    if np.any(pos & ~np.isfinite(sf.row_upper)) or np.any(neg & ~np.isfinite(sf.row_lower)):
        return -math.inf
    h = float(sf.row_upper[pos] @ y[pos] + sf.row_lower[neg] @ y[neg])
    bs = projections.BlockStructure.from_standard_form(sf, CPU, F64)
    values, _, _ = projections.linear_minimize(torch.as_tensor(sf.A.T @ y, dtype=F64), bs)
    return float(values.sum()) - h


def test_infeasible_model_returns_a_farkas_ray():
    _, m = matching(users=60, items=8, density=0.3, seed=3)
    m.subject_to(m.variables["x"].sum() >= 1e4, name="impossible")
    res = m.solve("dualip")
    assert res.status == dm.Status.INFEASIBLE
    ray = res.raw.ray
    assert ray is not None and ray.shape == (res.standard_form.n_rows,) and np.linalg.norm(ray) > 0
    assert farkas_value(res.standard_form, ray) > 1e-9 * np.linalg.norm(ray)
    # sanity of the checker: the zero ray and a ray of the feasible part do not certify anything
    assert farkas_value(res.standard_form, np.zeros_like(ray)) == 0.0
    budget_only = np.where(np.isfinite(res.standard_form.row_lower), 0.0, np.abs(ray))
    assert farkas_value(res.standard_form, budget_only) <= 0


@pytest.mark.parametrize("algorithm", ["dual_ascent", "pdhg"])
def test_farkas_tests_skip_a_check_whose_candidate_meets_the_rows(algorithm):
    """Equality blocks (x = 0 infeasible) keep the Farkas tests on, but a check whose repaired candidate meets the rows
    within tol runs none (such a point bounds every ray's value near tol): fewer than two per check; where the
    capacities fall short every check runs both and the ray is found."""
    from dualip_model.backends.dualip.kernels import Kernels

    def solve(capacity_share):
        with mock.patch.object(Kernels, "farkas", autospec=True, side_effect=Kernels.farkas) as farkas:
            res = assignment_with_capacity(capacity_share).solve("dualip", algorithm=algorithm, max_iter=5000)
        return res, farkas.call_count, len(res.raw.history)

    res, calls, checks = solve(1.2)
    assert res.status == dm.Status.OPTIMAL and calls < 2 * checks
    res, calls, checks = solve(0.999)
    assert res.status == dm.Status.INFEASIBLE and calls == 2 * checks


@pytest.mark.parametrize("build", [mildly_infeasible_matching, assignment_short_of_capacity])
def test_mildly_infeasible_model_returns_a_farkas_ray(build):
    """0.1% to 1% beyond: certified by y's move since the last check (matching), since the anchor (assignment)."""
    res = build().solve("dualip", max_iter=5000)
    assert res.status == dm.Status.INFEASIBLE and res.iterations <= 500
    ray = res.raw.ray
    assert farkas_value(res.standard_form, ray) > 1e-9 * np.linalg.norm(ray)


def test_tiny_time_limit():
    _, m, _, _ = base()
    res = m.solve("dualip", time_limit=1e-9)
    assert res.status == dm.Status.TIME_LIMIT
    assert res.iterations == check_loop.PACE_PROBE  # the first chunk under a time limit measures the pace
    assert_primal_feasible(res, 1e-9)


def test_callback_returning_true_interrupts_after_first_check():
    _, m, _, _ = base()
    calls = []
    res = m.solve("dualip", check_every=10, callback=lambda rec: calls.append(rec) or True)
    assert res.status == dm.Status.INTERRUPTED
    assert len(calls) == 1 and res.iterations == 10 and len(res.history) == 1
    assert_primal_feasible(res, 1e-9)


@pytest.mark.parametrize("answer", [np.bool_(True), 1, "stop"], ids=["numpy_bool", "one", "text"])
def test_callback_returning_any_truthy_value_stops(answer):
    """(was: only ``is True`` stopped; numpy.bool_(True) from a comparison ran on to the limit)"""
    _, m, _, _ = base()
    res = m.solve("dualip", max_iter=50, check_every=10, callback=lambda rec: answer)
    assert res.status == dm.Status.INTERRUPTED and len(res.history) == 1


@pytest.mark.parametrize("answer", [np.bool_(False), 0, None])
def test_callback_returning_a_falsy_value_goes_on(answer):
    _, m, _, _ = base()
    res = m.solve("dualip", max_iter=50, check_every=10, callback=lambda rec: answer)
    assert res.status == dm.Status.ITERATION_LIMIT and len(res.history) == 5


# -------------------------------------------------------------------------------------------- 4. history
KEYS = {"iteration", "gamma", "bound", "objective", "infeasibility", "gap", "step", "time"}


@pytest.mark.parametrize("check_every, max_iter", [(10, 100), (10, 35), (25, 20_000)])
def test_history_records_every_check(check_every, max_iter):
    _, m, _, _ = base()
    seen = []
    res = m.solve("dualip", check_every=check_every, max_iter=max_iter, callback=seen.append)
    h = res.raw.history  # the backend's records, in standard-form (minimization) units
    its = [r["iteration"] for r in h]
    # a check every check_every steps, but sooner after a stage's first stationary check (solver.CONFIRM_SHARE)
    confirm = round(solver_module.CONFIRM_SHARE * check_every)
    steps = np.diff([0] + its)
    assert its[-1] == res.iterations and all(k in (check_every, confirm) for k in steps[:-1])
    assert steps[-1] in (check_every, confirm) or its[-1] == max_iter
    assert all(h[i]["stationarity"] <= 1e-4 for i in range(len(h) - 1) if steps[i + 1] == confirm != check_every)
    if max_iter < 20_000:
        assert res.iterations == max_iter
    assert all(KEYS <= set(r) for r in h)
    assert seen == res.history  # the callback saw the same records, in the model's sense as res.history
    bounds = np.array([r["bound"] for r in h])  # standard-form (minimization) units
    assert np.all(np.diff(bounds) >= 0)
    user_bounds = res.standard_form.layout.sense * bounds  # maximization: non-increasing upper bounds
    assert np.all(np.diff(user_bounds) <= 0)
    assert res.bound <= user_bounds[-1] + 1e-9 * abs(res.bound)  # the final float64 check only tightens it
    assert np.all(np.diff([r["time"] for r in h]) >= 0)
    assert all(r["step"] > 0 and r["gamma"] > 0 for r in h)
    assert np.all(np.diff([r["gamma"] for r in h]) <= 0)  # continuation only lowers gamma
    for r in h:
        assert r["gap"] == relative_gap(r["objective"], r["bound"])
    assert -h[-1]["objective"] == pytest.approx(res.objective, rel=1e-9)


# ----------------------------------------------------------------------------------------- 5. warm start
def test_warm_start_from_own_result_is_at_least_twice_as_fast():
    _, m, _, cold = base()
    warm = m.solve("dualip", warm_start=cold)
    assert warm.status == dm.Status.OPTIMAL
    assert warm.iterations <= cold.iterations / 2, (warm.iterations, cold.iterations)
    # the same through the raw result and the dict form
    assert m.solve("dualip", warm_start=cold.raw).iterations == warm.iterations
    assert m.solve("dualip", warm_start=dict(cold.raw.state)).iterations == warm.iterations


def test_warm_start_after_budget_change_reaches_optimal():
    data, _, _, cold = base()
    m2 = matching_model(dataclasses.replace(data, budget=data.budget * 1.05))
    ref2 = m2.solve("highs")
    res = m2.solve("dualip", warm_start=cold)
    assert res.status == dm.Status.OPTIMAL
    assert abs(res.objective - ref2.objective) <= 2e-4 * abs(ref2.objective)
    assert bound_above_optimum(res, ref2)
    assert_primal_feasible(res, 1e-9)


def test_warm_start_with_wrong_row_count_raises():
    _, _, _, cold = base()
    _, other = matching(users=60, items=8, density=0.3, seed=1)
    with pytest.raises(dm.ModelError, match="warm_start"):
        other.solve("dualip", warm_start=cold)
    with pytest.raises(dm.ModelError, match="warm_start"):
        other.solve("dualip", warm_start={"y": np.zeros(3)})
    with pytest.raises(dm.ModelError, match="warm_start"):
        other.solve("dualip", warm_start=[0.0] * 8)


def test_warm_start_on_highs_raises_capability_error():
    # (regression: the option-name check used to answer first, with ModelError "no option(s) ['warm_start']")
    _, m, _, cold = base()
    with pytest.raises(dm.CapabilityError, match="warm start"):
        m.solve("highs", warm_start=cold)


# ---------------------------------------------------------------------------------------- 6. determinism
def test_same_seed_is_bitwise_deterministic():
    _, m = matching(users=100, items=10, density=0.25, seed=2)
    a = m.solve("dualip", seed=7)
    b = m.solve("dualip", seed=7)
    assert a.iterations == b.iterations
    for name in ("x", "row_dual", "block_dual"):
        assert np.array_equal(getattr(a.raw, name), getattr(b.raw, name)), name
    assert a.bound == b.bound and a.objective == b.objective


# ------------------------------------------------------------------------------------------- 7. float32
def test_float32_reaches_optimal_with_a_float64_certified_bound():
    _, m, ref, res64 = base()
    res32 = m.solve("dualip", dtype="float32", tol=1e-3)
    assert res32.status == dm.Status.OPTIMAL
    assert res32.raw.x.dtype == np.float64
    assert abs(res32.objective - res64.objective) <= 1e-3 * abs(res64.objective)
    assert bound_above_optimum(res32, ref)
    # the repair runs in float32: rows hold up to float32 rounding (seen: 1.7e-6 over a budget of 22)
    assert_primal_feasible(res32, atol=1e-6, rtol=4 * np.finfo(np.float32).eps)
    assert res32.gap <= 1e-3


# --------------------------------------------------------------------------------------------- 8. duals
@pytest.mark.parametrize("seed", [1, 3, 4])
def test_duals_are_dual_feasible_and_close_to_highs(seed):
    # At the default tol 1e-4 the budget-weighted sum can still be 1-1.6% off (seeds 3, 4): near-optimal duals
    # need not be near the (here unique) optimal dual face, so the comparison is made at tol 1e-5.
    data, m = matching(users=150, items=15, density=0.25, seed=seed)
    ref = m.solve("highs")
    res = m.solve("dualip", tol=1e-5)
    assert res.status == dm.Status.OPTIMAL
    lam = res.dual("budget")
    mu = res.dual("one_per_user")
    assert list(lam.index) == list(ref.dual("budget").index) and len(mu) == data.n_users
    assert (lam.values >= 0).all() and (mu.values >= 0).all()
    ours, theirs = data.budget @ lam.values, data.budget @ ref.dual("budget").values
    assert abs(ours - theirs) <= 1e-2 * abs(theirs), (ours, theirs)
    # (lam, mu) is feasible for the LP dual  min b.lam + sum mu  s.t.  cost_e lam_item + mu_user >= value_e
    reduced = data.cost * lam.values[data.item] + mu.values[data.user] - data.value
    assert reduced.min() >= -1e-9 * max(1.0, data.value.max())
    # so by weak duality its objective is an upper bound, close to the optimum
    dual_obj = ours + mu.values.sum()
    assert dual_obj >= ref.objective - 1e-9 * abs(ref.objective)
    assert dual_obj - ref.objective <= 1e-3 * abs(ref.objective)


# ---------------------------------------------------------------------------------- 9. option validation
@pytest.mark.parametrize("name, value", [
    ("tol", 0.0), ("tol", -1e-4), ("tol", float("nan")), ("check_every", 0), ("gamma_decay", 1.5),
    ("gamma_decay", 1.0), ("gamma_decay", 0.0), ("dtype", "float16"), ("max_iter", 0), ("newton_steps", 0),
    ("time_limit", 0.0), ("gamma", -1.0), ("gamma_min", 0.0),
])
def test_invalid_option_value_raises_naming_it(name, value):
    with pytest.raises(dm.ModelError, match=rf"DualipOptions\.{name}\b"):
        DualipOptions(**{name: value})
    _, m = matching(users=20, items=3, density=0.5, seed=0)
    with pytest.raises(dm.ModelError, match=rf"DualipOptions\.{name}\b"):
        m.solve("dualip", **{name: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda_raises_naming_device():
    _, m = matching(users=20, items=3, density=0.5, seed=0)
    with pytest.raises(dm.ModelError, match=r"DualipOptions\.device"):
        m.solve("dualip", device="cuda")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta"])
def test_unknown_device_string_raises_model_error(device):
    # (regression: "gpu" used to reach torch.device unchecked and raise torch's RuntimeError)
    with pytest.raises(dm.ModelError, match=r"DualipOptions\.device"):
        DualipOptions(device=device)
    _, m = matching(users=20, items=3, density=0.5, seed=0)
    with pytest.raises(dm.ModelError, match=r"DualipOptions\.device"):
        m.solve("dualip", device=device)


def test_unknown_option_keyword_raises_naming_it():
    _, m = matching(users=20, items=3, density=0.5, seed=0)
    with pytest.raises(dm.ModelError, match="tolerance"):
        m.solve("dualip", tolerance=1e-3)


# ------------------------------------------------------------------------------------- 10. no coupling rows
def most_value(name, data):
    """(model, users, x): the value of ``data``'s edges maximized, no constraint yet."""
    m = dm.Model(name)
    users, items = m.entities("user", data.n_users), m.entities("item", data.n_items)
    x = m.variable("x", over=m.edges("e", users, items, src=data.user, dst=data.item))
    m.maximize((data.value * x).sum())
    return m, users, x


def test_global_simplex_only_is_solved_exactly():
    data = synthetic_matching(60, 8, 0.3, seed=5)
    m, _, x = most_value("global", data)
    m.subject_to(x.sum() <= 2, name="total")
    assert m.compile().n_rows == 0
    res = m.solve("dualip", max_iter=1)
    assert res.status == dm.Status.OPTIMAL and res.gap == 0.0
    assert res.objective == pytest.approx(2 * data.value.max(), rel=1e-15)
    assert res.bound == res.objective
    assert res.x.values.sum() == pytest.approx(2.0, rel=1e-15)
    assert res.dual("total") == pytest.approx(data.value.max(), rel=1e-15)


def test_per_user_simplex_only_is_solved_exactly():
    data = synthetic_matching(60, 8, 0.2, seed=6)
    m, users, x = most_value("per_user", data)
    m.subject_to(x.sum(by=users) <= 1, name="one")
    assert m.compile().n_rows == 0
    res = m.solve("dualip")
    best = np.zeros(data.n_users)
    np.maximum.at(best, data.user, data.value)
    assert res.status == dm.Status.OPTIMAL and res.gap == 0.0
    assert res.objective == pytest.approx(best.sum(), rel=1e-14)
    assert res.objective == pytest.approx(m.solve("highs").objective, rel=1e-12)
    np.testing.assert_allclose(res.dual("one").values, best, rtol=1e-15)
    assert_primal_feasible(res, 0.0)


# ----------------------------------------------------------------------------------- 11. device layout
@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scaled_problem_uses_int32_indices_and_is_the_row_scaled_matrix(dtype, storage):
    _, m = matching(users=100, items=10, density=0.3, seed=1)
    sf = m.compile()
    p = ScaledProblem.build(sf, CPU, dtype, storage=storage)
    assert p.A.kind == ("csr" if storage == "fast" else "segment")
    assert p.At.kind == "single"  # every matching column lies in one coupling row: a gather, no pointers
    for op in (p.A, p.At):
        assert op.idx.dtype == torch.int32 and op.values().dtype == dtype
    assert p.c.dtype == dtype and p.row_lower.dtype == dtype and p.row_upper.dtype == dtype
    nnz, mrows, n = sf.nnz, sf.n_rows, sf.n_cols
    size = torch.finfo(dtype).bits // 8
    held = held_bytes(p.tensors())
    assert held["At.idx"] + held["At.vals"] == n * (size + 4)  # one slot per column
    if storage == "fast":  # A's CSR for MKL / cuSPARSE, and a copy of its rows sorted for the repair
        assert held["A.idx"] + held["A.vals"] == nnz * (size + 4)
        assert held["plan.idx"] + held["plan.vals"] == nnz * (size + 4)
    else:  # A's rows in the repair's order, their values read from At's (one per column): 4 bytes per nonzero
        assert held["A.idx"] == nnz * 4 and "A.vals" not in held and held["plan.idx"] == 0
    assert ("blocks.member" in held) == (storage == "fast")  # block sums as mat-vecs (CPU speed)
    # A~ = D A with unit-norm rows, At is its transpose, c~ = c / sigma, bounds scaled by D
    dense = p.A.to_dense().double().numpy()
    np.testing.assert_allclose(dense, np.diag(p.row_scale) @ sf.A.toarray(), rtol=1e-6 if size == 4 else 1e-15)
    np.testing.assert_allclose(p.At.to_dense().double().numpy(), dense.T, rtol=0, atol=0)
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1.0, rtol=1e-6 if size == 4 else 1e-13)
    np.testing.assert_allclose(p.c.double().numpy() * p.sigma, sf.c, rtol=1e-6 if size == 4 else 1e-15)
    np.testing.assert_allclose(p.row_upper.double().numpy(), sf.row_upper * p.row_scale, rtol=1e-6 if size == 4 else 0)
    # the step size gamma / norm_sq needs an upper estimate of ||A~||_2^2
    assert p.norm_sq >= np.linalg.norm(dense, 2) ** 2 * (1 - 1e-12)
    assert p.fast_projection and p.repairable
    # products agree with the dense matrix in every storage
    x = torch.rand(n, dtype=dtype, generator=torch.Generator().manual_seed(0))
    y = torch.rand(mrows, dtype=dtype, generator=torch.Generator().manual_seed(1))
    tol = 1e-5 if size == 4 else 1e-12
    np.testing.assert_allclose((p.A @ x).double().numpy(), dense @ x.double().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose((p.At @ y).double().numpy(), dense.T @ y.double().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["csr", "segment", "single"])
def test_sparse_rows_products_and_row_minimum_match_dense(kind):
    """Every storage kind, with empty rows (the sentinel slot of 'single') and a few entries per row."""
    rng = np.random.default_rng(3)
    r, k = 9, 6
    dense = np.zeros((r, k))
    for i in range(r):
        if i % 3 == 0:
            continue  # empty row
        cols = rng.choice(k, size=1 if kind == "single" else rng.integers(1, 4), replace=False)
        dense[i, cols] = rng.uniform(0.5, 2.0, cols.size)
    mat = scipy.sparse.csr_matrix(dense)
    op = SparseRows(mat.indptr, mat.indices, mat.data, (r, k), kind, CPU, F64)
    np.testing.assert_array_equal(op.to_dense().numpy(), dense)
    z = torch.as_tensor(rng.normal(size=k))
    np.testing.assert_allclose((op @ z).numpy(), dense @ z.numpy(), rtol=1e-14, atol=1e-14)
    expect = [min((z[j].item() for j in np.flatnonzero(dense[i])), default=7.0) for i in range(r)]
    np.testing.assert_array_equal(op.row_min(z, empty=7.0).numpy(), expect)
    if kind != "single":
        return
    with pytest.raises(ValueError, match="at most one entry"):
        SparseRows(np.array([0, 2]), np.array([0, 1]), np.ones(2), (1, 2), "single", CPU, F64)


def test_lp_file_with_unbounded_columns_is_refused_before_iterating_naming_them():
    """afiro has columns without upper bounds: no finite Lagrangian bound exists, so dualip refuses it before any
    iteration (was: 2,000 iterations, bound -inf, and zero duals for every row); read as blocks, 6 of them sit in
    the simplex blocks detected among its rows, and the other 26 are still named."""
    flat = dm.read_model("tests/data/netlib/afiro.mps", detect_blocks=False)
    blocks = dm.read_model("tests/data/netlib/afiro.mps")
    with mock.patch.object(DualAscentSolver, "solve", side_effect=AssertionError("iterated")):
        with pytest.raises(dm.CapabilityError, match=r"32 column\(s\) without a finite bound.*x\[0\], x\[1\]"):
            flat.solve("dualip", max_iter=2000)
        with pytest.raises(dm.CapabilityError, match=r"26 column\(s\) without a finite bound.*x\[1\], x\[2\]"):
            blocks.solve("dualip", max_iter=2000)


@pytest.mark.parametrize("lower, upper, cost, in_row, refused", [
    (-np.inf, 1.0, 1.0, True, True), (0.0, np.inf, 1.0, True, True),  # in a coupling row: any sign of y
    (0.0, np.inf, 1.0, False, False),  # in no row, its cost pushes it to its finite bound
    (0.0, np.inf, -1.0, False, True),  # in no row, its cost improves without end
    (-np.inf, np.inf, 0.0, False, False),  # free, in no row, no cost: x = 0
])
def test_unbounded_column_is_refused_exactly_where_a_block_lp_can_be_unbounded(lower, upper, cost, in_row, refused):
    sf = make_sf([(BlockKind.BOX, [lower, 0.0], [upper, 1.0], 0.0)],
                 (np.array([[1.0 if in_row else 0.0, 1.0]]), np.array([-np.inf]), np.array([1.0])))
    sf = dataclasses.replace(sf, c=np.array([cost, -1.0]))
    if refused:
        with pytest.raises(dm.CapabilityError, match=r"1 column\(s\).*\(column 0\)"):
            dm.registry.get("dualip").solve(sf, DualipOptions())
    else:
        assert dm.registry.get("dualip").solve(sf, DualipOptions()).status == dm.Status.OPTIMAL


def test_duals_stay_in_the_dual_domain_on_every_iteration():
    """Rows without a lower side (all matching rows) keep y >= 0 exactly: a y of -1e-17 made h(y), hence the
    check's bound, infinite (it happened on 2000 x 1000 matching within 100 iterations before the fix)."""
    from dualip_model.backends.dualip.solver import AscentState, DualAscentSolver

    sf = matching_model(synthetic_matching(2000, 1000, 0.01, seed=0)).compile()
    p = ScaledProblem.build(sf, torch.device("cpu"), torch.float64)
    solver = DualAscentSolver(p, DualipOptions())
    st = AscentState.start(torch.zeros(p.m, dtype=torch.float64), sf.n_blocks, p.norm_sq / 0.03)
    for _ in range(100):
        st = solver.iterate(st, 0.03, 0.03 / p.norm_sq, 1)
        assert int((st.y < 0).sum()) == 0
    assert np.isfinite(float(solver.kernels.lagrangian_bound(st.y)))


def test_adaptive_step_stops_oscillating_on_a_matching_with_few_users_per_item():
    """1,000 users x 1,000 items, 10 edges each: the secant curvature misses the stiff rows and y oscillated
    (gap 0.1 after 5,000 iterations); the floor on the curvature estimate rises once stationarity stalls."""
    m = matching_model(synthetic_matching(1000, 1000, 0.01, seed=0))
    res = m.solve("dualip", tol=1e-4, max_iter=2000)
    assert res.gap < 1e-2, res.gap
    assert res.bound >= m.solve("highs").objective - 1e-7  # maximizing: the bound stays valid


def test_float32_solve_certificate_matches_the_exact_float64_one():
    """Off the float64 CPU path, simplex/box models get their float64 certificate from segment reductions on
    the host (no sort): the same bound and block duals as the exact sort-based one."""
    from dualip_model.backends.dualip.backend import float64_certificate

    _, m = matching(users=300, items=20, density=0.2, seed=4)
    sf = m.compile()
    raw = dm.registry.get("dualip").solve(sf, DualipOptions(dtype="float32", tol=1e-3))
    exact = float64_certificate(sf, raw.x, -raw.row_dual)
    assert raw.bound == pytest.approx(exact.bound, rel=1e-12)
    assert raw.objective == pytest.approx(exact.measures.objective, rel=1e-12)
    np.testing.assert_allclose(raw.block_dual, exact.block_dual, rtol=1e-12, atol=1e-12)


def test_to_device_converts_on_the_host_and_never_shares_a_frozen_array():
    from dualip_model.backends.dualip.operators import to_device

    frozen = np.arange(5, dtype=np.float64) / 3
    frozen.flags.writeable = False
    t = to_device(frozen, torch.float32, CPU)
    assert t.dtype == torch.float32 and t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), frozen.astype(np.float32))
    same = to_device(frozen, torch.float64, CPU)
    same[0] = 7.0  # a copy: the standard form's array is untouched
    assert frozen[0] == 0.0
    strided = np.arange(10, dtype=np.int64)[::2]
    assert to_device(strided, torch.int32, CPU).tolist() == [0, 2, 4, 6, 8]


# ----------------------------------------------------------------------------------- flat-row search
@pytest.mark.parametrize("seed", range(2))
def test_flat_row_search_converges_with_entries_spread_over_1e12_within_rows(seed):
    """Coefficients 1e-6..1e6 within each row: the plain ascent creeps (its rows are flat until y_r passes a
    tiny entry's price); with the flat-row search (the default) the solve reaches a certified optimum."""
    model = scaled_matching(seed, entries=6)
    assert model.solve("dualip", max_iter=3000, flat_rows=False).status == dm.Status.ITERATION_LIMIT  # the control
    res, _ = check_optimal(model, "dualip", max_iter=3000)
    assert res.iterations < 3000


def test_prox_gradient_keeps_the_small_steps_of_large_duals():
    """G = A x - clip(y / s + A x, l, u): with y_r = 1e10 and s = 1e-9 the step s G_r is far below y_r's rounding,
    and G_r must still read as the violation A_r x - u_r (the form (prox(y + s A x) - y) / s read 0 or garbage)."""
    _, m = matching()
    prob = ScaledProblem.build(m.compile(), CPU, torch.float64)
    solver = DualAscentSolver(prob, DualipOptions())
    y = torch.full((prob.m,), 1e10, dtype=torch.float64)
    g = solver.kernels.prox_move(y, prob.row_upper + 1e-3, 1e-9)
    torch.testing.assert_close(g, torch.full_like(g, 1e-3), rtol=1e-9, atol=0)
    # where y_r = 0 the prox keeps the row's own bound: a row below it has G_r = 0
    assert solver.kernels.prox_move(torch.zeros_like(y), prob.row_upper - 1.0, 1e-9).abs().max() == 0


def test_flat_row_search_leaves_a_progressing_solve_alone():
    """Where the stationarity keeps halving, the search never runs: the same iterates, bit for bit, as without it.

    (On this 20,000-edge matching some rows do look flat at some checks: without the stationarity gate the search
    would move them.)"""
    m = matching_model(synthetic_matching(20_000, 200, 0.005, seed=0))
    on, off = m.solve("dualip"), m.solve("dualip", flat_rows=False)
    assert on.status == off.status == dm.Status.OPTIMAL and on.iterations == off.iterations
    np.testing.assert_array_equal(np.asarray(on.dual("budget")), np.asarray(off.dual("budget")))
    np.testing.assert_array_equal(on.x_all, off.x_all)


@pytest.mark.parametrize("loadavg, cpus, expected", [
    ("0.10 0.20 0.30 1/100 5", 8, 4),  # only this process runs: torch's setting (4 here)
    ("15.9 15.2 14.0 1/100 5", 8, 4),  # high averages from this process's own earlier solves do not count
    ("2.00 2.00 2.00 6/100 5", 8, 3),  # 5 tasks of other processes running now: 8 - 5 cores left
    ("9.00 9.00 9.00 12/100 5", 8, 1),  # more than the cores: at least 1
])
def test_default_threads_leave_the_cores_other_processes_run_on(loadavg, cpus, expected):
    from dualip_model.backends.dualip import options as options_module
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with mock.patch("builtins.open", mock.mock_open(read_data=loadavg)), \
                mock.patch.object(options_module.os, "sched_getaffinity", return_value=set(range(cpus)), create=True):
            assert options_module.default_threads() == expected
    finally:
        torch.set_num_threads(before)
