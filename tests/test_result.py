"""What a user reads from a Result: no answer without a solution, the Farkas ray per constraint, duals of
global constraints as floats, and unknown names answered with the names and the closest one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import dualip_model as dm
from test_parity import assignment_short_of_capacity, over_budget_matching, unbounded_lp


@pytest.fixture(scope="module")
def infeasible():
    """30 users assigned exactly once to 5 items whose capacities add up to 29.97: dualip's INFEASIBLE."""
    res = assignment_short_of_capacity().solve("dualip", max_iter=5000)
    assert res.status == dm.Status.INFEASIBLE and res.raw.ray is not None
    return res


@pytest.fixture(scope="module")
def optimal():
    """A small matching with a global row, solved by HiGHS."""
    m = dm.Model("ads")
    users, items = m.entities("user", ["ann", "bob", "cat"]), m.entities("item", ["tv", "web"])
    e = m.edges("eligible", users, items, src=["ann", "ann", "bob", "cat"], dst=["tv", "web", "tv", "web"])
    x = m.variable("x", over=e)
    m.maximize((np.array([5.0, 3.0, 4.0, 2.0]) * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one_per_user")
    m.subject_to(x.sum(by=items) <= np.array([1.0, 1.0]), name="budget")
    m.subject_to(x.sum() <= 1.5, name="total")
    return m.solve("highs")


NO_ANSWER = [
    ("x", lambda r: r.x), ("x_all", lambda r: r.x_all), ("primal", lambda r: r.primal("x")),
    ("value", lambda r: r.value(r.model.variables["x"].sum())), ("objectives", lambda r: r.objectives),
    ("dual", lambda r: r.dual("capacity")), ("block dual", lambda r: r.dual("assign")),
    ("to_frame", lambda r: r.to_frame()), ("duals_frame", lambda r: r.duals_frame("capacity")),
    ("activity", lambda r: r.activity("capacity")), ("violation", lambda r: r.violation()),
]


# ----------------------------------------------------------------------------------------- no solution
@pytest.mark.parametrize("read", [f for _, f in NO_ANSWER], ids=[name for name, _ in NO_ANSWER])
def test_an_infeasible_dualip_result_has_no_solution_to_read(infeasible, read):
    with pytest.raises(dm.ModelError, match=r"status is infeasible \(no x satisfies every constraint\); "
                                            r"res.infeasibility_certificate"):
        read(infeasible)


def test_an_infeasible_result_prints_the_status_and_the_certificate_not_numbers(infeasible):
    assert math.isnan(infeasible.objective) and math.isnan(infeasible.bound) and math.isnan(infeasible.gap)
    assert infeasible.guarantees == ()  # the backend's guarantees speak of a bound and a primal there are not
    text = str(infeasible)
    assert "infeasible (dualip" in text and "no solution: no x satisfies every constraint" in text
    for absent in ("objective", "bound ", "gap", "violation", "guarantees"):
        assert absent not in text, absent
    assert "certificate: a Farkas ray" in text and "largest weights: capacity[item=" in text
    assert "objective=nan" in repr(infeasible)


@pytest.mark.parametrize("read", [f for _, f in NO_ANSWER], ids=[name for name, _ in NO_ANSWER])
def test_highs_reads_the_same_on_an_infeasible_model(read):
    res = assignment_short_of_capacity().solve("highs")
    assert res.status == dm.Status.INFEASIBLE and res.raw.ray is not None
    with pytest.raises(dm.ModelError, match=r"status is infeasible \(no x satisfies every constraint\); "
                                            r"res.infeasibility_certificate"):
        read(res)


def test_an_infeasible_result_without_a_ray_says_so():
    model = assignment_short_of_capacity()
    res = dm.Result(model, model.compile(), dm.RawResult(status=dm.Status.INFEASIBLE), "some-backend")
    with pytest.raises(dm.ModelError, match="backend 'some-backend' returned no Farkas ray"):
        res.infeasibility_certificate("capacity")


def test_an_unbounded_result_says_why_there_is_no_solution():
    res = unbounded_lp().solve("highs")
    assert res.status == dm.Status.UNBOUNDED and math.isnan(res.objective)
    assert "no solution: the objective improves without limit" in str(res)
    with pytest.raises(dm.ModelError, match=r"no primal solution: status is unbounded \(the objective improves"):
        res.x
    with pytest.raises(dm.ModelError, match="no certificate of infeasibility: status is unbounded"):
        res.infeasibility_certificate()


def test_comparison_shows_no_numbers_for_an_infeasible_model():
    c = dm.compare(assignment_short_of_capacity(), ("highs", "dualip"), options={"dualip": {"max_iter": 5000}})
    assert c.table.status.tolist() == ["infeasible", "infeasible"]
    assert c.table[["objective", "bound", "gap"]].isna().all().all()
    form = dm.compare(assignment_short_of_capacity().compile(), ("dualip",), max_iter=5000)["dualip"]
    assert math.isnan(form.objective) and math.isnan(form.gap) and form.guarantees == ()


# ----------------------------------------------------------------------------------------- the certificate
def test_the_certificate_is_a_labeled_farkas_ray_per_constraint(infeasible):
    y = infeasible.infeasibility_certificate("capacity")
    assert isinstance(y, pd.Series) and y.name == "capacity" and list(y.index) == [0, 1, 2, 3, 4]
    assert np.abs(y).max() == 1.0 and (y >= 0).all()  # scaled to max |y| = 1; >= 0 on <= rows
    # the proof, checked here: each user's block is {x >= 0, sum x = 1}, so min_x y^T A x sums, over users,
    # the smallest weight of an item the user may take (every item here), and the rows' sides give 29.97 y
    sf = infeasible.standard_form
    assert min(y) * 30 > y.to_numpy() @ sf.row_upper
    (name, whole), = infeasible.infeasibility_certificate().items()
    assert name == "capacity" and whole.equals(y)
    np.testing.assert_allclose(y.to_numpy(), infeasible.raw.ray / np.abs(infeasible.raw.ray).max())


def test_a_block_constraint_has_no_weight_in_the_certificate(infeasible):
    with pytest.raises(dm.ModelError, match=r"constraint 'assign' became block polytopes.*\['capacity'\]"):
        infeasible.infeasibility_certificate("assign")


def test_a_global_constraint_weight_is_a_float():
    res = over_budget_matching().solve("dualip", max_iter=5000)
    assert res.status == dm.Status.INFEASIBLE
    weight = res.infeasibility_certificate("impossible")
    assert isinstance(weight, float) and weight < 0  # a >= row weighs <= 0
    assert "impossible" in res.infeasibility_certificate()


def test_a_feasible_result_has_no_certificate(optimal):
    with pytest.raises(dm.ModelError, match="no certificate of infeasibility: status is optimal, not infeasible"):
        optimal.infeasibility_certificate("budget")


# ----------------------------------------------------------------------------------------- duals and names
def test_a_global_constraint_dual_is_a_float(optimal):
    total = optimal.dual("total")
    assert isinstance(total, float) and total == pytest.approx(2.0)  # one more unit of total: cat's web, 2
    np.testing.assert_array_equal(optimal.dual("total", labeled=False), [total])
    assert optimal.duals_frame("total").dual.tolist() == [total]
    assert isinstance(optimal.dual("budget"), pd.Series)


@pytest.mark.parametrize("read, message", [
    (lambda r: r.dual("budgets"), r"unknown constraint 'budgets' in model 'ads'; its constraints: "
                                  r"\['one_per_user', 'budget', 'total'\] \(did you mean 'budget'\?\)"),
    (lambda r: r.duals_frame("Total"), r"unknown constraint 'Total' .* \(did you mean 'total'\?\)"),
    (lambda r: r.primal("xx"), r"unknown variable 'xx' in model 'ads'; its variables: \['x'\] "
                               r"\(did you mean 'x'\?\)"),
    (lambda r: r.dual("zzz"), r"its constraints: \['one_per_user', 'budget', 'total'\]$"),
], ids=["dual", "duals_frame", "primal", "nothing close"])
def test_an_unknown_name_lists_the_names_and_suggests_the_closest(optimal, read, message):
    with pytest.raises(dm.ModelError, match=message):
        read(optimal)
