"""Index sets: labeled entity sets and sparse edge sets between two entity sets.

An entity set is a finite ordered set S = {s_0, ..., s_{n-1}} of labels; an edge set E ⊆ S × T is stored
as two int32 code arrays (src, dst), never as Python objects per edge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import _CHUNK, arrow_strings, first_adjacent_equal, first_null, index_dtype, is_nondecreasing, to_numpy
from .errors import ModelError


class EntitySet:
    """A named, ordered set of unique labels: S = {s_0, ..., s_{n-1}}."""

    def __init__(self, model, name: str, labels):
        self.model = model
        self.name = name
        if isinstance(labels, (int, np.integer)):
            if labels <= 0:
                raise ModelError(f"entity set '{name}' is empty (size {labels})")
            index = pd.RangeIndex(int(labels))
        else:
            arr = to_numpy(labels, f"labels of entity set '{name}'", describe=lambda i: f"label at position {i}")
            if arr.shape[0] == 0:
                raise ModelError(f"entity set '{name}' is empty")
            missing = pd.isna(arr) if arr.dtype.kind in "fOUSM" else None
            if missing is not None and missing.any():
                raise ModelError(f"entity set '{name}': label at position {int(np.argmax(missing))} is missing "
                                 f"({arr[int(np.argmax(missing))]!r})")
            index = _as_index(arr)
            if not index.is_unique:
                dup = index[index.duplicated()][0]
                raise ModelError(f"entity set '{name}': label {_plain(dup)!r} appears more than once")
        self.labels: pd.Index = index
        self._arrow_labels = None  # the labels as an arrow array, built on the first arrow-string lookup

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"EntitySet({self.name!r}, size={len(self)})"

    def codes(self, labels, what: str) -> np.ndarray:
        """Positions of ``labels`` in this set (int32/int64); unknown labels raise, naming the first one.

        Arrow (or arrow-backed pandas) strings are looked up in arrow, without a Python object per label.
        """
        n = len(self)
        dtype = index_dtype(n)
        strings = arrow_strings(labels)
        if strings is not None and self.labels.inferred_type == "string":
            return self._arrow_codes(strings, what).astype(dtype, copy=False)
        arr = to_numpy(labels, what, describe=lambda i: f"label at position {i}")
        if isinstance(self.labels, pd.RangeIndex) and arr.dtype.kind in "iu":
            # labels 0..n-1 are their own positions: check the range, no hashing
            lo, hi = (int(arr.min()), int(arr.max())) if arr.shape[0] else (0, 0)
            if lo < 0 or hi >= n:
                bad = arr[(arr < 0) | (arr >= n)][0]
                raise ModelError(f"{what}: label {_plain(bad)!r} is not in entity set '{self.name}'")
            return arr.astype(dtype, copy=False)
        codes = self.labels.get_indexer(arr)
        if arr.shape[0] and codes.min() < 0:
            bad = arr[int(np.argmax(codes < 0))]
            raise ModelError(f"{what}: label {_plain(bad)!r} is not in entity set '{self.name}'")
        return codes.astype(dtype, copy=False)

    def _arrow_codes(self, strings, what: str) -> np.ndarray:
        """pyarrow.compute.index_in of arrow strings in this set's (string) labels."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if strings.null_count:
            raise ModelError(f"{what}: label at position {first_null(strings)} is missing (null)")
        if self._arrow_labels is None:
            self._arrow_labels = pa.array(self.labels)
        codes = pc.index_in(strings, value_set=self._arrow_labels)
        if codes.null_count:
            bad = strings[first_null(codes)].as_py()
            raise ModelError(f"{what}: label {bad!r} is not in entity set '{self.name}'")
        return codes.to_numpy()


class EdgeSet:
    """A named sparse relation E ⊆ S × T between two entity sets, given by label arrays (src, dst)."""

    def __init__(self, model, name: str, src_set: EntitySet, dst_set: EntitySet, src, dst):
        for role, s in (("source", src_set), ("destination", dst_set)):
            if not isinstance(s, EntitySet):
                raise ModelError(f"edge set '{name}': {role} must be an EntitySet, got {type(s).__name__}")
            if s.model is not model:
                raise ModelError(f"edge set '{name}': entity set '{s.name}' belongs to another model")
        self.model = model
        self.name = name
        self.src_set = src_set
        self.dst_set = dst_set
        self.src = src_set.codes(src, f"edge set '{name}': src")
        self.dst = dst_set.codes(dst, f"edge set '{name}': dst")
        if self.src.shape[0] != self.dst.shape[0]:
            raise ModelError(
                f"edge set '{name}': src has {self.src.shape[0]} entries but dst has {self.dst.shape[0]}"
            )
        if self.src.shape[0] == 0:
            raise ModelError(f"edge set '{name}' is empty")
        self._check_unique()

    def __len__(self) -> int:
        return self.src.shape[0]

    def __repr__(self) -> str:
        return f"EdgeSet({self.name!r}, {self.src_set.name} -> {self.dst_set.name}, size={len(self)})"

    def _check_unique(self) -> None:
        """Reject duplicate (src, dst) pairs; O(n) when edges are sorted, one sort otherwise."""
        n_dst = len(self.dst_set)
        sorted_by_src = is_nondecreasing(self.src)
        if sorted_by_src:
            dup = _first_duplicate_sorted(self.src, self.dst, n_dst)
        else:
            key = self.src.astype(np.int64) * n_dst + self.dst
            key.sort()
            pos = first_adjacent_equal(key)
            dup = None if pos is None else int(key[pos])
        if dup is not None:
            s, d = divmod(dup, n_dst)
            raise ModelError(
                f"edge set '{self.name}': duplicate edge ({_plain(self.src_set.labels[s])!r}, "
                f"{_plain(self.dst_set.labels[d])!r})"
            )

    def labels(self) -> pd.MultiIndex:
        """The edges as a (src label, dst label) MultiIndex, built on demand."""
        return pd.MultiIndex.from_arrays(
            [self.src_set.labels[self.src], self.dst_set.labels[self.dst]],
            names=[self.src_set.name, self.dst_set.name],
        )

    def describe(self, i: int) -> str:
        return f"edge ({_plain(self.src_set.labels[self.src[i]])!r}, {_plain(self.dst_set.labels[self.dst[i]])!r})"


def _first_duplicate_sorted(src: np.ndarray, dst: np.ndarray, n_dst: int) -> int | None:
    """With src non-decreasing, find a repeated (src, dst) key; chunked, sorting dst only inside each run."""
    n = src.shape[0]
    start = 0
    while start < n:
        stop = min(start + _CHUNK, n)
        if stop < n:  # extend to the end of the src run so no run is split across chunks
            stop = int(np.searchsorted(src, src[stop - 1], side="right"))
        key = src[start:stop].astype(np.int64) * n_dst + dst[start:stop]
        if not is_nondecreasing(key):
            key.sort()
        pos = first_adjacent_equal(key)
        if pos is not None:
            return int(key[pos])
        start = stop
    return None


def _as_index(arr: np.ndarray) -> pd.Index:
    """A pandas Index over labels; 0..n-1 integer labels become a RangeIndex (no hashing needed)."""
    n = arr.shape[0]
    if arr.dtype.kind in "iu" and arr[0] == 0 and arr[-1] == n - 1 and is_nondecreasing(arr):
        # strictly increasing integers from 0 to n-1 are exactly 0..n-1
        if first_adjacent_equal(arr) is None:
            return pd.RangeIndex(n)
    return pd.Index(arr)


def _plain(label):
    """A numpy scalar label as the Python value it holds, so messages read 'zz', not np.str_('zz')."""
    return label.item() if isinstance(label, np.generic) else label
