"""Coercion and validation of user arrays (numpy, pandas, pyarrow) into flat numpy arrays."""

from __future__ import annotations

import numpy as np

from .errors import ModelError

_CHUNK = 1 << 22  # elements per chunk in O(n) scans, bounds temporaries to a few MB


def to_numpy(values, what: str) -> np.ndarray:
    """Return a 1-d numpy view/copy of a numpy, pandas or pyarrow array-like (no Python per element)."""
    if isinstance(values, np.ndarray):
        arr = values
    elif hasattr(values, "to_numpy"):  # pandas Series/Index, pyarrow Array/ChunkedArray
        try:
            arr = values.to_numpy(zero_copy_only=False)  # pyarrow
        except TypeError:
            arr = values.to_numpy()
    else:
        arr = np.asarray(values)
    if arr.ndim != 1:
        raise ModelError(f"{what}: expected a 1-d array, got shape {arr.shape}")
    return arr


def as_float(values, n: int | None, what: str, *, allow_inf: bool = False, describe=None) -> np.ndarray | float:
    """Validate numeric data: a Python/numpy scalar stays a float, an array becomes float64 of length n.

    NaN is always rejected; +-inf only where ``allow_inf``. ``describe(i)`` turns a position into a
    label for the error message.
    """
    if np.isscalar(values) or (isinstance(values, np.ndarray) and values.ndim == 0):
        if isinstance(values, (str, bytes)) or (isinstance(values, np.ndarray) and values.dtype.kind not in "biuf"):
            raise ModelError(f"{what}: expected a number, got {values!r}")
        try:
            value = float(values)
        except (TypeError, ValueError):
            raise ModelError(f"{what}: expected a number, got {values!r}") from None
        if np.isnan(value) or (not allow_inf and np.isinf(value)):
            raise ModelError(f"{what}: value is {value}")
        return value
    arr = to_numpy(values, what)
    if arr.dtype.kind not in "biuf":
        raise ModelError(f"{what}: expected numeric data, got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ModelError(f"{what}: has {arr.shape[0]} entries, expected {n}")
    arr = np.asarray(arr, dtype=np.float64)
    bad = _first_bad(arr, allow_inf)
    if bad is not None:
        where = describe(bad) if describe is not None else f"position {bad}"
        raise ModelError(f"{what}: value at {where} is {arr[bad]}")
    return arr


def _first_bad(arr: np.ndarray, allow_inf: bool) -> int | None:
    """Index of the first NaN (or inf unless allowed), scanning in chunks to bound temporaries."""
    for start in range(0, arr.shape[0], _CHUNK):
        chunk = arr[start : start + _CHUNK]
        bad = np.isnan(chunk) if allow_inf else ~np.isfinite(chunk)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


def is_nondecreasing(arr: np.ndarray) -> bool:
    """True if arr[i] <= arr[i+1] for all i, in O(n) with bounded temporaries."""
    n = arr.shape[0]
    for start in range(0, max(n - 1, 0), _CHUNK):
        stop = min(start + _CHUNK, n - 1)
        if (arr[start + 1 : stop + 1] < arr[start:stop]).any():
            return False
    return True


def first_adjacent_equal(arr: np.ndarray) -> int | None:
    """First i with arr[i] == arr[i+1] (arr sorted), else None; chunked."""
    n = arr.shape[0]
    for start in range(0, max(n - 1, 0), _CHUNK):
        stop = min(start + _CHUNK, n - 1)
        eq = arr[start + 1 : stop + 1] == arr[start:stop]
        if eq.any():
            return start + int(np.argmax(eq))
    return None


def index_dtype(n: int):
    """Smallest of int32/int64 holding values up to n."""
    return np.int32 if n < 2**31 else np.int64

