"""From Parquet files of edges and items to a solved matching model with labeled Parquet output.

    max sum_{(u,i) in E} value_ui x_ui  s.t.  sum_i x_ui <= 1 (each user),
                                              sum_u cost_ui x_ui <= budget_i (each item),  x >= 0

The script first writes edges.parquet (user, item, value, cost) and items.parquet (item, budget) with
string labels from the synthetic matching generator, then models straight from the arrow columns and
writes x.parquet (user, item, value) and budget_duals.parquet (item, dual, activity, slack).
"""

import argparse
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import dualip_model as dm
from dualip_model.synthetic import synthetic_matching
from dualip_model.tables import read_table


def write_inputs(folder: str, n_users: int, n_items: int, density: float, seed: int) -> tuple[str, str]:
    """Write edges.parquet and items.parquet into ``folder``; return their paths."""
    data = synthetic_matching(n_users, n_items, density, seed=seed)
    user_ids = np.char.add("u", np.arange(n_users).astype(str))
    item_ids = np.char.add("i", np.arange(n_items).astype(str))
    edges_path, items_path = os.path.join(folder, "edges.parquet"), os.path.join(folder, "items.parquet")
    pq.write_table(pa.table({"user": user_ids[data.user], "item": item_ids[data.item],
                             "value": data.value, "cost": data.cost}), edges_path)
    pq.write_table(pa.table({"item": item_ids, "budget": data.budget}), items_path)
    return edges_path, items_path


def solve(edges_path: str, items_path: str, out_dir: str, backend: str = "highs") -> dm.Result:
    """The modeling part: Parquet in, solved model, labeled Parquet out."""
    edges = read_table(edges_path, columns=["user", "item", "value", "cost"])
    item_table = read_table(items_path, columns=["item", "budget"])
    m = dm.Model("parquet_matching")
    users = m.entities("user", pc.unique(edges["user"]))
    items = m.entities("item", item_table["item"])
    e = m.edges("eligible", users, items, src=edges["user"], dst=edges["item"])
    x = m.variable("x", over=e, lower=0)
    m.maximize((edges["value"] * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one_per_user")
    m.subject_to((edges["cost"] * x).sum(by=items) <= item_table["budget"], name="budget")
    res = m.solve(backend=backend)
    res.to_parquet(os.path.join(out_dir, "x.parquet"))
    res.duals_to_parquet(os.path.join(out_dir, "budget_duals.parquet"), "budget")
    return res


def main(argv=None) -> dm.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="highs")
    parser.add_argument("--out", default=None, help="folder for the Parquet files (default: a temporary one)")
    args = parser.parse_args(argv)

    out_dir = args.out or tempfile.mkdtemp(prefix="dualip_parquet_")
    edges_path, items_path = write_inputs(out_dir, args.users, args.items, args.density, args.seed)
    res = solve(edges_path, items_path, out_dir, backend=args.backend)
    print(res)
    x = read_table(os.path.join(out_dir, "x.parquet")).to_pandas()
    print(f"wrote {out_dir}/x.parquet: {len(x)} edges, {(x.value > 0.5).sum()} with x > 0.5")
    duals = read_table(os.path.join(out_dir, "budget_duals.parquet")).to_pandas()
    print(f"wrote {out_dir}/budget_duals.parquet; largest budget duals:")
    print(duals.sort_values("dual", ascending=False).head(5).to_string(index=False))
    return res


if __name__ == "__main__":
    main()
