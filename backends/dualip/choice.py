"""``DualipOptions(algorithm="auto")``: which method solves a model, read from its structure.

    dual ascent                  if some row's entries spread over more than SPREAD_LIMIT (max |a_rj| / min |a_rj|)
    pdhg                         else if nnz(A) / rows <= SHORT_ROWS (many short coupling rows), or box-cut blocks
    dual ascent, then pdhg       otherwise: after SWITCH_AFTER iterations without OPTIMAL the dual ascent hands
                                 its duals to a warm-started PDHG, which continues to the same iteration and time limits

The rule comes from the family suite (benchmarks/family_suite.py; benchmarks/results/family_suite_cpu_*_algorithms.json,
docs/algorithm.md): PDHG wins where the rows are many and short (few users per item: 5 entries per row, 3.8x
fewer seconds at 1e6 nonzeros; power-law at 5e4: 25 per row, 1.6-3.1x) and on box-cut blocks (guaranteed delivery:
1.15-2.1x at 5e4, 1.7x at 1e6), the dual ascent where a few rows are long over simplex blocks (multi-objective,
assignment: 250-1,600 entries per row, 2.7-4.7x); power-law at 1e6 (500 per row) is near a tie (8.05 s vs 6.91 s
with PDHG in family_suite_cpu_1e6.json: the rule leaves 14% there). Where the dual ascent is slow all the same (a
binding global floor beside item budgets: up to 8,100 iterations, where PDHG takes 700-1,600) the hand-over bounds
the loss; the dual ascent converged on the families it is picked for within about 300 iterations. Entries spread
far within rows are the dual ascent's alone: its flat-row search moves the rows it creeps along, while PDHG took
7,850 iterations with entries over 1e-3..1e3 and did not converge in 20,000 over 1e-6..1e6 (tests/test_parity.py
SCALINGS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from dualip_model.polytopes import BlockKind
from dualip_model.standard_form import StandardForm

from .comm import LOCAL, Comm
from .problem import ScaledProblem

SHORT_ROWS = 32.0  # coupling entries per row at or below which auto picks PDHG
SWITCH_AFTER = 1000  # dual ascent iterations after which auto hands over to PDHG
SPREAD_LIMIT = 1e5  # max |a_rj| / min |a_rj| within a row above which auto keeps to the dual ascent
BOX_CUT_KINDS = (BlockKind.BOXCUT_LE, BlockKind.BOXCUT_EQ)  # blocks auto gives to PDHG


@dataclass(frozen=True)
class Choice:
    """The method that starts, why, and after how many iterations the dual ascent hands over (None: never)."""

    algorithm: str  # "dual_ascent" or "pdhg"
    reason: str
    switch_after: int | None = None


def choose(algorithm: str, prob: ScaledProblem) -> Choice:
    """The Choice for ``DualipOptions.algorithm`` on ``prob``: as given, or by the rule above for "auto" (the same on
    every rank of a sharded solve: the nonzeros are summed over the ranks)."""
    if algorithm != "auto":
        return Choice(algorithm, "as set")
    spread = row_spread(prob.sf, prob.comm)
    if spread > SPREAD_LIMIT:
        return Choice("dual_ascent", f"auto: entries spread {spread:.2g}x within a row > {SPREAD_LIMIT:g}x")
    nnz = float(prob.comm.sum_np(float(prob.sf.nnz)))
    per_row = nnz / max(prob.m, 1)
    if per_row <= SHORT_ROWS:
        return Choice("pdhg", f"auto: {per_row:.3g} coupling entries per row <= {SHORT_ROWS:g}")
    box_cut = prob.comm.max_np(bool(np.isin(prob.sf.block_kind, BOX_CUT_KINDS).any()))
    if box_cut:
        return Choice("pdhg", "auto: box-cut blocks")
    return Choice("dual_ascent", f"auto: {per_row:.3g} coupling entries per row > {SHORT_ROWS:g}", SWITCH_AFTER)


def row_spread(sf: StandardForm, comm: Comm = LOCAL) -> float:
    """max over coupling rows of max_j |a_rj| / min_j |a_rj| over the row's nonzero entries (1 without any).

    The rows' extremes are reduced over the ranks before the ratio, so a sharded solve (each rank holding some
    columns of every row) measures what one process holding all of them would. The CSC-to-CSR conversion is linear
    in the nonzeros (no sort).
    """
    size = np.abs(np.asarray(sf.A_data, dtype=np.float64))
    rows = scipy.sparse.csc_matrix((size, sf.A_indices, sf.A_indptr), shape=(sf.n_rows, sf.n_cols)).tocsr()
    starts, filled = rows.indptr[:-1], np.diff(rows.indptr) > 0
    high, low = np.zeros(sf.n_rows), np.full(sf.n_rows, np.inf)
    if filled.any():
        high[filled] = np.maximum.reduceat(rows.data, starts[filled])
        low[filled] = np.minimum.reduceat(np.where(rows.data > 0, rows.data, np.inf), starts[filled])
    high, low = comm.max_np(high), -comm.max_np(-low)
    spread = high / np.where(high > 0, low, 1.0)
    return float(spread.max(initial=1.0))
