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

import numpy as np
import torch

from .comm import LOCAL
from .operators import SparseRows


@dataclass
class RepairPlan:
    """A's rows with each row's entries sorted by cost per unit of row use (worst first), fixed for a problem.

    In the compact storage ``rows`` is A itself (A is stored in this order), so the plan costs nothing; the fast
    storage keeps A's CSR in column order for MKL / cuSPARSE and the plan is a sorted copy.
    """

    rows: SparseRows  # kind "segment": ptr (m+1,) row starts, idx (nnz,) columns (int32), worst entry first
    single: bool  # every column lies in at most one row: a column's factor is its one entry's

    @property
    def ptr(self) -> torch.Tensor:
        return self.rows.ptr

    @property
    def cols(self) -> torch.Tensor:
        return self.rows.idx

    def values(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        return self.rows.values(start, stop)

    @staticmethod
    def order(A_csr, c: np.ndarray, group: int = 1 << 22) -> np.ndarray:
        """Permutation of the CSR entries that sorts each row by c_j / a_rj, descending (stable), with torch on
        the host, ``group`` entries of whole rows at a time (the temporaries are a group's): one sort per row in
        a padded (rows x longest row) table when the group's rows have similar lengths (a quarter of the time),
        else two stable sorts of the group's entries, by density and then by row."""
        ptr = A_csr.indptr.astype(np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            density = c[A_csr.indices] / A_csr.data
        out = np.empty(A_csr.nnz, dtype=np.int64)
        r0, m = 0, A_csr.shape[0]
        while r0 < m:
            r1 = min(max(int(np.searchsorted(ptr, ptr[r0] + group, side="right")) - 1, r0 + 1), m)
            a, e = int(ptr[r0]), int(ptr[r1])
            out[a:e] = a + _sort_rows(torch.as_tensor(ptr[r0:r1 + 1] - a), torch.as_tensor(density[a:e]))
            r0 = r1
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return self.rows.tensors("plan")

    def row_of(self) -> torch.Tensor:
        """(nnz,) int64 row of each sorted entry."""
        return self.rows.rows_of_entries(0, self.cols.numel())[2]


def _sort_rows(ptr: torch.Tensor, density: torch.Tensor) -> np.ndarray:
    """Within-rows permutation of entries sorted by density, descending and stable, for rows starting at ptr."""
    m, nnz = ptr.numel() - 1, density.numel()
    counts = ptr.diff()
    rows = torch.repeat_interleave(torch.arange(m), counts, output_size=nnz)
    longest = int(counts.max()) if m else 0
    if m * longest <= 2 * nnz:  # one sort per row in a padded table; the padding sorts after every entry
        starts = ptr[:-1]
        table = torch.full((m, longest), -torch.inf, dtype=torch.float64)
        table[rows, torch.arange(nnz) - starts.index_select(0, rows)] = density
        within = torch.sort(table, dim=1, descending=True, stable=True).indices
        del table
        return (within + starts[:, None])[torch.arange(longest)[None, :] < counts[:, None]].numpy()
    by_density = torch.argsort(density, descending=True, stable=True)
    return by_density.index_select(0, torch.argsort(rows.index_select(0, by_density), stable=True)).numpy()


def chunk_size(n: int) -> int:
    """Entries or columns handled at once by the check's per-entry work: its temporaries stay ~1/16 of n.

    Fewer chunks mean fewer ops (each a kernel launch on a GPU): a check of the 1e6-nonzero benchmark matching in
    the compact storage runs 7,221 torch ops in 64 chunks and 2,037 in 16, for a peak of 37.26 and 37.7 B per
    nonzero in float32 (8 chunks: 1,150 ops, 40.7 B, past the 40 B budget)."""
    return max(1 << 12, -(-n // 16))


def cut_rows(x: torch.Tensor, ax: torch.Tensor, upper: torch.Tensor, plan: RepairPlan, chunk: int | None = None,
             overwrite: bool = False) -> torch.Tensor:
    """x * f, f_j = min over rows r of j of (what remains of a_rj x_j after removing r's excess greedily).

    The running use of each row, sum of a_rk x_k over the entries before j in the row's order, is one scan in
    float64 over all sorted entries less the scan at the row's first entry. With ``chunk`` the entries are
    taken that many at a time, the scan and the start of a row that goes on into the next chunk carried over:
    temporaries in proportion to ``chunk``, not to nnz.
    """
    m, nnz = ax.shape[0], plan.cols.numel()
    excess = (ax - upper).clamp(min=0).double()
    keep_col = torch.ones_like(x)
    base = torch.zeros((), dtype=torch.float64, device=x.device)  # use of all entries before the chunk
    row_start = torch.zeros(m, dtype=torch.float64, device=x.device)  # scan value at each row's first entry
    size = chunk or max(nnz, 1)
    for a in range(0, nnz, size):
        b = min(a + size, nnz)
        cols = plan.cols[a:b]
        r0, r1, rows = plan.rows.rows_of_entries(a, b)  # rows r0..r1-1 hold the entries; each entry's row - r0
        use = (plan.values(a, b) * x.index_select(0, cols)).double()
        before = torch.cumsum(use, 0).add_(base).sub_(use)  # exclusive scan
        base = before[-1] + use[-1]
        first = plan.ptr[r0:r1] - a  # each row's first entry, relative to the chunk (< 0: in an earlier chunk)
        start = torch.where(first >= 0, before.index_select(0, first.clamp(min=0, max=b - a - 1)), row_start[r0:r1])
        row_start[r0:r1] = start
        # what the row's excess leaves after the entries before: excess_r - (scan - scan at the row's start)
        removed = torch.minimum((excess[r0:r1] + start).index_select(0, rows).sub_(before).clamp_(min=0), use)
        keep = removed.div_(use.clamp_(min=1e-300)).neg_().add_(1.0).clamp_(0.0, 1.0)  # use = 0: removed = 0, keep 1
        _min_into(keep_col, cols, keep.to(x.dtype), plan.single)
    return x.mul_(keep_col) if overwrite else x * keep_col


def _min_into(per_col: torch.Tensor, cols: torch.Tensor, per_entry: torch.Tensor, single: bool) -> None:
    """per_col[j] = min(per_col[j], per_entry over the entries of column j), in place, for per_col <= 1 at the start
    and per_entry <= 1."""
    if single:  # one entry per column, so per_col[j] is still 1: a plain write
        per_col.index_put_((cols,), per_entry)
    else:
        per_col.scatter_reduce_(0, cols.long(), per_entry, "amin")


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
    rows = plan.row_of()
    excess = (ax - upper).clamp(min=0).double()
    vals = plan.values()
    use = (vals * x.index_select(0, plan.cols)).double()
    density = (c.index_select(0, plan.cols) / vals).double()
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
    keep_col = torch.ones_like(x)
    _min_into(keep_col, plan.cols, keep, plan.single)
    return x * keep_col


def shrink_blocks(x: torch.Tensor, blocks, overwrite: bool = False) -> torch.Tensor:
    """Scale each sum-constrained block with sum x > r_i down to sum x = r_i."""
    sums = blocks.sum(x)
    over = ~blocks.is_box & (sums > blocks.rhs)
    shrink = blocks.spread(torch.where(over, blocks.rhs / sums.clamp(min=1e-300), 1.0))
    return x.mul_(shrink) if overwrite else x * shrink


def row_slack(upper: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    """(u - A x)_+, where a slack below 1024 eps u_r counts as 0: a row left open by rounding alone is tight (the
    rounding of a sum of k >= 0 terms is about sqrt(k) eps times the sum, so this covers rows of 10^6 entries)."""
    slack = (upper - ax).clamp(min=0)
    noise = torch.where(torch.isfinite(upper), 1024 * torch.finfo(slack.dtype).eps * upper, 0.0)
    return torch.where(slack > noise, slack, 0.0)


def fill_slack(x: torch.Tensor, c: torch.Tensor, A, At, upper: torch.Tensor, blocks, comm=LOCAL,
               chunk: int | None = None, overwrite: bool = False) -> torch.Tensor:
    """Raise, in each block with spare capacity, the best improving column whose rows all have slack.

    Tied best columns share the block's spare capacity. The raises are chosen ``chunk`` columns (whole blocks)
    at a time, then scaled per row so that no row exceeds u: temporaries of two column vectors plus a chunk's.
    Masks enter as products (costs and raises are finite), not torch.where: several times faster on CPU.
    """
    entries = None if chunk is None else chunk_size(A.idx.numel())
    slack = row_slack(upper, comm.sum(A.matvec(x, chunk=entries)))
    open_col = At.row_min((slack > 0).to(x.dtype), empty=1.0) > 0  # no tight row among the column's rows
    delta = torch.zeros_like(x)
    chunks = blocks.chunks(chunk or max(x.shape[0], 1))
    for b0, b1, a, e in chunks:
        part = blocks.slice(b0, b1)
        xs, cs = x[a:e], c[a:e]
        room = part.upper - xs
        candidate = open_col[a:e] & (cs < 0) & (room > 0)
        masked = cs * candidate  # a candidate's cost (< 0), else 0: the block minimum is < 0 iff it has one
        picked = candidate & (masked == part.spread(part.reduce(masked, "min", initial=0.0)))
        spare = (part.rhs - part.sum(xs)).clamp(min=0) / part.count(picked).clamp(min=1.0)
        raise_by = torch.minimum(room, part.spread(spare))  # within r_i, shared by the tied best columns
        if part.any_box:  # every improving column of a box block, up to its bound (if it has one)
            is_box = part.spread(part.is_box)
            picked |= candidate & is_box
            raise_by = torch.where(is_box, torch.where(torch.isfinite(room), room, 0.0), raise_by)
        delta[a:e] = raise_by * picked  # a simplex block's raise is within its finite spare
    del open_col
    demand = comm.sum(A.matvec(delta, chunk=entries))
    row_factor = torch.where(demand > slack, slack / demand.clamp(min=1e-300), 1.0)
    if At.ptr is None:  # one row per column: the factors gathered a chunk at a time
        for _, _, a, e in chunks:
            delta[a:e].mul_(At.row_min(row_factor, empty=1.0, start=a, stop=e).clamp_(0.0, 1.0))
    else:
        delta.mul_(At.row_min(row_factor, empty=1.0).clamp_(0.0, 1.0))
    return x.add_(delta) if overwrite else x + delta


def repair(x, ax, prob, overwrite: bool = False) -> torch.Tensor:
    """A feasible point near x for a repairable ScaledProblem: cut violated rows, shrink blocks, fill slack.

    With ``overwrite`` x itself becomes the result (no copy of the column vector).
    """
    comm = prob.comm
    if prob.m and comm.world > 1:
        x = cut_rows_by_threshold(x, ax, prob.row_upper, prob.c, prob.repair_plan, comm)
        overwrite = True  # x is a new tensor now
    elif prob.m:
        x = cut_rows(x, ax, prob.row_upper, prob.repair_plan, prob.chunk(prob.repair_plan.cols.numel()), overwrite)
        overwrite = True
    x = shrink_blocks(x, prob.blocks, overwrite=overwrite)
    if prob.m:
        x = fill_slack(x, prob.c, prob.A, prob.At, prob.row_upper, prob.blocks, comm, prob.chunk(prob.n), True)
    return x
