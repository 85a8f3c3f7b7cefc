"""The `dualip` backend: ridge-regularized dual decomposition (DuaLip's method) in PyTorch, CPU and CUDA.

Maps a StandardForm to the scaled device problem, runs DualAscentSolver, and returns a RawResult whose
numbers are recomputed in float64 from the standard form itself: the Lagrangian bound
L(y) = -h(y) + sum_i min_{x in C_i} (c + A^T y)_i^T x_i (valid for every y in the dual domain) and the
objective and infeasibility of the returned primal. ``solve_standard_form`` is the whole solve, for one
process or, given a communicator and a checkpoint store, for one rank of a sharded solve (see distributed.py).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from dualip_model.backend import Capability, RawResult
from dualip_model.errors import ModelError
from dualip_model.result import relative_gap
from dualip_model.standard_form import StandardForm
from dualip_model.status import Status

from .block_order import BlockOrder
from .comm import LOCAL, Comm
from .fast_projection import simplex_box_linear_minimize
from .options import DualipOptions, storage_for
from .problem import Blocks, ScaledProblem
from .projections import BlockStructure, linear_minimize
from .solver import DualAscentSolver


def _device_dtype(options: DualipOptions):
    """(device, dtype, storage) with the device's defaults filled in."""
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"DualipOptions.device is {options.device!r} but CUDA is not available")
    name = options.dtype or ("float32" if device.type == "cuda" else "float64")
    return device, getattr(torch, name), storage_for(device, options.storage)


def _warm_start(ws, sf: StandardForm):
    """(y in original units, gamma) from a Result, RawResult or dict; checks the row count."""
    if ws is None:
        return None, None
    state = getattr(getattr(ws, "raw", ws), "state", ws)
    if not isinstance(state, dict) or "y" not in state:
        raise ModelError("DualipOptions.warm_start: expected a dualip Result/RawResult or a dict with 'y'")
    y = np.asarray(state["y"], dtype=np.float64)
    if y.shape != (sf.n_rows,):
        raise ModelError(f"DualipOptions.warm_start: duals have shape {y.shape}, the model has {sf.n_rows} rows")
    return y, state.get("gamma")


def float64_certificate(sf: StandardForm, x: np.ndarray, y: np.ndarray, linear_minimize_f64=None,
                        comm: Comm = LOCAL):
    """(bound, objective, rel. infeasibility, |y|^T violation, block multipliers) in float64 for x and duals y.

    y is in original units with the solver's sign (L = c^T x + y^T A x - h(y)); ``linear_minimize_f64``
    maps a float64 CPU cost tensor to (value per block, x, mu) and defaults to the exact sort-based one.
    Sharded: sf and x are this rank's columns, y is replicated; the sums over columns are all-reduced.
    """
    A = sf.A
    ax = comm.sum_np(A @ x)
    viol = np.maximum(ax - sf.row_upper, 0) + np.maximum(sf.row_lower - ax, 0)
    finite = np.concatenate([sf.row_lower[np.isfinite(sf.row_lower)], sf.row_upper[np.isfinite(sf.row_upper)]])
    infeas = float(np.linalg.norm(viol) / (1.0 + np.linalg.norm(finite)))
    h = float(sf.row_upper[y > 0] @ y[y > 0] + sf.row_lower[y < 0] @ y[y < 0])
    if linear_minimize_f64 is None:
        bs = BlockStructure.from_standard_form(sf, torch.device("cpu"), torch.float64)
        linear_minimize_f64 = lambda g: linear_minimize(g, bs)  # noqa: E731
    values, _, mu = linear_minimize_f64(torch.as_tensor(sf.c + A.T @ y, dtype=torch.float64))
    block_values, cost = comm.sum_np([float(values.sum()), float(sf.c @ x)])
    bound = float(block_values) - h + sf.offset
    objective = float(cost) + sf.offset
    return bound, objective, infeas, float(np.abs(y) @ viol), mu.numpy()


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
    """The dualip solve of ``sf``; with ``comm`` sf holds one rank's blocks and x, block_dual are that rank's."""
    start = time.perf_counter()
    _device_dtype(options)  # an unavailable device is refused before any work
    y0, gamma0 = _warm_start(options.warm_start, sf)
    torch.manual_seed(options.seed)
    if options.resume is not None and options.warm_start is not None:
        raise ModelError("DualipOptions: give either resume (a checkpoint) or warm_start, not both")
    if sf.n_rows == 0:
        return _separable(sf, comm)
    prob, order = _scaled_problem(sf, options, comm)
    solver = DualAscentSolver(prob, options, store)
    if y0 is not None:
        y0 = y0 / (prob.sigma * prob.row_scale)
    out = solver.solve(y0, gamma0)
    to_original = prob.sigma * prob.row_scale
    y_last = to_original * out["y"].double().cpu().numpy()  # where the ascent stands: the warm start
    y = to_original * out["y_bound"].double().cpu().numpy()  # the duals behind the best bound
    x = out["x"].double().cpu().numpy()
    if order is not None:
        x = order.columns_back(x)
    same = prob.dtype == torch.float64 and prob.device.type == "cpu" and order is None
    if same:
        linmin = solver.linear_minimize
    elif prob.fast_projection:  # simplex and box blocks: segment reductions in float64 on the host, no sort
        host_blocks = Blocks.build(sf, torch.device("cpu"), torch.float64, compact=True)  # no membership matrix
        linmin = lambda g: simplex_box_linear_minimize(g, host_blocks, need_x=False)  # noqa: E731
    else:
        linmin = None
    bound, objective, infeas, dual_viol, mu = float64_certificate(sf, x, y, linmin, comm)
    status = out["status"]
    guarantees = ["bound: unregularized Lagrangian bound L(y), valid for any dual y" if np.isfinite(bound) else
                  "bound: none (-inf): a block LP is unbounded at these duals (columns without finite bounds)"]
    if prob.zero_feasible:
        guarantees.append("primal: feasible by construction (violated rows cut greedily, slack refilled)")
    elif prob.repairable:  # the greedy moves can fall short: what the float64 recheck measures is what holds
        guarantees.append(f"primal: repaired (cut, raises, moves), relative infeasibility {infeas:.2e}")
    else:
        guarantees.append(f"primal: relative infeasibility {infeas:.2e} (no repair for this structure)")
    if status == Status.OPTIMAL and (infeas > options.tol or relative_gap(objective, bound) > options.tol
                                     or relative_gap(objective + dual_viol, objective) > options.tol):
        status = Status.ITERATION_LIMIT  # the working-precision numbers did not survive the float64 recheck
    ray = None
    if status == Status.INFEASIBLE:
        ray = to_original * out["ray"].double().cpu().numpy()
    return RawResult(
        status=status, x=x, objective=objective, bound=bound, row_dual=-y, block_dual=mu,
        iterations=out["iterations"], solve_time=time.perf_counter() - start, history=out["history"],
        guarantees=tuple(guarantees), ray=ray, state={"y": y_last, "gamma": out["gamma"]},
        message=f"gamma {out['gamma']:.3g}, {out['iterations']} iterations",
        log="\n".join(str(h) for h in out["history"]),
    )


def memory_report(sf: StandardForm, options: DualipOptions | None = None, iterations: int | None = None):
    """MemoryReport of a dualip solve of ``sf`` with ``options``: bytes held per tensor, peak temporaries of
    ``iterations`` iterations and of a check, and the peak per nonzero (see memory.py)."""
    options = options or DualipOptions()
    if sf.n_rows == 0:
        raise ModelError("memory_report: the model has no coupling rows, so there is no iteration to measure")
    return DualAscentSolver(_scaled_problem(sf, options)[0], options).memory_report(iterations)


def _scaled_problem(sf: StandardForm, options: DualipOptions, comm: Comm = LOCAL):
    """(ScaledProblem, BlockOrder or None): one process in the fast storage solves with equal-size blocks side by
    side (dense block reductions, see block_order.py) where that pays; x comes back through the BlockOrder."""
    device, dtype, storage = _device_dtype(options)
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
