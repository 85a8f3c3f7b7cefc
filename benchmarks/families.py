"""Five block-structured LP families (issue 20), each a seeded Model of about ``nnz`` coupling nonzeros.

    max/min  sum_e v_e x_e   s.t.  x_u in C_u for every user u (one block: sum_i x_ui <= 1, == 1, or a box cut),
                                   coupling rows per item and global rows,  x >= 0

Every generator takes ``nnz``, the target size of the coupling matrix A (``StandardForm.nnz``: one entry per
edge and coupling row it enters; the block sums are not counted), and a seed; it sizes its entity sets so
that A lands within a few percent of ``nnz``. Data are numpy arrays and the models are built columnar with
the modeling API (no Python object per edge). Each family is feasible by construction: its floors and
capacities are set around an explicit feasible point (a uniform or greedy allocation), so every solver has
an optimum to find, and the coupling rows bind at it (checked against HiGHS in tests/test_benchmarks.py).

- ``power_law``: item popularity Zipf(1.1) over 2,000 items, 5 edges per user, lognormal values, per-item budgets.
- ``few_users_per_item``: as many items as users, 5 uniform edges per user (about 5 users per item), capacities.
- ``multi_objective``: per-item budgets, two global floors (>= rows) and one global cap (a <= row).
- ``assignment``: every agent assigned exactly once (== 1 blocks), weighted task capacities, minimize cost.
- ``guaranteed_delivery``: 0 <= x <= 0.5 with sum_i x_ui <= 1 (box-cut blocks), a floor and a cap per campaign.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import dualip_model as dm

EDGES_PER_USER = 5
ZIPF_EXPONENT = 1.1
POWER_LAW_ITEMS = 2_000
DRAWS_PER_EDGE = 3  # items drawn per kept edge: repeats of a popular item are dropped, 3x leaves enough distinct
BUDGET_FRACTION = 0.5  # budgets and capacities: this share of a uniform allocation's use, so many bind
PROMOTED_EVERY = 5  # multi_objective: every fifth item is promoted (the global cap counts their exposure)
USERS_PER_ITEM = 100  # multi_objective's items: users / 100 (as the matching benchmark)
AGENTS_PER_TASK = 50
USERS_PER_CAMPAIGN = 100
BOX_UPPER = 0.5  # guaranteed_delivery's per-edge bound: no campaign takes more than half a user's supply


def draw_edges(rng: np.random.Generator, n_users: int, n_items: int, k: int,
               p: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) of k distinct items per user (fewer only if the draws repeat), items with probabilities p.

    Each user draws ``DRAWS_PER_EDGE * k`` items (uniform when p is None) and keeps its first k distinct ones;
    edges come out sorted by user, items in draw order.
    """
    draws = DRAWS_PER_EDGE * k
    item = (rng.integers(0, n_items, size=n_users * draws) if p is None
            else rng.choice(n_items, size=n_users * draws, p=p))
    user = np.repeat(np.arange(n_users, dtype=np.int64), draws)
    _, first = np.unique(user * n_items + item, return_index=True)  # first draw of each distinct (user, item)
    first.sort()
    owner = user[first]
    rank = np.arange(first.shape[0]) - np.searchsorted(owner, owner)  # position among the user's distinct items
    keep = first[rank < k]
    return user[keep].astype(np.int32), item[keep].astype(np.int32)


def uniform_share(user: np.ndarray, n_users: int) -> np.ndarray:
    """x0_e = 1 / deg(user(e)): every user spread evenly over its edges (a point of every family's blocks)."""
    degree = np.bincount(user, minlength=n_users)
    return 1.0 / degree[user]


def per_item(item: np.ndarray, weights: np.ndarray, n_items: int) -> np.ndarray:
    """sum_{e: item(e) = i} weights_e for every item i."""
    return np.bincount(item, weights=weights, minlength=n_items)


def budgets(rng: np.random.Generator, use: np.ndarray) -> np.ndarray:
    """BUDGET_FRACTION x ``use`` (an allocation's per-item use) x lognormal(0, 0.5), at least 1e-3."""
    return np.maximum(BUDGET_FRACTION * use * rng.lognormal(0.0, 0.5, size=use.shape[0]), 1e-3)


def edge_model(name: str, n_users: int, n_items: int, user: np.ndarray, item: np.ndarray,
               upper: float = np.inf, item_set: str = "item", user_set: str = "user"):
    """(model, users, items, x): x >= 0 (and <= upper) over the edges (user[k], item[k])."""
    m = dm.Model(name)
    users = m.entities(user_set, n_users)
    items = m.entities(item_set, n_items)
    edges = m.edges("edge", users, items, src=user, dst=item)
    x = m.variable("x", over=edges, lower=0.0, upper=upper)
    return m, users, items, x


def power_law(nnz: int, seed: int = 0) -> dm.Model:
    """Zipf(1.1) item popularity over 2,000 items, 5 edges per user: max v^T x, sum_i x_ui <= 1, budgets per item.

    Users: nnz / 5. Values and costs lognormal(0, 1) and (0, 0.5); budget_i: half the spend of the uniform
    allocation x0 on item i times lognormal(0, 0.5), so the popular items' budgets bind hard.
    """
    rng = np.random.default_rng(seed)
    n_users = max(1, round(nnz / EDGES_PER_USER))
    rank = rng.permutation(POWER_LAW_ITEMS) + 1  # item i is the rank[i]-th most popular
    p = rank.astype(np.float64) ** -ZIPF_EXPONENT
    user, item = draw_edges(rng, n_users, POWER_LAW_ITEMS, EDGES_PER_USER, p / p.sum())
    value = rng.lognormal(0.0, 1.0, size=user.shape[0])
    cost = rng.lognormal(0.0, 0.5, size=user.shape[0])
    budget = budgets(rng, per_item(item, cost * uniform_share(user, n_users), POWER_LAW_ITEMS))
    m, users, items, x = edge_model("power_law", n_users, POWER_LAW_ITEMS, user, item)
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="one_per_user")
    m.subject_to((cost * x).sum(by=items) <= budget, name="budget")
    return m


def few_users_per_item(nnz: int, seed: int = 0) -> dm.Model:
    """As many items as users, 5 uniform edges per user (about 5 users per item): max v^T x, capacities per item.

    Users = items = nnz / 5; values lognormal(0, 1); capacity_i (a count, coefficient 1): half the load of
    the uniform allocation x0 on item i times lognormal(0, 0.5).
    """
    rng = np.random.default_rng(seed)
    n = max(EDGES_PER_USER, round(nnz / EDGES_PER_USER))
    user, item = draw_edges(rng, n, n, EDGES_PER_USER)
    value = rng.lognormal(0.0, 1.0, size=user.shape[0])
    capacity = budgets(rng, per_item(item, uniform_share(user, n), n))
    m, users, items, x = edge_model("few_users_per_item", n, n, user, item)
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="one_per_user")
    m.subject_to(x.sum(by=items) <= capacity, name="capacity")
    return m


def greedy(score: np.ndarray, user: np.ndarray, item: np.ndarray, cost: np.ndarray, budget: np.ndarray,
           n_users: int) -> np.ndarray:
    """Each user's best-scoring edge set to 1, then every item's edges scaled down to its budget: a feasible x."""
    order = np.lexsort((-score, user))  # by user, best score first
    x = np.zeros(user.shape[0])
    firsts = order[np.searchsorted(user[order], np.arange(n_users))[np.bincount(user, minlength=n_users) > 0]]
    x[firsts] = 1.0
    spend = per_item(item, cost * x, budget.shape[0])
    scale = np.minimum(1.0, budget / np.maximum(spend, 1e-300))
    return x * scale[item]


def multi_objective(nnz: int, seed: int = 0) -> dm.Model:
    """Max clicks + 0.1 revenue, sum_i x_ui <= 1, per-item budgets, 2 global floors (>=) and 1 global cap (<=).

    5 uniform edges per user, items = users / 100. Floors on revenue and conversions, a cap on the exposure
    of promoted items (every fifth item); all three sit at their values at the mean of three feasible greedy
    allocations (best revenue, best conversions, best unpromoted edge per user, each scaled into the
    budgets), so the model is feasible and the floors and the cap bind at the value-maximizing optimum.
    A has about 3.2 entries per edge (budget row, two floors, the cap on promoted edges).
    """
    rng = np.random.default_rng(seed)
    per_edge = 3.0 + 1.0 / PROMOTED_EVERY
    n_users = max(USERS_PER_ITEM, round(nnz / (EDGES_PER_USER * per_edge)))
    n_items = max(EDGES_PER_USER, n_users // USERS_PER_ITEM)
    user, item = draw_edges(rng, n_users, n_items, EDGES_PER_USER)
    e = user.shape[0]
    clicks, revenue, conversions = (rng.lognormal(0.0, s, size=e) for s in (1.0, 0.75, 0.5))
    cost = rng.lognormal(0.0, 0.5, size=e)
    promoted = (item % PROMOTED_EVERY == 0).astype(np.float64)
    budget = budgets(rng, per_item(item, cost * uniform_share(user, n_users), n_items))
    feasible = sum(greedy(score / cost, user, item, cost, budget, n_users)
                   for score in (revenue, conversions, clicks - promoted * clicks.max())) / 3.0
    m, users, items, x = edge_model("multi_objective", n_users, n_items, user, item)
    m.maximize({"clicks": (clicks * x).sum(), "revenue": (revenue * x).sum()}, weights={"revenue": 0.1})
    m.subject_to(x.sum(by=users) <= 1.0, name="one_per_user")
    m.subject_to((cost * x).sum(by=items) <= budget, name="budget")
    m.subject_to((revenue * x).sum() >= float(revenue @ feasible), name="revenue_floor")
    m.subject_to((conversions * x).sum() >= float(conversions @ feasible), name="conversion_floor")
    m.subject_to((promoted * x).sum() <= float(promoted @ feasible), name="promotion_cap")
    return m


def assignment(nnz: int, seed: int = 0) -> dm.Model:
    """Min cost, sum_i x_ui == 1 per agent (every agent assigned once), sum_u w_ui x_ui <= capacity_i per task.

    Agents: nnz / 5, 5 uniform tasks each, tasks = agents / 50; costs lognormal(0, 1), work w lognormal(0, 0.25);
    capacity_i: the load of the uniform assignment x0 on task i times uniform(1, 1.5), so x0 is feasible
    and the cheap tasks fill up.
    """
    rng = np.random.default_rng(seed)
    n_agents = max(AGENTS_PER_TASK, round(nnz / EDGES_PER_USER))
    n_tasks = max(EDGES_PER_USER, n_agents // AGENTS_PER_TASK)
    user, item = draw_edges(rng, n_agents, n_tasks, EDGES_PER_USER)
    cost = rng.lognormal(0.0, 0.5, size=n_tasks)[item] * rng.lognormal(0.0, 0.5, size=user.shape[0])
    work = rng.lognormal(0.0, 0.25, size=user.shape[0])
    load = per_item(item, work * uniform_share(user, n_agents), n_tasks)
    capacity = load * rng.uniform(1.0, 1.5, size=n_tasks)
    m, agents, tasks, x = edge_model("assignment", n_agents, n_tasks, user, item, user_set="agent", item_set="task")
    m.minimize((cost * x).sum())
    m.subject_to(x.sum(by=agents) == 1.0, name="assign_once")
    m.subject_to((work * x).sum(by=tasks) <= capacity, name="capacity")
    return m


def guaranteed_delivery(nnz: int, seed: int = 0) -> dm.Model:
    """Max v^T x, 0 <= x_ui <= 0.5, sum_i x_ui <= 1 (box-cut blocks), floor_i <= sum_u s_u x_ui <= cap_i per campaign.

    Users (supply groups, s_u impressions, lognormal(0, 1)): nnz / 5, 5 uniform campaigns each, campaigns =
    users / 100; value per impression lognormal(0, 1). Around the delivery d_i of x0 = min(0.5, 1/deg):
    floor_i = d_i x uniform(0.5, 1), cap_i = d_i x uniform(1, 1.5) (one ranged row per campaign), so x0 is
    feasible; high-value campaigns hit their caps and low-value ones their floors.
    """
    rng = np.random.default_rng(seed)
    n_users = max(USERS_PER_CAMPAIGN, round(nnz / EDGES_PER_USER))
    n_campaigns = max(EDGES_PER_USER, n_users // USERS_PER_CAMPAIGN)
    user, item = draw_edges(rng, n_users, n_campaigns, EDGES_PER_USER)
    supply = rng.lognormal(0.0, 1.0, size=n_users)[user]
    value = rng.lognormal(0.0, 0.5, size=n_campaigns)[item] * rng.lognormal(0.0, 0.5, size=user.shape[0]) * supply
    x0 = np.minimum(BOX_UPPER, uniform_share(user, n_users))
    delivered = per_item(item, supply * x0, n_campaigns)
    floor = delivered * rng.uniform(0.5, 1.0, size=n_campaigns)
    cap = delivered * rng.uniform(1.0, 1.5, size=n_campaigns)
    m, users, campaigns, x = edge_model("guaranteed_delivery", n_users, n_campaigns, user, item, upper=BOX_UPPER,
                                        item_set="campaign")
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="supply")
    m.subject_to((supply * x).sum(by=campaigns).between(floor, cap), name="delivery")
    return m


FAMILIES: dict[str, Callable[[int, int], dm.Model]] = {
    "power_law": power_law,
    "few_users_per_item": few_users_per_item,
    "multi_objective": multi_objective,
    "assignment": assignment,
    "guaranteed_delivery": guaranteed_delivery,
}
