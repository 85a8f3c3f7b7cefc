"""The dualip compact storage's promises, and the memory accounting behind the first: <= 40 bytes per nonzero
in float32 (a 1.5e9-nonzero matching on one 80 GB GPU), and iterations that torch.compile traces as one graph
(the ``compile`` option)."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

import dualip_model as dm
from dualip_model.backends.dualip import DualipOptions, memory_report
from dualip_model.backends.dualip.memory import TemporaryTracker, held_bytes
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
    report = memory_report(million, DualipOptions(dtype="float32", storage="compact"))
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
    compact = memory_report(million, DualipOptions(dtype="float32", storage="compact"))
    fast = memory_report(million, DualipOptions(dtype="float32", storage="fast"))
    extra = (fast.held_total - compact.held_total) / fast.nnz
    # A.vals, the plan's copy, int64 block offsets (faster CPU segment sums)
    assert extra == pytest.approx(4 + 8 + 0.4, abs=0.1)
    assert "blocks.member" not in fast.held
    # and its check runs on all entries at once (float64 scans over every entry), the compact one in chunks
    assert fast.check_temporaries > 3 * compact.check_temporaries
    assert fast.bytes_per_nnz < 100.0


def _solver(storage: str):
    sf = matching_model(synthetic_matching(2000, 100, 0.05, seed=0)).compile()
    prob = ScaledProblem.build(sf, torch.device("cpu"), torch.float64, storage=storage)
    solver = DualAscentSolver(prob, DualipOptions(storage=storage))
    state = AscentState.start(torch.zeros(prob.m, dtype=torch.float64), sf.n_blocks, prob.norm_sq / 0.03)
    return solver, state, 0.03 / prob.norm_sq


def test_compact_iterations_compile_as_one_graph():
    """fullgraph=True fails on any graph break: a host sync (.item(), a Python branch on a tensor) or a sparse
    tensor. The compact storage's k iterations trace whole and give the eager iterates exactly."""
    solver, state, step = _solver("compact")
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
    """compile=True: the steps between checks are one graph; gamma, step and the curvature floor enter as
    tensors, so the gamma stages do not recompile (one graph per distinct step count: check_every and the
    last partial interval). Traced here with a counting backend; the answer is the eager one."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, **{**kw, "backend": counting_backend,
                                                                           "mode": None}))
    model = matching_model(synthetic_matching(500, 50, 0.1, seed=0))
    compiled = model.solve("dualip", storage="compact", compile=True, check_every=10, max_iter=1125)
    eager = model.solve("dualip", storage="compact", check_every=10, max_iter=1125)
    stages = len({h["gamma"] for h in compiled.history})
    assert stages >= 3 and len(graphs) <= 2, (stages, len(graphs))
    assert compiled.iterations == eager.iterations and compiled.status == eager.status
    assert compiled.objective == pytest.approx(eager.objective, rel=1e-12)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU code generation needs a C++ compiler")
def test_compile_option_with_inductor_solves_like_eager():
    model = matching_model(synthetic_matching(2000, 100, 0.05, seed=0))
    compiled = model.solve("dualip", storage="compact", compile=True, check_every=10)
    eager = model.solve("dualip", storage="compact", check_every=10)
    assert compiled.status == eager.status == dm.Status.OPTIMAL
    assert compiled.objective == pytest.approx(eager.objective, rel=2e-4)


def test_compile_option_needs_the_compact_storage():
    model = matching_model(synthetic_matching(200, 10, 0.5, seed=0))
    with pytest.raises(dm.ModelError, match="compile needs storage='compact'"):
        model.solve("dualip", storage="fast", compile=True)
