"""Tables in and out: Parquet files and datasets read into pyarrow Tables, and Tables written as Parquet.

The columns of a table (pyarrow ChunkedArrays) go straight into ``Model.entities``/``Model.edges`` and
coefficient arithmetic; numeric columns without nulls become numpy views, string label columns are
looked up in arrow. pyarrow is an optional dependency (``pip install dualip_model[arrow]``).
"""

from __future__ import annotations

import os

import pandas as pd

from .atomic import atomic_write
from .errors import ModelError


def _pyarrow(what: str):
    """The pyarrow module, or a ModelError saying ``what`` needs it."""
    try:
        import pyarrow
    except ImportError:
        raise ModelError(f"{what} needs pyarrow: pip install 'dualip_model[arrow]'") from None
    return pyarrow


def _column_list(columns) -> list[str] | None:
    """None, one column name or a sequence of names as a list of distinct non-empty strings."""
    if columns is None:
        return None
    if isinstance(columns, str):
        names = [columns]
    else:
        try:
            names = list(columns)
        except TypeError:
            raise ModelError(f"columns: expected a column name or a list of names, got {type(columns).__name__} "
                             f"{columns!r}") from None
    for name in names:
        if not isinstance(name, str) or not name:
            raise ModelError(f"columns: names must be non-empty strings, got {name!r}")
    seen = set()
    for name in names:
        if name in seen:
            raise ModelError(f"columns: column '{name}' is requested twice")
        seen.add(name)
    return names


def _check_columns(available, wanted: list[str] | None, source: str) -> None:
    """Raise naming the first requested column that ``source`` lacks."""
    if wanted is None:
        return
    have = set(available)
    for name in wanted:
        if name not in have:
            raise ModelError(f"{source} has no column '{name}' (columns: {', '.join(map(str, available))})")


def read_table(source, columns=None):
    """Read a Parquet file, a directory of Parquet files, a pyarrow Table or a pandas DataFrame as a Table.

    ``columns`` (a name or a list of names) selects and orders the columns. A missing, corrupt or truncated
    file, or a missing column, raises ModelError naming the file or column.
    """
    pa = _pyarrow("read_table")
    wanted = _column_list(columns)
    if isinstance(source, pa.Table):
        _check_columns(source.column_names, wanted, "table")
        return source if wanted is None else source.select(wanted)
    if isinstance(source, pd.DataFrame):
        _check_columns(list(source.columns), wanted, "DataFrame")
        frame = source if wanted is None else source[wanted]
        try:
            return pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as err:
            raise ModelError(f"DataFrame could not be converted to an arrow table: {err}") from None
    if not isinstance(source, (str, os.PathLike)):
        raise ModelError(f"read_table: expected a path, a pyarrow Table or a DataFrame, got {type(source).__name__}")
    path = os.fspath(source)
    if os.path.isdir(path):
        return _read_dataset(path, wanted)
    if not os.path.isfile(path):
        raise ModelError(f"Parquet file '{path}' does not exist")
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            _check_columns(parquet.schema_arrow.names, wanted, f"Parquet file '{path}'")
            return parquet.read(columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise ModelError(f"Parquet file '{path}' could not be read (corrupt, truncated or not Parquet): "
                         f"{err}") from None


def _read_dataset(path: str, wanted: list[str] | None):
    """All Parquet files under a directory (hive partitions become columns) as one Table."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        _check_columns(dataset.schema.names, wanted, f"Parquet dataset '{path}'")
        if not dataset.files:
            raise ModelError(f"Parquet dataset '{path}' has no Parquet files")
        return dataset.to_table(columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise ModelError(f"Parquet dataset '{path}' could not be read (a file is corrupt, truncated or not "
                         f"Parquet): {err}") from None


def write_parquet(table, path) -> None:
    """Write a pyarrow Table to a Parquet file at ``path`` (replacing it atomically: a failed write leaves the
    previous file); ModelError naming the file on failure."""
    pa = _pyarrow("writing Parquet")
    import pyarrow.parquet as pq

    path = os.fspath(path)
    with atomic_write(path, "Parquet file") as tmp:  # an OSError becomes a ModelError naming the file
        try:
            pq.write_table(table, tmp)
        except pa.ArrowException as err:
            raise ModelError(f"could not write Parquet file '{path}': {err}") from None
