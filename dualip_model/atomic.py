"""Every file the package writes goes through ``atomic_write``: the old file or the new one, never a broken one.

    write to  <folder>/.<name>.<random>.tmp<suffix>  ->  fsync it  ->  rename over <folder>/<name>  ->  fsync <folder>

The temporary file sits in the target's folder (a rename is atomic only within one file system) and keeps
the target's suffix (writers that pick a format from it, HiGHS and matplotlib, still do). A failure at any
point (an exception, a full disk, Ctrl-C) removes the temporary file and leaves the previous file as it was;
a SIGKILL can leave at most a stray ``.*.tmp*`` file beside it, never a truncated target.

``check_writable`` is the test run before a solve, so that an unwritable output path (a missing or
read-only folder, a path that is a folder) is refused before any work, naming the path.
"""

from __future__ import annotations

import contextlib
import os
import secrets

from .errors import ModelError


def check_writable(path, what: str) -> str:
    """Raise ModelError naming ``what`` and ``path`` unless a file can be written (atomically) at ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ModelError(f"{what} '{path}' is a directory, not a file path")
    if not os.path.isdir(folder):
        raise ModelError(f"{what} '{path}': directory '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ModelError(f"{what} '{path}': directory '{folder}' is not writable")
    return path


def check_writable_directory(path, what: str) -> str:
    """Raise ModelError unless ``path`` is a writable directory or one that can be created there."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ModelError(f"{what} '{path}' is a file, not a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the nearest existing folder must let us create the rest
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ModelError(f"{what} '{path}': directory '{existing}' is not writable")
    return path


@contextlib.contextmanager
def atomic_write(path, what: str = "file"):
    """Yield a temporary path beside ``path``; when the block ends normally, make it ``path`` atomically.

    OSError from the writer or the rename becomes ModelError naming ``what`` and ``path``; any failure
    removes the temporary file and leaves an existing ``path`` untouched.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    suffix = "".join(_suffixes(name))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp{suffix}")
    try:  # mode 0o666 less the umask, as open() gives a new file (mkstemp would give 0o600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise ModelError(f"could not write {what} '{path}': {err}") from None
    os.close(fd)
    try:
        try:
            yield tmp
            _fsync_file(tmp)
            os.replace(tmp, path)
        except OSError as err:
            raise ModelError(f"could not write {what} '{path}': {err}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # gone after a successful rename; a leftover after a failure
    _fsync_directory(folder)


def _suffixes(name: str) -> list[str]:
    """The last suffix, two for a compressed one (``.mps.gz``): what writers read the format from."""
    stem, last = os.path.splitext(name)
    if last.lower() in (".gz", ".bz2", ".zst"):
        return [os.path.splitext(stem)[1], last]
    return [last]


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_directory(folder: str) -> None:
    """Make the rename itself durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_table(table, path, what: str = "table", fmt: str | None = None) -> None:
    """Write a pandas DataFrame or a pyarrow Table to ``path`` atomically as ``fmt`` ("csv" or "parquet"; by
    default CSV for a ``.csv`` path, else Parquet).

    A missing pyarrow, or a table arrow cannot store (e.g. integer labels beyond int64), raises ModelError
    naming ``what`` and ``path``; the previous file stays.
    """
    path = os.fspath(path)
    csv = path.lower().endswith(".csv") if fmt is None else fmt == "csv"
    with atomic_write(path, what) as tmp:
        try:
            if csv:
                table = table if hasattr(table, "to_csv") else table.to_pandas()
                table.to_csv(tmp, index=False)
            elif hasattr(table, "to_parquet"):
                table.to_parquet(tmp, index=False)
            else:
                import pyarrow.parquet as pq

                pq.write_table(table, tmp)
        except ImportError:
            raise ModelError(f"{what} '{path}': writing Parquet needs pyarrow (pip install pyarrow), or use .csv") \
                from None
        except (OverflowError, TypeError, ValueError) as err:  # arrow's ArrowInvalid/ArrowTypeError among them
            raise ModelError(f"could not write {what} '{path}': {type(err).__name__}: {err}") from None
