"""Multi-objective allocation: maximize clicks + 0.1 revenue, keep revenue and exposure within global limits.

    max sum_e (clicks_e + 0.1 revenue_e) x_e
    s.t. sum_i x_ui == 1 (every user is shown exactly one slot: one simplex block per user),
         sum_e revenue_e x_e >= r_min,  sum_{e: item is promoted} x_e <= cap  (two global rows),
         x >= 0
"""

import numpy as np

import dualip_model as dm
from dualip_model.synthetic import synthetic_matching


def main(backend: str = "highs") -> dm.Result:
    data = synthetic_matching(1000, 50, 0.1, seed=1)
    clicks = data.value
    revenue = data.cost
    promoted = (data.item % 5 == 0).astype(np.float64)  # every fifth item is a promoted one

    m = dm.Model("allocation")
    users = m.entities("user", data.n_users)
    items = m.entities("item", data.n_items)
    e = m.edges("eligible", users, items, src=data.user, dst=data.item)
    x = m.variable("x", over=e)
    has_edge = np.bincount(data.user, minlength=data.n_users) > 0
    m.maximize({"clicks": (clicks * x).sum(), "revenue": (revenue * x).sum()}, weights={"revenue": 0.1})
    m.subject_to(x.sum(by=users) == has_edge.astype(float), name="one_slot")
    r_min = 1.3 * float(revenue.mean()) * float(has_edge.sum())  # 30% above a random allocation
    m.subject_to((revenue * x).sum() >= r_min, name="min_revenue")
    m.subject_to((promoted * x).sum() <= 0.1 * has_edge.sum(), name="promotion_cap")
    res = m.solve(backend=backend)
    print(res)
    for name, value in res.objectives.items():
        print(f"  {name:8s} {value:12.4f}")
    print(f"  dual of min_revenue   {res.dual('min_revenue'):.4f}")
    print(f"  dual of promotion_cap {res.dual('promotion_cap'):.4f}")
    return res


if __name__ == "__main__":
    main()
