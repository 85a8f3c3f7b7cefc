"""Column shards of a saved standard form: contiguous block ranges of even work, read without the rest.

    shard k owns blocks [b_k, b_k+1), b_k the block boundary nearest to W(b_k) = k W(nb) / world,
    W(i) = nnz(columns before block i) + (columns before block i)

so each shard's mat-vecs (nonzeros) plus projections (columns) cost about the same; a block is never split.
A rank reads only its own pieces of the file written by ``StandardForm.save``: ``.npz`` members are memory
mapped (np.savez stores them uncompressed), ``.safetensors`` tensors are read by slice; the plan itself
reads O(world log n_blocks) entries of the two pointer arrays. The rows (bounds, duals) are replicated.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .standard_form import _META_KEY, Layout, Slot, StandardForm, _from_arrays, _safetensors, content_format
from .untrusted import npz_members, parse_json, read_npz

_SLICED = ("c", "col_lower", "col_upper", "column_order")  # by column
_BY_BLOCK = ("block_kind", "block_rhs")


@dataclass(frozen=True, eq=False)
class Shard:
    """One rank's part: the standard form of its columns (all rows) and where they sit in the whole problem.

    ``sf`` has the blocks [block_start, block_stop) rebased to column 0 and the whole problem's rows and
    offset; ``columns[j]`` is the model column (the user's variable order) of local column j.
    """

    sf: StandardForm
    rank: int
    world: int
    block_start: int
    block_stop: int
    col_start: int
    col_stop: int
    n_cols_total: int
    n_blocks_total: int
    nnz_total: int
    columns: np.ndarray
    layout: Layout  # the whole problem's sense and slots (column_order: see ``columns``)


class _SavedArrays:
    """The arrays of a saved standard form, each read by slice: npz members memory mapped, safetensors sliced."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise ModelError(f"standard form file '{path}' does not exist")
        self.format = content_format(path)
        if self.format is None:
            raise ModelError(f"standard form file '{path}' is neither an .npz nor a .safetensors file (by content)")
        self._arrays: dict[str, object] = {}
        try:
            if self.format == "npz":
                self._open_npz()
            else:
                self._open_safetensors()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise ModelError(f"standard form file '{path}' could not be read (corrupt or truncated): {err}") from None

    def _open_npz(self) -> None:
        """Members as memory maps (stored ones) or read whole (compressed ones), each header checked first."""
        where = f"standard form file '{self.path}'"
        members = npz_members(self.path, where)
        for name, member in members.items():
            info = member.info
            if member.fortran or len(member.shape) != 1:
                raise ValueError(f"member {info.filename}: not a 1-d plain array")
            if info.compress_type != zipfile.ZIP_STORED:  # a compressed member (not ours): read it whole
                self._arrays[name] = read_npz(self.path, members, [name], where)[name]
                continue
            with open(self.path, "rb") as fh:
                fh.seek(info.header_offset)
                local = fh.read(30)  # the local file header: its name and extra field lengths vary
                if local[:4] != b"PK\x03\x04":
                    raise ValueError(f"member {info.filename}: bad local header")
                start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
                    + int.from_bytes(local[28:30], "little")
            offset = start + info.file_size - member.shape[0] * member.dtype.itemsize  # the header precedes the data
            self._arrays[name] = np.memmap(self.path, dtype=member.dtype, mode="r", offset=offset,
                                           shape=member.shape) if member.shape[0] else np.zeros(0, member.dtype)
        raw = self._arrays.pop(_META_KEY, None)
        self.meta_text = None if raw is None else np.asarray(raw, dtype=np.uint8).tobytes()

    def _open_safetensors(self) -> None:
        safetensors = _safetensors("load", self.path)
        try:
            self._fh = safetensors.safe_open(self.path, framework="np")
        except safetensors.SafetensorError as err:
            raise ValueError(str(err)) from None
        self.meta_text = (self._fh.metadata() or {}).get(_META_KEY)
        for key in self._fh.keys():
            self._arrays[key] = self._fh.get_slice(key)

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def length(self, name: str) -> int:
        a = self._arrays[name]
        return int(a.get_shape()[0]) if hasattr(a, "get_shape") else int(a.shape[0])

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """A copy of entries [start, stop) of array ``name``."""
        if name not in self._arrays:
            raise ModelError(f"standard form file '{self.path}': missing array '{name}'")
        stop = self.length(name) if stop is None else stop
        return np.array(self._arrays[name][start:stop])

    def at(self, name: str, i: int) -> int:
        return int(self.read(name, i, i + 1)[0])


def plan_shards(block_ptr, col_ptr, world: int) -> np.ndarray:
    """Block boundaries b_0 = 0 <= ... <= b_world = nb splitting W(i) = col_ptr[block_ptr[i]] + block_ptr[i] evenly.

    ``block_ptr`` (nb + 1 entries) and ``col_ptr`` (A's column pointer) are arrays or anything indexable
    with len(); the plan reads O(world log nb) entries of them, so they may stay on disk.
    """
    if world < 1:
        raise ModelError(f"cannot split a problem into {world} shards")
    nb = len(block_ptr) - 1

    def work(i: int) -> int:
        j = int(block_ptr[i])
        return int(col_ptr[j]) + j

    total = work(nb)
    bounds = [0]
    for k in range(1, world):
        target = k * total / world
        lo, hi = bounds[-1], nb  # smallest i in [lo, nb] with work(i) >= target
        while lo < hi:
            mid = (lo + hi) // 2
            if work(mid) >= target:
                hi = mid
            else:
                lo = mid + 1
        if lo > bounds[-1] and target - work(lo - 1) < work(lo) - target:
            lo -= 1  # the nearer boundary
        bounds.append(lo)
    bounds.append(nb)
    return np.asarray(bounds, dtype=np.int64)


def load_shard(path, rank: int, world: int) -> Shard:
    """Rank ``rank``'s shard (of ``world``) of the standard form saved at ``path``; reads only its pieces.

    The pieces are checked like a whole file (``StandardForm.load``): dtypes, pointers, finite values.
    """
    path = os.fspath(path)
    if not 0 <= rank < world:
        raise ModelError(f"rank {rank} is not in 0..{world - 1}")
    f = _SavedArrays(path)
    if f.meta_text is None:
        raise ModelError(f"standard form file '{path}': no dualip_model metadata (not written by StandardForm.save)")
    meta = parse_json(f.meta_text, f"standard form file '{path}'")
    try:
        lay, broadcast = meta["layout"], set(meta["broadcast"])
        if not isinstance(lay, dict):
            raise TypeError("layout")
    except (KeyError, TypeError):
        raise ModelError(f"standard form file '{path}': its metadata is not valid (corrupt file)") from None
    for name in ("A_indptr", "block_ptr", "A_indices", "c", "row_lower"):
        if name not in f:
            raise ModelError(f"standard form file '{path}': missing array '{name}'")
    n, nb, nnz = f.length("A_indptr") - 1, f.length("block_ptr") - 1, f.length("A_indices")
    if n < 0 or nb < 0 or f.at("block_ptr", 0) != 0 or f.at("block_ptr", nb) != n or f.length("c") != n \
            or f.at("A_indptr", 0) != 0 or f.at("A_indptr", n) != nnz:
        raise ModelError(f"standard form file '{path}': block_ptr, A_indptr and the arrays' lengths disagree")
    bounds = plan_shards(_Entries(f, "block_ptr"), _Entries(f, "A_indptr"), world)
    b0, b1 = int(bounds[rank]), int(bounds[rank + 1])
    c0, c1 = f.at("block_ptr", b0), f.at("block_ptr", b1)
    indptr = f.read("A_indptr", c0, c1 + 1)
    p0, p1 = int(indptr[0]), int(indptr[-1])
    arrays = {
        "A_indptr": indptr - indptr.dtype.type(p0),
        "A_indices": f.read("A_indices", p0, p1), "A_data": f.read("A_data", p0, p1),
        "row_lower": f.read("row_lower"), "row_upper": f.read("row_upper"),
    }
    block_ptr = f.read("block_ptr", b0, b1 + 1)
    arrays["block_ptr"] = block_ptr - block_ptr.dtype.type(c0)
    for name in _SLICED:
        if name in f:
            arrays[name] = f.read(name) if name in broadcast else f.read(name, c0, c1)
    for name in _BY_BLOCK:
        arrays[name] = f.read(name, b0, b1)
    columns = arrays.pop("column_order", None)
    local_meta = {"format": meta.get("format"), "version": meta.get("version"), "name": meta.get("name"),
                  "offset": meta.get("offset"), "broadcast": sorted(broadcast),
                  "layout": {"sense": lay.get("sense"), "variables": [], "constraints": []}}
    sf = _from_arrays(arrays, json.dumps(local_meta), path,
                      f" (shard {rank} of {world}: its column 0 is column {c0}, its block 0 is block {b0})")
    try:
        layout = Layout(sense=int(lay["sense"]), column_order=None,
                        variables=tuple(Slot(str(a), str(k), int(s), int(e)) for a, k, s, e in lay["variables"]),
                        constraints=tuple(Slot(str(a), str(k), int(s), int(e)) for a, k, s, e in lay["constraints"]))
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"standard form file '{path}': its layout metadata is malformed") from None
    if columns is None:
        columns = np.arange(c0, c1, dtype=np.int64)
    elif columns.shape[0] != c1 - c0 or (columns.shape[0] and (columns.min() < 0 or columns.max() >= n)):
        raise ModelError(f"standard form file '{path}': column_order is not a permutation of the columns")
    return Shard(sf=sf, rank=rank, world=world, block_start=b0, block_stop=b1, col_start=c0, col_stop=c1,
                 n_cols_total=n, n_blocks_total=nb, nnz_total=nnz, columns=columns, layout=layout)


class _Entries:
    """A saved integer array read one entry at a time (the plan's view of a pointer array)."""

    def __init__(self, f: _SavedArrays, name: str):
        self.f, self.name = f, name

    def __len__(self) -> int:
        return self.f.length(self.name)

    def __getitem__(self, i: int) -> int:
        return self.f.at(self.name, i)
