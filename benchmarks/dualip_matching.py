"""The `dualip` backend vs HiGHS on the synthetic matching model, side by side in one run; prints JSON.

    python benchmarks/dualip_matching.py --users 100000 --items 1000 --density 0.01   # ~1M edges
    python benchmarks/dualip_matching.py --device cuda --dtype float32                  # on a GPU

For dualip: iterations, ms/iteration, seconds to a certified relative gap <= tol (Lagrangian bound vs a
feasible primal), and the same for HiGHS IPM and simplex with the same thread count (time limit per
solver); each the median of --repeat solves in the same run. Also one torch sparse A x plus A^T y pair on
the same matrix, the floor of one iteration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

import dualip_model as dm
from dualip_model.backends.dualip.options import ENGINES, STORAGE, resolve_engine
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.cli import native_stdout_to_stderr
from dualip_model.synthetic import matching_model, synthetic_matching


def spmv_pair_ms(sf, device, dtype, repeat=20) -> float:
    """Milliseconds for A x plus A^T y as the fast storage holds them (torch sparse CSR, int32 indices; A^T of a
    matching as a gather), the two mat-vecs of one iteration."""
    p = ScaledProblem.build(sf, device, dtype, storage="fast")
    x = torch.rand(p.n, dtype=dtype, device=device)
    y = torch.rand(p.m, dtype=dtype, device=device)
    for _ in range(3):
        p.A @ x, p.At @ y
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        p.A @ x
        p.At @ y
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat * 1e3


def main() -> None:
    with native_stdout_to_stderr():  # HiGHS's banner goes to stderr: stdout is the JSON alone
        report = run()
    print(json.dumps(report, indent=1))


def run() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=[None, "float32", "float64"])
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="DualipOptions.engine (default auto: fused_cpu or torch on CPU by size and toolchain, compact on CUDA)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--highs", default="ipm,simplex", help="HiGHS solvers to compare, '' for none")
    parser.add_argument("--highs-time-limit", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="solves per solver; the median time is reported (a timed-out HiGHS solve runs once)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = synthetic_matching(args.users, args.items, args.density, seed=args.seed)
    model = matching_model(data)
    sf = model.compile()
    device = torch.device(args.device)
    report = {
        "benchmark": "dualip_matching", "edges": sf.nnz, "users": args.users, "items": args.items,
        "threads": args.threads, "tol": args.tol,
        "machine": platform.machine(), "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
    }
    # warm-up: a tiny solve loads torch's kernels and thread pool (and creates the CUDA context) first, so
    # that the timed solve is the model's own cost, as in benchmarks/gpu_scale.py
    matching_model(synthetic_matching(200, 10, 0.5, seed=args.seed)).solve(
        "dualip", device=args.device, dtype=args.dtype, engine=args.engine, max_iter=50)
    report["warm_up"] = "a 200 x 10 matching solved for 50 iterations first, same options (builds fused_cpu's code)"
    times = []
    for _ in range(args.repeat):  # the median of a few solves: one solve on a shared machine varies by ~10%
        res = model.solve("dualip", standard_form=sf, tol=args.tol, device=args.device, dtype=args.dtype,
                          engine=args.engine)
        times.append(res.solve_time)
    dualip_seconds = statistics.median(times)
    dtype = torch.float32 if (args.dtype or ("float32" if device.type == "cuda" else "float64")) == "float32" \
        else torch.float64
    pair = spmv_pair_ms(sf, device, dtype)
    engine = resolve_engine(args.engine, device, rows=sf.n_rows, cols=sf.n_cols)  # what the solves ran
    ms_iter = dualip_seconds / max(res.iterations, 1) * 1e3
    report["dualip"] = {
        "status": res.status.value, "objective": res.objective, "bound": res.bound, "gap": res.gap,
        "iterations": res.iterations, "seconds": round(dualip_seconds, 3),
        "seconds_of_each_solve": [round(t, 3) for t in times], "ms_per_iteration": round(ms_iter, 3),
        "dtype": str(dtype).replace("torch.", ""),
        "engine": engine, "storage": STORAGE[engine], "spmv_pair_ms": round(pair, 3),
        "iteration_over_spmv_pair": round(ms_iter / pair, 2),
    }
    best = None
    for solver in [s for s in args.highs.split(",") if s]:
        h = model.solve("highs", standard_form=sf, solver=solver, threads=args.threads,
                        time_limit=args.highs_time_limit)
        times = [h.solve_time]
        if h.status == dm.Status.OPTIMAL:  # repeated like dualip when it finishes (a time limit is not repeated)
            times += [model.solve("highs", standard_form=sf, solver=solver, threads=args.threads,
                                  time_limit=args.highs_time_limit).solve_time for _ in range(args.repeat - 1)]
        seconds = statistics.median(times)
        report[f"highs_{solver}"] = {"status": h.status.value,
                                     "objective": h.objective if h.status == dm.Status.OPTIMAL else None,
                                     "seconds": round(seconds, 3),
                                     "seconds_of_each_solve": [round(t, 3) for t in times]}
        if h.status == dm.Status.OPTIMAL:
            best = seconds if best is None else min(best, seconds)
            report[f"highs_{solver}"]["dualip_rel_error"] = abs(res.objective - h.objective) / abs(h.objective)
    if best is not None:
        report["speedup_vs_best_highs"] = round(best / dualip_seconds, 2)
    return report


if __name__ == "__main__":
    main()
