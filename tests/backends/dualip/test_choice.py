"""algorithm="auto" (choice.py): the method picked from the model's structure, the dual ascent's hand-over to PDHG,
and checkpoints across the hand-over."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import dualip_model as dm
from dualip_model.backends.dualip import choice
from dualip_model.backends.dualip.backend import _scaled_problem
from dualip_model.backends.dualip.options import DualipOptions
from test_termination import assert_contract, revenue_floor_model

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from families import FAMILIES  # noqa: E402


def picked(model: dm.Model, algorithm: str = "auto") -> choice.Choice:
    options = DualipOptions(algorithm=algorithm)
    return choice.choose(algorithm, _scaled_problem(model.compile(), options)[0])


def test_auto_picks_pdhg_for_many_short_rows_and_the_dual_ascent_for_few_long_ones():
    few_users = picked(FAMILIES["few_users_per_item"](5_000, 0))  # 5 entries per row
    assert few_users.algorithm == "pdhg" and few_users.switch_after is None
    assert "5 coupling entries per row <= 32" in few_users.reason
    for family in ("multi_objective", "assignment", "power_law"):  # 250+ entries per row, simplex blocks
        long_rows = picked(FAMILIES[family](200_000, 0))
        assert long_rows.algorithm == "dual_ascent" and long_rows.switch_after == choice.SWITCH_AFTER, family
    delivery = picked(FAMILIES["guaranteed_delivery"](50_000, 0))  # 500 entries per row, box-cut blocks
    assert (delivery.algorithm, delivery.reason) == ("pdhg", "auto: box-cut blocks")


@pytest.mark.parametrize("algorithm", ["dual_ascent", "pdhg"])
def test_an_algorithm_set_by_name_is_kept_without_hand_over(algorithm):
    c = picked(FAMILIES["few_users_per_item"](5_000, 0), algorithm)
    assert (c.algorithm, c.switch_after) == (algorithm, None)


def test_auto_solves_and_says_which_method_ran():
    res = FAMILIES["few_users_per_item"](5_000, 1).solve("dualip")
    assert res.status == dm.Status.OPTIMAL and res.message.startswith("pdhg, ") and "auto: " in res.message
    res = FAMILIES["assignment"](5_000, 1).solve("dualip")
    assert res.status == dm.Status.OPTIMAL and res.message.startswith("dual ascent, gamma ")
    assert_contract(res, 1e-4)


@pytest.fixture
def early_hand_over(monkeypatch):
    """The hand-over after 100 dual ascent iterations (the revenue-floor model below takes ~2,000 without it)."""
    monkeypatch.setattr(choice, "SWITCH_AFTER", 100)


def test_the_dual_ascent_hands_over_to_pdhg_and_the_result_meets_the_contract(early_hand_over):
    m = revenue_floor_model(800, 40, 0.1, 4)  # 6,125 dual ascent iterations alone
    alone = m.solve("dualip", algorithm="dual_ascent", check_every=25)
    res = m.solve("dualip", check_every=25)
    assert res.message.startswith("dual ascent for 100 iterations, then pdhg, ")
    assert_contract(res, 1e-4)
    assert 100 < res.iterations < alone.iterations / 2, (res.iterations, alone.iterations)
    # one history: the dual ascent's checks (with gamma), then PDHG's (without), iterations and seconds increasing
    steps = [h["iteration"] for h in res.history]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert res.history[0]["gamma"] is not None and res.history[-1]["gamma"] is None
    assert all(a["time"] <= b["time"] for a, b in zip(res.history, res.history[1:]))
    # the dual ascent's best bound is carried over (a maximization: the upper bound only falls)
    assert res.bound <= min(h["bound"] for h in res.history if h["iteration"] <= 100) + 1e-9 * abs(res.bound)


def test_no_hand_over_within_the_users_iteration_limit(early_hand_over):
    res = revenue_floor_model(800, 40, 0.1, 4).solve("dualip", check_every=25, max_iter=100)
    assert res.status == dm.Status.ITERATION_LIMIT and res.iterations == 100
    assert res.message.startswith("dual ascent, gamma ")


@pytest.mark.parametrize("stop_at", [50, 200])  # in the dual ascent, in PDHG
def test_auto_resumes_bit_for_bit_on_either_side_of_the_hand_over(early_hand_over, tmp_path, stop_at):
    m = revenue_floor_model(800, 40, 0.1, 4)
    whole = m.solve("dualip", check_every=25)
    path = tmp_path / "run.npz"
    first = m.solve("dualip", check_every=25, max_iter=stop_at, checkpoint=str(path), checkpoint_every=25)
    assert first.status == dm.Status.ITERATION_LIMIT and first.iterations == stop_at
    resumed = m.solve("dualip", check_every=25, resume=str(path))
    assert resumed.status == whole.status == dm.Status.OPTIMAL and resumed.iterations == whole.iterations
    assert np.array_equal(resumed.x_all, whole.x_all) and np.array_equal(resumed.raw.row_dual, whole.raw.row_dual)
    assert resumed.objective == whole.objective and resumed.bound == whole.bound
    if stop_at < 100:
        assert resumed.message == whole.message
    else:
        assert resumed.message.startswith("pdhg, ") and "resumed after the dual ascent handed over" in resumed.message


def test_entries_spread_far_within_rows_keep_to_the_dual_ascent():
    """PDHG does not converge in 20,000 iterations with entries over 1e-6..1e6 (the dual ascent's flat-row search
    does): auto neither picks it nor hands over to it there."""
    from test_parity import scaled_matching

    spread = picked(scaled_matching(0, entries=6))
    assert (spread.algorithm, spread.switch_after) == ("dual_ascent", None) and "spread" in spread.reason
    assert choice.row_spread(scaled_matching(0, entries=6).compile()) > 1e14
    assert picked(scaled_matching(0, entries=1)).algorithm == "pdhg"  # 1e-1..1e1 (12 entries per row): PDHG copes


def test_row_spread_of_a_sharded_model_is_the_whole_models():
    """Each rank holds some columns of every row: the rows' largest and smallest entries are reduced over the ranks
    before the ratio (a row's 1 on one rank and 1e6 on the other is a spread of 1e6, though each rank sees 1)."""
    m = dm.Model("split")
    s = m.entities("s", 4)
    x = m.variable("x", over=s, lower=0.0, upper=1.0)
    m.minimize(x.sum())
    m.subject_to(dm.matmul(np.array([[1.0, 1.0, 1e6, 1e6], [2.0, 2.0, 3.0, 3.0]]), x, m.entities("r", 2)) <= 5,
                 name="rows")
    sf = m.compile()
    halves = [sf.A[:, :2], sf.A[:, 2:]]

    class Ranks:
        """One rank's communicator: max_np takes the elementwise max with what the other rank passed."""

        def __init__(self, other=None):
            self.sent, self.other = [], list(other or [])

        def max_np(self, a):
            self.sent.append(np.asarray(a, dtype=np.float64))
            return np.maximum(self.sent[-1], self.other.pop(0)) if self.other else self.sent[-1]

    def shard(a):
        return type("Shard", (), dict(A_data=a.data, A_indices=a.indices, A_indptr=a.indptr, n_rows=a.shape[0],
                                      n_cols=a.shape[1]))

    second = Ranks()
    assert choice.row_spread(shard(halves[1]), second) == 1.0  # alone, each rank sees 1
    assert choice.row_spread(shard(halves[0]), Ranks(second.sent)) == choice.row_spread(sf) == 1e6
