"""The standard form as one plain LP for general solvers: min c^T x s.t. l <= [A; B] x <= u, l_x <= x <= u_x.

B has one row per block with a sum constraint (sum_{j in block i} x_j <= r_i, or == r_i), placed after
the m coupling rows, so a solver without block polytopes solves exactly the standard form and its row
duals split into coupling-row and block duals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .polytopes import EQUALITY_KINDS, BlockKind
from .standard_form import StandardForm


@dataclass(frozen=True)
class FlatLP:
    """Arrays of the flattened LP (CSC matrix with int64 starts, coupling rows first, then block rows)."""

    c: np.ndarray
    offset: float
    A: sp.csc_matrix  # (m + len(sum_blocks), n)
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    sum_blocks: np.ndarray  # block ids with a sum constraint, in the order of their rows

    def split_duals(self, duals: np.ndarray, n_rows: int, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """(coupling-row duals, per-block duals with 0 for BOX blocks) from duals of all flat rows."""
        block = np.zeros(n_blocks)
        block[self.sum_blocks] = duals[n_rows:]
        return duals[:n_rows], block


def block_rows(sf: StandardForm) -> tuple[np.ndarray, np.ndarray]:
    """(ids of the blocks with a sum constraint, flat row of every block: m + its rank there, -1 for BOX)."""
    sum_blocks = np.flatnonzero(sf.block_kind != BlockKind.BOX)
    block_row = np.full(sf.n_blocks, -1, dtype=np.int64)
    block_row[sum_blocks] = sf.n_rows + np.arange(sum_blocks.shape[0])
    return sum_blocks, block_row


def flat_lp(sf: StandardForm) -> FlatLP:
    """Append the block-row entry at the end of each column of A (its row id exceeds every coupling row)."""
    n, m = sf.n_cols, sf.n_rows
    sum_blocks, block_row = block_rows(sf)
    col_row = np.repeat(block_row, np.diff(sf.block_ptr))
    extra = (col_row >= 0).astype(np.int64)
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.diff(sf.A_indptr).astype(np.int64) + extra, out=start[1:])
    nnz = int(start[-1])
    index = np.empty(nnz, dtype=np.int32 if m + sum_blocks.shape[0] < 2**31 else np.int64)
    value = np.empty(nnz)
    coupling_pos = np.repeat(start[:-1] - sf.A_indptr[:-1].astype(np.int64), np.diff(sf.A_indptr)) + np.arange(sf.nnz)
    index[coupling_pos] = sf.A_indices
    value[coupling_pos] = sf.A_data
    block_pos = start[1:][extra == 1] - 1
    index[block_pos] = col_row[extra == 1]
    value[block_pos] = 1.0
    rhs = sf.block_rhs[sum_blocks]
    eq = np.isin(sf.block_kind[sum_blocks], EQUALITY_KINDS)
    A = sp.csc_matrix((value, index, start), shape=(m + sum_blocks.shape[0], n))
    return FlatLP(
        c=np.ascontiguousarray(sf.c, dtype=np.float64), offset=float(sf.offset), A=A,
        row_lower=np.concatenate([sf.row_lower, np.where(eq, rhs, -np.inf)]),
        row_upper=np.concatenate([sf.row_upper, rhs]),
        col_lower=np.ascontiguousarray(sf.col_lower, dtype=np.float64),
        col_upper=np.ascontiguousarray(sf.col_upper, dtype=np.float64), sum_blocks=sum_blocks,
    )
