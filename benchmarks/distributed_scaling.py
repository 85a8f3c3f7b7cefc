"""The sharded `dualip` solve on 1, 2 and 4 ranks of one machine (gloo on CPU, NCCL on GPUs), in one run; prints JSON.

    python benchmarks/distributed_scaling.py --out benchmarks/results/distributed_scaling_cpu.json
    python benchmarks/distributed_scaling.py --device cuda --worlds 1 --edges 100000000   # one GPU (float32)

The script is its own launcher: it builds the synthetic matching model (--edges, ~200,000 by default;
users = edges / (items x density), 500 items: m = 500 coupling rows), saves its standard form to a temporary
directory and, for each world size W, runs
``python -m torch.distributed.run --standalone --nproc-per-node W`` on itself in worker mode, one torch
thread per rank (OMP_NUM_THREADS=1). Every rank calls ``solve_sharded`` twice: with a fixed iteration
count (tol 1e-12, so neither the stopping test nor the gamma continuation fires: the cost of an iteration)
and to --tol, at most --max-iter iterations (the time to a certified answer). Per world size and solve:

- wall seconds of ``solve_sharded`` (shard load, scaling, iterations, float64 certificate), iterations,
  status, objective, gap; the objective's max relative difference from the 1-rank solve (to --tol, the
  answers must agree within 2 tol; at a fixed count it measures how far the trajectories have drifted);
- ms per iteration from the history timestamps, checks included, the first check interval left out;
- the all-reduces of the solve (counted in the communicator) and the seconds the ranks spent inside them.

Apart from the solves, in the same job, all ranks at once, median and mean over --repeat calls: the
all-reduce of m float64 and float32 numbers (m coupling rows: the one collective of an iteration), each
rank's torch sparse A x plus A^T y on its shard (on 1 rank the whole matrix: the compute floor of an
iteration), and the two in sequence (the skeleton of a sharded iteration). On CUDA every timed call ends
with a device synchronization, and each solve reports its peak GPU memory per nonzero of the rank's shard.
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
from gpu_scale import emit  # benchmarks/ is the script's folder, on sys.path

THREADS_PER_RANK = 1
FIXED_TOL = 1e-12


class CountingComm(ProcessGroupComm):
    """The torchrun process group's communicator, counting its all-reduces and the seconds spent in them.

    Every reduction of ProcessGroupComm (sum, max, their host-array forms, barrier) goes through ``_reduce``.
    """

    def __init__(self, device: torch.device):
        super().__init__(device=device)
        self.calls = 0
        self.seconds = 0.0

    def _reduce(self, t: torch.Tensor, op) -> torch.Tensor:
        start = time.perf_counter()
        out = super()._reduce(t, op)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def call_ms(step, repeat: int, device: torch.device) -> tuple[float, float]:
    """(median, mean) milliseconds of one call of step() over ``repeat`` calls, after 10 warm-up calls."""
    def timed():
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(10):
        timed()
    times = [timed() for _ in range(repeat)]
    return statistics.median(times) * 1e3, statistics.fmean(times) * 1e3


def micro_benchmarks(sf, comm: CountingComm, repeat: int, dtype: torch.dtype) -> dict:
    """Per rank, all ranks at once: all-reduces of m numbers, the local mat-vec pair, and the two together.

    The pair runs on the solver's tensors (int32 CSR, the solve's dtype) of this rank's columns; "pair +
    all-reduce" is the skeleton of a sharded iteration (A^T y, A x, all-reduce of A x), projection and dual
    update left out.
    """
    device = comm.device
    p = ScaledProblem.build(sf, device, dtype)
    x = torch.rand(p.n, dtype=dtype, device=device)
    y = torch.rand(p.m, dtype=dtype, device=device)
    f64 = torch.zeros(p.m, dtype=torch.float64, device=device)
    f32 = torch.zeros(p.m, dtype=torch.float32, device=device)
    steps = {
        "allreduce_m_float64": lambda: dist.all_reduce(f64),
        "allreduce_m_float32": lambda: dist.all_reduce(f32),
        "spmv_pair": lambda: (p.At @ y, p.A @ x),
        "spmv_pair_plus_allreduce": lambda: (p.At @ y, dist.all_reduce(p.A @ x)),
    }
    mine = []
    for step in steps.values():
        comm.barrier()
        mine.extend(call_ms(step, repeat, device))
    ranks = np.stack(comm.all_gather_np(np.array(mine))).reshape(comm.world, len(steps), 2)
    return {name: {stat: [round(float(v), 4) for v in ranks[:, k, j]] for j, stat in enumerate(("median", "mean"))}
            for k, name in enumerate(steps)}


def measured_solve(path: str, comm: CountingComm, nnz: int, **settings) -> dict:
    """One solve_sharded call on every rank; rank 0's history, the slowest rank's wall time (nnz: the rank's)."""
    comm.barrier()
    on_gpu = comm.device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(comm.device)
    calls, seconds = comm.calls, comm.seconds
    start = time.perf_counter()
    res = solve_sharded(path, comm=comm, **settings)
    wall = time.perf_counter() - start
    calls, seconds = comm.calls - calls, comm.seconds - seconds
    peak = torch.cuda.max_memory_allocated(comm.device) / max(1, nnz) if on_gpu else float("nan")
    ranks = np.stack(comm.all_gather_np(np.array([wall, seconds, res.columns.shape[0], peak], dtype=np.float64)))
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
        "peak_gpu_bytes_per_nonzero_per_rank": [round(float(b), 1) for b in ranks[:, 3]] if on_gpu else None,
    }


def worker(args) -> None:
    """One rank of a torchrun job: the two solves and the micro-benchmarks; rank 0 writes args.result."""
    torch.set_num_threads(THREADS_PER_RANK)
    base = init_process_group("nccl" if args.device == "cuda" else "gloo")
    comm = CountingComm(base.device)
    dtype = torch.float32 if args.device == "cuda" else torch.float64  # the solver's defaults
    sf = load_shard(args.model, comm.rank, comm.world).sf
    micro = micro_benchmarks(sf, comm, args.repeat, dtype)
    fixed = measured_solve(args.model, comm, sf.nnz, tol=FIXED_TOL, max_iter=args.fixed_iterations,
                           device=args.device)
    to_tol = measured_solve(args.model, comm, sf.nnz, tol=args.tol, max_iter=args.max_iter, device=args.device)
    if comm.rank == 0:
        out = {
            "world": comm.world, "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "micro_ms": micro, "fixed_iterations": fixed, "to_tolerance": to_tol,
        }
        allreduce = max(micro["allreduce_m_float64"]["mean"])
        for solve in (fixed, to_tol):
            solve["allreduce_estimate_ms_per_iteration"] = round(solve["allreduces_per_iteration"] * allreduce, 3)
        with open(args.result, "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()


def launch(world: int, model: str, result: str, args) -> dict:
    """Run the worker on ``world`` ranks (torchrun, standalone rendezvous); its stdout goes to stderr."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
           os.path.abspath(__file__), "--worker", "--model", model, "--result", result,
           "--tol", str(args.tol), "--max-iter", str(args.max_iter),
           "--fixed-iterations", str(args.fixed_iterations),
           "--repeat", str(args.repeat), "--device", args.device]
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


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a / b, 2)


def summarize(runs: list[dict], tol: float) -> dict:
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
            "speedup_ms_per_iteration": {r["world"]: ratio(one["ms_per_iteration"], r[mode]["ms_per_iteration"])
                                         for r in runs},
            "wall_seconds": {r["world"]: r[mode]["wall_seconds"] for r in runs},
            "speedup_wall": {r["world"]: ratio(one["wall_seconds"], r[mode]["wall_seconds"]) for r in runs},
        }
    to_tol = summary["to_tolerance"]
    to_tol["answers_agree_within_2_tol"] = len(set(to_tol["statuses"])) == 1 and \
        to_tol["max_rel_objective_diff_vs_1_rank"] <= 2 * tol
    summary["iteration_over_spmv_pair_1_rank"] = ratio(base["fixed_iterations"]["ms_per_iteration"],
                                                        base["micro_ms"]["spmv_pair"]["median"][0])
    summary["per_iteration_ms_side_by_side"] = {r["world"]: {
        "iteration_fixed_mode": r["fixed_iterations"]["ms_per_iteration"],
        "collectives_in_solve_mean_rank": r["fixed_iterations"]["collective_ms_per_iteration_mean_rank"],
        "allreduce_estimate": r["fixed_iterations"]["allreduce_estimate_ms_per_iteration"],
        **{f"{name}_{stat}_slowest_rank": max(r["micro_ms"][name][stat])
           for name in ("allreduce_m_float64", "spmv_pair", "spmv_pair_plus_allreduce") for stat in ("median", "mean")},
    } for r in runs}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=200_000, help="about this many edges (nonzeros of A)")
    parser.add_argument("--items", type=int, default=500, help="items: the coupling rows m")
    parser.add_argument("--density", type=float, default=0.01, help="edge density; users = edges / (items density)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4, help="tolerance of the to-tolerance solve")
    parser.add_argument("--max-iter", type=int, default=3000, help="iteration limit of the to-tolerance solve")
    parser.add_argument("--fixed-iterations", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=200, help="calls per micro-benchmark")
    parser.add_argument("--launch-timeout", type=float, default=600.0, help="seconds per torchrun job")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cpu: gloo, float64; cuda: NCCL, float32, one GPU per rank")
    parser.add_argument("--worlds", default="1,2,4", help="comma-separated rank counts (on GPUs: at most the GPUs)")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fixed_iterations < 2 * DualipOptions().check_every:
        parser.error(f"--fixed-iterations: at least {2 * DualipOptions().check_every} (two checks)")
    if args.worker:
        worker(args)
        return
    worlds = [int(w) for w in args.worlds.split(",")]

    load_before = os.getloadavg()
    users = max(1, round(args.edges / (args.items * args.density)))
    sf = matching_model(synthetic_matching(users, args.items, args.density, seed=args.seed)).compile()
    report = {
        "benchmark": "distributed_scaling", "edges": sf.nnz, "users": users, "items": args.items,
        "columns": sf.n_cols, "coupling_rows_m": sf.n_rows, "blocks": sf.n_blocks,
        "backend": "nccl" if args.device == "cuda" else "gloo", "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "dtype": "float32" if args.device == "cuda" else "float64", "check_every": DualipOptions().check_every,
        "density": args.density, "seed": args.seed, "tol": args.tol, "max_iter": args.max_iter,
        "fixed_iterations": args.fixed_iterations, "fixed_iterations_tol": FIXED_TOL, "repeat": args.repeat,
        "torch_threads_per_rank": THREADS_PER_RANK, "omp_num_threads": THREADS_PER_RANK,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "arch": platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "notes": {
            "model": "users = edges / (items x density); 500 items by default, so that the 1e-4 solve "
                     "certifies in a few hundred iterations (with 1,000 items at 200,000 edges it takes over 5,000)",
            "oversubscription": f"{max(worlds)} ranks of {THREADS_PER_RANK} thread on {os.cpu_count()} cores: "
                                "world sizes above the core count oversubscribe the CPU",
            "ms_per_iteration": "from rank 0's history timestamps (one per check, every check_every iterations, "
                                "the check's cost included) over all but the first check interval, which also "
                                "holds first-call costs (first_check_ms_per_iteration shows it)",
            "wall_seconds": "solve_sharded on the slowest rank: shard load, scaling, iterations, float64 "
                            "certificate; not the torchrun start (launch_seconds: the whole job, micro-benchmarks "
                            "and both solves included)",
            "micro_ms": "per rank, median and mean over `repeat` calls, all ranks at once: all-reduce of m "
                        "numbers; torch sparse A x + A^T y on the rank's columns (on 1 rank the compute floor "
                        "of an iteration); the pair then the all-reduce of A x. The mean counts the slow tail "
                        "(scheduling delays), which the median hides",
            "allreduce_per_iteration": "allreduce_estimate_ms_per_iteration = the solve's all-reduces per "
                                       "iteration (the checks' certificate and repair threshold search "
                                       "included) x the slowest rank's float64 mean; collective_* = the time "
                                       "measured inside the solve's all-reduces, waiting for slower ranks included",
            "agreement": "to tol the answers must agree (same status, objectives within 2 tol); at a fixed "
                         "iteration count the ranks' sums in another order drift the iterates apart (rounding "
                         "amplified by the accelerated steps), so that difference is drift, not error",
            "load_average": "1-minute load before building the model and after the last job (the jobs' own "
                            "ranks count in the second): another process on the machine would disturb timings",
            "gpu": "measured on the GPU named above" if args.device == "cuda" else
                   "GPU (NCCL) figures remain to be measured: no GPU in this run",
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.npz")
        sf.save(model)
        runs = [launch(w, model, os.path.join(tmp, f"world-{w}.json"), args) for w in worlds]
    report["runs"] = runs
    report["summary"] = summarize(runs, args.tol)
    report["load_average_1min_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    emit(report, args.out)


if __name__ == "__main__":
    main()
