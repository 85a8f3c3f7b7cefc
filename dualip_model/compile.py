"""Compile a Model into a StandardForm: pick block polytopes, order columns by block, build CSC coupling rows.

A constraint becomes block polytopes when every row is sum_{j in S_r} x_j <= r or == r with unit
coefficients over disjoint column sets S_r not claimed by an earlier block constraint; all other
constraints become coupling rows of A. Columns in no block form one BOX block per variable.

Columns, coupling rows and coupling nonzeros are limited to INDEX_LIMIT = 2^31 - 1 (the backends index
them with int32); a larger model is refused before any compiled array is allocated.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import scipy.sparse as sp

from ._arrays import index_dtype, is_nondecreasing
from .errors import ModelError
from .expressions import Terms
from .polytopes import BlockKind
from .standard_form import Layout, Slot, StandardForm

INDEX_LIMIT = 2**31 - 1  # most columns, coupling rows and coupling nonzeros a model may have
BLOCK_RHS_TOL = 1e-9  # relative miss of a block's rhs against its columns' bound sums still taken as rounding


def compile_model(model) -> StandardForm:
    """Model -> StandardForm; validation lives here and in the model builders, never in backends."""
    n = model.n_cols
    if n == 0:
        raise ModelError(f"model '{model.name}' has no variables")
    _check_columns(model)
    constraints = list(model.constraints.values())
    block_cons = _choose_block_constraints(model, constraints)
    row_cons = [con for con in constraints if con not in block_cons]
    _check_coupling_size(model, row_cons)

    # Block id of every original column: block constraints' rows first, then one BOX block per variable.
    idx = index_dtype(max(n, 1) + sum(con.size for con in block_cons) + len(model.variables))
    block_of = np.empty(n, dtype=idx)
    block_slots, next_block = [], 0
    covered = np.zeros(n, dtype=bool)
    for con in block_cons:
        for t in con.expr.terms:
            cols = t.var.start + (t.col_array() if t.cols is not None else np.arange(t.var.size))
            block_of[cols] = next_block + (0 if con.index is None else t.row_array())
            covered[cols] = True
        block_slots.append(Slot(con.name, "blocks", next_block, next_block + con.size))
        next_block += con.size
    n_sum_blocks = next_block
    for var in model.variables.values():
        free = ~covered[var.start : var.stop]
        if free.any():
            block_of[var.start : var.stop][free] = next_block
            next_block += 1
    del covered
    n_blocks = next_block

    column_order = None if is_nondecreasing(block_of) else np.argsort(block_of, kind="stable").astype(idx)
    counts = np.bincount(block_of, minlength=n_blocks)
    block_ptr = np.zeros(n_blocks + 1, dtype=idx)
    np.cumsum(counts, out=block_ptr[1:])
    del counts

    position = None  # original column -> compiled position
    if column_order is not None:
        position = np.empty(n, dtype=idx)
        position[column_order] = np.arange(n, dtype=idx)

    col_lower, col_upper = _column_bounds(model, column_order)
    c, offset = _objective(model, column_order)
    del block_of
    block_kind, block_rhs = _block_kinds(block_cons, n_blocks, n_sum_blocks, col_lower, col_upper, block_ptr)
    A_indptr, A_indices, A_data, row_lower, row_upper, row_slots = _coupling_rows(model, row_cons, position)

    layout = Layout(
        sense=model.objective.sense if model.objective is not None else 1,
        column_order=column_order,
        variables=tuple(Slot(v.name, "variable", v.start, v.stop) for v in model.variables.values()),
        constraints=tuple(block_slots + row_slots),
    )
    sf = StandardForm(
        name=model.name, c=c, offset=offset, col_lower=col_lower, col_upper=col_upper,
        A_indptr=A_indptr, A_indices=A_indices, A_data=A_data, row_lower=row_lower, row_upper=row_upper,
        block_ptr=block_ptr, block_kind=block_kind, block_rhs=block_rhs, layout=layout,
    )
    sf.validate(f"model '{model.name}'")  # the compiled arrays, once: what StandardForm.load also checks
    return sf


# --------------------------------------------------------------------------- size limits
def _check_columns(model) -> None:
    """Refuse more than INDEX_LIMIT columns, naming the variable that crosses the limit."""
    if model.n_cols <= INDEX_LIMIT:
        return
    var = next(v for v in model.variables.values() if v.stop > INDEX_LIMIT)
    raise ModelError(f"model '{model.name}' has {model.n_cols} columns, more than the {INDEX_LIMIT} (2^31 - 1) "
                     f"int32 indices allow; variable '{var.name}' ends at column {var.stop}")


def _check_coupling_size(model, row_cons) -> None:
    """Refuse more than INDEX_LIMIT coupling rows or terms (nonzeros of A), counted without allocating."""
    rows = sum(con.size for con in row_cons)
    terms = [sum(len(t) for t in con.expr.terms) for con in row_cons]
    for what, count, per_con in (("coupling rows", rows, [con.size for con in row_cons]),
                                 ("coupling-row terms (nonzeros of A)", sum(terms), terms)):
        if count > INDEX_LIMIT:
            biggest = row_cons[int(np.argmax(per_con))]
            raise ModelError(f"model '{model.name}' has {count} {what}, more than the {INDEX_LIMIT} (2^31 - 1) "
                             f"int32 indices allow; constraint '{biggest.name}' has {max(per_con)}")


# --------------------------------------------------------------------------- block detection
def _choose_block_constraints(model, constraints) -> list:
    """Constraints whose rows become block polytopes, first come first served over columns."""
    claimed = np.zeros(model.n_cols, dtype=bool)
    chosen = []
    for con in constraints:
        if con.block is False:
            continue
        reason = _block_obstacle(con, claimed)
        if reason is None:
            for t in con.expr.terms:
                claimed[t.var.start : t.var.stop][t.col_array() if t.cols is not None else slice(None)] = True
            chosen.append(con)
        elif con.block:
            raise ModelError(f"constraint '{con.name}' cannot be a block polytope: {reason}")
    return chosen


def _block_obstacle(con, claimed: np.ndarray) -> str | None:
    """Why ``con`` cannot become blocks (None if it can)."""
    lower = np.broadcast_to(con.lower, (con.size,))
    upper = np.broadcast_to(con.upper, (con.size,))
    if not np.isfinite(upper).all():
        return "its rows need a finite upper side (sum <= r or sum == r)"
    if not ((lower == -np.inf).all() or (lower == upper).all()):
        return "its rows must all be `sum <= r` or all be `sum == r`"
    seen_vars = set()
    for t in con.expr.terms:
        if t.var in seen_vars:
            return f"variable '{t.var.name}' appears in more than one term"
        seen_vars.add(t.var)
        coef = np.asarray(t.coef)
        if not (coef == 1.0).all():
            return "its coefficients are not all 1"
        if t.cols is not None and np.bincount(t.cols, minlength=t.var.size).max(initial=0) > 1:
            return f"a column of variable '{t.var.name}' appears in more than one row"
        mine = claimed[t.var.start : t.var.stop]
        if (mine if t.cols is None else mine[t.cols]).any():
            return f"columns of variable '{t.var.name}' already belong to another block constraint"
    return None


def _block_kinds(block_cons, n_blocks, n_sum_blocks, col_lower, col_upper, block_ptr):
    """Per-block kind and rhs; checks every block polytope is non-empty (see ``_check_block_sums``)."""
    kind = np.full(n_blocks, BlockKind.BOX, dtype=np.int8)
    rhs = np.zeros(n_blocks)
    if n_sum_blocks == 0:
        return kind, rhs
    is_eq = np.zeros(n_sum_blocks, dtype=bool)
    start = 0
    for con in block_cons:
        rhs[start : start + con.size] = con.upper
        is_eq[start : start + con.size] = np.broadcast_to(con.lower, (con.size,)) == np.broadcast_to(con.upper, (con.size,))
        start += con.size
    sum_cols = slice(0, int(block_ptr[n_sum_blocks]))  # blocks with a sum come first in compiled order
    sizes = np.diff(block_ptr[: n_sum_blocks + 1])
    blk = np.repeat(np.arange(n_sum_blocks), sizes)  # their columns' block
    lo, hi = col_lower[sum_cols], col_upper[sum_cols]
    uniform = col_lower.strides == (0,) and col_upper.strides == (0,)
    if uniform:  # one bound pair for every column: the sums are bound * size
        sum_lo = np.where(sizes > 0, col_lower[0], 0.0) * sizes
        sum_hi = np.where(sizes > 0, col_upper[0], 0.0) * sizes
    else:
        sum_lo = np.bincount(blk, weights=lo, minlength=n_sum_blocks)
        sum_hi = np.bincount(blk, weights=hi, minlength=n_sum_blocks)
    r = rhs[:n_sum_blocks]
    _check_block_sums(block_cons, r, is_eq, sum_lo, sum_hi)
    if uniform:
        simplex = np.full(n_sum_blocks, col_lower[0] == 0.0) & (col_upper[0] >= r)
    else:
        nonzero_lo = np.bincount(blk, weights=(lo != 0.0), minlength=n_sum_blocks)
        binding_hi = np.bincount(blk, weights=(hi < r[blk]), minlength=n_sum_blocks)
        simplex = (nonzero_lo == 0) & (binding_hi == 0)
    kind[:n_sum_blocks] = np.where(
        simplex,
        np.where(is_eq, BlockKind.SIMPLEX_EQ, BlockKind.SIMPLEX_LE),
        np.where(is_eq, BlockKind.BOXCUT_EQ, BlockKind.BOXCUT_LE),
    )
    return kind, rhs


def _check_block_sums(block_cons, r, is_eq, sum_lo, sum_hi) -> None:
    """Refuse a block whose sum cannot reach its rhs r (sum x <= r needs sum_lo <= r, == r also r <= sum_hi).

    A miss of at most BLOCK_RHS_TOL * (1 + max(|r|, |sum bound|)) is rounding (a constant moved to the rhs,
    0.41 - 0.1 = 0.30999999999999994 against a lower bound 0.31): the rhs is moved onto the bound in place,
    so every backend sees a non-empty block.
    """
    with np.errstate(invalid="ignore"):
        scale = BLOCK_RHS_TOL * (1.0 + np.maximum(np.abs(r), np.where(np.isfinite(sum_lo), np.abs(sum_lo), 0.0)))
        below = sum_lo - r  # > 0: the lower bounds alone exceed r
        above = np.where(is_eq, r - sum_hi, -np.inf)  # > 0: an equality's columns cannot reach r
        scale_hi = BLOCK_RHS_TOL * (1.0 + np.maximum(np.abs(r), np.where(np.isfinite(sum_hi), np.abs(sum_hi), 0.0)))
    bad = (below > scale) | (above > scale_hi)
    if bad.any():
        b = int(np.argmax(bad))
        con, row = _block_owner(block_cons, b)
        need = f"sum == {r[b]}" if is_eq[b] else f"sum <= {r[b]}"
        raise ModelError(
            f"constraint '{con.label(row)}': block polytope is empty (rhs {r[b]}, column bounds sum to "
            f"[{sum_lo[b]}, {sum_hi[b]}]; the block needs {need} with every column within its bounds)"
        )
    r[:] = np.where(below > 0, sum_lo, np.where(above > 0, sum_hi, r))


def _block_owner(block_cons, b: int):
    for con in block_cons:
        if b < con.size:
            return con, b
        b -= con.size
    raise AssertionError("block index out of range")


# --------------------------------------------------------------------------- columns
def _column_bounds(model, column_order):
    variables = list(model.variables.values())
    los = {np.asarray(v.lower).tobytes() if np.isscalar(v.lower) else None for v in variables}
    his = {np.asarray(v.upper).tobytes() if np.isscalar(v.upper) else None for v in variables}
    n = model.n_cols
    if len(los) == 1 and None not in los and len(his) == 1 and None not in his:
        # one scalar bound pair for every column: zero-stride views, no memory per column
        return (np.broadcast_to(np.float64(variables[0].lower), (n,)),
                np.broadcast_to(np.float64(variables[0].upper), (n,)))
    lower, upper = np.empty(n), np.empty(n)
    for v in variables:
        lower[v.start : v.stop] = v.lower
        upper[v.start : v.stop] = v.upper
    if column_order is not None:
        lower, upper = lower[column_order], upper[column_order]
    return lower, upper


def _objective(model, column_order):
    """c (compiled order, minimization sense) and the constant offset; a sum that overflows float64 is named."""
    c = np.zeros(model.n_cols)
    obj = model.objective
    if obj is None:
        return c, 0.0
    offset = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for name, expr in obj.parts.items():
            w = obj.weights[name] * obj.sense
            for t in expr.terms:
                if t.cols is None:
                    c[t.var.start : t.var.stop] += w * t.coef
                else:
                    c[t.var.start : t.var.stop] += np.bincount(t.cols, weights=w * t.coef_array(),
                                                               minlength=t.var.size)
            offset += w * float(expr.constant)
    bad = ~np.isfinite(c)
    if bad.any():
        j = int(np.argmax(bad))
        var = next(v for v in model.variables.values() if v.start <= j < v.stop)
        raise ModelError(f"objective: the weighted cost of variable '{var.name}' at {var._describe(j - var.start)} "
                         f"overflows float64 ({c[j]})")
    if not np.isfinite(offset):
        raise ModelError(f"objective: the weighted sum of its constants overflows float64 ({offset})")
    if column_order is not None:
        c = c[column_order]
    return c, offset


# --------------------------------------------------------------------------- coupling rows
def _merged_terms(con) -> list[Terms]:
    """The constraint's term blocks with repeated variables merged (duplicate (row, col) pairs summed)."""
    by_var = defaultdict(list)
    for t in con.expr.terms:
        by_var[t.var].append(t)
    merged = []
    for var, group in by_var.items():
        if len(group) == 1:
            merged.append(group[0])
            continue
        rows = np.concatenate([_rows(con, t) for t in group])
        cols = np.concatenate([t.col_array() for t in group])
        data = np.concatenate([t.coef_array() for t in group])
        with np.errstate(over="ignore", invalid="ignore"):
            m = sp.coo_matrix((data, (rows, cols)), shape=(con.size, var.size)).tocsr().tocoo()
        bad = ~np.isfinite(m.data)
        if bad.any():
            k = int(np.argmax(bad))
            raise ModelError(f"constraint '{con.label(int(m.row[k]))}': the summed coefficient of variable "
                             f"'{var.name}' at {var._describe(int(m.col[k]))} overflows float64 ({m.data[k]})")
        merged.append(Terms(var, m.data, m.row.astype(np.int64), m.col.astype(np.int64)))
    return merged


def _rows(con, t: Terms) -> np.ndarray:
    return np.zeros(len(t), dtype=np.int32) if con.index is None else t.row_array()


def _coupling_rows(model, row_cons, position):
    n = model.n_cols
    m = sum(con.size for con in row_cons)  # at most INDEX_LIMIT (_check_coupling_size)
    rows_parts, cols_parts, data_parts, slots = [], [], [], []
    row_lower, row_upper = np.empty(m), np.empty(m)
    offset = 0
    cidx = index_dtype(n)
    for con in row_cons:
        for t in _merged_terms(con):
            cols = (np.arange(t.var.start, t.var.stop, dtype=cidx) if t.cols is None
                    else (t.var.start + t.cols).astype(cidx, copy=False))
            if position is not None:
                cols = position[cols]
            rows_parts.append((_rows(con, t) + offset).astype(np.int32, copy=False))
            cols_parts.append(cols)
            data_parts.append(t.coef_array())
        row_lower[offset : offset + con.size] = con.lower
        row_upper[offset : offset + con.size] = con.upper
        slots.append(Slot(con.name, "rows", offset, offset + con.size))
        offset += con.size
    if rows_parts:
        rows = rows_parts[0] if len(rows_parts) == 1 else np.concatenate(rows_parts)
        cols = cols_parts[0] if len(cols_parts) == 1 else np.concatenate(cols_parts)
        data = data_parts[0] if len(data_parts) == 1 else np.concatenate(data_parts)
        data_is_users = len(data_parts) == 1  # may alias the caller's coefficient array
        del rows_parts, cols_parts, data_parts
        zero = data == 0.0
        if zero.any():
            keep = ~zero
            rows, cols, data = rows[keep], cols[keep], data[keep]
            data_is_users = False
        del zero
        if not is_nondecreasing(cols):
            order = np.argsort(cols, kind="stable")
            rows, cols, data = rows[order], cols[order], data[order]
            data_is_users = False
            del order
        nnz = rows.shape[0]
        indptr = np.searchsorted(cols, np.arange(n + 1, dtype=cidx)).astype(index_dtype(nnz))
        del cols
        indices = rows.astype(np.int32, copy=False)
        if data_is_users:
            data = data.copy()  # the standard form freezes its arrays; never freeze the user's
    else:
        indptr = np.zeros(n + 1, dtype=np.int32)
        indices = np.zeros(0, dtype=np.int32)
        data = np.zeros(0)
    return indptr, indices, data, row_lower, row_upper, slots
