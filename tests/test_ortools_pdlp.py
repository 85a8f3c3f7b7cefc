"""The ortools-pdlp adapter (OR-Tools PDLP on the flat LP) against HiGHS: objective, row and block duals, statuses,
options and limits, and its place beside dualip in compare(). Skipped only where ortools does not import (the test
extras install it)."""

from __future__ import annotations

import numpy as np
import pytest

import dualip_model as dm
from dualip_model.synthetic import matching_model, synthetic_matching
from fuzz_models import allocation_model

pytest.importorskip("ortools.pdlp.python.pdlp", reason="ortools is not installed (pip install 'dualip_model[test]')")

from dualip_model.backends.ortools_pdlp import OrtoolsPdlpOptions  # noqa: E402
from dualip_model.backends.ortools_pdlp.backend import map_status, pdlp_params  # noqa: E402
from ortools.pdlp import solve_log_pb2  # noqa: E402


def test_registered_by_name_and_found_without_importing_it():
    assert "ortools-pdlp" in dm.registry.available()
    backend = dm.registry.get("ortools-pdlp")
    assert backend.name == "ortools-pdlp" and backend.Options is OrtoolsPdlpOptions
    assert dm.Capability.CERTIFIED_BOUND not in backend.capabilities  # its dual objective is not certified


def test_matching_objective_row_and_block_duals_match_highs():
    m = matching_model(synthetic_matching(40, 6, 0.4, seed=3))
    ref = m.solve("highs")
    res = m.solve("ortools-pdlp", tol=1e-9)
    assert res.status == dm.Status.OPTIMAL
    assert res.objective == pytest.approx(ref.objective, rel=1e-7)
    assert res.bound == pytest.approx(ref.objective, rel=1e-7)  # the dual objective, close at this tol
    assert np.allclose(res.dual("budget").to_numpy(), ref.dual("budget").to_numpy(), atol=1e-6)
    assert np.allclose(res.dual("one_per_user").to_numpy(), ref.dual("one_per_user").to_numpy(), atol=1e-6)
    assert res.violation()[0] <= 1e-7
    assert "not certified" in res.guarantees[0]


def test_equality_blocks_and_ranges_match_highs():
    m = allocation_model()
    ref, res = m.solve("highs"), m.solve("ortools-pdlp", tol=1e-9)
    assert res.status == dm.Status.OPTIMAL and res.objective == pytest.approx(ref.objective, rel=1e-7)
    # the duals are not unique here (assign and load trade off): they must price the optimum, and the ranged
    # rows' duals must have the sign of the side they sit on (>= 0 at the floor, <= 0 at the cap)
    assert res.bound == pytest.approx(ref.objective, rel=1e-7)
    load, activity = res.dual("load").to_numpy(), res.activity("load")[0]
    assert (load[activity > 0.5 + 1e-6] <= 1e-7).all() and (load[activity < 2.0 - 1e-6] >= -1e-7).all()


def test_infeasible_and_unbounded_statuses():
    m = dm.Model("infeasible")
    users = m.entities("user", 2)
    x = m.variable("x", over=users, upper=1.0)
    m.minimize(x.sum())
    m.subject_to(x.sum() >= 5.0, name="too_much")
    res = m.solve("ortools-pdlp")
    assert res.status == dm.Status.INFEASIBLE and res.raw.x is None
    u = dm.Model("unbounded")
    users = u.entities("user", 2)
    y = u.variable("y", over=users, lower=-np.inf)
    u.minimize(y.sum())
    u.subject_to(y.sum() <= 1.0, name="cap")
    assert u.solve("ortools-pdlp").status == dm.Status.UNBOUNDED


def test_iteration_limit_returns_the_iterate():
    m = matching_model(synthetic_matching(200, 10, 0.3, seed=0))
    res = m.solve("ortools-pdlp", tol=1e-12, max_iter=10)
    assert res.status == dm.Status.ITERATION_LIMIT and res.iterations <= 10
    assert res.raw.x is not None and np.isfinite(res.objective) and np.isnan(res.raw.bound)


def test_options_reach_pdlp():
    params = pdlp_params(OrtoolsPdlpOptions(tol=1e-5, threads=3, time_limit=7.5, max_iter=99, presolve=True,
                                            feasibility_polishing=True))
    criteria = params.termination_criteria
    assert criteria.simple_optimality_criteria.eps_optimal_relative == 1e-5
    assert criteria.simple_optimality_criteria.eps_optimal_absolute == 1e-5
    assert criteria.time_sec_limit == 7.5 and criteria.iteration_limit == 99
    assert params.num_threads == 3 and params.presolve_options.use_glop and params.use_feasibility_polishing
    default = pdlp_params(OrtoolsPdlpOptions()).termination_criteria
    assert default.simple_optimality_criteria.eps_optimal_relative == 1e-6  # PDLP's own default tolerance
    assert not default.HasField("time_sec_limit") and not default.HasField("iteration_limit")


def test_threads_and_presolve_give_the_same_optimum():
    m = allocation_model()
    ref = m.solve("highs").objective
    for settings in (dict(threads=2), dict(presolve=True)):
        res = m.solve("ortools-pdlp", tol=1e-9, **settings)
        assert res.status == dm.Status.OPTIMAL and res.objective == pytest.approx(ref, rel=1e-7), settings


@pytest.mark.parametrize("reason, status", [
    ("OPTIMAL", dm.Status.OPTIMAL), ("PRIMAL_INFEASIBLE", dm.Status.INFEASIBLE),
    ("DUAL_INFEASIBLE", dm.Status.UNBOUNDED), ("PRIMAL_OR_DUAL_INFEASIBLE", dm.Status.INFEASIBLE_OR_UNBOUNDED),
    ("TIME_LIMIT", dm.Status.TIME_LIMIT), ("ITERATION_LIMIT", dm.Status.ITERATION_LIMIT),
    ("KKT_MATRIX_PASS_LIMIT", dm.Status.ITERATION_LIMIT), ("INTERRUPTED_BY_USER", dm.Status.INTERRUPTED),
    ("NUMERICAL_ERROR", dm.Status.ERROR), ("INVALID_PROBLEM", dm.Status.ERROR), ("OTHER", dm.Status.ERROR),
])
def test_status_mapping(reason, status):
    assert map_status(solve_log_pb2.TerminationReason.Value(f"TERMINATION_REASON_{reason}")) == status


def test_compare_puts_it_beside_dualip():
    m = matching_model(synthetic_matching(60, 6, 0.4, seed=1))
    table = dm.compare(m, ["highs", "dualip", "ortools-pdlp"], options={"ortools-pdlp": {"tol": 1e-8}})
    frame = table.table
    assert list(frame.index) == ["highs", "dualip", "ortools-pdlp"]
    assert frame.loc["ortools-pdlp", "status"] == "optimal"
    assert abs(frame.loc["ortools-pdlp", "objective_rel_diff"]) <= 1e-7


@pytest.mark.parametrize("field, value", [("tol", 0), ("tol", "1e-4"), ("tol", True), ("time_limit", -1.0),
                                          ("time_limit", True), ("max_iter", 0), ("max_iter", 2.5),
                                          ("threads", 0), ("threads", None), ("presolve", "yes"),
                                          ("verbose", 1)])
def test_options_are_validated(field, value):
    with pytest.raises(dm.ModelError, match=f"OrtoolsPdlpOptions.{field}"):
        OrtoolsPdlpOptions(**{field: value})


def test_a_bad_option_value_is_refused_before_solving():
    m = allocation_model()
    with pytest.raises(dm.ModelError, match="OrtoolsPdlpOptions.threads"):
        m.solve("ortools-pdlp", threads=0)
