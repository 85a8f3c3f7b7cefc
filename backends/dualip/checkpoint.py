"""Solver checkpoints: named tensors plus JSON metadata in a .safetensors or .npz file, never a pickle.

A checkpoint holds everything the ascent needs to continue bit for bit (iterate, momentum, step estimate,
Newton warm start, gamma, best certificate so far, history) and a fingerprint of the problem and of the
options that shape the trajectory, so resuming on another problem or with other settings is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from dualip_model.errors import ModelError
from dualip_model.standard_form import StandardForm

FORMAT = "dualip-checkpoint-1"
TRAJECTORY_OPTIONS = ("gamma", "gamma_decay", "gamma_min", "check_every", "newton_steps", "adaptive_step",
                      "extrapolate", "tol", "dtype", "seed")


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
    """Write atomically (a temporary file renamed over ``path``): an interrupted save leaves the old file."""
    path = Path(path)
    arrays = {k: v.detach().cpu().clone() for k, v in tensors.items()}  # own memory each (safetensors)
    text = json.dumps({"format": FORMAT, **meta})
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".safetensors":
        safetensors_torch = _safetensors()
        safetensors_torch.save_file(arrays, str(tmp), metadata={"dualip": text})
    else:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(text), **{k: v.numpy() for k, v in arrays.items()})
    os.replace(tmp, path)


def load(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors on the CPU, metadata) of a checkpoint; ModelError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint file '{path}' does not exist")
    errors = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, RuntimeError)
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
            with np.load(path, allow_pickle=False) as z:
                text = str(z["__meta__"]) if "__meta__" in z.files else None
                tensors = {k: torch.from_numpy(z[k].copy()) for k in z.files if k != "__meta__"}
        meta = json.loads(text) if text is not None else None
    except errors as exc:
        raise ModelError(f"checkpoint file '{path}' is corrupt or not a checkpoint: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"checkpoint file '{path}' is not a {FORMAT} file")
    return tensors, meta


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as exc:
        raise ModelError("a .safetensors checkpoint needs the 'safetensors' package "
                         "(pip install safetensors); use a .npz path otherwise") from exc
    return safetensors.torch
