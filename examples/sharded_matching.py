"""Compile a matching model once, solve it on several torch.distributed ranks (torchrun), read the shards back.

    max sum value_ui x_ui  s.t.  sum_i x_ui <= 1 (each user),  sum_u cost_ui x_ui <= budget_i (each item),  x >= 0

Each rank reads only its share of the saved standard form (whole user blocks, even work) and writes its
part of the primal; rank 0 prints the summary. On GPUs the same command runs with --device cuda (NCCL).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

import dualip_model as dm
from dualip_model.synthetic import synthetic_matching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--ranks", type=int, default=2, help="processes (one per GPU on a GPU machine)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl)")
    parser.add_argument("--out", default=None, help="folder for the model and the results (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="sharded_matching_"))
    out.mkdir(parents=True, exist_ok=True)

    data = synthetic_matching(args.users, args.items, args.density, seed=0)
    edges = pd.DataFrame({"user": data.user, "item": data.item, "value": data.value, "cost": data.cost})
    m = dm.Model("ads")
    users, items = m.entities("user", args.users), m.entities("item", args.items)
    e = m.edges("eligible", users, items, src=edges.user, dst=edges.item)
    x = m.variable("x", over=e, lower=0)  # model column j is edge j of the table
    m.maximize((edges.value * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one_per_user")
    m.subject_to((edges.cost * x).sum(by=items) <= data.budget, name="budget")
    model_file = out / "model.npz"
    m.compile().save(model_file)  # compiled once; no rank ever loads all of it

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.ranks}",
               "-m", "dualip_model", "solve-sharded", str(model_file), "--device", args.device, "--tol", "1e-4",
               "--out", str(out / "x"), "--duals", str(out / "duals.csv"), "--json"]
    print("$", " ".join(command[2:]))
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode not in (0, 1):
        sys.exit(f"the sharded solve failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{summary['ranks']} ranks: {summary['status']}, objective {summary['objective']:.6f}, "
          f"bound {summary['bound']:.6f}, gap {summary['gap']:.2e}, {summary['iterations']} iterations")

    parts = [pd.read_parquet(f) for f in sorted((out / "x").glob("x-*.parquet"))]
    solution = pd.concat(parts).set_index("column").sort_index()
    edges["x"] = solution["value"].to_numpy()
    print(f"read {len(parts)} shards: {len(solution)} edges, {(edges.x > 0.5).sum()} with x > 0.5")
    print("value of the allocation per item (first 5):")
    print((edges.value * edges.x).groupby(edges.item).sum().head(5).to_string())
    duals = pd.read_csv(out / "duals.csv")
    top = duals[duals.constraint == "budget"].nlargest(3, "dual")
    print("items whose budget is worth most (dual):", ", ".join(f"{r.row}: {r.dual:.3f}" for r in top.itertuples()))


if __name__ == "__main__":
    main()
