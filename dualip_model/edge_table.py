"""Compile an edge table in Parquet to a standard-form file, one row group at a time.

    min (or max)  sum_e cost_e x_e
    subject to    row_lower_r <= sum over edges e of row r of coef_e x_e <= row_upper_r    (one row per edge)
                  lower_g <= sum_e w_ge x_e <= upper_g                                     (global rows)
                  x_B in C_B for every block B: the edges sharing one block id             (simplex or box)

One Parquet row is one edge: its block (an integer column, nondecreasing through the file, so that a block's
edges are contiguous, as a table sorted by user is), its coupling row, cost and coefficients. Every row
group becomes the standard form's next columns, in file order, appended to one scratch file per array; the
``.npz`` is then written by ``StandardForm.save`` from those files memory-mapped. The host holds one row group's
arrays and numpy's copy buffer, never the whole model, and no Python object per edge. ``StandardForm.load``
reads the file whole; ``shards.load_shard`` (``python -m dualip_model solve-sharded``) reads one rank's part.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from ._arrays import to_numpy
from .atomic import atomic_write, check_writable
from .errors import ModelError
from .polytopes import BlockKind
from .standard_form import Layout, Slot, StandardForm
from .tables import _pyarrow

KINDS = {  # block_kind -> (kind without column upper bounds, kind with them)
    "simplex_le": (BlockKind.SIMPLEX_LE, BlockKind.BOXCUT_LE),
    "simplex_eq": (BlockKind.SIMPLEX_EQ, BlockKind.BOXCUT_EQ),
    "box": (BlockKind.BOX, BlockKind.BOX),
}


@dataclass(frozen=True)
class GlobalRow:
    """A coupling row over all edges, lower <= sum_e w_e x_e <= upper, w read from ``column``."""

    column: str
    lower: float = -math.inf
    upper: float = math.inf


@dataclass(frozen=True)
class EdgeTableForm:
    """What ``compile_edge_table`` wrote: the file and the standard form's sizes."""

    path: str
    n_cols: int  # edges: column j is the file's row j
    n_rows: int  # per-edge rows, then the global rows
    nnz: int
    n_blocks: int
    row_groups: int


class _Scratch:
    """One array written chunk by chunk to a raw file, read back memory-mapped."""

    def __init__(self, directory: str, name: str, dtype):
        self.path = os.path.join(directory, name)
        self.dtype = np.dtype(dtype)
        self.size = 0
        self._fh = open(self.path, "wb")

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self._fh.write(values.data)
        self.size += values.size

    def close(self) -> None:
        self._fh.close()

    def array(self) -> np.ndarray:
        self.close()
        if self.size == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.size,))


def compile_edge_table(source, out, *, block: str, cost: str, row: str | None = None,
                       coefficient: str | None = None, row_upper=None, row_lower=None,
                       global_rows: dict[str, GlobalRow] | None = None, sense: str = "min",
                       block_kind: str = "simplex_le", block_rhs: float = 1.0, upper: float = math.inf,
                       name: str | None = None) -> EdgeTableForm:
    """Write the standard form of the edge table in Parquet file ``source`` to ``out`` (.npz), row group by row group.

    ``block``: the block id column (integers, nondecreasing); ``cost``: the objective column, minimized or
    maximized (``sense``); ``row``: the coupling row of each edge (integers in [0, len(row_upper))), with the
    coefficient column ``coefficient`` (default 1) and the bounds ``row_lower`` (default -inf) <= .. <=
    ``row_upper``; ``global_rows``: name -> GlobalRow. Every block is ``block_kind`` ("simplex_le": sum x <=
    ``block_rhs``, "simplex_eq": sum x == ``block_rhs``, "box") with 0 <= x <= ``upper``. Bad input (a missing or
    non-numeric column, a null, NaN or infinity, a row id out of range, a block whose edges are not contiguous)
    raises ModelError naming the file, column, row group and row, and leaves no output file.
    """
    pq = _pyarrow("compile_edge_table").parquet
    source, out = os.fspath(source), os.fspath(out)
    if not out.endswith(".npz"):
        raise ModelError(f"compile_edge_table: output '{out}' must be an .npz file (written while streaming)")
    check_writable(out, "compile_edge_table: output")
    if sense not in ("min", "max"):
        raise ModelError(f"compile_edge_table: sense must be 'min' or 'max', not {sense!r}")
    if block_kind not in KINDS:
        raise ModelError(f"compile_edge_table: block_kind must be one of {sorted(KINDS)}, not {block_kind!r}")
    if not (upper > 0):
        raise ModelError(f"compile_edge_table: upper must be > 0 (x lies in [0, upper]), not {upper!r}")
    if block_kind != "box" and not (np.isfinite(block_rhs) and block_rhs >= 0):
        raise ModelError(f"compile_edge_table: block_rhs must be finite and >= 0, not {block_rhs!r}")
    if coefficient is not None and row is None:
        raise ModelError("compile_edge_table: a coefficient column needs a row column (the row it multiplies into)")
    lower_r, upper_r = _row_bounds(row, row_lower, row_upper)
    globals_ = dict(global_rows or {})
    for gname, g in globals_.items():
        if not isinstance(g, GlobalRow) or not g.lower <= g.upper or math.isnan(g.lower) or math.isnan(g.upper):
            raise ModelError(f"compile_edge_table: global row '{gname}' needs a GlobalRow with lower <= upper")
    wanted = [block, cost] + [c for c in (row, coefficient) if c is not None] + [g.column for g in globals_.values()]
    pf = _open_edge_table(pq, source, wanted)
    n = pf.metadata.num_rows
    if n == 0:
        raise ModelError(f"edge table '{source}' has no rows")

    m_edge = len(upper_r)
    m = m_edge + len(globals_)
    per_col = (row is not None) + len(globals_)
    index_type = np.int64 if n * per_col >= 2**31 else np.int32
    kind = KINDS[block_kind][bool(np.isfinite(upper)) and block_kind != "box"]
    directory = tempfile.mkdtemp(prefix=".edge-table-", dir=os.path.dirname(os.path.abspath(out)))
    scratch = {}
    try:
        scratch = {key: _Scratch(directory, key, dtype) for key, dtype in (
            ("c", np.float64), ("A_indptr", index_type), ("A_indices", np.int32), ("A_data", np.float64),
            ("block_ptr", np.int64))}
        scratch["A_indptr"].append(np.zeros(1))
        scratch["block_ptr"].append(np.zeros(1))
        start, nnz, last_block = 0, 0, None
        for group in range(pf.num_row_groups):
            table = pf.read_row_group(group, columns=list(dict.fromkeys(wanted)))
            where = f"edge table '{source}', row group {group}"

            def column(name, integer=False):
                return _numeric(table.column(name), name, where, start, integer)
            ids = column(block, integer=True)
            k = ids.shape[0]
            if k == 0:
                continue
            costs = column(cost)
            scratch["c"].append(-costs if sense == "max" else costs)
            # new blocks: where the id changes (and at the group's first edge unless it continues the last block)
            down = np.flatnonzero(ids[1:] < ids[:-1])
            if down.size or (last_block is not None and ids[0] < last_block):
                at = int(down[0]) + 1 if down.size else 0
                before = ids[at - 1] if at else last_block
                raise ModelError(f"{where}: column '{block}' is not nondecreasing at file row {start + at} "
                                 f"(block {ids[at]} after block {before}): a block's edges must be contiguous, "
                                 f"sort the table by '{block}'")
            change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
            if last_block is not None and ids[0] != last_block:  # (the file's first block starts at 0, written)
                change = np.concatenate([[0], change])
            scratch["block_ptr"].append(start + change)
            last_block = ids[-1]
            # the entries: per edge its row (if any) then the global rows, zeros left out
            rows = np.empty((k, per_col), dtype=np.int32)
            vals = np.empty((k, per_col), dtype=np.float64)
            j = 0
            if row is not None:
                r = column(row, integer=True)
                bad = np.flatnonzero((r < 0) | (r >= m_edge))
                if bad.size:
                    raise ModelError(f"{where}: column '{row}' holds row {r[bad[0]]} at file row {start + bad[0]}; "
                                     f"rows are 0..{m_edge - 1} (len(row_upper) = {m_edge})")
                rows[:, 0] = r
                vals[:, 0] = column(coefficient) if coefficient is not None else 1.0
                j = 1
            for g, gr in enumerate(globals_.values()):
                rows[:, j + g] = m_edge + g
                vals[:, j + g] = column(gr.column)
            keep = vals != 0
            scratch["A_indices"].append(rows[keep])
            scratch["A_data"].append(vals[keep])
            scratch["A_indptr"].append(nnz + np.cumsum(keep.sum(axis=1)))
            nnz += int(keep.sum())
            start += k
        scratch["block_ptr"].append(np.array([n]))
        arrays = {key: s.array() for key, s in scratch.items()}
        nb = arrays["block_ptr"].shape[0] - 1
        sf = StandardForm(
            name=name or os.path.splitext(os.path.basename(source))[0], c=arrays["c"], offset=0.0,
            col_lower=np.broadcast_to(np.float64(0.0), (n,)), col_upper=np.broadcast_to(np.float64(upper), (n,)),
            A_indptr=arrays["A_indptr"], A_indices=arrays["A_indices"], A_data=arrays["A_data"],
            row_lower=np.concatenate([lower_r, [g.lower for g in globals_.values()]]).astype(np.float64),
            row_upper=np.concatenate([upper_r, [g.upper for g in globals_.values()]]).astype(np.float64),
            block_ptr=arrays["block_ptr"], block_kind=np.full(nb, int(kind), dtype=np.int8),
            block_rhs=np.full(nb, 0.0 if kind == BlockKind.BOX else float(block_rhs)),
            layout=Layout(sense=-1 if sense == "max" else 1, column_order=None,
                          variables=(Slot("x", "variable", 0, n),),
                          constraints=(Slot(block, "blocks", 0, nb),
                                       *((Slot(row, "rows", 0, m_edge),) if row is not None else ()),
                                       *(Slot(gname, "rows", m_edge + g, m_edge + g + 1)
                                         for g, gname in enumerate(globals_)))),
        )
        sf.validate(f"compile_edge_table: edge table '{source}'")  # what compile() would refuse
        sf.save(out)  # atomic: the whole file or none
        return EdgeTableForm(out, n, m, nnz, nb, pf.num_row_groups)
    finally:
        for part in scratch.values():
            part.close()
        shutil.rmtree(directory, ignore_errors=True)  # (memory-mapped scratch files may go while mapped)


def write_edge_values(source, values, out, columns=(), name: str = "x") -> None:
    """Write ``values`` (one per edge: a solution's x of a form from ``compile_edge_table``) to Parquet file ``out``
    beside the listed ``columns`` of the edge table ``source``, row group by row group (``values`` may be memory
    mapped: one row group of it is read at a time)."""
    pa = _pyarrow("write_edge_values")
    pq = pa.parquet
    source, out = os.fspath(source), os.fspath(out)
    columns = list(columns)
    check_writable(out, "write_edge_values: output")
    pf = _open_edge_table(pq, source, columns)
    if name in columns:
        raise ModelError(f"write_edge_values: the values' column name {name!r} is also a table column")
    if np.ndim(values) != 1 or len(values) != pf.metadata.num_rows:
        raise ModelError(f"write_edge_values: {np.shape(values)} values for the {pf.metadata.num_rows} edges of "
                         f"'{source}' (one per edge, in file order)")
    start = 0
    schema = pa.schema([*(pf.schema_arrow.field(c) for c in columns), pa.field(name, pa.float64())])
    with atomic_write(out, "edge values file") as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for group in range(pf.num_row_groups):
            table = pf.read_row_group(group, columns=columns)
            k = pf.metadata.row_group(group).num_rows
            part = np.asarray(values[start:start + k], dtype=np.float64)
            writer.write_table(pa.table({**{c: table.column(c) for c in columns}, name: part}))
            start += k


def _open_edge_table(pq, source: str, columns):
    """The Parquet file ``source`` (pyarrow.parquet ``pq``), checked to be readable and to hold ``columns``."""
    try:
        pf = pq.ParquetFile(source)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ModelError(f"edge table '{source}' is not a readable Parquet file: {err}") from None
    missing = [c for c in dict.fromkeys(columns) if c not in pf.schema_arrow.names]
    if missing:
        raise ModelError(f"edge table '{source}' has no column {missing[0]!r}; its columns: {pf.schema_arrow.names}")
    return pf


def _row_bounds(row, row_lower, row_upper) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) float64 arrays of the per-edge rows, checked; empty without a row column."""
    if row is None:
        if row_upper is not None or row_lower is not None:
            raise ModelError("compile_edge_table: row_upper/row_lower given without a row column")
        return np.zeros(0), np.zeros(0)
    if row_upper is None:
        raise ModelError("compile_edge_table: a row column needs row_upper (one bound per row)")
    upper = np.asarray(to_numpy(row_upper, "row_upper"), dtype=np.float64)
    lower = np.full_like(upper, -np.inf) if row_lower is None else \
        np.asarray(to_numpy(row_lower, "row_lower"), dtype=np.float64)
    if lower.shape != upper.shape:
        raise ModelError(f"compile_edge_table: row_lower has {lower.shape[0]} rows, row_upper {upper.shape[0]}")
    bad = np.flatnonzero(np.isnan(lower) | np.isnan(upper) | (lower > upper) | (lower == np.inf) | (upper == -np.inf))
    if bad.size:
        raise ModelError(f"compile_edge_table: row {bad[0]} has bounds [{lower[bad[0]]}, {upper[bad[0]]}] "
                         f"(NaN, lower > upper, or an infinite side the wrong way)")
    return lower, upper


def _numeric(values, name: str, where: str, start: int, integer: bool) -> np.ndarray:
    """One column of a row group as numpy: numbers, no nulls, finite; ``integer``: an integer type."""
    pa = _pyarrow("compile_edge_table")
    kind = values.type
    if integer and not pa.types.is_integer(kind):
        raise ModelError(f"{where}: column '{name}' must hold integers, not {kind}")
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise ModelError(f"{where}: column '{name}' must hold numbers, not {kind}")
    arr = to_numpy(values, f"{where}, column '{name}'", describe=lambda i: f"file row {start + i}")
    if not integer:
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ModelError(f"{where}: column '{name}' holds {arr[bad[0]]} at file row {start + bad[0]}")
        return arr.astype(np.float64, copy=False)
    return arr
