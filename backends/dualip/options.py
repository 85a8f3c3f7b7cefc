"""Settings of the dual-decomposition backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from dualip_model.errors import ModelError


@dataclass(frozen=True)
class DualipOptions:
    """Tolerances, limits, device and the continuation schedule of the ridge-regularized dual ascent.

    Stops with OPTIMAL when rel. primal infeasibility ||(Ax-b)_+|| / (1+||b||) <= tol and rel. gap
    (objective - bound) / max(1, |objective|, |bound|) <= tol, both measured every ``check_every``
    iterations (the only host-device synchronizations).
    """

    tol: float = 1e-4
    max_iter: int = 20_000
    time_limit: float | None = None  # seconds
    device: str = "cpu"
    dtype: str | None = None  # "float32" or "float64"; default float64 on CPU, float32 on CUDA
    # "fast": torch sparse CSR products, block index per column (quickest on CPU); "compact": gathers and segment
    # sums, A stored once per orientation, <= 40 B per nonzero in float32, traceable by torch.compile;
    # default compact on CUDA, fast on CPU
    storage: str | None = None
    compile: bool = False  # run the k steps between checks as one torch.compile graph (compact storage only)
    # CPU, simplex/box blocks: each iteration's projection and A x in one C++ pass over the columns, and the check's
    # projection and repair in C++ too (fused_cpu.py; compiled on first use, ~20 s once per machine)
    fused_cpu: bool = False
    # "bfloat16" or "float16": A's values stored in 16 bits (compact storage only), products accumulated in dtype;
    # rounded up where the repair applies (A >= 0), so the repaired primal stays feasible for the exact A
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
    callback: Callable[[dict], Any] | None = None  # called with each history record; True stops
    checkpoint: str | None = None  # .npz or .safetensors file the solver state is saved to (atomically)
    checkpoint_every: int = 1000  # iterations between saves (at the next check); also saved when the solve ends
    resume: str | None = None  # a checkpoint file to continue from, bit for bit (same problem and options)
    seed: int = 0

    def __post_init__(self):
        checks = {
            "tol": self.tol > 0, "max_iter": self.max_iter >= 1, "check_every": self.check_every >= 1,
            "gamma_decay": 0 < self.gamma_decay < 1, "gamma_min": self.gamma_min > 0,
            "newton_steps": self.newton_steps >= 1, "checkpoint_every": self.checkpoint_every >= 1,
            "time_limit": self.time_limit is None or self.time_limit > 0,
            "gamma": self.gamma is None or self.gamma > 0,
            "dtype": self.dtype in (None, "float32", "float64"),
            "storage": self.storage in (None, "fast", "compact"),
            "matrix_dtype": self.matrix_dtype in (None, "bfloat16", "float16"),
        }
        try:
            checks["device"] = torch.device(self.device).type in ("cpu", "cuda")
        except (RuntimeError, TypeError):
            checks["device"] = False
        for name, ok in checks.items():
            if not ok:
                raise ModelError(f"DualipOptions.{name}: invalid value {getattr(self, name)!r}")
        if self.compile and self.fused_cpu:
            raise ModelError("DualipOptions.compile and fused_cpu are two ways to fuse the iteration (torch.compile "
                             "cannot trace the C++ step): choose one")


def storage_for(device: torch.device, storage: str | None = None) -> str:
    """The storage a solve on ``device`` uses: ``storage`` if given, else compact on CUDA and fast on CPU."""
    return storage or ("compact" if device.type == "cuda" else "fast")
