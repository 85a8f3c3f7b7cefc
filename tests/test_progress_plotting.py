"""Progress display (log, tqdm, rich), callback chaining, and convergence plots (matplotlib Agg)."""

from __future__ import annotations

import io
import logging
import sys

import matplotlib
import numpy as np
import pytest

import dualip_model as dm
from dualip_model.plotting import FLOOR, plot_history
from dualip_model.progress import Progress, chain_callbacks, describe, summary
from dualip_model.synthetic import matching_model, synthetic_matching

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

LOGGER = "dualip_model.progress"


def record(iteration, time, gap=1e-2, infeasibility=1e-3, gamma=0.03, objective=10.5, bound=10.25):
    return dict(iteration=iteration, time=time, gap=gap, infeasibility=infeasibility, gamma=gamma,
                objective=objective, bound=bound)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def dualip_result():
    """A small matching (maximization) solved by dualip with its history."""
    return matching_model(synthetic_matching(40, 5, 0.4, seed=2)).solve("dualip", check_every=10)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------------------- callbacks
def test_chain_calls_every_callback_with_a_copy_and_stops_if_any_asks():
    seen = []

    def greedy(r):
        r["gap"] = -1.0  # must not leak into the next callback's record
        seen.append(("greedy", r["iteration"]))
        return r["iteration"] >= 2

    def watcher(r):
        seen.append(("watcher", r["gap"]))

    chained = chain_callbacks(greedy, None, watcher)
    assert chained(record(1, 0.0)) is False
    assert chained(record(2, 0.1)) is True  # greedy asks to stop; watcher still runs
    assert seen == [("greedy", 1), ("watcher", 1e-2), ("greedy", 2), ("watcher", 1e-2)]


def test_chain_rejects_what_is_not_callable():
    with pytest.raises(dm.ModelError, match="argument 1 .*int"):
        chain_callbacks(print, 3)


def test_callbacks_in_a_dualip_solve_see_every_record_and_can_stop_it(caplog):
    m = matching_model(synthetic_matching(40, 5, 0.4, seed=2))
    records = []
    with caplog.at_level(logging.INFO, logger=LOGGER):
        res = m.solve("dualip", check_every=5, callback=chain_callbacks(
            Progress(display="log", interval=0, description="dualip"), records.append))
    assert len(records) == len(res.history) >= 1
    assert [r["iteration"] for r in records] == [h["iteration"] for h in res.history]
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == len(records) + 1  # every record, then the final line
    assert lines[-2].startswith(f"dualip: iteration {records[-1]['iteration']} ")
    assert lines[-1] == f"dualip: {summary(res)}" and lines[-1].startswith(f"dualip: {res.status} after ")

    stop_after_two = chain_callbacks(Progress(display="log"), lambda r: len(records) >= 2 or records.append(r))
    records.clear()
    res = m.solve("dualip", check_every=5, tol=1e-9, callback=stop_after_two)
    assert res.status == dm.Status.INTERRUPTED and len(res.history) == 3


# ----------------------------------------------------------------------------------------- progress
def test_log_display_throttles_to_the_interval_and_logs_the_last_record_on_close(caplog):
    p = Progress(display="log", interval=5.0, description="run")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with p:
            for i, t in enumerate([0.0, 1.0, 2.0, 6.0, 7.0, 12.5, 13.0], start=1):
                assert p(record(10 * i, t)) is False  # never stops the solve
    iterations = [int(r.getMessage().split()[2]) for r in caplog.records if r.name == LOGGER]
    assert iterations == [10, 40, 60, 70]  # t = 0, 6, 12.5, and the last (t = 13) on close
    assert describe(record(70, 13.0)) in caplog.records[-1].getMessage()


def test_log_display_does_not_repeat_a_logged_last_record(caplog):
    p = Progress(display="log", interval=5.0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        p(record(10, 0.0))
        p.close()
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_describe_formats_missing_and_nan_values():
    line = describe(dict(iteration=5, gap=float("nan"), time=1.25))
    assert line == "iteration 5  objective -  bound -  gap -  infeasibility -  gamma -  time 1.2 s"


def test_describe_shows_objective_bound_and_the_signed_gap():
    line = describe(dict(iteration=5, objective=12.5, bound=12.25, gap=-2e-2, infeasibility=0.0, gamma=0.01,
                         time=0.5))
    assert line == ("iteration 5  objective 12.5  bound 12.25  gap -2.00e-02  infeasibility 0.00e+00  "
                    "gamma 1.00e-02  time 0.5 s")
    assert "gap +3.00e-04" in describe(dict(gap=3e-4))


def test_tqdm_display_writes_iterations_and_stats_to_the_stream():
    out = io.StringIO()
    p = Progress(display="tqdm", stream=out, description="dualip")
    p(record(25, 0.1, gap=3.5e-2))
    p(record(50, 0.2, gap=1.25e-3))
    p.close()
    text = out.getvalue()
    assert "dualip" in text and "50it" in text and "gap +1.25e-03" in text and "infeas 1.00e-03" in text
    assert "obj 10.5 bound 10.25" in text


def test_rich_display_writes_iterations_and_stats_to_the_stream(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich cuts lines at 80 columns on a stream that is not a terminal
    out = io.StringIO()
    p = Progress(display="rich", stream=out, description="dualip")
    p(record(25, 0.1))
    p(record(75, 0.2, gap=4.5e-4))
    p.close()
    text = out.getvalue()
    assert "iteration      75" in text and "gap +4.50e-04" in text and "gamma 3.00e-02" in text
    assert "obj 10.5 bound 10.25" in text


def test_a_lower_iteration_starts_a_new_display():
    out = io.StringIO()
    p = Progress(display="tqdm", stream=out)
    p(record(25, 0.1))
    p(record(50, 0.2))
    first_bar = p._bar
    p(record(25, 0.1))  # a second solve with the same Progress
    assert p._bar is not first_bar and p.records == 1
    p.close()


def test_auto_display_is_live_only_on_a_tty():
    assert Progress(stream=io.StringIO()).display == "log"
    assert Progress(stream=FakeTTY()).display == "tqdm"


def test_auto_display_falls_back_to_rich_then_log_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    assert Progress(stream=FakeTTY()).display == "rich"
    monkeypatch.setitem(sys.modules, "rich", None)
    assert Progress(stream=FakeTTY()).display == "log"
    with pytest.raises(dm.ModelError, match="display 'tqdm' needs the tqdm package"):
        Progress(display="tqdm")


@pytest.mark.parametrize("bad, match", [
    (dict(display="fancy"), "display must be one of"), (dict(interval=-1), "interval"),
    (dict(interval="5"), "interval"),
])
def test_bad_progress_arguments(bad, match):
    with pytest.raises(dm.ModelError, match=match):
        Progress(**bad)


# ----------------------------------------------------------------------------------------- plots
def test_plot_history_draws_three_panels_in_the_user_sense(dualip_result):
    res = dualip_result
    fig = plot_history(res)
    gap_ax, infeas_ax, obj_ax = fig.axes
    assert [a.get_title() for a in fig.axes] == ["|relative gap|", "relative primal infeasibility",
                                                 "objective, bound and dual"]
    assert gap_ax.get_yscale() == "log" and obj_ax.get_yscale() == "linear"
    iterations = [h["iteration"] for h in res.history]
    (gap_line,) = gap_ax.lines
    np.testing.assert_array_equal(gap_line.get_xdata(), iterations)
    np.testing.assert_allclose(gap_line.get_ydata(), np.maximum([abs(h["gap"]) for h in res.history], FLOOR))
    assert len(infeas_ax.lines) == 2
    lines = {line.get_label(): line for line in obj_ax.lines}
    assert set(lines) == {"dualip objective", "dualip bound", "dualip regularized dual"}
    # a maximization: the backend's history is in minimization terms, the result's and the plot in the user's
    assert lines["dualip objective"].get_ydata()[-1] == pytest.approx(-res.raw.history[-1]["objective"])
    assert lines["dualip objective"].get_ydata()[-1] == pytest.approx(res.objective, rel=1e-6)


def test_result_plot_is_plot_history(dualip_result):
    fig = dualip_result.plot(x="time")
    assert len(fig.axes) == 3 and fig.axes[0].get_xlabel() == plot_history(dualip_result, x="time").axes[0].get_xlabel()


def test_plot_history_against_time_on_given_axes(dualip_result):
    fig, ax = plt.subplots()
    assert plot_history(dualip_result, ax=ax, x="time", panels="gap") is fig
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [h["time"] for h in dualip_result.history])
    assert ax.get_xlabel() == "time (s)"


def test_plot_history_overlays_results_and_draws_final_numbers_without_history(dualip_result):
    m = dualip_result.model
    exact = m.solve("highs")
    fig = plot_history({"exact": exact, "first order": dualip_result, "raw": dualip_result.raw}, x="iteration")
    gap_ax, infeas_ax, obj_ax = fig.axes
    labels = [line.get_label() for line in gap_ax.lines]
    assert "first order" in labels and "raw" in labels
    final_line, final_point = gap_ax.lines[:2]
    assert final_line.get_label() == "exact (final gap)" and final_point.get_marker() == "o"
    assert final_line.get_ydata()[0] == final_point.get_ydata()[0] == FLOOR  # HiGHS: gap 0, at the floor
    assert final_point.get_xdata()[0] == exact.iterations
    assert not [line for line in infeas_ax.lines if line.get_label().startswith("exact")]
    highs_obj = next(line for line in obj_ax.lines if line.get_label() == "exact (final objective)")
    assert highs_obj.get_ydata()[0] == pytest.approx(exact.objective)
    raw_obj = next(line for line in obj_ax.lines if line.get_label() == "raw objective")
    assert raw_obj.get_ydata()[-1] == pytest.approx(dualip_result.raw.history[-1]["objective"])  # min terms


def test_plot_history_labels_repeated_backends_apart(dualip_result):
    fig = plot_history([dualip_result, dualip_result], panels=("gap",))
    assert [line.get_label() for line in fig.axes[0].lines] == ["dualip", "dualip #1"]


def test_plot_history_non_finite_values_are_gaps_in_the_line(dualip_result):
    res = dualip_result.raw
    history = [dict(h, bound=-np.inf) for h in res.history]
    fake = dm.RawResult(status=res.status, objective=res.objective, bound=-np.inf, history=history)
    fig = plot_history(fake, panels="objective")
    bound = next(line for line in fig.axes[0].lines if line.get_label() == "result 0 bound")
    assert np.isnan(bound.get_ydata()).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(x="seconds"), "x must be one of"), (dict(panels=("gap", "dual")), r"unknown panel\(s\) \['dual'\]"),
    (dict(panels=()), "unknown panel"),
])
def test_plot_history_bad_arguments(dualip_result, kwargs, match):
    with pytest.raises(dm.ModelError, match=match):
        plot_history(dualip_result, **kwargs)


def test_plot_history_bad_inputs(dualip_result):
    with pytest.raises(dm.ModelError, match="got int"):
        plot_history(3)
    with pytest.raises(dm.ModelError, match="no results"):
        plot_history([])
    with pytest.raises(dm.ModelError, match="item 'b' \\(str\\) is not a Result"):
        plot_history({"a": dualip_result, "b": "oops"})
    fig, ax = plt.subplots()
    with pytest.raises(dm.ModelError, match="3 matplotlib Axes .* got 1"):
        plot_history(dualip_result, ax=ax)


def test_plot_history_without_matplotlib(dualip_result, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(dm.ModelError, match="plotting needs matplotlib"):
        plot_history(dualip_result)


# ----------------------------------------------------------------------------------------- the model's sense
def test_callbacks_and_history_report_objective_and_bound_in_the_model_sense():
    m = matching_model(synthetic_matching(40, 5, 0.4, seed=2))  # a maximization
    records = []
    res = m.solve("dualip", check_every=10, callback=records.append)
    assert records == res.history and records[-1]["objective"] > 0
    for mine, raw in zip(res.history, res.raw.history):
        for key in ("objective", "bound", "dual", "candidate_objective"):
            assert mine[key] == -raw[key]
        assert mine["gap"] == raw["gap"]  # the relative gap does not depend on the sense
    assert res.history[-1]["objective"] == pytest.approx(res.objective, rel=1e-6)
    assert res.history[-1]["bound"] >= res.history[-1]["objective"]  # an upper bound of a maximization


def test_a_compared_standard_form_reports_in_its_sense_too():
    sf = matching_model(synthetic_matching(40, 5, 0.4, seed=2)).compile()
    records = []
    c = dm.compare(sf, ("dualip",), check_every=10, callback=records.append)
    assert records == c["dualip"].history and records[-1]["objective"] == pytest.approx(c["dualip"].objective)
    assert records[-1]["objective"] > 0


def test_progress_ends_a_live_solve_with_a_final_line():
    out = io.StringIO()
    m = matching_model(synthetic_matching(40, 5, 0.4, seed=2))
    res = m.solve("dualip", check_every=10, callback=chain_callbacks(Progress(display="tqdm", stream=out)))
    last = out.getvalue().rstrip("\n").split("\n")[-1]
    assert last == f"solve: {summary(res)}"
    assert last.startswith(f"solve: optimal after {res.iterations} iterations, ")
    assert f"objective {res.objective:.8g}, bound {res.bound:.8g}, gap +" in last


def test_summary_of_a_result_without_a_solution_has_no_numbers():
    raw = dm.RawResult(status=dm.Status.INFEASIBLE, iterations=75, solve_time=1.5)
    assert summary(raw) == "infeasible after 75 iterations, 1.50 s"


def test_chain_passes_the_result_to_every_callback_that_finishes():
    finished = []

    class Tracker:
        def __call__(self, record):
            return False

        def finish(self, result):
            finished.append(result)

    chain_callbacks(Tracker(), print, Tracker()).finish("the result")
    assert finished == ["the result", "the result"]


# ----------------------------------------------------------------------------------------- readable plots
def fake_history(gaps, objectives, bounds):
    history = [dict(iteration=10 * (k + 1), time=0.1 * (k + 1), gap=g, objective=o, bound=b, infeasibility=0.0)
               for k, (g, o, b) in enumerate(zip(gaps, objectives, bounds))]
    return dm.RawResult(status=dm.Status.OPTIMAL, objective=objectives[-1], bound=bounds[-1], history=history)


def test_the_gap_panel_marks_negative_gaps():
    res = fake_history([1e-1, -2e-2, 1e-3, -1e-5], [5.0, 4.0, 3.0, 3.0], [1.0, 2.0, 3.0, 3.0])
    ax = plot_history(res, panels="gap").axes[0]
    line, crosses = ax.lines
    np.testing.assert_allclose(line.get_ydata(), [1e-1, 2e-2, 1e-3, 1e-5])
    assert crosses.get_marker() == "x" and "gap < 0" in crosses.get_label()
    np.testing.assert_array_equal(crosses.get_xdata(), [20, 40])
    np.testing.assert_allclose(crosses.get_ydata(), [2e-2, 1e-5])


def test_the_objective_panel_zooms_on_the_end_of_the_run():
    objectives = [1e6, 1e5, 1e3, 12.0, 10.5, 10.2, 10.1, 10.0]
    bounds = [-1e6, -1e4, 0.0, 9.0, 9.8, 9.9, 9.95, 9.99]
    res = fake_history([0.1] * 8, objectives, bounds)
    low, high = plot_history(res, panels="objective").axes[0].get_ylim()
    assert 9.7 < low < 9.8 and 10.5 < high < 10.6  # the second half, 10% of its span either side
    low, high = plot_history(res, panels="objective", zoom=False).axes[0].get_ylim()
    assert low <= -1e6 and high >= 1e6


def test_results_of_different_backends_are_plotted_against_seconds(dualip_result):
    exact = dualip_result.model.solve("highs")
    assert plot_history({"highs": exact, "dualip": dualip_result}).axes[0].get_xlabel() == "time (s)"
    assert plot_history([dualip_result, dualip_result]).axes[0].get_xlabel() == "iteration"
    assert plot_history(dualip_result).axes[0].get_xlabel() == "iteration"
    assert plot_history({"highs": exact, "dualip": dualip_result}, x="iteration").axes[0].get_xlabel() == "iteration"
