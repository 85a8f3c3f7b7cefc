"""Symbolic display of models (dualip_model.display): indexed sums, 'for all' families, LaTeX and text."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sympy

import dualip_model as dm
from dualip_model.display import SetIndex, SetSum, symbolic
from dualip_model.synthetic import matching_model, synthetic_matching


def matching(n_users=30, n_items=4, budget_row=True):
    """The README's matching model over a DataFrame of edges; returns (model, edges, budget)."""
    data = synthetic_matching(n_users, n_items, 0.5, seed=3)
    edges = pd.DataFrame({"user": [f"u{k}" for k in data.user], "item": [f"it{k}" for k in data.item],
                          "value": data.value, "cost": data.cost})
    m = dm.Model("ads")
    users = m.entities("user", labels=[f"u{k}" for k in range(n_users)])
    items = m.entities("item", labels=[f"it{k}" for k in range(n_items)])
    e = m.edges("eligible", users, items, src=edges.user, dst=edges.item)
    x = m.variable("x", over=e, lower=0)
    m.maximize((edges.value * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one_per_user")
    if budget_row:
        m.subject_to((edges.cost * x).sum(by=items) <= data.budget, name="budget")
    return m, edges, data.budget


def line(text, name):
    """The line of ``text`` annotated with constraint ``name``."""
    (found,) = [ln for ln in text.splitlines() if f"({name}" in ln]
    return found


def test_matching_text_reads_as_indexed_families():
    m, edges, _ = matching()
    assert m.to_text(data=edges) == (
        "max   sum_{(u,i) in eligible} value[u, i]*x[u, i]\n"
        "s.t.  sum_{i in item(u)} x[u, i] <= 1                     for all u in user  (one_per_user, block)\n"
        "      sum_{u in user(i)} cost[u, i]*x[u, i] <= budget[i]  for all i in item  (budget, coupling)\n"
        "      x >= 0"
    )


def test_matching_latex_has_sums_over_sets_and_for_all():
    m, edges, _ = matching()
    tex = m.to_latex(data=edges)
    assert tex.startswith(r"\begin{array}{llll}") and tex.endswith(r"\end{array}")
    assert r"\max & \sum_{(u,i) \in \mathrm{eligible}} {\mathrm{value}}_{u,i} {x}_{u,i}" in tex
    assert (r"\sum_{i \in \mathrm{item}(u)} {x}_{u,i} \leq 1 & \forall\, u \in \mathrm{user} & "
            r"(\mathrm{one\_per\_user},\ \text{block})") in tex
    assert (r"\sum_{u \in \mathrm{user}(i)} {\mathrm{cost}}_{u,i} {x}_{u,i} \leq {\mathrm{budget}}_{i} & "
            r"\forall\, i \in \mathrm{item} & (\mathrm{budget},\ \text{coupling})") in tex
    assert r"x \geq 0" in tex


def test_series_names_or_generic_symbols_shared_by_identity():
    m, edges, _ = matching()
    text = m.to_text()  # no data: the pandas Series keep their names
    assert "sum_{(u,i) in eligible} value[u, i]*x[u, i]" in text
    assert "cost[u, i]*x[u, i] <= budget[i]" in text
    # a derived array is other data: 2 * value is not named "value"
    m2 = dm.Model()
    users, items = m2.entities("user", 3), m2.entities("item", 2)
    e = m2.edges("e", users, items, src=[0, 1, 2], dst=[0, 1, 1])
    x = m2.variable("x", over=e)
    value = np.array([1.0, 2.0, 3.0])
    m2.maximize((value * x).sum() + (2 * value * x).sum())
    m2.subject_to((value * x).sum() <= 4, name="cap")
    unnamed = m2.to_text()  # numpy arrays have no name: a generic letter per array, shared by identity
    assert "sum_{(u,i) in e} a[u, i]*x[u, i] + sum_{(u,i) in e} b[u, i]*x[u, i]" in unnamed
    assert "sum_{(u,i) in e} a[u, i]*x[u, i] <= 4" in line(unnamed, "cap")
    text = m2.to_text(data={"value": value})
    assert "sum_{(u,i) in e} value[u, i]*x[u, i] + sum_{(u,i) in e} a[u, i]*x[u, i]" in text
    assert "sum_{(u,i) in e} value[u, i]*x[u, i] <= 4" in line(text, "cap")


def test_repr_latex_is_display_math():
    m, _, _ = matching()
    out = m._repr_latex_()
    assert out.startswith("$$") and out.endswith("$$")
    assert m.to_latex() in out


def test_multi_objective_with_global_rows():
    data = synthetic_matching(40, 5, 0.3, seed=1)
    m = dm.Model("allocation")
    users, items = m.entities("user", data.n_users), m.entities("item", data.n_items)
    e = m.edges("eligible", users, items, src=data.user, dst=data.item)
    x = m.variable("x", over=e)
    clicks, revenue = data.value, data.cost
    m.maximize({"clicks": (clicks * x).sum(), "revenue": (revenue * x).sum()}, weights={"revenue": 0.1})
    m.subject_to(x.sum(by=users) <= 1, name="one")
    m.subject_to((revenue * x).sum() >= 12.5, name="min_revenue")
    m.subject_to((0.5 * x).sum() <= 3, name="cap")
    names = {"clicks_": clicks, "rev": revenue}
    text = m.to_text(data=names)
    lines = text.splitlines()
    assert lines[0].split() == ["max", "clicks", "+", "0.1*revenue"]
    assert lines[1].split(None, 1) == ["where", "clicks = sum_{(u,i) in eligible} clicks_[u, i]*x[u, i]"]
    assert lines[2].strip() == "revenue = sum_{(u,i) in eligible} rev[u, i]*x[u, i]"
    glob = line(text, "min_revenue")
    assert "sum_{(u,i) in eligible} rev[u, i]*x[u, i] >= 12.5" in glob and "for all" not in glob
    assert "0.5*sum_{(u,i) in eligible} x[u, i] <= 3" in line(text, "cap")
    tex = m.to_latex(data=names)
    assert r"\max & \mathrm{clicks} + 0.1 \mathrm{revenue}" in tex
    assert r"\text{where} & \mathrm{clicks} = \sum_{(u,i) \in \mathrm{eligible}}" in tex
    assert r"{\mathrm{rev}}_{u,i} {x}_{u,i} \geq 12.5 &  & (\mathrm{min\_revenue},\ \text{coupling})" in tex


def test_single_named_objective_and_no_objective():
    m = dm.Model()
    s = m.entities("s", 3)
    y = m.variable("y", over=s, upper=1)
    m.subject_to(y.sum() <= 2, name="total")
    assert m.to_text().splitlines()[0] == "min   0"
    m.minimize({"cost": 3 * y.sum() + 1})
    lines = m.to_text().splitlines()
    assert lines[0].split() == ["min", "cost"]
    assert lines[1].split(None, 1) == ["where", "cost = 3*sum_{s' in s} y[s'] + 1"]  # set s keeps its name


def test_equality_ge_and_range_rows():
    m, _, budget = matching()
    users, items = m.sets["user"], m.sets["item"]
    x = m.variables["x"]
    m.subject_to(x.sum(by=items) >= 0.25, name="floor")
    m.subject_to(x.sum(by=users) == 1, name="exact")
    m.subject_to(x.sum(by=items).between(0.5, 7), name="band")
    m.subject_to(x.sum(by=items).between(budget / 2, budget), name="corridor")
    text = m.to_text()
    assert "sum_{i in item(u)} x[u, i] <= 1" in line(text, "one_per_user")
    assert "sum_{u in user(i)} x[u, i] >= 0.25" in line(text, "floor")
    assert "sum_{i in item(u)} x[u, i] == 1" in line(text, "exact")
    assert "0.5 <= sum_{u in user(i)} x[u, i] <= 7" in line(text, "band")
    assert "corridor_lo[i] <= sum_{u in user(i)} x[u, i] <= corridor_up[i]  for all i in item" in line(text, "corridor")
    tex = m.to_latex()
    assert r"\sum_{u \in \mathrm{user}(i)} {x}_{u,i} \geq 0.25" in tex
    assert r"\sum_{i \in \mathrm{item}(u)} {x}_{u,i} = 1" in tex
    assert r"0.5 \leq \sum_{u \in \mathrm{user}(i)} {x}_{u,i} \leq 7" in tex
    assert r"{\underline{\mathrm{corridor}}}_{i} \leq" in tex and r"\leq {\overline{\mathrm{corridor}}}_{i}" in tex
    rel = {r.name: r.relation for r in symbolic(m).constraints}
    assert isinstance(rel["one_per_user"], sympy.LessThan)
    assert isinstance(rel["floor"], sympy.GreaterThan)
    assert isinstance(rel["exact"], sympy.Equality)
    assert isinstance(rel["band"], sympy.And)


def test_per_entity_rhs_arrays_versus_scalars():
    m = dm.Model()
    users, items = m.entities("user", 3), m.entities("item", 2)
    e = m.edges("e", users, items, src=[0, 0, 1, 2], dst=[0, 1, 1, 0])
    x = m.variable("x", over=e)
    m.subject_to(x.sum(by=users) == np.array([1.0, 0.0, 1.0]), name="pick")  # equal sides: one symbol
    m.subject_to(x.sum(by=items) <= np.array([2.0, 3.0]), name="cap")
    m.subject_to(x.sum(by=items) <= 2.0, name="flat")
    m.subject_to((x.sum(by=items) + np.array([1.0, 2.0])) <= 5.0, name="shifted")  # constant moves to the rhs
    text = m.to_text()
    assert "x[u, i] == pick[u]" in line(text, "pick") and "pick_lo" not in text
    assert "x[u, i] <= cap[i]" in line(text, "cap")
    assert "x[u, i] <= 2" in line(text, "flat")
    shifted = line(text, "shifted")
    assert "x[u, i] <= shifted[i]" in shifted and "<= shifted[i] <=" not in shifted and ">=" not in shifted


def test_variable_bounds():
    m = dm.Model()
    users, items = m.entities("user", 3), m.entities("item", 2)
    e = m.edges("e", users, items, src=[0, 0, 1, 2], dst=[0, 1, 1, 0])
    cap = np.array([1.0, 2.0, 3.0, 4.0])
    m.variable("x", over=e, upper=cap)
    m.variable("y", over=items, lower=0, upper=1)
    m.variable("z", over=users, lower=-np.inf)
    m.variable("w", over=users, lower=-np.inf, upper=5)
    m.variable("v", over=items, lower=np.array([1.0, -2.0]))
    m.minimize(m.variables["y"].sum())
    text = m.to_text(data={"cap": cap})
    lines = [" ".join(ln.split()) for ln in text.splitlines()[1:]]
    assert "0 <= x[u, i] <= cap[u, i] for all (u,i) in e" in lines[0]
    assert lines[1:5] == ["0 <= y <= 1", "z free", "w <= 5", "v[i] >= v_lo[i] for all i in item"]
    assert "0 <= x[u, i] <= x_up[u, i]" in m.to_text()  # unnamed array bound
    tex = m.to_latex()
    assert r"0 \leq {x}_{u,i} \leq {\overline{x}}_{u,i} & \forall\, (u,i) \in e &" in tex
    assert r"0 \leq y \leq 1" in tex and r"z\ \text{free}" in tex
    assert r"{v}_{i} \geq {\underline{v}}_{i}" in tex


def test_two_variables_elementwise_and_summed():
    m, edges, budget = matching(budget_row=False)
    items = m.sets["item"]
    x = m.variables["x"]
    y = m.variable("y", over=items)  # budget overflow bought per item
    m.maximize({"gain": (edges.value * x).sum(), "overflow": -2.5 * y.sum()})
    m.subject_to((edges.cost * x).sum(by=items) - y <= budget, name="budget")
    text = m.to_text(data=edges)
    assert "overflow = -2.5*sum_{i in item} y[i]" in text
    assert "gain = sum_{(u,i) in eligible} value[u, i]*x[u, i]" in text
    assert "sum_{u in user(i)} cost[u, i]*x[u, i] - y[i] <= budget[i]  for all i in item" in line(text, "budget")
    assert [ln.strip() for ln in text.splitlines()[-2:]] == ["x >= 0", "y >= 0"]


def test_matrix_rows_sum_over_the_variables_set():
    m = dm.Model()
    items = m.entities("item", 3)
    y = m.variable("y", over=items)
    m.subject_to(dm.matmul(np.eye(3) + 1.0, y, items) <= 4, name="mix")
    text = m.to_text()
    assert "sum_{i' in item} a[i, i']*y[i'] <= 4  for all i in item  (mix)" in text  # role unknown: no tag


def test_self_join_edges_get_two_indices():
    m = dm.Model()
    p = m.entities("person", 3)
    f = m.edges("friend", p, p, src=[0, 1, 2], dst=[1, 2, 0])
    z = m.variable("z", over=f, upper=1)
    m.maximize(z.sum())
    assert "sum_{(p,p') in friend} z[p, p']" in m.to_text()


def test_symbolic_objects_are_sympy():
    m, edges, _ = matching()
    s = symbolic(m, data=edges)
    assert isinstance(s.objective, sympy.Sum) and isinstance(s.objective, SetSum)
    (index_u, index_i) = (lim[0] for lim in s.objective.limits)
    assert isinstance(index_u, sympy.Idx) and index_u.domain == index_i.domain == sympy.Symbol("eligible")
    budget = s.constraints[1]
    assert budget.forall[0].domain == sympy.Symbol("item") and budget.upper.base.label == sympy.Symbol("budget")


def test_roles_agree_with_compile():
    m, edges, budget = matching()
    x = m.variables["x"]
    users, items = m.sets["user"], m.sets["item"]
    m.subject_to(x.sum(by=items) <= 5, name="per_item")  # columns already in one_per_user's blocks
    y = m.variable("y", over=items, upper=2)
    m.subject_to(y.sum() <= 3, name="y_total")
    m.subject_to((2 * y).sum() <= 3, name="y_scaled")
    m.subject_to(x.sum(by=users).between(0.1, 1), name="ranged", block=False)
    sf = m.compile()
    kinds = {s.name: s.kind for s in sf.layout.constraints}
    roles = {r.name: r.role for r in symbolic(m).constraints}
    assert roles == {"one_per_user": "block", "budget": "coupling", "per_item": "coupling", "y_total": "block",
                     "y_scaled": "coupling", "ranged": "coupling"}
    assert all((kinds[n] == "blocks") == (role == "block") for n, role in roles.items())


def test_latex_escapes_names():
    m = dm.Model()
    s = m.entities("my set", 2)
    y = m.variable("y_1", over=s)
    m.subject_to(y.sum() <= 1, name="50%_cap")
    tex = m.to_latex()
    assert r"\mathrm{my\ set}" in tex and r"{\mathrm{y\_1}}_{m}" in tex and r"\mathrm{50\%\_cap}" in tex


def test_bad_data_argument():
    m, edges, _ = matching()
    with pytest.raises(dm.ModelError, match="data: expected a DataFrame"):
        m.to_latex(data=[edges.value])
    with pytest.raises(dm.ModelError, match="non-empty strings, got 3"):
        m.to_text(data={3: edges.value.to_numpy()})
    with pytest.raises(dm.ModelError, match="'x' names an array of the model but is also a variable"):
        m.to_text(data={"x": edges.value})
    with pytest.raises(dm.ModelError, match=r"data\['v'\]"):
        m.to_text(data={"v": np.ones((2, 2))})


def test_million_edge_model_renders_from_term_blocks():
    data = synthetic_matching(10_000, 1_000, 0.1, seed=0)
    m = matching_model(data)
    assert len(m.variables["x"].index) > 900_000
    tex = m.to_latex(data={"value": data.value, "cost": data.cost})
    assert r"\sum_{(u,i) \in \mathrm{eligible}} {\mathrm{value}}_{u,i} {x}_{u,i}" in tex
    text = m.to_text()
    assert "for all i in item  (budget, coupling)" in text and "for all u in user  (one_per_user, block)" in text


def test_docs_page_shows_the_current_output():
    page = (Path(__file__).parents[1] / "docs" / "display.md").read_text()
    m, edges, _ = matching()
    tex = m.to_latex(data=edges)
    assert f"```latex\n{tex}\n```" in page and f"$$\n{tex}\n$$" in page
    assert f"```text\n{m.to_text(data=edges)}\n```" in page


def test_set_sum_parenthesizes_a_sum_body():
    u = sympy.Symbol("u", integer=True)
    user = sympy.Symbol("user")
    idx = SetIndex(u, user)
    x, y = sympy.IndexedBase("x"), sympy.IndexedBase("y")
    s = SetSum(sympy.Add(x[idx], y[idx], evaluate=False), idx)
    assert sympy.latex(s) == r"\sum_{u \in user} \left({x}_{u} + {y}_{u}\right)"
    assert sympy.sstr(s) == "sum_{u in user} (x[u] + y[u])"
