"""The iteration on the CPU in C++: x = P_C(-(c + A^T w) / gamma) and A x in one sweep over the columns.

The torch path makes about a dozen passes over column-length vectors per iteration (a gather of w, the
product with A's values, the Newton steps' comparisons, products and block sums, the clip, the sparse
product A x). Here the columns go by chunks of consecutive blocks (``chunk_columns``), and within a chunk, while
its columns are in cache, phase by phase: v_j = -(c_j + sum_k a_kj w_k) / gamma (a loop of its own, so that the
gathers of w overlap), the blocks' thresholds tau (the warm-started Newton steps of
``fast_projection.simplex_box_project``, same rule and fallback max v - r; with box-cut blocks and in PDHG exact
thresholds, ``exact_tau`` in the source; blocks of a size 8 at a time in vector registers), x_j = clip(v_j - tau,
l_j, u_j), and the products a_kj x_j added to a per-thread copy of A x; the copies are summed in thread order, so
a run is deterministic for a given thread count. x lives in one column-length scratch vector the step keeps
(allocated once: a fresh one per iteration cost page faults). The update of the duals after A x is C++ too
(``ascent_update``: two passes over the rows instead of fifteen torch ones). PDHG's step is the same sweep
(``pdhg_step``: exact thresholds, A x+, ||x - x+||^2, the Halpern combination) and one pass over the rows
(``pdhg_dual``). The check's per-column passes are C++ as well: the primal candidate's projection, the block LPs
of the bound and the Farkas tests (``block_minima``), and ``repair.repair``'s cut, shrink, moves (one process) and
fill (same rules, same result to rounding; a check at 1e6 nonzeros went from ~40 to ~15 ms, the repair from ~25
to ~8; a delivery check from 2.2 s to 0.62 s). The extension is compiled on first use (torch's cpp_extension: a
C++ compiler and ninja, about 20 s once per machine, cached after; ``prebuild``), with -fno-trapping-math: the
lanes' loops vectorize only where the compiler may evaluate both sides of a select (no value changes).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from dualip_model.errors import ModelError

from .repair import (FLOOR_ULPS, MIN_PROGRESS, MOVE_PASSES, RELAY_DEPTH, STALL_PASSES, cut_rows_by_threshold,
                     repair, row_slack)

_SOURCE_FILE = Path(__file__).with_name("fused_cpu.cpp")  # the kernels; their Python bindings come from _FUNCTIONS

_FUNCTIONS = ["block_chunks", "step", "ascent_update", "pdhg_step", "pdhg_dual", "block_minima", "gradient", "times",
              "dot", "project", "cut_rows", "shrink_blocks", "repair_moves", "fill_raises", "apply_raises"]
_MODULE = None
# the passes' chunks (block_chunks in the source): at least this many columns, and 8 per row of A: where the rows
# outnumber the columns / 8 the y and A x a chunk reaches stop fitting in cache beside each other, and one chunk per
# thread kept the gathers of y and the updates of A x in passes of their own (few users per item, 2e5 rows, 1e6
# columns: 16 ms an iteration against 19 in chunks of 4096 columns; 4096 was 5-8% faster than one chunk on the
# families with 628 to 4000 rows)
CHUNK_COLUMNS = 4096
COLUMNS_PER_ROW = 8


def chunk_columns(m: int, n: int, threads: int) -> int:
    """Columns per chunk of the C++ passes for m rows and n columns: max(CHUNK_COLUMNS, COLUMNS_PER_ROW m), and at
    most n / threads (every thread has a chunk)."""
    return max(1, min(max(CHUNK_COLUMNS, COLUMNS_PER_ROW * m), -(-n // max(threads, 1))))

MAX_ACCUMULATORS = 1 << 22  # threads x m entries of the step's per-thread copies of A x, zeroed at every call: at
# most this many or one per column (options.resolve_engine refuses more)


_BUILD_ERROR: str | None = None  # why the build failed in this process (it is not tried again)


def compiler_found() -> bool:
    """Whether torch's extension build finds a C++ compiler (``$CXX``, else ``c++``)."""
    return shutil.which(os.environ.get("CXX", "c++")) is not None


def _ninja_found() -> bool:
    """Whether ninja is on PATH, or pip's ninja is installed (then its folder is put on PATH)."""
    if shutil.which("ninja") is not None:
        return True
    try:
        import ninja
    except ImportError:
        return False
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    return True


def toolchain_found() -> bool:
    """Whether the extension can be built or loaded here: a C++ compiler and ninja, and no failed build before
    (engine "auto" then takes the torch kernels)."""
    return _MODULE is not None or (_BUILD_ERROR is None and compiler_found() and _ninja_found())


def _module():
    """The compiled extension (built on first use, then taken from torch's extension cache)."""
    global _MODULE, _BUILD_ERROR
    if _MODULE is None:
        if _BUILD_ERROR is not None:
            raise ModelError(_BUILD_ERROR)
        from torch.utils.cpp_extension import load_inline
        _ninja_found()
        try:
            _MODULE = load_inline(name="dualip_fused_cpu", cpp_sources=[_SOURCE_FILE.read_text()],
                                  functions=_FUNCTIONS,
                                  extra_cflags=["-O3", "-fno-trapping-math", "-fopenmp"], extra_ldflags=["-fopenmp"],
                                  verbose=False)
        except Exception as exc:  # no compiler, no ninja, no headers: say which option needs them
            _BUILD_ERROR = (f"DualipOptions.engine 'fused_cpu': the C++ extension could not be built ({exc}); it "
                            "needs a C++ compiler and ninja (pip install ninja), or choose another engine")
            raise ModelError(_BUILD_ERROR) from exc
    return _MODULE


class FusedCpu:
    """The C++ kernels for one problem: the iteration's step; the check's gradient, projection, products, dot
    products and repair."""

    def __init__(self, prob):
        """For a CPU problem, A's values in its dtype (options.resolve_engine)."""
        self.prob = prob
        # box-cut blocks: exact thresholds everywhere (the simplex Newton rule does not hold for them)
        self.exact = not prob.fast_projection
        self.module = _module()
        at, blocks = prob.At, prob.blocks
        cols = torch.empty(0, dtype=torch.int32) if at.ptr is None else at.ptr
        self.columns = [cols, at.idx, at.vals]  # A by columns: the CSC arrays, or one entry per column
        self.blocks = [blocks.offsets, blocks.rhs, blocks.is_le, blocks.is_box,
                       *(torch.as_tensor(b, dtype=prob.dtype).reshape(-1) for b in (blocks.lower, blocks.upper)),
                       *self.module.block_chunks(blocks.offsets, blocks.is_box,  # the passes' chunks
                                                 chunk_columns(prob.m, prob.n, torch.get_num_threads()))]
        self.scratch = torch.empty(prob.n, dtype=prob.dtype)  # the step's v; the check's gradient; the raises
        self.finite_lower = bool(torch.isfinite(self.blocks[4]).all())  # block_minima's greedy starts at x = l

    def step(self, w: torch.Tensor, gamma: float, tau: torch.Tensor, steps: int):
        """(A x*(w), tau): x*(w) = P_C(-(c + A^T w) / gamma), never stored."""
        return self.module.step(w, self.prob.c, *self.columns, self.blocks, tau, self.scratch, float(gamma),
                                int(steps), self.exact)

    def ascent_update(self, y: torch.Tensor, w: torch.Tensor, t: torch.Tensor, lip: torch.Tensor, ax: torch.Tensor,
                      w_prev: torch.Tensor, ax_prev: torch.Tensor, step: float, lip_floor: float, adaptive: bool):
        """(y+, w+, t+, lip): the dual ascent's update from A x*(w) in C++ (Kernels.ascent_update)."""
        p = self.prob
        return self.module.ascent_update(y, w, t, lip, ax, w_prev, ax_prev, p.row_lower, p.row_upper, float(step),
                                         float(lip_floor), bool(adaptive))

    def pdhg_step(self, x: torch.Tensor, y: torch.Tensor, x0: torch.Tensor, step: float, tau: torch.Tensor,
                  weights: tuple[float, float, float]):
        """(x_t, x_next, A x_t, tau, sum (x - x_t)^2): x_t = P_X(x - step (c + A^T y)) by exact thresholds from tau,
        x_next = a x_t - b x + w x0 for weights (a, b, w); one pass over the columns."""
        x_t, x_next = torch.empty_like(x), torch.empty_like(x)
        ax, tau, moved = self.module.pdhg_step(x, y, self.prob.c, x0, *self.columns, self.blocks, tau, x_t, x_next,
                                               float(step), *(float(w) for w in weights))
        return x_t, x_next, ax, tau, moved

    def pdhg_dual(self, y: torch.Tensor, ax: torch.Tensor, ax_t: torch.Tensor, y0: torch.Tensor, ax0: torch.Tensor,
                  sigma: float, weights: tuple[float, float, float], measure: bool):
        """(y_t, y_next, ax_next, [sum dy^2, sum dy (ax - ax_t)] or None): PDHG's dual step and Halpern combination in
        one pass over the rows (Kernels.pdhg_dual)."""
        p = self.prob
        y_t, y_next, ax_next, sums = self.module.pdhg_dual(y, ax, ax_t, y0, ax0, p.row_lower, p.row_upper,
                                                           float(sigma), *(float(w) for w in weights), bool(measure))
        return y_t, y_next, ax_next, sums if measure else None

    def gradient(self, y: torch.Tensor) -> torch.Tensor:
        """c + A^T y in the step's scratch vector (valid until the next step or repair)."""
        self.module.gradient(y, self.prob.c, *self.columns, self.scratch)
        return self.scratch

    def times(self, x: torch.Tensor) -> torch.Tensor:
        """A x (this rank's columns), by columns into per-thread copies."""
        return self.module.times(x, *self.columns, self.prob.m)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """sum_j a_j b_j, accumulated in float64 (0-d, a's dtype)."""
        return self.module.dot(a, b)

    def project(self, v: torch.Tensor, tau: torch.Tensor, steps: int, exact: bool = False):
        """(x, tau): x = P_C(v) by ``steps`` Newton steps per block from tau (fast_projection's rule), or exactly
        (``exact``, and always with box-cut blocks)."""
        x = torch.empty_like(v)
        return x, self.module.project(v, x, self.blocks, tau, int(steps), exact or self.exact)

    def block_minima(self, g: torch.Tensor) -> torch.Tensor:
        """(n_blocks,) min_{x in C_i} g^T x, exactly (finite lower bounds only: ``finite_lower``)."""
        return self.module.block_minima(g, self.blocks)

    def moves(self, x: torch.Tensor) -> torch.Tensor:
        """repair.repair_moves on x in place (one process), its passes in C++; returns A x after them."""
        p = self.prob
        equality = p.repair_plan.equality
        rows = p.repair_plan.rows  # A's rows (in the repair's order): the deficit moves find the rows' blocks
        return self.module.repair_moves(x, p.c, *self.columns, self.blocks, p.row_lower, p.row_upper, rows.ptr,
                                        rows.idx, torch.empty(0, dtype=torch.bool) if equality is None else equality,
                                        MOVE_PASSES, MIN_PROGRESS, STALL_PASSES, RELAY_DEPTH, FLOOR_ULPS)

    def repair(self, x: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """repair.repair in place, its per-column passes in C++: cut violated rows (on several ranks
        repair.cut_rows_by_threshold), shrink blocks, the moves of equality blocks and floors (one process; on
        several ranks the torch repair), fill the slack; the rows' sums all-reduced between passes."""
        p, comm = self.prob, self.prob.comm
        if p.m and p.repair_plan.moves and comm.world > 1:  # moves on several ranks: the torch repair
            return repair(x, ax, p, overwrite=True)
        if p.m and comm.world > 1:
            x = cut_rows_by_threshold(x, ax, p.row_upper, p.c, p.repair_plan, comm)
        elif p.m:
            rows = p.repair_plan.rows  # A's rows sorted; in the compact storage of a matching, A's values by column
            values = rows.vals if rows.vals is not None else rows.col_vals
            self.module.cut_rows(x, ax, p.row_upper, rows.ptr, rows.idx, values, rows.vals is None,
                                 p.repair_plan.single)
        ax = comm.sum(self.module.shrink_blocks(x, *self.columns, p.m, self.blocks))
        if not p.m:
            return x
        if p.repair_plan.moves:  # equality blocks or floors
            ax = self.moves(x)
        slack = row_slack(p.row_upper, ax)
        demand = comm.sum(self.module.fill_raises(x, p.c, slack, self.scratch, *self.columns, self.blocks))
        factor = torch.where(demand > slack, slack / demand.clamp(min=1e-300), 1.0)
        self.module.apply_raises(x, self.scratch, factor, *self.columns)
        return x


def prebuild() -> str:
    """Build the extension now (into torch's cache, so that no solve waits for it) and say how it went
    (scripts/setup.sh)."""
    if not toolchain_found():
        return "fused_cpu: no C++ compiler or ninja found; CPU solves run the torch kernels"
    try:
        _module()
    except ModelError as exc:
        return f"{exc}; CPU solves run the torch kernels"
    return "fused_cpu: the C++ extension is built"
