"""Index sets: labeled entity sets and sparse edge sets between two entity sets.

An entity set is a finite ordered set S = {s_0, ..., s_{n-1}} of labels; an edge set E ⊆ S × T is stored
as two int32 code arrays (src, dst), never as Python objects per edge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import (
    _CHUNK,
    arrow_strings,
    first_adjacent_equal,
    first_null,
    frozen,
    index_dtype,
    is_nondecreasing,
    to_numpy,
)
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
        """Positions of ``labels`` in this set (int32/int64, read-only); unknown labels raise, naming the first one.

        Arrow (or arrow-backed pandas) strings are looked up in arrow, without a Python object per label.
        Numbers are matched exactly (see ``_comparable``), never through a lossy float cast.
        """
        dtype = index_dtype(len(self))
        strings = arrow_strings(labels)
        if strings is not None and self.labels.inferred_type == "string":
            return frozen(self._arrow_codes(strings, what).astype(dtype, copy=False), fresh=True)
        arr = to_numpy(labels, what, describe=lambda i: f"label at position {i}")
        positions = self.positions(arr, what)
        if positions.shape[0] and positions.min() < 0:
            bad = arr[int(np.argmax(positions < 0))]
            raise ModelError(f"{what}: label {_plain(bad)!r} is not in entity set '{self.name}'")
        codes = positions.astype(dtype, copy=False)
        return frozen(codes, fresh=not np.may_share_memory(codes, arr))

    def positions(self, arr: np.ndarray, what: str) -> np.ndarray:
        """Position of each label of ``arr`` in this set, -1 where it is not in the set; numbers match exactly."""
        n = len(self)
        arr, maybe = _comparable(arr, self.labels.dtype, what, self.name)
        if isinstance(self.labels, pd.RangeIndex) and arr.dtype.kind in "iu":
            # labels 0..n-1 are their own positions: check the range, no hashing
            lo, hi = (int(arr.min()), int(arr.max())) if arr.shape[0] else (0, 0)
            positions = arr if lo >= 0 and hi < n else np.where((arr >= 0) & (arr < n), arr, -1)
        else:
            positions = self.labels.get_indexer(arr)
        if maybe is not None and not maybe.all():
            positions = np.where(maybe, positions, -1)
        return positions

    def _arrow_codes(self, strings, what: str) -> np.ndarray:
        """pyarrow.compute.index_in of arrow strings in this set's (string) labels."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if strings.null_count:
            raise ModelError(f"{what}: label at position {first_null(strings)} is missing (null)")
        if self._arrow_labels is None:
            self._arrow_labels = pa.array(self.labels)
        strings = _without_string_view(strings, self._arrow_labels.type)
        codes = pc.index_in(strings, value_set=self._arrow_labels)
        if codes.null_count:
            bad = strings[first_null(codes)].as_py()
            raise ModelError(f"{what}: label {bad!r} is not in entity set '{self.name}'")
        return codes.to_numpy()

    def align(self, series: pd.Series, what: str) -> pd.Series:
        """The Series reordered by label to this set's order: out[i] = series[label_i]; the labels must match."""
        index = series.index
        if index.dtype == self.labels.dtype and index.equals(self.labels):
            return series
        _check_unique_index(index, what)
        positions = self.positions(np.asarray(index.to_numpy()), what) if not isinstance(index, pd.MultiIndex) \
            else np.full(len(index), -1)
        order = _permutation(positions, len(self))
        if order is None:
            extra = [_plain(v) for v in index[positions < 0][:_SHOWN]]
            missing = _uncovered(positions, len(self))
            raise ModelError(_mismatch(what, f"entity set '{self.name}'", int((positions < 0).sum()), extra,
                                       missing.shape[0], [_plain(self.labels[i]) for i in missing[:_SHOWN]]))
        return series.iloc[order]

    def _is_shuffled_range(self) -> bool:
        """True if the labels are the integers 0..n-1 in another order (a RangeIndex would be ambiguous)."""
        labels = self.labels
        return (not isinstance(labels, pd.RangeIndex) and labels.dtype.kind in "iu"
                and labels.min() == 0 and labels.max() == len(labels) - 1)


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

    def pair(self, i: int) -> tuple:
        """Edge i as its (src label, dst label)."""
        return _plain(self.src_set.labels[self.src[i]]), _plain(self.dst_set.labels[self.dst[i]])

    def describe(self, i: int) -> str:
        return f"edge {self.pair(i)!r}"

    def align(self, series: pd.Series, what: str) -> pd.Series:
        """The Series reordered to this edge set's order by its (src label, dst label) MultiIndex.

        The two levels are (src, dst), or (dst, src) when their names say so; every edge must appear once and
        every index entry must be an edge. Each level's distinct labels are looked up once, then the pairs
        are matched as int64 keys src * |T| + dst (one sort of the edges).
        """
        index = series.index
        if not isinstance(index, pd.MultiIndex) or index.nlevels != 2:
            raise ModelError(
                f"{what}: a pandas Series over edge set '{self.name}' is aligned by a 2-level (src, dst) "
                f"MultiIndex of labels of '{self.src_set.name}' and '{self.dst_set.name}', got a "
                f"{type(index).__name__}; give it a default RangeIndex (reset_index(drop=True)) to use positions"
            )
        _check_unique_index(index, what)
        src_level, dst_level = 0, 1
        if list(index.names) == [self.dst_set.name, self.src_set.name] and self.src_set is not self.dst_set:
            src_level, dst_level = 1, 0
        src = _level_positions(index, src_level, self.src_set, what)
        dst = _level_positions(index, dst_level, self.dst_set, what)
        n_dst = len(self.dst_set)
        known = (src >= 0) & (dst >= 0)
        key = np.where(known, src * n_dst + dst, -1)
        edge_key = self.src.astype(np.int64) * n_dst + self.dst
        by_key = np.argsort(edge_key, kind="stable")
        sorted_keys = edge_key[by_key]
        at = np.minimum(np.searchsorted(sorted_keys, key), len(self) - 1)
        found = known & (sorted_keys[at] == key)
        positions = np.where(found, by_key[at], -1)
        order = _permutation(positions, len(self))
        if order is None:
            extra = [tuple(_plain(v) for v in pair) for pair in index[positions < 0][:_SHOWN]]
            missing = _uncovered(positions, len(self))
            raise ModelError(_mismatch(what, f"edge set '{self.name}'", int((positions < 0).sum()), extra,
                                       missing.shape[0], [self.pair(i) for i in missing[:_SHOWN]]))
        return series.iloc[order]


def _without_string_view(strings, target):
    """Arrow strings with string_view (which index_in cannot read) cast to ``target``; dictionaries keep codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(strings, pa.ChunkedArray):
        if not strings.num_chunks:
            return pa.chunked_array([], type=target)
        return pa.chunked_array([_without_string_view(chunk, target) for chunk in strings.chunks])
    if pa.types.is_dictionary(strings.type):
        if not pa.types.is_string_view(strings.type.value_type):
            return strings
        return pa.DictionaryArray.from_arrays(strings.indices, pc.cast(strings.dictionary, target))
    return pc.cast(strings, target) if pa.types.is_string_view(strings.type) else strings


_SHOWN = 3  # labels named in an alignment error
_EXACT_INTEGERS = 2**53  # a float64 below 2^53 in magnitude names one integer; 2^53 also stands for 2^53 + 1


def align(values, over, what: str):
    """A pandas Series aligned by label to ``over`` (an EntitySet or EdgeSet); any other data unchanged.

    A Series with a default RangeIndex (0, 1, ..., n-1) is positional; any other index holds labels of ``over``
    (for an edge set a (src, dst) MultiIndex), and the Series is reordered to ``over``'s order. Missing or
    extra labels raise ModelError naming ``what`` and the first few labels.
    """
    if not isinstance(values, pd.Series) or over is None:
        return values
    index = values.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        if isinstance(over, EntitySet) and over._is_shuffled_range() and len(index) == len(over):
            raise ModelError(
                f"{what}: the Series has a default RangeIndex and entity set '{over.name}' has the labels 0..."
                f"{len(over) - 1} in another order, so its meaning is ambiguous; index it by the labels "
                f"(aligned by label) or pass .to_numpy() (by position)"
            )
        return values
    return over.align(values, what)


def _comparable(arr: np.ndarray, label_dtype, what: str, set_name: str):
    """``arr`` converted so that numbers compare exactly with labels of ``label_dtype``, and where it may match.

    Returns (converted, maybe) with maybe None (all may match) or a bool mask; entries outside the mask are
    certainly not labels (a non-integral float or an out-of-range integer against integer labels). A float
    against integer labels, or an integer against float labels, of magnitude 2^53 or more cannot be matched
    exactly (float64 cannot tell 2^53 from 2^53 + 1) and raises instead of letting a float cast decide.
    """
    have, want = arr.dtype.kind, getattr(label_dtype, "kind", "O")
    if have not in "iuf" or want not in "iuf" or have == want or not isinstance(label_dtype, np.dtype):
        return arr, None
    if want == "f":  # integers against float labels
        big = np.abs(arr.astype(np.float64)) >= _EXACT_INTEGERS
        if big.any():
            raise ModelError(f"{what}: label {_plain(arr[int(np.argmax(big))])!r} is an integer of magnitude 2^53 "
                             f"or more and entity set '{set_name}' has float labels, which cannot tell such "
                             f"integers apart; give both as integers")
        return arr.astype(np.float64), None
    info = np.iinfo(label_dtype)
    if have == "f":  # floats against integer labels
        big = np.abs(arr) >= _EXACT_INTEGERS
        if big.any():
            raise ModelError(f"{what}: label {_plain(arr[int(np.argmax(big))])!r} is a float of magnitude 2^53 or "
                             f"more and entity set '{set_name}' has integer labels; a float cannot name such an "
                             f"integer exactly, give the labels as integers")
        maybe = (arr == np.floor(arr)) & (arr >= info.min) & (arr <= info.max)
    else:  # signed against unsigned integers: keep the values the labels' type holds
        have_info = np.iinfo(arr.dtype)
        maybe = np.ones(arr.shape, dtype=bool)
        if have_info.min < info.min:
            maybe &= arr >= info.min
        if have_info.max > info.max:
            maybe &= arr <= info.max
    return np.where(maybe, arr, 0).astype(label_dtype), maybe


def _check_unique_index(index: pd.Index, what: str) -> None:
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise ModelError(f"{what}: label {_plain(dup)!r} appears more than once in the pandas index")


def _level_positions(index: pd.MultiIndex, level: int, entities: EntitySet, what: str) -> np.ndarray:
    """Position in ``entities`` of each entry's label at ``level`` (-1 if absent): distinct labels looked up once."""
    found = entities.positions(np.asarray(index.levels[level].to_numpy()), what)
    codes = index.codes[level]
    return np.where(codes >= 0, found[codes], -1).astype(np.int64)


def _permutation(positions: np.ndarray, n: int) -> np.ndarray | None:
    """order with order[positions[k]] = k when positions is a permutation of 0..n-1 (None otherwise)."""
    if positions.shape[0] != n or (positions < 0).any():
        return None
    order = np.empty(n, dtype=np.int64)
    order[positions] = np.arange(n)
    return order


def _uncovered(positions: np.ndarray, n: int) -> np.ndarray:
    """The elements 0..n-1 no entry of positions names."""
    covered = np.zeros(n, dtype=bool)
    covered[positions[positions >= 0]] = True
    return np.flatnonzero(~covered)


def _mismatch(what: str, target: str, n_extra: int, extra: list, n_missing: int, missing: list) -> str:
    parts = []
    if n_missing:
        parts.append(f"{n_missing} of its labels missing from the index ({', '.join(map(repr, missing))}"
                     f"{', ...' if n_missing > len(missing) else ''})")
    if n_extra:
        parts.append(f"{n_extra} index labels not in it ({', '.join(map(repr, extra))}"
                     f"{', ...' if n_extra > len(extra) else ''})")
    return (f"{what}: a pandas Series is aligned by its index labels, and they do not match {target}: "
            f"{'; '.join(parts)}; give it a default RangeIndex (reset_index(drop=True)) to use positions")


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
