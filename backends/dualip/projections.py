"""Exact, batched Euclidean projection and linear minimization over the block polytopes C_1 x ... x C_nb.

    project(v)_i = clip(v_i - tau_i, l, u) with tau_i solving sum clip(v_i - tau_i, l, u) = r_i;  linear_minimize(g)_i = min_{x in C_i} g^T x

Everything is computed for all blocks at once with segmented sorts (two stable ``torch.sort`` calls: by value,
then by block id), segmented prefix sums (a global ``cumsum`` minus the value before each segment) and segment
reductions (``index_add_``). There is no Python loop over blocks and no host-device synchronization in the
per-call functions (no ``.item()``, no data-dependent shapes), so ``project``, ``linear_minimize`` and
``block_sums`` can run inside ``torch.compile(fullgraph=True)`` and on CUDA without syncs. Shapes depend only on
the BlockStructure, which is built once from a StandardForm.

Block kinds (see ``dualip_model.polytopes``): BOX {l<=x<=u}; SIMPLEX_LE/EQ {x>=0, sum x <=/== r};
BOXCUT_LE/EQ {l<=x<=u, sum x <=/== r}. The simplex kinds are handled as box-cuts (their bounds come from
col_lower/col_upper); an upper bound that can never bind (u_j >= r - sum_{k != j} l_k, e.g. u >= r on a simplex)
is dropped at construction, so a simplex column costs one sort key instead of two.

Accuracy: the breakpoint search uses float64 prefix sums over the whole (sorted) event array; the quantities that
are returned (tau, the fractional coordinate, the objective value) are recomputed from exact per-block sums
(``index_add_``) once the right breakpoint interval is known, so the prefix-sum rounding (about 1e-16 times the
running total over all blocks) can only pick an adjacent interval when the answer sits within that rounding of a
breakpoint, which moves the result by the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualip_model.polytopes import BlockKind
from dualip_model.standard_form import StandardForm

__all__ = ["BlockStructure", "project", "linear_minimize", "block_sums"]

_ACC = torch.float64  # accumulation dtype of the breakpoint prefix sums


@dataclass(eq=False)
class BlockStructure:
    """Device tensors describing the block polytopes, precomputed once: C = prod_i {l<=x<=u, sum x (<=|==) r_i}.

    Per-column memory held (n columns, b = bytes of ``dtype``; index tensors are int32, or int64 when 2n >= 2^31,
    which doubles the 4 B entries below):

    - ``seg``: 4 B (block id of every column; always present)
    - ``lower`` / ``upper``: b each, or 0 when the bound is the same for all columns (stored as a 0-dim tensor)
    - ``p_code``: 1 B (uint8 event flags), or 0 when every column lies in a sum block, has a finite lower bound
      and no bindable upper bound (the usual simplex case)
    - ``p_cols_a``: 4 B per column of a sum block whose finite upper bound can bind (never on a simplex), else 0
    - ``p_cols_b``: 0 when every column lies in a sum block with a finite lower bound, else 4 B per such column
    - ``lm_cols``: 0 when every column lies in a sum block and the columns of each block are already in tie-break
      order (e.g. no infinite bounds, or the same bound pattern throughout a block), else 4 B per sum-block column

    So a pure simplex problem with uniform bounds holds 4 B/column; the worst case (float64, mixed kinds, per-column
    infinite bounds) is 4 + 16 + 1 + 4 + 4 + 4 = 33 B/column. Everything else is per block (a few int/float
    arrays of length n_blocks(+1)). ``nbytes`` reports the total.
    """

    n: int
    n_blocks: int
    dtype: torch.dtype
    device: torch.device
    idx_dtype: torch.dtype
    seg: torch.Tensor  # (n,) idx: block of every column
    block_ptr: torch.Tensor  # (nb+1,) idx
    kind: torch.Tensor  # (nb,) int8 BlockKind codes
    rhs: torch.Tensor  # (nb,) dtype; r_i (0 for BOX)
    is_box: torch.Tensor  # (nb,) bool
    is_le: torch.Tensor  # (nb,) bool
    is_eq: torch.Tensor  # (nb,) bool
    lower: torch.Tensor  # (n,) or () dtype
    upper: torch.Tensor  # (n,) or () dtype
    has_sum: bool  # any block with a sum constraint
    # projection: breakpoint events. A event of column j at v_j - u_j (leaves its upper bound), B event at
    # v_j - l_j (reaches its lower bound); only for columns of sum blocks whose bound is finite (and can bind).
    p_cols_a: torch.Tensor  # (nA,) idx, columns with an A event
    p_cols_b: torch.Tensor | None  # (nB,) idx, columns with a B event; None: all n columns
    p_code: torch.Tensor | None  # (n,) uint8, bit0: has A event, bit1: has B event; None: bit1 only, everywhere
    p_ptr: torch.Tensor  # (nb+1,) idx, events of block i are p_ptr[i]:p_ptr[i+1] after the segmented sort
    p_k0: torch.Tensor  # (nb,) float64, columns without an A event (free at tau -> -inf)
    n_events: int
    # linear minimization: columns of sum blocks, in tie-break order (see _lm_order)
    lm_cols: torch.Tensor | None  # (n_sum,) idx; None: arange(n)
    lm_ptr: torch.Tensor  # (nb+1,) idx, sum columns of block i are lm_ptr[i]:lm_ptr[i+1] after the sort
    lm_count: torch.Tensor  # (nb,) idx
    n_sum_cols: int
    lm_has_inf: bool  # an infinite bound on a column of a sum block

    @classmethod
    def from_standard_form(
        cls, sf: StandardForm, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
    ) -> BlockStructure:
        """Precompute the block description of ``sf`` on ``device`` in ``dtype`` (host work, numpy, done once)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        n, nb = int(sf.n_cols), int(sf.n_blocks)
        ptr = np.asarray(sf.block_ptr, dtype=np.int64)
        if ptr.shape != (nb + 1,) or ptr[0] != 0 or ptr[-1] != n or np.any(np.diff(ptr) < 0):
            raise ValueError("block_ptr must be nondecreasing from 0 to n_cols")
        idx_np = np.int32 if 2 * n + 1 < 2**31 else np.int64  # event positions go up to 2n
        idx_t = torch.int32 if idx_np is np.int32 else torch.int64
        counts = np.diff(ptr)
        seg = np.repeat(np.arange(nb, dtype=np.int64), counts)
        kind = np.asarray(sf.block_kind, dtype=np.int8)
        r = np.asarray(sf.block_rhs, dtype=np.float64)
        lo = np.broadcast_to(np.asarray(sf.col_lower, dtype=np.float64), (n,))
        hi = np.broadcast_to(np.asarray(sf.col_upper, dtype=np.float64), (n,))

        is_box = kind == BlockKind.BOX
        is_eq = (kind == BlockKind.SIMPLEX_EQ) | (kind == BlockKind.BOXCUT_EQ)
        is_le = ~is_box & ~is_eq
        in_sum = ~is_box[seg]

        # Upper bounds that can bind: u_j < r - sum_{k != j} l_k (otherwise implied by x >= l and the sum row).
        lo_fin = np.isfinite(lo)
        lf = np.where(lo_fin, lo, 0.0)
        l_ninf_blk = np.bincount(seg, weights=(~lo_fin).astype(np.float64), minlength=nb)
        l_sum_blk = np.bincount(seg, weights=lf, minlength=nb)
        l_abs_blk = np.bincount(seg, weights=np.abs(lf), minlength=nb)
        others_ninf = l_ninf_blk[seg] - (~lo_fin)
        implied = r[seg] - (l_sum_blk[seg] - lf)
        margin = np.where(
            l_abs_blk[seg] > 0, 4 * np.finfo(np.float64).eps * (counts[seg] + 2) * (np.abs(r[seg]) + l_abs_blk[seg]), 0.0
        )
        redundant = (others_ninf == 0) & (hi >= implied + margin)
        has_a = in_sum & np.isfinite(hi) & ~redundant
        has_b = in_sum & lo_fin
        cols_a = np.flatnonzero(has_a).astype(idx_np)
        cols_b = None if bool(has_b.all()) else np.flatnonzero(has_b).astype(idx_np)
        code = None if (cols_a.size == 0 and cols_b is None) else (has_a.astype(np.uint8) | (has_b.astype(np.uint8) << 1))
        ev_blk = np.bincount(seg, weights=has_a.astype(np.float64) + has_b, minlength=nb).astype(np.int64)
        p_ptr = np.concatenate([[0], np.cumsum(ev_blk)])
        k0 = np.bincount(seg, weights=(in_sum & ~has_a).astype(np.float64), minlength=nb)

        # Linear minimization: sum columns, ordered so that ties in g break as
        # [l=-inf only] < [both finite] < [both infinite] < [u=+inf only] (keeps the greedy solution finite).
        sum_cols = np.flatnonzero(in_sum)
        hi_fin = np.isfinite(hi)
        cls_all = np.where(
            ~lo_fin & hi_fin, 0, np.where(lo_fin & hi_fin, 1, np.where(~lo_fin & ~hi_fin, 2, 3))
        ).astype(np.int8)
        cls_sum = cls_all[sum_cols]
        lm_has_inf = bool(np.any(cls_sum != 1))
        seg_sum = seg[sum_cols]
        same_block = seg_sum[1:] == seg_sum[:-1]
        if sum_cols.size == n and not np.any(same_block & (np.diff(cls_sum) < 0)):
            lm_cols = None  # already in tie-break order within every block
        else:
            lm_cols = sum_cols[np.lexsort((cls_sum, seg_sum))].astype(idx_np)
        lm_count = np.bincount(seg[sum_cols], minlength=nb).astype(np.int64)
        lm_ptr = np.concatenate([[0], np.cumsum(lm_count)])

        def dev(a, dt):
            return torch.from_numpy(np.array(a, copy=True)).to(device=device, dtype=dt)

        def bound(a):
            if n > 0 and np.all(a == a[0]):
                return torch.tensor(float(a[0]), dtype=dtype, device=device)
            if n == 0:
                return torch.tensor(0.0, dtype=dtype, device=device)
            return dev(a, dtype)

        return cls(
            n=n,
            n_blocks=nb,
            dtype=dtype,
            device=device,
            idx_dtype=idx_t,
            seg=dev(seg, idx_t),
            block_ptr=dev(ptr, idx_t),
            kind=dev(kind, torch.int8),
            rhs=dev(np.where(is_box, 0.0, r), dtype),
            is_box=dev(is_box, torch.bool),
            is_le=dev(is_le, torch.bool),
            is_eq=dev(is_eq, torch.bool),
            lower=bound(lo),
            upper=bound(hi),
            has_sum=bool(np.any(~is_box)),
            p_cols_a=dev(cols_a, idx_t),
            p_cols_b=None if cols_b is None else dev(cols_b, idx_t),
            p_code=None if code is None else dev(code, torch.uint8),
            p_ptr=dev(p_ptr, idx_t),
            p_k0=dev(k0, _ACC),
            n_events=int(p_ptr[-1]),
            lm_cols=None if lm_cols is None else dev(lm_cols, idx_t),
            lm_ptr=dev(lm_ptr, idx_t),
            lm_count=dev(lm_count, idx_t),
            n_sum_cols=int(sum_cols.size),
            lm_has_inf=lm_has_inf,
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors of this structure."""
        total = 0
        for value in vars(self).values():
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
        return total


# ----------------------------------------------------------------------------------------------------- helpers


def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t[idx] for a per-column tensor, expanded to idx's length for a uniform (0-dim) one."""
    if t.dim() == 0:
        return t.expand(idx.shape[0])
    return t.index_select(0, idx)


def _full(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.expand(n) if t.dim() == 0 else t


def _blk_sum(x: torch.Tensor, seg: torch.Tensor, nb: int, dtype: torch.dtype) -> torch.Tensor:
    """Per-segment sums of x (segment id seg), accumulated in dtype."""
    return torch.zeros(nb, dtype=dtype, device=x.device).index_add_(0, seg, x.to(dtype))


def _segment_sort(keys: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation sorting keys ascending within segments, segments in ascending order; ties keep input order."""
    _, p1 = torch.sort(keys, stable=True)
    seg_sorted, p2 = torch.sort(seg.index_select(0, p1), stable=True)
    return p1.index_select(0, p2), seg_sorted


def _seg_cumsum(x: torch.Tensor, seg_s: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Inclusive prefix sums of x restarted at every segment (x sorted by segment, segment i at ptr[i]:ptr[i+1])."""
    cs = torch.cumsum(x, 0, dtype=x.dtype)
    cs_pad = torch.cat([cs.new_zeros(1), cs])
    return cs - cs_pad.index_select(0, ptr.index_select(0, seg_s))


def _local(seg_s: torch.Tensor, ptr: torch.Tensor, length: int) -> torch.Tensor:
    """Position of every sorted element inside its segment."""
    pos = torch.arange(length, dtype=ptr.dtype, device=ptr.device)
    return pos - ptr.index_select(0, seg_s)


# ------------------------------------------------------------------------------------------------- public API


def block_sums(x: torch.Tensor, bs: BlockStructure) -> torch.Tensor:
    """Per-block sums: out_i = sum_{j in block i} x_j, shape (n_blocks,), dtype of x."""
    return torch.zeros(bs.n_blocks, dtype=x.dtype, device=x.device).index_add_(0, bs.seg, x)


def project(v: torch.Tensor, bs: BlockStructure) -> torch.Tensor:
    """Euclidean projection onto prod_i C_i: x = clip(v - tau[block], l, u), tau_i from s_i(tau) = r_i (tau=0 if BOX/slack LE).

    s_i(tau) = sum_{j in i} clip(v_j - tau, l_j, u_j) is piecewise linear and nonincreasing with breakpoints
    v_j - u_j and v_j - l_j. They are sorted within blocks, s_i is evaluated at every breakpoint with segmented
    prefix sums, the interval holding the root is located by counting breakpoints with s > r, and tau is
    recomputed in closed form from exact per-block sums over the resulting active set. ``v`` must be finite.
    Blocks whose set is empty (e.g. EQ with r outside [sum l, sum u]) get some point of the box.
    """
    l, u = bs.lower, bs.upper
    x_box = torch.clamp(v, l, u)
    if not bs.has_sum:
        return x_box
    n, nb, dt, dev = bs.n, bs.n_blocks, v.dtype, v.device
    seg = bs.seg
    n_a = bs.p_cols_a.shape[0]
    cols_a = bs.p_cols_a
    cols_b = bs.p_cols_b if bs.p_cols_b is not None else torch.arange(n, dtype=bs.idx_dtype, device=dev)

    # Breakpoints, sorted within blocks. A event: v - u (column leaves its upper bound as tau grows),
    # B event: v - l (column reaches its lower bound). On ties A events come first (they are listed first).
    ev_col = torch.cat([cols_a, cols_b])
    t = torch.cat([v.index_select(0, cols_a) - _take(u, cols_a), v.index_select(0, cols_b) - _take(l, cols_b)])
    perm, seg_s = _segment_sort(t, seg.index_select(0, ev_col))
    t_s = t.index_select(0, perm).to(_ACC)
    is_a = perm < n_a

    # s(t_k) = S0 + sum_{e <= k} sign_e (t_e - t_k) - K0 t_k, with S0 = sum_{has A} u + sum_{no A} v, sign A=+1, B=-1.
    if bs.p_code is None:
        has_a = None
        s0_terms = v
    else:
        has_a = (bs.p_code & 1).bool()
        s0_terms = torch.where(has_a, u, v)
    S0 = _blk_sum(s0_terms, seg, nb, _ACC)
    P = _seg_cumsum(torch.where(is_a, t_s, -t_s), seg_s, bs.p_ptr)
    C = _seg_cumsum(torch.where(is_a, 1, -1).to(bs.idx_dtype), seg_s, bs.p_ptr)
    r64 = bs.rhs.to(_ACC)
    s_at = S0.index_select(0, seg_s) + P - t_s * (bs.p_k0.index_select(0, seg_s) + C.to(_ACC))
    above = s_at > r64.index_select(0, seg_s)

    # c_i = number of breakpoints with s > r: tau lies in [t_{c-1}, t_c]; events at local position < c are passed.
    c = torch.zeros(nb, dtype=bs.idx_dtype, device=dev).index_add_(0, seg_s, above.to(bs.idx_dtype))
    passed = _local(seg_s, bs.p_ptr, bs.n_events) < c.index_select(0, seg_s)
    n_passed = torch.zeros(n, dtype=torch.int32, device=dev).index_add_(
        0, ev_col.index_select(0, perm), passed.to(torch.int32)
    )
    if has_a is None:
        upper = torch.zeros_like(n_passed, dtype=torch.bool)
        lower = n_passed == 1
    else:
        has_b = (bs.p_code & 2).bool()
        upper = has_a & (n_passed == 0)
        lower = has_b & (n_passed == has_a.to(torch.int32) + has_b.to(torch.int32))
    fixed = torch.where(upper, u, torch.where(lower, l, v))
    N = _blk_sum(fixed, seg, nb, _ACC)
    K = _blk_sum((~(upper | lower)).to(dt), seg, nb, _ACC)
    tau = torch.where(K > 0, (N - r64) / K.clamp_min(1.0), torch.zeros_like(N)).to(dt)

    s0 = _blk_sum(x_box, seg, nb, _ACC)
    active = bs.is_eq | (bs.is_le & (s0 > r64))
    x_free = torch.clamp(v - tau.index_select(0, seg), l, u)
    x_act = torch.where(upper, u, torch.where(lower, l, x_free))
    return torch.where(active.index_select(0, seg), x_act, x_box)


def linear_minimize(g: torch.Tensor, bs: BlockStructure) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per block: value_i = min_{x in C_i} g^T x = max_theta theta r_i + sum_j min_{l<=x_j<=u_j} (g_j - theta) x_j.

    Returns ``(value, x, mu)``: value (n_blocks,) (-inf if the block LP is unbounded, +inf if C_i is empty),
    a minimizer x (n,) (finite wherever value is finite), and mu (n_blocks,) = d value / d r_i, the optimal
    multiplier theta of the sum constraint (<= 0 for LE blocks, 0 for BOX blocks).

    The optimal theta is found by sorting g ascending within blocks and raising columns from l to u in that order
    until the budget r - sum l is spent (LE: theta = min(0, that g)); the value is the Lagrangian at theta, summed
    exactly per block, so it does not depend on the (non-unique) x.
    """
    l, u = bs.lower, bs.upper
    n, nb, dt, dev = bs.n, bs.n_blocks, g.dtype, g.device
    seg = bs.seg
    y = torch.clamp(torch.zeros_like(g), l, u)  # a finite point of [l, u]
    x_box = torch.where(g > 0, _full(l, n), torch.where(g < 0, _full(u, n), y))
    r64 = bs.rhs.to(_ACC)
    inf64 = torch.full((nb,), float("inf"), dtype=_ACC, device=dev)
    zero64 = torch.zeros(nb, dtype=_ACC, device=dev)

    if not bs.has_sum:
        theta = zero64
        x = x_box
        infeasible = torch.zeros(nb, dtype=torch.bool, device=dev)
    elif bs.n_sum_cols == 0:  # only empty sum blocks: feasible iff EQ has r == 0 (LE: r >= 0)
        theta = zero64
        x = x_box
        infeasible = ~bs.is_box & ((r64 < 0) | (bs.is_eq & (r64 > 0)))
    else:
        E = bs.n_sum_cols
        cols = bs.lm_cols if bs.lm_cols is not None else torch.arange(n, dtype=bs.idx_dtype, device=dev)
        perm, seg_s = _segment_sort(g.index_select(0, cols), seg.index_select(0, cols))
        col_s = cols.index_select(0, perm)
        g_s = g.index_select(0, col_s)
        l_s, u_s = _take(l, col_s), _take(u, col_s)
        l_fin, u_fin = torch.isfinite(l_s), torch.isfinite(u_s)
        lf = torch.where(l_fin, l_s, 0.0)
        uf = torch.where(u_fin, u_s, 0.0)

        # F_k = sum_{pos <= k} u + sum_{pos > k} l (columns up to k raised to u); c_i = #{k : F_k < r}.
        lf_blk = _blk_sum(lf, seg_s, nb, _ACC)
        F = lf_blk.index_select(0, seg_s) + _seg_cumsum((uf - lf).to(_ACC), seg_s, bs.lm_ptr)
        below = F < r64.index_select(0, seg_s)
        if bs.lm_has_inf:
            idx = bs.idx_dtype
            n_uinf = _seg_cumsum((~u_fin).to(idx), seg_s, bs.lm_ptr)
            l_inf = (~l_fin).to(idx)
            n_linf_tot = torch.zeros(nb, dtype=idx, device=dev).index_add_(0, seg_s, l_inf)
            n_linf_after = n_linf_tot.index_select(0, seg_s) - _seg_cumsum(l_inf, seg_s, bs.lm_ptr)
            below = torch.where(n_uinf > 0, False, torch.where(n_linf_after > 0, True, below))
        c = torch.zeros(nb, dtype=bs.idx_dtype, device=dev).index_add_(0, seg_s, below.to(bs.idx_dtype))
        has_frac = c < bs.lm_count
        pos_c = (bs.lm_ptr[:-1] + c).clamp(max=E - 1)
        theta_eq = torch.where(has_frac, g_s.index_select(0, pos_c).to(_ACC), inf64)

        # Greedy minimizer: before position c at u, after it at l (a tied free column at 0), c takes the rest.
        c_s = c.index_select(0, seg_s)
        loc = _local(seg_s, bs.lm_ptr, E)
        before, after = loc < c_s, loc > c_s
        y_s = torch.clamp(torch.zeros_like(g_s), l_s, u_s)
        xb = torch.where(u_fin, u_s, y_s)
        xa = torch.where(l_fin, l_s, y_s)
        rest = torch.where(before, xb, torch.where(after, xa, torch.zeros_like(g_s)))
        x_c = (r64 - _blk_sum(rest, seg_s, nb, _ACC)).to(dt).index_select(0, seg_s)
        x_s = torch.where(before, xb, torch.where(after, xa, torch.clamp(x_c, l_s, u_s)))
        x_greedy = x_box.scatter(0, col_s.to(torch.int64), x_s)
        use_greedy = bs.is_eq | (bs.is_le & (theta_eq <= 0))
        x = torch.where(use_greedy.index_select(0, seg), x_greedy, x_box)
        theta = torch.where(
            bs.is_box,
            zero64,
            torch.where(bs.is_le, torch.clamp(theta_eq, max=0.0), torch.where(has_frac, theta_eq, zero64)),
        )

        l_all, u_all = _full(l, n), _full(u, n)
        l_fin_all, u_fin_all = torch.isfinite(l_all), torch.isfinite(u_all)
        sum_l = _blk_sum(l_all, seg, nb, _ACC)
        sum_u = _blk_sum(u_all, seg, nb, _ACC)
        mag = _blk_sum(
            torch.where(l_fin_all, l_all.abs(), 0.0) + torch.where(u_fin_all, u_all.abs(), 0.0), seg, nb, _ACC
        )
        m = bs.lm_count.to(_ACC)
        tol = 8 * torch.finfo(dt).eps * (m + 1) * (r64.abs() + mag)
        infeasible = ~bs.is_box & ((sum_l > r64 + tol) | (bs.is_eq & (sum_u < r64 - tol)))

    # value = theta r + sum_j h_j(g_j - theta), h(d) = d l if d > 0, d u if d < 0, 0 if d == 0
    d = g - theta.to(dt).index_select(0, seg)
    h = torch.where(d > 0, d * l, torch.where(d < 0, d * u, torch.zeros_like(d)))
    value = _blk_sum(h, seg, nb, _ACC) + theta * r64
    value = torch.where(infeasible, inf64, value)
    return value.to(dt), x, theta.to(dt)
