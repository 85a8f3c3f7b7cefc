"""compare(): one model on several backends, the table, options routing, errors before any solve, plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pytest

import dualip_model as dm
from dualip_model import registry
from dualip_model.backends.dualip import DualipOptions
from dualip_model.backends.highs import HighsOptions
from dualip_model.compare import COLUMNS, Comparison, FormResult, backend_options, compare
from dualip_model.synthetic import matching_model, synthetic_matching

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

AVGAS = Path(__file__).resolve().parent / "data" / "netlib" / "avgas.mps"


@dataclass(frozen=True)
class FakeOptions:
    tol: float = 1e-6
    time_limit: float | None = None
    objective: float = 0.0  # what the fake reports, in minimization terms


def fake_backend(name, exact, calls):
    """A scripted backend: returns x = 0 and FakeOptions.objective; records the options it was given."""

    class Fake:
        capabilities = frozenset({dm.Capability.EXACT} if exact else set())
        Options = FakeOptions

        def solve(self, sf, options):
            calls.append((name, options))
            return dm.RawResult(status=dm.Status.OPTIMAL, x=np.zeros(sf.n_cols), objective=options.objective,
                                bound=options.objective, iterations=1, solve_time=0.5)

    Fake.name = name
    return Fake


@pytest.fixture
def fakes(monkeypatch):
    """Backends 'fake_exact' and 'fake_approx' registered for this test only; yields their calls."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_instances", dict(registry._instances))
    calls = []
    registry.register("fake_exact", fake_backend("fake_exact", True, calls))
    registry.register("fake_approx", fake_backend("fake_approx", False, calls))
    return calls


@pytest.fixture(scope="module")
def matching():
    return matching_model(synthetic_matching(40, 5, 0.4, seed=4))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_compare_highs_and_dualip_on_a_matching(matching):
    c = compare(matching, check_every=10)  # check_every: only dualip has it
    assert isinstance(c, Comparison) and list(c.results) == ["highs", "dualip"]
    t = c.table
    assert list(t.columns) == list(COLUMNS) and list(t.index) == ["highs", "dualip"] and t.index.name == "backend"
    assert (t.status == "optimal").all()
    assert c.reference_backend == "highs" and c.reference == pytest.approx(c["highs"].objective)
    assert t.loc["highs", "objective_rel_diff"] == 0.0
    dualip = c["dualip"]
    expected = (dualip.objective - c.reference) / max(1.0, abs(c.reference))
    assert t.loc["dualip", "objective_rel_diff"] == pytest.approx(expected)
    assert abs(expected) <= 2e-4
    assert t.loc["dualip", "iterations"] == dualip.iterations and t.loc["dualip", "gap"] == dualip.gap
    assert t.loc["dualip", "time"] == dualip.solve_time and t.loc["highs", "bound"] == c["highs"].bound
    assert c["dualip"].standard_form is c["highs"].standard_form  # compiled once
    assert "objective_rel_diff" in str(c) and "reference='highs'" in repr(c)
    with pytest.raises(dm.ModelError, match="no backend 'gurobi'; it has"):
        c["gurobi"]


def test_comparison_plot_overlays_histories_and_the_exact_final_gap(matching):
    c = compare(matching, options={"dualip": {"check_every": 10}})
    fig = c.plot(panels=("gap", "objective"))
    gap_ax, obj_ax = fig.axes
    labels = [line.get_label() for line in gap_ax.lines]
    assert "highs (final gap)" in labels and "dualip" in labels
    assert gap_ax.get_xlabel() == "time (s)"  # iterations of different backends do not compare
    assert "highs (final objective)" in [line.get_label() for line in obj_ax.lines]


def test_compare_a_standard_form_and_a_file(matching):
    sf = matching.compile()
    c = compare(sf, backends=["highs", "dualip"], check_every=10)
    exact = matching.solve("highs")
    highs = c["highs"]
    assert isinstance(highs, FormResult) and highs.standard_form is sf
    assert highs.objective == pytest.approx(exact.objective, rel=1e-9) and highs.gap == 0.0
    assert highs.bound == pytest.approx(exact.bound, rel=1e-9) and highs.solve_time > 0
    np.testing.assert_allclose(sf.layout.to_original(highs.raw.x), exact.x_all, atol=1e-9)
    assert c.reference_backend == "highs" and abs(c.table.loc["dualip", "objective_rel_diff"]) <= 2e-4
    assert "FormResult(status='optimal'" in repr(highs)
    obj_ax = c.plot(panels="objective").axes[0]
    dualip_line = next(line for line in obj_ax.lines if line.get_label() == "dualip objective")
    assert dualip_line.get_ydata()[-1] == pytest.approx(c["dualip"].objective, rel=1e-6)  # user sense
    c = compare(str(AVGAS), backends=("highs",))
    assert c.table.loc["highs", "objective"] == pytest.approx(-7.75, rel=1e-9)


def test_shared_settings_reach_backends_that_have_them_and_per_backend_options_win(fakes, matching):
    compare(matching, ["fake_approx", "fake_exact", "highs"], tol=1e-3, time_limit=30.0,
            options={"fake_exact": {"tol": 0.5}})
    got = dict(fakes)
    assert got["fake_approx"] == FakeOptions(tol=1e-3, time_limit=30.0)
    assert got["fake_exact"] == FakeOptions(tol=0.5, time_limit=30.0)


def test_an_options_instance_is_used_as_it_is(fakes, matching):
    compare(matching, ["fake_approx"], options={"fake_approx": FakeOptions(objective=2.0)}, tol=1e-3)
    assert fakes == [("fake_approx", FakeOptions(objective=2.0))]


def test_reference_is_the_best_optimal_exact_result(fakes, matching):
    # matching maximizes: the standard form minimizes -f, so objective=-5 is a user objective of 5
    c = compare(matching, ["fake_approx", "fake_exact"],
                options={"fake_exact": {"objective": -5.0}, "fake_approx": {"objective": -4.0}})
    assert c.reference_backend == "fake_exact" and c.reference == 5.0
    assert c.table.loc["fake_approx", "objective_rel_diff"] == pytest.approx((4.0 - 5.0) / 5.0)
    c = compare(matching, ["fake_approx"])
    assert c.reference_backend is None and np.isnan(c.table["objective_rel_diff"]).all()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(backends=["fake_approx", "cplexx"]), dm.BackendNotFoundError, "no backend named 'cplexx'"),
    (dict(backends=["fake_approx"], gamma=0.1), dm.ModelError, r"no compared backend \(fake_approx\).*\['gamma'\]"),
    (dict(backends=["fake_approx"], options={"highs": {}}), dm.ModelError, r"backend\(s\) \['highs'\].*not compared"),
    (dict(backends=["fake_approx"], options={"fake_approx": {"gamma": 1}}), dm.ModelError,
     r"'fake_approx' has no option\(s\) \['gamma'\]"),
    (dict(backends=["fake_approx"], options={"fake_approx": HighsOptions()}), dm.ModelError,
     "must be FakeOptions or a dict, got HighsOptions"),
    (dict(backends=["fake_approx"], options=[1]), dm.ModelError, "options must be a dict"),
    (dict(backends=["fake_approx", "fake_approx"]), dm.ModelError, r"\['fake_approx'\] given more than once"),
    (dict(backends=[]), dm.ModelError, "no backends"),
])
def test_bad_arguments_fail_before_anything_is_solved(fakes, matching, kwargs, error, match):
    with pytest.raises(error, match=match):
        compare(matching, **kwargs)
    assert fakes == []


def test_bad_models():
    with pytest.raises(dm.ModelError, match="got int"):
        compare(3)
    with pytest.raises(dm.ModelError, match="'missing.mps' does not exist"):
        compare("missing.mps", backends=["highs"])


def test_backend_options_validates_names_and_values():
    assert backend_options("dualip", {"tol": 1e-3}, max_iter=5) == DualipOptions(tol=1e-3, max_iter=5)
    assert backend_options("highs", HighsOptions(threads=1), solver="ipm") == HighsOptions(threads=1, solver="ipm")
    with pytest.raises(dm.ModelError, match="DualipOptions.tol"):
        backend_options("dualip", tol=-1.0)
    with pytest.raises(dm.ModelError, match=r"DualipOptions.tol: invalid value"):
        backend_options("dualip", tol="small")
