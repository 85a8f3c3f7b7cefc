"""The dualip primal repair: always feasible, the greedy row cut optimal per row, the fill never worse.

Random repairable problems (A >= 0, rows <= u with u >= 0, simplex/box blocks at 0) are built through the
modeling layer; the oracle for the cut is the fractional-knapsack LP solved exactly by scipy.
"""

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

import dualip_model as dm
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.backends.dualip.repair import cut_rows, fill_slack, repair, row_slack, shrink_blocks


def random_problem(seed: int, rows_per_col: int, box_users: bool = False, storage: str = "fast") -> ScaledProblem:
    """A matching-like model: users (simplex blocks, or boxes) x items, each edge in ``rows_per_col`` rows."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 12, 5
    keys = rng.choice(n_users * n_items, size=30, replace=False)
    user, item = np.sort(keys) // n_items, np.sort(keys) % n_items
    m = dm.Model("repair")
    users, items = m.entities("user", n_users), m.entities("item", n_items)
    e = m.edges("e", users, items, src=user, dst=item)
    x = m.variable("x", over=e, upper=0.7 if box_users else np.inf)
    m.minimize((-rng.random(30) * x).sum())
    if not box_users:
        m.subject_to(x.sum(by=users) <= rng.uniform(0.5, 2.0, n_users), name="cap")
    m.subject_to((rng.uniform(0.1, 2.0, 30) * x).sum(by=items) <= rng.uniform(0.0, 1.0, n_items), name="budget")
    if rows_per_col > 1:
        m.subject_to((rng.uniform(0.0, 1.0, 30) * x).sum() <= 1.5, name="global")
    return ScaledProblem.build(m.compile(), torch.device("cpu"), torch.float64, storage=storage)


def violation(p: ScaledProblem, x: torch.Tensor) -> float:
    return float((p.A @ x - p.row_upper).clamp(min=0).max())


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("rows_per_col", [1, 2])
@pytest.mark.parametrize("box_users", [False, True])
@pytest.mark.parametrize("storage", ["fast", "compact"])
def test_repair_is_feasible_and_stays_in_the_blocks(seed, rows_per_col, box_users, storage):
    p = random_problem(seed, rows_per_col, box_users, storage)
    upper = torch.as_tensor(p.blocks.upper, dtype=torch.float64).expand(p.n)
    x = torch.minimum(torch.as_tensor(np.random.default_rng(seed).uniform(0, 1.5, p.n)), upper)  # in the boxes
    xr = repair(x, p.A @ x, p)
    assert violation(p, xr) <= 1e-12
    assert float(xr.min()) >= 0
    assert bool((xr <= upper + 1e-12).all())
    sums = torch.segment_reduce(xr, "sum", offsets=p.blocks.offsets)
    assert bool((sums[~p.blocks.is_box] <= p.blocks.rhs[~p.blocks.is_box] + 1e-12).all())


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("chunk", [None, 1, 4])
def test_row_cut_is_the_optimal_fractional_knapsack_removal(seed, storage, chunk):
    """With one row per column, the greedy cut loses the least objective: LP min c^T x' s.t. row cut.

    ``chunk``: the running use is scanned that many entries at a time (rows split over chunks carry on)."""
    p = random_problem(seed, rows_per_col=1, storage=storage)
    x = torch.as_tensor(np.random.default_rng(100 + seed).uniform(0, 1.0, p.n))
    ax = p.A @ x
    xc = cut_rows(x, ax, p.row_upper, p.repair_plan, chunk=chunk)
    np.testing.assert_allclose(xc.numpy(), cut_rows(x, ax, p.row_upper, p.repair_plan).numpy(), rtol=1e-13,
                               atol=1e-15)
    A = p.A.to_dense()
    A, c, xn, u = A.numpy(), p.c.numpy(), x.numpy(), p.row_upper.numpy()
    # oracle: choose 0 <= x' <= x with A x' <= max(u, A x restricted to unviolated rows), minimizing c^T x'
    cap = np.where(A @ xn > u, u, A @ xn)
    lp = linprog(c, A_ub=A, b_ub=cap, bounds=list(zip(np.zeros(p.n), xn)), method="highs")
    assert lp.status == 0
    assert float(c @ xc.numpy()) == pytest.approx(lp.fun, abs=1e-9)
    assert violation(p, xc) <= 1e-12


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_fill_keeps_feasibility_and_never_worsens(seed, storage, chunk):
    """``chunk``: the raises are chosen that many columns (whole blocks) at a time, with the same result."""
    p = random_problem(seed, rows_per_col=2, storage=storage)
    x = torch.as_tensor(np.random.default_rng(200 + seed).uniform(0, 0.3, p.n))
    x = shrink_blocks(cut_rows(x, p.A @ x, p.row_upper, p.repair_plan), p.blocks)
    filled = fill_slack(x, p.c, p.A, p.At, p.row_upper, p.blocks, chunk=chunk)
    np.testing.assert_array_equal(filled.numpy(), fill_slack(x, p.c, p.A, p.At, p.row_upper, p.blocks).numpy())
    assert violation(p, filled) <= 1e-12
    assert bool((filled >= x).all())
    assert float(p.c @ filled) <= float(p.c @ x)
    sums = torch.segment_reduce(filled, "sum", offsets=p.blocks.offsets)
    assert bool((sums <= p.blocks.rhs + 1e-12).all())


def test_fill_shares_the_spare_capacity_among_tied_columns():
    """Tied best columns share the raise, so the block sum stays <= r."""
    m = dm.Model("ties")
    users, items = m.entities("user", 1), m.entities("item", 3)
    e = m.edges("e", users, items, src=[0, 0, 0], dst=[0, 1, 2])
    x = m.variable("x", over=e)
    m.minimize((-1.0 * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="cap")
    m.subject_to(x.sum(by=items) <= 10.0, name="budget")
    p = ScaledProblem.build(m.compile(), torch.device("cpu"), torch.float64)
    filled = fill_slack(torch.zeros(3, dtype=torch.float64), p.c, p.A, p.At, p.row_upper, p.blocks)
    assert float(filled.sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(filled.numpy(), [1 / 3] * 3, rtol=1e-15)


def unbounded_row_problem() -> ScaledProblem:
    """4 users (sum <= 1) x 2 items; item 0's row has no upper bound, item 1's is <= 1.5."""
    m = dm.Model("free row")
    users, items = m.entities("user", 4), m.entities("item", 2)
    e = m.edges("e", users, items, src=[0, 0, 1, 2, 3, 3], dst=[0, 1, 0, 1, 0, 1])
    x = m.variable("x", over=e)
    m.minimize((-np.arange(1.0, 7.0) * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="cap")
    m.subject_to(x.sum(by=items) <= np.array([np.inf, 1.5]), name="budget")
    return ScaledProblem.build(m.compile(), torch.device("cpu"), torch.float64)


def test_a_row_without_upper_bound_never_blocks_the_fill():
    """Each user raises its best column; item 1's three raises share its 1.5, item 0's (no bound) stays whole."""
    p = unbounded_row_problem()
    filled = repair(torch.zeros(p.n, dtype=torch.float64), torch.zeros(p.m, dtype=torch.float64), p)
    np.testing.assert_allclose(filled.numpy(), [0.0, 0.5, 1.0, 0.5, 0.0, 0.5], rtol=1e-15)


def rounding_tight_problem() -> tuple[ScaledProblem, torch.Tensor]:
    """2 users x 2 items and a start where user 1 fills item 0's row up to a few ulps (as the cut leaves a row)."""
    m = dm.Model("tight")
    users, items = m.entities("user", 2), m.entities("item", 2)
    e = m.edges("e", users, items, src=[0, 0, 1], dst=[0, 1, 0])
    x = m.variable("x", over=e)
    m.minimize((np.array([-2.0, -1.0, -3.0]) * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="cap")
    m.subject_to((np.array([0.7, 1.0, 0.7]) * x).sum(by=items) <= np.array([0.7, 1.0]), name="budget")
    p = ScaledProblem.build(m.compile(), torch.device("cpu"), torch.float64)
    return p, torch.tensor([0.0, 0.0, 1.0 - 4e-16], dtype=torch.float64)


def test_a_row_open_by_rounding_alone_counts_as_tight():
    """User 0's better edge (on item 0) could take nothing, so its spare goes to its edge on item 1; with the
    ulps counted as slack the raise went to item 0 and was scaled down to nothing."""
    p, start = rounding_tight_problem()
    slack = row_slack(p.row_upper, p.A @ start)
    assert float(slack[0]) == 0.0 and float(slack[1]) > 0.0
    filled = fill_slack(start, p.c, p.A, p.At, p.row_upper, p.blocks)
    np.testing.assert_allclose(filled.numpy(), [0.0, 1.0, 1.0 - 4e-16], rtol=1e-15)


@pytest.mark.parametrize("shape", ["balanced", "one long row"])
@pytest.mark.parametrize("group", [1 << 22, 3])
def test_repair_order_sorts_each_row_by_density_stably(shape, group):
    """Both ways of sorting (a padded table per row when rows have similar lengths, else two global sorts),
    over all rows at once or a few entries of whole rows at a time (``group``), give each row's entries by
    c_j / a_rj descending, ties in column order."""
    import scipy.sparse

    from dualip_model.backends.dualip.repair import RepairPlan

    rng = np.random.default_rng(7)
    for trial in range(50):
        m, n = int(rng.integers(1, 7)), int(rng.integers(2, 15))
        dense = (rng.random((m, n)) < 0.6) * rng.choice([0.5, 1.0, 2.0], (m, n))  # ties in a_rj
        if shape == "one long row":
            dense[0] = rng.choice([0.5, 1.0], n)
            dense[1:, 1:] = 0.0
        A = scipy.sparse.csr_matrix(dense)
        c = rng.choice([-1.0, 0.0, 1.0, 2.0], n)  # ties in c_j
        expect = []
        for r in range(m):
            entries = range(A.indptr[r], A.indptr[r + 1])
            expect += sorted(entries, key=lambda e: (-c[A.indices[e]] / A.data[e], e))
        np.testing.assert_array_equal(RepairPlan.order(A, c, group=group), expect)


def test_repair_order_of_more_rows_than_16_bit_keys():
    """Past 2^16 rows (one long row among many short ones: the two global sorts) the row sort is torch's, with the
    same result: each row by c_j / a_rj descending, ties in column order."""
    import scipy.sparse

    from dualip_model.backends.dualip.repair import RepairPlan

    rng = np.random.default_rng(3)
    m, long_row = (1 << 16) + 5, 300
    rows = np.concatenate([np.zeros(long_row, dtype=np.int64), np.arange(1, m)])
    cols = np.concatenate([np.arange(long_row), rng.integers(0, long_row, m - 1)])
    A = scipy.sparse.csr_matrix((rng.choice([0.5, 1.0], rows.size), (rows, cols)), shape=(m, long_row))
    c = rng.choice([-1.0, 0.0, 1.0, 2.0], long_row)
    density = c[A.indices] / A.data
    entry_rows = np.repeat(np.arange(m), np.diff(A.indptr))
    expect = np.lexsort((np.arange(A.nnz), -density, entry_rows))
    np.testing.assert_array_equal(RepairPlan.order(A, c), expect)
