"""The fused C++ iteration (DualipOptions.engine "fused_cpu") against the torch path it replaces.

One step: A x*(w) and the Newton multipliers tau agree with ``fast_projection.simplex_box_project`` plus
``A.matvec`` to rounding on a matching (SIMPLEX_LE blocks, two of them empty, one row per column of A), an
allocation (SIMPLEX_EQ blocks, one empty, global rows: CSR A^T) and a box LP with per-column bounds, in
float32 and float64, in both storages; the same for the check's projection and repair. Whole solves: certified
optima equal to HiGHS's, runs repeatable bit for bit, checkpoints resumed bit for bit, one column vector of
temporaries per iteration, and a clear error where the engine cannot run. The exact thresholds (box-cut blocks,
PDHG's step) against the brute-force oracle from cold and far warm starts; PDHG's fused step against the torch one
with enough Newton steps to be exact; PDHG and box-cut solves against HiGHS. tests/test_fuzz.py runs the fuzzed
families with it too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dualip_model as dm
from dualip_model.backends.dualip import DualipOptions, memory_report
from dualip_model.backends.dualip.fast_projection import simplex_box_project
from dualip_model.backends.dualip.kernels import FusedCpuKernels, Kernels
from dualip_model.backends.dualip import fused_cpu as fused_cpu_module
from dualip_model.backends.dualip import options as options_module
from dualip_model.backends.dualip.fused_cpu import CHUNK_COLUMNS, FusedCpu, _module, compiler_found
from dualip_model.backends.dualip.options import resolve_engine
from dualip_model.backends.dualip.problem import Blocks, ScaledProblem
from dualip_model.backends.dualip.repair import repair
from dualip_model.polytopes import BlockKind
from dualip_model.synthetic import matching_model, synthetic_matching
from fuzz_models import DUALIP_DEVICE
from test_parity import allocation, box_lp, check_optimal, scaled_matching, small_matching
from test_projections import (ALL_KINDS, TOL, _scale, as_dtype, check_feasible, make_sf, oracle_lp_block,
                              oracle_project, random_block, random_blocks)
from test_repair import random_problem, rounding_tight_problem, unbounded_row_problem, violation

pytestmark = [pytest.mark.skipif(not compiler_found(), reason="no C++ compiler to build the fused extension with"),
              pytest.mark.skipif(DUALIP_DEVICE != "cpu", reason=f"fused_cpu runs on the CPU, not {DUALIP_DEVICE}")]

CPU = torch.device("cpu")


def box_cut_matching():
    """A matching with every edge capped at 0.5: box-cut blocks (0 <= x <= 0.5, sum x <= 1 per user)."""
    d = synthetic_matching(20, 4, 0.5, seed=0)
    m = dm.Model("capped")
    users, items = m.entities("user", d.n_users), m.entities("item", d.n_items)
    x = m.variable("x", over=m.edges("e", users, items, src=d.user, dst=d.item), upper=0.5)
    m.maximize((d.value * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="one_per_user")
    m.subject_to((d.cost * x).sum(by=items) <= d.budget, name="budget")
    return m


def one_step_both_ways(prob, seed=0, steps=2, gamma=0.03):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(prob.m, generator=g, dtype=prob.dtype) * 3
    tau = torch.rand(prob.sf.n_blocks, generator=g, dtype=prob.dtype)
    ax, tau_fused = FusedCpu(prob).step(w, gamma, tau, steps)
    v = prob.At.matvec(w, add=prob.c).mul_(-1.0 / gamma)
    x, tau_torch = simplex_box_project(v, tau, prob.blocks, steps)
    return ax, tau_fused, prob.A.matvec(x), tau_torch


MODELS = {"matching": lambda: small_matching(0).compile(), "allocation": lambda: allocation(0).compile(),
          "box LP": lambda: box_lp(0).compile()}


@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name", list(MODELS))
def test_one_fused_step_is_the_torch_step(name, dtype, rtol, storage):
    sf = MODELS[name]()
    assert name == "box LP" or (np.diff(sf.block_ptr) == 0).any()  # empty blocks are covered
    prob = ScaledProblem.build(sf, CPU, dtype, storage=storage)
    ax, tau, ax_ref, tau_ref = one_step_both_ways(prob)
    scale = float(ax_ref.abs().max()) + 1.0
    assert (ax - ax_ref).abs().max() <= rtol * scale
    assert (tau - tau_ref).abs().max() <= rtol * (float(tau_ref.abs().max()) + 1.0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("storage", ["fast", "compact"])
def test_steps_over_several_chunks_are_the_torch_steps(storage, threads):
    """A matching of ~18,000 columns in blocks of 0 to 12 columns: the sweeps run chunk by chunk (block_chunks), the
    thresholds partly in lanes, on one thread and on two; the dual ascent's step and PDHG's against the torch
    ones (PDHG's with enough Newton steps to be exact)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sf = matching_model(synthetic_matching(4000, 300, 0.015, seed=4)).compile()
        prob = ScaledProblem.build(sf, CPU, torch.float64, storage=storage)
        fused = FusedCpu(prob)
        assert fused.blocks[8].shape[1] - 1 >= 4 and fused.blocks[6].numel() > 0  # chunks, and lanes in them
        ax, tau, ax_ref, tau_ref = one_step_both_ways(prob)
        assert (ax - ax_ref).abs().max() <= 1e-12 * (float(ax_ref.abs().max()) + 1.0)
        assert (tau - tau_ref).abs().max() <= 1e-12 * (float(tau_ref.abs().max()) + 1.0)
        g = torch.Generator().manual_seed(5)
        x, x0 = (torch.rand(prob.n, generator=g, dtype=torch.float64) for _ in range(2))
        y = torch.randn(prob.m, generator=g, dtype=torch.float64)
        tau0 = torch.rand(sf.n_blocks, generator=g, dtype=torch.float64)
        steps = 2 * int(np.diff(sf.block_ptr).max()) + 3
        reference = Kernels.of(prob, DualipOptions(engine="torch" if storage == "fast" else "compact"))
        expect = reference.pdhg_primal(x, y, x0, 0.3, tau0, steps, (1.5, 0.5, 0.25))
        got = fused.pdhg_step(x, y, x0, 0.3, tau0, (1.5, 0.5, 0.25))
        for i in (0, 1, 2, 4):
            assert (got[i] - expect[i]).abs().max() <= 1e-11 * (float(expect[i].abs().max()) + 1.0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name", list(MODELS))
def test_the_checks_projection_is_the_torch_projection(name, dtype, rtol, storage):
    prob = ScaledProblem.build(MODELS[name](), CPU, dtype, storage=storage)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(prob.n, generator=g, dtype=dtype) * 2
    tau = torch.rand(prob.sf.n_blocks, generator=g, dtype=dtype)
    x, tau_cpp = FusedCpu(prob).project(v, tau, 3)
    x_ref, tau_ref = simplex_box_project(v, tau, prob.blocks, 3)
    assert (x - x_ref).abs().max() <= rtol * (float(x_ref.abs().max()) + 1.0)
    assert (tau_cpp - tau_ref).abs().max() <= rtol * (float(tau_ref.abs().max()) + 1.0)


@pytest.mark.parametrize("name", [*MODELS, "box-cut"])
def test_the_exact_projection_is_the_sort_based_one(name):
    """FusedCpuKernels.exact_projection (PDHG's start, P_X(v): exact thresholds from 0, no sort) against the torch
    kernels' sort-based projection, on every block kind."""
    sf = box_cut_matching().compile() if name == "box-cut" else MODELS[name]()
    prob = ScaledProblem.build(sf, CPU, torch.float64)
    v = torch.randn(prob.n, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    options = DualipOptions(engine="fused_cpu")
    got = FusedCpuKernels(prob, options).exact_projection(v)
    expect = Kernels(prob, options).exact_projection(v)
    assert (got - expect).abs().max() <= 1e-12 * (float(expect.abs().max()) + 1.0)


def block_args(sf, dtype, lanes=True):
    """The extension's block arguments for ``sf`` (FusedCpu.blocks' layout, bounds per column); without ``lanes``
    every block's threshold one by one."""
    B = Blocks.build(sf, CPU, dtype, compact=False)
    bounds = [torch.as_tensor(b, dtype=dtype).expand(sf.n_cols).contiguous() for b in (B.lower, B.upper)]
    groups = _module().block_chunks(B.offsets, B.is_box, CHUNK_COLUMNS)
    if not lanes:  # no group: every block in `single`, chunk by chunk
        first = groups[2][0]
        groups = [torch.zeros(0, dtype=torch.int64), torch.arange(sf.n_blocks),
                  torch.stack([first, torch.zeros_like(first), first])]
    return [B.offsets, B.rhs, B.is_le, B.is_box, *bounds, *groups]


def exact_projection(blocks, v, dtype, tau0):
    """The C++ exact thresholds' projection of v onto the blocks (a list of (kind, lower, upper, r)), from tau0."""
    sf = make_sf(blocks)
    x = torch.empty(sf.n_cols, dtype=dtype)
    tau = _module().project(torch.as_tensor(v, dtype=dtype), x, block_args(sf, dtype), tau0.to(dtype), 1, True)
    return x, tau, sf


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("start", ["zero", "far right", "far left", "random"])
@pytest.mark.parametrize("seed", range(3))
def test_exact_thresholds_equal_the_oracle_on_every_kind(seed, start, dtype):
    """Every block kind, ties among values and bounds, infinite bounds, empty blocks; from any start."""
    rng = np.random.default_rng(60 + seed)
    for ties, infinite in [(True, True), (False, True), (True, False), (False, False)]:
        blocks = random_blocks(rng, 80, ties=ties, infinite=infinite)
        n = sum(len(b[1]) for b in blocks)
        v = rng.normal(scale=rng.choice([0.5, 2.0, 6.0]), size=n) + rng.normal()
        if ties:
            v = np.round(v * 4) / 4
        blocks, v = as_dtype(blocks, v, dtype)
        nb = len(blocks)
        tau0 = {"zero": torch.zeros(nb), "far right": torch.full((nb,), 1e3), "far left": torch.full((nb,), -1e3),
                "random": torch.as_tensor(rng.normal(scale=5.0, size=nb))}[start].double()
        x, tau, sf = exact_projection(blocks, v, dtype, tau0)
        tol = TOL[dtype] * _scale(blocks, v) * 10
        np.testing.assert_allclose(x.double().numpy(), oracle_project(blocks, v), rtol=0, atol=tol)
        check_feasible(blocks, x.double().numpy(), tol)
        assert torch.all(tau[torch.as_tensor(sf.block_kind == BlockKind.BOX)] == 0)
        le = np.isin(sf.block_kind, (BlockKind.SIMPLEX_LE, BlockKind.BOXCUT_LE))
        assert torch.all(tau[torch.as_tensor(le)] >= 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("exact, steps", [(True, 0), (False, 1), (False, 3)])
@pytest.mark.parametrize("seed", range(3))
def test_thresholds_in_lanes_are_those_of_one_block_at_a_time_to_the_bit(seed, exact, steps, dtype):
    """block_chunks groups 8 blocks of a size (no BOX constraint, at most 32 columns) within a chunk of consecutive
    blocks; their thresholds, exact or by Newton steps, from a warm start near the root or far from it, are bit for
    bit those of the blocks one by one, on every kind and size (0 to 40 columns, beyond the lanes' 32), ties
    included, over several chunks and a block larger than a chunk."""
    rng = np.random.default_rng(90 + seed)
    blocks = random_blocks(rng, 2500, max_m=6, ties=True, infinite=True)
    blocks += [random_block(rng, kind, 40) for kind in ALL_KINDS for _ in range(9)]
    blocks.insert(1200, random_block(rng, BlockKind.SIMPLEX_LE, 5000))  # larger than a chunk (4096 columns)
    sf = make_sf(blocks)
    v = torch.as_tensor(np.round(rng.normal(scale=2.0, size=sf.n_cols) * 8) / 8, dtype=dtype)
    lanes, single, chunks = _module().block_chunks(torch.tensor(sf.block_ptr, dtype=torch.int64),
                                                   torch.tensor(sf.block_kind == BlockKind.BOX), CHUNK_COLUMNS)
    assert chunks.shape[1] >= 4 and lanes.numel() >= 8 * 100 and lanes.numel() % 8 == 0
    assert sorted(torch.cat([lanes, single]).tolist()) == list(range(sf.n_blocks))
    for tau0 in (torch.zeros(sf.n_blocks), torch.as_tensor(rng.normal(scale=5.0, size=sf.n_blocks))):
        got, expect = (torch.empty(sf.n_cols, dtype=dtype) for _ in range(2))
        tau_got = _module().project(v, got, block_args(sf, dtype), tau0.to(dtype), steps, exact)
        tau_expect = _module().project(v, expect, block_args(sf, dtype, lanes=False), tau0.to(dtype), steps, exact)
        assert torch.equal(tau_got, tau_expect) and torch.equal(got, expect)


def test_exact_thresholds_on_a_block_whose_newton_step_passes_a_leaving_column():
    """tau rises, a free column reaches its lower bound before the root: the step is not the last (it was)."""
    blocks = [(BlockKind.BOXCUT_EQ, [0.0, 0.0], [0.99804696, 0.98658474], 0.8389507055602972)]
    v = np.array([151.39237747, 134.58754238])
    x, _, _ = exact_projection(blocks, v, torch.float64, torch.tensor([0.5], dtype=torch.float64))
    np.testing.assert_allclose(x.numpy(), oracle_project(blocks, v), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_block_minima_equal_the_lp_oracle(seed):
    """min g^T x per block by the C++ greedy against HiGHS on each block: every kind, finite lower bounds, infinite
    upper ones, ties among the costs; box blocks unbounded below where a cost meets an infinite bound."""
    rng = np.random.default_rng(80 + seed)
    blocks = [(k, np.minimum(np.maximum(lo, -2.0), hi), hi, r)  # finite lower bounds
              for k, lo, hi, r in random_blocks(rng, 120, ties=True, infinite=True)]
    blocks = [(k, lo, hi, min(max(r, float(np.sum(lo))), float(np.sum(hi)))) for k, lo, hi, r in blocks]  # nonempty
    sf = make_sf(blocks)
    g = np.round(rng.normal(scale=2.0, size=sf.n_cols) * 4) / 4
    got = _module().block_minima(torch.as_tensor(g), block_args(sf, torch.float64)).numpy()
    start = 0
    for i, (kind, lo, hi, r) in enumerate(blocks):
        m = len(lo)
        expect = oracle_lp_block(g[start:start + m], np.asarray(lo), np.asarray(hi), kind, r)
        start += m
        if np.isinf(expect):
            assert got[i] == expect, (i, kind, got[i], expect)
        else:
            assert abs(got[i] - expect) <= 1e-9 * (1.0 + abs(expect)), (i, kind, got[i], expect)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-11), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name", ["matching", "allocation", "box LP", "box-cut"])
def test_one_fused_pdhg_step_is_the_exact_torch_step(name, dtype, rtol):
    """x_t, x_next, A x_t and sum (x - x_t)^2 against Kernels.pdhg_primal with enough Newton steps to be exact
    (2 m + 3 for the largest block), from random x, y and thresholds. (The thresholds themselves may differ where
    the root is not unique: an empty block, or one whose columns sit at their bounds over an interval of tau.)"""
    sf = box_cut_matching().compile() if name == "box-cut" else MODELS[name]()
    prob = ScaledProblem.build(sf, CPU, dtype)
    g = torch.Generator().manual_seed(3)
    x, x0 = (torch.rand(prob.n, generator=g, dtype=dtype) for _ in range(2))
    y = torch.randn(prob.m, generator=g, dtype=dtype)
    tau = torch.rand(sf.n_blocks, generator=g, dtype=dtype)
    weights = (1.5, 0.5, 0.25)
    steps = 2 * int(np.diff(sf.block_ptr).max()) + 3
    options = DualipOptions(engine="torch")
    torch_out = Kernels.of(prob, options).pdhg_primal(x, y, x0, 0.3, tau, steps, weights)
    fused_out = FusedCpu(prob).pdhg_step(x, y, x0, 0.3, tau, weights)
    for i in (0, 1, 2, 4):
        got, expect = fused_out[i], torch_out[i]
        assert (got - expect).abs().max() <= rtol * (float(expect.abs().max()) + 1.0)


@pytest.mark.parametrize("algorithm", ["pdhg", "dual_ascent"])
def test_box_cut_solves_reach_the_highs_optimum(algorithm):
    res, _ = check_optimal(box_cut_matching(), "dualip", engine="fused_cpu", algorithm=algorithm)
    assert res.status == dm.Status.OPTIMAL


@pytest.mark.parametrize("model", [small_matching(1), allocation(1), box_lp(1)], ids=["matching", "allocation", "box LP"])
def test_fused_pdhg_solves_reach_the_highs_optimum(model):
    res, _ = check_optimal(model, "dualip", engine="fused_cpu", algorithm="pdhg")
    assert res.status == dm.Status.OPTIMAL


def test_fused_pdhg_resumes_bit_for_bit(tmp_path):
    model = allocation(2)
    whole = model.solve("dualip", engine="fused_cpu", algorithm="pdhg", check_every=10)
    path = tmp_path / "run.npz"
    model.solve("dualip", engine="fused_cpu", algorithm="pdhg", check_every=10, max_iter=30, checkpoint=str(path))
    resumed = model.solve("dualip", engine="fused_cpu", algorithm="pdhg", check_every=10, resume=str(path))
    assert resumed.iterations == whole.iterations
    np.testing.assert_array_equal(resumed.x_all, whole.x_all)
    assert resumed.bound == whole.bound


@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rows_per_col", [1, 2])
@pytest.mark.parametrize("box_users", [False, True])
def test_the_cpp_repair_is_the_torch_repair(seed, rows_per_col, box_users, storage):
    """Cut (rows in parallel with one row per column, else through per-column factors), shrink and fill in C++
    give repair.repair's point to rounding: feasible, in the blocks, the same objective. In the compact storage
    the cut reads A's values by column where A^T holds them (one row per column)."""
    p = random_problem(seed, rows_per_col, box_users, storage)
    upper = torch.as_tensor(p.blocks.upper, dtype=torch.float64).expand(p.n)
    x = torch.minimum(torch.as_tensor(np.random.default_rng(seed).uniform(0, 1.5, p.n)), upper)
    ax = p.A @ x
    expect = repair(x, ax, p)
    got = FusedCpu(p).repair(x.clone(), ax)
    np.testing.assert_allclose(got.numpy(), expect.numpy(), rtol=1e-12, atol=1e-13)
    assert violation(p, got) <= 1e-12 and float(got.min()) >= 0 and bool((got <= upper).all())
    sums = torch.segment_reduce(got, "sum", offsets=p.blocks.offsets)
    assert bool((sums[~p.blocks.is_box] <= p.blocks.rhs[~p.blocks.is_box] + 1e-12).all())


def test_the_cpp_fill_ignores_rows_without_upper_bound():
    p = unbounded_row_problem()
    x = FusedCpu(p).repair(torch.zeros(p.n, dtype=torch.float64), torch.zeros(p.m, dtype=torch.float64))
    np.testing.assert_allclose(x.numpy(), [0.0, 0.5, 1.0, 0.5, 0.0, 0.5], rtol=1e-15)


def test_the_cpp_fill_takes_a_row_open_by_rounding_alone_as_tight():
    p, start = rounding_tight_problem()
    x = FusedCpu(p).repair(start.clone(), p.A @ start)
    np.testing.assert_allclose(x.numpy(), [0.0, 1.0, 1.0 - 4e-16], rtol=1e-15)


@pytest.mark.parametrize("model", [small_matching(1), allocation(1), box_lp(1), scaled_matching(0, entries=6)],
                         ids=["matching", "allocation", "box LP", "entries 1e-6..1e6"])
def test_fused_solves_reach_the_highs_optimum(model):
    res, _ = check_optimal(model, "dualip", engine="fused_cpu")
    assert res.status == dm.Status.OPTIMAL


def test_fused_runs_repeat_bit_for_bit_and_resume_from_checkpoints(tmp_path):
    model = small_matching(2)
    whole = model.solve("dualip", engine="fused_cpu", check_every=10)
    again = model.solve("dualip", engine="fused_cpu", check_every=10)
    np.testing.assert_array_equal(whole.x_all, again.x_all)
    path = tmp_path / "run.npz"
    model.solve("dualip", engine="fused_cpu", check_every=10, max_iter=40, checkpoint=str(path))
    resumed = model.solve("dualip", engine="fused_cpu", check_every=10, resume=str(path))
    assert resumed.iterations == whole.iterations
    np.testing.assert_array_equal(resumed.x_all, whole.x_all)
    assert resumed.bound == whole.bound
    with pytest.raises(dm.ModelError, match="fused_cpu"):  # the option is part of the trajectory
        model.solve("dualip", check_every=10, resume=str(path))


def test_one_thread_and_two_give_the_same_answer():
    model = small_matching(3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.solve("dualip", engine="fused_cpu")
        torch.set_num_threads(2)
        two = model.solve("dualip", engine="fused_cpu")
    finally:
        torch.set_num_threads(before)
    assert one.status == two.status == dm.Status.OPTIMAL
    assert abs(one.objective - two.objective) <= 1e-4 * abs(two.objective)


def test_fused_float32_keeps_one_column_vector_and_per_thread_copies_of_ax():
    """The 1e6-nonzero benchmark matching: the fused step keeps one column vector (its scratch) and per-thread
    copies of A x instead of the torch path's temporaries; the check's gradient reuses that scratch. The storage
    is the torch engine's (fast): 47.5 B per nonzero in all against its 87.1."""
    sf = matching_model(synthetic_matching(100_000, 1000, 0.01, seed=0)).compile()
    report = memory_report(sf, DualipOptions(dtype="float32", engine="fused_cpu"))
    assert report.bytes_per_nnz <= 50.0, report.as_dict()
    assert report.held["fused.scratch"] == 4 * sf.n_cols
    assert report.iteration_temporaries / report.nnz <= 1.0  # a tau per block and the accumulators
    assert report.check_temporaries / report.nnz <= 6.0  # the candidate x and per-block vectors


@pytest.mark.parametrize("model, options, reason", [
    (small_matching(0), dict(matrix_dtype="bfloat16"), "matrix_dtype 'bfloat16'"),
])
def test_the_option_names_what_keeps_it_off(model, options, reason):
    with pytest.raises(dm.ModelError, match=r"DualipOptions.engine 'fused_cpu' cannot run this solve: " + reason):
        model.solve("dualip", engine="fused_cpu", **options)


def test_a_gpu_is_refused_by_name():
    with pytest.raises(dm.ModelError, match=r"engine 'fused_cpu' cannot run this solve: device cuda \(CPU only\); "
                                            r"engines that can: 'torch', 'compact', 'compiled'"):
        resolve_engine("fused_cpu", torch.device("cuda"), rows=3, cols=10)


def test_too_many_rows_for_per_thread_copies_of_ax_are_refused(monkeypatch):
    """20 rows over 2 columns: with the absolute allowance cut to 1, the rows outnumber the columns."""
    monkeypatch.setattr(options_module, "MAX_ACCUMULATORS", 1)
    m = dm.Model("tall")
    cols, rows = m.entities("col", 2), m.entities("row", 20)
    x = m.variable("x", over=cols, upper=1.0)
    m.maximize(x.sum())
    m.subject_to(dm.matmul(np.ones((20, 2)), x, rows) <= 1.5, name="rows")
    with pytest.raises(dm.ModelError, match="a copy of A x per thread"):
        m.solve("dualip", engine="fused_cpu")


@pytest.fixture
def fused_built(monkeypatch):
    """A list that gets an entry each time a solve builds the fused kernels."""
    built, init = [], FusedCpuKernels.__init__

    def counting(self, *args):
        built.append(1)
        init(self, *args)
    monkeypatch.setattr(FusedCpuKernels, "__init__", counting)
    return built


@pytest.mark.parametrize("threshold, fused", [(10, True), (10**9, False)])
def test_auto_runs_fused_from_its_column_count_on(monkeypatch, fused_built, threshold, fused):
    monkeypatch.setattr(options_module, "FUSED_AUTO_COLUMNS", threshold)
    res, _ = check_optimal(small_matching(4), "dualip")
    assert res.status == dm.Status.OPTIMAL
    assert bool(fused_built) == fused


def test_auto_takes_the_torch_kernels_with_a_warning_where_the_build_fails(monkeypatch, fused_built):
    """The C++ build fails (here: the compiler call raises): engine "auto" warns once per kernels object, solves with
    the torch kernels and does not try to build again; engine "fused_cpu" says why it cannot run."""
    from torch.utils import cpp_extension

    def no_build(*args, **kwargs):
        raise RuntimeError("no compiler today")
    monkeypatch.setattr(options_module, "FUSED_AUTO_COLUMNS", 10)
    monkeypatch.setattr(fused_cpu_module, "_MODULE", None)
    monkeypatch.setattr(fused_cpu_module, "_BUILD_ERROR", None)
    monkeypatch.setattr(cpp_extension, "load_inline", no_build)
    with pytest.warns(RuntimeWarning, match="no compiler today.*engine 'auto' runs the torch kernels"):
        res, _ = check_optimal(small_matching(5), "dualip")
    assert res.status == dm.Status.OPTIMAL and len(fused_built) == 1
    assert not fused_cpu_module.toolchain_found()
    res, _ = check_optimal(small_matching(5), "dualip")  # auto no longer chooses it
    assert res.status == dm.Status.OPTIMAL and len(fused_built) == 1
    with pytest.raises(dm.ModelError, match="engine 'fused_cpu': the C.. extension could not be built"):
        small_matching(5).solve("dualip", engine="fused_cpu")
