"""Build + compile a synthetic matching model from numpy arrays; print JSON (seconds and bytes per edge).

    python benchmarks/build_matching.py --edges 10000000 [--linopy-edges 1000000]

Measures Model construction plus compile() to the standard form, with the input arrays generated
beforehand (not counted). Peak extra memory is tracemalloc's peak over that span (numpy reports its
allocations to tracemalloc). If linopy is installed, the same model is built in linopy (variables over
the edge dimension, per-user and per-item group sums) and its time per edge is compared in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
import tracemalloc

from dualip_model.synthetic import matching_model, synthetic_matching


def measure(fn):
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, elapsed, peak


def build_dualip(data):
    return matching_model(data).compile()


def build_linopy(data):
    import linopy
    import pandas as pd
    import xarray as xr

    m = linopy.Model()
    edge = pd.RangeIndex(data.n_edges, name="edge")
    x = m.add_variables(lower=0, coords=[edge], name="x")
    value = xr.DataArray(data.value, coords=[edge])
    cost = xr.DataArray(data.cost, coords=[edge])
    user = xr.DataArray(data.user, coords=[edge], name="user")
    item = xr.DataArray(data.item, coords=[edge], name="item")
    m.add_objective((value * x).sum(), sense="max")
    m.add_constraints(x.groupby(user).sum() <= 1, name="one_per_user")
    budget = xr.DataArray(data.budget, coords=[pd.RangeIndex(data.n_items, name="item")])
    m.add_constraints((cost * x).groupby(item).sum() <= budget, name="budget")
    m.matrices.A  # force the flattening to a sparse matrix, like compile()
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=10_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--density", type=float, default=0.001)
    parser.add_argument("--linopy-edges", type=int, default=1_000_000, help="0 skips linopy")
    args = parser.parse_args()

    def data_for(edges):
        users = max(1, int(round(edges / (args.items * args.density))))
        return synthetic_matching(users, args.items, args.density, seed=0)

    data = data_for(args.edges)
    sf, seconds, peak = measure(lambda: build_dualip(data))
    e = data.n_edges
    report = {
        "benchmark": "build_matching",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "edges": e, "users": data.n_users, "items": data.n_items,
        "seconds": round(seconds, 3), "us_per_edge": round(seconds / e * 1e6, 4),
        "peak_extra_bytes_per_edge": round(peak / e, 2),
        "standard_form_bytes_per_edge": round(sf.nbytes / e, 2),
        "targets": {"us_per_edge": 0.5, "peak_extra_bytes_per_edge": 60},
    }
    del sf
    if args.linopy_edges:
        try:
            import linopy  # noqa: F401
        except ImportError:
            report["linopy"] = "not installed"
        else:
            small = data_for(args.linopy_edges)
            _, t_dm, _ = measure(lambda: build_dualip(small))
            _, t_lp, peak_lp = measure(lambda: build_linopy(small))
            report["linopy"] = {
                "edges": small.n_edges, "dualip_model_seconds": round(t_dm, 3), "linopy_seconds": round(t_lp, 3),
                "speedup": round(t_lp / t_dm, 1), "linopy_peak_bytes_per_edge": round(peak_lp / small.n_edges, 1),
            }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
