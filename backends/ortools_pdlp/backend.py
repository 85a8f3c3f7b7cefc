"""OR-Tools PDLP backend: min c^T x s.t. l <= [A; B] x <= u, l_x <= x <= u_x (the flat LP) by restarted PDHG.

The block sum constraints become ordinary rows (dualip_model.flat_lp) and the flat LP goes to
``ortools.pdlp.python.pdlp.primal_dual_hybrid_gradient`` in one call. PDLP stops when its relative KKT
residuals (primal and dual residuals, duality gap) are below ``tol``; it returns the primal, row duals (the
same sign convention as HiGHS: d(objective)/d(row bound)) and the dual objective, reported as ``bound``
but not certified (the dual iterate is feasible only to PDLP's tolerance). Importing this module needs the
``ortools`` package (CPU wheels on PyPI); without it the registry reports an ImportError and the
conformance suite skips the backend.
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
    from ortools.pdlp import solve_log_pb2, solvers_pb2
    from ortools.pdlp.python import pdlp
except ImportError as exc:  # the registry turns this into a skip (tests) or a clear error (Model.solve)
    raise ImportError(f"backend 'ortools-pdlp' needs the 'ortools' package (pip install ortools, or "
                      f"pip install 'dualip_model[bench]'): {exc}") from exc

_REASON = solve_log_pb2.TerminationReason
_STATUS = {
    _REASON.TERMINATION_REASON_OPTIMAL: Status.OPTIMAL,
    _REASON.TERMINATION_REASON_PRIMAL_INFEASIBLE: Status.INFEASIBLE,
    _REASON.TERMINATION_REASON_DUAL_INFEASIBLE: Status.UNBOUNDED,
    _REASON.TERMINATION_REASON_PRIMAL_OR_DUAL_INFEASIBLE: Status.INFEASIBLE_OR_UNBOUNDED,
    _REASON.TERMINATION_REASON_TIME_LIMIT: Status.TIME_LIMIT,
    _REASON.TERMINATION_REASON_ITERATION_LIMIT: Status.ITERATION_LIMIT,
    _REASON.TERMINATION_REASON_KKT_MATRIX_PASS_LIMIT: Status.ITERATION_LIMIT,
    _REASON.TERMINATION_REASON_INTERRUPTED_BY_USER: Status.INTERRUPTED,
}


@dataclass(frozen=True)
class OrtoolsPdlpOptions:
    """PDLP settings: relative and absolute KKT tolerance, threads, limits, presolve, polishing, logging.

    ``tol`` is PDLP's eps_optimal_relative and eps_optimal_absolute (its default is 1e-6 for both).
    """

    tol: float = 1e-6
    threads: int = 1  # PDLP's num_threads (its default)
    time_limit: float | None = None  # seconds
    max_iter: int | None = None
    presolve: bool = False  # PDLP's presolve (glop's), off by default as in PDLP
    feasibility_polishing: bool = False
    verbose: bool = False  # PDLP's log (verbosity 2) on stderr

    def __post_init__(self):
        for name in ("presolve", "feasibility_polishing", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise ModelError(f"OrtoolsPdlpOptions.{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not self.tol > 0:
            raise ModelError(f"OrtoolsPdlpOptions.tol must be a number > 0, got {self.tol!r}")
        if self.time_limit is not None and (isinstance(self.time_limit, bool)
                                            or not isinstance(self.time_limit, (int, float))
                                            or not self.time_limit > 0):
            raise ModelError(f"OrtoolsPdlpOptions.time_limit must be a number > 0, got {self.time_limit!r}")
        for name, value in (("threads", self.threads), ("max_iter", self.max_iter)):
            if (value is not None or name == "threads") and (isinstance(value, bool) or not isinstance(value, int)
                                                              or value < 1):
                raise ModelError(f"OrtoolsPdlpOptions.{name} must be an integer >= 1, got {value!r}")


def map_status(reason: int) -> Status:
    """PDLP termination reason -> Status (invalid problem or parameters, numerical errors: ERROR)."""
    return _STATUS.get(int(reason), Status.ERROR)


def pdlp_params(options: OrtoolsPdlpOptions):
    """The PrimalDualHybridGradientParams of ``options`` (PDLP's defaults for everything else)."""
    params = solvers_pb2.PrimalDualHybridGradientParams()
    criteria = params.termination_criteria
    criteria.simple_optimality_criteria.eps_optimal_relative = float(options.tol)
    criteria.simple_optimality_criteria.eps_optimal_absolute = float(options.tol)
    if options.time_limit is not None:
        criteria.time_sec_limit = float(options.time_limit)
    if options.max_iter is not None:
        criteria.iteration_limit = int(options.max_iter)
    params.num_threads = int(options.threads)
    params.presolve_options.use_glop = options.presolve
    params.use_feasibility_polishing = options.feasibility_polishing
    params.verbosity_level = 2 if options.verbose else 0
    return params


class OrtoolsPdlpBackend:
    """The flat LP on OR-Tools PDLP (CPU); primal, row and block duals, detected infeasibility/unboundedness."""

    name = "ortools-pdlp"
    capabilities = frozenset({
        Capability.DUALS, Capability.BLOCK_DUALS, Capability.DETECTS_INFEASIBLE, Capability.DETECTS_UNBOUNDED,
        Capability.RANGES, Capability.FREE_VARIABLES,
    })
    Options = OrtoolsPdlpOptions

    def solve(self, sf: StandardForm, options: OrtoolsPdlpOptions) -> RawResult:
        flat = flat_lp(sf)
        qp = pdlp.QuadraticProgram()
        qp.objective_vector = flat.c
        qp.objective_offset = flat.offset
        qp.constraint_matrix = flat.A
        qp.constraint_lower_bounds = flat.row_lower
        qp.constraint_upper_bounds = flat.row_upper
        qp.variable_lower_bounds = flat.col_lower
        qp.variable_upper_bounds = flat.col_upper
        start = time.perf_counter()
        result = pdlp.primal_dual_hybrid_gradient(qp, pdlp_params(options))
        elapsed = time.perf_counter() - start
        log = result.solve_log
        status = map_status(log.termination_reason)
        raw = RawResult(status=status, iterations=int(log.iteration_count), solve_time=elapsed,
                        message=_REASON.Name(log.termination_reason).removeprefix("TERMINATION_REASON_").lower()
                        + (f": {log.termination_string}" if log.termination_string else ""))
        x = np.asarray(result.primal_solution, dtype=np.float64)
        if status.has_solution and x.shape == (sf.n_cols,):
            raw.x = x
            raw.objective = float(flat.c @ x) + flat.offset
            raw.row_dual, raw.block_dual = flat.split_duals(np.asarray(result.dual_solution, dtype=np.float64),
                                                            sf.n_rows, sf.n_blocks)
            if status == Status.OPTIMAL:
                stats = next((s for s in log.solution_stats.convergence_information
                              if s.candidate_type == log.solution_type), None)
                if stats is not None:
                    raw.bound = float(stats.dual_objective)
                raw.guarantees = (f"primal and dual within relative KKT tolerance {options.tol:g} (PDLP); "
                                  "bound = dual objective, not certified",)
        return raw
