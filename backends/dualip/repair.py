"""Feasible primal from an infeasible one: greedy cuts on violated rows, then a greedy fill of the slack.

For A >= 0, rows A x <= u with u >= 0 and blocks that contain 0 and are closed under scaling down:
(1) cut: on each violated row r remove its excess e_r = (A x)_r - u_r from the row's entries in order of
worst cost per unit of row use (largest c_j / a_rj first; for a single row this is the optimal fractional
knapsack removal), a column keeping min over its rows of what each row leaves it; (2) shrink blocks back
to sum x <= r_i; (3) fill: every block with spare capacity raises its best (most negative c) column whose
rows all have slack, the raises scaled per row so that no row exceeds u. Every step keeps A x <= u.
With the columns sharded over ranks (``prob.comm``) a row's entries are spread over them, so the cut finds
each row's greedy threshold by a bucketed search on the cost density, a few all-reduces per check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .comm import LOCAL


@dataclass
class RepairPlan:
    """A's row entries sorted by cost per unit of row use (worst first), fixed for a problem.

    Where every column lies in at most one coupling row (matching), per-column results are plain gathers
    (``col_slot``, ``col_row``) instead of segment reductions over the columns' rows.
    """

    cols: torch.Tensor  # (nnz,) int32 column of each sorted entry (rows contiguous, worst entry first)
    vals: torch.Tensor  # (nnz,) its coefficient
    row_of: torch.Tensor  # (nnz,) int32 row of each sorted entry
    row_ptr: torch.Tensor  # (m+1,) int64 row starts
    col_slot: torch.Tensor | None  # (n,) int64: sorted position of the column's entry, nnz if it has none
    col_row: torch.Tensor | None  # (n,) int64: the column's row, m if it has none

    @staticmethod
    def build(A: torch.Tensor, c: torch.Tensor) -> "RepairPlan":
        """Sort each row of the CSR matrix A by c_j / a_rj, descending (one global two-key stable sort)."""
        m, n = A.shape
        crow = A.crow_indices().long()
        cols = A.col_indices().long()
        row_of = torch.repeat_interleave(torch.arange(m, device=A.device, dtype=torch.int32), crow.diff())
        density = c.index_select(0, cols) / A.values()
        by_density = torch.argsort(density, descending=True, stable=True)
        order = by_density.index_select(0, torch.argsort(row_of.index_select(0, by_density), stable=True))
        cols = cols.index_select(0, order)
        col_slot = col_row = None
        if cols.numel() == 0 or int(torch.bincount(cols, minlength=n).max()) <= 1:
            nnz = cols.numel()
            col_slot = torch.full((n,), nnz, dtype=torch.int64, device=A.device)
            col_slot[cols] = torch.arange(nnz, device=A.device)
            col_row = torch.full((n,), m, dtype=torch.int64, device=A.device)
            col_row[cols] = row_of.long()
        return RepairPlan(cols=cols.to(torch.int32), vals=A.values().index_select(0, order), row_of=row_of,
                          row_ptr=crow, col_slot=col_slot, col_row=col_row)

    def per_column_min(self, per_row: torch.Tensor, At: torch.Tensor) -> torch.Tensor:
        """f_j = min over the rows r of column j of per_row[r] (1 for a column in no row)."""
        if self.col_row is not None:
            return torch.cat([per_row, per_row.new_ones(1)]).index_select(0, self.col_row)
        return torch.segment_reduce(per_row.index_select(0, At.col_indices()), "min",
                                    offsets=At.crow_indices().long(), initial=1.0)


def cut_rows(x: torch.Tensor, ax: torch.Tensor, upper: torch.Tensor, plan: RepairPlan):
    """x * f, f_j = min over rows r of j of (what remains of a_rj x_j after removing r's excess greedily)."""
    excess = (ax - upper).clamp(min=0)
    use = (plan.vals * x.index_select(0, plan.cols)).double()
    cum = torch.cumsum(use, 0)  # float64: a segmented scan as one global scan minus each row's start
    start = torch.cat([cum.new_zeros(1), cum]).index_select(0, plan.row_ptr[:-1])
    before = cum - use - start.index_select(0, plan.row_of)
    removed = torch.minimum((excess.double().index_select(0, plan.row_of) - before).clamp(min=0), use)
    keep = torch.where(use > 0, 1.0 - removed / use.clamp(min=1e-300), 1.0).clamp(0.0, 1.0).to(x.dtype)
    return _scale_columns(x, keep, plan)


def cut_rows_by_threshold(x: torch.Tensor, ax: torch.Tensor, upper: torch.Tensor, c: torch.Tensor,
                          plan: RepairPlan, comm, bits: int = 48, budget: int = 1 << 16):
    """cut_rows for a row whose entries lie on several ranks: remove use where c_j / a_rj > t_r, t_r searched.

    R_r(t) = sum over all ranks of the use of entries with density > t is nonincreasing. Each round splits
    every row's interval (lo, hi], R(hi) < excess <= R(lo), into K equal buckets and all-reduces the use per
    bucket at once (m K numbers, K = budget / m within 2..64), keeping the bucket where R crosses the excess;
    ``bits`` of the density range take ceil(bits / log2 K) rounds. Entries above hi are then removed whole,
    those in (lo, hi] in proportion: the greedy cut up to the order of entries whose densities agree to
    2^-bits of the row's density range.
    """
    m = ax.shape[0]
    buckets = int(max(2, min(64, budget // max(m, 1))))
    rows = plan.row_of.long()
    excess = (ax - upper).clamp(min=0).double()
    use = (plan.vals * x.index_select(0, plan.cols)).double()
    density = (c.index_select(0, plan.cols) / plan.vals).double()
    inf = torch.full((m,), torch.inf, dtype=torch.float64, device=x.device)
    extremes = comm.max(torch.cat([(-inf).scatter_reduce(0, rows, density, "amax"),
                                   (-inf).scatter_reduce(0, rows, -density, "amax")]))
    hi, lo = extremes[:m], -extremes[m:]
    empty = torch.isinf(hi)  # no entry on any rank
    hi = torch.where(empty, 0.0, hi)
    lo = torch.where(empty, 0.0, lo - lo.abs().clamp(min=1.0))  # strictly below every density: R(lo) = all use
    r_hi = torch.zeros(m, dtype=torch.float64, device=x.device)  # R(hi): nothing lies above the largest density
    edges = torch.arange(buckets + 1, dtype=torch.float64, device=x.device)
    for _ in range(math.ceil(bits / math.log2(buckets))):
        width = (hi - lo) / buckets
        lo_e, width_e = lo.index_select(0, rows), width.index_select(0, rows)
        inside = (density > lo_e) & (density <= hi.index_select(0, rows))
        bucket = torch.ceil((density - lo_e) / width_e.clamp(min=1e-300)).clamp(1, buckets).long() - 1
        per_bucket = comm.sum(torch.zeros(m * buckets, dtype=torch.float64, device=x.device).index_add_(
            0, rows * buckets + bucket, torch.where(inside, use, 0.0))).view(m, buckets)
        # R at the bucket edges t_0 = lo, ..., t_K = hi: R(t_k) = R(hi) + use of buckets k+1..K
        r_edges = torch.cat([r_hi[:, None] + per_bucket.flip(1).cumsum(1).flip(1), r_hi[:, None]], dim=1)
        k = ((r_edges[:, :-1] >= excess[:, None]).sum(1) - 1).clamp(min=0)  # last edge with R(t_k) >= excess
        r_hi = r_edges.gather(1, (k + 1)[:, None])[:, 0]
        new_hi = torch.where(k + 1 == buckets, hi, lo + edges[k + 1] * width)
        lo, hi = lo + edges[k] * width, new_hi
    above = density > hi.index_select(0, rows)
    inside = ~above & (density > lo.index_select(0, rows))
    sums = comm.sum(torch.zeros(2 * m, dtype=torch.float64, device=x.device).index_add_(
        0, torch.cat([rows, rows + m]), torch.cat([torch.where(above, use, 0.0), torch.where(inside, use, 0.0)])))
    share = ((excess - sums[:m]) / sums[m:].clamp(min=1e-300)).clamp(0.0, 1.0)
    violated = (excess > 0).index_select(0, rows)
    removed = torch.where(above, 1.0, torch.where(inside, share.index_select(0, rows), 0.0))
    keep = torch.where(violated & (use > 0), 1.0 - removed, 1.0).to(x.dtype)
    return _scale_columns(x, keep, plan)


def _scale_columns(x: torch.Tensor, keep: torch.Tensor, plan: RepairPlan) -> torch.Tensor:
    """x_j * min over the entries of column j of keep (1 for a column with no entry)."""
    if plan.col_slot is not None:
        return x * torch.cat([keep, keep.new_ones(1)]).index_select(0, plan.col_slot)
    return x * torch.ones_like(x).scatter_reduce_(0, plan.cols.long(), keep, "amin")


def shrink_blocks(x: torch.Tensor, blocks) -> torch.Tensor:
    """Scale each sum-constrained block with sum x > r_i down to sum x = r_i."""
    sums = torch.segment_reduce(x, "sum", offsets=blocks.offsets)
    over = ~blocks.is_box & (sums > blocks.rhs)
    shrink = torch.where(over, blocks.rhs / sums.clamp(min=1e-300), 1.0)
    return x * shrink.index_select(0, blocks.seg)


def fill_slack(x: torch.Tensor, c: torch.Tensor, A: torch.Tensor, At: torch.Tensor, upper: torch.Tensor,
               blocks, plan: RepairPlan, comm=LOCAL) -> torch.Tensor:
    """Raise, in each block with spare capacity, the best improving column whose rows all have slack."""
    slack = (upper - comm.sum(A @ x)).clamp(min=0)
    open_col = (At @ (slack <= 0).to(x.dtype)) == 0  # A >= 0: no tight row among the column's rows
    col_upper = torch.as_tensor(blocks.upper, dtype=x.dtype, device=x.device).expand_as(x)
    room = col_upper - x
    candidate = open_col & (c < 0) & (room > 0)
    big = torch.finfo(x.dtype).max
    masked = torch.where(candidate, c, torch.full_like(c, big))
    seg = blocks.seg
    best = torch.segment_reduce(masked, "min", offsets=blocks.offsets, initial=big).index_select(0, seg)
    index = torch.arange(x.shape[0], device=x.device, dtype=x.dtype)  # ties: the last best column
    last = torch.segment_reduce(torch.where(candidate & (masked == best), index, -1.0), "max",
                                offsets=blocks.offsets, initial=-1.0)
    sums = torch.segment_reduce(x, "sum", offsets=blocks.offsets)
    spare = (blocks.rhs - sums).clamp(min=0)
    is_box = blocks.is_box.index_select(0, seg)
    picked = candidate & (is_box | (index == last.index_select(0, seg)))
    raise_by = torch.where(is_box, room, torch.minimum(room, spare.index_select(0, seg)))
    delta = torch.where(picked & torch.isfinite(raise_by), raise_by, 0.0)
    demand = comm.sum(A @ delta)
    row_factor = torch.where(demand > slack, slack / demand.clamp(min=1e-300), 1.0)
    return x + delta * plan.per_column_min(row_factor, At).clamp(0.0, 1.0)


def repair(x, ax, prob) -> torch.Tensor:
    """A feasible point near x for a repairable ScaledProblem: cut violated rows, shrink blocks, fill slack."""
    comm = prob.comm
    if prob.m and comm.world > 1:
        x = cut_rows_by_threshold(x, ax, prob.row_upper, prob.c, prob.repair_plan, comm)
    elif prob.m:
        x = cut_rows(x, ax, prob.row_upper, prob.repair_plan)
    x = shrink_blocks(x, prob.blocks)
    if prob.m:
        x = fill_slack(x, prob.c, prob.A, prob.At, prob.row_upper, prob.blocks, prob.repair_plan, comm)
    return x
