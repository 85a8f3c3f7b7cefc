"""The block-structured standard form every backend consumes (see docs/standard_form.md).

    minimize    c^T x + offset
    subject to  row_lower <= A x <= row_upper        (coupling rows, A in CSC with int32 row indices)
                x[block_ptr[i]:block_ptr[i+1]] in C_i  (block polytopes, kinds in polytopes.BlockKind)

Each C_i includes the column bounds col_lower <= x <= col_upper of its columns; the block sum constraint
sum x <= r_i (or == r_i) is in block_rhs. Maximization has already been turned into minimization; the
layout says how to map results back to the user's model.

A standard form is saved to and loaded from one file (``save``/``load``): ``.npz`` (numpy, never pickle)
or ``.safetensors``, its arrays bit for bit plus the layout as JSON.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field, fields

import numpy as np
import scipy.sparse as sp

from ._arrays import is_nondecreasing
from .errors import ModelError
from .polytopes import BlockKind

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

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write this standard form to ``path``: ``.npz`` (numpy, no pickle) or ``.safetensors`` (by suffix).

        Arrays are stored as they are (dtypes kept); a zero-stride (broadcast) array is stored as its one
        value and comes back as a broadcast view. The name, offset and layout are JSON in the file.
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
            failures = (OSError, safetensors.SafetensorError)
        else:
            failures = (OSError,)
        try:
            if fmt == "safetensors":
                safetensors.numpy.save_file(arrays, path, metadata={_META_KEY: text})
            else:
                arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
                with open(path, "wb") as fh:  # a file object: numpy adds no .npz suffix of its own
                    np.savez(fh, **arrays)
        except failures as err:
            raise ModelError(f"could not write standard form file '{path}': {err}") from None

    @classmethod
    def load(cls, path) -> StandardForm:
        """Read a standard form written by ``save``; a corrupt, truncated or foreign file raises ModelError."""
        path = os.fspath(path)
        fmt = _file_format(path)
        if not os.path.isfile(path):
            raise ModelError(f"standard form file '{path}' does not exist")
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


def _read_npz(path: str) -> tuple[dict, bytes | None]:
    """The arrays of an .npz file (pickle refused) and its JSON metadata bytes (None if absent)."""
    failures = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile)
    try:
        npz = np.load(path, allow_pickle=False)
    except failures as err:
        raise _unreadable(path, err) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ModelError(f"standard form file '{path}' is not an .npz archive")
    try:
        with npz:
            arrays = {k: npz[k] for k in npz.files}
    except failures as err:
        raise _unreadable(path, err) from None
    raw = arrays.pop(_META_KEY, None)
    text = None if raw is None or raw.dtype != np.uint8 or raw.ndim != 1 else raw.tobytes()
    return arrays, text


def _read_safetensors(path: str) -> tuple[dict, str | None]:
    """The arrays of a .safetensors file and its JSON metadata string (None if absent)."""
    safetensors = _safetensors("load", path)
    try:
        with safetensors.safe_open(path, framework="np") as fh:
            text = (fh.metadata() or {}).get(_META_KEY)
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err) from None
    return arrays, text


_FLOAT = (np.float64,)
_INDEX = (np.int32, np.int64)
_DTYPES = {  # array -> allowed dtypes
    "c": _FLOAT, "col_lower": _FLOAT, "col_upper": _FLOAT, "A_indptr": _INDEX, "A_indices": (np.int32,),
    "A_data": _FLOAT, "row_lower": _FLOAT, "row_upper": _FLOAT, "block_ptr": _INDEX, "block_kind": (np.int8,),
    "block_rhs": _FLOAT, "column_order": _INDEX,
}


def _from_arrays(arrays: dict, text, path: str) -> StandardForm:
    """Check what a file held (JSON metadata, array names, dtypes, shapes, pointers, values) and build the form."""
    def bad(what: str) -> ModelError:
        return ModelError(f"standard form file '{path}': {what}")

    if text is None:
        raise bad("no dualip_model metadata (not written by StandardForm.save)")
    try:
        meta = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise bad("its metadata is not valid JSON (corrupt file)")
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise bad("not a dualip_model standard form")
    if meta.get("version") != _VERSION:
        raise bad(f"format version {meta.get('version')!r}; this dualip_model reads version {_VERSION}")
    try:
        name, offset, lay = str(meta["name"]), float(meta["offset"]), meta["layout"]
        broadcast = list(meta["broadcast"])
        sense = lay["sense"]
        slots = {group: tuple(Slot(str(n), str(k), int(a), int(b)) for n, k, a, b in lay[group])
                 for group in ("variables", "constraints")}
    except (KeyError, TypeError, ValueError):
        raise bad("its metadata lacks the name, offset, broadcast list or layout, or they are malformed")
    expected = set(_DTYPES) - {"column_order"}
    missing = sorted(expected - set(arrays))
    if missing:
        raise bad(f"missing arrays {missing}")
    unknown = sorted(set(arrays) - set(_DTYPES))
    if unknown:
        raise bad(f"unknown arrays {unknown}")
    for key, value in arrays.items():
        if value.ndim != 1 or value.dtype.type not in _DTYPES[key]:
            raise bad(f"array '{key}' has dtype {value.dtype} and shape {value.shape}; expected a 1-d array of "
                 f"{' or '.join(np.dtype(d).name for d in _DTYPES[key])}")
    n, m = arrays["c"].shape[0], arrays["row_lower"].shape[0]
    nb = arrays["block_kind"].shape[0]
    lengths = {"c": n, "col_lower": n, "col_upper": n, "A_indptr": n + 1, "row_lower": m, "row_upper": m,
               "block_ptr": nb + 1, "block_kind": nb, "block_rhs": nb, "column_order": n}
    for key in broadcast:
        if key not in ("col_lower", "col_upper") or arrays[key].shape[0] != 1:
            raise bad(f"array '{key}' cannot be a broadcast value")
        arrays[key] = np.broadcast_to(arrays[key], (lengths[key],))
    for key, length in lengths.items():
        if key in arrays and arrays[key].shape[0] != length:
            raise bad(f"array '{key}' has {arrays[key].shape[0]} entries, expected {length}")
    indptr, indices = arrays["A_indptr"], arrays["A_indices"]
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or arrays["A_data"].shape[0] != indices.shape[0] \
            or not is_nondecreasing(indptr):
        raise bad("A_indptr is not a valid column pointer for A_indices and A_data")
    if indices.shape[0] and (indices.min() < 0 or indices.max() >= m):
        raise bad(f"A_indices holds a row outside 0..{m - 1}")
    ptr = arrays["block_ptr"]
    if ptr[0] != 0 or ptr[-1] != n or not is_nondecreasing(ptr):
        raise bad(f"block_ptr does not split the {n} columns into blocks")
    if nb and (arrays["block_kind"].min() < 0 or arrays["block_kind"].max() > max(BlockKind)):
        raise bad("block_kind holds an unknown block kind")
    for key in ("c", "A_data", "block_rhs"):
        if not np.isfinite(arrays[key]).all():
            raise bad(f"array '{key}' holds NaN or inf")
    for key in ("col_lower", "col_upper", "row_lower", "row_upper"):
        if np.isnan(arrays[key]).any():
            raise bad(f"array '{key}' holds NaN")
    order = arrays.get("column_order")
    if order is not None and (order.min(initial=0) < 0 or order.max(initial=0) >= n
                              or np.bincount(order, minlength=n).max(initial=1) != 1):
        raise bad("column_order is not a permutation of the columns")
    if sense not in (1, -1) or not np.isfinite(offset):
        raise bad(f"layout sense {sense!r} or offset {offset!r} is invalid")
    limits = {"variable": n, "rows": m, "blocks": nb}
    for group, kinds in (("variables", ("variable",)), ("constraints", ("rows", "blocks"))):
        for slot in slots[group]:
            if slot.kind not in kinds or not 0 <= slot.start <= slot.stop <= limits[slot.kind]:
                raise bad(f"layout slot {slot} is out of range")
    layout = Layout(sense=int(sense), column_order=order, variables=slots["variables"],
                    constraints=slots["constraints"])
    return StandardForm(name=name, offset=offset, layout=layout,
                        **{k: v for k, v in arrays.items() if k != "column_order"})
