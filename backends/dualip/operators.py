"""Sparse products of the iteration, y = M z with (M z)_i = sum over the entries e of row i of vals_e z[idx_e].

One class, three storage kinds, chosen per matrix when the problem is built:
- "csr": a torch sparse CSR tensor (MKL on CPU, cuSPARSE on CUDA), the fastest product on CPU;
- "segment": int32 indices, a gather and a segment sum; the order of entries within a row is free (A's rows
  can stay in the repair's order, so the repair needs no copy) and every op traces with
  torch.compile(fullgraph=True);
- "single": every row holds at most one entry (A^T of a matching, each column in one coupling row):
  M z = vals * z[idx], no row pointers at all; an empty row points at a sentinel slot that holds 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


class SparseRows:
    """An (r, k) sparse matrix stored row by row, with ``M @ z`` and the per-row minimum of a gathered vector."""

    def __init__(self, ptr: np.ndarray, idx: np.ndarray, vals: np.ndarray | None, shape: tuple[int, int], kind: str,
                 device: torch.device, dtype: torch.dtype, col_vals: torch.Tensor | None = None,
                 round_up: bool = False):
        """``col_vals`` ("segment" only, instead of ``vals``): every entry of column j has the value col_vals[j],
        as in A of a matching whose A^T ("single") already holds one value per column: A's values not stored twice.
        ``dtype`` is the values' (16-bit ones multiply the products' operands as they are read); ``round_up``:
        each value is the smallest of ``dtype`` at or above the given one."""
        r, k = shape
        self.shape, self.kind = (r, k), kind
        if col_vals is not None and (kind != "segment" or vals is not None):
            raise ValueError("SparseRows: col_vals replaces vals, for kind 'segment' only")
        self.col_vals = col_vals
        self._groups = None  # row groups of the chunked product, built on first use
        self._host_ptr = None  # row pointers on the host, copied on first use
        self._range_rows = {}  # (start, stop) -> (r0, r1, entries per row on the device), see rows_of_entries
        counts = np.diff(ptr)
        self.padded = False  # "single" with empty rows: they point at z's sentinel slot k
        if kind == "single":
            if counts.max(initial=0) > 1:
                raise ValueError("SparseRows: kind 'single' needs at most one entry per row")
            if (counts == 0).any():
                self.padded = True
                full_idx = np.full(r, k, dtype=np.int32)
                full_vals = np.zeros(r, dtype=np.float64)
                has = counts == 1
                full_idx[has], full_vals[has] = idx, vals
                idx, vals = full_idx, full_vals
            self.ptr = None
        else:
            self.ptr = to_device(ptr, torch.int32, device)
        self.idx = to_device(idx, torch.int32, device)
        self.vals = None if vals is None else to_device(vals, dtype, device, round_up)
        self.csr = None
        if kind == "csr":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # CSR 'beta' and invariant notices
                self.csr = torch.sparse_csr_tensor(self.ptr, self.idx, self.vals, size=shape)

    def __matmul__(self, z: torch.Tensor) -> torch.Tensor:
        return self.matvec(z)

    def matvec(self, z: torch.Tensor, overwrite: bool = False, chunk: int | None = None,
               add: torch.Tensor | None = None) -> torch.Tensor:
        """M z (plus ``add``, in the same pass where the kind allows). ``overwrite``: z may be used as scratch (its
        values are lost). ``chunk`` ("segment"): rows taken in groups of about that many entries, so that the
        temporaries are a group's, not nnz."""
        if add is not None:
            if self.csr is not None:
                return torch.addmv(add, self.csr, z)
            if self.ptr is None:  # "single": gather, then add + value * gathered in one pass
                prod = (torch.cat([z, z.new_zeros(1)]) if self.padded else z).index_select(0, self.idx)
                return torch.addcmul(add, prod, self.vals, out=prod)
            return self.matvec(z, overwrite, chunk).add_(add)
        if self.csr is not None:
            return self.csr @ z
        if self.padded:
            z = torch.cat([z, z.new_zeros(1)])
        if self.kind == "segment" and chunk is not None and self.idx.numel() > chunk:
            return torch.cat([torch.segment_reduce(z.index_select(0, self.idx[a:e]).mul_(self.values(a, e)), "sum",
                                                   offsets=self.ptr[r0:r1 + 1] - a)
                              for r0, r1, a, e in self.row_groups(chunk)])
        if self.col_vals is not None:
            z = z.mul_(self.col_vals) if overwrite else z * self.col_vals
        prod = z.index_select(0, self.idx)
        if self.vals is not None:
            prod.mul_(self.vals)
        if self.ptr is None:
            return prod
        return torch.segment_reduce(prod, "sum", offsets=self.ptr)

    def values(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The values of the entries start..stop-1 (gathered from ``col_vals`` where A's are not stored)."""
        if self.vals is not None:
            return self.vals[start:stop]
        return self.col_vals.index_select(0, self.idx[start:stop])

    def host_ptr(self) -> np.ndarray:
        """The row pointers on the host (copied once)."""
        if self._host_ptr is None:
            self._host_ptr = self.row_ptr().cpu().numpy()
        return self._host_ptr

    def rows_of_entries(self, start: int, stop: int) -> tuple[int, int, torch.Tensor]:
        """(r0, r1, rows): the rows r0..r1-1 that hold entries start..stop-1, and each entry's row minus r0
        (int64), without a search per entry. The rows' entry counts in the range are kept on the device per range
        (the check's chunks recur): no host work and no host-to-device copy after the first call."""
        device = self.idx.device
        if (start, stop) not in self._range_rows:
            ptr = self.host_ptr()
            r0 = int(np.searchsorted(ptr, start, side="right")) - 1
            r1 = int(np.searchsorted(ptr, stop - 1, side="right")) if stop > start else r0
            counts = np.minimum(ptr[r0 + 1:r1 + 1], stop) - np.maximum(ptr[r0:r1], start)
            self._range_rows[(start, stop)] = (r0, r1, torch.as_tensor(counts, device=device))
        r0, r1, counts = self._range_rows[(start, stop)]
        rows = torch.repeat_interleave(torch.arange(r1 - r0, device=device), counts, output_size=stop - start)
        return r0, r1, rows

    def row_groups(self, chunk: int) -> list[tuple[int, int, int, int]]:
        """(first row, end row, first entry, end entry) of consecutive rows with about ``chunk`` entries."""
        if self._groups is None or self._groups[0] != chunk:
            ptr = self.host_ptr()
            groups, r0, r = [], 0, len(ptr) - 1
            while r0 < r:
                r1 = min(max(int(np.searchsorted(ptr, ptr[r0] + chunk, side="right")) - 1, r0 + 1), r)
                groups.append((r0, r1, int(ptr[r0]), int(ptr[r1])))
                r0 = r1
            self._groups = (chunk, groups)
        return self._groups[1]

    def row_min(self, z: torch.Tensor, empty: float = 1.0, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """min over the entries e of row i of z[idx_e] (``empty`` for a row without entries), for rows
        start..stop-1 ("single" only; all rows otherwise)."""
        if self.ptr is None:
            if self.padded:
                z = torch.cat([z, z.new_full((1,), empty)])
            return z.index_select(0, self.idx[start:stop])
        return torch.segment_reduce(z.index_select(0, self.idx), "min", offsets=self.ptr, initial=empty)

    def row_ptr(self) -> torch.Tensor:
        """(r+1,) int64 row starts (built on the fly for "single")."""
        if self.ptr is not None:
            return self.ptr.long()
        return torch.arange(self.shape[0] + 1, dtype=torch.int64, device=self.idx.device)

    def to_dense(self) -> torch.Tensor:
        """The matrix as a dense tensor (tests and small problems)."""
        r, k = self.shape
        rows = torch.repeat_interleave(torch.arange(r, device=self.idx.device), self.row_ptr().diff())
        idx = self.idx.long()
        keep = idx < k  # the sentinel entries of a padded "single" matrix
        vals = self.values()
        out = torch.zeros(r, k, dtype=vals.dtype, device=vals.device)
        out.index_put_((rows[keep], idx[keep]), vals[keep], accumulate=True)
        return out

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The stored tensors by name, for memory accounting."""
        out = {f"{name}.idx": self.idx}
        if self.vals is not None:
            out[f"{name}.vals"] = self.vals
        if self.ptr is not None:
            out[f"{name}.ptr"] = self.ptr
        return out


def to_device(a, dtype: torch.dtype, device: torch.device, round_up: bool = False) -> torch.Tensor:
    """A host array as a contiguous tensor of ``dtype`` on ``device``.

    Converted to ``dtype`` on the host first (float64 data crosses to a float32 device as float32), and sent to
    a GPU from pinned memory without blocking: the copies of a problem's arrays queue up on the stream while
    the host prepares the next one. Frozen (read-only) standard-form arrays are copied, not shared.
    ``round_up``: a float value that ``dtype`` cannot hold becomes the next one above it, not the nearest.
    """
    a = np.asarray(a)
    if not a.flags.writeable:  # standard-form arrays are frozen; torch wants writable memory
        a = a.copy()
    exact = torch.from_numpy(np.ascontiguousarray(a))
    host = exact.to(dtype)
    if round_up and dtype.is_floating_point and host.dtype != exact.dtype:
        below = host.to(exact.dtype) < exact
        host = torch.where(below, torch.nextafter(host, torch.full((), torch.inf, dtype=dtype)), host)
    if device.type != "cuda":
        return host if device.type == "cpu" else host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
