"""Seeded synthetic workloads in the spirit of DuaLip's matching benchmark (also the benchmark workload).

Matching: max sum_{(u,i)} v_ui x_ui  s.t.  sum_i x_ui <= 1 per user (simplex blocks),
sum_u a_ui x_ui <= b_i per item (coupling rows), x >= 0; values/costs lognormal, edges uniform at a
given density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import Model


@dataclass(frozen=True)
class MatchingData:
    """Columnar matching data: edge k joins user[k] to item[k] with value[k] and cost[k]; budget per item."""

    n_users: int
    n_items: int
    user: np.ndarray  # (E,) int32, sorted
    item: np.ndarray  # (E,) int32
    value: np.ndarray  # (E,) float64
    cost: np.ndarray  # (E,) float64
    budget: np.ndarray  # (n_items,) float64

    @property
    def n_edges(self) -> int:
        return self.user.shape[0]


def synthetic_matching(n_users: int, n_items: int, density: float, seed: int = 0,
                       budget_fraction: float = 0.5) -> MatchingData:
    """Uniform random edges at ``density`` (duplicates dropped), lognormal values, costs and budgets.

    Item i's budget is ``budget_fraction`` times the spend it would get if every user took one
    uniformly chosen incident edge, times a lognormal(0, 0.5) factor, so many budgets bind.
    """
    if n_users <= 0 or n_items <= 0 or not 0 < density <= 1:
        raise ValueError("synthetic_matching needs n_users, n_items > 0 and 0 < density <= 1")
    rng = np.random.default_rng(seed)
    total = n_users * n_items
    k = max(1, int(round(density * total)))
    if density > 0.5:
        keys = np.flatnonzero(rng.random(total) < density)
    else:  # oversample, drop repeats, keep exactly k distinct edges
        keys = np.unique(rng.integers(0, total, size=int(k * 1.05 / (1 - density)) + 16, dtype=np.int64))
        if keys.shape[0] > k:
            keys = np.sort(rng.choice(keys, size=k, replace=False))
    user = (keys // n_items).astype(np.int32)
    item = (keys % n_items).astype(np.int32)
    del keys
    e = user.shape[0]
    value = rng.lognormal(0.0, 1.0, size=e)
    cost = rng.lognormal(0.0, 1.0, size=e)
    degree = np.bincount(user, minlength=n_users).astype(np.float64)
    share = 1.0 / np.maximum(degree[user], 1.0)  # chance a user picks this edge under a uniform choice
    expected_spend = np.bincount(item, weights=share * cost, minlength=n_items)
    budget = budget_fraction * expected_spend * rng.lognormal(0.0, 0.5, size=n_items)
    budget = np.maximum(budget, 1e-3)
    return MatchingData(n_users, n_items, user, item, value, cost, budget)


def matching_model(data: MatchingData, name: str = "matching") -> Model:
    """The matching LP of ``data`` as a Model (variable "x" over edge set "eligible")."""
    m = Model(name)
    users = m.entities("user", data.n_users)
    items = m.entities("item", data.n_items)
    edges = m.edges("eligible", users, items, src=data.user, dst=data.item)
    x = m.variable("x", over=edges, lower=0.0)
    m.maximize((data.value * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="one_per_user")
    m.subject_to((data.cost * x).sum(by=items) <= data.budget, name="budget")
    return m
