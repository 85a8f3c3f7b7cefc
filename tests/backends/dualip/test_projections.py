"""Tests of backends/dualip/projections.py against brute-force oracles: x* = argmin_{x in C} ||x - v||^2, min_{x in C_i} g^T x.

The projection oracle enumerates, for every block of at most 6 columns, each assignment of columns to
{at lower bound, at upper bound, free} and whether the sum constraint is active, solves the resulting
equality-constrained least-squares problem in closed form, keeps the feasible points and returns the nearest
one. The linear-minimization oracle is scipy.optimize.linprog (HiGHS) per block.
"""

from __future__ import annotations

import importlib
import itertools
import signal
import sys
import time

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from dualip_model.backends.dualip.projections import BlockStructure, block_sums, linear_minimize, project
from dualip_model.polytopes import BlockKind
from dualip_model.standard_form import Layout, StandardForm

INF = np.inf
ALL_KINDS = list(BlockKind)
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


# ----------------------------------------------------------------------------------------------- construction


def make_sf(blocks) -> StandardForm:
    """StandardForm with no coupling rows from a list of (kind, lower, upper, r) blocks."""
    lower, upper, kinds, rhs, ptr = [], [], [], [], [0]
    for kind, lo, hi, r in blocks:
        lower.extend(lo)
        upper.extend(hi)
        kinds.append(int(kind))
        rhs.append(float(r) if BlockKind(kind).has_sum else 0.0)
        ptr.append(ptr[-1] + len(lo))
    n = len(lower)
    return StandardForm(
        name="proj",
        c=np.zeros(n),
        offset=0.0,
        col_lower=np.asarray(lower, dtype=np.float64).reshape(n),
        col_upper=np.asarray(upper, dtype=np.float64).reshape(n),
        A_indptr=np.zeros(n + 1, dtype=np.int32),
        A_indices=np.zeros(0, dtype=np.int32),
        A_data=np.zeros(0),
        row_lower=np.zeros(0),
        row_upper=np.zeros(0),
        block_ptr=np.asarray(ptr, dtype=np.int64),
        block_kind=np.asarray(kinds, dtype=np.int8),
        block_rhs=np.asarray(rhs, dtype=np.float64),
        layout=Layout(sense=1, column_order=None, variables=(), constraints=()),
    )


def _grid(rng, size, ties):
    """Values with many ties (half-integers) or (almost surely) distinct ones, negative entries included.

    Distinct values are multiples of 2^-10, so they and short sums of them are exact in float32 too.
    """
    if ties:
        return rng.integers(-6, 7, size=size) / 2.0
    return _q(rng.normal(scale=2.0, size=size))


def _q(x):
    """Round down to a multiple of 2^-10."""
    return np.floor(np.asarray(x) * 1024.0) / 1024.0


def random_block(rng, kind, m, ties=True, infinite=True):
    """A random nonempty-set block (kind, lower, upper, r) with m columns."""
    kind = BlockKind(kind)
    p_inf = 0.25 if infinite else 0.0
    if kind in (BlockKind.SIMPLEX_LE, BlockKind.SIMPLEX_EQ):
        r = float(_q(rng.choice([0.0, 1.0, 2.5, rng.uniform(0, 3)])))
        if kind is BlockKind.SIMPLEX_EQ and m == 0:
            r = 0.0
        lo = np.zeros(m)
        choice = rng.integers(0, 3)
        hi = np.full(m, INF) if (choice == 0 and infinite) else (np.full(m, r) if choice == 1 else r + rng.integers(0, 3, m))
        return kind, lo, hi.astype(np.float64), r
    lo = _grid(rng, m, ties)
    hi = lo + np.abs(_grid(rng, m, True))  # zero widths (fixed columns) included
    lo[rng.random(m) < p_inf] = -INF
    hi[rng.random(m) < p_inf] = INF
    if kind is BlockKind.BOX:
        return kind, lo, hi, 0.0
    sl, su = lo.sum(), hi.sum()
    if kind is BlockKind.BOXCUT_LE:
        if np.isfinite(sl):
            r = sl + float(_q(rng.choice([0.0, rng.uniform(0, 4), 0.5 * rng.integers(0, 6)])))
        else:
            r = float(_grid(rng, 1, ties)[0])
        return kind, lo, hi, r
    # BOXCUT_EQ: sum l <= r <= sum u
    if m == 0:
        return kind, lo, hi, 0.0
    if np.isfinite(sl) and np.isfinite(su):
        r = sl + float(_q(float(rng.choice([0.0, 1.0, rng.uniform(0, 1), 0.5])) * (su - sl)))
    elif np.isfinite(sl):
        r = sl + float(_q(rng.uniform(0, 4)))
    elif np.isfinite(su):
        r = su - float(_q(rng.uniform(0, 4)))
    else:
        r = float(_grid(rng, 1, ties)[0])
    return kind, lo, hi, r


def random_blocks(rng, n_blocks, kinds=ALL_KINDS, max_m=6, ties=True, infinite=True):
    blocks = []
    for _ in range(n_blocks):
        kind = kinds[rng.integers(len(kinds))]
        m = int(rng.integers(0, max_m + 1))
        blocks.append(random_block(rng, kind, m, ties=ties, infinite=infinite))
    return blocks


def as_dtype(blocks, v, dtype):
    """Round the data to dtype, so that the float64 oracle sees exactly what the float32 code sees."""
    np_dt = np.float32 if dtype == torch.float32 else np.float64
    blocks = [(k, np.asarray(lo, np_dt).astype(np.float64), np.asarray(hi, np_dt).astype(np.float64), float(np_dt(r)))
              for k, lo, hi, r in blocks]
    return blocks, np.asarray(v, np_dt).astype(np.float64)


# ---------------------------------------------------------------------------------------------------- oracles

_STATUS = {m: np.array(list(itertools.product((0, 1, 2), repeat=m)), dtype=np.int8).reshape(3**m, m) for m in range(7)}


def oracle_project_block(v, lo, hi, kind, r):
    """Nearest feasible point among the closed-form solutions of all faces (brute force, m <= 6)."""
    kind = BlockKind(kind)
    m = v.shape[0]
    if m == 0:
        return v.copy()
    if kind is BlockKind.BOX:
        return np.clip(v, lo, hi)
    S = _STATUS[m]
    valid = ~(((S == 0) & ~np.isfinite(lo)) | ((S == 1) & ~np.isfinite(hi))).any(axis=1)
    S = S[valid]
    X = np.where(S == 0, np.where(np.isfinite(lo), lo, 0.0), np.where(S == 1, np.where(np.isfinite(hi), hi, 0.0), v))
    free = S == 2
    K = free.sum(axis=1)
    cands = []
    if kind in (BlockKind.SIMPLEX_LE, BlockKind.BOXCUT_LE):
        cands.append((X, False))  # sum constraint inactive: free columns stay at v
    tau = np.where(K > 0, (X.sum(axis=1) - r) / np.maximum(K, 1), 0.0)
    cands.append((X - tau[:, None] * free, True))  # sum constraint active
    scale = 1.0 + np.abs(v).max() + abs(r) + np.abs(np.where(np.isfinite(lo), lo, 0)).max() + np.abs(np.where(np.isfinite(hi), hi, 0)).max()
    tol = 1e-9 * scale * (m + 1)
    best, best_d = None, INF
    for Xc, active in cands:
        s = Xc.sum(axis=1)
        ok = np.all(Xc >= lo - tol, axis=1) & np.all(Xc <= hi + tol, axis=1)
        ok &= (np.abs(s - r) <= tol) if active else (s <= r + tol)
        if not ok.any():
            continue
        d = ((Xc[ok] - v) ** 2).sum(axis=1)
        k = int(np.argmin(d))
        if d[k] < best_d:
            best, best_d = Xc[ok][k], d[k]
    assert best is not None, "oracle found no feasible point (generator produced an empty set)"
    return best


def oracle_project(blocks, v):
    out, start = [], 0
    for kind, lo, hi, r in blocks:
        m = len(lo)
        out.append(oracle_project_block(v[start:start + m], np.asarray(lo), np.asarray(hi), kind, r))
        start += m
    return np.concatenate(out) if out else np.zeros(0)


def oracle_lp_block(g, lo, hi, kind, r):
    """min g^T x over the block with HiGHS; -inf if unbounded, +inf if infeasible."""
    kind = BlockKind(kind)
    m = g.shape[0]
    if m == 0:
        if kind.is_equality:
            return 0.0 if r == 0 else INF
        return 0.0 if (kind is BlockKind.BOX or r >= 0) else INF
    bounds = [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in zip(lo, hi)]
    kw = {}
    if kind.has_sum:
        key = ("A_eq", "b_eq") if kind.is_equality else ("A_ub", "b_ub")
        kw = {key[0]: np.ones((1, m)), key[1]: np.array([r])}
    res = linprog(g, bounds=bounds, method="highs", **kw)
    if res.status == 0:
        return float(res.fun)
    if res.status == 3:
        return -INF
    if res.status == 2:
        return INF
    raise AssertionError(f"linprog failed: {res.message}")


def lagrangian(g, lo, hi, r, theta):
    """theta r + sum_j min_{lo<=x<=hi} (g_j - theta) x_j: a lower bound on the block LP for every admissible theta."""
    d = g - theta
    with np.errstate(invalid="ignore"):
        h = np.where(d > 0, d * lo, np.where(d < 0, d * hi, 0.0))
    return theta * r + h.sum()


# ------------------------------------------------------------------------------------------------------ checks


def _scale(blocks, v):
    vals = [np.abs(v).max(initial=0.0)]
    for _, lo, hi, r in blocks:
        vals.append(abs(r))
        for a in (lo, hi):
            a = np.asarray(a)
            vals.append(np.abs(a[np.isfinite(a)]).max(initial=0.0))
    return 1.0 + max(vals)


def check_feasible(blocks, x, tol):
    start = 0
    for kind, lo, hi, r in blocks:
        m = len(lo)
        xb = x[start:start + m]
        start += m
        assert np.all(np.isfinite(xb))
        assert np.all(xb >= np.asarray(lo) - tol) and np.all(xb <= np.asarray(hi) + tol)
        kind = BlockKind(kind)
        if kind.is_equality:
            assert abs(xb.sum() - r) <= tol * (m + 1)
        elif kind.has_sum:
            assert xb.sum() <= r + tol * (m + 1)


def run_projection_case(blocks, v, dtype):
    blocks, v = as_dtype(blocks, v, dtype)
    sf = make_sf(blocks)
    bs = BlockStructure.from_standard_form(sf, device="cpu", dtype=dtype)
    x = project(torch.as_tensor(v, dtype=dtype), bs)
    assert x.dtype == dtype and x.shape == (sf.n_cols,)
    ref = oracle_project(blocks, v)
    tol = TOL[dtype] * _scale(blocks, v)
    np.testing.assert_allclose(x.double().numpy(), ref, rtol=0, atol=tol * 10)
    check_feasible(blocks, x.double().numpy(), tol * 10)
    # idempotent
    x2 = project(x, bs)
    np.testing.assert_allclose(x2.double().numpy(), x.double().numpy(), rtol=0, atol=tol * 10)
    # block_sums
    sums = block_sums(x, bs).double().numpy()
    ref_sums = [ref[a:b].sum() for a, b in zip(sf.block_ptr[:-1], sf.block_ptr[1:])]
    np.testing.assert_allclose(sums, ref_sums, rtol=0, atol=tol * 100)
    return bs, x


def run_lm_case(blocks, g, dtype):
    blocks, g = as_dtype(blocks, g, dtype)
    sf = make_sf(blocks)
    bs = BlockStructure.from_standard_form(sf, device="cpu", dtype=dtype)
    value, x, mu = linear_minimize(torch.as_tensor(g, dtype=dtype), bs)
    assert value.shape == (sf.n_blocks,) and x.shape == (sf.n_cols,) and mu.shape == (sf.n_blocks,)
    assert value.dtype == x.dtype == mu.dtype == dtype
    value, x, mu = value.double().numpy(), x.double().numpy(), mu.double().numpy()
    tol = TOL[dtype] * _scale(blocks, g) ** 2 * 10
    start = 0
    for i, (kind, lo, hi, r) in enumerate(blocks):
        kind = BlockKind(kind)
        m = len(lo)
        gb, xb = g[start:start + m], x[start:start + m]
        start += m
        ref = oracle_lp_block(gb, np.asarray(lo), np.asarray(hi), kind, r)
        if not np.isfinite(ref):
            assert value[i] == ref, (i, kind, value[i], ref)
            continue
        assert abs(value[i] - ref) <= tol * (m + 1), (i, kind, value[i], ref)
        # x is a feasible minimizer
        check_feasible([(kind, lo, hi, r)], xb, tol)
        assert abs(gb @ xb - ref) <= tol * (m + 1), (i, kind, gb @ xb, ref)
        # mu is an optimal multiplier (dual certificate): L(mu) = value, mu <= 0 for LE, 0 for BOX
        if kind is BlockKind.BOX:
            assert mu[i] == 0
        else:
            if not kind.is_equality:
                assert mu[i] <= 0
            assert abs(lagrangian(gb, np.asarray(lo), np.asarray(hi), r, mu[i]) - ref) <= tol * (m + 1)
    return bs


# ------------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(4))
def test_project_random_mixed(seed, dtype):
    rng = np.random.default_rng(seed)
    blocks = random_blocks(rng, 120, ties=seed % 2 == 0)
    n = sum(len(b[1]) for b in blocks)
    v = _grid(rng, n, ties=seed % 2 == 0) * rng.choice([0.5, 1.0, 3.0])
    run_projection_case(blocks, v, dtype)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_project_single_kind(kind, dtype):
    rng = np.random.default_rng(100 + int(kind))
    for ties, infinite in [(True, True), (False, False), (True, False)]:
        blocks = random_blocks(rng, 60, kinds=[kind], ties=ties, infinite=infinite)
        n = sum(len(b[1]) for b in blocks)
        v = _grid(rng, n, ties) * 2
        run_projection_case(blocks, v, dtype)


def test_project_simplex_hand_cases():
    S_EQ, S_LE = BlockKind.SIMPLEX_EQ, BlockKind.SIMPLEX_LE
    blocks = [
        (S_EQ, [0, 0, 0], [INF] * 3, 1.0),  # ties
        (S_LE, [0, 0], [INF] * 2, 1.0),  # slack
        (S_LE, [0, 0, 0], [1, 1, 1], 1.0),  # binding, u == r
        (S_EQ, [0, 0], [INF] * 2, 0.0),  # r = 0
        (S_LE, [0], [INF], 0.0),  # singleton, r = 0
        (S_EQ, [], [], 0.0),  # empty
        (S_LE, [], [], 1.0),  # empty
        (S_EQ, [0], [5], 2.0),  # singleton EQ
        (S_EQ, [0, 0, 0, 0], [INF] * 4, 3.0),  # negative entries
    ]
    v = np.array([0.5, 0.5, 0.5, 0.2, 0.3, 1.0, 1.0, 1.0, -1.0, 2.0, 7.0, -7.0, -1.0, -2.0, -3.0, -4.0])
    _, x = run_projection_case(blocks, v, torch.float64)
    expected = [1 / 3] * 3 + [0.2, 0.3] + [1 / 3] * 3 + [0, 0] + [0] + [2.0] + [2.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-12)


def test_project_boxcut_infinite_bounds():
    BLE, BEQ = BlockKind.BOXCUT_LE, BlockKind.BOXCUT_EQ
    blocks = [
        (BLE, [-INF, -INF, -INF], [INF, INF, INF], 1.0),  # halfspace
        (BLE, [-INF, 0, 0], [1, 1, 1], 1.0),  # one column unbounded below
        (BEQ, [-INF, -INF], [INF, INF], -2.0),  # hyperplane
        (BEQ, [0, -INF, 0], [1, 2, INF], 0.5),
        (BEQ, [1, 1], [1, 1], 2.0),  # fixed columns
        (BlockKind.BOX, [-INF, 0], [0, INF], 0.0),
    ]
    v = np.array([2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 1.0, 1.0, 5.0, -5.0, 5.0, 0.0, 7.0, 3.0, -3.0])
    _, x = run_projection_case(blocks, v, torch.float64)
    np.testing.assert_allclose(x.numpy()[:3], [1 / 3] * 3, atol=1e-12)
    np.testing.assert_allclose(x.numpy()[6:8], [-1.0, -1.0], atol=1e-12)


def test_project_singletons_and_empty_blocks():
    rng = np.random.default_rng(7)
    blocks = random_blocks(rng, 200, max_m=1)
    blocks += [(k, [], [], 0.0) for k in ALL_KINDS]
    order = rng.permutation(len(blocks))
    blocks = [blocks[i] for i in order]
    n = sum(len(b[1]) for b in blocks)
    run_projection_case(blocks, _grid(rng, n, True) * 3, torch.float64)


def test_project_all_box_and_no_columns():
    rng = np.random.default_rng(8)
    blocks = random_blocks(rng, 30, kinds=[BlockKind.BOX])
    n = sum(len(b[1]) for b in blocks)
    run_projection_case(blocks, _grid(rng, n, True), torch.float64)
    run_projection_case([], np.zeros(0), torch.float64)
    run_projection_case([(BlockKind.SIMPLEX_EQ, [], [], 0.0)], np.zeros(0), torch.float64)
    run_lm_case(blocks, _grid(rng, n, True), torch.float64)
    run_lm_case([], np.zeros(0), torch.float64)
    # sum blocks without any column: the linear minimization's sorting path is skipped
    empty_sum = blocks + [(BlockKind.SIMPLEX_EQ, [], [], 0.0), (BlockKind.BOXCUT_LE, [], [], 1.0)]
    run_lm_case(empty_sum, _grid(rng, n, True), torch.float64)
    run_projection_case(empty_sum, _grid(rng, n, True), torch.float64)


def test_sum_blocks_without_breakpoints():
    """Half-spaces and hyperplanes (all bounds infinite): no breakpoint at all, tau = (sum v - r) / m."""
    blocks = [
        (BlockKind.BOXCUT_LE, [-INF] * 3, [INF] * 3, 1.0),
        (BlockKind.BOXCUT_EQ, [-INF] * 2, [INF] * 2, -1.0),
        (BlockKind.BOXCUT_LE, [-INF] * 2, [INF] * 2, 5.0),  # slack
    ]
    v = np.array([1.0, 2.0, 3.0, 4.0, -2.0, 1.0, 1.0])
    bs, x = run_projection_case(blocks, v, torch.float64)
    assert bs.n_events == 0
    np.testing.assert_allclose(x.numpy(), [-2 / 3, 1 / 3, 4 / 3, 2.5, -3.5, 1.0, 1.0], atol=1e-12)
    value, _, mu = linear_minimize(torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0], dtype=torch.float64), bs)
    np.testing.assert_allclose(value.numpy(), [-INF, -2.0, 0.0])
    np.testing.assert_allclose(mu.numpy()[1:], [2.0, 0.0])


def test_project_uniform_bounds_are_scalars():
    blocks = [(BlockKind.SIMPLEX_EQ, [0.0] * 4, [INF] * 4, 1.0), (BlockKind.SIMPLEX_LE, [0.0] * 3, [INF] * 3, 2.0)]
    bs = BlockStructure.from_standard_form(make_sf(blocks), dtype=torch.float64)
    assert bs.lower.dim() == 0 and bs.upper.dim() == 0
    assert bs.p_code is None and bs.p_cols_b is None and bs.lm_cols is None and bs.p_cols_a.numel() == 0
    assert bs.seg.dtype == torch.int32
    assert bs.nbytes < 4 * 7 + 200  # 4 bytes per column plus per-block arrays
    rng = np.random.default_rng(9)
    run_projection_case(blocks, rng.normal(size=7), torch.float64)


def test_project_large_blocks_random():
    """Bigger blocks (no oracle): optimality via KKT, x = clip(v - tau, l, u) with a common tau per block."""
    rng = np.random.default_rng(10)
    blocks = []
    for _ in range(40):
        kind = ALL_KINDS[rng.integers(len(ALL_KINDS))]
        blocks.append(random_block(rng, kind, int(rng.integers(0, 60)), ties=bool(rng.integers(2)), infinite=False))
    n = sum(len(b[1]) for b in blocks)
    v = rng.normal(size=n) * 3
    sf = make_sf(blocks)
    bs = BlockStructure.from_standard_form(sf, dtype=torch.float64)
    x = project(torch.as_tensor(v), bs).numpy()
    check_feasible(blocks, x, 1e-9)
    start = 0
    for kind, lo, hi, r in blocks:
        m = len(lo)
        vb, xb = v[start:start + m], x[start:start + m]
        start += m
        kind = BlockKind(kind)
        if m == 0:
            continue
        interior = (xb > np.asarray(lo) + 1e-9) & (xb < np.asarray(hi) - 1e-9)
        taus = (vb - xb)[interior]
        if kind is BlockKind.BOX:
            np.testing.assert_allclose(xb, np.clip(vb, lo, hi))
            continue
        if taus.size:
            assert np.ptp(taus) < 1e-9
            tau = taus.mean()
            np.testing.assert_allclose(xb, np.clip(vb - tau, lo, hi), atol=1e-9)
            if not kind.is_equality:
                assert tau >= -1e-9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_linear_minimize_random_mixed(seed, dtype):
    rng = np.random.default_rng(1000 + seed)
    blocks = random_blocks(rng, 80, ties=seed != 1)
    n = sum(len(b[1]) for b in blocks)
    g = _grid(rng, n, ties=seed != 1)
    run_lm_case(blocks, g, dtype)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
def test_linear_minimize_single_kind(kind):
    rng = np.random.default_rng(2000 + int(kind))
    for ties, infinite in [(True, True), (False, True), (True, False)]:
        blocks = random_blocks(rng, 40, kinds=[kind], ties=ties, infinite=infinite)
        n = sum(len(b[1]) for b in blocks)
        run_lm_case(blocks, _grid(rng, n, ties), torch.float64)


def test_linear_minimize_hand_cases():
    S_EQ, S_LE, BLE, BEQ, BOX = (BlockKind.SIMPLEX_EQ, BlockKind.SIMPLEX_LE, BlockKind.BOXCUT_LE,
                                 BlockKind.BOXCUT_EQ, BlockKind.BOX)
    blocks = [
        (S_LE, [0, 0, 0], [INF] * 3, 2.0),  # r * min(0, min g) = -4
        (S_LE, [0, 0], [INF] * 2, 2.0),  # all g > 0: 0, mu = 0
        (S_EQ, [0, 0], [INF] * 2, 3.0),  # r * min g = 3
        (S_EQ, [], [], 0.0),  # empty EQ, r = 0: 0
        (S_EQ, [], [], 1.0),  # empty EQ, r = 1: infeasible
        (BOX, [-INF, 0], [1, INF], 0.0),  # g = (1, 1): unbounded
        (BOX, [-1, 0], [1, 2], 0.0),  # g = (1, -1): -1 - 2 = -3
        (BLE, [0, 0, 0], [1, 1, 1], 1.5),  # g = (-3, -2, 5): -3 - 1 = -4, mu = -2
        (BEQ, [0, -INF], [INF, 0], 5.0),  # g = (1, 1), ties with infinite bounds: 5
        (BEQ, [-INF, -INF, 0], [INF, INF, 1], 1.0),  # two free tied columns: g = (2, 2, 1): x3 = 1, value 1, mu 2
        (BEQ, [0, 0], [1, 1], 3.0),  # infeasible: sum u < r
        (BLE, [1, 1], [2, 2], 1.0),  # infeasible: sum l > r
        (BEQ, [0, -INF], [INF, 0], -5.0),  # g = (1, 1), tie between u=+inf and l=-inf columns: x = (0, -5)
    ]
    g = np.array([1, -2, 3, 1, 2, 1, 4, 1, 1, 1, -1, -3, -2, 5, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1])
    run_lm_case(blocks, g.astype(float), torch.float64)
    bs = BlockStructure.from_standard_form(make_sf(blocks), dtype=torch.float64)
    value, x, mu = linear_minimize(torch.as_tensor(g, dtype=torch.float64), bs)
    np.testing.assert_allclose(value.numpy(), [-4, 0, 3, 0, INF, -INF, -3, -4, 5, 1, INF, INF, -5])
    np.testing.assert_allclose(mu.numpy()[[0, 1, 2, 6, 7, 8, 9]], [-2, 0, 1, 0, -2, 1, 2])
    assert np.all(np.isfinite(x.numpy()[:7])) and np.all(np.isfinite(x.numpy()[9:19]))  # finite-value blocks
    np.testing.assert_allclose(x.numpy()[23:], [0, -5])


def _with_timeout(seconds):
    """Fail (instead of hanging) if the test body runs longer than `seconds` (SIGALRM, main thread only)."""

    def deco(fn):
        def wrapper(*args, **kwargs):
            if not hasattr(signal, "SIGALRM"):
                return fn(*args, **kwargs)

            def on_alarm(signum, frame):
                raise TimeoutError(f"{fn.__name__} exceeded {seconds} s")

            old = signal.signal(signal.SIGALRM, on_alarm)
            signal.alarm(seconds)
            try:
                return fn(*args, **kwargs)
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)

        wrapper.__name__ = fn.__name__
        return wrapper

    return deco


def _compile_unavailable() -> str | None:
    if not hasattr(torch, "compile"):
        return "torch.compile is not available in this torch build"
    if sys.platform == "win32":
        return "torch.compile (inductor) is not supported on this platform"
    try:
        importlib.import_module("torch._dynamo")
        importlib.import_module("torch._inductor")
    except Exception as exc:  # pragma: no cover - depends on the environment
        return f"torch.compile unavailable: {exc}"
    return None


_timeout_mark = pytest.mark.timeout(240) if "pytest_timeout" in sys.modules else (lambda f: f)


@pytest.mark.skipif(_compile_unavailable() is not None, reason=str(_compile_unavailable()))
@_timeout_mark
@_with_timeout(240)
def test_torch_compile_fullgraph_cpu():
    """project, linear_minimize and block_sums trace into one graph each (no graph breaks, no syncs)."""
    importlib.import_module("torch._dynamo").reset()
    rng = np.random.default_rng(11)
    blocks = random_blocks(rng, 12, max_m=4)
    blocks.append((BlockKind.BOXCUT_EQ, [0.0, 0.0], [1.0, 2.0], 1.5))
    n = sum(len(b[1]) for b in blocks)
    bs = BlockStructure.from_standard_form(make_sf(blocks), dtype=torch.float64)
    v = torch.as_tensor(_grid(rng, n, True), dtype=torch.float64)
    t0 = time.perf_counter()
    compiled = torch.compile(project, fullgraph=True)  # default (inductor) backend: one small compile
    np.testing.assert_allclose(compiled(v, bs).numpy(), project(v, bs).numpy(), atol=1e-12)
    # the other two only need to trace without graph breaks: the cheap eager backend suffices
    lm = torch.compile(linear_minimize, fullgraph=True, backend="eager")
    for a, b in zip(lm(v, bs), linear_minimize(v, bs)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)
    bsum = torch.compile(block_sums, fullgraph=True, backend="eager")
    np.testing.assert_allclose(bsum(v, bs).numpy(), block_sums(v, bs).numpy())
    assert time.perf_counter() - t0 < 240
