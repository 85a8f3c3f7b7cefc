"""cuPDLPx backend: min c^T x s.t. l <= [A; B] x <= u, l_x <= x <= u_x (the flat LP) by GPU PDHG.

The block sum constraints become ordinary rows (dualip_model.flat_lp); cuPDLPx returns the primal, row
duals (Pi: d(objective)/d(row bound), the same sign convention as HiGHS), the primal and dual
objectives and a status. Its dual objective is reported as ``bound`` but is not certified (the dual
iterate is feasible only to cuPDLPx's tolerance). Importing this module needs the ``cupdlpx`` package,
which needs an NVIDIA GPU with CUDA >= 12.4 (or ROCm); without it the registry reports an ImportError
and the conformance suite skips the backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from dualip_model.backend import Capability, RawResult
from dualip_model.errors import ModelError
from dualip_model.flat_lp import flat_lp
from dualip_model.standard_form import StandardForm
from dualip_model.status import Status

try:
    import cupdlpx
    from cupdlpx import PDLP
except ImportError as exc:  # the registry turns this into a skip (tests) or a clear error (Model.solve)
    raise ImportError(f"backend 'cupdlpx' needs the 'cupdlpx' package (pip install 'dualip_model[cupdlpx]'; "
                      f"NVIDIA GPU with CUDA >= 12.4): {exc}") from exc


@dataclass(frozen=True)
class CupdlpxOptions:
    """cuPDLPx settings: relative optimality/feasibility tolerance, limits, presolve, polishing, logging."""

    tol: float = 1e-4  # eps_optimal_relative and eps_feasible_relative
    time_limit: float | None = None  # seconds
    max_iter: int | None = None
    presolve: bool = True
    feasibility_polishing: bool = False
    verbose: bool = False

    def __post_init__(self):
        for name in ("presolve", "feasibility_polishing", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise ModelError(f"CupdlpxOptions.{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not self.tol > 0:
            raise ModelError(f"CupdlpxOptions.tol must be a number > 0, got {self.tol!r}")
        if self.time_limit is not None and not (isinstance(self.time_limit, (int, float)) and self.time_limit > 0):
            raise ModelError(f"CupdlpxOptions.time_limit must be a number > 0, got {self.time_limit!r}")
        if self.max_iter is not None and (isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int)
                                          or self.max_iter < 1):
            raise ModelError(f"CupdlpxOptions.max_iter must be an integer >= 1, got {self.max_iter!r}")


def map_status(code: int) -> Status:
    """cuPDLPx termination code -> Status."""
    table = {
        PDLP.OPTIMAL: Status.OPTIMAL, PDLP.FEAS_POLISH_SUCCESS: Status.OPTIMAL,
        PDLP.PRIMAL_INFEASIBLE: Status.INFEASIBLE, PDLP.DUAL_INFEASIBLE: Status.UNBOUNDED,
        PDLP.INFEASIBLE_OR_UNBOUNDED: Status.INFEASIBLE_OR_UNBOUNDED,
        PDLP.TIME_LIMIT: Status.TIME_LIMIT, PDLP.ITERATION_LIMIT: Status.ITERATION_LIMIT,
    }
    return table.get(int(code), Status.ERROR)


class CupdlpxBackend:
    """The flat LP on cuPDLPx (GPU); primal, row and block duals, detected infeasibility/unboundedness."""

    name = "cupdlpx"
    capabilities = frozenset({
        Capability.DUALS, Capability.BLOCK_DUALS, Capability.DETECTS_INFEASIBLE, Capability.DETECTS_UNBOUNDED,
        Capability.GPU, Capability.RANGES, Capability.FREE_VARIABLES,
    })
    Options = CupdlpxOptions

    def solve(self, sf: StandardForm, options: CupdlpxOptions) -> RawResult:
        flat = flat_lp(sf)
        model = cupdlpx.Model(
            objective_vector=flat.c, constraint_matrix=flat.A.tocsr(), constraint_lower_bound=flat.row_lower,
            constraint_upper_bound=flat.row_upper, variable_lower_bound=flat.col_lower,
            variable_upper_bound=flat.col_upper, objective_constant=flat.offset,
        )
        model.ModelSense = PDLP.MINIMIZE
        params = dict(OptimalityTol=float(options.tol), FeasibilityTol=float(options.tol),
                      OutputFlag=options.verbose, Presolve=options.presolve,
                      FeasibilityPolishing=options.feasibility_polishing)
        if options.time_limit is not None:
            params["TimeLimit"] = float(options.time_limit)
        if options.max_iter is not None:
            params["IterationLimit"] = int(options.max_iter)
        model.setParams(**params)
        start = time.perf_counter()
        model.optimize()
        elapsed = time.perf_counter() - start
        status = map_status(model.Status)
        raw = RawResult(status=status, iterations=int(model.IterCount or 0), solve_time=elapsed,
                        message=str(model.StatusName))
        if model.X is not None and status in (Status.OPTIMAL, Status.TIME_LIMIT, Status.ITERATION_LIMIT):
            raw.x = np.asarray(model.X, dtype=np.float64)
            raw.objective = float(model.ObjVal)
            if model.Pi is not None:
                raw.row_dual, raw.block_dual = flat.split_duals(np.asarray(model.Pi, dtype=np.float64),
                                                                sf.n_rows, sf.n_blocks)
            if status == Status.OPTIMAL:
                raw.bound = float(model.DualObj)
                raw.guarantees = (f"primal and dual within relative tolerance {options.tol:g} (cuPDLPx); "
                                  "bound = dual objective, not certified",)
        return raw
