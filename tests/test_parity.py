"""Backend conformance suite: every registered backend on the same small models, checked against HiGHS.

Each test runs on every backend from ``dm.registry.available()`` and skips only when the backend lacks a
declared capability the test needs; per-backend tolerances live in CONFIG. A new backend gets the whole
suite by registering itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import dualip_model as dm
from dualip_model import Capability
from dualip_model.synthetic import MatchingData, matching_model, synthetic_matching


@dataclass(frozen=True)
class Config:
    """Tolerances and options for one backend in this suite."""

    options: dict
    objective_rtol: float  # |objective - optimum| / max(1, |optimum|)
    feasibility_atol: float = 1e-6  # of the returned primal, when the backend says it is feasible


CONFIG = {
    "highs": Config(options={}, objective_rtol=1e-8),
    "dualip": Config(options=dict(tol=1e-4, max_iter=20_000), objective_rtol=2e-4),
}
DEFAULT = Config(options={}, objective_rtol=1e-4)


@pytest.fixture(params=dm.registry.available())
def backend(request):
    name = request.param
    try:
        dm.registry.get(name)
    except ImportError as exc:  # a third-party backend whose dependencies are missing here
        pytest.skip(f"backend {name!r} does not import: {exc}")
    return name


def solve(model, backend, **extra):
    cfg = CONFIG.get(backend, DEFAULT)
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


def assert_feasible(model, res, atol):
    """Row bounds, block sums and column bounds of the standard form hold at the returned primal."""
    sf = res.standard_form
    x = res.primal(next(iter(model.variables)), labeled=False) if len(model.variables) == 1 else res.x_all
    xc = x if sf.layout.column_order is None else x[sf.layout.column_order]
    ax = sf.A @ xc
    assert (ax <= sf.row_upper + atol).all() and (ax >= sf.row_lower - atol).all()
    assert (xc >= sf.col_lower - atol).all() and (xc <= sf.col_upper + atol).all()
    sums = np.add.reduceat(np.append(xc, 0.0), sf.block_ptr[:-1]) * (np.diff(sf.block_ptr) > 0)
    has_sum = sf.block_kind != dm.BlockKind.BOX
    eq = np.isin(sf.block_kind, (dm.BlockKind.SIMPLEX_EQ, dm.BlockKind.BOXCUT_EQ))
    assert (sums[has_sum] <= sf.block_rhs[has_sum] + atol).all()
    assert (np.abs(sums[eq] - sf.block_rhs[eq]) <= atol).all()


def check_optimal(model, backend, **extra):
    ref = reference(model)
    res, cfg = solve(model, backend, **extra)
    assert res.status == dm.Status.OPTIMAL, res.message
    scale = max(1.0, abs(ref.objective))
    assert abs(res.objective - ref.objective) / scale <= cfg.objective_rtol
    sense = res.standard_form.layout.sense
    # the bound never crosses the optimum (lower bound when minimizing, upper when maximizing)
    assert sense * (res.bound - ref.objective) <= 1e-9 * scale
    if Capability.EXACT in dm.registry.get(backend).capabilities or any(
            g.startswith("primal: feasible") for g in res.guarantees):
        assert_feasible(model, res, cfg.feasibility_atol)
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


# ----------------------------------------------------------------------------------------- tests
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


def test_global_simplex_only_no_coupling_rows(backend):
    m = dm.Model()
    s = m.entities("s", 5)
    x = m.variable("x", over=s)
    m.maximize((np.array([1.0, 4.0, 2.0, 4.0, 0.5]) * x).sum())
    m.subject_to(x.sum() <= 3, name="total")
    res, _ = check_optimal(m, backend)
    assert res.objective == pytest.approx(12.0, rel=1e-6)


def test_infeasible_budget_is_reported(backend):
    require(backend, Capability.DETECTS_INFEASIBLE)
    m = small_matching(3)
    x = m.variables["x"]
    m.subject_to(x.sum() >= 10_000.0, name="impossible")  # at most one unit per user
    res, _ = solve(m, backend)
    assert res.status == dm.Status.INFEASIBLE


def test_bound_is_valid_even_at_the_iteration_limit(backend):
    m = small_matching(5, users=200, items=20)
    ref = reference(m)
    res, _ = solve(m, backend, **({"max_iter": 30} if backend == "dualip" else {}))
    if res.status == dm.Status.OPTIMAL:
        return
    assert res.status == dm.Status.ITERATION_LIMIT
    assert res.bound >= ref.objective - 1e-9 * abs(ref.objective)  # maximization: an upper bound
