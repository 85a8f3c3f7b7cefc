"""Feasible primal from an infeasible one: greedy cuts on violated rows, then a greedy fill of the slack.

For A >= 0, rows A x <= u with u >= 0 and blocks that contain 0 and are closed under scaling down:
(1) cut: on each violated row r remove its excess e_r = (A x)_r - u_r from the row's entries in order of
worst cost per unit of row use (largest c_j / a_rj first; for a single row this is the optimal fractional
knapsack removal), a column keeping min over its rows of what each row leaves it; (2) shrink blocks back
to sum x <= r_i; (3) fill: every block with spare capacity raises its best (most negative c) column whose
rows all have slack, the raises scaled per row so that no row exceeds u. Every step keeps A x <= u.
With the columns sharded over ranks (``prob.comm``) a row's entries are spread over them, so the cut finds
each row's greedy threshold by a bucketed search on the cost density, a few all-reduces per check.

Equality blocks (sum x = r_i, simplex or box-cut) and floor rows (A x >= l_r > 0) take the same cut and
shrink, after which every <= row and every block's upper side hold; ``repair_moves`` then restores the
deficits d_i = r_i - sum x of equality blocks and the needs (l_r - A x)_+ of floor rows in a bounded number
of passes, each (1) a raise: blocks with room (LE spare, EQ deficit, boxes) raise their open columns (all
<= rows with slack), floor-helping ones toward the needs, then the cheapest toward the deficits; (2) a floor
move: a block shifts mass from columns of lower floor gain g_j = sum of a_rj over the unmet floors to its open
column of highest gain (sum x kept); (3) a deficit move: where an equality block has no open column, blocks
with mass in its tight rows move that mass to their own open columns (sum x kept), which frees the rows for
the next raise. Every raise and move is scaled per <= row so that no row passes u, so <= rows and block sums
never break. A deficit left after the passes is placed regardless of rows (x stays in the blocks, the rows
it overfills are measured by the caller), so the result is exactly feasible only where the caller's check
finds every row met; docs/repair.md says when that is guaranteed.
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
    equality: torch.Tensor | None = None  # (nb,) bool: sum x == r_i (simplex or box-cut); None: no such block
    floors: bool = False  # some row has a lower side l_r > 0

    @property
    def moves(self) -> bool:
        """The cut alone does not end the repair (equality blocks or floors): ``repair_moves`` runs after it."""
        return self.equality is not None or self.floors

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
    by_density = torch.argsort(density, descending=True, stable=True).numpy()
    row_keys = rows.numpy()[by_density]
    if m <= 1 << 16:  # numpy sorts 16-bit keys stably by radix: linear time (a third of torch's sort at 1e6 entries)
        return by_density[np.argsort(row_keys.astype(np.uint16), kind="stable")]
    return by_density[torch.argsort(torch.from_numpy(row_keys), stable=True).numpy()]


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
    """A feasible point near x for a repairable ScaledProblem: cut violated rows, shrink blocks, (for equality
    blocks and floors: raises and moves, ``repair_moves``), fill slack.

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
    if prob.m and prob.repair_plan.moves:
        x = repair_moves(x, prob)
    if prob.m:
        x = fill_slack(x, prob.c, prob.A, prob.At, prob.row_upper, prob.blocks, comm, prob.chunk(prob.n), True)
    return x


MOVE_PASSES = 8  # rounds of raise, floor move and deficit move; each round is a few products with A and A^T
MIN_PROGRESS = 0.9  # a pass "did not get far" when it leaves more than this share of the deficits and needs
STALL_PASSES = 2  # passes in a row that did not get far end the moves (three met the repair tests the same, and cost
# the multi-objective family at 1e6 a quarter more of its moves' time)
RELAY_DEPTH = 3  # blocks between a stuck equality block and an open column that a deficit move looks through
FLOOR_ULPS = 64  # a floor l_r counts as met from l_r (1 + FLOOR_ULPS eps) on: room for the rounding of A x


def floor_met(lower: torch.Tensor) -> torch.Tensor:
    """l (1 + FLOOR_ULPS eps): the row activity from which a floor counts as met."""
    return lower * (1.0 + FLOOR_ULPS * torch.finfo(lower.dtype).eps)


def floor_need(lower: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    """(l (1 + FLOOR_ULPS eps) - A x)_+ on rows with l_r > 0, else 0."""
    return torch.where(lower > 0, (floor_met(lower) - ax).clamp(min=0), 0.0)


def floor_surplus(lower: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    """What a move may take from a floor row and leave it met, (A x - l (1 + FLOOR_ULPS eps))_+; inf without a floor.
    (Taken down to l itself, a floor would count as unmet by its rounding room: a need that only draws moves.)"""
    return torch.where(lower > 0, (ax - floor_met(lower)).clamp(min=0), torch.inf)


class _Moves:
    """The data of ``repair_moves`` for one problem and the per-pass quantities it recomputes."""

    def __init__(self, x: torch.Tensor, prob):
        self.prob, self.blocks, self.comm = prob, prob.blocks, prob.comm
        self.entries = prob.chunk(prob.A.idx.numel())
        self.upper = torch.as_tensor(prob.blocks.upper, dtype=x.dtype, device=x.device).expand(x.shape[0])
        eq = prob.repair_plan.equality
        self.eq = torch.zeros_like(prob.blocks.is_box) if eq is None else eq
        self.any_eq = eq is not None

    def times(self, z: torch.Tensor) -> torch.Tensor:
        return self.comm.sum(self.prob.A.matvec(z, chunk=self.entries))

    def col_max(self, per_row: torch.Tensor) -> torch.Tensor:
        """max over the rows r of column j of per_row[r] (>= 0; 0 for a column without rows)."""
        return self.prob.At.row_min(-per_row, empty=0.0).neg_()

    def col_min(self, per_row: torch.Tensor) -> torch.Tensor:
        """min over the rows r of column j of per_row[r] (<= 1; 1 for a column without rows)."""
        return self.prob.At.row_min(per_row, empty=1.0)

    def state(self, x: torch.Tensor):
        """(slack of <= rows, need of floors, room per column, per block: room (LE spare, EQ deficit, inf for
        a box) and deficit (EQ only)) at x."""
        b, p = self.blocks, self.prob
        ax = self.times(x)
        slack = row_slack(p.row_upper, ax)
        need = floor_need(p.row_lower, ax)
        gap = (b.rhs - b.sum(x)).clamp(min=0)
        block_room = torch.where(b.is_box, torch.inf, gap)
        # a deficit within rounding of r_i (as row_slack's noise) is left to place_deficits: no pass for it
        noise = 1024 * torch.finfo(x.dtype).eps * b.rhs
        deficit = torch.where(self.eq & (gap > noise), gap, 0.0)
        return ax, slack, need, (self.upper - x).clamp(min=0), block_room, deficit

    def best(self, key: torch.Tensor, mask: torch.Tensor):
        """(mask of the columns of least key among ``mask`` in each block, ties all, and their count per block)."""
        b = self.blocks
        masked = torch.where(mask, key, torch.inf)
        best = mask & (masked == b.spread(b.reduce(masked, "min", initial=torch.inf)))
        return best, b.count(best)

    def spread_over(self, amount: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Each block's ``amount`` in equal shares over its ``mask`` columns (0 elsewhere)."""
        b = self.blocks
        return torch.where(mask, b.spread(amount / b.count(mask).clamp(min=1.0)), 0.0)

    def share(self, wanted: torch.Tensor, holding: torch.Tensor) -> torch.Tensor:
        """Per row, the fraction of what ``holding`` puts there that covers ``wanted`` (at most 1; 0 where nothing
        is wanted)."""
        held = self.times(holding)
        return torch.where(wanted > 0, (wanted / held.clamp(min=1e-300)).clamp(max=1.0), 0.0)

    def row_fit(self, delta: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
        """delta scaled per column so that A delta <= slack on every <= row (a column's factor is its tightest
        row's)."""
        demand = self.times(delta)
        factor = torch.where(demand > slack, slack / demand.clamp(min=1e-300), 1.0)
        return delta.mul_(self.col_min(factor).clamp_(0.0, 1.0))

    def move(self, x: torch.Tensor, give: torch.Tensor, receivers: torch.Tensor, count: torch.Tensor,
             room: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
        """x with each block's donation sum(give) moved onto its ``receivers`` (equal shares within their room),
        the receivers' raises fit to the <= rows' slack and the donations cut to what was placed: sum x kept."""
        b = self.blocks
        total = b.sum(give)
        share = torch.where(receivers, torch.minimum(room, b.spread(total / count.clamp(min=1.0))), 0.0)
        share = self.row_fit(share, slack)
        placed = b.sum(share)
        kept = torch.where(total > 0, placed / total.clamp(min=1e-300), 0.0).clamp_(0.0, 1.0)
        return x.sub_(give.mul_(b.spread(kept))).add_(share).clamp_(min=0)


def repair_moves(x: torch.Tensor, prob) -> torch.Tensor:
    """Raises and block-preserving moves that restore equality blocks' sums and floor rows from a point that
    meets every <= row and has sum x <= r_i in every block (after the cut and the shrink), in place.

    At most MOVE_PASSES passes, ended early (one host read per pass) once no deficit and no need is left, or
    once STALL_PASSES passes in a row leave more than MIN_PROGRESS of the least left before (a point the passes
    cannot fix costs a few passes, not all; a move that pays off one pass later still gets that pass).
    """
    mv, b = _Moves(x, prob), prob.blocks
    c, last, stalled = prob.c, math.inf, 0
    for _ in range(MOVE_PASSES):
        ax, slack, need, room, block_room, deficit = mv.state(x)
        open_col = open_col_at(mv, slack, room)
        stuck = (deficit > 0) & (b.count(open_col) == 0) if mv.any_eq else deficit > 0
        # (the pass's one host read) what is left; whether any floor is unmet, any block stuck, any deficit left
        left, *flags = torch.stack([deficit.sum() + need.sum(), need.amax(), stuck.any().to(x.dtype),
                                    deficit.amax()]).tolist()
        flags = [left > 0] + [f > 0 for f in flags]
        stalled = stalled + 1 if left > MIN_PROGRESS * last else 0  # (a move pays off one pass later)
        if not flags[0] or stalled == STALL_PASSES:  # done, or passes in a row did not get far: stop
            break
        last = min(last, left)
        # (1) raises: floor-helping columns toward the needs, then the cheapest toward the deficits
        gain = prob.At.matvec((need > 0).to(x.dtype))  # sum of a_rj over the unmet floors of column j
        helper = open_col & (gain > 0) & (b.spread(block_room) > 0)
        picked, count = mv.best(c / gain.clamp(min=1e-300), helper)
        cap = torch.where(picked, torch.minimum(room, b.spread(block_room / count.clamp(min=1.0))), 0.0)
        # a column alone meets each of its floors with need_r / a_rj: about need / (gain / floors) (unbounded caps)
        reach = mv.col_max(need) / gain.clamp(min=1e-300)
        cap = torch.where(torch.isfinite(cap), cap, torch.where(picked, reach, 0.0))
        supply = mv.times(cap)
        theta = torch.where(need > 0, (need / supply.clamp(min=1e-300)).clamp(max=1.0), 0.0)
        raise_f = cap * mv.col_max(theta)
        left = (deficit - b.sum(raise_f)).clamp(min=0)
        to_fill = open_col & (b.spread(left) > 0)
        picked, count = mv.best(c, to_fill & ((room - raise_f) > 0))
        raise_d = torch.where(picked, torch.minimum(room - raise_f, b.spread(left / count.clamp(min=1.0))), 0.0)
        x.add_(mv.row_fit(raise_f.add_(raise_d), slack))
        del raise_f, raise_d, cap, supply
        if flags[3]:  # what the cheapest columns could not take: equal shares over every open column with room
            ax, slack, need, room, block_room, deficit = mv.state(x)
            x.add_(mv.row_fit(torch.minimum(room, mv.spread_over(deficit, open_col_at(mv, slack, room))), slack))
        # (2) floor moves: from columns of lower gain to the block's open column of highest gain
        if flags[1]:
            ax, slack, need, room, block_room, deficit = mv.state(x)
            gain = prob.At.matvec((need > 0).to(x.dtype))
            receivers, count = mv.best(-gain, open_col_at(mv, slack, room) & (gain > 0))
            top = b.spread(b.reduce(torch.where(receivers, gain, -torch.inf), "max", initial=-torch.inf))
            give = torch.where(gain < top, x, 0.0)
            # scale the moves so that the floors they raise are met, not passed: need_r / (what a full move adds)
            gain_full = mv.times(torch.where(receivers, b.spread(b.sum(give) / count.clamp(min=1.0)), 0.0) - give)
            theta = torch.where((need > 0) & (gain_full > 0), (need / gain_full.clamp(min=1e-300)).clamp(max=1.0), 0.0)
            # every floor row the move lowers stays met: its surplus / (what a full move takes)
            surplus = floor_surplus(prob.row_lower, ax)
            limit = torch.where(gain_full < 0, (surplus / (-gain_full).clamp(min=1e-300)).clamp(max=1.0), 1.0)
            frac = torch.minimum(b.reduce(torch.where(receivers, mv.col_max(theta), 0.0), "max", initial=0.0),
                                 b.reduce(torch.where((give > 0) | receivers, mv.col_min(limit), 1.0), "min",
                                          initial=1.0))
            x = mv.move(x, give.mul_(b.spread(frac)), receivers, count, room, slack)
        # (3) deficit moves: blocks with mass in the tight rows of a stuck equality block move it to open columns
        if flags[2]:
            ax, slack, need, room, block_room, deficit = mv.state(x)
            open_col = open_col_at(mv, slack, room)
            stuck = (deficit > 0) & (b.count(open_col) == 0)
            receivers, count = mv.best(c, open_col)
            # what the stuck blocks would put in each tight row: each column with room could take the whole deficit
            wish = torch.where(b.spread(stuck), torch.minimum(room, b.spread(deficit)), 0.0)
            wanted = torch.where(slack > 0, 0.0, mv.times(wish))
            holds = x > 0
            for _ in range(RELAY_DEPTH):  # blocks holding wanted rows without an open column pass the wish on
                theta = mv.share(wanted, torch.where(holds, x, 0.0))
                relayed = torch.where(b.spread(count == 0) & holds, x * mv.col_max(theta), 0.0)
                wish = mv.spread_over(b.sum(relayed), (room > 0) & (relayed == 0))
                wanted = torch.maximum(wanted, torch.where(slack > 0, 0.0, mv.times(wish)))
            movable = torch.where(b.spread(count > 0), x, 0.0)
            give = movable.mul_(mv.col_max(mv.share(wanted, movable)))
            surplus = floor_surplus(prob.row_lower, ax)
            taken = mv.times(give)
            limit = torch.where(taken > 0, (surplus / taken.clamp(min=1e-300)).clamp(max=1.0), 1.0)
            give.mul_(b.spread(b.reduce(torch.where(give > 0, mv.col_min(limit), 1.0), "min", initial=1.0)))
            x = mv.move(x, give, receivers, count, room, slack)
    deficit = torch.where(mv.eq, (b.rhs - b.sum(x)).clamp(min=0), 0.0)
    return place_deficits(x, deficit, (mv.upper - x).clamp(min=0), b)


def open_col_at(mv: _Moves, slack: torch.Tensor, room: torch.Tensor) -> torch.Tensor:
    """Columns with room whose <= rows all have slack."""
    return (mv.col_min((slack > 0).to(room.dtype)) > 0) & (room > 0)


def place_deficits(x: torch.Tensor, deficit: torch.Tensor, room: torch.Tensor, blocks) -> torch.Tensor:
    """x plus each equality block's deficit over its columns in proportion to min(room_j, d_i), rows regardless:
    x back in its block (sum x = r_i: sum_j min(room_j, d_i) >= d_i wherever the block is nonempty)."""
    weight = torch.minimum(room, blocks.spread(deficit))
    total = blocks.sum(weight)
    return x.add_(weight.mul_(blocks.spread(torch.where(total > 0, deficit / total.clamp(min=1e-300), 0.0))))
