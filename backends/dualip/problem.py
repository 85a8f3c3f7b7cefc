"""The scaled problem on the device: min c~^T x s.t. l~ <= A~ x <= u~, x in C, with A~ = D A, c~ = c / sigma.

D = diag(1 / ||A_r||_2) makes every coupling row unit-norm; sigma = RMS(c) makes gamma relative. A dual
y~ of the scaled problem is y = sigma * D y~ for the original one, and every bound or objective of the
scaled problem times sigma (plus the offset) is the original one. In a sharded solve (``comm``) the standard
form holds one rank's columns and all rows: row norms, sigma and ||A||^2 are reduced over the ranks, so every
rank scales exactly as one process holding the whole problem would. ``storage`` picks how the products
are held: "fast" (torch sparse CSR, membership mat-vecs: the "torch" and "fused_cpu" engines) or "compact"
(gathers and segment sums, A stored once per orientation, <= 40 bytes per nonzero in float32: the "compact" and
"compiled" engines); see options.STORAGE and docs/algorithm.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

from dualip_model.errors import ModelError
from dualip_model.polytopes import EQUALITY_KINDS, BlockKind
from dualip_model.standard_form import StandardForm

from .block_order import FAST_KINDS, size_groups
from .comm import LOCAL, Comm
from .operators import SparseRows, to_device
from .repair import RepairPlan, chunk_size


@dataclass
class Blocks:
    """Per-block device data for the fast projection (offsets into the column vector, counts, rhs, flags).

    ``seg`` (an int32 block index per column) makes spreads one gather. In the fast storage, blocks sorted by
    size (``groups``, see block_order.py) make block sums, maxima and minima dense row reductions of one
    (blocks, size) view per size; otherwise ``member`` (the 0/1 block-membership CSR) makes block sums sparse
    mat-vecs, faster than segment sums on CPU.
    """

    n: int  # columns
    ptr_host: np.ndarray  # (nb+1,) block_ptr on the host, to cut the columns into chunks of whole blocks
    offsets: torch.Tensor  # (nb+1,) block_ptr, int32 (compact storage) or int64
    counts: torch.Tensor  # (nb,) int32 columns per block
    seg: torch.Tensor | None  # (n,) int32 block of every column
    member: torch.Tensor | None  # (nb, n) sparse CSR of ones, member[i, j] = 1 iff column j is in block i
    groups: tuple[tuple[int, int, int, int, int], ...] | None  # (b0, b1, a, e, size) per size (fast storage)
    rhs: torch.Tensor  # (nb,)
    is_le: torch.Tensor  # (nb,) bool: SIMPLEX_LE or BOXCUT_LE
    is_box: torch.Tensor  # (nb,) bool: BOX
    any_box: bool  # some block is BOX (else the box branches of the kernels are skipped)
    lower: torch.Tensor | float  # (n,) or scalar
    upper: torch.Tensor | float

    def sum(self, z: torch.Tensor) -> torch.Tensor:
        """(nb,) sums of z within each block."""
        if self.groups is not None:
            return self._grouped(z, "sum")
        if self.member is not None:
            return self.member @ z
        return torch.segment_reduce(z, "sum", offsets=self.offsets)

    def reduce(self, z: torch.Tensor, how: str, initial: float | None = None) -> torch.Tensor:
        """(nb,) "min" / "max" / "sum" of z within each block, ``initial`` included (the value of an empty block)."""
        if self.groups is not None:
            return self._grouped(z, how, initial)
        return torch.segment_reduce(z, how, offsets=self.offsets, initial=initial)

    _EMPTY = {"sum": 0.0, "max": -torch.inf, "min": torch.inf}  # segment_reduce's value of an empty block

    def _grouped(self, z: torch.Tensor, how: str, initial: float | None = None) -> torch.Tensor:
        """reduce() as one row reduction of a (blocks, size) view per size."""
        parts = []
        for b0, b1, a, e, size in self.groups:
            if size == 0:
                parts.append(z.new_full((b1 - b0,), self._EMPTY[how] if initial is None else initial))
                continue
            rows = z[a:e].reshape(b1 - b0, size)
            if how == "sum":
                part = rows.sum(1)
            else:
                part = rows.amax(1) if how == "max" else rows.amin(1)
            if initial is not None:
                part = part + initial if how == "sum" else (part.clamp_(min=initial) if how == "max"
                                                          else part.clamp_(max=initial))
            parts.append(part)
        return torch.cat(parts)

    def count(self, mask: torch.Tensor) -> torch.Tensor:
        """(nb,) the number of True entries of a column mask within each block, in the blocks' dtype."""
        if self.groups is None:
            return self.sum(mask.to(self.rhs.dtype))
        return torch.cat([mask[a:e].view(b1 - b0, size).sum(1) if size else mask.new_zeros(b1 - b0, dtype=torch.long)
                          for b0, b1, a, e, size in self.groups]).to(self.rhs.dtype)

    def minus(self, z: torch.Tensor, t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """z - t[block of each column] (into ``out``, which may be z): per size a broadcast, else a spread."""
        if self.groups is None:  # (without ``out`` the spread's memory becomes the result: one temporary)
            return self.spread(t).neg_().add_(z) if out is None else torch.sub(z, self.spread(t), out=out)
        out = torch.empty_like(z) if out is None else out
        for b0, b1, a, e, size in self.groups:
            if size:
                torch.sub(z[a:e].view(b1 - b0, size), t[b0:b1, None], out=out[a:e].view(b1 - b0, size))
        return out

    def spread(self, t: torch.Tensor) -> torch.Tensor:
        """(n,) the value of each column's block."""
        if self.seg is not None:
            return t.index_select(0, self.seg)
        return torch.repeat_interleave(t, self.counts, output_size=self.n)

    def chunks(self, size: int) -> list[tuple[int, int, int, int]]:
        """(first block, end block, first column, end column) of consecutive runs of whole blocks, about
        ``size`` columns each (a larger block is a run of its own)."""
        ptr, nb = self.ptr_host, len(self.ptr_host) - 1
        out, b0 = [], 0
        while b0 < nb:
            b1 = int(np.searchsorted(ptr, ptr[b0] + size, side="right")) - 1
            b1 = min(max(b1, b0 + 1), nb)
            out.append((b0, b1, int(ptr[b0]), int(ptr[b1])))
            b0 = b1
        return out

    def slice(self, b0: int, b1: int) -> "Blocks":
        """Blocks b0..b1-1 alone, over their own columns (views, and the rebased offsets); all of them: self."""
        if b0 == 0 and b1 == len(self.ptr_host) - 1:
            return self
        a, e = int(self.ptr_host[b0]), int(self.ptr_host[b1])

        def cols(v):
            return v[a:e] if isinstance(v, torch.Tensor) else v
        return Blocks(n=e - a, ptr_host=self.ptr_host[b0:b1 + 1] - a, offsets=self.offsets[b0:b1 + 1] - a,
                      counts=self.counts[b0:b1],
                      seg=None if self.seg is None else self.seg[a:e] - b0, member=None, groups=None,
                      rhs=self.rhs[b0:b1],
                      is_le=self.is_le[b0:b1], is_box=self.is_box[b0:b1], any_box=self.any_box,
                      lower=cols(self.lower), upper=cols(self.upper))

    @staticmethod
    def build(sf: StandardForm, device: torch.device, dtype: torch.dtype, compact: bool) -> "Blocks":
        """The blocks of ``sf`` on ``device``; ``compact``: no groups, no membership matrix and int32 offsets
        (int64 ones make CPU segment reductions faster)."""
        n, nb = sf.n_cols, sf.n_blocks

        def t(a, dt=dtype):
            return to_device(a, dt, device)

        counts = np.diff(sf.block_ptr)
        groups = None if compact else size_groups(sf.block_ptr)
        member = None
        if not compact and groups is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
                member = torch.sparse_csr_tensor(t(sf.block_ptr, torch.int32),
                                                 torch.arange(n, dtype=torch.int32, device=device),
                                                 torch.ones(n, dtype=dtype, device=device), size=(nb, n))
        kinds = sf.block_kind
        uniform = sf.col_lower.strides == (0,) and sf.col_upper.strides == (0,)
        return Blocks(
            n=n, ptr_host=np.asarray(sf.block_ptr, dtype=np.int64),
            offsets=t(sf.block_ptr, torch.int32 if compact else torch.int64), counts=t(counts, torch.int32),
            # the block of each column: spreads are one gather (repeat_interleave would build an int64 index)
            seg=t(np.repeat(np.arange(nb, dtype=np.int32), counts), torch.int32), member=member, groups=groups,
            rhs=t(sf.block_rhs), is_le=t(np.isin(kinds, (BlockKind.SIMPLEX_LE, BlockKind.BOXCUT_LE)), torch.bool),
            is_box=t(kinds == BlockKind.BOX, torch.bool), any_box=bool((kinds == BlockKind.BOX).any()),
            lower=float(sf.col_lower[0]) if uniform and n else t(sf.col_lower),
            upper=float(sf.col_upper[0]) if uniform and n else t(sf.col_upper),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"blocks.{k}": getattr(self, k) for k in ("offsets", "counts", "seg", "member", "rhs", "is_le",
                                                          "is_box", "lower", "upper")}
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


STORAGES = ("fast", "compact")


@dataclass
class ScaledProblem:
    """Device tensors of the scaled problem plus the scalings that map results back."""

    sf: StandardForm
    device: torch.device
    dtype: torch.dtype
    storage: str  # "fast" (torch sparse CSR, block index per column) or "compact" (<= 40 B/nnz, traceable)
    A: SparseRows  # (m, n) rows scaled to unit norm; compact: each row's entries in the repair's order
    At: SparseRows  # (n, m) A~^T (the CSC arrays of A~); "single" when every column lies in at most one row
    c: torch.Tensor  # (n,) c / sigma
    row_lower: torch.Tensor  # (m,) D l
    row_upper: torch.Tensor  # (m,) D u
    row_scale: np.ndarray  # (m,) float64 D
    sigma: float
    norm_sq: float  # ||A~||_2^2 (upper estimate)
    blocks: Blocks
    fast_projection: bool  # all blocks are BOX / SIMPLEX_LE / SIMPLEX_EQ
    repairable: bool  # A >= 0, u >= 0, columns from 0: repair.repair applies (see _repairable)
    repair_plan: RepairPlan | None  # rows' entries sorted for the greedy cut (repairable problems only)
    b_norm: float  # ||finite row bounds|| in original units, for the relative infeasibility
    row_size: torch.Tensor  # (m,) 1 + |finite side| per row in original units, for per-row relative measures
    comm: Comm = LOCAL  # the ranks sharing the columns (LOCAL: this process holds them all)

    @property
    def n(self) -> int:
        return self.sf.n_cols

    @property
    def m(self) -> int:
        return self.sf.n_rows

    @property
    def zero_feasible(self) -> bool:
        """x = 0 meets every row and block (no floor, no equality block): the repair is exact by construction and
        no Farkas ray can exist."""
        return self.repairable and (self.repair_plan is None or not self.repair_plan.moves)

    def chunk(self, count: int) -> int | None:
        """How many entries or columns (of ``count``) the check handles at once: about 1/16 of them in the compact
        storage, all at once (None) in the fast one."""
        return chunk_size(count) if self.storage == "compact" else None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every device tensor the problem holds, by name (shared storages appear under each name)."""
        out = {**self.A.tensors("A"), **self.At.tensors("At"), "c": self.c, "row_lower": self.row_lower,
               "row_upper": self.row_upper, "row_size": self.row_size, **self.blocks.tensors()}
        if self.repair_plan is not None:
            out.update(self.repair_plan.tensors())
        return out

    @staticmethod
    def build(sf: StandardForm, device: torch.device, dtype: torch.dtype, seed: int = 0,
              comm: Comm = LOCAL, storage: str = "fast", values: torch.dtype | None = None) -> "ScaledProblem":
        """``values``: the dtype of A's stored values (default ``dtype``; 16-bit ones in the compact storage only)."""
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {storage!r}")
        values = values or dtype
        if values != dtype and storage != "compact":
            raise ValueError("A's values in another dtype need the compact storage (CSR products take one dtype)")
        n, m = sf.n_cols, sf.n_rows
        compact = storage == "compact"
        data = np.asarray(sf.A_data, dtype=np.float64)
        norms = np.sqrt(comm.sum_np(np.bincount(sf.A_indices, weights=data * data, minlength=m)))
        scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)
        scaled = data * scale[sf.A_indices]
        c_sq, n_all = comm.sum_np([float(np.sum(sf.c * sf.c)), n])  # pairwise sum: no BLAS thread dependence
        sigma = float(np.sqrt(c_sq / n_all)) if n_all else 1.0  # RMS cost: gamma is relative to it
        sigma = sigma if sigma > 0 else 1.0
        if values == torch.float16:
            _check_float16(scaled, sf.A_indices)
        A_csr = scipy.sparse.csc_matrix((scaled, sf.A_indices, sf.A_indptr), shape=(m, n)).tocsr()  # no copy of A
        A_csr.sort_indices()
        c_host = sf.c / sigma
        lo, hi = sf.row_lower, sf.row_upper
        repair = comm.max_np(_REPAIRS.index(_repairable(sf)))  # the least repairable rank's kind, for all
        repairable = _REPAIRS[int(repair)] is not None
        # values rounded up where the repair applies: A_stored >= A >= 0, so A x <= A_stored x <= u for x >= 0
        up = repairable and values != torch.float64
        # rows of A in the repair's order (worst cost per unit of row use first) where a repair applies
        order = RepairPlan.order(A_csr, c_host) if repairable and m else None

        def t(a, dt=dtype):
            return to_device(a, dt, device)

        single = np.diff(sf.A_indptr).max(initial=0) <= 1  # every column in at most one row (matching)
        At = SparseRows(sf.A_indptr, sf.A_indices, scaled, (n, m),
                        "single" if single else ("segment" if compact else "csr"), device, values, round_up=up)
        rows_sorted = A_csr.indices if order is None else A_csr.indices[order]
        if compact and single:  # A's values are At's, one per column: not stored twice
            A = SparseRows(A_csr.indptr, rows_sorted, None, (m, n), "segment", device, values, col_vals=At.vals)
        elif compact:
            A = SparseRows(A_csr.indptr, rows_sorted, A_csr.data if order is None else A_csr.data[order], (m, n),
                           "segment", device, values, round_up=up)
        else:
            A = SparseRows(A_csr.indptr, A_csr.indices, A_csr.data, (m, n), "csr", device, dtype, round_up=up)
        plan = None
        if order is not None:
            rows = A if compact else SparseRows(A_csr.indptr, rows_sorted, A_csr.data[order], (m, n), "segment",
                                                device, dtype, round_up=up)
            equality = np.isin(sf.block_kind, EQUALITY_KINDS)
            plan = RepairPlan(rows=rows, single=single, equality=t(equality, torch.bool) if equality.any() else None,
                              floors=_REPAIRS[int(repair)] == "moves" and bool(comm.max_np((lo > 0).any())))
        blocks = Blocks.build(sf, device, dtype, compact)
        fast = not comm.max_np(not np.isin(sf.block_kind, FAST_KINDS).all())
        finite = np.concatenate([lo[np.isfinite(lo)], hi[np.isfinite(hi)]])
        side = np.maximum(np.where(np.isfinite(lo), np.abs(lo), 0.0), np.where(np.isfinite(hi), np.abs(hi), 0.0))
        return ScaledProblem(
            sf=sf, device=device, dtype=dtype, storage=storage, A=A, At=At, c=t(c_host), row_lower=t(lo * scale),
            row_upper=t(hi * scale), row_scale=scale, sigma=sigma,
            # the stored values may exceed the exact ones by a unit of their last place
            norm_sq=_norm_sq_upper(A_csr, seed, comm) * (1 + torch.finfo(values).eps) ** 2, blocks=blocks,
            fast_projection=fast,
            repairable=repairable, repair_plan=plan,
            b_norm=float(np.linalg.norm(finite)), row_size=t(1.0 + side), comm=comm,
        )


def _check_float16(scaled: np.ndarray, rows: np.ndarray) -> None:
    """Refuse float16 values when a nonzero of the row-scaled A lies below float16's normal range (2^-14)."""
    tiny = (scaled != 0) & (np.abs(scaled) < np.finfo(np.float16).tiny)
    if tiny.any():
        worst = int(np.argmin(np.where(tiny, np.abs(scaled), np.inf)))
        raise ModelError(f"DualipOptions.matrix_dtype 'float16': {int(tiny.sum())} coefficients fall below float16's "
                         f"normal range after scaling each row to unit norm (smallest {abs(scaled[worst]):.3g}, in "
                         f"coupling row {int(rows[worst])}); use 'bfloat16' (float32's range)")


GRAM_FLOPS = 16  # A A^T is formed for the power iteration where that costs at most this many flops per nonzero of A


def _norm_sq_upper(A_csr, seed: int, comm: Comm = LOCAL, iters: int = 60) -> float:
    """||A||_2^2 by power iteration on A A^T (float64), times 1.02, capped by ||A||_1 ||A||_inf. On one process A A^T
    is formed once where A's columns have few entries each (the multi-objective family at 1e6 nonzeros: 25 ms for
    A A^T and its 60 products, against 160 ms for 120 products with A)."""
    m, n = A_csr.shape
    if comm.sum_np(A_csr.nnz) == 0:
        return 1.0
    counts = np.bincount(A_csr.indices, minlength=n).astype(np.int64)  # entries per column
    if comm.max_np(counts.max(initial=0)) <= 1:  # one nonzero per column: A A^T is diagonal
        rows = np.repeat(np.arange(m), np.diff(A_csr.indptr))
        row_sq = comm.sum_np(np.bincount(rows, weights=A_csr.data * A_csr.data, minlength=m))
        return float(row_sq.max()) * (1 + 1e-6)  # float32 rounding room
    abs_a = np.abs(A_csr)
    col_sum = comm.max_np(np.asarray(abs_a.sum(axis=0)).max(initial=0.0))
    cap = float(col_sum * comm.sum_np(np.asarray(abs_a.sum(axis=1)).ravel()).max())
    flops = int(counts @ counts)  # of A A^T, and a bound on its nonzeros with m^2
    if comm.world == 1 and flops <= GRAM_FLOPS * A_csr.nnz and min(flops, m * m) <= A_csr.nnz:
        product = (A_csr @ A_csr.T).tocsr().__matmul__  # (no more memory than A's)
    else:
        def product(y):
            return comm.sum_np(A_csr @ (A_csr.T @ y))
    rng = np.random.default_rng(seed)
    y = rng.random(m) + 0.5
    est = 0.0
    for _ in range(iters):
        z = product(y)
        est = float(np.linalg.norm(z) / np.linalg.norm(y))
        if est == 0.0:
            return 1.0
        y = z / np.linalg.norm(z)
    return min(1.02 * est, cap)


_REPAIRS = ("cut", "moves", None)  # from most to least repairable: a sharded problem takes its ranks' worst


def _repairable(sf: StandardForm) -> str | None:
    """Which repair applies: "cut" where scaling columns down (x -> diag(f) x, 0 <= f <= 1) can only remove row
    violations and x = 0 is feasible (A >= 0, u >= 0, no floor l_r > 0, blocks down-closed at 0); "moves" where
    equality blocks or floors need mass put back after the cut (A >= 0, u >= 0, columns from 0); else None."""
    if (sf.A_data < 0).any() or (sf.n_rows and (sf.row_upper < 0).any()):
        return None
    if (np.asarray(sf.col_lower) != 0).any():
        return None
    floors = sf.n_rows and (sf.row_lower > 0).any()  # a row with l_r <= 0 holds for every x >= 0 (A >= 0)
    return "moves" if floors or np.isin(sf.block_kind, EQUALITY_KINDS).any() else "cut"
