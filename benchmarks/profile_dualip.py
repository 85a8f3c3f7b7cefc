"""Where a dualip solve's time goes, op by op: torch.profiler over the iterations between two checks and over one
check, on gpu_scale.py's synthetic matching; prints JSON.

    python benchmarks/profile_dualip.py --size 1e6                      # CPU: float64, torch engine
    python benchmarks/profile_dualip.py --size 1e6 --engine fused_cpu   # the C++ iteration and check
    python benchmarks/profile_dualip.py --device cuda --size 1e7        # GPU: float32, compact engine

The solver first runs two stages of --check-every iterations and a check untimed (first-call costs, the
extension build, torch.compile's), then the profiled ones. Per phase ("iterations": --check-every steps,
"check": one check): synchronized wall milliseconds, per iteration for the first, and the ops with the most
self time on the device that does the work (CUDA kernels on a GPU, CPU ops on the CPU) with their call counts;
"aten_ops" counts the ops that compute (views and metadata left out: each is a kernel launch on a GPU), and
"launches" (GPU) the kernels started. A check's cost in iterations ("in_iterations") is what --check-every
amortizes.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from dualip_model.backends.dualip.backend import _scaled_problem
from dualip_model.backends.dualip.options import ENGINES, DualipOptions, resolve_engine
from dualip_model.backends.dualip.solver import AscentState, DualAscentSolver
from dualip_model.synthetic import matching_model, synthetic_matching

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from gpu_scale import emit, matching_shape  # noqa: E402  (the same models and JSON as the scale benchmark)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=1e6, help="nonzeros (edges), as in gpu_scale.py")
    parser.add_argument("--items", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: the solver's for the device")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="DualipOptions.engine (compiled: the steps between checks as one torch.compile graph)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--check-every", type=int, default=DualipOptions().check_every)
    parser.add_argument("--top", type=int, default=15, help="ops listed per phase")
    parser.add_argument("--out", help="also write the JSON here")
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# aten ops that only make views or read metadata, left out of the op counts (no kernel on a GPU)
_METADATA_OPS = {"aten::slice", "aten::as_strided", "aten::view", "aten::empty", "aten::empty_strided", "aten::to",
                 "aten::_to_copy", "aten::select", "aten::alias", "aten::result_type", "aten::expand",
                 "aten::lift_fresh", "aten::detach", "aten::detach_", "aten::resolve_conj", "aten::resolve_neg",
                 "aten::_reshape_alias", "aten::reshape", "aten::unsqueeze", "aten::squeeze", "aten::t",
                 "aten::transpose", "aten::permute", "aten::contiguous", "aten::item", "aten::_local_scalar_dense",
                 "aten::scalar_tensor", "aten::is_nonzero", "aten::empty_like", "aten::split", "aten::chunk"}


def profiled(work, device: torch.device, top: int) -> tuple[float, list[dict], int, int]:
    """(wall ms, the ``top`` ops by self device time, aten ops that compute (views and metadata left out),
    kernel launches) of one synchronized call of ``work``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        work()
        synchronize(device)
        wall = (time.perf_counter() - start) * 1e3
    events = prof.key_averages()
    on_gpu = device.type == "cuda"

    def self_us(e):
        return e.self_device_time_total if on_gpu else e.self_cpu_time_total
    kernels = [e for e in events if self_us(e) > 0]
    kernels.sort(key=self_us, reverse=True)
    launches = sum(e.count for e in events if on_gpu and e.device_type == torch.autograd.DeviceType.CUDA)
    computing = sum(e.count for e in events if e.key.startswith("aten::") and e.key not in _METADATA_OPS)
    ops = [{"op": e.key[:100], "self_ms": round(self_us(e) / 1e3, 3), "calls": e.count} for e in kernels[:top]]
    return wall, ops, computing, launches


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    users, items, density = matching_shape(int(args.size), args.items)
    sf = matching_model(synthetic_matching(users, items, density, seed=args.seed)).compile()
    options = DualipOptions(device=args.device, dtype=args.dtype, engine=args.engine, check_every=args.check_every)
    prob, _ = _scaled_problem(sf, options)
    solver = DualAscentSolver(prob, options)
    gamma, k = 3e-2, args.check_every
    step = gamma / prob.norm_sq
    st = AscentState.start(torch.zeros(prob.m, dtype=prob.dtype, device=prob.device), sf.n_blocks, 1.0 / step)
    for _ in range(2):  # warm-up: first calls, the extension build, compilation
        st = solver.iterate(st, gamma, step, k)
        solver.check(st.y, st.tau, gamma, [st.y, st.w])
    state = {}

    def iterations():
        state["st"] = solver.iterate(st, gamma, step, k)

    def check():
        solver.check(st.y, st.tau, gamma, [st.y, st.w])

    it_ms, it_ops, it_count, it_launches = profiled(iterations, device, args.top)
    check_ms, check_ops, check_count, check_launches = profiled(check, device, args.top)
    report = {
        "benchmark": "profile_dualip", "command": "python " + " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads,
                    "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
        "model": {"nnz": sf.nnz, "users": users, "items": items, "rows_m": sf.n_rows, "columns_n": sf.n_cols},
        "options": {"device": args.device, "dtype": str(prob.dtype).replace("torch.", ""), "storage": prob.storage,
                    "engine": resolve_engine(args.engine, prob.device, None, 1, prob.m, prob.n),
                    "check_every": k},
        "iterations": {"count": k, "ms_per_iteration": round(it_ms / k, 3),
                       "aten_ops_per_iteration": round(it_count / k, 1),
                       "launches_per_iteration": round(it_launches / k, 1) if device.type == "cuda" else None,
                       "top_ops": it_ops},
        "check": {"ms": round(check_ms, 3), "in_iterations": round(check_ms / (it_ms / k), 2),
                  "aten_ops": check_count, "launches": check_launches if device.type == "cuda" else None,
                  "top_ops": check_ops},
        "notes": "wall times include the profiler's overhead (a few microseconds per op); compare phases within a "
                 "run. self_ms: time in the op itself, children excluded, summed over its calls",
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
