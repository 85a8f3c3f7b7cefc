"""Settings of the dual-decomposition backend."""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from dualip_model.errors import ModelError

from .fused_cpu import MAX_ACCUMULATORS, toolchain_found

ALGORITHMS = ("auto", "dual_ascent", "pdhg")  # DualipOptions.algorithm (choice.py)
ENGINES = ("auto", "torch", "compact", "compiled", "fused_cpu")  # DualipOptions.engine (kernels.py)
STORAGE = {"torch": "fast", "compact": "compact", "compiled": "compact", "fused_cpu": "fast"}  # ScaledProblem's
# "auto" runs fused_cpu on the CPU from this many columns on (where a C++ toolchain is found): it was faster than
# torch for both methods on all five benchmark families at 1e6 nonzeros and, with auto's method, at 5e4 (1.4-4x,
# one thread, docs/algorithm.md); smaller models keep the torch kernels and never wait for the build
FUSED_AUTO_COLUMNS = 10_000


@dataclass(frozen=True)
class DualipOptions:
    """Tolerances, limits, device and the continuation schedule of the ridge-regularized dual ascent.

    Stops with OPTIMAL when every coupling row, block sum and column bound is met within tol relative to
    1 + |its side| and 0 <= (objective - bound) / max(1, |objective|, |bound|) <= tol (termination.py; measured
    every ``check_every`` iterations, the only host-device synchronizations, and rechecked in float64).
    """

    tol: float = 1e-4
    # "dual_ascent": the ridge-regularized accelerated dual ascent (solver.py); "pdhg": restarted Halpern PDHG over the
    # block polytopes (pdhg.py); "auto": one of them from the model's structure, the dual ascent handing over to PDHG
    # where it has not converged after choice.SWITCH_AFTER iterations (choice.py). All stop under one rule
    # (termination.py)
    algorithm: str = "auto"
    max_iter: int = 20_000
    time_limit: float | None = None  # seconds
    device: str = field(default_factory=lambda: default_device())  # "cpu", "cuda" or "cuda:N"; default CUDA if available
    dtype: str | None = None  # "float32" or "float64"; default float64 on CPU, float32 on CUDA
    # torch intra-op threads during the solve (restored after it); None: default_threads(), torch's setting less
    # the tasks other processes run at the start. Set it for repeatable runs (sums depend on the count)
    threads: int | None = None
    # how the iteration's products and projections run (kernels.py; docs/algorithm.md, storage and memory):
    # "torch" torch sparse CSR products, a block index per column (quickest torch path on CPU); "compact" gathers
    # and segment sums, A stored once per orientation, <= 40 B per nonzero in float32; "compiled" the compact
    # storage with the k steps between checks as one torch.compile graph (one process); "fused_cpu" CPU,
    # every block kind: each iteration's projection and A x in one C++ pass over the columns, the check's
    # projection and repair in C++ too (fused_cpu.py; compiled on first use, ~20 s once per machine); "auto":
    # compact on CUDA or with matrix_dtype; on the CPU fused_cpu from FUSED_AUTO_COLUMNS (1e4) columns where a C++ compiler
    # and ninja are found and the build succeeds, else torch
    engine: str = "auto"
    # "bfloat16" or "float16": A's values stored in 16 bits (the compact and compiled engines), products
    # accumulated in dtype; rounded up where the repair applies (A >= 0), so the repaired primal stays feasible
    # for the exact A
    matrix_dtype: str | None = None
    gamma: float | None = None  # initial ridge weight relative to RMS(c) (None: 0.03)
    gamma_decay: float = 0.5  # gamma <- gamma * gamma_decay at the end of each continuation stage
    gamma_min: float = 1e-7
    check_every: int = 25
    newton_steps: int = 1  # warm-started Newton steps of the simplex projection per iteration
    adaptive_step: bool = True  # step from a running estimate of the local curvature (>= the safe step)
    extrapolate: bool = True  # Richardson extrapolation of the duals across gamma stages
    # at checks where the stationarity stopped halving, move the rows whose dual gradient stayed constant to where
    # it changes sign (a line search): for coefficients spread far within a row, where the ascent creeps
    flat_rows: bool = True
    warm_start: Any = None  # a Result/RawResult of this backend, or {"y": duals, "gamma": gamma}
    callback: Callable[[dict], Any] | None = None  # called with each history record; a truthy return stops
    checkpoint: str | None = None  # .npz or .safetensors file the solver state is saved to (atomically)
    checkpoint_every: int = 1000  # iterations between saves (at the next check); also saved when the solve ends
    resume: str | None = None  # a checkpoint file to continue from, bit for bit (same problem and options)
    seed: int = 0

    def __post_init__(self):
        for name, (ok, expected) in _CHECKS.items():
            value = getattr(self, name)
            try:
                good = bool(ok(value))
            except (TypeError, ValueError, RuntimeError):
                good = False
            if not good:
                raise ModelError(f"DualipOptions.{name}: invalid value {value!r}; expected {expected}")


def _integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _real(v) -> bool:
    """A finite real number (bools are not numbers here)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _device(v) -> bool:
    return isinstance(v, str) and re.fullmatch(r"cpu|cuda(:[0-9]+)?", v) is not None


def _path(v) -> bool:
    return v is None or isinstance(v, (str, os.PathLike))


# name -> (test, the valid values as the message says them)
_CHECKS = {
    "tol": (lambda v: _real(v) and 0 < v < 1, "a finite number in (0, 1), e.g. 1e-4"),
    "algorithm": (lambda v: v in ALGORITHMS, " or ".join(repr(a) for a in ALGORITHMS)),
    "max_iter": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "time_limit": (lambda v: v is None or (_real(v) and v > 0), "None or a finite number of seconds > 0"),
    "device": (_device, "'cpu', 'cuda' or 'cuda:N'"),
    "dtype": (lambda v: v in (None, "float32", "float64"), 'None, "float32" or "float64"'),
    "engine": (lambda v: v in ENGINES, " or ".join(repr(e) for e in ENGINES)),
    "matrix_dtype": (lambda v: v in (None, "bfloat16", "float16"), 'None, "bfloat16" or "float16"'),
    "gamma": (lambda v: v is None or (_real(v) and v > 0), "None or a finite number > 0"),
    "gamma_decay": (lambda v: _real(v) and 0 < v < 1, "a number in (0, 1)"),
    "gamma_min": (lambda v: _real(v) and v > 0, "a finite number > 0"),
    "check_every": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "newton_steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "adaptive_step": (lambda v: isinstance(v, bool), "True or False"),
    "extrapolate": (lambda v: isinstance(v, bool), "True or False"),
    "flat_rows": (lambda v: isinstance(v, bool), "True or False"),
    "callback": (lambda v: v is None or callable(v), "None or a function of one history record"),
    "checkpoint": (_path, "None or a file path"),
    "checkpoint_every": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "resume": (_path, "None or a file path"),
    "seed": (lambda v: _integer(v) and 0 <= v < 2**63, "an integer in [0, 2^63)"),
    "threads": (lambda v: v is None or (_integer(v) and v >= 1), "None or an integer >= 1"),
}


def default_device() -> str:
    """'cuda' where a GPU is available (float32 there), else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_threads() -> int:
    """Intra-op threads of a solve: torch's setting (physical cores unless changed), less the tasks of other
    processes running right now, at least 1.

    Runnable tasks are read from /proc/loadavg at the solve's start, when this process runs one thread (torch's
    workers sleep between ops), so only other work is counted; the load averages are not used, since they count
    this process's own earlier solves (a second solve on a dedicated 16-core machine would get 1 thread).
    Elsewhere than Linux: torch's setting.
    """
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            running = int(f.read().split()[3].split("/")[0])  # "0.52 0.61 0.70 3/512 4242": 3 runnable now
    except (OSError, ValueError, IndexError):
        return torch.get_num_threads()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    others = max(0, running - 1)  # less the thread reading
    return max(1, min(torch.get_num_threads(), cpus - others))


def resolve_engine(engine: str, device: torch.device, matrix_dtype: str | None = None, world: int = 1, rows: int = 0,
                   cols: int = 0, total_cols: int | None = None) -> str:
    """The engine a solve runs (``engine``, "auto" resolved), or one ModelError naming DualipOptions.engine, what
    keeps that engine off this solve, and the engines that can run it.

    ``world``: the processes that share the columns; ``rows``, ``cols``: coupling rows and this rank's columns (fused_cpu
    keeps a copy of A x per thread); ``total_cols``: the columns of all ranks (default ``cols``), for auto's size rule,
    so that every rank resolves alike.
    """
    unfit = {e: _unfit(e, device, matrix_dtype, world, rows, cols) for e in ENGINES[1:]}
    if engine == "auto":
        if device.type == "cuda" or matrix_dtype is not None:
            engine = "compact"
        elif (cols if total_cols is None else total_cols) >= FUSED_AUTO_COLUMNS and toolchain_found() \
                and not unfit["fused_cpu"]:
            engine = "fused_cpu"
        else:
            engine = "torch"
    if unfit[engine]:
        fit = ", ".join(repr(e) for e in ENGINES[1:] if not unfit[e])
        raise ModelError(f"DualipOptions.engine {engine!r} cannot run this solve: {'; '.join(unfit[engine])}; "
                         f"engines that can: {fit} (choices: {', '.join(repr(e) for e in ENGINES)})")
    return engine


def _unfit(engine: str, device: torch.device, matrix_dtype: str | None, world: int, rows: int, cols: int) -> list[str]:
    """What keeps ``engine`` off a solve (empty: nothing)."""
    reasons = []
    if engine in ("torch", "fused_cpu") and matrix_dtype is not None:
        reasons.append(f"matrix_dtype {matrix_dtype!r} (its products take A's values in the solve's dtype)")
    if engine == "compiled" and world > 1:
        reasons.append(f"{world} processes (torch.compile takes no collectives)")
    if engine == "fused_cpu":
        if device.type != "cpu":
            reasons.append(f"device {device} (CPU only)")
        threads = torch.get_num_threads()
        if rows * threads > max(MAX_ACCUMULATORS, cols):
            reasons.append(f"{rows} rows x {threads} threads (a copy of A x per thread, zeroed every iteration: at "
                           f"most max(2^22, {cols} columns) entries)")
    return reasons
