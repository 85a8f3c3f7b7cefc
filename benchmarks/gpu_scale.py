"""The `dualip` backend at scale (issue 9): synthetic matching, one fresh process per size; prints JSON.

    python benchmarks/gpu_scale.py --out benchmarks/results/gpu_scale_cpu.json           # CPU, float64: 1e6, 1e7
    python benchmarks/gpu_scale.py --device cuda --sizes 1e6,1e7,1e8,2.5e8 \\
        --out benchmarks/results/gpu_scale_gpu.json                                        # one GPU, float32

Model: synthetic_matching(users, items, density) with 10 edges per user: users = size / 10, items =
min(10,000, size / 1,000) (--items fixes it), density = 10 / items. So 1e6 is the 100,000 x 1,000 model of
benchmarks/dualip_matching.py, 1e7 the 1,000,000 x 10,000 model of docs/performance.md, 2.5e8 DuaLip's
headline 25,000,000 sources x 10,000 destinations at density 0.001. Each size runs in a subprocess of its
own (this script in worker mode, after a warm-up solve of a tiny model that loads the libraries' code and,
on CUDA, creates the context), so that its peak memory is its own. Per size:

- setup: seconds to build and compile the model (data generation reported apart), the solve's wall time
  outside its iteration loop (wall minus the last history timestamp: ScaledProblem build, solver setup, the
  float64 certificate) and, timed on its own, the ScaledProblem build (scaling, device CSR A and A^T);
- the solve to --tol (at most --max-iter iterations, --time-limit seconds of loop): status, objective, gap,
  iterations; ms/iteration from the history timestamps, the first check interval left out (it holds
  first-call costs); loop seconds and iteration at which the history first shows rel. gap and rel.
  infeasibility both <= 1e-3 and <= --tol;
- peak memory per nonzero: on CUDA torch.cuda.max_memory_allocated over the solve (reset before it) / nnz;
  on every device the process's peak extra resident memory over the solve, VmHWM after the solve minus
  VmRSS before it (VmHWM reset through /proc/self/clear_refs), / nnz; and the solver's own accounting
  (memory_report: tensors held plus peak temporaries, the same on every device) in both storages;
- the SpMV-pair roofline in the same process: torch sparse A x + A^T y (int32 CSR of A and of A^T, the
  solve's dtype), the iteration's time over it (target: <= 3x on CPU, <= 2x on GPU), and the
  bandwidth it achieves, counting the matrix bytes it reads (values, int32 indices and row pointers of A and
  A^T), as a fraction of a large torch copy's bandwidth (bytes read + written) on the same device;
- HiGHS interior point (threads = cores) up to --highs-max-nnz nonzeros, within --highs-time-limit: seconds
  and dualip's relative objective error against its optimum;
- HiGHS's PDLP (first-order, CPU: the peer where cuPDLPx cannot run) to --tol, its own stopping rule
  (relative residuals and gap, not a certified gap), up to --pdlp-max-nnz nonzeros, within --pdlp-time-limit;
- cuPDLPx (backend "cupdlpx", GPU only, optional package) to the same tol on CUDA when importable.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from dualip_model import registry
from dualip_model.backends.dualip import memory_report
from dualip_model.backends.dualip.operators import to_device
from dualip_model.backends.dualip.options import ENGINES, STORAGE, DualipOptions, resolve_engine
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.cli import native_stdout_to_stderr
from dualip_model.status import Status
from dualip_model.synthetic import matching_model, synthetic_matching

EDGES_PER_USER = 10  # DuaLip's density 0.001 at 10,000 items
MAX_ITEMS = 10_000
MIN_USERS_PER_ITEM = 100
LOOSE_GAP = 1e-3  # the history's first check at this rel. gap and infeasibility is reported beside --tol
SPMV_PAIR_TARGET = {"cpu": 3.0, "cuda": 2.0}  # ms/iteration over the SpMV pair
GPU_BYTES_PER_NONZERO_TARGET = 40.0
GPU_TARGETS = ("H100, float32, 1e8 nonzeros: an iteration <= 2x the SpMV pair (about 2 ms), peak GPU memory "
               "<= 40 B per nonzero, certified rel. gap 1e-4 sooner than cuPDLPx")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7", help="comma-separated nonzero counts (edges)")
    parser.add_argument("--items", type=int, help="items (coupling rows m) at every size; default "
                        f"min({MAX_ITEMS}, size / {EDGES_PER_USER * MIN_USERS_PER_ITEM})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"],
                        help="default: float32 on CUDA, float64 on CPU (the solver's defaults)")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="DualipOptions.engine (default auto: compact on CUDA, fused_cpu or torch on CPU by size); "
                             "with fused_cpu the torch engine runs too, side by side")
    parser.add_argument("--matrix-dtype", default=None, choices=["bfloat16", "float16"],
                        help="A's values in 16 bits (compact engine; see DualipOptions.matrix_dtype)")
    parser.add_argument("--compile", action="store_true",
                        help="also solve with engine='compiled' (CUDA graphs on CUDA) and report both")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and HiGHS threads")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=DualipOptions().max_iter)
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds of dualip (and cuPDLPx) loop")
    parser.add_argument("--check-every", type=int, default=DualipOptions().check_every)
    parser.add_argument("--highs-max-nnz", type=float, default=1e6, help="HiGHS only up to this many nonzeros")
    parser.add_argument("--highs-time-limit", type=float, default=600.0)
    parser.add_argument("--pdlp-max-nnz", type=float, default=1e6,
                        help="HiGHS's PDLP (the first-order CPU peer) only up to this many nonzeros")
    parser.add_argument("--pdlp-time-limit", type=float, default=600.0)
    parser.add_argument("--spmv-repeat", type=int, default=20, help="timed SpMV pairs")
    parser.add_argument("--copy-mib", type=int, default=1024, help="buffer of the bandwidth reference copy")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--worker-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------- measuring
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def call_ms(step, device: torch.device, repeat: int) -> tuple[float, float]:
    """(median, mean) milliseconds of one step() over ``repeat`` calls after 3 warm-up calls, synchronized."""
    for _ in range(3):
        step()
    synchronize(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, statistics.fmean(times) * 1e3


def memory_status() -> dict:
    """VmRSS and VmHWM (peak resident set) of this process in bytes, from /proc/self/status."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak_rss() -> str | None:
    """Reset VmHWM to the current resident set (clear_refs "5"); None on success, else why it failed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as exc:
        return f"writing /proc/self/clear_refs failed: {exc}"
    now = memory_status()
    if now["VmHWM"] > now["VmRSS"] + 16 * 2**20:
        return f"VmHWM stayed at {now['VmHWM']} bytes above VmRSS {now['VmRSS']} after clear_refs"
    return None


def spmv_pair(sf, device: torch.device, dtype: torch.dtype, repeat: int, storage: str) -> dict:
    """Time A x + A^T y with torch sparse CSR tensors (int32 indices) of A and A^T: the reference floor of one
    iteration, independent of the solver's storage; also the solver's ScaledProblem build (timed) and the
    matrix bytes the pair reads."""
    synchronize(device)
    start = time.perf_counter()
    ScaledProblem.build(sf, device, dtype, storage=storage)
    synchronize(device)
    build = time.perf_counter() - start
    csr = sf.A.tocsr()
    csr.sort_indices()

    def tensor(a, dt):
        return to_device(a, dt, device)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        A = torch.sparse_csr_tensor(tensor(csr.indptr, torch.int32), tensor(csr.indices, torch.int32),
                                    tensor(csr.data, dtype), size=csr.shape)
        At = torch.sparse_csr_tensor(tensor(sf.A_indptr, torch.int32), tensor(sf.A_indices, torch.int32),
                                     tensor(sf.A_data, dtype), size=csr.shape[::-1])
    x = torch.rand(sf.n_cols, dtype=dtype, device=device)
    y = torch.rand(sf.n_rows, dtype=dtype, device=device)
    median, mean = call_ms(lambda: (A @ x, At @ y), device, repeat)
    matrix_bytes = sum(t.element_size() * t.numel() for M in (A, At)
                       for t in (M.crow_indices(), M.col_indices(), M.values()))
    return {"scaled_problem_build_seconds": round(build, 3), "median_ms": round(median, 3),
            "mean_ms": round(mean, 3), "matrix_bytes": matrix_bytes, "index_dtype": "int32"}


def copy_bandwidth_gbs(device: torch.device, mib: int) -> float:
    """GB/s of dst.copy_(src) on a ``mib`` MiB buffer, bytes read plus bytes written, best of 12."""
    src = torch.ones(mib * 2**18, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    synchronize(device)
    best = float("inf")
    for _ in range(12):
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / best / 1e9


def history_figures(history: list[dict], levels: list[float]) -> dict:
    """ms/iteration (first check interval left out) and the first check at each rel. gap/infeasibility level."""
    first, last = history[0], history[-1]
    ms = (last["time"] - first["time"]) / (last["iteration"] - first["iteration"]) * 1e3 if len(history) > 1 else None
    reached = {}
    for level in levels:
        rec = next((h for h in history if h["gap"] <= level and h["infeasibility"] <= level), None)
        reached[f"{level:g}"] = None if rec is None else {"iteration": rec["iteration"],
                                                          "loop_seconds": round(rec["time"], 3)}
    return {"ms_per_iteration": None if ms is None else round(ms, 3),
            "first_check_ms_per_iteration": round(first["time"] / first["iteration"] * 1e3, 3),
            "checks": len(history), "loop_seconds": round(last["time"], 3), "first_reached": reached}


# ------------------------------------------------------------------------------------------- solving
def dualip_solve(model, sf, args, device: torch.device, dtype: torch.dtype, engine: str | None = None) -> dict:
    """The measured solve: figures from its result and history, and its peak memory per nonzero. ``engine``:
    DualipOptions.engine (default: --engine)."""
    def progress(rec):
        print(f"  it {rec['iteration']:6d}  {rec['time']:8.2f} s  gap {rec['gap']:.2e}  "
              f"infeas {rec['infeasibility']:.2e}  gamma {rec['gamma']:.1e}", file=sys.stderr)

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = memory_status()
    reset_failure = reset_peak_rss()
    start = time.perf_counter()
    res = model.solve("dualip", standard_form=sf, device=args.device, dtype=str(dtype).replace("torch.", ""),
                      engine=engine or args.engine, tol=args.tol, matrix_dtype=args.matrix_dtype,
                      max_iter=args.max_iter, time_limit=args.time_limit, check_every=args.check_every,
                      callback=progress)
    wall = time.perf_counter() - start
    after = memory_status()
    if reset_failure is None:
        host = {"peak_extra_bytes_per_nonzero": round((after["VmHWM"] - before["VmRSS"]) / sf.nnz, 1),
                "method": "VmHWM after the solve - VmRSS before it (VmHWM reset before the solve)"}
    else:
        host = {"peak_extra_bytes_per_nonzero": None,
                "resident_growth_bytes_per_nonzero": round((after["VmRSS"] - before["VmRSS"]) / sf.nnz, 1),
                "method": f"VmRSS after - before the solve, not a peak: {reset_failure}"}
    host["rss_before_bytes"] = before["VmRSS"]
    figures = history_figures(res.history, [LOOSE_GAP, args.tol])
    out = {
        "status": res.status.value, "objective": res.objective, "bound": res.bound, "gap": res.gap,
        "iterations": res.iterations, "wall_seconds": round(wall, 3), "solve_time": round(res.solve_time, 3),
        "outside_loop_seconds": round(wall - figures["loop_seconds"], 3), **figures,
        "host_memory": host,
    }
    if device.type == "cuda":
        out["peak_gpu_bytes_per_nonzero"] = round(torch.cuda.max_memory_allocated(device) / sf.nnz, 1)
        out["peak_gpu_reserved_bytes_per_nonzero"] = round(torch.cuda.max_memory_reserved(device) / sf.nnz, 1)
    return out


def accounted_memory(sf, args, device: torch.device, dtype: torch.dtype) -> dict:
    """The solver's own accounting (memory_report) in the solve's storage and, for comparison, the other one (and
    with --engine fused_cpu again with the C++ kernels, on the fast storage)."""
    variants = {"compact": dict(engine="compact"), "fast": dict(engine="torch")}
    if args.matrix_dtype:
        variants[f"compact, {args.matrix_dtype} values"] = dict(engine="compact", matrix_dtype=args.matrix_dtype)
    if args.engine == "fused_cpu":
        variants["fast, fused_cpu"] = dict(engine="fused_cpu")
    out = {}
    for name, extra in variants.items():
        options = DualipOptions(device=args.device, dtype=str(dtype).replace("torch.", ""),
                                check_every=args.check_every, **extra)
        out[name] = memory_report(sf, options).as_dict()
        gc.collect()
    out["storage_of_the_solve"] = storage_of(args, device)
    return out


def storage_of(args, device: torch.device) -> str:
    """The ScaledProblem storage of --engine on ``device`` (torch and fused_cpu, which auto picks between by size on
    the CPU, share the fast storage)."""
    return STORAGE[resolve_engine(args.engine, device, args.matrix_dtype)]


def highs_solve(model, sf, args, dualip: dict) -> dict:
    if sf.nnz > args.highs_max_nnz:
        return {"not_run": f"{sf.nnz} nonzeros > --highs-max-nnz {args.highs_max_nnz:g}"}
    h = model.solve("highs", standard_form=sf, solver="ipm", threads=args.threads, time_limit=args.highs_time_limit)
    out = {"status": h.status.value, "seconds": round(h.solve_time, 3), "threads": args.threads,
           "time_limit": args.highs_time_limit}
    if h.status == Status.OPTIMAL:
        out["objective"] = h.objective
        out["dualip_rel_objective_error"] = abs(dualip["objective"] - h.objective) / abs(h.objective)
        out["dualip_speedup"] = round(h.solve_time / dualip["wall_seconds"], 2)
    return out


def highs_pdlp_solve(model, sf, args, dualip: dict, highs: dict) -> dict:
    """HiGHS's PDLP (first-order, CPU) to --tol: the issue's peer where cuPDLPx cannot run."""
    if sf.nnz > args.pdlp_max_nnz:
        return {"not_run": f"{sf.nnz} nonzeros > --pdlp-max-nnz {args.pdlp_max_nnz:g}"}
    start = time.perf_counter()
    r = model.solve("highs", standard_form=sf, solver="pdlp", threads=args.threads, time_limit=args.pdlp_time_limit,
                    pdlp_optimality_tolerance=args.tol, primal_feasibility_tolerance=args.tol,
                    dual_feasibility_tolerance=args.tol)
    wall = time.perf_counter() - start
    out = {"status": r.status.value, "highs_model_status": r.message, "seconds": round(r.solve_time, 3),
           "wall_seconds": round(wall, 3), "iterations": r.iterations, "threads": args.threads,
           "time_limit": args.pdlp_time_limit}
    if r.objective is not None and np.isfinite(r.objective):
        out["objective"] = r.objective
        if "objective" in highs:
            out["rel_objective_error"] = abs(r.objective - highs["objective"]) / abs(highs["objective"])
    out["dualip_speedup"] = round(wall / dualip["wall_seconds"], 2)
    return out


def cupdlpx_solve(model, sf, args, device: torch.device, dualip: dict) -> dict:
    if device.type != "cuda":
        return {"not_run": "cuPDLPx runs on a GPU only; this run's device is cpu"}
    try:
        registry.get("cupdlpx")
    except ImportError as exc:
        return {"not_run": str(exc)}
    torch.cuda.empty_cache()  # the dualip solve's cached blocks
    start = time.perf_counter()
    r = model.solve("cupdlpx", standard_form=sf, tol=args.tol, time_limit=args.time_limit)
    wall = time.perf_counter() - start
    out = {"status": r.status.value, "objective": r.objective, "iterations": r.iterations,
           "optimize_seconds": round(r.solve_time, 3), "wall_seconds": round(wall, 3)}
    if r.status == Status.OPTIMAL:
        out["rel_objective_diff_vs_dualip"] = abs(r.objective - dualip["objective"]) / abs(dualip["objective"])
        out["dualip_sooner_to_tol"] = dualip["status"] == Status.OPTIMAL.value and \
            dualip["wall_seconds"] < wall
    return out


# ------------------------------------------------------------------------------------------- one size
def matching_shape(size: int, items: int | None) -> tuple[int, int, float]:
    """(users, items, density) of about ``size`` edges, 10 per user; items default to min(10,000, users / 100)."""
    users = max(1, round(size / EDGES_PER_USER))
    items = items or max(1, min(MAX_ITEMS, users // MIN_USERS_PER_ITEM))
    return users, items, min(1.0, EDGES_PER_USER / items)


def worker(args) -> None:
    """One size, in its own process: build, solve, memory, SpMV pair, copy bandwidth, HiGHS, cuPDLPx."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float32" if device.type == "cuda" else "float64"))
    warm_up = matching_model(synthetic_matching(200, 10, 0.5, seed=args.seed))  # code pages, CUDA context
    warm_up.solve("dualip", device=args.device, dtype=str(dtype).replace("torch.", ""), max_iter=2 * args.check_every,
                  check_every=args.check_every, engine=args.engine)  # (builds fused_cpu's extension)
    users, items, density = matching_shape(args.worker_size, args.items)
    start = time.perf_counter()
    data = synthetic_matching(users, items, density, seed=args.seed)
    generate = time.perf_counter() - start
    start = time.perf_counter()
    model = matching_model(data)
    sf = model.compile()
    build = time.perf_counter() - start
    print(f"size {args.worker_size:g}: {sf.nnz} nonzeros, {users} users x {items} items", file=sys.stderr)

    dualip = dualip_solve(model, sf, args, device, dtype)
    dualip["engine"] = resolve_engine(args.engine, device, args.matrix_dtype, rows=sf.n_rows, cols=sf.n_cols)
    dualip["storage"] = storage_of(args, device)
    dualip["matrix_dtype"] = args.matrix_dtype or str(dtype).replace("torch.", "")
    dualip["accounted_memory"] = accounted_memory(sf, args, device, dtype)
    if args.compile:  # the same solve with the compiled steady state, side by side (compile time included)
        dualip["compiled"] = dualip_solve(model, sf, args, device, dtype, engine="compiled")
    if args.engine == "fused_cpu":  # the torch path on the same model, side by side
        dualip["torch_path"] = dualip_solve(model, sf, args, device, dtype, engine="torch")
    pair = spmv_pair(sf, device, dtype, args.spmv_repeat, storage_of(args, device))
    copy_gbs = copy_bandwidth_gbs(device, args.copy_mib)
    ms_iter = dualip["ms_per_iteration"]
    pair_gbs = pair["matrix_bytes"] / (pair["mean_ms"] / 1e3) / 1e9
    pair.update({"achieved_gbs": round(pair_gbs, 2), "copy_gbs": round(copy_gbs, 2),
                 "fraction_of_copy_bandwidth": round(pair_gbs / copy_gbs, 3)})
    dualip["iteration_over_spmv_pair"] = None if ms_iter is None else round(ms_iter / pair["mean_ms"], 2)
    if args.engine == "fused_cpu" and dualip["torch_path"]["ms_per_iteration"] is not None:
        dualip["torch_path"]["iteration_over_spmv_pair"] = round(
            dualip["torch_path"]["ms_per_iteration"] / pair["mean_ms"], 2)
    with native_stdout_to_stderr():  # HiGHS's banner goes to stderr
        highs = highs_solve(model, sf, args, dualip)
        pdlp = highs_pdlp_solve(model, sf, args, dualip, highs)
    report = {
        "size": args.worker_size, "nnz": sf.nnz, "users": users, "items": items, "density": density,
        "rows_m": sf.n_rows, "columns_n": sf.n_cols, "blocks": sf.n_blocks,
        "dtype": str(dtype).replace("torch.", ""), "torch_threads": torch.get_num_threads(),
        "setup_seconds": {"generate_data": round(generate, 3), "build_and_compile": round(build, 3),
                          "solve_outside_loop": dualip["outside_loop_seconds"],
                          "scaled_problem_build": pair["scaled_problem_build_seconds"]},
        "dualip": dualip, "spmv_pair": pair, "highs_ipm": highs, "highs_pdlp": pdlp,
        "cupdlpx": cupdlpx_solve(model, sf, args, device, dualip),
    }
    report["targets"] = targets(report, device)
    with open(args.result, "w") as f:
        json.dump(report, f)


def targets(report: dict, device: torch.device) -> dict:
    """The issue's targets against this size's figures (the memory and cuPDLPx ones are GPU targets)."""
    ratio = report["dualip"]["iteration_over_spmv_pair"]
    out = {"iteration_over_spmv_pair_at_most": SPMV_PAIR_TARGET[device.type],
           "iteration_over_spmv_pair_met": None if ratio is None else ratio <= SPMV_PAIR_TARGET[device.type]}
    if device.type == "cuda":
        peak = report["dualip"]["peak_gpu_bytes_per_nonzero"]
        out["peak_gpu_bytes_per_nonzero_at_most"] = GPU_BYTES_PER_NONZERO_TARGET
        out["peak_gpu_bytes_per_nonzero_met"] = peak <= GPU_BYTES_PER_NONZERO_TARGET
        out["sooner_than_cupdlpx"] = report["cupdlpx"].get("dualip_sooner_to_tol")
    return out


def launch(size: int, argv: list[str], result: str) -> dict:
    """This script in worker mode for one size; its stdout goes to stderr. A failed worker gives an error entry."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker-size", str(size), "--result", result]
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=sys.stderr)
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        why = " (killed by the kernel: out of memory?)" if proc.returncode == -9 else ""
        return {"size": size, "error": f"worker exited with status {proc.returncode}{why}",
                "process_seconds": seconds}
    with open(result) as f:
        out = json.load(f)
    out["process_seconds"] = seconds
    return out


def source_version() -> dict:
    """The checkout's commit and its uncommitted changes (the solver measured may differ from the commit)."""
    def git(*cmd):
        out = subprocess.run(["git", "--no-optional-locks", *cmd], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.rstrip("\n") if out.returncode == 0 else None

    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "modified_files": None if changes is None else [line[3:] for line in changes.splitlines()]}


def summary(runs: list[dict], tol: float) -> list[dict]:
    """One line per size: the headline figures."""
    rows = []
    for r in runs:
        if "error" in r:
            rows.append({"size": r["size"], "error": r["error"]})
            continue
        d, h, reached = r["dualip"], r["highs_ipm"], r["dualip"]["first_reached"]
        rows.append({
            "nnz": r["nnz"], "users_x_items": f"{r['users']} x {r['items']}", "status": d["status"],
            "gap": d["gap"], "iterations": d["iterations"],
            "ms_per_iteration": d["ms_per_iteration"], "spmv_pair_ms": r["spmv_pair"]["mean_ms"],
            "iteration_over_spmv_pair": d["iteration_over_spmv_pair"],
            "spmv_pair_fraction_of_copy_bandwidth": r["spmv_pair"]["fraction_of_copy_bandwidth"],
            "peak_host_extra_bytes_per_nonzero": d["host_memory"]["peak_extra_bytes_per_nonzero"],
            "peak_gpu_bytes_per_nonzero": d.get("peak_gpu_bytes_per_nonzero"),
            "storage": d["storage"],
            "compiled_ms_per_iteration": d["compiled"]["ms_per_iteration"] if "compiled" in d else None,
            "accounted_bytes_per_nonzero": {k: v["bytes_per_nnz"] for k, v in d["accounted_memory"].items()
                                            if isinstance(v, dict)},
            f"loop_seconds_to_{LOOSE_GAP:g}": (reached[f"{LOOSE_GAP:g}"] or {}).get("loop_seconds"),
            f"loop_seconds_to_{tol:g}": (reached[f"{tol:g}"] or {}).get("loop_seconds"),
            "dualip_wall_seconds": d["wall_seconds"], "setup_seconds": r["setup_seconds"],
            "highs_ipm_seconds": h.get("seconds"), "highs_ipm_status": h.get("status", h.get("not_run")),
            "dualip_rel_objective_error_vs_highs": h.get("dualip_rel_objective_error"),
            "highs_pdlp_wall_seconds": r["highs_pdlp"].get("wall_seconds"),
            "highs_pdlp_status": r["highs_pdlp"].get("status", r["highs_pdlp"].get("not_run")),
            "cupdlpx_wall_seconds": r["cupdlpx"].get("wall_seconds"),
        })
    return rows


def main() -> None:
    args = parse_args()
    if args.worker_size is not None:
        worker(args)
        return
    argv = sys.argv[1:]
    sizes = [round(float(s)) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    cuda = args.device == "cuda"
    report = {
        "benchmark": "gpu_scale", "device": args.device, "sizes": sizes, "items": args.items, "seed": args.seed,
        "dtype": args.dtype or ("float32" if cuda else "float64"), "tol": args.tol, "max_iter": args.max_iter,
        "time_limit": args.time_limit, "check_every": args.check_every, "threads": args.threads,
        "highs_max_nnz": args.highs_max_nnz, "highs_time_limit": args.highs_time_limit,
        "command": " ".join(["python", "benchmarks/gpu_scale.py", *argv]), "source": source_version(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "arch": platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if cuda else None},
        "notes": {
            "model": "synthetic_matching(users, items, density), 10 edges per user: users = size / 10, items = "
                     "min(10,000, size / 1,000) unless --items, density = 10 / items. 1e6: benchmarks/"
                     "dualip_matching.py's 100,000 x 1,000 model; 1e7: docs/performance.md's 1,000,000 x 10,000; "
                     "2.5e8: DuaLip's 25,000,000 x 10,000 at density 0.001",
            "warm_up": "each size's process first solves a 200 x 10 matching model for two checks on the same "
                       "device and dtype, so that loading torch's code (resident memory) and creating the CUDA "
                       "context count neither in the setup times nor in the peak memory",
            "ms_per_iteration": "from the history timestamps (one per check, the check's cost included) over all "
                                "but the first check interval, which also holds first-call costs",
            "first_reached": "loop seconds (solver clock, setup excluded) and iteration of the first check whose "
                             "rel. gap and rel. infeasibility are both <= the level; status says whether the "
                             "float64 recheck certified tol",
            "setup_seconds": "build_and_compile: Model construction + compile() (data generation apart); "
                             "solve_outside_loop: the solve's wall time minus its loop (ScaledProblem build, "
                             "solver setup, float64 certificate); scaled_problem_build: timed on its own, for the "
                             "SpMV pair",
            "host_memory": "peak extra resident bytes per nonzero over the solve: the standard form is built "
                           "before, so this is the solver's own memory (scaled copies, device CSR A and A^T, "
                           "iterates, repair plan), including what torch's allocator and glibc keep cached and "
                           "the float64 certificate's temporaries",
            "spmv_pair": "torch sparse A x + A^T y on a ScaledProblem built like the solver's, mean and median "
                         "over --spmv-repeat synchronized calls; iteration_over_spmv_pair uses the mean. "
                         "achieved_gbs counts only the matrix bytes (values, int32 indices and row pointers of "
                         "A and A^T), not the vectors; copy_gbs is the best of 12 torch copies of --copy-mib MiB, "
                         "bytes read + written",
            "highs": "interior point, threads = --threads, only up to --highs-max-nnz nonzeros",
            "highs_pdlp": "HiGHS's PDLP (first-order, CPU; the issue's fallback peer for cuPDLPx) with "
                          "pdlp_optimality_tolerance = primal_ and dual_feasibility_tolerance = tol: its relative "
                          "residuals and gap, not a certified gap. HiGHS 1.16 then reports model status Unknown "
                          "(status error, no objective) where PDLP itself printed 'Optimal average solution': "
                          "its check of the result against these tolerances fails, and with its default 1e-7 "
                          "feasibility tolerances PDLP takes about 10x the iterations (13,880 vs 1,440 at 1e5). "
                          "dualip_speedup = its wall seconds over dualip's; only up to --pdlp-max-nnz nonzeros",
            "cupdlpx": "same tol as cuPDLPx's relative optimality and feasibility tolerances (not a certified "
                       "gap); wall_seconds includes flattening the blocks into rows and the upload",
            "load_average": "1-minute load before the first and after the last size: another process on the "
                            "machine disturbs the timings",
            "gpu": f"measured on {torch.cuda.get_device_name(0)}" if cuda else
                   "no GPU in this run: every figure is CPU. Still to be measured on a GPU (--device cuda "
                   "--sizes 1e6,1e7,1e8,2.5e8): the issue's targets in gpu_targets and cuPDLPx side by side",
        },
        "gpu_targets": GPU_TARGETS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = [launch(size, argv, os.path.join(tmp, f"size-{size}.json")) for size in sizes]
    report["load_average_1min_5min_before"] = [round(v, 2) for v in load_before[:2]]
    report["load_average_1min_5min_after"] = [round(v, 2) for v in os.getloadavg()[:2]]
    report["summary"] = summary(runs, args.tol)
    report["runs"] = runs
    emit(report, args.out)


def emit(report: dict, out: str | None) -> None:
    """Print the report as JSON and, with ``out``, write it there too."""
    text = json.dumps(report, indent=1)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
