"""dualip checkpoints: a solve stopped at any check and resumed from its file ends bit for bit like one run.

Also: both file formats, refusal of a checkpoint for another problem or other options, corrupt and
truncated files, Ctrl-C (KeyboardInterrupt inside the iteration) returning the best result so far, and the
generic saving of state dataclasses (checkpoint.record / restore) with its checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

import dualip_model as dm
from dualip_model.backends.dualip import checkpoint
from dualip_model.backends.dualip import solver as solver_module
from dualip_model.synthetic import matching_model, synthetic_matching
from test_parity import scaled_matching


def model(budget_scale: float = 1.0):
    data = synthetic_matching(300, 20, 0.3, seed=5)
    m = matching_model(data)
    if budget_scale != 1.0:
        m = matching_model(type(data)(**{**data.__dict__, "budget": data.budget * budget_scale}))
    return m


@pytest.fixture(scope="module")
def uninterrupted():
    res = model().solve("dualip", check_every=10)
    assert res.status == dm.Status.OPTIMAL and res.iterations > 60
    return res


def assert_same(a, b):
    assert a.status == b.status and a.iterations == b.iterations
    assert np.array_equal(a.x_all, b.x_all)
    assert np.array_equal(a.raw.row_dual, b.raw.row_dual)
    assert a.objective == b.objective and a.bound == b.bound


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("stop_at", [20, 50])
def test_resume_is_bitwise_identical_to_an_uninterrupted_solve(tmp_path, uninterrupted, suffix, stop_at):
    path = tmp_path / f"run{suffix}"
    first = model().solve("dualip", check_every=10, max_iter=stop_at, checkpoint=str(path))
    assert first.status == dm.Status.ITERATION_LIMIT and path.is_file()
    resumed = model().solve("dualip", check_every=10, resume=str(path))
    assert_same(resumed, uninterrupted)
    assert [h["iteration"] for h in resumed.history] == [h["iteration"] for h in uninterrupted.history]


def test_periodic_checkpoints_resume_from_the_last_save(tmp_path, uninterrupted):
    path = tmp_path / "run.npz"
    calls = []

    def stop_at_70(rec):
        calls.append(rec["iteration"])
        return rec["iteration"] >= 70  # like a crash right after the check at 70

    model().solve("dualip", check_every=10, checkpoint=str(path), checkpoint_every=30, callback=stop_at_70)
    assert calls[-1] == 70
    resumed = model().solve("dualip", check_every=10, resume=str(path))
    assert_same(resumed, uninterrupted)


def test_resume_refuses_another_problem_or_other_options(tmp_path):
    path = tmp_path / "run.npz"
    model().solve("dualip", check_every=10, max_iter=20, checkpoint=str(path))
    with pytest.raises(dm.ModelError, match="different problem"):
        model(budget_scale=0.5).solve("dualip", check_every=10, resume=str(path))
    with pytest.raises(dm.ModelError, match=r"other options: gamma_decay"):
        model().solve("dualip", check_every=10, gamma_decay=0.3, resume=str(path))
    with pytest.raises(dm.ModelError, match="either resume"):
        cold = model().solve("dualip", max_iter=20)
        model().solve("dualip", check_every=10, resume=str(path), warm_start=cold)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing", "foreign_npz"])
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_corrupt_or_missing_checkpoint_names_the_file(tmp_path, damage, suffix):
    path = tmp_path / f"run{suffix}"
    model().solve("dualip", check_every=10, max_iter=20, checkpoint=str(path))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "missing":
        path.unlink()
    elif suffix == ".npz":
        np.savez(path, y=np.zeros(3))
    else:
        import safetensors.torch

        safetensors.torch.save_file({"y": torch.zeros(3)}, str(path))
    with pytest.raises(dm.ModelError, match=str(path.name)):
        model().solve("dualip", check_every=10, resume=str(path))


def test_ctrl_c_returns_the_best_result_so_far_and_leaves_a_resumable_file(tmp_path, monkeypatch, uninterrupted):
    path = tmp_path / "run.npz"
    real = solver_module.DualAscentSolver.iterate
    calls = {"n": 0}

    def interrupted_on_the_fourth_block(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(solver_module.DualAscentSolver, "iterate", interrupted_on_the_fourth_block)
    res = model().solve("dualip", check_every=10, checkpoint=str(path))
    assert res.status == dm.Status.INTERRUPTED and res.iterations == 30
    assert np.isfinite(res.objective) and res.objective <= res.bound  # maximization: bound is an upper bound
    assert res.bound >= uninterrupted.objective - 1e-6 * abs(uninterrupted.objective)
    monkeypatch.setattr(solver_module.DualAscentSolver, "iterate", real)
    assert_same(model().solve("dualip", check_every=10, resume=str(path)), uninterrupted)


def test_resume_with_the_flat_row_search_is_bitwise(tmp_path):
    """The search's memory (the gradient at the previous check) is part of the checkpoint."""
    scaled = scaled_matching(1, entries=5)
    whole = scaled.solve("dualip", flat_rows=True, check_every=10)
    path = tmp_path / "run.npz"
    first = scaled.solve("dualip", flat_rows=True, check_every=10, max_iter=50, checkpoint=str(path))
    assert first.status == dm.Status.ITERATION_LIMIT
    assert_same(scaled.solve("dualip", flat_rows=True, check_every=10, resume=str(path)), whole)


# ------------------------------------------------------------------------- state dataclasses, saved generically
@dataclass
class Inner:
    v: torch.Tensor = field(metadata=checkpoint.index("blocks"))
    s: torch.Tensor = field(metadata=checkpoint.index("scalar"))
    count: int = 0


@dataclass
class Outer:
    inner: Inner
    y: torch.Tensor = field(metadata=checkpoint.index("rows"))
    x: torch.Tensor | None = field(default=None, metadata=checkpoint.index("columns"))
    note: Inner | None = None
    gamma: float = 1.0
    done: bool = False
    log: list = field(default_factory=list)


SIZES = {"rows": 3, "blocks": 2, "columns": 4}


def outer() -> Outer:
    return Outer(Inner(torch.tensor([1.0, 2.0]), torch.tensor(0.5), 7), torch.arange(3.0), gamma=2, done=True,
                 log=[{"a": 1}])


def test_any_state_dataclass_round_trips_through_a_file(tmp_path):
    """record/restore take every field from the dataclass: nested ones, a None tensor, ints, bools, lists."""
    tensors, meta = checkpoint.record(outer())
    assert sorted(tensors) == ["inner.s", "inner.v", "y"] and meta["inner"] == {"count": 7}
    checkpoint.save(tmp_path / "s.npz", tensors, meta)
    back = checkpoint.restore(Outer, *checkpoint.load(tmp_path / "s.npz"), "here", SIZES, torch.device("cpu"),
                              torch.float32)
    assert back.x is None and back.note is None and back.gamma == 2 and back.done is True and back.log == [{"a": 1}]
    assert back.inner.count == 7 and back.y.dtype == torch.float32 and torch.equal(back.inner.v, outer().inner.v)
    assert checkpoint.sharded_keys(Outer) == {"inner.v": "blocks", "x": "columns", "note.v": "blocks"}


@pytest.mark.parametrize("change, message", [
    (lambda t, m: t.pop("inner.v"), r"here: tensor 'inner\.v' is missing"),
    (lambda t, m: t.update(y=torch.zeros(4)), r"here: tensor 'y' is torch\.float32 of shape \(4,\), expected floating "
                                              r"point of shape \(3,\) \(rows\)"),
    (lambda t, m: t.update({"inner.s": torch.zeros(1)}), r"tensor 'inner\.s' .* expected floating point of shape \(\)"),
    (lambda t, m: t.update(y=torch.arange(3)), r"tensor 'y' is torch\.int64"),
    (lambda t, m: m.update(done=1), r"here: metadata field 'done' is '1', expected bool"),
    (lambda t, m: m.update(gamma=True), r"metadata field 'gamma' is 'True', expected int or float"),
    (lambda t, m: m["inner"].update(extra=1), r"metadata field 'inner' has unknown fields \['extra'\]"),
    (lambda t, m: m.update(inner=3), r"metadata field 'inner' is '3', expected the fields of Inner \(v, s, count\)"),
    (lambda t, m: m.pop("log"), r"metadata field 'log' is 'None', expected list"),
])
def test_a_saved_state_that_does_not_fit_names_the_field(change, message):
    tensors, meta = checkpoint.record(outer())
    change(tensors, meta)
    with pytest.raises(dm.ModelError, match=message):
        checkpoint.restore(Outer, tensors, meta, "here", SIZES, torch.device("cpu"), torch.float64)


def test_the_solver_run_is_saved_field_by_field(tmp_path):
    """Every field of Run and its AscentState is in the file (a field added to either is saved without a list to
    update), and a tensor of another problem's size is refused by name."""
    path = tmp_path / "run.npz"
    model().solve("dualip", check_every=10, max_iter=20, checkpoint=str(path))
    tensors, meta = checkpoint.load(path)
    run_fields = {f.name for f in dataclasses.fields(solver_module.Run)}
    saved = {k.split(".")[0] for k in tensors} | set(meta) - {"format", "problem", "options"}
    assert saved <= run_fields and run_fields - saved == {"prev_stage_y"}  # no gamma stage has ended yet: None
    assert {f"st.{f.name}" for f in dataclasses.fields(solver_module.AscentState)} <= set(tensors)
    assert checkpoint.sharded_keys(solver_module.Run) == {"st.tau": "blocks", "best_x": "columns"}
    tensors["st.tau"] = tensors["st.tau"][:-1]
    checkpoint.save(path, tensors, {k: v for k, v in meta.items() if k != "format"})
    with pytest.raises(dm.ModelError, match=r"run\.npz': tensor 'st\.tau' is torch\.float64 of shape \(299,\), "
                                            r"expected floating point of shape \(300,\) \(blocks\)"):
        model().solve("dualip", check_every=10, max_iter=40, resume=str(path))
