"""Reading files that may be crafted: sizes are checked against the file before anything is allocated.

An ``.npz`` member's header (shape, dtype) must account for exactly the bytes the zip entry declares, and a
compressed entry cannot declare more than deflate's largest ratio (1032:1) allows; so no header can make a
reader allocate more than the file can hold. JSON metadata is bounded in size (MAX_JSON_BYTES) and nesting
(MAX_JSON_DEPTH) before it is parsed: no RecursionError, no gigabyte of text.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import ModelError

MAX_JSON_BYTES = 256 << 20  # metadata larger than this is refused unparsed
MAX_JSON_DEPTH = 32  # nesting of [ and { in metadata (the package writes at most 5)
_DEFLATE_MAX_RATIO = 1032  # deflate cannot expand one compressed byte into more than this
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


@dataclass(frozen=True)
class Member:
    """One array of an .npz archive as its header declares it (nothing read yet)."""

    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool


def npz_members(path: str, where: str) -> dict[str, Member]:
    """The arrays of the .npz at ``path`` by name, each header checked against the bytes its entry holds.

    Raises ModelError (prefixed with ``where``) for a member that is not a plain .npy array (pickle, object
    dtype), whose entry lies beyond the end of the file, or whose declared shape and dtype need more or fewer
    bytes than the entry declares.
    """
    size = os.path.getsize(path)
    members = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename
                if not name.endswith(".npy"):
                    raise ModelError(f"{where}: member {name!r} is not an .npy array")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise ModelError(f"{where}: member {name!r} uses an unsupported compression")
                if info.header_offset + info.compress_size > size:
                    raise ModelError(f"{where}: member {name!r} runs past the end of the file (truncated)")
                limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED \
                    else info.compress_size * _DEFLATE_MAX_RATIO + 1024
                if info.file_size > limit:
                    raise ModelError(f"{where}: member {name!r} declares {info.file_size} bytes, more than its "
                                     f"{info.compress_size} stored bytes can hold")
                with z.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = header(fh)
                    header_bytes = fh.tell()
                if dtype.hasobject:
                    raise ModelError(f"{where}: member {name!r} holds Python objects (refused: no pickle)")
                need = math.prod(int(d) for d in shape) * dtype.itemsize
                if header_bytes + need != info.file_size:
                    raise ModelError(f"{where}: member {name!r} declares shape {tuple(shape)} of {dtype} "
                                     f"({need} bytes) but holds {info.file_size - header_bytes} bytes")
                members[name[: -len(".npy")]] = Member(info, dtype, tuple(int(d) for d in shape), bool(fortran))
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise ModelError(f"{where} could not be read (corrupt or truncated): {err}") from None
    return members


def read_npz(path: str, members: dict[str, Member], names, where: str) -> dict[str, np.ndarray]:
    """Read the named members (checked by ``npz_members``) into numpy arrays; pickle is never allowed."""
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in names:
                with z.open(members[name].info) as fh:
                    out[name] = np.lib.format.read_array(fh, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ModelError(f"{where} could not be read (corrupt or truncated): {err}") from None
    return out


def parse_json(text, where: str):
    """json.loads of ``text`` (str or bytes), refused above MAX_JSON_BYTES or MAX_JSON_DEPTH levels of nesting."""
    raw = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_JSON_BYTES:
        raise ModelError(f"{where}: its metadata is {len(raw)} bytes, more than the {MAX_JSON_BYTES} allowed")
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ModelError(f"{where}: its metadata nests {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ModelError(f"{where}: its metadata is not valid JSON (corrupt file)") from None


def json_depth(raw: bytes) -> int:
    """Deepest nesting of [ and { outside JSON strings (one vectorized pass, no recursion)."""
    bare = np.frombuffer(_STRING.sub(b'""', raw), dtype=np.uint8)
    step = np.isin(bare, np.frombuffer(b"[{", np.uint8)).astype(np.int64) \
        - np.isin(bare, np.frombuffer(b"]}", np.uint8))
    return int(np.cumsum(step).max(initial=0))
