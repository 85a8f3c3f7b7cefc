"""HiGHS backend: min c^T x s.t. row_lower <= [A; B] x <= row_upper, l <= x <= u, passed in one bulk call.

B holds one row per block with a sum constraint (dualip_model.flat_lp), so HiGHS solves exactly the
standard form and returns duals for coupling rows and block rows alike, and on an infeasible model a Farkas
ray whose coupling-row part is a certificate over the block polytopes. HiGHS writes nothing to the console
unless HighsOptions.verbose; its log is kept in RawResult.log.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from dualip_model.backend import Capability, RawResult
from dualip_model.errors import ModelError
from dualip_model.flat_lp import flat_lp
from dualip_model.standard_form import EntryNames, StandardForm
from dualip_model.status import Status

_SOLVERS = ("choose", "simplex", "ipm", "pdlp")


@dataclass(frozen=True)
class HighsOptions:
    """Settings passed to HiGHS; None keeps HiGHS's default."""

    solver: str = "choose"  # "choose", "simplex", "ipm" or "pdlp"
    threads: int | None = None
    time_limit: float | None = None  # seconds
    primal_feasibility_tolerance: float | None = None
    dual_feasibility_tolerance: float | None = None
    ipm_optimality_tolerance: float | None = None
    pdlp_optimality_tolerance: float | None = None
    presolve: bool = True
    verbose: bool = False  # print HiGHS's log to the console (RawResult.log keeps it either way, but for pdlp)

    def __post_init__(self):
        if self.solver not in _SOLVERS:
            raise ModelError(f"HighsOptions.solver must be one of {_SOLVERS}, got {self.solver!r}")
        for name in ("presolve", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise ModelError(f"HighsOptions.{name} must be True or False, got {getattr(self, name)!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ModelError(f"HighsOptions.threads must be an integer >= 1, got {self.threads!r}")
        for name in ("time_limit", "primal_feasibility_tolerance", "dual_feasibility_tolerance",
                     "ipm_optimality_tolerance", "pdlp_optimality_tolerance"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0):
                raise ModelError(f"HighsOptions.{name} must be a number > 0, got {value!r}")


def silent_highs():
    """A HiGHS instance with output off, having printed nothing.

    highspy.Highs() installs its Python callback on construction, which prints HiGHS's banner to stdout
    before any option can be set; the core class it wraps (exported as highspy._Highs) installs none.
    """
    import highspy

    h = highspy._Highs()
    h.setOptionValue("output_flag", False)
    return h


def to_highs(sf: StandardForm, names: tuple[list[str], list[str]] | None = None):
    """A silent HiGHS instance holding the standard form as one LP (coupling rows, then block rows), named or not."""
    import highspy

    flat = flat_lp(sf)
    A = flat.A
    if A.nnz >= 2**31:
        raise ModelError(f"model '{sf.name}' has {A.nnz} nonzeros with block rows; HiGHS takes < 2^31")
    h = silent_highs()
    _refuse_beyond_highs(sf, h)
    inf = h.getInfinity()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.offset_ = flat.offset
    lp.col_cost_ = flat.c
    lp.col_lower_ = np.maximum(flat.col_lower, -inf)
    lp.col_upper_ = np.minimum(flat.col_upper, inf)
    lp.row_lower_ = np.maximum(flat.row_lower, -inf)
    lp.row_upper_ = np.minimum(flat.row_upper, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32, copy=False)
    lp.a_matrix_.value_ = A.data
    if names is not None:
        lp.col_names_, lp.row_names_ = names
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise ModelError(f"HiGHS rejected model '{sf.name}'")
    return h, flat


def _refuse_beyond_highs(sf: StandardForm, h) -> None:
    """ModelError naming the first entry HiGHS would refuse (|a_ij| >= large_matrix_value, 1e15 by default) or
    silently read as infinite (|c_j| >= infinite_cost, 1e20 by default), instead of its bare kError or another model."""
    names = EntryNames(sf)
    large = h.getOptionValue("large_matrix_value")[1]
    count, k = _at_least(sf.A_data, large)
    if count:
        raise ModelError(f"model '{sf.name}': {count} coefficient(s) of size >= {large:g}, which HiGHS refuses "
                         f"(large_matrix_value), e.g. {sf.A_data[k]:g} in {names.row(int(sf.A_indices[k]))}, "
                         f"{names.entry(k)}; rescale the rows or the variables")
    infinite = h.getOptionValue("infinite_cost")[1]
    count, j = _at_least(sf.c, infinite)
    if count:
        raise ModelError(f"model '{sf.name}': {count} objective coefficient(s) of size >= {infinite:g}, which "
                         f"HiGHS reads as infinite (infinite_cost), e.g. {sf.c[j]:g} on {names.column(j)}; rescale "
                         f"the objective")


def _at_least(values, limit: float) -> tuple[int, int]:
    """(how many of ``values`` have |v| >= limit, the first one's index; 0 without one)."""
    big = np.flatnonzero(np.abs(np.asarray(values)) >= limit)
    return int(big.size), int(big[0]) if big.size else 0


class HighsBackend:
    """The exact reference backend (simplex / IPM / PDLP from highspy)."""

    name = "highs"
    capabilities = frozenset({
        Capability.EXACT, Capability.DUALS, Capability.BLOCK_DUALS, Capability.CERTIFIED_BOUND,
        Capability.DETECTS_INFEASIBLE, Capability.DETECTS_UNBOUNDED, Capability.RANGES,
        Capability.FREE_VARIABLES,
    })
    Options = HighsOptions

    def solve(self, sf: StandardForm, options: HighsOptions) -> RawResult:
        import highspy

        from .status import map_status

        h, flat = to_highs(sf)
        with tempfile.TemporaryDirectory() as tmp:
            log_path = os.path.join(tmp, "highs.log")
            # HiGHS's PDLP (cuPDLP-C) prints to stdout whenever output_flag is on, whatever log_to_console
            # says: silent, it runs with output off and leaves no log
            settings = {"output_flag": options.verbose or options.solver != "pdlp",
                        "log_to_console": options.verbose, "log_file": log_path,
                        "solver": options.solver, "presolve": "on" if options.presolve else "off"}
            for key in ("threads", "time_limit", "primal_feasibility_tolerance", "dual_feasibility_tolerance",
                        "ipm_optimality_tolerance", "pdlp_optimality_tolerance"):
                if getattr(options, key) is not None:
                    settings[key] = getattr(options, key)
            for key, value in settings.items():
                if h.setOptionValue(key, value) == highspy.HighsStatus.kError:
                    raise ModelError(f"HiGHS rejected option {key}={value!r}")
            if options.threads is not None:
                highspy.Highs.resetGlobalScheduler(True)  # HiGHS keeps one thread pool per process
            start = time.perf_counter()
            h.run()
            # read before farkas_ray: HiGHS may re-solve to find the ray, which overwrites status and info
            model_status = h.getModelStatus()
            status = map_status(model_status)
            info = h.getInfo()
            iterations = int(max(info.simplex_iteration_count, info.ipm_iteration_count,
                                 info.pdlp_iteration_count, 0))
            ray = farkas_ray(h, sf.n_rows) if status == Status.INFEASIBLE else None
            elapsed = time.perf_counter() - start
            h.setOptionValue("log_file", "")
            with open(log_path, encoding="utf-8", errors="replace") as f:
                log = f.read()
        raw = RawResult(status=status, iterations=iterations, solve_time=elapsed, log=log, ray=ray,
                        message=h.modelStatusToString(model_status))
        if status.has_solution or status == Status.OPTIMAL:
            sol = h.getSolution()
            if sol.value_valid:
                raw.x = np.asarray(sol.col_value, dtype=np.float64)
                raw.objective = float(info.objective_function_value)
            if sol.dual_valid:
                duals = np.asarray(sol.row_dual, dtype=np.float64)
                raw.row_dual, raw.block_dual = flat.split_duals(duals, sf.n_rows, sf.n_blocks)
            if status == Status.OPTIMAL:
                raw.bound = raw.objective
                raw.guarantees = ("optimal within HiGHS tolerances",)
        return raw


def farkas_ray(h, n_rows: int) -> np.ndarray | None:
    """y = -(HiGHS's dual ray) on the coupling rows: min_{x in bounds, blocks} y^T A x > h(y) on an infeasible LP.

    HiGHS's ray d of the flat LP [A; B] has the sign of its row duals (<= 0 on a binding <= row), so
    y = -d has dualip's convention: y_r >= 0 on <= rows, <= 0 on >= rows, and min_{x in bounds} y^T [A; B] x
    exceeds h(y) = sum_r u_r y_r^+ - l_r y_r^-. Every x in the block polytopes meets the block rows, so their
    part y_B^T B x - h_B(y_B) is <= 0 there, and the coupling part alone is a certificate over the blocks. Where the
    solve left no ray (presolve decided infeasibility, or IPM ran), HiGHS re-solves the LP with zero costs and
    presolve off to find one. None where it finds none.
    """
    import highspy

    status, has_ray, values = h.getDualRay()
    if status == highspy.HighsStatus.kError or not has_ray:
        return None
    return -np.asarray(values, dtype=np.float64)[:n_rows]
