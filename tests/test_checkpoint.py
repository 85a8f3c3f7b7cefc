"""dualip checkpoints: a solve stopped at any check and resumed from its file ends bit for bit like one run.

Also: both file formats, refusal of a checkpoint for another problem or other options, corrupt and
truncated files, and Ctrl-C (KeyboardInterrupt inside the iteration) returning the best result so far.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dualip_model as dm
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
