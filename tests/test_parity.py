"""Backend conformance suite: every registered backend on the same models, checked against HiGHS.

Each test runs on every backend from ``dm.registry.available()`` (the ``backend`` fixture of conftest.py)
and skips only when the backend lacks a declared capability the test needs; per-backend options and
tolerances live in ``fuzz_models.CONFIG`` (shared with the fuzz tests). A new backend gets the whole suite
by registering itself. Covered: optimal objectives, bounds, feasibility and duals on matching, allocation
and LP-file models; badly scaled data; other working precisions (dualip float32 vs float64); infeasible
and unbounded models, constructed and from netlib.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dualip_model as dm
from dualip_model import Capability
from dualip_model.synthetic import MatchingData, matching_model, synthetic_matching
from fuzz_models import FEASIBLE_ATOL, config, needed_capabilities


INFEASIBLE_DIR = Path(__file__).resolve().parent / "data" / "netlib-infeasible"
NETLIB_STATUS = json.loads((INFEASIBLE_DIR / "status.json").read_text())


def solve(model, backend, cfg=None, **extra):
    cfg = config(backend) if cfg is None else cfg
    return model.solve(backend, **{**cfg.options, **extra}), cfg


def require(backend, *caps):
    have = dm.registry.get(backend).capabilities
    missing = [c.value for c in caps if c not in have]
    if missing:
        pytest.skip(f"backend {backend!r} lacks {missing}")


def reference(model):
    res = model.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    return res


def assert_feasible(model, res, atol=FEASIBLE_ATOL):
    """Row bounds, block sums and column bounds of the standard form hold at the returned primal.

    Each to atol * (1 + |side|), so float32 rounding of large sides passes and real violations do not.
    """
    sf = res.standard_form
    x = res.primal(next(iter(model.variables)), labeled=False) if len(model.variables) == 1 else res.x_all
    xc = x if sf.layout.column_order is None else x[sf.layout.column_order]
    ax = sf.A @ xc

    def tol(side):
        return atol * (1.0 + np.abs(np.where(np.isfinite(side), side, 0.0)))

    assert (ax <= sf.row_upper + tol(sf.row_upper)).all() and (ax >= sf.row_lower - tol(sf.row_lower)).all()
    assert (xc >= sf.col_lower - tol(sf.col_lower)).all() and (xc <= sf.col_upper + tol(sf.col_upper)).all()
    sums = np.add.reduceat(np.append(xc, 0.0), sf.block_ptr[:-1]) * (np.diff(sf.block_ptr) > 0)
    has_sum = sf.block_kind != dm.BlockKind.BOX
    eq = np.isin(sf.block_kind, (dm.BlockKind.SIMPLEX_EQ, dm.BlockKind.BOXCUT_EQ))
    assert (sums[has_sum] <= sf.block_rhs[has_sum] + tol(sf.block_rhs[has_sum])).all()
    assert (np.abs(sums[eq] - sf.block_rhs[eq]) <= tol(sf.block_rhs[eq])).all()


def check_optimal(model, backend, cfg=None, **extra):
    ref = reference(model)
    res, cfg = solve(model, backend, cfg, **extra)
    assert res.status == dm.Status.OPTIMAL, res.message
    scale = max(1.0, abs(ref.objective))
    assert abs(res.objective - ref.objective) / scale <= cfg.objective_rtol
    sense = res.standard_form.layout.sense
    # the bound never crosses the optimum (lower bound when minimizing, upper when maximizing)
    if Capability.CERTIFIED_BOUND in dm.registry.get(backend).capabilities:
        assert sense * (res.bound - ref.objective) <= 1e-9 * scale
    if Capability.EXACT in dm.registry.get(backend).capabilities or any(
            g.startswith("primal: feasible") for g in res.guarantees):
        assert_feasible(model, res)
    return res, ref


# ----------------------------------------------------------------------------------------- models
def small_matching(seed, users=60, items=8, density=0.3):
    return matching_model(synthetic_matching(users, items, density, seed=seed))


def allocation(seed):
    """Equality simplex blocks plus a >= and a <= global row (not repairable by scaling)."""
    data = synthetic_matching(80, 6, 0.5, seed=seed)
    m = dm.Model("allocation")
    users = m.entities("user", data.n_users)
    items = m.entities("item", data.n_items)
    e = m.edges("e", users, items, src=data.user, dst=data.item)
    x = m.variable("x", over=e)
    active = (np.bincount(data.user, minlength=data.n_users) > 0).astype(float)
    m.maximize({"clicks": (data.value * x).sum(), "revenue": (data.cost * x).sum()}, weights={"revenue": 0.1})
    m.subject_to(x.sum(by=users) == active, name="one_slot")
    m.subject_to((data.cost * x).sum() >= 1.2 * data.cost.mean() * active.sum(), name="min_revenue")
    m.subject_to(((data.item % 3 == 0) * x).sum() <= 0.2 * active.sum(), name="cap")
    return m


def box_lp(seed, n=12, rows=5):
    """A random LP with finite box bounds and <=, >=, == and range rows; written to an LP file and read back."""
    rng = np.random.default_rng(seed)
    m = dm.Model("box")
    cols = m.entities("col", n)
    x = m.variable("x", over=cols, lower=rng.uniform(-1, 0, n), upper=rng.uniform(0.5, 2, n))
    m.minimize((rng.normal(size=n) * x).sum())
    A = rng.normal(size=(rows, n)) * (rng.random((rows, n)) < 0.6)
    r = m.entities("row", rows)
    x0 = rng.uniform(-0.2, 0.4, n)  # a point inside the box, so the rows below are feasible
    act = A @ x0
    lo = np.where(np.arange(rows) % 2 == 0, -np.inf, act - 1.0)
    hi = np.where(np.arange(rows) % 3 == 0, np.inf, act + 0.5)
    hi[np.isinf(lo) & np.isinf(hi)] = act[np.isinf(lo) & np.isinf(hi)] + 1.0
    m.subject_to(dm.matmul(A, x, r).between(lo, hi), name="rows")
    return m


def global_simplex():
    """max c.x over one global simplex sum x <= 3 (no coupling rows: the separable path), optimum 12."""
    m = dm.Model("global_simplex")
    s = m.entities("s", 5)
    x = m.variable("x", over=s)
    m.maximize((np.array([1.0, 4.0, 2.0, 4.0, 0.5]) * x).sum())
    m.subject_to(x.sum() <= 3, name="total")
    return m


def scaled_matching(seed, costs=0.0, rows=0.0, entries=0.0, rhs=0.0, users=40, items=6):
    """A users x items matching whose data spread over powers of ten (exponents uniform in [-k, k]).

    Values times 10^U(-costs, costs) per edge; each item row (entries and budget) times 10^U(-rows, rows);
    entries times 10^U(-entries, entries) per edge; budgets times 10^U(-rhs, rhs) per item.
    """
    d = synthetic_matching(users, items, 0.3, seed=seed)
    rng = np.random.default_rng(seed)
    row = 10.0 ** rng.uniform(-rows, rows, d.n_items)
    value = d.value * 10.0 ** rng.uniform(-costs, costs, d.n_edges)
    cost = d.cost * row[d.item] * 10.0 ** rng.uniform(-entries, entries, d.n_edges)
    budget = d.budget * row * 10.0 ** rng.uniform(-rhs, rhs, d.n_items)
    return matching_model(MatchingData(d.n_users, d.n_items, d.user, d.item, value, cost, budget))


# ----------------------------------------------------------------------------------------- optimal models
@pytest.mark.parametrize("seed", range(4))
def test_matching(backend, seed):
    res, ref = check_optimal(small_matching(seed), backend)
    require(backend, Capability.DUALS)
    # duals of the budget rows: non-negative for a maximization with <= rows
    assert (res.dual("budget") >= -1e-6).all()


@pytest.mark.parametrize("seed", range(3))
def test_badly_scaled_matching(backend, seed):
    """Edge values over 1e-2..1e2 and item costs and budgets over 1e-3..1e3."""
    d = synthetic_matching(300, 20, 0.2, seed=seed)
    rng = np.random.default_rng(seed)
    item_scale = 10.0 ** rng.uniform(-3, 3, d.n_items)
    value = d.value * 10.0 ** rng.uniform(-2, 2, d.n_edges)
    check_optimal(matching_model(MatchingData(d.n_users, d.n_items, d.user, d.item, value,
                                              d.cost * item_scale[d.item], d.budget * item_scale)), backend)


# What dualip handles (float64, tol 1e-4, 20,000 iterations), from benchmarks/results/reliability.json
# ("scaling": scaled_matching, seeds 0-4; OPTIMAL runs of 5 per spread 1e-1..1e1, 1e-2..1e2, ..., 1e-7..1e7):
#   costs              5 5 5 5 5 5 5      whole rows (entries with their rhs)  5 5 5 5 5 5 5
#   entries in a row   5 5 5 5 5 5 5      rhs alone                            5 5 5 5 5 5 5
#   costs, rows, rhs   5 5 5 5 5 5 5      all four                             5 5 5 5 5 5 5
# rhs spreads pass since stationarity is also measured per row (a row with a small side counts fully), entries
# within a row thanks to the flat-row search (it moves the rows the ascent creeps along), all four at once since
# the prox-gradient is computed without cancellation (a large y_r no longer reads as stationary). 1e-8..1e8 goes
# past what HiGHS accepts (coefficients above 1e15), so there is no reference beyond 1e-7..1e7.
SCALINGS = {
    "costs 1e-6..1e6": dict(costs=6),
    "rows 1e-6..1e6": dict(rows=6),
    "entries 1e-1..1e1": dict(entries=1),
    "entries 1e-3..1e3": dict(entries=3),
    "entries 1e-6..1e6": dict(entries=6),
    "rhs 1e-6..1e6": dict(rhs=6),
    "costs, rows and rhs 1e-6..1e6": dict(costs=6, rows=6, rhs=6),
    "all 1e-1..1e1": dict(costs=1, rows=1, entries=1, rhs=1),
    "all 1e-6..1e6": dict(costs=6, rows=6, entries=6, rhs=6),
}


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("scaling", list(SCALINGS))
def test_scaled_matching(backend, scaling, seed):
    if scaling in config(backend).beyond:
        pytest.skip(f"{scaling} is beyond backend {backend!r} (its Config.beyond)")
    check_optimal(scaled_matching(seed, **SCALINGS[scaling]), backend)


def test_matching_with_unsorted_edges_and_string_labels(backend):
    data = synthetic_matching(50, 7, 0.4, seed=11)
    order = np.random.default_rng(0).permutation(data.n_edges)
    m = dm.Model("shuffled")
    users = m.entities("user", [f"u{i}" for i in range(data.n_users)])
    items = m.entities("item", [f"i{i}" for i in range(data.n_items)])
    e = m.edges("e", users, items, src=np.array([f"u{i}" for i in data.user[order]]),
                dst=np.array([f"i{i}" for i in data.item[order]]))
    x = m.variable("x", over=e)
    m.maximize((data.value[order] * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    m.subject_to((data.cost[order] * x).sum(by=items) <= data.budget, name="budget")
    res, ref = check_optimal(m, backend)
    assert res.x.index.equals(ref.x.index)


@pytest.mark.parametrize("seed", range(3))
def test_allocation_with_equality_blocks_and_global_rows(backend, seed):
    require(backend, Capability.RANGES)
    check_optimal(allocation(seed), backend)


@pytest.mark.parametrize("seed", range(3))
def test_box_lp_from_lp_file(backend, seed, tmp_path):
    require(backend, Capability.RANGES)
    path = tmp_path / "box.lp"
    dm.write_model(box_lp(seed), path)
    m = dm.read_model(path)
    assert set(dm.BlockKind(k) for k in m.compile().block_kind) == {dm.BlockKind.BOX}
    check_optimal(m, backend)


@pytest.mark.parametrize("seed", range(2))
def test_matching_read_back_from_mps(backend, seed, tmp_path):
    """A matching written flat to MPS and read back: its user rows become simplex blocks again (block detection),
    and every backend answers it as the block model, in the file's rows and columns."""
    path = tmp_path / "matching.mps"
    dm.write_model(small_matching(seed), path)
    m = dm.read_model(path)
    assert m.reduction is not None and m.reduction(m.compile())[0].n_blocks == 60
    check_optimal(m, backend)


def test_global_simplex_only_no_coupling_rows(backend):
    res, _ = check_optimal(global_simplex(), backend)
    assert res.objective == pytest.approx(12.0, rel=1e-6)


def test_bound_is_valid_even_at_the_iteration_limit(backend):
    m = small_matching(5, users=200, items=20)
    ref = reference(m)
    res, _ = solve(m, backend, **({"max_iter": 30} if backend == "dualip" else {}))
    if res.status == dm.Status.OPTIMAL:
        return
    assert res.status == dm.Status.ITERATION_LIMIT
    assert res.bound >= ref.objective - 1e-9 * abs(ref.objective)  # maximization: an upper bound


# ----------------------------------------------------------------------------------------- precisions
PRECISION_CASES = {
    "matching": lambda: small_matching(0),
    "matching_unsorted": lambda: small_matching(2, users=40, items=6, density=0.5),
    "allocation": lambda: allocation(0),
    "box_lp": lambda: box_lp(0),
    "global_simplex": global_simplex,
}
PRECISIONS = [(b, p) for b in dm.registry.available() for p in config(b).precisions]


@pytest.mark.parametrize("case", list(PRECISION_CASES))
@pytest.mark.parametrize("backend_name, precision", PRECISIONS)
def test_other_precision_agrees(backend_name, precision, case):
    """The backend in another working precision (dualip: float32) is optimal, and agrees with its default."""
    try:
        dm.registry.get(backend_name)
    except ImportError as exc:
        pytest.skip(f"backend {backend_name!r} does not import: {exc}")
    model = PRECISION_CASES[case]()
    needs = needed_capabilities(model.compile()) - dm.registry.get(backend_name).capabilities
    if needs:
        pytest.skip(f"backend {backend_name!r} lacks {sorted(c.value for c in needs)}")
    other = config(backend_name).precisions[precision]
    res, ref = check_optimal(model, backend_name, other)
    base, _ = check_optimal(model, backend_name)
    scale = max(1.0, abs(ref.objective))
    assert abs(res.objective - base.objective) / scale <= other.objective_rtol + config(backend_name).objective_rtol


# ----------------------------------------------------------------------------------------- infeasible, unbounded
def contradicting_rows():
    """a.x >= 3 and a.x <= 1 over the box [0, 1]^4."""
    m = dm.Model("contradiction")
    s = m.entities("s", 4)
    x = m.variable("x", over=s, lower=0.0, upper=1.0)
    m.minimize((np.array([1.0, -1.0, 0.5, 0.0]) * x).sum())
    a = np.array([1.0, 2.0, 0.0, 1.0])
    m.subject_to((a * x).sum() >= 3.0, name="at_least")
    m.subject_to((a * x).sum() <= 1.0, name="at_most")
    return m


def inconsistent_equalities():
    """x0 + x1 = 1.5, x1 + x2 = 1.5, x0 + x2 = 0.5 over [0, 1]^3 (the sum of all three says x0+x1+x2 = 1.75)."""
    m = dm.Model("equalities")
    s = m.entities("s", 3)
    x = m.variable("x", over=s, lower=0.0, upper=1.0)
    m.minimize(x.sum())
    for k, (a, rhs) in enumerate([([1.0, 1.0, 0.0], 1.5), ([0.0, 1.0, 1.0], 1.5), ([1.0, 0.0, 1.0], 0.5)]):
        m.subject_to((np.array(a) * x).sum() == rhs, name=f"e{k}", block=False)
    return m


def over_budget_matching():
    """Matching plus sum x >= 10,000 (there are 60 users with at most one unit each)."""
    m = small_matching(3)
    m.subject_to(m.variables["x"].sum() >= 10_000.0, name="impossible")
    return m


def unbounded_lp():
    """max x0 + x1 s.t. x0 - x1 <= 1, x >= 0: x1 grows without bound."""
    m = dm.Model("unbounded")
    s = m.entities("s", 2)
    x = m.variable("x", over=s)
    m.maximize(x.sum())
    m.subject_to((np.array([1.0, -1.0]) * x).sum() <= 1, name="diff")
    return m


STATUS_CASES = {  # name -> (model builder, the true status)
    "contradicting_rows": (contradicting_rows, dm.Status.INFEASIBLE),
    "inconsistent_equalities": (inconsistent_equalities, dm.Status.INFEASIBLE),
    "over_budget_matching": (over_budget_matching, dm.Status.INFEASIBLE),
    "unbounded_lp": (unbounded_lp, dm.Status.UNBOUNDED),
    **{f"netlib_{name}": ((lambda name=name: dm.read_model(INFEASIBLE_DIR / f"{name}.mps")),
                          dm.Status.INFEASIBLE if info["status"] == "Infeasible" else dm.Status.UNBOUNDED)
       for name, info in NETLIB_STATUS.items()},
}
DETECTS = {dm.Status.INFEASIBLE: Capability.DETECTS_INFEASIBLE, dm.Status.UNBOUNDED: Capability.DETECTS_UNBOUNDED}


@pytest.mark.parametrize("case", list(STATUS_CASES))
def test_infeasible_or_unbounded_is_reported(backend, case):
    """A backend that declares it detects infeasibility (unboundedness) says so, never OPTIMAL or a limit."""
    build, truth = STATUS_CASES[case]
    model = build()
    require(backend, DETECTS[truth], *needed_capabilities(model.compile()))
    if case in config(backend).beyond:
        pytest.skip(f"{case} is beyond backend {backend!r} (its Config.beyond)")
    res, _ = solve(model, backend)
    assert res.status == truth, f"{res.status}: {res.message}"
    assert not res.status.has_solution


def mildly_infeasible_matching():
    """sum x >= 11.11 on a 12-user matching whose largest sum x is 11.0 (1% beyond)."""
    m = matching_model(synthetic_matching(12, 4, 0.5, seed=2))
    m.subject_to(m.variables["x"].sum() >= 1.01 * 11.0, name="impossible")  # max sum x is 11.0 (seed 2)
    return m


def assignment_with_capacity(share: float):
    """30 users each assigned exactly once (equality blocks) to 5 items whose capacities add up to share x 30."""
    m = dm.Model("assignment")
    users, items = m.entities("user", 30), m.entities("item", 5)
    e = m.edges("e", users, items, src=np.repeat(np.arange(30), 5), dst=np.tile(np.arange(5), 30))
    x = m.variable("x", over=e, lower=0.0)
    m.minimize((np.random.default_rng(1).random(150) * x).sum())
    m.subject_to(x.sum(by=users) == 1.0, name="assign")
    m.subject_to(x.sum(by=items) <= share * 30 / 5, name="capacity")
    return m


def assignment_short_of_capacity():
    """The assignment whose capacities add up to 29.97 for 30 users: infeasible by 0.1%."""
    return assignment_with_capacity(0.999)


@pytest.mark.parametrize("build", [mildly_infeasible_matching, assignment_short_of_capacity])
def test_mildly_infeasible_model_is_reported(backend, build):
    """0.1% to 1% beyond the feasible range: reported INFEASIBLE (dualip: within 5,000 iterations)."""
    require(backend, Capability.DETECTS_INFEASIBLE)
    res, _ = solve(build(), backend, **({"max_iter": 5000} if backend == "dualip" else {}))
    assert res.status == dm.Status.INFEASIBLE
