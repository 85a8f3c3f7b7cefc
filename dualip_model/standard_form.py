"""The block-structured standard form every backend consumes (see docs/standard_form.md).

    minimize    c^T x + offset
    subject to  row_lower <= A x <= row_upper        (coupling rows, A in CSC with int32 row indices)
                x[block_ptr[i]:block_ptr[i+1]] in C_i  (block polytopes, kinds in polytopes.BlockKind)

Each C_i includes the column bounds col_lower <= x <= col_upper of its columns; the block sum constraint
sum x <= r_i (or == r_i) is in block_rhs. Maximization has already been turned into minimization; the
layout says how to map results back to the user's model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import scipy.sparse as sp

from .polytopes import BlockKind


@dataclass(frozen=True)
class Slot:
    """A named range [start, stop) of original columns (variables), coupling rows or blocks (constraints)."""

    name: str
    kind: str  # "variable", "rows" or "blocks"
    start: int
    stop: int


@dataclass(frozen=True)
class Layout:
    """How compiled positions map back to the model: user objective = sense * (c^T x + offset).

    ``column_order[j]`` is the original model column at compiled position j (None: identity).
    """

    sense: int
    column_order: np.ndarray | None
    variables: tuple[Slot, ...]
    constraints: tuple[Slot, ...]

    def to_original(self, x_compiled: np.ndarray) -> np.ndarray:
        """Undo the column permutation: x_orig[column_order[j]] = x_compiled[j]."""
        if self.column_order is None:
            return x_compiled
        out = np.empty_like(x_compiled)
        out[self.column_order] = x_compiled
        return out


@dataclass(frozen=True, eq=False)
class StandardForm:
    """min c^T x + offset s.t. row_lower <= A x <= row_upper, x_i in C_i (immutable arrays only)."""

    name: str
    c: np.ndarray  # (n,) float64
    offset: float
    col_lower: np.ndarray  # (n,) float64, may be a broadcast view
    col_upper: np.ndarray  # (n,) float64, may be a broadcast view
    A_indptr: np.ndarray  # (n+1,) int32 (int64 when nnz >= 2^31)
    A_indices: np.ndarray  # (nnz,) int32 row indices, sorted within each column
    A_data: np.ndarray  # (nnz,) float64
    row_lower: np.ndarray  # (m,) float64, -inf for none
    row_upper: np.ndarray  # (m,) float64, +inf for none
    block_ptr: np.ndarray  # (nb+1,) int32/int64, block i owns columns block_ptr[i]:block_ptr[i+1]
    block_kind: np.ndarray  # (nb,) int8 BlockKind codes
    block_rhs: np.ndarray  # (nb,) float64, r_i of the block sum constraint (0 for BOX)
    layout: Layout = field(repr=False)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and value.flags.writeable:
                value.setflags(write=False)

    @property
    def n_cols(self) -> int:
        return self.c.shape[0]

    @property
    def n_rows(self) -> int:
        return self.row_lower.shape[0]

    @property
    def nnz(self) -> int:
        return self.A_indices.shape[0]

    @property
    def n_blocks(self) -> int:
        return self.block_kind.shape[0]

    @property
    def A(self) -> sp.csc_matrix:
        """The coupling matrix as a scipy CSC matrix (shares the arrays)."""
        return sp.csc_matrix((self.A_data, self.A_indices, self.A_indptr), shape=(self.n_rows, self.n_cols))

    def block_kinds(self) -> set[BlockKind]:
        return {BlockKind(int(k)) for k in np.unique(self.block_kind)}

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (broadcast views count as their base, i.e. nothing per column)."""
        total = 0
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and value.strides != (0,):
                total += value.nbytes
        if self.layout.column_order is not None:
            total += self.layout.column_order.nbytes
        return total

    def __repr__(self) -> str:
        kinds = ", ".join(k.name for k in sorted(self.block_kinds()))
        return (
            f"StandardForm({self.name!r}: {self.n_cols} columns, {self.n_rows} coupling rows, "
            f"{self.nnz} nonzeros, {self.n_blocks} blocks [{kinds}])"
        )
