"""Coercion and validation of user arrays (numpy, pandas, pyarrow) into flat numpy arrays.

pyarrow is optional: it is imported only when the caller hands in a pyarrow object. Numeric arrow arrays
without nulls and pandas numpy-backed columns become numpy views (no copy); nulls are refused by name.

Data that enters a model is frozen (``frozen``), so writing into the caller's array after
``variable``/``subject_to``/``minimize`` cannot change the model, and no copy is made where none is needed:

- arrays nobody can write (arrow buffers, read-only arrays) are kept as they are;
- a numpy array that owns its memory is marked read-only in place (a later write raises numpy's
  "assignment destination is read-only"; pass ``arr.copy()`` to keep a writable one);
- a view of writable memory (a slice of a larger array) is copied once;
- pandas data is held through a shallow copy-on-write reference (pandas >= 3): a later write into the
  caller's Series makes pandas copy the caller's side (pandas < 3 without copy-on-write: copied once).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ModelError

_CHUNK = 1 << 22  # elements per chunk in O(n) scans, bounds temporaries to a few MB
_PANDAS_COW = int(pd.__version__.split(".")[0]) >= 3 or pd.get_option("mode.copy_on_write") is True


class _Holder:
    """Exposes an array's memory while holding the pandas object whose copy-on-write reference protects it."""

    def __init__(self, arr: np.ndarray, owner):
        self.__array_interface__ = arr.__array_interface__
        self.owner = owner


def _pandas_view(values) -> np.ndarray:
    """A read-only view of a numpy-backed pandas Series/Index that the caller's later writes cannot change.

    A shallow Series copy is a copy-on-write reference: a write into the caller's Series copies its side, so
    the view (kept alive with it, as the array's base) keeps the data it had. An Index is immutable.
    """
    owner = values.copy(deep=False) if isinstance(values, pd.Series) else values
    view = np.asarray(_Holder(owner.to_numpy(), owner))
    view.flags.writeable = False
    return view


def is_arrow(values) -> bool:
    """True for pyarrow objects (Array, ChunkedArray, Table, ...), tested without importing pyarrow."""
    return type(values).__module__.split(".")[0] == "pyarrow"


def _position(describe, i: int) -> str:
    """How an error message names entry i."""
    return describe(i) if describe is not None else f"value at position {i}"


def to_numpy(values, what: str, *, describe=None, allow_null: bool = False) -> np.ndarray:
    """Return a 1-d numpy view/copy of a numpy, pandas or pyarrow array-like (no Python per element).

    Arrow and pandas-extension nulls raise "``what``: ``describe(i)`` is missing (null)" (``describe(i)``
    defaults to "value at position i") unless ``allow_null``, where they convert as pyarrow/pandas do.
    """
    if isinstance(values, np.ndarray):
        arr = values
    elif is_arrow(values):
        arr = _arrow_to_numpy(values, what, describe, allow_null)
    elif isinstance(values, pd.DataFrame):
        raise ModelError(f"{what}: expected a 1-d array, got a DataFrame with columns {list(values.columns)}; "
                         "pass one column")
    elif isinstance(values, (pd.Series, pd.Index)):
        if not allow_null and not isinstance(values.dtype, np.dtype) and values.hasnans:
            pos = int(np.argmax(np.asarray(pd.isna(values))))
            raise ModelError(f"{what}: {_position(describe, pos)} is missing (null)")
        arr = values.to_numpy()
    else:
        arr = np.asarray(values)
    if arr.ndim != 1:
        raise ModelError(f"{what}: expected a 1-d array, got shape {arr.shape}")
    return arr


def _arrow_to_numpy(values, what: str, describe, allow_null: bool) -> np.ndarray:
    """An arrow Array/ChunkedArray as numpy: zero-copy for numeric data without nulls and one chunk."""
    import pyarrow as pa

    if isinstance(values, (pa.Table, pa.RecordBatch)):
        raise ModelError(f"{what}: expected a 1-d array, got a pyarrow {type(values).__name__} with columns "
                         f"{values.column_names}; pass one column")
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        raise ModelError(f"{what}: expected an array, got a pyarrow {type(values).__name__}")
    if not allow_null and values.null_count:
        raise ModelError(f"{what}: {_position(describe, first_null(values))} is missing (null)")
    arr = values.to_numpy() if isinstance(values, pa.ChunkedArray) else values.to_numpy(zero_copy_only=False)
    if _writable(arr):  # arrow memory is immutable: a writable result is a fresh conversion that only we hold
        _mark_read_only(arr)
    return arr


def _writable(arr: np.ndarray) -> bool:
    """True if arr or an array it views can be written (then someone holding that array could change arr)."""
    while isinstance(arr, np.ndarray):
        if arr.flags.writeable:
            return True
        arr = arr.base
    return False


def _mark_read_only(arr: np.ndarray) -> None:
    """Make arr and every array it views read-only (only for arrays no caller holds)."""
    while isinstance(arr, np.ndarray):
        arr.flags.writeable = False
        arr = arr.base


def frozen(arr: np.ndarray, *, fresh: bool = False) -> np.ndarray:
    """``arr`` as an array nobody can write: kept if already so, marked read-only if ``fresh`` (made by us) or if
    it owns its memory (the caller's array itself is frozen), else (a view of writable memory) copied once."""
    if fresh or arr.base is None:
        _mark_read_only(arr)
        return arr
    if not _writable(arr):
        return arr
    out = arr.copy()
    out.flags.writeable = False
    return out


def check_finite_result(result, what: str, *, describe=None, finite_inputs=None, operation: str = "result"):
    """Raise if a computed value overflowed float64: ``result`` is not finite where its inputs were.

    ``finite_inputs`` (bool array or scalar, default all True) says where the inputs were finite, so an
    infinite side that stays infinite is not an overflow. Returns ``result``.
    """
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(result)
    if finite_inputs is not None:
        bad = bad & finite_inputs
    if np.ndim(bad) == 0:
        if bad:
            raise ModelError(f"{what}: the {operation} overflows float64 ({float(result)})")
        return result
    if bad.any():
        i = int(np.argmax(bad))
        where = describe(i) if describe is not None else f"position {i}"
        raise ModelError(f"{what}: the {operation} at {where} overflows float64 ({result[i]})")
    return result


def first_null(values) -> int:
    """Position of the first null of an arrow Array/ChunkedArray (-1 if none)."""
    import pyarrow.compute as pc

    return int(pc.index(values.is_null(), True).as_py())


def arrow_strings(values):
    """An arrow (chunked) array of ``values`` if they are arrow or arrow-backed pandas strings, else None.

    Used to look string labels up in arrow (pyarrow.compute.index_in) without one Python object each.
    """
    if is_arrow(values):
        import pyarrow as pa

        if isinstance(values, (pa.Array, pa.ChunkedArray)) and _is_string_type(values.type):
            return values
        return None
    if isinstance(values, (pd.Series, pd.Index)) and hasattr(values.array, "__arrow_array__"):
        dtype = values.dtype
        if (isinstance(dtype, pd.StringDtype) and dtype.storage.startswith("pyarrow")) or (
            isinstance(dtype, pd.ArrowDtype) and _is_string_type(dtype.pyarrow_dtype)
        ):
            import pyarrow as pa

            return pa.array(values.array)
    return None


def _is_string_type(t) -> bool:
    """True for arrow string types, dictionary-encoded or not."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _arrow_numeric(values, what: str):
    """Check arrow data holds numbers, naming its arrow type otherwise; a Scalar becomes a float, decimals float64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(values, (pa.Array, pa.ChunkedArray, pa.Scalar)):
        return values  # to_numpy names the wrong kind of object
    t = values.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)):
        raise ModelError(f"{what}: expected numeric data, got dtype {t} (arrow)")
    if isinstance(values, pa.Scalar):
        if not values.is_valid:
            raise ModelError(f"{what}: value is missing (null)")
        return float(values.as_py())
    return pc.cast(values, pa.float64()) if pa.types.is_decimal(t) else values


def as_float(values, n: int | None, what: str, *, allow_inf: bool = False, describe=None,
             held: bool = True) -> np.ndarray | float:
    """Validate numeric data: a Python/numpy scalar stays a float, an array becomes float64 of length n.

    Arrow data must be numeric (an arrow Scalar counts as a scalar). NaN and nulls are always rejected;
    +-inf only where ``allow_inf``. ``describe(i)`` turns a position into a label for the error message.
    An array the model will hold (``held``) comes back read-only and never shares memory the caller can still
    write (see ``frozen``); with ``held=False`` (the caller only computes a new array from it) it is left as is.
    """
    if values is None:
        raise ModelError(f"{what}: expected a number or an array, got None")
    if is_arrow(values):
        values = _arrow_numeric(values, what)
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
    null_at = None if describe is None else (lambda i: f"value at {describe(i)}")
    arr = to_numpy(values, what, describe=null_at)
    if held and _PANDAS_COW and isinstance(values, (pd.Series, pd.Index)) and isinstance(values.dtype, np.dtype) \
            and arr.dtype.kind in "biuf":
        arr = _pandas_view(values)  # without copy-on-write (pandas < 3), ``frozen`` below copies instead
    if arr.dtype.kind not in "biuf":
        raise ModelError(f"{what}: expected numeric data, got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ModelError(f"{what}: has {arr.shape[0]} entries, expected {n}")
    converted = arr.dtype != np.float64
    arr = np.asarray(arr, dtype=np.float64)
    bad = _first_bad(arr, allow_inf)
    if bad is not None:
        where = describe(bad) if describe is not None else f"position {bad}"
        raise ModelError(f"{what}: value at {where} is {arr[bad]}")
    return frozen(arr, fresh=converted) if held else arr


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

