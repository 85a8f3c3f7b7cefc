"""The `dualip` backend: ridge-regularized dual decomposition (DuaLip's method) in PyTorch, CPU and CUDA.

Maps a StandardForm to the scaled device problem, runs DualAscentSolver, and returns a RawResult whose
numbers are recomputed in float64 from the standard form itself: the Lagrangian bound
L(y) = -h(y) + sum_i min_{x in C_i} (c + A^T y)_i^T x_i (valid for every y in the dual domain) and the
objective and every constraint of the returned primal (termination.py). ``solve_standard_form`` is the
whole solve, for one process or, given a communicator and a checkpoint store, for one rank of a sharded solve
(see distributed.py).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from dualip_model.backend import Capability, RawResult
from dualip_model.errors import CapabilityError, ModelError
from dualip_model.polytopes import EQUALITY_KINDS, BlockKind
from dualip_model.standard_form import StandardForm, segment_sums
from dualip_model.status import Status

from . import checkpoint
from .block_order import BlockOrder
from .choice import Choice, choose
from .comm import LOCAL, Comm
from .fast_projection import simplex_box_linear_minimize
from .options import STORAGE, DualipOptions, default_threads, resolve_engine
from .problem import Blocks, ScaledProblem
from .projections import BlockStructure, linear_minimize
from .pdhg import PdhgSolver
from .solver import DualAscentSolver
from .termination import Interrupt, Measures, StoppingRule, block_violation, largest, side_violation

EXACTLY_FEASIBLE = 1e-9  # a repaired x whose largest relative violation is at float64 rounding level


def _device_dtype(options: DualipOptions):
    """(device, dtype) with the device's defaults filled in."""
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"DualipOptions.device is {options.device!r} but CUDA is not available")
    name = options.dtype or ("float32" if device.type == "cuda" else "float64")
    return device, getattr(torch, name)


def _warm_start(ws, sf: StandardForm):
    """(y in original units, gamma) from a Result, RawResult or dict; checks the row count and the values."""
    if ws is None:
        return None, None
    state = getattr(getattr(ws, "raw", ws), "state", ws)
    if not isinstance(state, dict) or "y" not in state:
        raise ModelError("DualipOptions.warm_start: expected a dualip Result/RawResult or a dict with 'y'")
    try:
        y = np.asarray(state["y"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"DualipOptions.warm_start: duals must be numbers ({exc})") from None
    if y.shape != (sf.n_rows,):
        raise ModelError(f"DualipOptions.warm_start: duals have shape {y.shape}, the model has {sf.n_rows} rows")
    if not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y))
        raise ModelError(f"DualipOptions.warm_start: {bad.size} duals are NaN or infinite (rows {bad[:5].tolist()})")
    gamma = state.get("gamma")
    if gamma is not None and not (isinstance(gamma, (int, float, np.floating)) and np.isfinite(gamma) and gamma > 0):
        raise ModelError(f"DualipOptions.warm_start: gamma {gamma!r} must be a finite number > 0")
    return y, gamma


@dataclass(frozen=True)
class Recheck:
    """The float64 numbers of one primal x and duals y: the bound L(y), the Measures of x that the stopping rule
    reads (every constraint of the standard form), the block multipliers, and whether the rule holds."""

    bound: float
    measures: Measures
    block_dual: np.ndarray
    passed: bool = False


def float64_certificate(sf: StandardForm, x: np.ndarray, y: np.ndarray, linear_minimize_f64=None,
                        comm: Comm = LOCAL, tol: float | None = None) -> Recheck:
    """L(y) and, for x: its objective, the largest violation of a coupling row, block sum or column bound relative
    to 1 + |side|, and |y|^T violation, in float64 (``passed``: the stopping rule at ``tol`` holds).

    y is in original units with the solver's sign (L = c^T x + y^T A x - h(y)); ``linear_minimize_f64``
    maps a float64 CPU cost tensor to (value per block, x, mu) and defaults to the exact sort-based one.
    Sharded: sf and x are this rank's columns, y is replicated; the sums over columns are all-reduced.
    """
    A = sf.A
    ax = comm.sum_np(A @ x)
    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731  (a writable copy: sf's arrays are frozen)
    rows = largest(side_violation(t(ax), t(sf.row_lower), t(sf.row_upper)))
    sums = segment_sums(x, np.asarray(sf.block_ptr, dtype=np.int64))
    kind = np.asarray(sf.block_kind)
    blocks = largest(block_violation(t(sums), t(np.asarray(sf.block_rhs, dtype=np.float64)),
                                     t(kind == BlockKind.BOX), t(np.isin(kind, EQUALITY_KINDS))))
    n = sf.n_cols
    columns = largest(side_violation(t(x), t(np.broadcast_to(sf.col_lower, (n,))),
                                     t(np.broadcast_to(sf.col_upper, (n,)))))
    violation = max(float(rows), float(comm.max_np(max(float(blocks), float(columns)))))
    viol = np.maximum(ax - sf.row_upper, 0) + np.maximum(sf.row_lower - ax, 0)
    h = float(sf.row_upper[y > 0] @ y[y > 0] + sf.row_lower[y < 0] @ y[y < 0])
    if linear_minimize_f64 is None:
        bs = BlockStructure.from_standard_form(sf, torch.device("cpu"), torch.float64)
        linear_minimize_f64 = lambda g: linear_minimize(g, bs)  # noqa: E731
    values, _, mu = linear_minimize_f64(torch.as_tensor(sf.c + A.T @ y, dtype=torch.float64))
    block_values, cost = comm.sum_np([float(values.sum()), float(sf.c @ x)])
    bound = float(block_values) - h + sf.offset
    measures = Measures(objective=float(cost) + sf.offset, violation=violation,
                        dual_violation=float(np.abs(y) @ viol))
    passed = tol is not None and StoppingRule.of(tol, torch.float64).optimal(measures, bound)
    return Recheck(bound, measures, mu.numpy(), passed)


def unbounded_columns(sf: StandardForm) -> np.ndarray:
    """Compiled columns whose block LP min_{x in C_i} g^T x is -inf for some duals: an infinite bound on a BOX
    column that lies in a coupling row or whose cost improves toward it, or an infinite lower bound in a box-cut
    block (simplex columns are >= 0 under a finite sum)."""
    n = sf.n_cols
    lower = np.broadcast_to(np.asarray(sf.col_lower, dtype=np.float64), (n,))
    upper = np.broadcast_to(np.asarray(sf.col_upper, dtype=np.float64), (n,))
    kind = np.repeat(np.asarray(sf.block_kind), np.diff(sf.block_ptr))
    in_rows = np.diff(sf.A_indptr) > 0
    box = kind == BlockKind.BOX
    down = np.isneginf(lower) & (~box | in_rows | (sf.c > 0))
    up = np.isposinf(upper) & box & (in_rows | (sf.c < 0))
    return np.flatnonzero(down | up)


def _refuse_unbounded(sf: StandardForm, comm: Comm) -> None:
    """CapabilityError naming the columns (all ranks agree) where no Lagrangian bound can be certified."""
    cols = unbounded_columns(sf)
    if not comm.max_np(cols.size > 0):
        return
    names = [_column_name(sf, int(j)) for j in cols[:5]]
    raise CapabilityError(
        f"backend 'dualip' cannot bound this model: {cols.size} column(s) without a finite bound can make a block "
        f"LP unbounded ({', '.join(names) or 'on another rank'}{', ...' if cols.size > 5 else ''}); give them "
        f"finite bounds, put them in simplex blocks, or use an exact backend such as 'highs'")


def _column_name(sf: StandardForm, j: int) -> str:
    """Compiled column j as "variable[position]" in the model's own column order."""
    order = sf.layout.column_order
    col = int(order[j]) if order is not None else j
    for slot in sf.layout.variables:
        if slot.start <= col < slot.stop:
            return f"{slot.name}[{col - slot.start}]"
    return f"column {col}"


@contextmanager
def _intra_op_threads(threads: int | None):
    """torch's intra-op threads set for the solve (``threads`` or default_threads()) and restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


class DualipBackend:
    """min c^T x s.t. l <= A x <= u, x in C by accelerated ascent on the ridge-regularized Lagrangian dual."""

    name = "dualip"
    capabilities = frozenset({
        Capability.DUALS, Capability.BLOCK_DUALS, Capability.CERTIFIED_BOUND, Capability.DETECTS_INFEASIBLE,
        Capability.WARM_START, Capability.GPU, Capability.HISTORY, Capability.RANGES,
    })
    Options = DualipOptions

    def solve(self, sf: StandardForm, options: DualipOptions) -> RawResult:
        return solve_standard_form(sf, options)


def solve_standard_form(sf: StandardForm, options: DualipOptions, comm: Comm = LOCAL, store=None) -> RawResult:
    """The dualip solve of ``sf``; with ``comm`` sf holds one rank's blocks and x, block_dual are that rank's.

    Ctrl-C during the solve is deferred to the loop's next safe point (termination.Interrupt) and returns
    INTERRUPTED with the best result so far.
    """
    start = time.perf_counter()
    _device_dtype(options)  # an unavailable device is refused before any work
    if options.checkpoint is not None:
        checkpoint.check_target(options.checkpoint, store)  # an unwritable path is refused before any work
    y0, gamma0 = _warm_start(options.warm_start, sf)
    torch.manual_seed(options.seed)
    if options.resume is not None and options.warm_start is not None:
        raise ModelError("DualipOptions: give either resume (a checkpoint) or warm_start, not both")
    if sf.n_rows == 0:
        return _separable(sf, comm)
    _refuse_unbounded(sf, comm)
    with Interrupt() as interrupt, _intra_op_threads(options.threads):
        raw = _solve(sf, options, comm, store, y0, gamma0, interrupt)
    raw.solve_time = time.perf_counter() - start
    return raw


def _solve(sf, options, comm, store, y0, gamma0, interrupt) -> RawResult:
    """The loop and the float64 recheck of ``solve_standard_form``."""
    prob, order = _scaled_problem(sf, options, comm)
    store = store if store is not None else checkpoint.FileStore(sf)
    choice = _choice(options, prob, store)
    solver = (PdhgSolver if choice.algorithm == "pdhg" else DualAscentSolver)(prob, _phase(options, choice), store)
    if y0 is not None:
        y0 = y0 / (prob.sigma * prob.row_scale)
    same = prob.dtype == torch.float64 and prob.device.type == "cpu" and order is None
    if same:
        linmin = solver.kernels.linear_minimize
    elif prob.fast_projection:  # simplex and box blocks: segment reductions in float64 on the host, no sort
        host_blocks = Blocks.build(sf, torch.device("cpu"), torch.float64, compact=True)  # no membership matrix
        linmin = lambda g: simplex_box_linear_minimize(g, host_blocks, need_x=False)  # noqa: E731
    else:
        linmin = None
    to_original = prob.sigma * prob.row_scale

    def host_x(x: torch.Tensor) -> np.ndarray:
        x = x.double().cpu().numpy()
        return order.columns_back(x) if order is not None else x

    def verify(x: torch.Tensor, y: torch.Tensor) -> Recheck:
        return float64_certificate(sf, host_x(x), to_original * y.double().cpu().numpy(), linmin, comm, options.tol)

    out = solver.solve(y0, gamma0, verify, interrupt)
    switched = choice.switch_after is not None and out["status"] == Status.ITERATION_LIMIT and \
        out["iterations"] < options.max_iter
    if switched:  # the dual ascent has not converged: PDHG takes over from its duals (choice.py)
        pdhg = replace(options, algorithm="pdhg", resume=None)
        out = PdhgSolver(prob, pdhg, store).solve(verify=verify, interrupt=interrupt, after=out)
    y_last = to_original * out["y"].double().cpu().numpy()  # where the ascent stands: the warm start
    y = to_original * out["y_bound"].double().cpu().numpy()  # the duals behind the best bound
    x = host_x(out["x"])
    check = out["verified"] or float64_certificate(sf, x, y, linmin, comm, options.tol)
    status, m, bound = out["status"], check.measures, check.bound
    rule = StoppingRule.of(options.tol, torch.float64)
    if rule.gap(m, bound) == 0.0 and bound > m.objective:
        bound = m.objective  # a crossing within float64 rounding: the bound, weakened by that much, stays valid
    if status == Status.OPTIMAL and not check.passed:  # (only where no recheck ran in the loop)
        status = Status.ITERATION_LIMIT
    guarantees = ["bound: unregularized Lagrangian bound L(y), valid for any dual y" if np.isfinite(bound) else
                  "bound: none (-inf): a block LP is unbounded at these duals"]
    worst = f"largest relative violation {m.violation:.2e} (rows, block sums and column bounds, each relative to " \
            f"1 + |side|)"
    if prob.zero_feasible:
        guarantees.append(f"primal: feasible by construction (violated rows cut greedily, slack refilled); {worst}")
    elif prob.repairable and m.violation <= EXACTLY_FEASIBLE:  # the moves can fall short: the recheck tells
        guarantees.append(f"primal: feasible, repaired (violated rows cut, floors raised, mass moved within "
                          f"equality blocks); {worst}")
    elif status == Status.OPTIMAL:
        guarantees.append(f"primal: within tol {options.tol:g} of feasible, not exactly "
                          f"({'the repair fell short' if prob.repairable else 'no repair for this structure'}); "
                          f"{worst}")
    else:
        guarantees.append(f"primal: not certified feasible "
                          f"({'the repair fell short' if prob.repairable else 'no repair for this structure'}); "
                          f"{worst}")
    ray = None
    if status == Status.INFEASIBLE:
        ray = to_original * out["ray"].double().cpu().numpy()
    return RawResult(
        status=status, x=x, objective=m.objective, bound=bound, row_dual=-y, block_dual=check.block_dual,
        iterations=out["iterations"], history=out["history"],
        guarantees=tuple(guarantees), ray=ray, state={"y": y_last, "gamma": out["gamma"]},
        message=_message(choice, switched, out),
        log="\n".join(str(h) for h in out["history"]),
    )


def _choice(options: DualipOptions, prob: ScaledProblem, store) -> Choice:
    """The method this solve runs (choice.py); a resumed ``auto`` solve continues the method its checkpoint holds."""
    choice = choose(options.algorithm, prob)
    if options.algorithm != "auto" or options.resume is None:
        return choice
    saved = checkpoint.saved_algorithm(options.resume, store)
    if saved == "pdhg" and choice.algorithm == "dual_ascent":
        return Choice("pdhg", f"{choice.reason}; resumed after the dual ascent handed over to pdhg")
    if saved != choice.algorithm and saved in ("dual_ascent", "pdhg"):  # written with that algorithm set by name
        return Choice(saved, f"{choice.reason}; resumed in the {saved.replace('_', ' ')} of the checkpoint")
    return choice


def _phase(options: DualipOptions, choice: Choice) -> DualipOptions:
    """The options of the method that starts: its algorithm named (what its checkpoints record), and the dual ascent's
    iterations cut at the hand-over to PDHG."""
    max_iter = options.max_iter if choice.switch_after is None else min(options.max_iter, choice.switch_after)
    return replace(options, algorithm=choice.algorithm, max_iter=max_iter)


def _message(choice: Choice, switched: bool, out: dict) -> str:
    """The method(s) run, why, and the iterations: "dual ascent, gamma 0.0075, 230 iterations (auto: ...)"."""
    if switched:
        return f"dual ascent for {choice.switch_after} iterations, then pdhg, {out['iterations']} iterations " \
               f"({choice.reason})"
    if choice.algorithm == "pdhg":
        return f"pdhg, {out['iterations']} iterations ({choice.reason})"
    return f"dual ascent, gamma {out['gamma']:.3g}, {out['iterations']} iterations ({choice.reason})"


def memory_report(sf: StandardForm, options: DualipOptions | None = None, iterations: int | None = None):
    """MemoryReport of a dualip solve of ``sf`` with ``options``: bytes held per tensor, peak temporaries of
    ``iterations`` iterations and of a check, and the peak per nonzero (see memory.py)."""
    options = options or DualipOptions()
    if sf.n_rows == 0:
        raise ModelError("memory_report: the model has no coupling rows, so there is no iteration to measure")
    return DualAscentSolver(_scaled_problem(sf, options)[0], options).memory_report(iterations)


def _scaled_problem(sf: StandardForm, options: DualipOptions, comm: Comm = LOCAL):
    """(ScaledProblem, BlockOrder or None) in the storage of the engine (options.resolve_engine): one process in the
    fast storage solves with equal-size blocks side by side (dense block reductions, see block_order.py) where
    that pays; x comes back through the BlockOrder."""
    device, dtype = _device_dtype(options)
    engine = resolve_engine(options.engine, device, options.matrix_dtype, comm.world, sf.n_rows, sf.n_cols,
                            int(comm.sum_np(sf.n_cols)))
    storage = STORAGE[engine]
    order = BlockOrder.of(sf) if storage == "fast" and comm.world == 1 else None
    values = None if options.matrix_dtype is None else getattr(torch, options.matrix_dtype)
    prob = ScaledProblem.build(sf if order is None else order.sf, device, dtype, options.seed, comm, storage, values)
    return prob, order


def _separable(sf: StandardForm, comm: Comm = LOCAL) -> RawResult:
    """No coupling rows: x = argmin over each block of c^T x, exactly."""
    bs = BlockStructure.from_standard_form(sf, torch.device("cpu"), torch.float64)
    values, x, mu = linear_minimize(torch.tensor(sf.c, dtype=torch.float64), bs)  # a copy: sf is frozen
    value = float(comm.sum_np(float(values.sum()))) + sf.offset
    if not np.isfinite(value):
        return RawResult(status=Status.UNBOUNDED, message="a block LP is unbounded")
    return RawResult(status=Status.OPTIMAL, x=x.numpy(), objective=value, bound=value,
                     row_dual=np.zeros(0), block_dual=mu.numpy(), guarantees=("exact: separable blocks",))
