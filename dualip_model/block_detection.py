"""Block structure found in a flat LP: rows sum_j a_j x_j <= r (or == r), a > 0, become simplex blocks.

    row r:  sum_{j in S_r} a_rj x_j <= r_r  (or == r_r),  a_rj > 0,  x_j >= 0   ->   x'_j = a_rj x_j,
            sum_{j in S_r} x'_j <= r_r,  c'_j = c_j / a_rj,  A'_{ij} = A_ij / a_rj,  0 <= x'_j <= a_rj u_j

A model read from an LP/MPS file (or built with ``block=False``) compiles to one BOX block and coupling
rows only; the dual decomposition of the dualip backend then has no block polytopes to bound the
Lagrangian over. ``detect_blocks`` turns qualifying rows over disjoint columns into blocks and returns the
inverse map (``DetectedBlocks.invert``) that gives the flat form's x, row duals, block duals and Farkas ray
back. ``read_model`` sets it as the model's ``reduction``, which ``Model.solve`` applies.

A row qualifies when it is ``<= r`` or ``== r`` with r >= 0, every entry is positive and finite, and every
column in it has lower bound 0 and belongs to a BOX block of the input (an ``== r`` row also needs
sum_j a_j u_j >= r, else its block would be empty; it stays a coupling row and the backend reports the
infeasibility). Qualifying rows may share columns; the chosen rows are the greedy disjoint set in the
order (fewest conflicts, most columns, a fixed pseudo-random order), where a row's conflicts are
sum_{j in S_r} (number of qualifying rows holding column j - 1). The greedy runs in rounds over all rows at
once: a row is taken when it comes first in that order on every one of its columns among the rows still
open, and rows sharing a column with a taken row close. After ``ORDERED_ROUNDS`` rounds (long chains of
overlapping rows) the order of the rows still open becomes a pseudo-random one, which needs O(log m) more
rounds in expectation; the chosen set is maximal either way: every qualifying row left out shares a column
with a chosen one. Columns in no chosen row and in no block of the input form one BOX block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ._arrays import index_dtype
from .backend import RawResult
from .polytopes import EQUALITY_KINDS, BlockKind
from .standard_form import Layout, Slot, StandardForm

ORDERED_ROUNDS = 32  # greedy rounds in the preferred order before the open rows are ranked pseudo-randomly
_SEED = 0  # of the pseudo-random tie-break and fallback order (the detection is deterministic)


@dataclass(frozen=True)
class DetectedBlocks:
    """What ``invert`` needs to map a result of the detected form back to the flat form it came from.

    ``rows``: flat rows that became blocks 0..k-1 (ascending); ``kept``: flat rows that stayed coupling rows,
    in their order; ``columns[j]``: flat column at position j of the detected form; ``scale[j]``: a_rj of
    flat column j (1 where no row was chosen); ``sum_blocks``: flat blocks with a sum constraint, which are
    blocks k, k+1, ... of the detected form.
    """

    n_rows: int
    n_blocks: int
    rows: np.ndarray
    kept: np.ndarray
    columns: np.ndarray
    scale: np.ndarray
    sum_blocks: np.ndarray
    form: StandardForm  # the detected form (its rows' Farkas weights are completed on it)

    def x(self, x_detected: np.ndarray) -> np.ndarray:
        """x_j = x'_p / a_j at the position p of flat column j."""
        x = np.empty(self.columns.shape[0])
        x[self.columns] = np.asarray(x_detected, dtype=np.float64) / self.scale[self.columns]
        return x

    def invert(self, raw: RawResult) -> RawResult:
        """The flat form's RawResult: x unscaled and reordered, chosen rows' duals from the block duals.

        The objective, bound, status, message and warm-start state are unchanged (c'^T x' = c^T x). A chosen row's
        dual is its block's dual (both are d(optimum)/d(r)); without block duals there are no row duals.
        A Farkas ray y over the coupling rows gets a weight z_b on each chosen row (``sum_row_weights``), so
        that it certifies the flat LP, whose only blocks are the input's.
        """
        k = self.rows.shape[0]
        if k == 0:
            return raw
        row_dual = block_dual = ray = None
        if raw.row_dual is not None and raw.block_dual is not None:
            row_dual = np.empty(self.n_rows)
            row_dual[self.kept] = raw.row_dual
            row_dual[self.rows] = raw.block_dual[:k]
        if raw.block_dual is not None:
            block_dual = np.zeros(self.n_blocks)
            block_dual[self.sum_blocks] = raw.block_dual[k : k + self.sum_blocks.shape[0]]
        if raw.ray is not None:
            ray = np.empty(self.n_rows)
            ray[self.kept] = raw.ray
            ray[self.rows] = sum_row_weights(self.form, k, self.form.A.T @ np.asarray(raw.ray, dtype=np.float64))
        return dataclasses.replace(raw, x=None if raw.x is None else self.x(raw.x), row_dual=row_dual,
                                   block_dual=block_dual, ray=ray)


def detect_blocks(sf: StandardForm) -> tuple[StandardForm, DetectedBlocks]:
    """(the form with qualifying rows as blocks, the inverse map); ``sf`` itself when no row qualifies."""
    chosen = choose_rows(sf)
    rows = np.flatnonzero(chosen)
    if rows.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return sf, DetectedBlocks(sf.n_rows, sf.n_blocks, rows=empty, kept=np.arange(sf.n_rows),
                                  columns=np.arange(sf.n_cols), scale=np.ones(sf.n_cols), sum_blocks=empty, form=sf)
    return _with_blocks(sf, chosen)


# --------------------------------------------------------------------------- choosing rows
def candidate_rows(sf: StandardForm) -> np.ndarray:
    """Boolean mask of the rows that could become blocks (see the module docstring)."""
    csr = sf.A.tocsr()
    m = sf.n_rows
    row_of = np.repeat(np.arange(m), np.diff(csr.indptr))
    col_lower, col_upper = np.asarray(sf.col_lower), np.asarray(sf.col_upper)
    in_box = np.repeat(sf.block_kind == BlockKind.BOX, np.diff(sf.block_ptr))
    column_ok = in_box & (col_lower == 0.0)
    entry_bad = ~((csr.data > 0) & np.isfinite(csr.data) & column_ok[csr.indices])
    bad = np.bincount(row_of, weights=entry_bad, minlength=m) > 0
    lower, upper = sf.row_lower, sf.row_upper
    eq = lower == upper
    with np.errstate(invalid="ignore"):  # a bad entry (0 * inf) is already counted in ``bad``
        capacity = np.bincount(row_of, weights=csr.data * col_upper[csr.indices], minlength=m)
    return np.isfinite(upper) & (upper >= 0) & ((lower == -np.inf) | eq) & ~bad & (~eq | (capacity >= upper))


def choose_rows(sf: StandardForm) -> np.ndarray:
    """Boolean mask of the rows chosen as blocks: a maximal disjoint set of candidate rows, by greedy rounds."""
    m = sf.n_rows
    candidate = candidate_rows(sf)
    chosen = np.zeros(m, dtype=bool)
    if not candidate.any():
        return chosen
    csr = sf.A.tocsr()
    size = np.diff(csr.indptr)
    row_of = np.repeat(np.arange(m), size)
    live = candidate[row_of]
    rows, cols = row_of[live], csr.indices[live]
    del row_of, live, csr
    order = np.argsort(cols, kind="stable")  # entries grouped by column for the per-column minimum
    rows, cols = rows[order], cols[order]
    del order
    holders = np.bincount(cols, minlength=sf.n_cols)
    conflicts = np.bincount(rows, weights=holders[cols] - 1, minlength=m)
    rng = np.random.default_rng(_SEED)
    rank = _rank(candidate, (rng.permutation(m), -size, conflicts))  # lower rank = taken first
    open_rows = candidate.copy()
    rounds = 0
    while open_rows.any():
        if rounds == ORDERED_ROUNDS:
            rank = _rank(open_rows, (rng.permutation(m),))
        won = _first_on_every_column(rows, cols, rank, size, m) & open_rows
        chosen |= won
        taken = np.zeros(sf.n_cols, dtype=bool)
        taken[cols[won[rows]]] = True
        closed = np.bincount(rows, weights=taken[cols], minlength=m) > 0
        open_rows &= ~(won | closed)
        keep = open_rows[rows]
        rows, cols = rows[keep], cols[keep]
        rounds += 1
    return chosen


def _rank(mask: np.ndarray, keys: tuple) -> np.ndarray:
    """Rank 0, 1, ... of the rows in ``mask`` sorted by ``keys`` (np.lexsort: the last key sorts first)."""
    idx = np.flatnonzero(mask)
    rank = np.full(mask.shape[0], np.iinfo(np.int64).max)
    rank[idx[np.lexsort(tuple(k[idx] for k in keys))]] = np.arange(idx.shape[0])
    return rank


def _first_on_every_column(rows, cols, rank, size, m) -> np.ndarray:
    """Rows whose rank is the least among the entries of each of their columns (entries sorted by column)."""
    if rows.shape[0] == 0:
        return size == 0
    starts = np.flatnonzero(np.concatenate([[True], cols[1:] != cols[:-1]]))
    least = np.minimum.reduceat(rank[rows], starts)
    least = np.repeat(least, np.diff(np.append(starts, rows.shape[0])))
    return np.bincount(rows, weights=rank[rows] == least, minlength=m) == size


# --------------------------------------------------------------------------- the detected form
def _with_blocks(sf: StandardForm, chosen: np.ndarray) -> tuple[StandardForm, DetectedBlocks]:
    """The standard form with the chosen rows as blocks 0..k-1, the input's sum blocks next, then one BOX."""
    n, m = sf.n_cols, sf.n_rows
    rows = np.flatnonzero(chosen)
    kept = np.flatnonzero(~chosen)
    k = rows.shape[0]
    csr = sf.A.tocsr()
    row_of = np.repeat(np.arange(m), np.diff(csr.indptr))
    in_chosen = chosen[row_of]
    chosen_cols = csr.indices[in_chosen]
    block_of_row = np.cumsum(chosen) - 1  # block of a chosen row
    scale = np.ones(n)
    scale[chosen_cols] = csr.data[in_chosen]
    chosen_rows_of = row_of[in_chosen]
    del csr, in_chosen, row_of

    sum_blocks = np.flatnonzero(sf.block_kind != BlockKind.BOX)
    flat_block = np.repeat(np.arange(sf.n_blocks), np.diff(sf.block_ptr))
    new_id = np.full(sf.n_blocks, k + sum_blocks.shape[0], dtype=np.int64)  # BOX blocks: the last block
    new_id[sum_blocks] = k + np.arange(sum_blocks.shape[0])
    block_of = new_id[flat_block]
    block_of[chosen_cols] = block_of_row[chosen_rows_of]
    del flat_block, chosen_rows_of
    n_blocks = k + sum_blocks.shape[0] + int((block_of == k + sum_blocks.shape[0]).any())
    idx = index_dtype(max(n, n_blocks))
    columns = np.argsort(block_of, kind="stable")
    block_ptr = np.zeros(n_blocks + 1, dtype=idx)
    np.cumsum(np.bincount(block_of, minlength=n_blocks), out=block_ptr[1:])

    upper_scaled = np.asarray(sf.col_upper)[columns] * scale[columns]
    kind = np.full(n_blocks, BlockKind.BOX, dtype=np.int8)
    rhs = np.zeros(n_blocks)
    r = sf.row_upper[rows]
    eq = sf.row_lower[rows] == r
    block_cols = np.repeat(np.arange(k), np.diff(block_ptr[: k + 1]))
    binding = np.bincount(block_cols, weights=upper_scaled[: block_ptr[k]] < r[block_cols], minlength=k) > 0
    kind[:k] = np.where(binding, np.where(eq, BlockKind.BOXCUT_EQ, BlockKind.BOXCUT_LE),
                        np.where(eq, BlockKind.SIMPLEX_EQ, BlockKind.SIMPLEX_LE))
    rhs[:k] = r
    kind[k : k + sum_blocks.shape[0]] = sf.block_kind[sum_blocks]
    rhs[k : k + sum_blocks.shape[0]] = sf.block_rhs[sum_blocks]

    # the chosen columns have lower bound 0, so x' = a x keeps every lower bound as it is
    col_lower = sf.col_lower if sf.col_lower.strides == (0,) else np.asarray(sf.col_lower)[columns]
    A_indptr, A_indices, A_data = _coupling(sf, chosen, columns, scale)
    detected = StandardForm(
        name=sf.name, c=np.asarray(sf.c)[columns] / scale[columns], offset=sf.offset, col_lower=col_lower,
        col_upper=upper_scaled, A_indptr=A_indptr, A_indices=A_indices, A_data=A_data,
        row_lower=sf.row_lower[kept], row_upper=sf.row_upper[kept], block_ptr=block_ptr, block_kind=kind,
        block_rhs=rhs, layout=_layout(sf, chosen, columns, sum_blocks),
    )
    inverse = DetectedBlocks(n_rows=m, n_blocks=sf.n_blocks, rows=rows, kept=kept, columns=columns, scale=scale,
                             sum_blocks=sum_blocks, form=detected)
    return detected, inverse


def _coupling(sf: StandardForm, chosen: np.ndarray, columns: np.ndarray, scale: np.ndarray):
    """CSC of the kept rows (renumbered) over the columns in their new order, each column divided by its a."""
    keep = ~chosen[sf.A_indices]
    new_row = (np.cumsum(~chosen) - 1).astype(np.int32)
    per_col = np.bincount(np.repeat(np.arange(sf.n_cols), np.diff(sf.A_indptr)), weights=keep,
                          minlength=sf.n_cols).astype(np.int64)
    start = np.zeros(sf.n_cols + 1, dtype=np.int64)
    np.cumsum(per_col, out=start[1:])  # the kept entries of flat column j: start[j]:start[j+1] of the filtered
    indices = new_row[sf.A_indices[keep]]
    data = sf.A_data[keep] / np.repeat(scale, per_col)
    counts = per_col[columns]
    nnz = int(start[-1])
    indptr = np.zeros(sf.n_cols + 1, dtype=index_dtype(nnz))
    np.cumsum(counts, out=indptr[1:])
    gather = np.repeat(start[columns] - indptr[:-1], counts) + np.arange(nnz)
    return indptr, indices[gather], data[gather]


def _layout(sf: StandardForm, chosen: np.ndarray, columns: np.ndarray, sum_blocks: np.ndarray) -> Layout:
    """The input's layout with each row family split into its kept rows and its rows turned into blocks.

    column_order maps detected positions to model columns, whose values are x' = a x (see DetectedBlocks).
    """
    k = int(chosen.sum())
    chosen_before = np.concatenate([[0], np.cumsum(chosen)])
    is_sum = np.zeros(sf.n_blocks, dtype=np.int64)
    is_sum[sum_blocks] = 1
    sums_before = np.concatenate([[0], np.cumsum(is_sum)])
    slots = []
    for s in sf.layout.constraints:
        if s.kind == "rows":
            a, b = int(chosen_before[s.start]), int(chosen_before[s.stop])
            slots.append(Slot(s.name, "rows", s.start - a, s.stop - b))
            if b > a:
                slots.append(Slot(s.name, "blocks", a, b))
        else:
            slots.append(Slot(s.name, "blocks", k + int(sums_before[s.start]), k + int(sums_before[s.stop])))
    order = columns if sf.layout.column_order is None else sf.layout.column_order[columns]
    return Layout(sense=sf.layout.sense, column_order=order.astype(index_dtype(sf.n_cols)),
                  variables=sf.layout.variables, constraints=tuple(slots))


# --------------------------------------------------------------------------- Farkas weights of the chosen rows
def sum_row_weights(form: StandardForm, k: int, g: np.ndarray) -> np.ndarray:
    """z_b with min_{x in C_b} g^T x = min_{0 <= x <= u} (g + z_b 1)^T x - r_b z_b for blocks b < k of ``form``.

    z_b is the multiplier of the sum row in min g^T x over C_b = {0 <= x <= u, sum x <= r_b (== r_b)}: the
    greedy fills the columns in ascending g up to r_b, and z_b = -g at the column where r_b runs out (0 where
    a `<=` block stops at g >= 0 first). Weighting the sum row by z_b turns a Farkas ray over the coupling
    rows, whose minimum runs over the blocks, into one over all rows, whose minimum runs over the bounds.
    """
    ptr = np.asarray(form.block_ptr[: k + 1], dtype=np.int64)
    sizes, stop = np.diff(ptr), int(ptr[-1])
    block = np.repeat(np.arange(k), sizes)
    r = form.block_rhs[:k]
    order = np.lexsort((g[:stop], block))  # by block (already so), then ascending g
    g_sorted = g[:stop][order]
    capacity = np.minimum(np.asarray(form.col_upper[:stop])[order], r[block])  # finite; the greedy is unchanged
    filled = _block_prefix_sums(capacity, ptr, sizes)
    position = np.where(filled >= r[block], np.arange(stop), stop)
    z = np.zeros(k)
    nonempty = sizes > 0
    first = np.full(k, stop)
    first[nonempty] = np.minimum.reduceat(position, ptr[:-1][nonempty])
    runs_out = first < ptr[1:]
    z[runs_out] = -g_sorted[first[runs_out]]
    less_equal = ~np.isin(form.block_kind[:k], EQUALITY_KINDS)
    z[less_equal] = np.maximum(z[less_equal], 0.0)
    return z


def _block_prefix_sums(values: np.ndarray, ptr: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """s_p = sum of values[ptr[b] : p + 1] for p in block b, one 2-d cumsum per distinct block size.

    A cumsum over all blocks less the sums before each block loses the digits of the blocks' sums to those of
    the running total (a budget filled exactly would read as not quite filled).
    """
    out = np.empty(values.shape[0])
    by_size = np.argsort(sizes, kind="stable")
    ends = np.flatnonzero(np.diff(sizes[by_size])) + 1
    for group in np.split(by_size, ends):
        size = int(sizes[group[0]]) if group.shape[0] else 0
        if size:
            at = ptr[group][:, None] + np.arange(size)
            out[at] = np.cumsum(values[at], axis=1)
    return out
