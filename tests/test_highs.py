"""The HiGHS backend as the exact reference: netlib optima, infeasibility, duals, options, files, examples."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dualip_model as dm
from dualip_model.synthetic import matching_model, synthetic_matching
from test_parity import (assignment_short_of_capacity, contradicting_rows, inconsistent_equalities,
                         over_budget_matching)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
NETLIB = DATA / "netlib"
INFEASIBLE = DATA / "netlib-infeasible"
OPTIMA = json.loads((NETLIB / "optima.json").read_text())
STATUSES = json.loads((INFEASIBLE / "status.json").read_text())
EXPECTED_STATUS = {"Infeasible": dm.Status.INFEASIBLE, "Unbounded": dm.Status.UNBOUNDED}


def rel_err(value: float, reference: float) -> float:
    return abs(value - reference) / max(1.0, abs(reference))


# ----------------------------------------------------------------------------------------- netlib
@pytest.mark.parametrize("name", sorted(OPTIMA))
def test_netlib_optimum(name):
    known = OPTIMA[name]
    m = dm.read_model(NETLIB / f"{name}.mps")
    assert m.n_cols == known["cols"]
    assert len(m.sets["rows"]) == known["rows"]
    res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    assert rel_err(res.objective, known["objective"]) <= 1e-8
    assert res.bound == res.objective and res.gap == 0.0
    # the primal point reproduces the objective
    assert rel_err(res.value(m.objective.parts["objective"]), known["objective"]) <= 1e-8


@pytest.mark.parametrize("solver", ["simplex", "ipm"])
@pytest.mark.parametrize("name", ["afiro", "adlittle", "avgas", "blending"])
def test_netlib_optimum_per_highs_solver(name, solver):
    m = dm.read_model(NETLIB / f"{name}.mps")
    res = m.solve("highs", solver=solver)
    assert res.status == dm.Status.OPTIMAL
    assert rel_err(res.objective, OPTIMA[name]["objective"]) <= 1e-8


def test_options_dataclass_is_accepted():
    from dualip_model.backends.highs import HighsOptions

    m = dm.read_model(NETLIB / "afiro.mps")
    res = m.solve("highs", HighsOptions(solver="ipm", presolve=False))
    assert res.status == dm.Status.OPTIMAL
    assert rel_err(res.objective, OPTIMA["afiro"]["objective"]) <= 1e-8
    # keyword settings override the dataclass fields
    res = m.solve("highs", HighsOptions(solver="ipm"), solver="simplex")
    assert res.status == dm.Status.OPTIMAL


@pytest.mark.parametrize("name", sorted(STATUSES))
def test_netlib_infeasible_or_unbounded(name):
    m = dm.read_model(INFEASIBLE / f"{name}.mps")
    res = m.solve("highs")
    # HiGHS 1.16 decides every one of these exactly (never INFEASIBLE_OR_UNBOUNDED)
    assert res.status == EXPECTED_STATUS[STATUSES[name]["status"]]
    assert not res.status.has_solution
    assert np.isnan(res.objective)
    with pytest.raises(dm.ModelError, match="no primal solution"):
        res.x_all


def test_unbounded_hand_model():
    m = dm.Model("unb")
    s = m.entities("s", 2)
    x = m.variable("x", over=s)
    m.maximize(x.sum())
    m.subject_to((np.array([1.0, -1.0]) * x).sum() <= 1, name="diff")
    res = m.solve("highs")
    assert res.status == dm.Status.UNBOUNDED
    assert res.raw.ray is None  # a Farkas ray proves infeasibility only


# ----------------------------------------------------------------------------------------- Farkas rays
def farkas_value(sf: dm.StandardForm, y: np.ndarray) -> float:
    """min_{x in C} y^T A x - h(y), h(y) = sum_r u_r y_r^+ - l_r y_r^-: > 0 proves that no x in C meets the rows.

    C: the column bounds and the block polytopes (sum over block i of x <= r_i, or == r_i), minimized by an
    LP of its own (scipy's linprog), which sees neither the coupling rows nor the backend's flat LP.
    """
    from scipy.optimize import linprog

    sums = {True: ([], []), False: ([], [])}  # is_equality -> (rows, right-hand sides)
    for i, kind in enumerate(map(dm.BlockKind, sf.block_kind.tolist())):
        if kind != dm.BlockKind.BOX:
            row = np.zeros(sf.n_cols)
            row[sf.block_ptr[i] : sf.block_ptr[i + 1]] = 1.0
            sums[kind.is_equality][0].append(row)
            sums[kind.is_equality][1].append(sf.block_rhs[i])
    (A_eq, b_eq), (A_ub, b_ub) = ((np.array(rows) if rows else None, np.array(rhs) if rhs else None)
                                  for rows, rhs in (sums[True], sums[False]))
    bounds = [(None if np.isinf(lo) else lo, None if np.isinf(up) else up)
              for lo, up in zip(sf.col_lower, sf.col_upper)]
    lp = linprog(sf.A.T @ y, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert lp.status == 0, lp.message  # bounded below over C: y^T A is dual feasible there
    pos, neg = y > 0, y < 0
    support = float(sf.row_upper[pos] @ y[pos] + sf.row_lower[neg] @ y[neg])  # inf where y_r points at no side
    return lp.fun - support


def budget_below_floor() -> dm.Model:
    """3 users each assigned exactly once (a block floor) to 2 items, costs 2..7; spend <= 8 < the least spend 9."""
    m = dm.Model("below_floor")
    users, items = m.entities("user", ["u0", "u1", "u2"]), m.entities("item", ["tv", "web"])
    e = m.edges("e", users, items, src=["u0", "u0", "u1", "u1", "u2", "u2"], dst=["tv", "web"] * 3)
    x = m.variable("x", over=e)
    cost = np.array([2.0, 5.0, 3.0, 4.0, 7.0, 4.0])
    m.minimize(x.sum())
    m.subject_to(x.sum(by=users) == 1.0, name="assign")
    m.subject_to(x.sum(by=items) <= 10.0, name="capacity")
    m.subject_to((cost * x).sum() <= 8.0, name="spend")
    return m


def infeasible_cases():
    cases = {f.__name__: f for f in (budget_below_floor, assignment_short_of_capacity, over_budget_matching,
                                     contradicting_rows, inconsistent_equalities)}
    for name, info in STATUSES.items():
        if info["status"] == "Infeasible":
            cases[f"netlib_{name}"] = lambda name=name: dm.read_model(INFEASIBLE / f"{name}.mps")
    return cases


INFEASIBLE_CASES = infeasible_cases()


@pytest.mark.parametrize("solver", ["choose", "ipm"])
@pytest.mark.parametrize("case", list(INFEASIBLE_CASES))
def test_infeasible_result_carries_a_farkas_ray_that_proves_it(case, solver):
    res = INFEASIBLE_CASES[case]().solve("highs", solver=solver)
    assert res.status == dm.Status.INFEASIBLE
    sf = res.standard_form
    y = res.raw.ray
    assert y is not None and y.shape == (sf.n_rows,) and np.isfinite(y).all()
    assert farkas_value(sf, y) > 1e-9 * np.abs(y).max()
    # per constraint: the same ray, scaled to max |y_r| = 1
    whole = res.infeasibility_certificate()
    assert set(whole) == {s.name for s in sf.layout.constraints if s.kind == "rows"}
    scaled = np.zeros(sf.n_rows)
    for slot in sf.layout.constraints:
        if slot.kind == "rows":
            scaled[slot.start : slot.stop] = np.atleast_1d(whole[slot.name])
    np.testing.assert_allclose(scaled, y / np.abs(y).max(), rtol=0, atol=1e-15)


def test_highs_certificate_of_a_budget_below_a_block_floor():
    """Each user spends at least min(cost) = 2 + 3 + 4 = 9 > 8: the spend row alone is the proof."""
    res = budget_below_floor().solve("highs")
    assert res.status == dm.Status.INFEASIBLE
    spend = res.infeasibility_certificate("spend")
    assert isinstance(spend, float) and spend == 1.0  # a <= row weighs >= 0; scaled to max |y| = 1
    capacity = res.infeasibility_certificate("capacity")
    assert list(capacity.index) == ["tv", "web"]
    np.testing.assert_allclose(capacity.to_numpy(), 0.0, atol=1e-12)  # slack rows take no part
    assert farkas_value(res.standard_form, res.raw.ray) == pytest.approx(res.raw.ray[-1] * (9.0 - 8.0))
    with pytest.raises(dm.ModelError, match="constraint 'assign' became block polytopes"):
        res.infeasibility_certificate("assign")
    text = str(res)
    assert "certificate: a Farkas ray" in text and "largest weights: spend" in text


def test_highs_certificate_of_short_capacity_by_hand():
    """30 users assigned once to 5 items of capacity 5.994: min_x y^T A x = 30 min(y) exceeds 5.994 sum(y)."""
    res = assignment_short_of_capacity().solve("highs")
    y = res.infeasibility_certificate("capacity")
    assert list(y.index) == [0, 1, 2, 3, 4]
    assert (y >= 0).all() and y.max() == 1.0  # <= rows weigh >= 0; scaled to max |y| = 1
    assert 30 * y.min() > 0.999 * 30 / 5 * y.sum()
    with pytest.raises(dm.ModelError, match=r"status is infeasible .*res.infeasibility_certificate\(name\)"):
        res.x_all


# ----------------------------------------------------------------------------------------- duals
def two_by_two(sense: str, budget_a: float = 1.5, cap=(1.0, 1.0)) -> dm.Model:
    """Users u0, u1 and items a, b, all four edges; unit costs; budgets a = budget_a, b = 10.

    max 3 x0a + 1 x0b + 2 x1a + 1.5 x1b  s.t. x.sum(by=user) <= cap, x.sum(by=item) <= budget, x >= 0.
    With budget_a = 1.5: x0a = 1, x1a = x1b = 0.5, optimum 4.75, and the unique dual is
    budget (0.5, 0), one (2.5, 1.5).
    """
    m = dm.Model(f"two_by_two_{sense}")
    users = m.entities("user", ["u0", "u1"])
    items = m.entities("item", ["a", "b"])
    e = m.edges("e", users, items, src=["u0", "u0", "u1", "u1"], dst=["a", "b", "a", "b"])
    x = m.variable("x", over=e)
    value = np.array([3.0, 1.0, 2.0, 1.5])
    if sense == "max":
        m.maximize((value * x).sum())
    else:
        m.minimize((-value * x).sum())
    m.subject_to(x.sum(by=users) <= np.asarray(cap, dtype=float), name="one")
    m.subject_to(x.sum(by=items) <= np.array([budget_a, 10.0]), name="budget", block=False)
    return m


def test_duals_maximize_by_hand():
    m = two_by_two("max")
    sf = m.compile()
    assert {s.name: s.kind for s in sf.layout.constraints} == {"one": "blocks", "budget": "rows"}
    res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    assert res.objective == pytest.approx(4.75, abs=1e-9)
    budget = res.dual("budget")
    assert list(budget.index) == ["a", "b"]
    np.testing.assert_allclose(budget.to_numpy(), [0.5, 0.0], atol=1e-9)  # binding <= in a max: positive
    one = res.dual("one")  # block (simplex) constraints have duals too
    assert list(one.index) == ["u0", "u1"]
    np.testing.assert_allclose(one.to_numpy(), [2.5, 1.5], atol=1e-9)
    np.testing.assert_allclose(res.dual("one", labeled=False), [2.5, 1.5], atol=1e-9)
    # strong duality: objective = sum of rhs * duals
    assert 1.0 * 2.5 + 1.0 * 1.5 + 1.5 * 0.5 == pytest.approx(res.objective)


def test_duals_minimize_by_hand():
    res = two_by_two("min").solve("highs")
    assert res.objective == pytest.approx(-4.75, abs=1e-9)
    budget = res.dual("budget", labeled=False)
    one = res.dual("one", labeled=False)
    assert (budget <= 1e-12).all() and (one <= 1e-12).all()  # binding <= in a min: non-positive
    np.testing.assert_allclose(budget, [-0.5, 0.0], atol=1e-9)
    np.testing.assert_allclose(one, [-2.5, -1.5], atol=1e-9)


@pytest.mark.parametrize("sense", ["max", "min"])
def test_duals_of_hand_model_match_finite_differences(sense):
    eps = 1e-4
    base = two_by_two(sense).solve("highs")
    d_budget = (two_by_two(sense, budget_a=1.5 + eps).solve("highs").objective - base.objective) / eps
    assert d_budget == pytest.approx(base.dual("budget").loc["a"], abs=1e-6)
    for k, user in enumerate(["u0", "u1"]):
        cap = [1.0, 1.0]
        cap[k] += eps
        d_cap = (two_by_two(sense, cap=cap).solve("highs").objective - base.objective) / eps
        assert d_cap == pytest.approx(base.dual("one").loc[user], abs=1e-6)


def test_dual_of_ge_row_in_minimize_is_positive():
    def build(rhs):
        m = dm.Model("cover")
        s = m.entities("s", ["p", "q"])
        x = m.variable("x", over=s, upper=1.5)
        m.minimize((np.array([1.0, 3.0]) * x).sum())
        m.subject_to(x.sum() >= rhs, name="demand", block=False)
        return m

    res = build(2.0).solve("highs")
    assert res.objective == pytest.approx(1.5 + 3 * 0.5)
    dual = res.dual("demand")  # a global constraint: one float
    assert isinstance(dual, float) and dual == pytest.approx(3.0)
    assert (build(2.0 + 1e-4).solve("highs").objective - res.objective) / 1e-4 == pytest.approx(3.0)


def test_dual_of_equality_boxcut_block_and_range_row():
    def build(r_eq, lo):
        m = dm.Model("eq")
        users = m.entities("user", ["u0", "u1"])
        items = m.entities("item", ["a", "b"])
        e = m.edges("e", users, items, src=["u0", "u0", "u1", "u1"], dst=["a", "b", "a", "b"])
        x = m.variable("x", over=e, upper=1.5)
        m.minimize((np.array([1.0, 4.0, 2.0, 3.0]) * x).sum())
        m.subject_to(x.sum(by=users) == np.array([r_eq, 1.0]), name="assign")  # rhs 2 > upper 1.5: box-cut
        m.subject_to(x.sum(by=items).between(np.array([0.0, lo]), 10.0), name="rng")
        return m

    m = build(2.0, 1.0)
    kinds = [dm.BlockKind(k) for k in m.compile().block_kind]
    assert kinds == [dm.BlockKind.BOXCUT_EQ, dm.BlockKind.SIMPLEX_EQ]
    res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    # u0: 1.5 on a (cost 1) + 0.5 on b (cost 4); item b needs 0.5 more: u1 splits 0.5 a (2) / 0.5 b (3)
    assert res.objective == pytest.approx(1.5 + 2.0 + 1.0 + 1.5)
    eps = 1e-4
    d_assign = (build(2.0 + eps, 1.0).solve("highs").objective - res.objective) / eps
    d_rng = (build(2.0, 1.0 + eps).solve("highs").objective - res.objective) / eps
    assert res.dual("assign").loc["u0"] == pytest.approx(d_assign, abs=1e-6)
    assert res.dual("rng").loc["b"] == pytest.approx(d_rng, abs=1e-6)
    assert res.dual("assign").loc["u0"] == pytest.approx(4.0 - 1.0)  # one more on b, u1 moves b -> a
    assert res.dual("rng").loc["b"] == pytest.approx(3.0 - 2.0)  # binding lower side of a range
    assert res.dual("rng").loc["a"] == pytest.approx(0.0, abs=1e-9)


def matching_with_caps(data, caps: np.ndarray) -> dm.Model:
    """matching_model(data) with per-user right-hand sides ``caps`` instead of 1."""
    m = dm.Model("matching_caps")
    users = m.entities("user", data.n_users)
    items = m.entities("item", data.n_items)
    edges = m.edges("eligible", users, items, src=data.user, dst=data.item)
    x = m.variable("x", over=edges, lower=0.0)
    m.maximize((data.value * x).sum())
    m.subject_to(x.sum(by=users) <= caps, name="one_per_user")
    m.subject_to((data.cost * x).sum(by=items) <= data.budget, name="budget")
    return m


@pytest.fixture(scope="module")
def matching():
    data = synthetic_matching(200, 20, 0.2, seed=0)
    model = matching_model(data)
    return data, model, model.solve("highs")


def test_matching_duals_match_finite_differences(matching):
    data, model, res = matching
    assert res.status == dm.Status.OPTIMAL
    kinds = {s.name: s.kind for s in res.standard_form.layout.constraints}
    assert kinds == {"one_per_user": "blocks", "budget": "rows"}
    eps = 1e-5
    budget_dual = res.dual("budget", labeled=False)
    assert (budget_dual >= -1e-9).all()  # <= rows of a maximization
    assert (budget_dual > 1e-3).sum() >= 5  # several budgets bind
    for i in range(data.n_items):
        budget = data.budget.copy()
        budget[i] += eps
        bumped = matching_model(dataclasses.replace(data, budget=budget)).solve("highs")
        assert (bumped.objective - res.objective) / eps == pytest.approx(budget_dual[i], rel=1e-5, abs=1e-6)

    user_dual = res.dual("one_per_user", labeled=False)
    assert user_dual.shape == (data.n_users,) and (user_dual >= -1e-9).all()
    assert matching_with_caps(data, np.ones(data.n_users)).solve("highs").objective == pytest.approx(
        res.objective, rel=1e-12)
    for u in np.argsort(-user_dual)[::20]:  # 10 users, from the largest dual down
        caps = np.ones(data.n_users)
        caps[u] += eps
        bumped = matching_with_caps(data, caps).solve("highs")
        assert (bumped.objective - res.objective) / eps == pytest.approx(user_dual[u], rel=1e-5, abs=1e-6)


def test_matching_minimize_flips_dual_signs(matching):
    data, _, res = matching
    m = dm.Model("neg")
    users = m.entities("user", data.n_users)
    items = m.entities("item", data.n_items)
    e = m.edges("eligible", users, items, src=data.user, dst=data.item)
    x = m.variable("x", over=e)
    m.minimize((-data.value * x).sum())
    m.subject_to(x.sum(by=users) <= 1.0, name="one_per_user")
    m.subject_to((data.cost * x).sum(by=items) <= data.budget, name="budget")
    neg = m.solve("highs")
    assert neg.objective == pytest.approx(-res.objective, rel=1e-9)
    np.testing.assert_allclose(neg.dual("budget", labeled=False), -res.dual("budget", labeled=False), atol=1e-7)
    np.testing.assert_allclose(neg.dual("one_per_user", labeled=False),
                               -res.dual("one_per_user", labeled=False), atol=1e-7)


# ----------------------------------------------------------------------------------------- options and fields
def test_result_fields_on_afiro():
    m = dm.read_model(NETLIB / "afiro.mps")
    res = m.solve("highs")
    assert res.status is dm.Status.OPTIMAL
    assert res.backend == "highs"
    assert res.objective == pytest.approx(OPTIMA["afiro"]["objective"], rel=1e-8)
    assert res.bound == res.objective
    assert res.gap == 0.0
    assert isinstance(res.iterations, int) and res.iterations > 0
    assert res.solve_time > 0
    assert res.message == "Optimal"
    assert res.guarantees
    assert res.x_all.shape == (32,)
    assert isinstance(res.log, str)
    assert "Model status" in res.log and "Optimal" in res.log and "HiGHS" in res.log
    assert "optimal" in str(res) and "highs" in repr(res)


def test_result_fields_on_maximization(matching):
    _, _, res = matching
    assert res.status == dm.Status.OPTIMAL and res.backend == "highs"
    assert res.objective > 0  # a maximization of positive values, reported in the user's sense
    assert res.bound == res.objective and res.gap == 0.0
    assert res.iterations > 0 and res.solve_time > 0
    assert res.objectives["objective"] == pytest.approx(res.objective, rel=1e-12)
    assert "Model status" in res.log


def test_time_limit():
    m = dm.read_model(NETLIB / "israel.mps")
    res = m.solve("highs", time_limit=1e-9, presolve=False)
    assert res.status == dm.Status.TIME_LIMIT
    assert "time limit" in res.log.lower()
    res = m.solve("highs", time_limit=60.0)
    assert res.status == dm.Status.OPTIMAL
    assert rel_err(res.objective, OPTIMA["israel"]["objective"]) <= 1e-8


def test_presolve_off_and_verbose_off():
    m = dm.read_model(NETLIB / "afiro.mps")
    on = m.solve("highs")
    off = m.solve("highs", presolve=False)
    assert off.status == dm.Status.OPTIMAL
    assert off.objective == pytest.approx(on.objective, rel=1e-10)
    assert "Presolving model" in on.log and "Presolving model" not in off.log


def test_threads_option_in_process():
    m = dm.read_model(NETLIB / "afiro.mps")
    assert m.solve("highs").status == dm.Status.OPTIMAL  # starts HiGHS's scheduler (if not already)
    for threads in (1, 2):  # at least one of them differs from the scheduler's thread count
        res = m.solve("highs", threads=threads)
        assert res.status == dm.Status.OPTIMAL, (threads, res.message, res.log[-300:])


def test_threads_option_in_fresh_process():
    script = textwrap.dedent(f"""
        import dualip_model as dm
        m = dm.read_model({str(NETLIB / 'afiro.mps')!r})
        for _ in range(2):
            res = m.solve("highs", threads=1)
            assert res.status == dm.Status.OPTIMAL, res.message
        print("ok", res.objective)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_highs_prints_nothing_unless_verbose():
    """No banner, no log, no PDLP progress on stdout in a fresh process; verbose=True prints HiGHS's log."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, "tests")
        import dualip_model as dm
        from dualip_model.synthetic import matching_model, synthetic_matching
        from test_parity import assignment_short_of_capacity

        m = matching_model(synthetic_matching(50, 5, 0.3, seed=0))
        for solver in ("choose", "simplex", "ipm", "pdlp"):
            res = m.solve("highs", solver=solver)
            assert res.status == dm.Status.OPTIMAL, (solver, res.message)
            assert solver == "pdlp" or "Model status" in res.log, solver
        res = assignment_short_of_capacity().solve("highs", solver="ipm")  # HiGHS re-solves for the ray
        assert res.status == dm.Status.INFEASIBLE
        print("quiet so far", flush=True)
        m.solve("highs", verbose=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    quiet, _, verbose = proc.stdout.partition("quiet so far\n")
    assert quiet == ""
    assert "Model status" in verbose and "Optimal" in verbose


def test_invalid_option_name_raises_naming_it():
    m = dm.read_model(NETLIB / "afiro.mps")
    with pytest.raises(dm.ModelError, match="time_limt"):
        m.solve("highs", time_limt=5)
    with pytest.raises(dm.ModelError, match="no option.*'mip_gap'"):
        m.solve("highs", mip_gap=1e-3, threads=1)


@pytest.mark.parametrize("bad", [
    dict(solver="barrier"), dict(solver="SIMPLEX"), dict(threads=0), dict(time_limit=0.0), dict(time_limit=-1.0),
])
def test_invalid_option_values_raise(bad):
    m = dm.read_model(NETLIB / "afiro.mps")
    (key, value), = bad.items()
    with pytest.raises(dm.ModelError, match=f"{key}.*{value!r}" if key == "solver" else key):
        m.solve("highs", **bad)


def test_unknown_backend():
    m = dm.read_model(NETLIB / "afiro.mps")
    with pytest.raises(dm.BackendNotFoundError, match="'highz'"):
        m.solve("highz")


# ----------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("ext", ["mps", "lp"])
def test_write_read_round_trip_netlib(tmp_path, ext):
    m = dm.read_model(NETLIB / "afiro.mps")
    path = tmp_path / f"afiro.{ext}"
    dm.write_model(m, path)
    assert path.stat().st_size > 0
    again = dm.read_model(path)
    assert again.n_cols == m.n_cols
    res = again.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    assert rel_err(res.objective, OPTIMA["afiro"]["objective"]) <= 1e-8


@pytest.mark.parametrize("ext", ["mps", "lp"])
def test_write_read_round_trip_block_model_minimize(tmp_path, ext):
    """Block sum constraints are written as ordinary rows and come back as rows."""
    m = two_by_two("min")
    path = tmp_path / f"blocks.{ext}"
    dm.write_model(m.compile(), path)  # a StandardForm is accepted too
    again = dm.read_model(path)
    assert len(again.sets["rows"]) == 2 + 2  # two coupling rows, two block rows
    assert again.solve("highs").objective == pytest.approx(m.solve("highs").objective, rel=1e-10)


@pytest.mark.parametrize("ext", ["mps", "lp"])
def test_write_read_round_trip_maximize(tmp_path, ext, matching):
    _, model, res = matching
    path = tmp_path / f"matching.{ext}"
    dm.write_model(model, path)
    again = dm.read_model(path).solve("highs")
    assert again.objective == pytest.approx(res.objective, rel=1e-9)


def test_written_mps_keeps_the_model_names(tmp_path, matching):
    """File columns/rows keep their names through a round trip; a model's names come from its labels."""
    m = dm.read_model(NETLIB / "afiro.mps")
    dm.write_model(m, tmp_path / "afiro.mps")
    again = dm.read_model(tmp_path / "afiro.mps")
    assert list(again.sets["columns"].labels) == list(m.sets["columns"].labels)
    assert set(again.sets["rows"].labels) == set(m.sets["rows"].labels)
    _, model, _ = matching
    dm.write_model(model, tmp_path / "matching.mps")
    names = dm.read_model(tmp_path / "matching.mps")
    first_edge = model.sets["eligible"].labels()[0]
    assert f"x[{first_edge[0]},{first_edge[1]}]" in set(names.sets["columns"].labels)
    assert {"budget[0]", "one_per_user[0]"} <= set(names.sets["rows"].labels)


# ----------------------------------------------------------------------------------------- examples
@pytest.mark.parametrize("script", ["matching.py", "multi_objective.py"])
def test_example_runs(script):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "optimal" in proc.stdout


@pytest.mark.parametrize("cost, coefficient, named", [
    (1e21, 1.0, r"objective coefficient.*infinite_cost.*variable 'x', entry 0"),
    (1.0, 1e16, r"large_matrix_value.*constraint 'cap', entry 0.*variable 'x', entry 1"),
])
def test_numbers_beyond_highs_limits_are_named_not_solved(cost, coefficient, named):
    """HiGHS returns a bare error for |a| >= 1e15 and reads |c| >= 1e20 as infinite: both are refused by name."""
    m = dm.Model()
    u = m.entities("u", labels=["a", "b"])
    x = m.variable("x", over=u, lower=0, upper=1.0)
    m.minimize((np.array([cost, 1.0]) * x).sum())
    m.subject_to((np.array([1.0, coefficient]) * x).sum() <= 1, name="cap")
    with pytest.raises(dm.ModelError, match=named):
        m.solve("highs")
