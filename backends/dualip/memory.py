"""Memory accounting of the solver: bytes of every tensor it holds, and the peak of its temporaries.

peak = held + max(temporaries of k iterations, temporaries of one check). ``held`` counts each storage once
(views and shared arrays are free); temporaries are tracked op by op with a dispatch mode: every tensor an
op creates counts from its creation until the last tensor viewing its storage is freed. That is exact for
what torch allocates for the solver on any device (kernel workspaces and allocator caching aside), so the
CPU figures are the GPU's too; on CUDA ``torch.cuda.max_memory_allocated`` measures the same from the
allocator's side.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def storages(t: torch.Tensor) -> list[tuple[int, int]]:
    """(address, bytes) of the storages behind a dense or sparse (COO/CSR) tensor."""
    if t.layout == torch.sparse_csr:
        parts = [t.crow_indices(), t.col_indices(), t.values()]
    elif t.layout == torch.sparse_coo:
        parts = [t._indices(), t._values()]
    else:
        parts = [t]
    return [(p.untyped_storage().data_ptr(), p.untyped_storage().nbytes()) for p in parts]


def held_bytes(named: dict[str, torch.Tensor]) -> dict[str, int]:
    """Bytes per name, a storage shared by several names counted once (for the first name that holds it)."""
    seen: set[int] = set()
    out = {}
    for name, t in named.items():
        total = 0
        for ptr, nbytes in storages(t):
            if ptr not in seen and nbytes:
                seen.add(ptr)
                total += nbytes
        out[name] = total
    return out


def _address(t: torch.Tensor) -> int | None:
    return t.untyped_storage().data_ptr() if t.layout == torch.strided else None


class TemporaryTracker(TorchDispatchMode):
    """Within ``with tracker:``: bytes of live tensors created by torch ops, and their peak."""

    def __init__(self):
        super().__init__()
        self._live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors viewing it]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {_address(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.is_meta:
                continue
            key = t.untyped_storage().data_ptr()
            nbytes = t.untyped_storage().nbytes()
            if key in self._live:
                self._live[key][1] += 1
            elif key in inputs:  # a view of (or in place on) a tensor from outside: no new memory
                continue
            elif nbytes:
                self._live[key] = [nbytes, 1]
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            else:
                continue
            weakref.finalize(t, self._release, key)
        return out


@dataclass
class MemoryReport:
    """Held bytes per tensor, peak temporaries of k iterations and of a check, per nonzero of A."""

    nnz: int
    held: dict[str, int] = field(default_factory=dict)
    iteration_temporaries: int = 0  # peak over k iterations (everything they create, freed or not)
    check_temporaries: int = 0  # peak over one check (certificate, repair, Farkas rays)
    iterations: int = 0

    @property
    def held_total(self) -> int:
        return sum(self.held.values())

    @property
    def peak(self) -> int:
        return self.held_total + max(self.iteration_temporaries, self.check_temporaries)

    @property
    def bytes_per_nnz(self) -> float:
        return self.peak / max(self.nnz, 1)

    def as_dict(self) -> dict:
        per = max(self.nnz, 1)
        return dict(nnz=self.nnz, bytes_per_nnz=round(self.bytes_per_nnz, 2),
                    held_per_nnz={k: round(v / per, 2) for k, v in self.held.items() if v},
                    iteration_temporaries_per_nnz=round(self.iteration_temporaries / per, 2),
                    check_temporaries_per_nnz=round(self.check_temporaries / per, 2), iterations=self.iterations)
