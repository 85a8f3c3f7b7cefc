"""The dualip repair of equality blocks, floor rows and box-cut blocks against an LP oracle (HiGHS via scipy).

Random small models with A >= 0: users in `== r` or `<= r` blocks (simplex, or box-cut with x <= u), items with
capacities, and floors (a global revenue floor, per-item minimum deliveries as range rows). The candidate is
what the solver's check repairs: a point of the blocks near the optimum that violates rows (the LP optimum
moved by noise and projected back onto the blocks), or a point of the blocks anywhere.
"""

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.optimize import linprog

import dualip_model as dm
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.backends.dualip.projections import BlockStructure, project
from dualip_model.backends.dualip.repair import repair


def random_model(seed: int, equality: bool, box: float | None, floors: str, weighted: bool = True,
                 headroom: float = 1.0, tightness: float = 0.9, n_users: int = 14, n_items: int = 5):
    """A users x items allocation: users in `== r` (``equality``) or `<= r` blocks, simplex or box-cut with
    x <= ``box``; items with capacities (coefficients when ``weighted``, else ones) ``headroom``..``headroom``+1
    times their share of the users; ``floors``: "none", "global" (revenue >= ``tightness`` x the most revenue the
    other constraints allow, found by the oracle) or "item" (each item's delivery >= ``tightness`` x a random
    share of its capacity)."""
    rng = np.random.default_rng(seed)
    edges = np.unique(rng.integers(0, n_users * n_items, size=3 * n_users))
    user, item = edges // n_items, edges % n_items
    k = len(edges)
    cost = rng.normal(0.0, 1.0, k)
    rhs = np.where(np.isin(np.arange(n_users), user), 1.0, 0.0)
    if box is not None:  # a box-cut block holds its sum only if its columns can: r <= (columns) u
        rhs = np.minimum(rhs, box * np.bincount(user, minlength=n_users))
    weight = rng.uniform(0.2, 2.0, k) if weighted else np.ones(k)
    cap = rng.uniform(headroom, headroom + 1.0, n_items) * np.bincount(item, weights=weight, minlength=n_items)
    cap /= max(1, n_users // 4)
    rev = rng.uniform(0.1, 1.0, k)
    share = rng.uniform(0.0, 1.0, n_items)

    def build(floor):
        m = dm.Model("moves")
        users, items = m.entities("user", n_users), m.entities("item", n_items)
        e = m.edges("e", users, items, src=user, dst=item)
        x = m.variable("x", over=e, upper=np.inf if box is None else box)
        m.minimize((cost * x).sum())
        m.subject_to(x.sum(by=users) == rhs if equality else x.sum(by=users) <= rhs, name="users")
        m.subject_to((weight * x).sum(by=items) <= cap, name="cap")
        if floors == "item":
            m.subject_to((weight * x).sum(by=items) >= tightness * share * cap, name="delivery")
        if floor is not None:
            m.subject_to((rev * x).sum() >= floor, name="revenue")
        return m.compile()

    if floors != "global":
        return build(None)
    most = oracle(build(None), c=-rev)
    return build(tightness * float(rev @ most)) if most is not None else build(None)


def constraints(sf):
    """(A_ub, b_ub, A_eq, b_eq, bounds) of the model's rows and blocks, for linprog."""
    n = sf.n_cols
    A = sf.A.tocsr()
    lo, hi = sf.row_lower, sf.row_upper
    blocks = np.repeat(np.arange(sf.n_blocks), np.diff(sf.block_ptr))
    member = scipy.sparse.csr_matrix((np.ones(n), (blocks, np.arange(n))), shape=(sf.n_blocks, n))
    kind = np.asarray(sf.block_kind)
    eq, le = np.isin(kind, [2, 4]), np.isin(kind, [1, 3])
    A_ub = scipy.sparse.vstack([A[np.isfinite(hi)], -A[np.isfinite(lo)], member[le]]).tocsr()
    b_ub = np.concatenate([hi[np.isfinite(hi)], -lo[np.isfinite(lo)], sf.block_rhs[le]])
    upper = np.broadcast_to(sf.col_upper, n)
    bounds = list(zip(np.broadcast_to(sf.col_lower, n), np.where(np.isinf(upper), None, upper)))
    return A_ub, b_ub, member[eq], sf.block_rhs[eq], bounds


def oracle(sf, c=None):
    """HiGHS's optimum x of min c^T x (default: the model's) over the rows and blocks, None if infeasible."""
    A_ub, b_ub, A_eq, b_eq, bounds = constraints(sf)
    lp = linprog(sf.c if c is None else c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq if A_eq.shape[0] else None,
                 b_eq=b_eq if A_eq.shape[0] else None, bounds=bounds, method="highs")
    return lp.x if lp.status == 0 else None


def distance(sf, x):
    """min ||x' - x||_1 over the feasible x' (the least change any fix needs), by HiGHS."""
    A_ub, b_ub, A_eq, b_eq, bounds = constraints(sf)
    n, eye = sf.n_cols, scipy.sparse.identity(sf.n_cols, format="csr")
    zeros = scipy.sparse.csr_matrix((A_ub.shape[0], n))
    ub = scipy.sparse.vstack([scipy.sparse.hstack([A_ub, zeros]), scipy.sparse.hstack([eye, -eye]),
                              scipy.sparse.hstack([-eye, -eye])])
    eq = scipy.sparse.hstack([A_eq, scipy.sparse.csr_matrix((A_eq.shape[0], n))]) if A_eq.shape[0] else None
    lp = linprog(np.concatenate([np.zeros(n), np.ones(n)]), A_ub=ub, b_ub=np.concatenate([b_ub, x, -x]),
                 A_eq=eq, b_eq=b_eq if A_eq.shape[0] else None, bounds=bounds + [(0, None)] * n, method="highs")
    assert lp.status == 0
    return float(lp.fun)


def candidate(sf, p, start, noise, seed):
    """start moved by noise (relative to its scale) and projected onto the blocks exactly."""
    rng = np.random.default_rng(seed)
    v = start + noise * rng.normal(0.0, 1.0, sf.n_cols) * (1.0 + np.abs(start))
    bs = BlockStructure.from_standard_form(sf, torch.device("cpu"), torch.float64)
    return project(torch.as_tensor(v), bs)


def violations(sf, x):
    """(largest row violation relative to 1 + |side|, largest block violation relative to 1 + r, below bounds)."""
    ax = sf.A @ x
    rows = np.maximum(ax - sf.row_upper, 0) / (1 + np.abs(sf.row_upper))
    rows = np.maximum(rows, np.maximum(sf.row_lower - ax, 0) / (1 + np.abs(sf.row_lower)))
    sums = np.bincount(np.repeat(np.arange(sf.n_blocks), np.diff(sf.block_ptr)), weights=x, minlength=sf.n_blocks)
    kind = np.asarray(sf.block_kind)
    eq = np.isin(kind, [2, 4])
    blocks = np.where(eq, np.abs(sums - sf.block_rhs), np.maximum(sums - sf.block_rhs, 0)) / (1 + sf.block_rhs)
    box = max(float(np.max(-x, initial=0)), float(np.max(x - np.broadcast_to(sf.col_upper, x.shape), initial=0)))
    return float(rows.max(initial=0)), float(blocks.max(initial=0)), box


def build(sf, storage="fast", dtype=torch.float64):
    return ScaledProblem.build(sf, torch.device("cpu"), dtype, storage=storage)


def check_repair(sf, p, x):
    """The repaired point, after checking it against the LP oracle: in its blocks always; exactly feasible (1e-9
    relative) and its objective above the candidate's by at most FIX_COST times what the least fix can change
    (max |c| times the oracle's L1 distance from x to the feasible set)."""
    xr = repair(x.clone(), p.A @ x, p).numpy()
    rows, blocks, box = violations(sf, xr)
    assert blocks <= 1e-12 and box <= 1e-12
    assert rows <= 1e-9
    xn = x.numpy()
    assert sf.c @ xr - sf.c @ xn <= FIX_COST * np.abs(sf.c).max() * distance(sf, xn) + 1e-12
    return xr


FIX_COST = 6.0  # the greedy changes the objective by at most a few times what the least L1 change a fix can


def test_fix_cost_bound_is_tight_enough_to_fail():
    """The objective bound of check_repair rejects a repair that moves mass it need not move."""
    sf = random_model(0, equality=True, box=None, floors="none")
    xs = oracle(sf)
    p = build(sf)
    x = candidate(sf, p, xs, 1e-3, 0)
    worst = oracle(sf, c=-sf.c)  # feasible, and as costly as it gets
    assert sf.c @ worst - sf.c @ x.numpy() > FIX_COST * np.abs(sf.c).max() * distance(sf, x.numpy())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("box", [None, 0.6])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("noise", [1e-3, 1e-1])
def test_equality_blocks_are_repaired_exactly(seed, box, weighted, noise):
    """`== r` blocks (simplex, box-cut) with capacities that leave room: the cut's lost mass goes back."""
    sf = random_model(seed, equality=True, box=box, floors="none", weighted=weighted)
    xs = oracle(sf)
    if xs is None:
        pytest.skip("the oracle finds no feasible point")
    p = build(sf)
    assert p.repairable and not p.zero_feasible
    check_repair(sf, p, candidate(sf, p, xs, noise, seed))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("equality", [False, True])
@pytest.mark.parametrize("box", [None, 0.6])
@pytest.mark.parametrize("floors", ["global", "item", "none"])
def test_floors_are_met_exactly(seed, equality, box, floors):
    """A revenue floor at 0.9 of the most revenue the capacities allow, or per-item minimum deliveries, next to
    the capacities: raised with block room, or moved within full blocks."""
    sf = random_model(seed, equality=equality, box=box, floors=floors)
    xs = oracle(sf)
    if xs is None:
        pytest.skip("the oracle finds no feasible point")
    p = build(sf)
    assert p.repairable and p.zero_feasible == (floors == "none" and not equality)  # (box-cut `<=`: the cut)
    for noise in (1e-3, 1e-1):
        check_repair(sf, p, candidate(sf, p, xs, noise, seed))


def users_and(name: str, seed: int, users: int, other: str, others: int):
    """(model, rng, user entities, the other entities, x over the edges, each edge's user): about four random edges
    per user, repeats dropped."""
    rng = np.random.default_rng(seed)
    edges = np.unique(rng.integers(0, users * others, size=4 * users))
    user = edges // others
    m = dm.Model(name)
    u, o = m.entities("user", users), m.entities(other, others)
    x = m.variable("x", over=m.edges("e", u, o, src=user, dst=edges % others))
    return m, rng, u, o, x, user


def assignment(seed: int, users: int = 60, tasks: int = 8) -> dm.Model:
    """`== 1` blocks (each user does one task, split as it likes), task capacities with 25% headroom, minimize."""
    m, rng, u, t, x, user = users_and("assignment", seed, users, "task", tasks)
    m.minimize((rng.uniform(1.0, 2.0, len(user)) * x).sum())
    active = np.isin(np.arange(users), user).astype(float)
    m.subject_to(x.sum(by=u) == active, name="one")
    m.subject_to(x.sum(by=t) <= 1.25 * active.sum() / tasks, name="capacity")
    return m


def revenue_floor(seed: int, users: int = 60, items: int = 8) -> dm.Model:
    """Ad allocation: users at most one impression, item budgets, a global revenue floor that binds."""
    m, rng, u, i, x, user = users_and("floor", seed, users, "item", items)
    value, rev = rng.uniform(0.5, 1.5, len(user)), rng.uniform(0.1, 1.0, len(user))
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=u) <= 1.0, name="cap")
    m.subject_to((rev * x).sum(by=i) <= 0.3 * users / items, name="budget")
    m.subject_to((rev * x).sum() >= 0.95 * 0.3 * users * (1 - 0.5 / items), name="revenue")
    return m


@pytest.mark.parametrize("make", [assignment, revenue_floor])
@pytest.mark.parametrize("seed", range(3))
def test_dualip_returns_an_exactly_feasible_primal(make, seed):
    """The solves the issue reported as OPTIMAL with rows violated by 5e-4..5e-3: every row now holds to 1e-9
    relative to (1 + |side|), at HiGHS's objective within tol; the guarantee says the x was repaired."""
    model = make(seed)
    ref = model.solve("highs")
    res = model.solve("dualip", tol=1e-4, max_iter=20000)
    assert res.status == dm.Status.OPTIMAL, res.message
    sf = res.standard_form
    x = res.raw.x
    assert violations(sf, x)[0] <= 1e-9
    assert abs(res.objective - ref.objective) <= 2e-4 * max(1.0, abs(ref.objective))
    assert any(g.startswith("primal: feasible, repaired") for g in res.guarantees)


def test_a_thin_instance_falls_short_in_its_rows_never_in_its_blocks():
    """Capacities with little headroom and coefficients that differ per edge: the fix must reroute mass between
    tight rows (a generalized flow), which the greedy does not do. The result stays in its blocks, the rows it
    misses are there to measure, and a solve never calls such a primal feasible by construction."""
    sf = random_model(1, equality=True, box=None, floors="none", weighted=True, headroom=0.6)
    assert oracle(sf) is not None  # a feasible point exists
    p = build(sf)
    x = candidate(sf, p, oracle(sf), 1e-3, 1)
    rows, blocks, box = violations(sf, repair(x.clone(), p.A @ x, p).numpy())
    assert blocks <= 1e-12 and box <= 1e-12
    assert rows > 1e-6
    assert not p.zero_feasible


def test_repair_kind_follows_the_structure():
    """"cut" (x = 0 feasible), "moves" (equality blocks, floors), None (negative coefficients or sides, columns
    not from 0); a row with l_r <= 0 holds for every x >= 0 and keeps the cut class."""
    from dualip_model.backends.dualip.problem import _repairable

    def model(block="<=", floor=None, coef=1.0, lower=0.0):
        m = dm.Model("kind")
        users, items = m.entities("user", 2), m.entities("item", 2)
        e = m.edges("e", users, items, src=[0, 0, 1], dst=[0, 1, 1])
        x = m.variable("x", over=e, lower=lower)
        m.minimize(x.sum())
        m.subject_to(x.sum(by=users) <= 1.0 if block == "<=" else x.sum(by=users) == 1.0, name="users")
        m.subject_to((coef * x).sum(by=items) <= 2.0, name="cap")
        if floor is not None:
            m.subject_to(x.sum() >= floor, name="floor")
        return m.compile()

    assert _repairable(model()) == "cut"
    assert _repairable(model(floor=-1.0)) == "cut"
    assert _repairable(model(floor=0.5)) == "moves"
    assert _repairable(model(block="==")) == "moves"
    assert _repairable(model(coef=-1.0)) is None
    assert _repairable(model(lower=0.1)) is None


@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("floors", ["none", "global", "item"])
def test_float32_and_compact_storage_repair_to_their_rounding(storage, floors):
    """In float32 (values rounded up where the repair applies) every row holds to float32 rounding; the compact
    storage (A's rows in the repair's order, chunked products) gives the fast storage's point."""
    sf = random_model(3, equality=True, box=None, floors=floors)
    xs = oracle(sf)
    p64, p32 = build(sf, storage), build(sf, storage, torch.float32)
    x = candidate(sf, p64, xs, 1e-2, 3)
    x32 = x.to(torch.float32)
    xr = repair(x32.clone(), p32.A @ x32, p32).double().numpy()
    rows, blocks, box = violations(sf, xr)
    assert rows <= 1e-5 and blocks <= 1e-6 and box <= 1e-6
    fast = repair(x.clone(), build(sf).A @ x, build(sf)).numpy()
    np.testing.assert_allclose(repair(x.clone(), p64.A @ x, p64).numpy(), fast, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("box", [None, 0.6])
def test_a_floor_met_before_the_moves_stays_met(seed, box):
    """The floor and deficit moves take from a met floor only what leaves it met (repair.floor_surplus): at
    l (1 + FLOOR_ULPS eps), the level floor_need counts as met, not at l, where it would turn into a need of its
    rounding room and draw the next pass's moves."""
    from dualip_model.backends.dualip import repair as repair_module

    sf = random_model(seed, equality=False, box=box, floors="item", tightness=0.95)
    p = build(sf)
    best = oracle(sf)
    if best is None:
        pytest.skip("the oracle finds no feasible point")
    plan = p.repair_plan
    for noise in (1e-2, 0.3):
        x = candidate(sf, p, best, noise, seed)
        cut = repair_module.shrink_blocks(repair_module.cut_rows(x.clone(), p.A @ x, p.row_upper, plan), p.blocks)
        met = (p.row_lower > 0) & (repair_module.floor_need(p.row_lower, p.A @ cut) == 0)
        moved = repair_module.repair_moves(cut.clone(), p)
        # (within the rounding of A x: well below the FLOOR_ULPS room a floor taken down to l would leave unmet)
        rounding = repair_module.FLOOR_ULPS / 2 * torch.finfo(torch.float64).eps * p.row_lower
        assert not bool((repair_module.floor_need(p.row_lower, p.A @ moved) > rounding)[met].any())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("equality, box, floors", [(True, None, "none"), (True, None, "global"), (False, None, "item"),
                                                   (True, 0.6, "item"), (False, 0.6, "global"), (True, None, "item")])
def test_fused_cpu_moves_are_the_torch_moves(seed, equality, box, floors):
    """fused_cpu's C++ repair runs repair_moves' passes too (equality blocks, floors, box-cut blocks): from the same
    cut and shrunk point, the torch passes' point to rounding, near the optimum and far from it. The whole C++ repair
    then meets every row and block as the torch one does (its cut may round differently, and the passes' ties
    then pick other columns: another feasible point)."""
    from dualip_model.backends.dualip import repair as repair_module
    from dualip_model.backends.dualip.fused_cpu import FusedCpu, compiler_found

    if not compiler_found():
        pytest.skip("no C++ compiler to build the fused extension with")
    sf = random_model(seed, equality=equality, box=box, floors=floors)
    p = build(sf)
    fused = FusedCpu(p)
    assert p.repair_plan.moves
    best = oracle(sf)  # None: no feasible point (the passes still run)
    plan = p.repair_plan
    for noise, start in [(1e-2, best), (0.3, best), (1.0, np.zeros(sf.n_cols))]:
        if start is None:
            continue
        x = candidate(sf, p, start, noise, seed)
        cut = repair_module.shrink_blocks(repair_module.cut_rows(x.clone(), p.A @ x, p.row_upper, plan), p.blocks)
        expect = repair_module.repair_moves(cut.clone(), p)
        got = cut.clone()
        ax = fused.moves(got)
        np.testing.assert_allclose(got.numpy(), expect.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ax.numpy(), (p.A @ got).numpy(), rtol=1e-12, atol=1e-12)
        if best is not None:
            torch_rows = violations(sf, repair(x.clone(), p.A @ x, p).numpy())[0]
            rows, blocks, bounds = violations(sf, fused.repair(x.clone(), p.A @ x).numpy())
            assert blocks <= 1e-12 and bounds <= 1e-12 and rows <= max(torch_rows * (1 + 1e-9), 1e-9)
