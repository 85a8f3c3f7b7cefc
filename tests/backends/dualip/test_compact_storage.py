"""The dualip compact storage's promises, and the memory accounting behind the first: <= 40 bytes per nonzero
in float32 (a 1.5e9-nonzero matching on one 80 GB GPU), and iterations that torch.compile traces as one graph
(the "compiled" engine)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

import dualip_model as dm
from dualip_model.backends.dualip import DualipOptions, memory_report
from dualip_model.backends.dualip.memory import TemporaryTracker, held_bytes
from dualip_model.backends.dualip.operators import to_device
from dualip_model.backends.dualip.options import resolve_engine
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.backends.dualip.solver import AscentState, DualAscentSolver
from dualip_model.synthetic import matching_model, synthetic_matching

MB = 1_000_000


def test_tracker_counts_what_ops_create_until_it_is_freed():
    x = torch.ones(MB // 4)  # 1 MB, created outside: not a temporary
    with TemporaryTracker() as tracker:
        a = x * 2  # +1 MB
        b = a + 1  # +1 MB: peak 2 MB
        head = b[:10]  # a view: nothing new, but it keeps b's storage alive
        del a, b
        x[:5].mul_(3)  # in place on an outside tensor: nothing new
        c = x.sum()  # 4 bytes
        assert tracker.current == MB + 4
    assert tracker.peak == 2 * MB + 0 and tracker.current == MB + 4
    del head
    assert tracker.current == 4
    del c
    assert tracker.current == 0


def test_held_bytes_counts_a_shared_storage_once():
    a = torch.zeros(100, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CSR "beta" and invariant-check notices
        csr = torch.sparse_csr_tensor(torch.tensor([0, 1, 2, 3], dtype=torch.int32),
                                      torch.tensor([0, 1, 2], dtype=torch.int32), torch.ones(3), size=(3, 3))
    held = held_bytes({"a": a, "view": a[10:], "csr": csr, "again": csr})
    assert held["a"] == 400 and held["view"] == 0 and held["again"] == 0
    assert held["csr"] == 4 * 4 + 3 * 4 + 3 * 4  # crow + col (int32) + values


@pytest.fixture(scope="module")
def million():
    """The benchmark's matching: 100,000 users x 1,000 items, 10 edges per user (1e6 nonzeros)."""
    return matching_model(synthetic_matching(100_000, 1000, 0.01, seed=0)).compile()


def test_compact_float32_peak_is_at_most_40_bytes_per_nonzero(million):
    report = memory_report(million, DualipOptions(dtype="float32", engine="compact"))
    assert report.nnz == 1_000_000
    assert report.bytes_per_nnz <= 40.0, report.as_dict()
    per_nnz = {k: v / report.nnz for k, v in report.held.items()}
    # what is held per nonzero: A's row indices, A^T's (index, value), costs, block of each column, best primal
    big = {k for k, v in per_nnz.items() if v >= 1.0}
    assert big == {"A.idx", "At.idx", "At.vals", "c", "blocks.seg", "best_x"}, per_nnz
    # temporaries: about two column vectors and a mask in the loop, as many in a check (chunked repair)
    assert report.iteration_temporaries / report.nnz <= 12.0
    assert report.check_temporaries / report.nnz <= 12.0


def test_fast_storage_trades_memory_for_cpu_speed(million):
    """The fast storage (the CPU default) adds A's CSR values, the repair's sorted copy and unchunked check
    temporaries; its blocks are sorted by size here (25 sizes over 1e6 columns), so no membership CSR."""
    compact = memory_report(million, DualipOptions(dtype="float32", engine="compact"))
    fast = memory_report(million, DualipOptions(dtype="float32", engine="torch"))
    extra = (fast.held_total - compact.held_total) / fast.nnz
    # A.vals, the plan's copy, int64 block offsets (faster CPU segment sums)
    assert extra == pytest.approx(4 + 8 + 0.4, abs=0.1)
    assert "blocks.member" not in fast.held
    # and its check runs on all entries at once (float64 scans over every entry), the compact one in chunks
    assert fast.check_temporaries > 3 * compact.check_temporaries
    assert fast.bytes_per_nnz < 100.0


def _solver(storage: str, values: torch.dtype | None = None):
    sf = matching_model(synthetic_matching(2000, 100, 0.05, seed=0)).compile()
    prob = ScaledProblem.build(sf, torch.device("cpu"), torch.float64, storage=storage, values=values)
    solver = DualAscentSolver(prob, DualipOptions(engine={"fast": "torch", "compact": "compact"}[storage]))
    state = AscentState.start(torch.zeros(prob.m, dtype=torch.float64), sf.n_blocks, prob.norm_sq / 0.03)
    return solver, state, 0.03 / prob.norm_sq


@pytest.mark.parametrize("values", [None, torch.bfloat16])
def test_compact_iterations_compile_as_one_graph(values):
    """fullgraph=True fails on any graph break: a host sync (.item(), a Python branch on a tensor) or a sparse
    tensor. The compact storage's k iterations trace whole and give the eager iterates exactly (also with A's
    values in 16 bits)."""
    solver, state, step = _solver("compact", values)
    compiled = torch.compile(solver.iterate, fullgraph=True, backend="eager")
    traced = compiled(state, 0.03, step, 5)
    eager = solver.iterate(state, 0.03, step, 5)
    for name in ("y", "w", "t", "tau", "lip"):
        assert torch.equal(getattr(traced, name), getattr(eager, name)), name


def test_fast_storage_does_not_compile_as_one_graph():
    """The control: torch sparse CSR products break the graph (torch.compile does not take sparse tensors)."""
    solver, state, step = _solver("fast")
    with pytest.raises(Exception, match="(?i)sparse"):
        torch.compile(solver.iterate, fullgraph=True, backend="eager")(state, 0.03, step, 5)


def test_compile_option_replays_one_graph_across_gamma_stages(monkeypatch):
    """engine "compiled": the steps between checks are one graph; gamma, step and the curvature floor enter as
    tensors, so the gamma stages do not recompile (one graph per distinct step count: check_every, the shorter
    chunk before a stage's confirming check and the last partial interval). Traced here with a counting backend; the
    answer is the eager one."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, **{**kw, "backend": counting_backend,
                                                                           "mode": None}))
    model = matching_model(synthetic_matching(500, 50, 0.1, seed=0))
    compiled = model.solve("dualip", engine="compiled", check_every=10, max_iter=1125)
    eager = model.solve("dualip", engine="compact", check_every=10, max_iter=1125)
    stages = len({h["gamma"] for h in compiled.history})
    assert stages >= 3 and len(graphs) <= 3, (stages, len(graphs))
    assert compiled.iterations == eager.iterations and compiled.status == eager.status
    assert compiled.objective == pytest.approx(eager.objective, rel=1e-12)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU code generation needs a C++ compiler")
def test_compile_option_with_inductor_solves_like_eager():
    model = matching_model(synthetic_matching(2000, 100, 0.05, seed=0))
    compiled = model.solve("dualip", engine="compiled", check_every=10)
    eager = model.solve("dualip", engine="compact", check_every=10)
    assert compiled.status == eager.status == dm.Status.OPTIMAL
    assert compiled.objective == pytest.approx(eager.objective, rel=2e-4)


def test_the_compiled_engine_needs_one_process():
    with pytest.raises(dm.ModelError, match=r"engine 'compiled' cannot run this solve: 2 processes \(torch.compile "
                                            r"takes no collectives\); engines that can: 'torch', 'compact', "
                                            r"'fused_cpu' \(choices: 'auto', 'torch', "):
        resolve_engine("compiled", torch.device("cpu"), world=2, rows=3, cols=10)
    assert resolve_engine("compiled", torch.device("cpu"), rows=3, cols=10) == "compiled"


# ------------------------------------------------------------------------------- A's values in 16 bits
def test_bfloat16_values_save_2_bytes_per_nonzero_of_a_matching(million):
    """A matching stores one value per nonzero (A reads A^T's): 37.26 -> 35.26 B per nonzero in float32."""
    full = memory_report(million, DualipOptions(dtype="float32", engine="compact"))
    half = memory_report(million, DualipOptions(dtype="float32", engine="compact", matrix_dtype="bfloat16"))
    assert half.held["At.vals"] * 2 == full.held["At.vals"]
    assert (full.held_total - half.held_total) / half.nnz == pytest.approx(2.0, abs=1e-6)
    assert half.bytes_per_nnz <= full.bytes_per_nnz - 2.0 + 1e-9


@pytest.mark.parametrize("values, tol", [("bfloat16", 2e-3), ("float16", 1e-3)])  # 8 and 11 significant bits
def test_16_bit_values_give_a_certified_answer_with_a_feasible_primal(values, tol):
    """Rounded up (A >= 0 on <= rows), the stored A bounds the exact one from above, so the repaired primal is
    feasible for the exact A; the bound and the gap are the float64 ones of the exact standard form."""
    model = matching_model(synthetic_matching(2000, 100, 0.05, seed=0))
    ref = model.solve("highs")
    res = model.solve("dualip", dtype="float32", engine="compact", matrix_dtype=values, tol=tol)
    assert res.status == dm.Status.OPTIMAL and res.gap <= tol
    assert res.bound >= ref.objective - 1e-9 * abs(ref.objective)  # maximization: an upper bound
    assert abs(res.objective - ref.objective) <= 2 * tol * abs(ref.objective)
    sf = res.standard_form
    x = res.raw.x
    assert (sf.A @ x <= sf.row_upper * (1 + 1e-6)).all() and (x >= 0).all()


def test_values_rounded_up_are_the_next_representable_ones():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.lognormal(0, 3, 1000), -rng.lognormal(0, 3, 1000), [0.0, 1.0, 0.5]])
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        up = to_device(a, dtype, torch.device("cpu"), round_up=True)
        ok = np.isfinite(up.double().numpy())  # float16 overflows above 65504
        assert (up.double().numpy()[ok] >= a[ok]).all()
        below = torch.nextafter(up, torch.full((), -torch.inf, dtype=dtype)).double().numpy()
        assert (below[ok] < a[ok]).all()  # the smallest one at or above
        nearest = to_device(a, dtype, torch.device("cpu"))
        assert (nearest.double().numpy()[ok] < a[ok]).any()  # rounding to nearest goes below, for contrast


def test_16_bit_values_need_the_compact_storage_and_float16_their_range():
    model = matching_model(synthetic_matching(200, 20, 0.2, seed=0))
    with pytest.raises(dm.ModelError, match=r"DualipOptions.engine 'torch' cannot run this solve: matrix_dtype "
                                            r"'bfloat16' .*; engines that can: 'compact', 'compiled'"):
        model.solve("dualip", engine="torch", matrix_dtype="bfloat16")
    auto = model.solve("dualip", matrix_dtype="bfloat16", dtype="float32", max_iter=5)
    assert auto.iterations == 5  # "auto" takes the compact engine for 16-bit values
    with pytest.raises(dm.ModelError, match="DualipOptions.matrix_dtype: invalid value 'int8'"):
        model.solve("dualip", matrix_dtype="int8")
    data = synthetic_matching(200, 20, 0.2, seed=0)
    data.cost[0] = 1e-9 * data.cost[0]  # 1e-9 of its row's norm: below float16's smallest normal, 6.1e-5
    with pytest.raises(dm.ModelError, match=rf"coupling row {data.item[0]}\b.*use 'bfloat16'"):
        matching_model(data).solve("dualip", engine="compact", matrix_dtype="float16")
