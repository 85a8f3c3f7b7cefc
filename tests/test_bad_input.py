"""Every bad input raises a ModelError (or BackendNotFoundError) naming the culprit, and nothing is solved."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dualip_model as dm
from dualip_model.backends.highs import HighsBackend

AFIRO = Path(__file__).resolve().parent / "data" / "netlib" / "afiro.mps"
REAL_SOLVE = HighsBackend.solve


@pytest.fixture(autouse=True)
def no_solving(monkeypatch):
    """Any call into the HiGHS backend fails the test: bad input must be caught before solving."""

    def forbidden(self, sf, options):
        raise AssertionError(f"bad input reached the backend: solve({sf!r}) was called")

    monkeypatch.setattr(HighsBackend, "solve", forbidden)


def build():
    """3 users x 2 items, edges (u0,a) (u0,b) (u1,a) (u2,b), variable x over them."""
    m = dm.Model("m")
    users = m.entities("user", ["u0", "u1", "u2"])
    items = m.entities("item", ["a", "b"])
    e = m.edges("e", users, items, src=["u0", "u0", "u1", "u2"], dst=["a", "b", "a", "b"])
    x = m.variable("x", over=e)
    return m, users, items, e, x


# ----------------------------------------------------------------------------------------- sets
def test_src_and_dst_of_different_lengths():
    m, users, items, _, _ = build()
    with pytest.raises(dm.ModelError, match=r"edge set 'pairs': src has 3 entries but dst has 2"):
        m.edges("pairs", users, items, src=["u0", "u1", "u2"], dst=["a", "b"])
    assert "pairs" not in m.sets


@pytest.mark.parametrize("src, dst, role, label, set_name", [
    (["u0", "zz"], ["a", "a"], "src", "zz", "user"),
    (["u0", "u1"], ["a", "nope"], "dst", "nope", "item"),
])
def test_unknown_label_in_edges(src, dst, role, label, set_name):
    m, users, items, _, _ = build()
    with pytest.raises(dm.ModelError, match=rf"edge set 'pairs': {role}: label .*'{label}'.* not in entity set "
                                            rf"'{set_name}'"):
        m.edges("pairs", users, items, src=src, dst=dst)


@pytest.mark.parametrize("bad", [7, -1])
def test_unknown_integer_label_in_edges(bad):
    m = dm.Model()
    users = m.entities("user", 3)  # labels 0..2
    items = m.entities("item", 2)
    pattern = rf"edge set 'pairs': src: label (np\.int64\()?{bad}\)? is not in entity set 'user'"
    with pytest.raises(dm.ModelError, match=pattern):
        m.edges("pairs", users, items, src=[0, bad, 1], dst=[0, 1, 1])


@pytest.mark.parametrize("src, dst", [
    (["u0", "u1", "u0"], ["a", "b", "a"]),  # unsorted: the sort path
    (["u0", "u0", "u1"], ["a", "a", "b"]),  # sorted by src: the chunked path
])
def test_duplicate_edges(src, dst):
    m, users, items, _, _ = build()
    with pytest.raises(dm.ModelError, match=r"edge set 'pairs': duplicate edge \('u0', 'a'\)"):
        m.edges("pairs", users, items, src=src, dst=dst)


def test_duplicate_edges_integer_labels():
    m = dm.Model()
    users = m.entities("user", 4)
    items = m.entities("item", 3)
    with pytest.raises(dm.ModelError, match=r"edge set 'pairs': duplicate edge \(2, 1\)"):
        m.edges("pairs", users, items, src=np.array([3, 2, 0, 2]), dst=np.array([0, 1, 1, 1]))


@pytest.mark.parametrize("labels, shown", [
    (["a", "b", "a"], "'a'"),
    (np.array([0, 1, 1, 2]), "1"),
    (pd.Series([5.0, 6.0, 5.0]), "5.0"),
    (pa.array(["p", "q", "q"]), "'q'"),
])
def test_duplicate_entity_labels(labels, shown):
    m = dm.Model()
    pattern = rf"entity set 'user': label .*{re.escape(shown)}.* appears more than once"
    with pytest.raises(dm.ModelError, match=pattern):
        m.entities("user", labels)
    assert "user" not in m.sets


def test_nan_label_in_float_labels():
    m = dm.Model()
    with pytest.raises(dm.ModelError, match=r"entity set 'user': label at position 1 is missing"):
        m.entities("user", np.array([1.0, np.nan, 3.0]))
    with pytest.raises(dm.ModelError, match=r"entity set 'user': label at position 1 is missing"):
        m.entities("user", pa.array([1, None, 3]))  # an arrow null in integers becomes NaN


@pytest.mark.parametrize("labels", [
    pd.Series(["a", None, "c"]),
    pd.Series(["a", np.nan, "c"]),
    pa.array(["a", None, "c"]),
    np.array(["a", None, "c"], dtype=object),
], ids=["pandas-None", "pandas-nan", "arrow-null", "object-None"])
def test_missing_label_in_string_labels(labels):
    m = dm.Model()
    with pytest.raises(dm.ModelError, match=r"entity set 'user': label at position 1 is"):
        m.entities("user", labels)


def test_nan_label_in_edges():
    m = dm.Model()
    users = m.entities("user", [1.0, 2.0])
    items = m.entities("item", 2)
    with pytest.raises(dm.ModelError, match=r"edge set 'pairs': src: label .*nan.* not in entity set 'user'"):
        m.edges("pairs", users, items, src=[1.0, np.nan], dst=[0, 1])


@pytest.mark.parametrize("labels", [[], np.array([], dtype=np.int64), 0, pd.Series([], dtype=str)])
def test_empty_entity_set(labels):
    with pytest.raises(dm.ModelError, match=r"entity set 'user' is empty"):
        dm.Model().entities("user", labels)


def test_empty_edge_set():
    m, users, items, _, _ = build()
    with pytest.raises(dm.ModelError, match=r"edge set 'pairs' is empty"):
        m.edges("pairs", users, items, src=[], dst=[])


def test_labels_must_be_one_dimensional():
    with pytest.raises(dm.ModelError, match=r"labels of entity set 'user': expected a 1-d array"):
        dm.Model().entities("user", np.zeros((2, 2)))


def test_edge_endpoint_from_another_model():
    m, users, _, _, _ = build()
    other = dm.Model("other")
    foreign = other.entities("item", ["a"])
    with pytest.raises(dm.ModelError, match=r"edge set 'pairs': entity set 'item' belongs to another model"):
        m.edges("pairs", users, foreign, src=["u0"], dst=["a"])


# ----------------------------------------------------------------------------------------- coefficients
@pytest.mark.parametrize("bad, where", [
    (np.nan, r"edge \('u0', 'b'\) is nan"),
    (np.inf, r"edge \('u0', 'b'\) is inf"),
    (-np.inf, r"edge \('u0', 'b'\) is -inf"),
])
def test_nan_or_inf_coefficient_names_the_edge(bad, where):
    _, _, _, _, x = build()
    coef = np.array([1.0, bad, 2.0, 3.0])
    with pytest.raises(dm.ModelError, match=rf"coefficient multiplying an expression over 'e': value at {where}"):
        coef * x
    with pytest.raises(dm.ModelError, match=rf"over 'e': value at {where}"):
        x * pd.Series(coef)


def test_nan_coefficient_on_entity_names_the_entity():
    m, users, _, _, _ = build()
    y = m.variable("y", over=users)
    with pytest.raises(dm.ModelError, match=r"over 'user': value at user='u2' is nan"):
        np.array([1.0, 2.0, np.nan]) * y


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_scalar_coefficient(bad):
    _, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match=rf"over 'e': value is {bad}"):
        bad * x
    with pytest.raises(dm.ModelError, match=r"divisor of an expression over 'e': value at edge \('u1', 'a'\) is"):
        x / np.array([1.0, 1.0, bad, 1.0])


def test_nan_in_matmul_matrix():
    m, _, items, _, x = build()
    matrix = np.ones((2, 4))
    matrix[1, 2] = np.nan
    with pytest.raises(dm.ModelError, match=r"matmul: matrix entries for variable 'x': value at position \d+ is nan"):
        dm.matmul(matrix, x, items)


def test_matmul_wrong_shape():
    _, _, items, _, x = build()
    with pytest.raises(dm.ModelError, match=r"matmul: matrix has shape \(2, 3\), expected \(2, 4\).*'item'.*'x'"):
        dm.matmul(np.ones((2, 3)), x, items)


@pytest.mark.parametrize("coef", [
    np.array(["1", "2", "3", "4"]),
    ["a", "b", "c", "d"],
    pd.Series(["1", "2", "3", "4"]),
    np.array([1, 2, 3, 4], dtype=object),
    pa.array(["1", "2", "3", "4"]),
], ids=["numpy-str", "list-str", "pandas-str", "numpy-object", "arrow-str"])
def test_non_numeric_coefficient_array(coef):
    _, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match=r"over 'e': expected numeric data, got dtype"):
        coef * x


def test_non_numeric_scalar_coefficient():
    _, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match=r"over 'e': expected a number, got 'abc'"):
        x * "abc"


@pytest.mark.parametrize("case", ["coefficient", "bound", "rhs"])
def test_numeric_looking_string_scalar(case):
    m, _, items, _, x = build()
    with pytest.raises(dm.ModelError, match=r"expected a number|expected numeric data"):
        if case == "coefficient":
            x * "2"
        elif case == "bound":
            m.variable("y", over=items, upper="1")
        else:
            m.subject_to(x.sum(by=items) <= "3", name="c")


@pytest.mark.parametrize("n", [3, 5])
def test_coefficient_array_of_wrong_length(n):
    _, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match=rf"over 'e': has {n} entries, expected 4"):
        np.arange(float(n)) * x


def test_rhs_array_of_wrong_length():
    m, _, items, _, x = build()
    with pytest.raises(dm.ModelError, match=r"constraint 'c': upper side: has 3 entries, expected 2"):
        m.subject_to(x.sum(by=items) <= np.array([1.0, 2.0, 3.0]), name="c")


def test_product_of_two_expressions():
    _, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match="not linear"):
        x * x


# ----------------------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("side", ["lower", "upper"])
def test_nan_variable_bound_names_variable_and_entity(side):
    m, users, _, _, _ = build()
    bounds = {side: np.array([0.0, np.nan, 1.0])}
    with pytest.raises(dm.ModelError, match=rf"variable 'y': {side} bound: value at user='u1' is nan"):
        m.variable("y", over=users, **bounds)
    with pytest.raises(dm.ModelError, match=rf"variable 'z': {side} bound: value is nan"):
        m.variable("z", over=users, **{side: float("nan")})
    assert "y" not in m.variables and "z" not in m.variables and m.n_cols == 4


def test_nan_variable_bound_on_edges_names_the_edge():
    m, _, _, e, _ = build()
    with pytest.raises(dm.ModelError, match=r"variable 'y': upper bound: value at edge \('u1', 'a'\) is nan"):
        m.variable("y", over=e, upper=np.array([1.0, 1.0, np.nan, 1.0]))


def test_variable_bounds_of_wrong_length_or_type():
    m, users, _, _, _ = build()
    with pytest.raises(dm.ModelError, match=r"variable 'y': upper bound: has 2 entries, expected 3"):
        m.variable("y", over=users, upper=np.array([1.0, 2.0]))
    with pytest.raises(dm.ModelError, match=r"variable 'y': lower bound: expected numeric data"):
        m.variable("y", over=users, lower=np.array(["0", "0", "0"]))


def test_variable_lower_above_upper():
    m, users, _, _, _ = build()
    with pytest.raises(dm.ModelError, match=r"variable 'y' at user='u1': lower bound 2.0 exceeds upper bound 1.0"):
        m.variable("y", over=users, lower=np.array([0.0, 2.0, 0.0]), upper=1.0)
    with pytest.raises(dm.ModelError, match=r"variable 'y'.*\+inf"):
        m.variable("y", over=users, lower=np.inf)
    with pytest.raises(dm.ModelError, match=r"variable 'y'.*-inf"):
        m.variable("y", over=users, upper=-np.inf)


def test_nan_rhs_names_the_entity():
    m, _, items, _, x = build()
    with pytest.raises(dm.ModelError, match=r"constraint 'c': upper side: value at 'c\[item='b'\]' is nan"):
        m.subject_to(x.sum(by=items) <= np.array([1.0, np.nan]), name="c")
    with pytest.raises(dm.ModelError, match=r"constraint 'r': upper side: value at 'r\[item='b'\]' is nan"):
        m.subject_to(x.sum(by=items).between(0.0, np.array([1.0, np.nan])), name="r")
    with pytest.raises(dm.ModelError, match=r"constraint 'g': lower side: value is nan"):
        m.subject_to(x.sum() >= float("nan"), name="g")
    assert not m.constraints


def test_nan_rhs_names_the_constraint():
    m, _, items, _, x = build()
    with pytest.raises(dm.ModelError, match=r"budget\[item='b'\]"):
        m.subject_to(x.sum(by=items) <= np.array([1.0, np.nan]), name="budget")


def test_range_lower_above_upper_names_constraint_row():
    m, _, items, _, x = build()
    with pytest.raises(dm.ModelError, match=r"constraint 'rng\[item='b'\]': lower side 3.0 exceeds upper side 2.0"):
        m.subject_to(x.sum(by=items).between(np.array([0.0, 3.0]), np.array([1.0, 2.0])), name="rng")
    with pytest.raises(dm.ModelError, match=r"constraint 'total': lower side 5.0 exceeds upper side 4.0"):
        m.subject_to(x.sum().between(5, 4), name="total")
    with pytest.raises(dm.ModelError, match=r"constraint 'inf_range': infeasible infinite bound"):
        m.subject_to(x.sum().between(np.inf, np.inf), name="inf_range")
    assert not m.constraints


# ----------------------------------------------------------------------------------------- models
def test_variable_of_another_model():
    m, _, _, _, x = build()
    _, _, items2, _, x2 = build()
    with pytest.raises(dm.ModelError, match=r"constraint 'c': its expression uses variables of another model"):
        m.subject_to(x2.sum() <= 1, name="c")
    with pytest.raises(dm.ModelError, match=r"objective 'objective': expression uses variables of another model"):
        m.minimize(x2.sum())
    with pytest.raises(dm.ModelError, match=r"objective 'clicks': expression uses variables of another model"):
        m.maximize({"clicks": x2.sum()})
    with pytest.raises(dm.ModelError, match="two different models"):
        x.sum() + x2.sum()
    with pytest.raises(dm.ModelError, match="two different models"):
        x + x2
    with pytest.raises(dm.ModelError, match="two different models"):
        x - x2
    with pytest.raises(dm.ModelError, match=r"variable 'y': set 'item' belongs to another model"):
        m.variable("y", over=items2)
    assert not m.constraints and m.objective is None and "y" not in m.variables


@pytest.mark.parametrize("how", ["variable", "by_user", "by_item"])
def test_objective_indexed_by_a_set_suggests_sum(how):
    m, users, items, _, x = build()
    expr = {"variable": x, "by_user": x.sum(by=users), "by_item": x.sum(by=items)}[how]
    index = {"variable": "e", "by_user": "user", "by_item": "item"}[how]
    with pytest.raises(dm.ModelError, match=rf"objective 'objective': expression is indexed by '{index}'; "
                                            r"use \.sum\(\)"):
        m.minimize(expr)
    with pytest.raises(dm.ModelError, match=rf"objective 'rev': expression is indexed by '{index}'.*\.sum\(\)"):
        m.maximize({"rev": expr})


def test_objective_not_an_expression_and_bad_weights():
    m, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match=r"objective 'objective': expected a linear expression, got str"):
        m.minimize("x")
    with pytest.raises(dm.ModelError, match=r"weights given for unknown objectives \['typo'\]"):
        m.minimize({"a": x.sum()}, weights={"typo": 1.0})
    with pytest.raises(dm.ModelError, match=r"objective 'a': weight must be a finite number, got nan"):
        m.minimize({"a": x.sum()}, weights={"a": float("nan")})
    with pytest.raises(dm.ModelError, match="no expression"):
        m.minimize({})


def test_non_numeric_objective_weight():
    m, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match=r"objective 'a'"):
        m.minimize({"a": x.sum()}, weights={"a": "2"})


def test_adding_expressions_over_different_sets():
    m, users, items, _, x = build()
    with pytest.raises(dm.ModelError, match=r"cannot add an expression over 'item' to one over 'user'; sum one"):
        x.sum(by=users) + x.sum(by=items)
    with pytest.raises(dm.ModelError, match=r"cannot add an expression over 'user' to one over 'e'"):
        x + x.sum(by=users)
    with pytest.raises(dm.ModelError, match=r"over 'user' to one over scalar"):
        x.sum() + x.sum(by=users)
    with pytest.raises(dm.ModelError, match=r"over 'item' to one over 'user'"):
        m.subject_to(x.sum(by=users) <= x.sum(by=items), name="c")


def test_sum_by_a_set_that_is_not_an_endpoint():
    m, users, items, _, x = build()
    y = m.variable("y", over=users)
    with pytest.raises(dm.ModelError,
                       match=r"cannot sum an expression over 'user' by 'item': 'item' is not an endpoint"):
        y.sum(by=items)
    other = m.entities("region", ["north"])
    with pytest.raises(dm.ModelError, match=r"over 'e' by 'region': 'region' is not an endpoint"):
        x.sum(by=other)
    with pytest.raises(dm.ModelError, match=r"sum\(by=...\) takes an EntitySet, got EdgeSet"):
        x.sum(by=m.sets["e"])


@pytest.mark.parametrize("kind", ["entities", "edges", "variable", "constraint"])
def test_duplicate_names(kind):
    m, users, items, _, x = build()
    if kind == "entities":
        with pytest.raises(dm.ModelError, match=r"set 'item' already exists in model 'm'"):
            m.entities("item", 3)
    elif kind == "edges":
        with pytest.raises(dm.ModelError, match=r"set 'user' already exists in model 'm'"):
            m.edges("user", users, items, src=["u0"], dst=["a"])
    elif kind == "variable":
        with pytest.raises(dm.ModelError, match=r"variable 'x' already exists in model 'm'"):
            m.variable("x", over=users)
        assert m.n_cols == 4
    else:
        m.subject_to(x.sum() <= 1, name="cap")
        with pytest.raises(dm.ModelError, match=r"constraint 'cap' already exists in model 'm'"):
            m.subject_to(x.sum() <= 2, name="cap")
        assert m.constraints["cap"].upper == 1.0


@pytest.mark.parametrize("name", ["", None, 3])
def test_invalid_names(name):
    m, _, _, _, _ = build()
    with pytest.raises(dm.ModelError, match=r"set name must be a non-empty string"):
        m.entities(name, 2)


def test_constraint_with_no_variables():
    m, _, _, _, _ = build()
    with pytest.raises(dm.ModelError, match=r"constraint 'nothing' has no variables"):
        m.subject_to(dm.LinearExpression(m, None, ()) <= 1.0, name="nothing")
    assert "nothing" not in m.constraints


@pytest.mark.parametrize("make, expected", [("difference", dm.Status.INFEASIBLE),
                                             ("zero_coefficient", dm.Status.OPTIMAL)])
def test_constraint_whose_variables_cancel_is_a_valid_row(make, expected, monkeypatch):
    """All-zero rows are legal data (0 <= 1 holds, 0 <= -1 does not): the solver, not the builder, decides."""
    monkeypatch.setattr(HighsBackend, "solve", REAL_SOLVE)
    m, _, _, _, x = build()
    expr = (x - x).sum() if make == "difference" else (0 * x).sum()
    m.subject_to(expr <= (-1.0 if make == "difference" else 1.0), name="nothing")
    m.minimize(0)  # a feasibility problem, said explicitly
    assert m.compile().n_rows >= 1
    assert m.solve("highs").status == expected


def test_constraint_needs_a_relation():
    m, _, _, _, x = build()
    with pytest.raises(dm.ModelError, match=r"constraint 'c': expected a relation.*got LinearExpression"):
        m.subject_to(x.sum(), name="c")


@pytest.mark.parametrize("how", ["variable", "expression", "equality", "range"])
def test_bool_of_a_relation(how):
    _, users, _, _, x = build()
    relation = {"variable": lambda: x <= 1, "expression": lambda: x.sum(by=users) >= 0,
                "equality": lambda: x == 1, "range": lambda: x.sum().between(0, 1)}[how]()
    with pytest.raises(dm.ModelError, match="a relation has no truth value; pass it to Model.subject_to"):
        if relation:
            pass
    with pytest.raises(dm.ModelError, match="no truth value"):
        0 <= x.sum() <= 1  # chained comparison calls bool() on the first relation


def test_model_with_no_variables():
    m = dm.Model("empty")
    m.entities("user", 2)
    with pytest.raises(dm.ModelError, match=r"model 'empty' has no variables"):
        m.compile()
    with pytest.raises(dm.ModelError, match=r"model 'empty' has no variables"):
        m.solve("highs")


def test_variable_over_something_that_is_not_a_set():
    m = dm.Model()
    with pytest.raises(dm.ModelError, match=r"variable 'x': over= must be an EntitySet or EdgeSet, got list"):
        m.variable("x", over=[1, 2, 3])


# ----------------------------------------------------------------------------------------- empty blocks
def test_empty_equality_block_polytope():
    m = dm.Model("blocks")
    users = m.entities("user", ["u0", "u1"])
    items = m.entities("item", ["a", "b"])
    e = m.edges("e", users, items, src=["u0", "u0", "u1"], dst=["a", "b", "a"])
    x = m.variable("x", over=e, upper=0.5)
    m.maximize(x.sum())
    m.subject_to(x.sum(by=users) == 1, name="assign")  # u1 has one edge with upper bound 0.5
    with pytest.raises(dm.ModelError, match=r"constraint 'assign\[user='u1'\]': block polytope is empty"):
        m.compile()
    with pytest.raises(dm.ModelError, match=r"assign\[user='u1'\]"):
        m.solve("highs")


def test_empty_simplex_block_negative_rhs():
    m, users, _, _, x = build()
    m.maximize(x.sum())
    m.subject_to(x.sum(by=users) <= np.array([1.0, -1.0, 1.0]), name="one")
    with pytest.raises(dm.ModelError, match=r"constraint 'one\[user='u1'\]': block polytope is empty \(rhs -1.0"):
        m.solve("highs")


def test_empty_global_simplex_block():
    m, _, _, _, x = build()
    m.maximize(x.sum())
    m.subject_to(x.sum() <= -1, name="total")
    with pytest.raises(dm.ModelError, match=r"constraint 'total': block polytope is empty"):
        m.solve("highs")


def test_empty_boxcut_block_lower_bounds_too_large():
    m, users, _, e, _ = build()
    y = m.variable("y", over=e, lower=1.0, upper=2.0)
    m.minimize(y.sum())
    m.subject_to(y.sum(by=users) <= 1, name="cap")  # u0 has two edges with lower bound 1
    with pytest.raises(dm.ModelError, match=r"constraint 'cap\[user='u0'\]': block polytope is empty .*\[2.0,"):
        m.solve("highs")


def test_forced_block_that_cannot_be_one():
    m, users, _, _, x = build()
    m.minimize(x.sum())
    m.subject_to((2 * x).sum(by=users) <= 1, name="scaled", block=True)
    with pytest.raises(dm.ModelError, match=r"constraint 'scaled' cannot be a block polytope: its coefficients"):
        m.solve("highs")


# ----------------------------------------------------------------------------------------- files
def test_missing_model_file(tmp_path):
    path = tmp_path / "nope.mps"
    with pytest.raises(dm.ModelError, match=rf"model file '{re.escape(str(path))}' does not exist"):
        dm.read_model(path)
    with pytest.raises(dm.ModelError, match="does not exist"):
        dm.read_model(tmp_path)  # a directory is not a model file


@pytest.mark.parametrize("content", [
    b"this is not an MPS file\n\x00\x01\x02 garbage\n",
    b"",
    b"NAME TEST\nROWS\n N obj\n L c1\nCOLUMNS\n x obj one\n",
], ids=["garbage", "empty", "bad-number"])
def test_corrupt_mps_file(tmp_path, content):
    path = tmp_path / "bad.mps"
    path.write_bytes(content)
    with pytest.raises(dm.ModelError, match=rf"model file '{re.escape(str(path))}' could not be read"):
        dm.read_model(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_mps_file(tmp_path, fraction):
    text = AFIRO.read_bytes()
    path = tmp_path / "afiro_truncated.mps"
    path.write_bytes(text[: int(len(text) * fraction)])
    with pytest.raises(dm.ModelError, match=r"afiro_truncated.mps' could not be read .*corrupt, truncated"):
        dm.read_model(path)


def test_truncated_mps_file_missing_endata(tmp_path):
    lines = AFIRO.read_text().splitlines(keepends=True)
    assert lines[-1].startswith("ENDATA")
    path = tmp_path / "afiro_no_endata.mps"
    path.write_text("".join(lines[:-1]))
    with pytest.raises(dm.ModelError, match=r"afiro_no_endata.mps' could not be read"):
        dm.read_model(path)


# ----------------------------------------------------------------------------------------- backends and options
def solvable():
    m, users, _, _, x = build()
    m.maximize(x.sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    return m


def test_unknown_backend_name():
    with pytest.raises(dm.BackendNotFoundError, match=r"no backend named 'gurobi'; available: .*highs"):
        solvable().solve("gurobi")


def test_unknown_option_keyword():
    with pytest.raises(dm.ModelError, match=r"backend 'highs' has no option\(s\) \['tolerance'\]"):
        solvable().solve("highs", tolerance=1e-6)
    with pytest.raises(dm.ModelError, match=r"\['max_iter', 'tol'\]"):
        solvable().solve("highs", tol=1e-6, max_iter=3, threads=1)


def test_options_of_the_wrong_type():
    with pytest.raises(dm.ModelError, match=r"options for backend 'highs' must be HighsOptions, got dict"):
        solvable().solve("highs", {"solver": "ipm"})


@pytest.mark.parametrize("settings, name", [
    (dict(solver="dual-simplex"), "solver"), (dict(threads=0), "threads"), (dict(threads=-2), "threads"),
    (dict(time_limit=0), "time_limit"), (dict(time_limit=float("nan")), "time_limit"),
])
def test_invalid_option_values(settings, name):
    with pytest.raises(dm.ModelError, match=rf"HighsOptions.{name} must be"):
        solvable().solve("highs", **settings)


@pytest.mark.parametrize("settings, name", [
    (dict(time_limit="fast"), "time_limit"),
    (dict(threads="2"), "threads"),
    (dict(presolve="off"), "presolve"),
    (dict(primal_feasibility_tolerance=-1.0), "primal_feasibility_tolerance"),
    (dict(primal_feasibility_tolerance="x"), "primal_feasibility_tolerance"),
], ids=["time_limit-str", "threads-str", "presolve-str", "tolerance-negative", "tolerance-str"])
def test_option_values_of_the_wrong_type(settings, name, monkeypatch):
    # HiGHS may validate these itself, so let the backend run: a fix there must raise before solving
    monkeypatch.setattr(HighsBackend, "solve", REAL_SOLVE)
    with pytest.raises(dm.ModelError, match=name):
        solvable().solve("highs", **settings)


# ----------------------------------------------------------------------------------------- NaN / inf anywhere
# (id, make(model, users, items, x), expected message); shared with benchmarks/reliability_report.py
NAN_ELSEWHERE = [
    ("constant-nan", lambda m, users, items, x: x.sum() + np.nan,
     r"constant added to an expression over scalar: value is nan"),
    ("constant-array-inf", lambda m, users, items, x: x.sum(by=items) - np.array([1.0, np.inf]),
     r"constant added to an expression over 'item': value at item='b' is -?inf"),
    ("objective-constant-inf", lambda m, users, items, x: m.minimize(x.sum() + np.inf), r"value is inf"),
    ("weight-inf", lambda m, users, items, x: m.minimize({"a": x.sum()}, weights={"a": np.inf}),
     r"objective 'a': weight must be a finite number, got inf"),
    ("matmul-inf", lambda m, users, items, x: dm.matmul(np.array([[1.0, np.inf, 0, 0], [0, 0, 1, 1]]), x, items),
     r"matmul: matrix entries for variable 'x': value at position 1 is inf"),
    ("rhs-minus-inf", lambda m, users, items, x: m.subject_to(x.sum() <= -np.inf, name="c"),
     r"constraint 'c': infeasible infinite"),
    ("equality-rhs-inf", lambda m, users, items, x: m.subject_to(x.sum(by=items) == np.array([1.0, np.inf]), name="c"),
     r"constraint 'c\[item='b'\]': infeasible infinite bound"),
    ("arrow-null-coefficient", lambda m, users, items, x: pa.array([1.0, None, 2.0, 3.0]) * x,
     r"over 'e': value at edge \('u0', 'b'\) is missing \(null\)"),
    ("pandas-NA-coefficient", lambda m, users, items, x: pd.Series([1.0, None, 2.0, 3.0], dtype="Float64") * x,
     r"over 'e': value at edge \('u0', 'b'\) is missing \(null\)"),
]


@pytest.mark.parametrize("make, pattern", [case[1:] for case in NAN_ELSEWHERE], ids=[case[0] for case in NAN_ELSEWHERE])
def test_nan_inf_and_nulls_elsewhere(make, pattern):
    m, users, items, _, x = build()
    with pytest.raises(dm.ModelError, match=pattern):
        make(m, users, items, x)
    assert not m.constraints and m.objective is None


# ----------------------------------------------------------------------------------------- shapes and types
SHAPES_AND_TYPES = [
    ("coefficient-2d", lambda m, users, items, x: np.ones((4, 1)) * x,
     r"over 'e': expected a 1-d array, got shape \(4, 1\)"),
    ("coefficient-dataframe", lambda m, users, items, x: x * pd.DataFrame({"w": np.ones(4)}),
     r"over 'e': expected a 1-d array, got a DataFrame with columns \['w'\]; pass one column"),
    ("bound-2d", lambda m, users, items, x: m.variable("y", over=users, upper=np.ones((3, 1))),
     r"variable 'y': upper bound: expected a 1-d array, got shape \(3, 1\)"),
    ("rhs-2d", lambda m, users, items, x: m.subject_to(x.sum(by=items) <= np.ones((2, 1)), name="c"),
     r"constraint 'c': upper side: expected a 1-d array, got shape \(2, 1\)"),
    ("constant-length", lambda m, users, items, x: x + np.ones(3),
     r"constant added to an expression over 'e': has 3 entries, expected 4"),
    ("rhs-length", lambda m, users, items, x: m.subject_to(x <= np.ones(5), name="c"),
     r"constraint 'c': upper side: has 5"),
    ("complex-array", lambda m, users, items, x: np.array([1j, 1, 1, 1]) * x,
     r"over 'e': expected numeric data, got dtype complex"),
    ("complex-scalar", lambda m, users, items, x: (1 + 2j) * x, r"over 'e': expected a number, got \(1\+2j\)"),
    ("datetime", lambda m, users, items, x: np.array(["2020-01-01"] * 4, dtype="datetime64[D]") * x,
     r"over 'e': expected numeric data, got dtype datetime64"),
    ("object-with-None", lambda m, users, items, x: np.array([1.0, None, 2.0, 3.0], dtype=object) * x,
     r"over 'e': expected numeric data, got dtype object"),
    ("string-bounds", lambda m, users, items, x: m.variable("y", over=users, upper=["1", "2", "3"]),
     r"variable 'y': upper bound: expected numeric data"),
    ("None-rhs", lambda m, users, items, x: m.subject_to(x.sum() <= None, name="c"), r"constraint 'c': upper side"),
    ("string-objective", lambda m, users, items, x: m.minimize("3"),
     r"objective 'objective': expected a linear expression, got str"),
    ("inf-objective", lambda m, users, items, x: m.minimize(np.inf),
     r"objective 'objective': a constant objective must be finite, got inf"),
    ("bool-constraint", lambda m, users, items, x: m.subject_to(True, name="c"),
     r"constraint 'c': expected a relation"),
]


@pytest.mark.parametrize("make, pattern", [case[1:] for case in SHAPES_AND_TYPES],
                         ids=[case[0] for case in SHAPES_AND_TYPES])
def test_shape_mismatches_and_non_numeric_data(make, pattern):
    m, users, items, _, x = build()
    with pytest.raises(dm.ModelError, match=pattern):
        make(m, users, items, x)
    assert not m.constraints and m.objective is None and "y" not in m.variables


def solved_and_other(monkeypatch):
    """A solved model m and a second model with the same names (variable 'x', constraint 'one')."""
    monkeypatch.setattr(HighsBackend, "solve", REAL_SOLVE)
    m, users, _, _, x = build()
    m.maximize(x.sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    other, other_users, _, _, x2 = build()
    other.maximize(x2.sum())
    other.subject_to(x2.sum(by=other_users) <= 1, name="one")
    return m.solve("highs"), other


def test_results_refuse_variables_of_another_model_and_unknown_names(monkeypatch):
    res, other = solved_and_other(monkeypatch)
    with pytest.raises(dm.ModelError, match=r"unknown variable .*'x'.* in model 'm'"):
        res.primal(other.variables["x"])
    with pytest.raises(dm.ModelError, match=r"unknown variable 'nope' in model 'm'"):
        res.primal("nope")
    with pytest.raises(dm.ModelError, match=r"unknown constraint 'nope' in model 'm'"):
        res.dual("nope")
    with pytest.raises(dm.ModelError, match=r"cannot sum an expression over 'e' by 'user': 'user' is not an endpoint"):
        res.model.variables["x"].sum(by=other.sets["user"])


def test_results_refuse_a_constraint_of_another_model_with_the_same_name(monkeypatch):
    res, other = solved_and_other(monkeypatch)
    with pytest.raises(dm.ModelError, match=r"unknown constraint .*'one'.* in model 'm'"):
        res.dual(other.constraints["one"])


def test_standard_form_of_another_model_is_refused_before_solving():
    m, users, _, _, x = build()
    m.maximize(x.sum())
    other, other_users, _, _, x2 = build()
    other.maximize(x2.sum())
    other.subject_to(x2.sum(by=other_users) <= 1, name="one")
    with pytest.raises(dm.ModelError, match=r"standard form does not match model 'm'"):
        m.solve("highs", standard_form=other.compile())


# ----------------------------------------------------------------------------------------- bounds that empty a block
@pytest.mark.parametrize("lower, upper, sense, rhs, shown", [
    (-2.0, -1.0, "==", 1.0, r"\[-4.0, -2.0\]"),  # negative upper bounds: the sums cannot reach 1
    (0.0, np.inf, "==", -1.0, r"rhs -1.0, column bounds sum to \[0.0, inf\]"),  # x >= 0 cannot sum to -1
    (0.5, 1.0, "<=", 0.75, r"rhs 0.75, column bounds sum to \[1.0,"),  # two lower bounds of 0.5 exceed 0.75
])
def test_bounds_that_make_a_block_empty(lower, upper, sense, rhs, shown):
    m, users, _, e, _ = build()
    y = m.variable("y", over=e, lower=lower, upper=upper)
    m.minimize(y.sum())
    sums = y.sum(by=users)
    m.subject_to(sums == rhs if sense == "==" else sums <= rhs, name="blk")
    with pytest.raises(dm.ModelError, match=rf"constraint 'blk\[user='u0'\]': block polytope is empty .*{shown}"):
        m.solve("highs")


# ----------------------------------------------------------------------------------------- int32 index limits
def test_too_many_columns_fail_before_anything_is_allocated(monkeypatch):
    """More columns than int32 indices allow: refused naming the variable, before block detection runs.

    The limit is monkeypatched from 2^31 - 1 to 5 so no 2^31-element array is needed to test the check.
    """
    from dualip_model import compile as compile_module

    monkeypatch.setattr(compile_module, "INDEX_LIMIT", 5)
    monkeypatch.setattr(compile_module, "_choose_block_constraints",
                        lambda *a: pytest.fail("compile went past the column check"))
    m, users, _, _, x = build()
    m.variable("y", over=users)  # columns 4..6
    m.minimize(x.sum())
    with pytest.raises(dm.ModelError, match=r"model 'm' has 7 columns, more than the 5 \(2\^31 - 1\) int32 indices "
                                            r"allow; variable 'y' ends at column 7"):
        m.compile()


@pytest.mark.parametrize("limit, what", [(4, "coupling rows"), (7, r"coupling-row terms \(nonzeros of A\)")])
def test_too_many_coupling_rows_or_nonzeros_fail_before_allocating(monkeypatch, limit, what):
    from dualip_model import compile as compile_module

    monkeypatch.setattr(compile_module, "INDEX_LIMIT", limit)
    monkeypatch.setattr(compile_module, "_coupling_rows", lambda *a: pytest.fail("compile built the rows"))
    m, users, items, e, x = build()
    m.minimize(x.sum())
    m.subject_to((2 * x).sum(by=users) <= 1, name="small")  # 3 rows, 4 terms: coupling (coefficient 2)
    m.subject_to(x <= 1, name="big", block=False)  # 4 rows, 4 terms
    with pytest.raises(dm.ModelError, match=rf"model 'm' has (7|8) {what}, more than the {limit} \(2\^31 - 1\) int32 "
                                            rf"indices allow; constraint '(big|small)' has 4"):
        m.compile()


def test_index_limit_is_int32():
    from dualip_model import compile as compile_module

    assert compile_module.INDEX_LIMIT == np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------- more corrupt files
TINY_MPS = """NAME          TINY
ROWS
 N  COST
 L  LIM1
 G  LIM2
COLUMNS
    X1        COST         1.0   LIM1         1.0
    X1        LIM2         1.0
    X2        COST         2.0   LIM1         1.0
RHS
    RHS       LIM1         4.0   LIM2         1.0
BOUNDS
 UP BND       X1           4.0
ENDATA
"""


def test_tiny_mps_file_reads(tmp_path):
    """The valid file the corrupt variants below start from."""
    path = tmp_path / "tiny.mps"
    path.write_text(TINY_MPS)
    m = dm.read_model(path)
    assert m.n_cols == 2 and m.constraints["rows"].size == 2


@pytest.mark.parametrize("old, new", [
    ("X1        LIM2         1.0", "X1        LIM2         inf"),
    ("LIM1         4.0", "LIM1         nan"),
    ("X1           4.0", "X1           nan"),
    (" G  LIM2", " Q  LIM2"),
], ids=["matrix-inf", "rhs-nan", "bound-nan", "unknown-row-type"])
def test_mps_file_with_bad_values_is_refused(tmp_path, old, new):
    path = tmp_path / "bad_values.mps"
    path.write_text(TINY_MPS.replace(old, new))
    with pytest.raises(dm.ModelError, match=r"bad_values.mps' could not be read"):
        dm.read_model(path)


@pytest.mark.parametrize("old, new, pattern", [
    ("2.0   LIM1", "nan   LIM1", r"value at columns='X2' is nan"),
    ("X1        LIM2         1.0", "X1        LIM2         nan", r"matmul: matrix entries for variable 'x': .* is nan"),
], ids=["cost-nan", "matrix-nan"])
def test_mps_file_with_nan_read_by_highs_is_refused_by_the_model(tmp_path, old, new, pattern):
    path = tmp_path / "nan.mps"
    path.write_text(TINY_MPS.replace(old, new))
    with pytest.raises(dm.ModelError, match=pattern):
        dm.read_model(path)


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])  # (regression: HiGHS read 0.5 and 0.7 as partial models)
def test_truncated_gzipped_mps_file(tmp_path, keep):
    import gzip

    data = gzip.compress(AFIRO.read_bytes())
    path = tmp_path / "afiro.mps.gz"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(dm.ModelError, match=r"afiro.mps.gz' could not be read"):
        dm.read_model(path)


@pytest.mark.parametrize("old, new", [
    ("X1        LIM2         1.0", "X1        NOPE         1.0"),  # matrix entry in an undefined row: dropped
    ("BND       X1", "BND       X9"),  # bound on an undefined column: added
    ("ROWS\n", ""),  # no ROWS section: every row, the objective included, is dropped
], ids=["undefined-row", "undefined-column", "no-rows-section"])
def test_mps_file_naming_undefined_rows_or_columns_is_refused(tmp_path, old, new):
    path = tmp_path / "undefined.mps"
    path.write_text(TINY_MPS.replace(old, new))
    with pytest.raises(dm.ModelError, match=r"undefined.mps"):
        dm.read_model(path)


# Names with spaces: HiGHS's free reader gives up and its fixed-format reader takes names from columns 5-12 and 15-22.
FIXED_MPS = """NAME          FIXED
ROWS
 N  COST
 L  LIM 1
 G  LIM2
COLUMNS
    X1        COST               1.0   LIM 1              1.0
    X1        LIM2               1.0
    X 2       COST               2.0   LIM 1              1.0
    X 3       COST                 0
RHS
    RHS       LIM 1              4.0   LIM2               1.0
BOUNDS
 UP BND       X1                 4.0
 UP BND       X 3                5.0
ENDATA
"""


@pytest.mark.parametrize("text, labels, lower, upper", [
    (FIXED_MPS, ["X1", "X 2", "X 3"], [0, 0, 0], [4, np.inf, 5]),
    (TINY_MPS.replace("RHS\n", "    X3        COST         0.0\n    X4        LIM1         0\nRHS\n")
             .replace("ENDATA", " UP BND X3 5.0\n FR X4\n UP X2 6.0\nENDATA"),
     ["X1", "X2", "X3", "X4"], [0, 0, 0, -np.inf], [4, 6, 5, np.inf]),
], ids=["fixed", "free-trailing-empty-columns"])
def test_mps_file_with_empty_columns_in_columns_section_reads(tmp_path, text, labels, lower, upper):
    """Columns with only zero entries, and bounds without a bound name ('FR X4'), are defined: no false alarm."""
    path = tmp_path / "fine.mps"
    path.write_text(text)
    m = dm.read_model(path)
    assert list(m.sets["columns"].labels) == labels
    assert list(m.variables["x"].lower) == lower and list(m.variables["x"].upper) == upper


@pytest.mark.parametrize("text, old, new, shown", [
    (TINY_MPS, "BND       X1", "BND       X9", "'X9', which has no entries in COLUMNS (HiGHS would add the column)"),
    (TINY_MPS, "ENDATA", " MI BND X9\nENDATA", "'X9', which"),
    (TINY_MPS, "ENDATA", " FR X9\nENDATA", "'X9', which"),  # no bound name
    (FIXED_MPS, "BND       X 3", "BND       X 9", "'X 9', which has no entries in COLUMNS (HiGHS would drop the "
                                                 "bound)"),
], ids=["free", "free-mi", "free-no-bound-name", "fixed"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mps_bound_on_undefined_column_names_file_and_column(tmp_path, text, old, new, shown, gz):
    import gzip

    data = text.replace(old, new).encode()
    path = tmp_path / ("undefined.mps.gz" if gz else "undefined.mps")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(dm.ModelError, match=rf"model file '{re.escape(str(path))}': BOUNDS section names column "
                                            + re.escape(shown)):
        dm.read_model(path)


def test_fixed_mps_entry_in_undefined_row_is_refused(tmp_path):
    """HiGHS's fixed-format reader drops it with a log line of its own."""
    path = tmp_path / "undefined_row.mps"
    path.write_text(FIXED_MPS.replace("X1        LIM2", "X1        NOPE"))
    with pytest.raises(dm.ModelError, match=r"undefined_row.mps' names undefined rows .* COLUMNS section entries "
                                            r"contain +1 with row not in ROWS +section: ignored"):
        dm.read_model(path)


@pytest.mark.parametrize("make, match", [
    (lambda m, x: m.subject_to(x.sum() <= pa.scalar("a"), name="e"), r"constraint 'e': upper side: expected numeric"),
    (lambda m, x: x.sum() * pa.scalar("a"), r"coefficient multiplying an expression over scalar: expected numeric"),
    (lambda m, x: m.subject_to(x.sum() <= None, name="n"), r"constraint 'n': upper side: expected a number or an "
                                                            r"array, got None"),
], ids=["arrow-string-rhs", "arrow-string-factor", "none-rhs"])
def test_scalar_sides_and_factors_must_be_numbers(make, match):
    """(regression: a one-character arrow string scalar was read as its byte, 'a' -> 97)"""
    m = dm.Model("m")
    x = m.variable("x", over=m.entities("s", 3))
    with pytest.raises(dm.ModelError, match=match):
        make(m, x)


# ----------------------------------------------------------------------------------------- issue 19: raw exceptions
@pytest.mark.parametrize("make, pattern", [
    (lambda m, x, e: x / 0, r"divisor of an expression over 'e': division by zero"),
    (lambda m, x, e: x.sum() / 0.0, r"divisor of an expression over scalar: division by zero"),
    (lambda m, x, e: x / np.array([1.0, 2.0, 0.0, 1.0]), r"divisor of an expression over 'e': division by zero at "
                                                         r"edge \('u1', 'a'\)"),
    (lambda m, x, e: x / 1e-320, r"divisor of an expression over 'e': the reciprocal overflows float64"),
    (lambda m, x, e: m.subject_to(x.sum() <= np.array([]), name="c"),
     r"constraint 'c': upper side: a global \(scalar\) constraint takes a scalar, got 0 values"),
    (lambda m, x, e: m.subject_to(x.sum().between(np.zeros(2), 1.0), name="c"),
     r"constraint 'c': lower side: a global \(scalar\) constraint takes a scalar, got 2 values"),
], ids=["zero", "scalar-zero", "zero-entry", "tiny", "empty-rhs", "two-sided-rhs"])
def test_division_by_zero_and_non_scalar_sides_of_a_global_row(make, pattern):
    m, _, _, e, x = build()
    with pytest.raises(dm.ModelError, match=pattern):
        make(m, x, e)
    assert not m.constraints


@pytest.mark.parametrize("columns", [5, 2.5, object()])
def test_read_table_columns_of_the_wrong_type(columns):
    with pytest.raises(dm.ModelError, match=r"columns: expected a column name or a list of names, got"):
        dm.read_table(pa.table({"a": [1]}), columns=columns)


# ----------------------------------------------------------------------------------------- issue 19: overflow
OVERFLOW = [
    ("scaled-coefficient", lambda m, users, items, x: 1e308 * (10.0 * x),
     r"coefficient multiplying an expression over 'e': the coefficient of variable 'x' overflows float64 \(inf\)"),
    ("scaled-array", lambda m, users, items, x: np.array([1.0, 1e200, 1.0, 1.0]) * (np.full(4, 1e200) * x),
     r"the coefficient of variable 'x' at edge \('u0', 'b'\) overflows float64"),
    ("summed-rows", lambda m, users, items, x: 1e300 * (np.array([1.0, 1e10, 1.0, 1.0]) * x).sum(by=users),
     r"the coefficient of variable 'x' at edge \('u0', 'b'\) overflows float64"),
    ("constant-sum", lambda m, users, items, x: x.sum() + 1e308 + 1e308,
     r"constant of a sum of expressions: the sum overflows float64 \(inf\)"),
    ("constant-scaled", lambda m, users, items, x: (x.sum(by=items) + np.array([1.0, 1e300])) * 1e10,
     r"the constant at item='b' overflows float64"),
    ("constant-summed", lambda m, users, items, x: (x + np.full(4, 1e308)).sum(),
     r"sum of an expression over 'e': the constant overflows float64"),
    ("constant-by", lambda m, users, items, x: (x + np.full(4, 1e308)).sum(by=items),
     r"sum of an expression over 'e' by 'item': the constant at item='a' overflows float64"),
    ("side-minus-constant", lambda m, users, items, x: m.subject_to(x.sum() - 1e308 <= 1e308, name="c"),
     r"constraint 'c': upper side minus the expression's constant: the value overflows float64 \(inf\)"),
    ("bound-divided", lambda m, users, items, x: x / np.array([1.0, 1.0, 1e-310, 1.0]),
     r"divisor of an expression over 'e': the reciprocal at edge \('u1', 'a'\) overflows float64"),
]


@pytest.mark.parametrize("make, pattern", [case[1:] for case in OVERFLOW], ids=[case[0] for case in OVERFLOW])
def test_products_and_sums_that_overflow_are_named(make, pattern):
    m, users, items, _, x = build()
    with pytest.raises(dm.ModelError, match=pattern):
        make(m, users, items, x)
    assert not m.constraints and m.objective is None


@pytest.mark.parametrize("build_objective, pattern", [
    (lambda m, x: m.minimize({"a": 1e308 * x.sum(), "b": 1e308 * x.sum()}),
     r"objective: the weighted cost of variable 'x' at edge \('u0', 'a'\) overflows float64 \(inf\)"),
    (lambda m, x: m.minimize({"a": 1e308 * x.sum()}, weights={"a": 10.0}), r"weighted cost of variable 'x'"),
    (lambda m, x: m.minimize({"a": x.sum() + 1e308, "b": x.sum() + 1e308}),
     r"objective: the weighted sum of its constants overflows float64"),
], ids=["two-parts", "weight", "offset"])
def test_objective_sums_that_overflow_are_named_at_compile(build_objective, pattern):
    m, _, _, _, x = build()
    build_objective(m, x)
    with pytest.raises(dm.ModelError, match=pattern):
        m.solve("highs")


def test_merged_coefficients_that_overflow_are_named_at_compile():
    m, users, _, _, x = build()
    m.minimize(x.sum())
    m.subject_to((1e308 * x + 1e308 * x).sum(by=users) <= 1, name="twice")
    with pytest.raises(dm.ModelError, match=r"constraint 'twice\[user='u0'\]': the summed coefficient of variable "
                                            r"'x' at edge \('u0', 'a'\) overflows float64"):
        m.solve("highs")


# ----------------------------------------------------------------------------------------- issue 18/19: labels
@pytest.mark.parametrize("make, pattern", [
    (lambda m, users, items, x: m.subject_to(x.sum(by=items) <= pd.Series([1.0, 2.0], index=["b", "c"]), name="c"),
     r"constraint 'c': upper side: a pandas Series is aligned by its index labels, and they do not match entity "
     r"set 'item': 1 of its labels missing from the index \('a'\); 1 index labels not in it \('c'\)"),
    (lambda m, users, items, x: pd.Series(np.ones(4), index=[3, 4, 5, 6]) * x,
     r"over 'e': a pandas Series over edge set 'e' is aligned by a 2-level \(src, dst\) MultiIndex"),
    (lambda m, users, items, x: m.edges("f", m.entities("n", np.array([2**53, 2**53 + 1])), items,
                                        src=np.array([2.0**53]), dst=["a"]),
     r"edge set 'f': src: label 9007199254740992.0 is a float of magnitude 2\^53 or more"),
], ids=["series-labels", "edge-series-index", "float-id-2^53"])
def test_labels_that_do_not_match_are_refused(make, pattern):
    m, users, items, _, x = build()
    with pytest.raises(dm.ModelError, match=pattern):
        make(m, users, items, x)
    assert not m.constraints and "f" not in m.sets
