"""Match users to items under per-item budgets, on generated data, and solve it exactly with HiGHS.

    max sum_{(u,i) in E} value_ui x_ui  s.t.  sum_i x_ui <= 1 (each user),
                                              sum_u cost_ui x_ui <= budget_i (each item),  x >= 0
"""

import argparse

import numpy as np
import pandas as pd

import dualip_model as dm
from dualip_model.synthetic import synthetic_matching


def build(n_users: int, n_items: int, density: float, seed: int) -> dm.Model:
    data = synthetic_matching(n_users, n_items, density, seed=seed)
    # The data as a user would hold it: a table of edges with labels and coefficients.
    df = pd.DataFrame({"user": [f"u{u}" for u in range(n_users)]})  # user labels
    user_ids = df.user.to_numpy()
    item_ids = np.array([f"item{i}" for i in range(n_items)])
    edges = pd.DataFrame({"user": user_ids[data.user], "item": item_ids[data.item],
                          "value": data.value, "cost": data.cost})

    m = dm.Model("ads")
    users = m.entities("user", labels=user_ids)
    items = m.entities("item", labels=item_ids)
    e = m.edges("eligible", users, items, src=edges.user, dst=edges.item)
    x = m.variable("x", over=e, lower=0)
    m.maximize((edges.value * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one_per_user")  # becomes one simplex block per user
    m.subject_to((edges.cost * x).sum(by=items) <= data.budget, name="budget")  # coupling rows
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="highs")
    args = parser.parse_args()

    m = build(args.users, args.items, args.density, args.seed)
    sf = m.compile()
    print(sf)
    res = m.solve(backend=args.backend)
    print(res)
    x = res.x
    print(f"edges with x > 0.5: {(x > 0.5).sum()} of {len(x)}")
    duals = res.dual("budget").sort_values(ascending=False)
    print("top budget duals (objective gained per unit of extra budget):")
    print(duals.head(5).to_string())


if __name__ == "__main__":
    main()
