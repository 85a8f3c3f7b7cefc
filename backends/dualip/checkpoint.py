"""Solver checkpoints: named tensors plus JSON metadata in a .safetensors or .npz file, never a pickle.

A checkpoint holds everything the ascent needs to continue bit for bit (iterate, momentum, step estimate,
Newton warm start, gamma, best certificate so far, history) and a fingerprint of the problem and of the
options that shape the trajectory, so resuming on another problem or with other settings is refused.
What is saved is read from the state dataclass itself (``record`` / ``restore``): every field, tensors by
dotted name with what they are indexed by (``index``), the rest as JSON, each checked against its annotation
on the way back, so a field added to a state is saved and checked with no list to update.

A sharded solve checkpoints into a directory: ``state.npz`` with what every rank holds alike (the row-sized
state, the metadata, the list of shard files) and one ``shard-RANK-of-WORLD-itIT.npz`` per rank with its
blocks' Newton warm start and its columns' best primal. Any number of ranks can resume from it: each reads
the pieces of the shard files that overlap its own blocks.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import typing
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from dualip_model.atomic import atomic_write, check_writable, check_writable_directory
from dualip_model.errors import ModelError
from dualip_model.standard_form import StandardForm
from dualip_model.untrusted import npz_members, parse_json, read_npz

FORMAT = "dualip-checkpoint-5"
TRAJECTORY_OPTIONS = ("gamma", "gamma_decay", "gamma_min", "check_every", "newton_steps", "adaptive_step",
                      "extrapolate", "flat_rows", "tol", "dtype", "engine", "matrix_dtype", "seed",
                      "algorithm")


STATE_FILE = "state.npz"


def fingerprint(sf: StandardForm) -> str:
    """blake2b of the standard form's arrays: the identity of the problem a checkpoint belongs to."""
    h = hashlib.blake2b(digest_size=16)
    for a in (sf.A_indptr, sf.A_indices, sf.A_data, sf.c, sf.row_lower, sf.row_upper, sf.col_lower, sf.col_upper,
              sf.block_ptr, sf.block_kind, sf.block_rhs):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write atomically (``atomic_write``: a temporary file renamed over ``path``): a failed save leaves the old file."""
    path = Path(path)
    arrays = {k: v.detach().cpu().clone() for k, v in tensors.items()}  # own memory each (safetensors)
    text = json.dumps({"format": FORMAT, **meta})
    if path.suffix == ".safetensors":
        safetensors_torch = _safetensors()
    with atomic_write(path, "checkpoint file") as tmp:
        if path.suffix == ".safetensors":
            safetensors_torch.save_file(arrays, tmp, metadata={"dualip": text})
        else:
            with open(tmp, "wb") as f:
                np.savez(f, __meta__=np.array(text), **{k: v.numpy() for k, v in arrays.items()})


def load(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors on the CPU, metadata) of a checkpoint; ModelError naming the file if it is not one.

    An .npz's array headers are checked against the file before anything is read (``untrusted``), the
    metadata is bounded in size and depth, and only numeric arrays are accepted.
    """
    path = Path(path)
    where = f"checkpoint file '{path}'"
    if not path.is_file():
        raise ModelError(f"{where} does not exist")
    errors = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError)
    if path.suffix == ".safetensors":
        safetensors_torch = _safetensors()
        from safetensors import SafetensorError, safe_open

        errors = (*errors, SafetensorError)
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get("dualip")
            tensors = safetensors_torch.load_file(str(path))
        else:
            members = npz_members(str(path), where)
            meta_member = members.pop("__meta__", None)
            text = None
            if meta_member is not None and meta_member.dtype.kind == "U" and meta_member.shape == ():
                text = str(read_npz(str(path), {"__meta__": meta_member}, ["__meta__"], where)["__meta__"])
            odd = [k for k, m in members.items() if m.dtype.kind not in "fiub"]
            if odd:
                raise ModelError(f"{where}: array '{odd[0]}' has dtype {members[odd[0]].dtype}, not a number type")
            tensors = {k: torch.from_numpy(v) for k, v in read_npz(str(path), members, list(members), where).items()}
    except errors as exc:
        raise ModelError(f"{where} is corrupt or not a checkpoint: {exc}") from exc
    meta = parse_json(text, where) if text is not None else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{where} is not a {FORMAT} file")
    return tensors, meta


def index(by: str) -> dict:
    """Field metadata of a tensor field of a saved state: what it is indexed by, "rows", "blocks" or "columns"
    (the last two are per-rank slices in a sharded checkpoint), or "scalar" (0-d)."""
    return {"index": by}


SHARDED = ("blocks", "columns")  # the indices a sharded solve splits over its ranks


def record(state) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a state dataclass: its tensor fields by dotted name ("st.tau"), its other fields in meta;
    a nested dataclass puts its tensors under its name and its meta in a dict; a tensor field that is None is left
    out."""
    tensors, meta = {}, {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if dataclasses.is_dataclass(value):
            inner, meta[f.name] = record(value)
            tensors.update({f"{f.name}.{k}": t for k, t in inner.items()})
        elif isinstance(value, torch.Tensor):
            tensors[f.name] = value
        elif not (value is None and "index" in f.metadata):
            meta[f.name] = value
    return tensors, meta


def trajectory_options(options) -> dict:
    """The options that shape a solve's trajectory (TRAJECTORY_OPTIONS), by name: a resume must match them all."""
    return {k: getattr(options, k) for k in TRAJECTORY_OPTIONS}


def save_state(state, path, store, options) -> None:
    """Write a method's state dataclass (``record``) to ``path`` through ``store``, with the problem's fingerprint and
    the trajectory options."""
    tensors, meta = record(state)
    meta.update(problem=store.fingerprint, options=trajectory_options(options))
    store.save(path, tensors, meta, sharded_keys(type(state)))


def saved_algorithm(path, store) -> str | None:
    """The method whose state ``path`` holds ("dual_ascent" or "pdhg", from its trajectory options; None if unsaid)."""
    _, meta = store.load(path, {})
    options = meta.get("options")
    return options.get("algorithm") if isinstance(options, dict) else None


def load_state(cls, path, store, options, prob):
    """The ``cls`` state saved in ``path`` for the ScaledProblem ``prob``; refused (ModelError naming the file) for
    another problem, other trajectory options or a field that does not fit this problem."""
    tensors, meta = store.load(path, sharded_keys(cls))
    if meta["problem"] != store.fingerprint:
        raise ModelError(f"checkpoint file '{path}' was written for a different problem")
    saved, now = meta["options"], trajectory_options(options)
    changed = sorted(k for k in now if saved.get(k) != now[k])
    if changed:
        raise ModelError(f"checkpoint file '{path}' was written with other options: "
                         + ", ".join(f"{k}={saved.get(k)!r} (now {now[k]!r})" for k in changed))
    sizes = {"rows": prob.m, "blocks": prob.sf.n_blocks, "columns": prob.n}
    return restore(cls, tensors, meta, f"checkpoint file '{path}'", sizes, prob.device, prob.dtype)


def sharded_keys(cls) -> dict[str, str]:
    """The tensor keys of ``record`` of a ``cls`` that a sharded checkpoint splits: key -> "blocks" or "columns"."""
    out = {}
    for f in dataclasses.fields(cls):
        inner = _dataclass_of(cls, f)
        if inner is not None:
            out.update({f"{f.name}.{k}": by for k, by in sharded_keys(inner).items()})
        elif f.metadata.get("index") in SHARDED:
            out[f.name] = f.metadata["index"]
    return out


_SCALARS = {int: (int,), float: (int, float), bool: (bool,), str: (str,), list: (list,), dict: (dict,)}


def restore(cls, tensors: dict[str, torch.Tensor], meta: dict, where: str, sizes: dict[str, int],
            device: torch.device, dtype: torch.dtype, prefix: str = ""):
    """The ``cls`` that ``record`` saved as (tensors, meta), its tensors on ``device`` in ``dtype``.

    Every field is checked against its annotation (ModelError naming ``where`` and the field): a tensor is present
    (unless it may be None), floating and of its index's size in ``sizes`` ("scalar": 0-d); a number, flag, text,
    list or dict has that type (a float may be an int); a nested dataclass is a dict of its fields and nothing
    else.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(meta) - names)
    if prefix and unknown:  # (the top level carries the store's own keys too)
        raise ModelError(f"{where}: metadata field '{prefix[:-1]}' has unknown fields {unknown}")
    values = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        allowed = set(typing.get_args(hints[f.name])) or {hints[f.name]}
        inner = _dataclass_of(cls, f)
        if inner is not None:
            sub = meta.get(f.name)
            if sub is None and type(None) in allowed:
                values[f.name] = None
            elif isinstance(sub, dict):
                values[f.name] = restore(inner, tensors, sub, where, sizes, device, dtype, f"{name}.")
            else:
                raise ModelError(f"{where}: metadata field '{name}' is {str(sub)[:40]!r}, expected the fields of "
                                 f"{inner.__name__} ({', '.join(g.name for g in dataclasses.fields(inner))})")
        elif torch.Tensor in allowed:
            values[f.name] = _tensor(tensors.get(name), name, f, type(None) in allowed, where, sizes, device, dtype)
        else:
            value, types = meta.get(f.name), _SCALARS[hints[f.name]]
            if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
                raise ModelError(f"{where}: metadata field '{name}' is {str(value)[:40]!r}, expected "
                                 f"{' or '.join(t.__name__ for t in types)}")
            values[f.name] = value
    return cls(**values)


def _tensor(t, name: str, f, optional: bool, where: str, sizes: dict[str, int], device, dtype):
    """A saved tensor field, checked (see restore) and moved to ``device`` in ``dtype``; None where it may be."""
    if t is None:
        if optional:
            return None
        raise ModelError(f"{where}: tensor '{name}' is missing")
    by = f.metadata.get("index")
    shape = () if by == "scalar" else (sizes[by],)
    if not t.is_floating_point() or tuple(t.shape) != shape:
        raise ModelError(f"{where}: tensor '{name}' is {t.dtype} of shape {tuple(t.shape)}, expected floating point "
                         f"of shape {shape} ({by})")
    return t.to(device=device, dtype=dtype)


def _dataclass_of(cls, f):
    """The dataclass a field of ``cls`` holds (alone or with None), or None."""
    hint = typing.get_type_hints(cls)[f.name]
    return next((t for t in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(t)), None)


def check_header(meta: dict, where: str) -> None:
    """ModelError unless ``meta`` names its problem (a fingerprint) and its options (a dict)."""
    for key, kind in (("problem", str), ("options", dict)):
        value = meta.get(key)
        if not isinstance(value, kind):
            raise ModelError(f"{where}: metadata field '{key}' is {str(value)[:40]!r}, expected {kind.__name__}")


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as exc:
        raise ModelError("a .safetensors checkpoint needs the 'safetensors' package "
                         "(pip install safetensors); use a .npz path otherwise") from exc
    return safetensors.torch


def check_target(path, store=None) -> None:
    """Before a solve: ModelError naming ``path`` unless the checkpoint can be written there (a file, or for a
    ShardedStore ``store`` a directory)."""
    if isinstance(store, ShardedStore):
        check_writable_directory(path, "checkpoint directory")
    else:
        check_writable(path, "checkpoint file")


def _kept_going(path, err: Exception) -> None:
    """A checkpoint that could not be written does not end the solve: warn, naming the path, and go on."""
    warnings.warn(f"checkpoint not written: {err}; the solve goes on and returns its result", RuntimeWarning,
                  stacklevel=3)


class FileStore:
    """Checkpoints of a one-process solve: one file, fingerprinted by every array of the standard form.

    A save that fails (full disk, folder removed) warns and leaves the previous checkpoint; the solve goes on.
    """

    def __init__(self, sf: StandardForm):
        self.sf = sf

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.sf)

    def save(self, path, tensors: dict[str, torch.Tensor], meta: dict, sharded: dict[str, str]) -> None:
        try:
            save(path, tensors, meta)
        except ModelError as err:
            _kept_going(path, err)

    def load(self, path, sharded: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict]:
        tensors, meta = load(path)
        check_header(meta, f"checkpoint file '{path}'")
        return tensors, meta


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays: a well-spread 64-bit hash of each entry."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _bits(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def sharded_fingerprint(shard, comm) -> str:
    """A fingerprint of the whole problem that every split into shards gives alike.

    Each nonzero, column and block is hashed with its global position; the hashes are summed mod 2^64 on each
    rank and over the ranks (a sum does not depend on how the terms are split). The rows are replicated and
    hashed whole.
    """
    sf = shard.sf
    col0, blk0 = np.uint64(shard.col_start), np.uint64(shard.block_start)
    counts = np.diff(sf.A_indptr).astype(np.int64)
    nz_col = np.repeat(np.arange(sf.n_cols, dtype=np.uint64), counts) + col0
    cols = np.arange(sf.n_cols, dtype=np.uint64) + col0
    blocks = np.arange(sf.n_blocks, dtype=np.uint64) + blk0
    k1, k2, k3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9)
    terms = [
        _mix(_mix(nz_col * k1 + np.asarray(sf.A_indices, dtype=np.uint64)) ^ _bits(sf.A_data)),
        _mix(_mix(cols * k2) ^ _bits(sf.c)) + _mix(_mix(cols * k3) ^ _bits(sf.col_lower))
        + _mix(_mix(cols * k1 + k2) ^ _bits(sf.col_upper)),
        _mix(_mix(blocks * k3 + k1) ^ _bits(sf.block_rhs)) + _mix(
            blocks * k2 + np.asarray(sf.block_kind, dtype=np.uint64) * k1
            + (np.asarray(sf.block_ptr[1:], dtype=np.uint64) + col0)),
    ]
    local = np.array([t.sum(dtype=np.uint64) for t in terms] + [sf.n_cols, sf.nnz, sf.n_blocks], dtype=np.uint64)
    total = np.zeros(len(local), dtype=np.uint64)
    for part in comm.all_gather_np(local.view(np.int64)):
        total = total + part.view(np.uint64)
    h = hashlib.blake2b(digest_size=16)
    for a in (sf.row_lower, sf.row_upper, total):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class ShardedStore:
    """Checkpoints of a sharded solve: a directory (see the module's docstring); every rank calls each method."""

    def __init__(self, shard, comm):
        self.shard = shard
        self.comm = comm

    @functools.cached_property
    def fingerprint(self) -> str:  # a collective: every rank computes it at the same save or load
        return sharded_fingerprint(self.shard, self.comm)

    def _ranges(self) -> dict[str, tuple[int, int]]:
        s = self.shard
        return {"blocks": (s.block_start, s.block_stop), "columns": (s.col_start, s.col_stop)}

    def save(self, path, tensors: dict[str, torch.Tensor], meta: dict, sharded: dict[str, str]) -> None:
        """Each rank writes its shard file (the tensors ``sharded`` names: key -> "blocks" or "columns"); then rank 0
        writes the state naming them and drops older shards.

        If any rank could not write its shard, no state is written (the previous checkpoint stays whole) and
        the solve goes on, with a warning on the ranks that failed.
        """
        directory, comm = Path(path), self.comm
        tensors = dict(tensors)
        local = {k: tensors.pop(k) for k in sharded if k in tensors}
        ranges = self._ranges()
        name = f"shard-{comm.rank:05d}-of-{comm.world:05d}-it{meta['it']}.npz"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            save(directory / name, local, {"ranges": ranges})
            written = 1
        except (OSError, ModelError) as err:
            _kept_going(directory, err)
            written = 0
        gathered = comm.all_gather_np(np.array([*ranges["blocks"], *ranges["columns"], written], dtype=np.int64))
        spans = [g[:4] for g in gathered]
        if comm.rank == 0 and all(g[4] for g in gathered):
            shards = [[f"shard-{k:05d}-of-{comm.world:05d}-it{meta['it']}.npz", *map(int, span)]
                      for k, span in enumerate(spans)]
            older = _listed_shards(directory)  # what the state being replaced names: the only files we delete
            try:
                save(directory / STATE_FILE, tensors, {**meta, "shards": shards})
            except ModelError as err:
                _kept_going(directory, err)
            else:
                for old in older - {entry[0] for entry in shards}:
                    (directory / old).unlink(missing_ok=True)
        comm.barrier()

    def load(self, path, sharded: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict]:
        """The replicated state plus this rank's slices of the ``sharded`` tensors (key -> "blocks" or "columns"), from
        any number of shard files; a key no shard file holds is left out (a field that was None)."""
        directory = Path(path)
        if not directory.is_dir():
            raise ModelError(f"checkpoint directory '{directory}' does not exist (a sharded solve checkpoints "
                             "into a directory)")
        tensors, meta = load(directory / STATE_FILE)
        check_header(meta, f"checkpoint file '{directory / STATE_FILE}'")
        shards = _shard_entries(directory, meta)
        span = {"blocks": (1, 2), "columns": (3, 4)}
        files = {}  # shard file -> its tensors, each read once for all the sharded keys
        for key, index in sharded.items():
            lo, hi = self._ranges()[index]
            pieces, covered, absent = [], lo, False
            for entry in sorted(shards, key=lambda e: e[span[index][0]]):
                start, stop = entry[span[index][0]], entry[span[index][1]]
                if stop <= lo or start >= hi or start == stop:
                    continue
                if start > covered:
                    break
                if entry[0] not in files:
                    files[entry[0]] = load(directory / entry[0])[0]
                part = files[entry[0]]
                if key not in part:
                    absent = True
                    break
                piece = part[key][covered - start:min(stop, hi) - start]
                if piece.ndim != 1 or piece.shape[0] != min(stop, hi) - covered:
                    raise ModelError(f"checkpoint directory '{directory}': shard file '{entry[0]}' holds "
                                     f"{tuple(part[key].shape)} values of '{key}', not its {index} {start}..{stop - 1}")
                pieces.append(piece)
                covered = min(stop, hi)
            if covered < hi and lo < hi:
                if absent and not pieces:  # saved by no shard: a field that was None (restore says if it may be)
                    continue
                raise ModelError(f"checkpoint directory '{directory}': the shard files do not cover {index} "
                                 f"{covered}..{hi - 1}")
            tensors[key] = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.float64)
        return tensors, meta


def _shard_entries(directory: Path, meta: dict) -> list[tuple[str, int, int, int, int]]:
    """The state file's shard list: (file, first block, end block, first column, end column) per shard file.

    A file must be a plain name inside ``directory`` (no folder, no ``..``, not absolute): a checkpoint
    reads and deletes nothing outside its own folder.
    """
    def bad(what: str) -> ModelError:
        return ModelError(f"checkpoint directory '{directory}': {STATE_FILE} {what}")

    entries = meta.get("shards")
    if not isinstance(entries, list) or not entries:
        raise bad("lists no shard files")
    out = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 5 and isinstance(entry[0], str)
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in entry[1:])):
            raise bad(f"has a malformed shard entry {str(entry)[:80]!r} (expected [file, b0, b1, c0, c1])")
        name = entry[0]
        if not _plain_name(name):
            raise bad(f"names shard file {name!r} outside the checkpoint directory; only plain file names are read")
        if entry[1] > entry[2] or entry[3] > entry[4]:
            raise bad(f"gives shard file {name!r} an empty-or-reversed range {entry[1:]}")
        out.append((name, *entry[1:]))
    return out


def _plain_name(name: str) -> bool:
    """True for a file name with no folder part: not absolute, no separator, not '.' or '..'."""
    return (name not in ("", ".", "..") and os.path.basename(name) == name and "/" not in name
            and "\\" not in name and not os.path.isabs(name))


def _listed_shards(directory: Path) -> set[str]:
    """The shard files named by the state file now in ``directory`` (none if it is missing or unreadable)."""
    if not (directory / STATE_FILE).is_file():
        return set()
    try:
        return {entry[0] for entry in _shard_entries(directory, load(directory / STATE_FILE)[1])}
    except ModelError:
        return set()
