"""The block-structured standard form every backend consumes (see docs/standard_form.md).

    minimize    c^T x + offset
    subject to  row_lower <= A x <= row_upper        (coupling rows, A in CSC with int32 row indices)
                x[block_ptr[i]:block_ptr[i+1]] in C_i  (block polytopes, kinds in polytopes.BlockKind)

Each C_i includes the column bounds col_lower <= x <= col_upper of its columns; the block sum constraint
sum x <= r_i (or == r_i) is in block_rhs. Maximization has already been turned into minimization; the
layout says how to map results back to the user's model.

A standard form is saved to and loaded from one file (``save``/``load``): ``.npz`` (numpy, never pickle)
or ``.safetensors``, its arrays bit for bit plus the layout as JSON, written atomically. ``validate`` checks
every guarantee ``compile`` gives; ``compile`` and ``load`` both end with it, so a loaded file passes exactly
the checks a compiled model does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields

import numpy as np
import scipy.sparse as sp

from ._arrays import is_nondecreasing
from .atomic import atomic_write
from .errors import ModelError
from .polytopes import EQUALITY_KINDS, BlockKind
from .untrusted import MAX_JSON_BYTES, npz_members, parse_json, read_npz

_FORMAT = "dualip_model.StandardForm"
_VERSION = 1
_META_KEY = "dualip_model"  # safetensors metadata key (npz: a uint8 array of that name) holding the JSON


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

    def check(self, model) -> None:
        """Raise ModelError unless this layout is that of ``model`` (same variables, constraints and sense).

        A standard form compiled from the model, or saved from it and loaded, passes; data changed
        without changing the model's shape cannot be detected.
        """
        def mismatch(what: str) -> ModelError:
            return ModelError(f"standard form does not match model '{model.name}': {what}")

        mine = [(s.name, s.start, s.stop) for s in self.variables]
        theirs = [(v.name, v.start, v.stop) for v in model.variables.values()]
        if mine != theirs:
            raise mismatch(f"its variables (name, first column, end) are {mine}, the model's are {theirs}")
        sizes = {s.name: s.stop - s.start for s in self.constraints}
        model_sizes = {name: con.size for name, con in model.constraints.items()}
        if sizes != model_sizes:
            raise mismatch(f"its constraints (name: rows) are {sizes}, the model's are {model_sizes}")
        sense = model.objective.sense if model.objective is not None else 1
        if sense != self.sense:
            raise mismatch(f"it {'minimizes' if self.sense == 1 else 'maximizes'}, the model "
                 f"{'minimizes' if sense == 1 else 'maximizes'}")

    def to_json(self) -> dict:
        """The layout's plain metadata (sense and slots; column_order is an array, stored apart)."""
        return {
            "sense": self.sense,
            "variables": [[s.name, s.kind, s.start, s.stop] for s in self.variables],
            "constraints": [[s.name, s.kind, s.start, s.stop] for s in self.constraints],
        }


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

    # ------------------------------------------------------------------ checks
    def validate(self, source: str | None = None) -> None:
        """Raise ModelError unless every guarantee of ``compile`` holds; ``source`` prefixes the message.

        Checked: dtypes and lengths; finite c, offset, A data and block rhs; no NaN bound; lower <= upper
        (and neither bound infinite in the wrong direction) for columns and rows; A's column pointer, and
        row indices in 0..m-1, strictly increasing within each column (sorted, no duplicate); block_ptr
        nondecreasing from 0 to n; known block kinds, BOX rhs 0, simplex blocks with x >= 0 and
        upper bounds >= r; no empty block polytope (sum of lower bounds <= r, and for == blocks the sum
        of upper bounds >= r, within 1e-9 relative); the layout's column order a permutation and its slots
        in range. Messages name the column, row or block, with its variable or constraint when known.
        """
        where = source or f"standard form '{self.name}'"

        def bad(what: str) -> ModelError:
            return ModelError(f"{where}: {what}")

        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        if self.layout.column_order is not None:
            arrays["column_order"] = self.layout.column_order
        _check_declared({k: (v.dtype, v.shape) for k, v in arrays.items()}, [], where)
        n, m, nb, nnz = self.n_cols, self.n_rows, self.n_blocks, self.nnz
        lay = self.layout
        if lay.sense not in (1, -1):
            raise bad(f"layout sense {lay.sense!r} is invalid (1 or -1)")
        limits = {"variable": n, "rows": m, "blocks": nb}
        for group, kinds in ((lay.variables, ("variable",)), (lay.constraints, ("rows", "blocks"))):
            for slot in group:
                if slot.kind not in kinds or not 0 <= slot.start <= slot.stop <= limits[slot.kind]:
                    raise bad(f"layout slot {slot} is out of range")
        order = lay.column_order
        if order is not None and (order.min(initial=0) < 0 or order.max(initial=0) >= n
                                  or np.bincount(order, minlength=n).max(initial=1) != 1):
            raise bad("column_order is not a permutation of the columns")
        names = EntryNames(self)
        if not np.isfinite(self.offset):
            raise bad(f"the objective offset is {self.offset}")
        for key, what in (("c", names.column), ("block_rhs", names.block)):
            i = _first_chunked(arrays[key].shape[0], lambda sl, a=arrays[key]: ~np.isfinite(a[sl]))
            if i is not None:
                raise bad(f"{what(i)}: {'cost' if key == 'c' else 'block rhs'} is {arrays[key][i]}")
        for lo_key, hi_key, what in (("col_lower", "col_upper", names.column), ("row_lower", "row_upper", names.row)):
            lo, hi = arrays[lo_key], arrays[hi_key]
            if lo.strides == (0,) and hi.strides == (0,):  # one bound pair for all: check it once
                lo, hi = lo[:1], hi[:1]
            i = _first_chunked(lo.shape[0], lambda sl, lo=lo, hi=hi: np.isnan(lo[sl]) | np.isnan(hi[sl]) | (lo[sl] > hi[sl])
                               | (lo[sl] == np.inf) | (hi[sl] == -np.inf))
            if i is not None:
                raise bad(f"{what(i)}: bounds [{lo[i]}, {hi[i]}] (NaN, lower > upper or an infinite side "
                          "the wrong way)")
        indptr, indices, data = self.A_indptr, self.A_indices, self.A_data
        if indptr[0] != 0 or indptr[-1] != nnz or not is_nondecreasing(indptr):
            raise bad("A_indptr is not a column pointer from 0 to nnz (nondecreasing)")
        i = _first_chunked(nnz, lambda sl: ~np.isfinite(data[sl]))
        if i is not None:
            raise bad(f"coefficient of {names.entry(i)} is {data[i]}")
        i = _first_chunked(nnz, lambda sl: (indices[sl] < 0) | (indices[sl] >= m))
        if i is not None:
            raise bad(f"{names.entry(i)}: row index {indices[i]} is outside 0..{m - 1}")
        i = _first_unsorted_entry(indptr, indices)
        if i is not None:
            raise bad(f"{names.entry(i)} comes after row {indices[i - 1]} in its column: row indices must "
                      "increase strictly within a column (sorted, no duplicate)")
        ptr = self.block_ptr
        if ptr[0] != 0 or ptr[-1] != n or not is_nondecreasing(ptr):
            raise bad(f"block_ptr does not split the {n} columns into blocks (0 .. {n}, nondecreasing)")
        kind, rhs = self.block_kind, self.block_rhs
        i = _first((kind < 0) | (kind > max(BlockKind)))
        if i is not None:
            raise bad(f"{names.block(i)}: unknown block kind {kind[i]}")
        i = _first((kind == BlockKind.BOX) & (rhs != 0))
        if i is not None:
            raise bad(f"{names.block(i)}: a BOX block has rhs {rhs[i]} (must be 0)")
        self._check_block_polytopes(bad, names)

    def _check_block_polytopes(self, bad, names: "EntryNames") -> None:
        """Simplex blocks: x >= 0, u >= r. Every block with a sum: sum l <= r, and sum u >= r for == blocks."""
        kind, rhs, ptr = self.block_kind, self.block_rhs, np.asarray(self.block_ptr, dtype=np.int64)
        sizes = np.diff(ptr)
        has_sum = kind != BlockKind.BOX
        if not has_sum.any():
            return
        lo, hi = np.asarray(self.col_lower), np.asarray(self.col_upper)
        simplex = (kind == BlockKind.SIMPLEX_LE) | (kind == BlockKind.SIMPLEX_EQ)
        if lo.strides == (0,) and hi.strides == (0,):  # one bound pair for all columns: per block, no column array
            b = _first(simplex & ((lo[0] != 0) | (hi[0] < rhs)) & (sizes > 0))
            j = None if b is None else int(ptr[b])
            with np.errstate(invalid="ignore"):
                sum_lo, sum_hi = lo[0] * sizes, hi[0] * sizes  # 0 * inf: NaN for an empty block, fixed below
            sum_lo, sum_hi = np.where(sizes > 0, sum_lo, 0.0), np.where(sizes > 0, sum_hi, 0.0)
        else:
            def off_simplex(sl: slice) -> np.ndarray:
                blk = np.searchsorted(ptr, np.arange(sl.start, sl.stop), side="right") - 1  # each column's block
                return simplex[blk] & ((lo[sl] != 0) | (hi[sl] < rhs[blk]))
            j = _first_chunked(lo.shape[0], off_simplex)
            sum_lo, sum_hi = segment_sums(lo, ptr), segment_sums(hi, ptr)
        if j is not None:
            b = int(np.searchsorted(ptr, j, side="right") - 1)
            raise bad(f"{names.block(b)}: simplex block over {names.column(j)} with bounds [{lo[j]}, {hi[j]}] "
                      f"(a simplex needs lower 0 and upper >= its rhs {rhs[b]})")
        slack = 1e-9 * (1 + np.abs(rhs) + np.abs(np.where(np.isfinite(sum_lo), sum_lo, 0)))
        equality = np.isin(kind, EQUALITY_KINDS)
        empty = has_sum & ((sum_lo - rhs > slack) | (equality & (rhs - sum_hi > slack)))
        b = _first(empty)
        if b is not None:
            raise bad(f"{names.block(b)}: block polytope is empty (sum x {'==' if equality[b] else '<='} {rhs[b]} "
                      f"over {sizes[b]} columns whose bounds sum to [{sum_lo[b]}, {sum_hi[b]}])")

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write this standard form to ``path``: ``.npz`` (numpy, no pickle) or ``.safetensors`` (by suffix).

        Arrays are stored as they are (dtypes kept); a zero-stride (broadcast) array is stored as its one
        value and comes back as a broadcast view. The name, offset and layout are JSON in the file. The
        write is atomic (``atomic.atomic_write``): an existing file is replaced whole or left as it was.
        """
        path = os.fspath(path)
        fmt = _file_format(path)
        arrays, meta = {}, {"format": _FORMAT, "version": _VERSION, "name": self.name, "offset": float(self.offset),
                            "layout": self.layout.to_json(), "broadcast": []}
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, np.ndarray):
                continue
            if value.shape[0] > 0 and value.strides == (0,):
                meta["broadcast"].append(f.name)
                value = value[:1]
            arrays[f.name] = np.ascontiguousarray(value)
        if self.layout.column_order is not None:
            arrays["column_order"] = np.ascontiguousarray(self.layout.column_order)
        text = json.dumps(meta, allow_nan=False)
        if fmt == "safetensors":
            safetensors = _safetensors("save", path)
        with atomic_write(path, "standard form file") as tmp:
            if fmt == "safetensors":
                try:
                    safetensors.numpy.save_file(arrays, tmp, metadata={_META_KEY: text})
                except safetensors.SafetensorError as err:
                    raise ModelError(f"could not write standard form file '{path}': {err}") from None
            else:
                arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
                with open(tmp, "wb") as fh:  # a file object: numpy adds no .npz suffix of its own
                    np.savez(fh, **arrays)

    @classmethod
    def load(cls, path) -> StandardForm:
        """Read a standard form written by ``save`` (format by content); a corrupt, truncated or foreign file, or
        one that breaks any guarantee of ``compile`` (``validate``), raises ModelError naming the file.

        Every array's declared shape is checked against the file and the other arrays before it is read.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelError(f"standard form file '{path}' does not exist")
        fmt = content_format(path)
        if fmt is None:
            raise ModelError(f"standard form file '{path}' is neither an .npz nor a .safetensors file (by content)")
        arrays, text = _read_safetensors(path) if fmt == "safetensors" else _read_npz(path)
        return _from_arrays(arrays, text, path)

    def __repr__(self) -> str:
        kinds = ", ".join(k.name for k in sorted(self.block_kinds()))
        return (
            f"StandardForm({self.name!r}: {self.n_cols} columns, {self.n_rows} coupling rows, "
            f"{self.nnz} nonzeros, {self.n_blocks} blocks [{kinds}])"
        )


# --------------------------------------------------------------------------- files
def _file_format(path: str) -> str:
    """'npz' or 'safetensors' from the suffix of ``path``."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".safetensors":
        return "safetensors"
    raise ModelError(f"standard form file '{path}': unknown suffix {suffix!r}; use .npz or .safetensors")


def _safetensors(action: str, path: str):
    """The safetensors package (with its numpy helpers), or a ModelError naming the file."""
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401  (save_file lives there)
    except ImportError:
        raise ModelError(f"cannot {action} '{path}': .safetensors files need the safetensors package "
                         "(pip install 'dualip_model[safetensors]'), or use .npz") from None
    return safetensors


def _unreadable(path: str, err: Exception) -> ModelError:
    """The error for a file the reader library could not parse."""
    return ModelError(f"standard form file '{path}' could not be read (corrupt or truncated): {err}")


def content_format(path: str) -> str | None:
    """'npz' or 'safetensors' from the first bytes of the file at ``path`` (None: neither)."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= os.path.getsize(path) - 8:
        return "safetensors"
    return None


def _read_npz(path: str) -> tuple[dict, bytes | None]:
    """The arrays of an .npz file and its JSON metadata bytes (None if absent), every header checked first."""
    where = f"standard form file '{path}'"
    members = npz_members(path, where)
    meta = members.pop(_META_KEY, None)
    text = None
    if meta is not None and meta.dtype == np.uint8 and len(meta.shape) == 1:
        if meta.shape[0] > MAX_JSON_BYTES:
            raise ModelError(f"{where}: its metadata is {meta.shape[0]} bytes, more than the {MAX_JSON_BYTES} allowed")
        text = read_npz(path, {_META_KEY: meta}, [_META_KEY], where)[_META_KEY].tobytes()
    broadcast = _parse_meta(text, path)[2]
    _check_declared({k: (v.dtype, v.shape) for k, v in members.items()}, broadcast, where)
    return read_npz(path, members, list(members), where), text


def _read_safetensors(path: str) -> tuple[dict, str | None]:
    """The arrays of a .safetensors file and its JSON metadata string (None if absent), shapes checked first."""
    safetensors = _safetensors("load", path)
    try:
        with safetensors.safe_open(path, framework="np") as fh:
            text = (fh.metadata() or {}).get(_META_KEY)
            broadcast = _parse_meta(text, path)[2]
            _check_declared({k: (_SAFETENSORS_DTYPES.get(fh.get_slice(k).get_dtype(), np.void),
                                 tuple(fh.get_slice(k).get_shape())) for k in fh.keys()}, broadcast,
                            f"standard form file '{path}'")
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err) from None
    return arrays, text


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32, "I16": np.int16,
                       "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


_FLOAT = (np.float64,)
_INDEX = (np.int32, np.int64)
_DTYPES = {  # array -> allowed dtypes
    "c": _FLOAT, "col_lower": _FLOAT, "col_upper": _FLOAT, "A_indptr": _INDEX, "A_indices": (np.int32,),
    "A_data": _FLOAT, "row_lower": _FLOAT, "row_upper": _FLOAT, "block_ptr": _INDEX, "block_kind": (np.int8,),
    "block_rhs": _FLOAT, "column_order": _INDEX,
}
_BROADCASTABLE = ("col_lower", "col_upper")


def _parse_meta(text, path: str) -> tuple[str, float, list, int, dict]:
    """(name, offset, broadcast list, sense, slots) of a file's JSON metadata, bounded in size and depth."""
    def bad(what: str) -> ModelError:
        return ModelError(f"standard form file '{path}': {what}")

    if text is None:
        raise bad("no dualip_model metadata (not written by StandardForm.save)")
    meta = parse_json(text, f"standard form file '{path}'")
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise bad("not a dualip_model standard form")
    if meta.get("version") != _VERSION:
        raise bad(f"format version {meta.get('version')!r}; this dualip_model reads version {_VERSION}")
    try:
        name, offset, lay = str(meta["name"]), float(meta["offset"]), meta["layout"]
        broadcast = [str(k) for k in meta["broadcast"]]
        sense = lay["sense"]
        slots = {group: tuple(Slot(str(n), str(k), int(a), int(b)) for n, k, a, b in lay[group])
                 for group in ("variables", "constraints")}
    except (KeyError, TypeError, ValueError):
        raise bad("its metadata lacks the name, offset, broadcast list or layout, or they are malformed") from None
    if sense not in (1, -1):
        raise bad(f"layout sense {sense!r} is invalid (1 or -1)")
    return name, offset, broadcast, int(sense), slots


def _check_declared(declared: dict, broadcast: list, where: str) -> None:
    """Names, dtypes and lengths of the arrays as their headers declare them, before any array is read.

    ``declared``: array name -> (dtype, shape). The lengths must agree with each other (n columns, m rows,
    nnz entries, nb blocks), so a header cannot make the reader allocate more than the others imply.
    """
    def bad(what: str) -> ModelError:
        return ModelError(f"{where}: {what}")

    missing = sorted(set(_DTYPES) - {"column_order"} - set(declared))
    if missing:
        raise bad(f"missing arrays {missing}")
    unknown = sorted(set(declared) - set(_DTYPES))
    if unknown:
        raise bad(f"unknown arrays {unknown}")
    for key, (dtype, shape) in declared.items():
        if len(shape) != 1 or np.dtype(dtype).type not in _DTYPES[key]:
            raise bad(f"array '{key}' has dtype {np.dtype(dtype)} and shape {tuple(shape)}; expected a 1-d array "
                      f"of {' or '.join(np.dtype(d).name for d in _DTYPES[key])}")
    for key in broadcast:
        if key not in _BROADCASTABLE or declared[key][1][0] != 1:
            raise bad(f"array '{key}' cannot be a broadcast value")
    n, m = declared["c"][1][0], declared["row_lower"][1][0]
    nb, nnz = declared["block_kind"][1][0], declared["A_indices"][1][0]
    lengths = {"c": n, "col_lower": n, "col_upper": n, "A_indptr": n + 1, "A_indices": nnz, "A_data": nnz,
               "row_lower": m, "row_upper": m, "block_ptr": nb + 1, "block_kind": nb, "block_rhs": nb,
               "column_order": n}
    for key, length in lengths.items():
        if key in declared and key not in broadcast and declared[key][1][0] != length:
            raise bad(f"array '{key}' has {declared[key][1][0]} entries, expected {length}")


def _from_arrays(arrays: dict, text, path: str, part: str = "") -> StandardForm:
    """Check what a file held (JSON metadata, array names, dtypes, lengths, then every value: ``validate``).

    ``part``: which part of the file the arrays are (a shard), for messages.
    """
    name, offset, broadcast, sense, slots = _parse_meta(text, path)
    _check_declared({k: (v.dtype, v.shape) for k, v in arrays.items()}, broadcast, f"standard form file '{path}'")
    n = arrays["c"].shape[0]
    for key in broadcast:
        arrays[key] = np.broadcast_to(arrays[key], (n,))
    layout = Layout(sense=sense, column_order=arrays.pop("column_order", None), variables=slots["variables"],
                    constraints=slots["constraints"])
    sf = StandardForm(name=name, offset=offset, layout=layout, **arrays)
    sf.validate(f"standard form file '{path}'{part}")
    return sf


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True of a boolean array (None if none)."""
    return int(np.argmax(mask)) if mask.any() else None


def _first_chunked(length: int, mask_of, chunk: int = 1 << 22) -> int | None:
    """First i < length where mask_of(slice) is True, evaluated chunk by chunk (temporaries of one chunk)."""
    for start in range(0, length, chunk):
        i = _first(mask_of(slice(start, min(start + chunk, length))))
        if i is not None:
            return start + i
    return None


def _first_unsorted_entry(indptr: np.ndarray, indices: np.ndarray, chunk: int = 1 << 22) -> int | None:
    """First entry k whose row is not above entry k-1's row in the same column (chunked: bounded temporaries)."""
    nnz = indices.shape[0]
    for start in range(1, nnz, chunk):
        stop = min(start + chunk, nnz)
        down = indices[start:stop] <= indices[start - 1 : stop - 1]
        if not down.any():
            continue
        # entries that open a column may be anything: clear those
        lo, hi = np.searchsorted(indptr, [start, stop])
        opens = indptr[lo:hi]
        down[opens[(opens >= start) & (opens < stop)] - start] = False
        if down.any():
            return start + int(np.argmax(down))
    return None


def segment_sums(x: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """s_i = sum x[ptr[i]:ptr[i+1]] (0 for an empty segment), infinite bounds summed as such."""
    out = np.zeros(ptr.shape[0] - 1)
    nonempty = ptr[1:] > ptr[:-1]
    if nonempty.any():
        with np.errstate(invalid="ignore"):
            out[nonempty] = np.add.reduceat(x[ptr[0]:ptr[-1]], ptr[:-1][nonempty] - ptr[0])
    return out


class EntryNames:
    """How messages name compiled column j, row i, block b and nonzero k: with the variable or constraint."""

    def __init__(self, sf: StandardForm):
        self.sf = sf

    @staticmethod
    def _in(slots, kind: str, i: int) -> str:
        for slot in slots:
            if slot.kind == kind and slot.start <= i < slot.stop:
                return f" ({'variable' if kind == 'variable' else 'constraint'} '{slot.name}', entry {i - slot.start})"
        return ""

    def column(self, j: int) -> str:
        order = self.sf.layout.column_order
        original = int(order[j]) if order is not None and j < order.shape[0] else j
        return f"column {j}" + self._in(self.sf.layout.variables, "variable", original)

    def row(self, i: int) -> str:
        return f"row {i}" + self._in(self.sf.layout.constraints, "rows", i)

    def block(self, b: int) -> str:
        return f"block {b}" + self._in(self.sf.layout.constraints, "blocks", b)

    def entry(self, k: int) -> str:
        j = int(np.searchsorted(self.sf.A_indptr, k, side="right") - 1)
        return f"nonzero {k} of A ({self.column(j)})"
