"""The sharded `dualip` solve on 1, 2 and 4 gloo ranks of one CPU machine, in one run; prints JSON.

    python benchmarks/distributed_scaling.py --out benchmarks/results/distributed_scaling_cpu.json

The script is its own launcher: it builds the synthetic matching model (--edges, ~200,000 by default),
saves its standard form to a temporary directory and, for each world size W, runs
``python -m torch.distributed.run --standalone --nproc-per-node W`` on itself in worker mode, one torch
thread per rank (OMP_NUM_THREADS=1). Every rank calls ``solve_sharded`` twice: with a fixed iteration
count (tol 1e-12, so neither the stopping test nor the gamma continuation fires: the cost of an iteration)
and to --tol (the time to a certified answer). Per world size and solve:

- wall seconds of ``solve_sharded`` (shard load, scaling, iterations, float64 certificate), iterations,
  status, objective, gap; the objective's max relative difference from the 1-rank solve;
- ms per iteration from the history timestamps, checks included, the first check interval left out;
- the all-reduces of the solve (counted in the communicator) and the seconds the ranks spent inside them.

Apart from the solves, in the same job: the median all-reduce of m float64 and float32 numbers (m coupling
rows: the one collective of an iteration) and each rank's torch sparse A x plus A^T y on its shard (on 1
rank the whole matrix: the compute floor of an iteration).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist

from dualip_model.backends.dualip.comm import ProcessGroupComm
from dualip_model.backends.dualip.distributed import init_process_group, solve_sharded
from dualip_model.backends.dualip.options import DualipOptions
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.shards import load_shard
from dualip_model.synthetic import matching_model, synthetic_matching

WORLDS = (1, 2, 4)
THREADS_PER_RANK = 1
FIXED_TOL = 1e-12


class CountingComm(ProcessGroupComm):
    """The torchrun process group's communicator, counting its all-reduces and the seconds spent in them."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.seconds = 0.0

    def _reduce(self, t: torch.Tensor, op) -> torch.Tensor:
        start = time.perf_counter()
        out = super()._reduce(t, op)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def allreduce_ms(m: int, dtype: torch.dtype, repeat: int) -> float:
    """Median milliseconds of one all-reduce (sum) of m numbers over the process group."""
    t = torch.zeros(m, dtype=dtype)
    for _ in range(10):
        dist.all_reduce(t)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def spmv_pair_ms(sf, repeat: int) -> float:
    """Milliseconds for A x plus A^T y on sf's columns, the solver's int32 CSR float64 tensors."""
    p = ScaledProblem.build(sf, torch.device("cpu"), torch.float64)
    x = torch.rand(p.n, dtype=torch.float64)
    y = torch.rand(p.m, dtype=torch.float64)
    for _ in range(3):
        p.A @ x, p.At @ y
    start = time.perf_counter()
    for _ in range(repeat):
        p.A @ x
        p.At @ y
    return (time.perf_counter() - start) / repeat * 1e3


def measured_solve(path: str, comm: CountingComm, **settings) -> dict:
    """One solve_sharded call on every rank; rank 0's history, the slowest rank's wall time."""
    comm.barrier()
    calls, seconds = comm.calls, comm.seconds
    start = time.perf_counter()
    res = solve_sharded(path, comm=comm, **settings)
    wall = time.perf_counter() - start
    calls, seconds = comm.calls - calls, comm.seconds - seconds
    ranks = np.stack(comm.all_gather_np(np.array([wall, seconds, res.columns.shape[0]], dtype=np.float64)))
    h = res.history
    first, last = h[0], h[-1]
    steady = (last["time"] - first["time"]) / (last["iteration"] - first["iteration"]) * 1e3 \
        if len(h) > 1 else None
    return {
        "status": res.status.value, "objective": res.objective, "bound": res.bound, "gap": res.gap,
        "iterations": res.iterations, "checks": len(h),
        "wall_seconds": round(float(ranks[:, 0].max()), 3),
        "loop_seconds": round(last["time"], 3),
        "ms_per_iteration": None if steady is None else round(steady, 3),
        "first_check_ms_per_iteration": round(first["time"] / first["iteration"] * 1e3, 3),
        "allreduces": calls,
        "allreduces_per_iteration": round(calls / res.iterations, 2),
        "collective_seconds_per_rank": [round(float(s), 3) for s in ranks[:, 1]],
        "collective_ms_per_iteration_mean_rank": round(float(ranks[:, 1].mean()) / res.iterations * 1e3, 3),
        "columns_per_rank": [int(n) for n in ranks[:, 2]],
    }


def worker(args) -> None:
    """One rank of a torchrun job: the two solves and the micro-benchmarks; rank 0 writes args.result."""
    torch.set_num_threads(THREADS_PER_RANK)
    init_process_group("gloo")
    comm = CountingComm()
    shard = load_shard(args.model, comm.rank, comm.world)
    m = shard.sf.n_rows
    comm.barrier()
    pair = comm.all_gather_np(np.array([spmv_pair_ms(shard.sf, args.repeat_spmv)]))
    comm.barrier()
    ar64 = float(comm.max_np(allreduce_ms(m, torch.float64, args.repeat_allreduce)))
    ar32 = float(comm.max_np(allreduce_ms(m, torch.float32, args.repeat_allreduce)))
    fixed = measured_solve(args.model, comm, tol=FIXED_TOL, max_iter=args.fixed_iterations)
    to_tol = measured_solve(args.model, comm, tol=args.tol)
    if comm.rank == 0:
        out = {
            "world": comm.world, "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "allreduce_m_float64_ms": round(ar64, 4), "allreduce_m_float32_ms": round(ar32, 4),
            "spmv_pair_ms_per_rank": [round(float(p[0]), 3) for p in pair],
            "fixed_iterations": fixed, "to_tolerance": to_tol,
        }
        for solve in (fixed, to_tol):
            solve["allreduce_estimate_ms_per_iteration"] = round(solve["allreduces_per_iteration"] * ar64, 3)
        with open(args.result, "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()


def launch(world: int, model: str, result: str, args) -> dict:
    """Run the worker on ``world`` gloo ranks (torchrun, standalone rendezvous); its stdout goes to stderr."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
           os.path.abspath(__file__), "--worker", "--model", model, "--result", result,
           "--tol", str(args.tol), "--fixed-iterations", str(args.fixed_iterations),
           "--repeat-allreduce", str(args.repeat_allreduce), "--repeat-spmv", str(args.repeat_spmv)]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS_PER_RANK))
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=sys.stderr, timeout=args.launch_timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"distributed_scaling: the {world}-rank job exited with status {proc.returncode}")
    with open(result) as f:
        out = json.load(f)
    out["launch_seconds"] = round(seconds, 2)
    return out


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


def summarize(runs: list[dict]) -> dict:
    """Per solve mode: speed-ups over 1 rank and agreement of the answers with the 1-rank solve."""
    base = runs[0]
    summary = {}
    for mode in ("fixed_iterations", "to_tolerance"):
        one = base[mode]
        summary[mode] = {
            "statuses": [r[mode]["status"] for r in runs],
            "iterations": [r[mode]["iterations"] for r in runs],
            "max_rel_objective_diff_vs_1_rank": max(rel_diff(r[mode]["objective"], one["objective"]) for r in runs),
            "max_rel_bound_diff_vs_1_rank": max(rel_diff(r[mode]["bound"], one["bound"]) for r in runs),
            "ms_per_iteration": {r["world"]: r[mode]["ms_per_iteration"] for r in runs},
            "speedup_ms_per_iteration": {r["world"]: round(one["ms_per_iteration"] / r[mode]["ms_per_iteration"], 2)
                                         for r in runs},
            "wall_seconds": {r["world"]: r[mode]["wall_seconds"] for r in runs},
            "speedup_wall": {r["world"]: round(one["wall_seconds"] / r[mode]["wall_seconds"], 2) for r in runs},
        }
    fixed = base["fixed_iterations"]["ms_per_iteration"]
    summary["iteration_over_spmv_pair_1_rank"] = round(fixed / base["spmv_pair_ms_per_rank"][0], 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=200_000, help="about this many edges (nonzeros of A)")
    parser.add_argument("--items", type=int, default=1_000, help="items: the coupling rows m")
    parser.add_argument("--density", type=float, default=0.01, help="edge density; users = edges / (items density)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4, help="tolerance of the to-tolerance solve")
    parser.add_argument("--fixed-iterations", type=int, default=300)
    parser.add_argument("--repeat-allreduce", type=int, default=200)
    parser.add_argument("--repeat-spmv", type=int, default=50)
    parser.add_argument("--launch-timeout", type=float, default=600.0, help="seconds per torchrun job")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    load_before = os.getloadavg()
    users = max(1, round(args.edges / (args.items * args.density)))
    sf = matching_model(synthetic_matching(users, args.items, args.density, seed=args.seed)).compile()
    report = {
        "benchmark": "distributed_scaling", "edges": sf.nnz, "users": users, "items": args.items,
        "columns": sf.n_cols, "coupling_rows_m": sf.n_rows, "blocks": sf.n_blocks,
        "backend": "gloo", "dtype": "float64", "check_every": DualipOptions().check_every,
        "tol": args.tol, "fixed_iterations": args.fixed_iterations, "fixed_iterations_tol": FIXED_TOL,
        "torch_threads_per_rank": THREADS_PER_RANK, "omp_num_threads": THREADS_PER_RANK,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "arch": platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "notes": {
            "oversubscription": f"{max(WORLDS)} ranks of {THREADS_PER_RANK} thread on {os.cpu_count()} cores: "
                                "world sizes above the core count oversubscribe the CPU",
            "ms_per_iteration": "from rank 0's history timestamps (one per check, every check_every iterations, "
                                "the check's cost included) over all but the first check interval, which also "
                                "holds first-call costs (first_check_ms_per_iteration shows it)",
            "wall_seconds": "solve_sharded on the slowest rank: shard load, scaling, iterations, float64 "
                            "certificate; not the torchrun start (launch_seconds: the whole job, micro-benchmarks "
                            "and both solves included)",
            "allreduce": "median of repeat_allreduce all-reduces of m numbers, the slowest rank's median; "
                         "allreduce_estimate_ms_per_iteration = all-reduces per iteration (checks' repair "
                         "bisection included) x the float64 median; collective_* is the time measured inside "
                         "the solve's all-reduces, waiting for slower ranks included",
            "spmv_pair": "torch sparse A x + A^T y on each rank's columns, all ranks at once; on 1 rank the "
                         "compute floor of one iteration",
            "gpu": "GPU (NCCL) figures remain to be measured: no GPU in this run",
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.npz")
        sf.save(model)
        runs = [launch(w, model, os.path.join(tmp, f"world-{w}.json"), args) for w in WORLDS]
    report["runs"] = runs
    report["summary"] = summarize(runs)
    report["load_average_1min_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
