"""Ad allocation with campaign budgets and a total spend cap, solved on dualip and checked against HiGHS.

    max sum_{(u,c) in E} value_uc x_uc
    s.t. sum_c x_uc <= 1                    for each user      (one simplex block per user)
         sum_u cost_uc x_uc <= budget_c     for each campaign  (coupling rows)
         sum_{(u,c) in E} cost_uc x_uc <= cap                  (one global row: the total spend cap)
         x >= 0

dualip (first-order dual decomposition, built for models far beyond an exact solver) and highs (the exact
reference) solve the same compiled model in one run; the script prints both answers side by side and
checks that they agree: objective, certified bound, largest violation, and the duals (the price of one
more unit of each budget and of the cap). It exits with status 1 if they do not.
"""

import argparse
import sys

import numpy as np
import pandas as pd

import dualip_model as dm
from dualip_model.synthetic import synthetic_matching

CAP_SHARE = 0.9  # the total spend cap: 90% of the campaign budgets' sum, so the cap binds
# duals of a first-order method at tol 1e-4 are approximate (objective and bound are what tol certifies):
# they agree with the exact ones to a few percent of the largest dual
DUAL_AGREEMENT = 0.1


def build(n_users: int, n_campaigns: int, density: float, seed: int) -> tuple[dm.Model, pd.DataFrame]:
    """The model and its data: one row per eligible (user, campaign) pair, as a database would give it."""
    data = synthetic_matching(n_users, n_campaigns, density, seed=seed)
    user_ids = np.array([f"u{u}" for u in range(n_users)])
    campaign_ids = np.array([f"c{c}" for c in range(n_campaigns)])
    edges = pd.DataFrame({"user": user_ids[data.user], "campaign": campaign_ids[data.item],
                          "value": data.value, "cost": data.cost})
    budget = pd.Series(data.budget, index=campaign_ids)

    m = dm.Model("ads")
    users = m.entities("user", labels=user_ids)
    campaigns = m.entities("campaign", labels=campaign_ids)
    e = m.edges("eligible", users, campaigns, src=edges.user, dst=edges.campaign)
    x = m.variable("x", over=e, lower=0)
    m.maximize((edges.value * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one_per_user")
    m.subject_to((edges.cost * x).sum(by=campaigns) <= budget.to_numpy(), name="budget")
    m.subject_to((edges.cost * x).sum() <= CAP_SHARE * budget.sum(), name="total_spend")
    return m, edges


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4, help="dualip's relative gap and infeasibility")
    parser.add_argument("--device", default="cpu", help="dualip's device: cpu or cuda")
    args = parser.parse_args()

    m, edges = build(args.users, args.campaigns, args.density, args.seed)
    print(m.to_text(data=edges))
    print(m.compile())
    print()

    c = dm.compare(m, ("dualip", "highs"), options={"dualip": {"tol": args.tol, "device": args.device}})
    dualip, highs = c["dualip"], c["highs"]
    table = c.table[["status", "objective", "bound", "gap", "time", "iterations"]].copy()
    table["violation"] = [r.violation()[0] if r.status.has_solution else np.nan for r in (dualip, highs)]
    print(table.to_string(formatters={"objective": "{:.10g}".format, "bound": "{:.10g}".format,
                                      "gap": "{:.1e}".format, "time": "{:.2f} s".format,
                                      "violation": "{:.1e}".format}))
    print()
    if dualip.status != dm.Status.OPTIMAL or highs.status != dm.Status.OPTIMAL:
        print(f"not compared: dualip {dualip.status}, highs {highs.status}")
        return 1

    # the checks: dualip's objective and bound bracket the exact optimum, its x meets every row, its duals
    # price the budgets and the cap as the exact duals do (to the precision tol allows a first-order method)
    budget_d, budget_h = dualip.dual("budget"), highs.dual("budget")
    cap_d, cap_h = dualip.dual("total_spend"), highs.dual("total_spend")
    scale = max(float(budget_h.abs().max()), abs(cap_h), 1e-12)
    checks = {
        "objective within tol of the optimum": abs(c.table.loc["dualip", "objective_rel_diff"]) <= args.tol,
        "bound certifies it (bound >= optimum)": dualip.bound >= highs.objective - args.tol * abs(highs.objective),
        "x meets every row (violation <= 1e-9)": dualip.violation()[0] <= 1e-9,
        f"duals agree (largest difference <= {DUAL_AGREEMENT:.0%} of the largest dual)":
            max(float((budget_d - budget_h).abs().max()), abs(cap_d - cap_h)) <= DUAL_AGREEMENT * scale,
    }
    print(f"objective  dualip {dualip.objective:.10g}  highs {highs.objective:.10g}  "
          f"rel. diff {c.table.loc['dualip', 'objective_rel_diff']:+.2e}")
    print(f"duals      budget: largest |dualip - highs| {float((budget_d - budget_h).abs().max()):.3g} "
          f"(largest dual {float(budget_h.abs().max()):.3g});  total_spend: dualip {cap_d:.4g}, highs {cap_h:.4g}")
    print("top budget duals (value gained per unit of extra budget), dualip vs highs:")
    top = budget_h.sort_values(ascending=False).index[:5]
    print(pd.DataFrame({"dualip": budget_d[top], "highs": budget_h[top]}).to_string(float_format="{:.4f}".format))
    print()
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'}  {what}")
    agreed = all(checks.values())
    print("dualip agrees with highs" if agreed else "dualip DISAGREES with highs")
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
