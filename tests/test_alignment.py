"""pandas data is aligned by label, never silently by position; numeric labels match exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dualip_model as dm

ITEMS = ["tv", "radio", "web"]
BUDGET = pd.Series([4.0, 2.0, 3.0], index=ITEMS)
VALUE = pd.Series([1.0, 3.0, 2.0], index=ITEMS)


def ad_model(budget, value=VALUE, upper=None):
    """max sum_i value_i x_i s.t. x_i <= budget_i, sum x <= 6, per item with labels in ITEMS order."""
    m = dm.Model("ads")
    items = m.entities("item", ITEMS)
    x = m.variable("x", over=items, upper=upper)
    m.maximize((value * x).sum())
    m.subject_to(x <= budget, name="budget")
    m.subject_to(x.sum() <= 6.0, name="total")
    return m


def test_issue_example_sorted_series_gives_the_same_model():
    """Issue 18: budget.sort_index() (radio, tv, web) used to build another model (12.5 instead of 10.5 there)."""
    plain = ad_model(BUDGET).solve("highs")
    for budget, value in [(BUDGET.sort_index(), VALUE), (BUDGET, VALUE.sort_index()),
                          (BUDGET.iloc[[2, 0, 1]], VALUE.iloc[[1, 2, 0]])]:
        shuffled = ad_model(budget, value)
        assert shuffled.compile().block_rhs.tolist() == ad_model(BUDGET).compile().block_rhs.tolist()
        res = shuffled.solve("highs")
        assert res.objective == pytest.approx(plain.objective) == pytest.approx(3.0 * 2 + 2.0 * 3 + 1.0 * 1)
    np.testing.assert_allclose(ad_model(BUDGET.sort_index()).constraints["budget"].upper, [4.0, 2.0, 3.0])


def test_series_aligned_in_bounds_constants_sides_and_ranges():
    m = dm.Model()
    items = m.entities("item", ITEMS)
    ordered = BUDGET.sort_index()
    x = m.variable("x", over=items, lower=-ordered, upper=ordered)
    np.testing.assert_array_equal(x.upper, [4.0, 2.0, 3.0])
    np.testing.assert_array_equal(x.lower, [-4.0, -2.0, -3.0])
    expr = x - ordered  # constant aligned too
    np.testing.assert_array_equal(expr.constant, [-4.0, -2.0, -3.0])
    con = m.subject_to(expr.between(-ordered, ordered), name="r")
    np.testing.assert_array_equal(con.lower, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(con.upper, [8.0, 4.0, 6.0])
    np.testing.assert_array_equal((x / ordered).terms[0].coef, [0.25, 0.5, 1 / 3])


def test_default_range_index_stays_positional():
    values = pd.Series([4.0, 2.0, 3.0])  # RangeIndex: in the set's order
    m = ad_model(values)
    np.testing.assert_array_equal(m.constraints["budget"].upper, [4.0, 2.0, 3.0])
    # a DataFrame column read from a file has a RangeIndex too
    frame = pd.DataFrame({"item": ITEMS, "budget": [4.0, 2.0, 3.0]})
    np.testing.assert_array_equal(ad_model(frame["budget"]).constraints["budget"].upper, [4.0, 2.0, 3.0])
    # and a column of a frame indexed by item is aligned
    shuffled = frame.set_index("item").sort_index()["budget"]
    np.testing.assert_array_equal(ad_model(shuffled).constraints["budget"].upper, [4.0, 2.0, 3.0])


def test_integer_labels_aligned_by_label():
    m = dm.Model()
    users = m.entities("user", [10, 20, 30])
    x = m.variable("x", over=users, upper=pd.Series([3.0, 1.0, 2.0], index=[30, 10, 20]))
    np.testing.assert_array_equal(x.upper, [1.0, 2.0, 3.0])
    # labels 0..n-1 in order: a RangeIndex means the same by position and by label
    m2 = dm.Model()
    y = m2.variable("y", over=m2.entities("user", 3), upper=pd.Series([1.0, 2.0, 3.0], index=[2, 0, 1]))
    np.testing.assert_array_equal(y.upper, [2.0, 3.0, 1.0])


def test_range_index_is_ambiguous_on_shuffled_integer_labels():
    m = dm.Model()
    users = m.entities("user", [2, 0, 1])
    with pytest.raises(dm.ModelError, match=r"variable 'x': upper bound: the Series has a default RangeIndex and "
                                            r"entity set 'user' has the labels 0...2 in another order"):
        m.variable("x", over=users, upper=pd.Series([1.0, 2.0, 3.0]))
    x = m.variable("x", over=users, upper=pd.Series([1.0, 2.0, 3.0], index=pd.Index([0, 1, 2], dtype="int64")))
    np.testing.assert_array_equal(x.upper, [3.0, 1.0, 2.0])


@pytest.mark.parametrize("budget, shown", [
    (pd.Series([4.0, 2.0], index=["tv", "radio"]), r"1 of its labels missing from the index \('web'\)"),
    (pd.Series([4.0, 2.0, 3.0, 1.0], index=ITEMS + ["print"]), r"1 index labels not in it \('print'\)"),
    (pd.Series([4.0, 2.0, 3.0], index=["tv", "radio", "mail"]),
     r"1 of its labels missing from the index \('web'\); 1 index labels not in it \('mail'\)"),
    (pd.Series(np.ones(3), index=[5, 6, 7]), r"3 of its labels missing from the index \('tv', 'radio', 'web'\); "
                                             r"3 index labels not in it \(5, 6, 7\)"),
], ids=["missing", "extra", "both", "filtered-frame"])
def test_mismatched_labels_name_the_constraint_and_labels(budget, shown):
    m = dm.Model("ads")
    x = m.variable("x", over=m.entities("item", ITEMS))
    with pytest.raises(dm.ModelError, match=rf"constraint 'budget': upper side: a pandas Series is aligned by its "
                                            rf"index labels, and they do not match entity set 'item': {shown}; give "
                                            rf"it a default RangeIndex \(reset_index\(drop=True\)\) to use positions"):
        m.subject_to(x <= budget, name="budget")
    assert not m.constraints


def test_mismatch_lists_only_the_first_few_labels():
    m = dm.Model()
    x = m.variable("x", over=m.entities("user", [f"u{i}" for i in range(10)]))
    with pytest.raises(dm.ModelError, match=r"10 of its labels missing from the index \('u0', 'u1', 'u2', \.\.\.\)"):
        x * pd.Series(np.ones(10), index=[f"v{i}" for i in range(10)])


def test_duplicate_index_label_is_refused():
    m = dm.Model()
    x = m.variable("x", over=m.entities("item", ITEMS))
    with pytest.raises(dm.ModelError, match=r"coefficient multiplying an expression over 'item': label 'tv' appears "
                                            r"more than once in the pandas index"):
        pd.Series(np.ones(3), index=["tv", "tv", "web"]) * x


def edge_model():
    m = dm.Model()
    users = m.entities("user", ["u0", "u1"])
    items = m.entities("item", ["a", "b"])
    e = m.edges("e", users, items, src=["u0", "u0", "u1"], dst=["a", "b", "b"])
    return m, users, items, e, m.variable("x", over=e)


def test_per_edge_series_aligned_by_its_pair_index():
    m, users, items, e, x = edge_model()
    frame = pd.DataFrame({"user": ["u1", "u0", "u0"], "item": ["b", "b", "a"], "value": [3.0, 2.0, 1.0]})
    by_pair = frame.set_index(["user", "item"])["value"]
    np.testing.assert_array_equal((by_pair * x).terms[0].coef, [1.0, 2.0, 3.0])
    # levels named (dst, src) are taken in that order
    swapped = frame.set_index(["item", "user"])["value"]
    np.testing.assert_array_equal((swapped * x).terms[0].coef, [1.0, 2.0, 3.0])
    # the positional column of the frame is kept as it is
    np.testing.assert_array_equal((frame["value"] * x).terms[0].coef, [3.0, 2.0, 1.0])
    # an aligned upper bound and a solve agree with the numpy model
    m.maximize((by_pair * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    assert m.solve("highs").objective == pytest.approx(2.0 + 3.0)


@pytest.mark.parametrize("index, shown", [
    (pd.MultiIndex.from_tuples([("u0", "a"), ("u0", "b")]),
     r"1 of its labels missing from the index \(\('u1', 'b'\)\)"),
    (pd.MultiIndex.from_tuples([("u0", "a"), ("u0", "b"), ("u1", "b"), ("u1", "a")]),
     r"1 index labels not in it \(\('u1', 'a'\)\)"),
    (pd.MultiIndex.from_tuples([("u0", "a"), ("u0", "b"), ("u9", "b")]),
     r"1 of its labels missing from the index \(\('u1', 'b'\)\); 1 index labels not in it \(\('u9', 'b'\)\)"),
], ids=["missing-edge", "not-an-edge", "unknown-user"])
def test_per_edge_series_with_other_pairs_is_refused(index, shown):
    m, users, items, e, x = edge_model()
    with pytest.raises(dm.ModelError, match=rf"over 'e': a pandas Series is aligned by its index labels, and they "
                                            rf"do not match edge set 'e': {shown}"):
        pd.Series(np.ones(len(index)), index=index) * x


def test_per_edge_series_needs_a_pair_index():
    m, users, items, e, x = edge_model()
    with pytest.raises(dm.ModelError, match=r"variable 'y': upper bound: a pandas Series over edge set 'e' is aligned "
                                            r"by a 2-level \(src, dst\) MultiIndex of labels of 'user' and 'item', got "
                                            r"a Index"):
        m.variable("y", over=e, upper=pd.Series([1.0, 2.0, 3.0], index=["p", "q", "r"]))


def test_arrow_data_is_positional():
    """Arrow arrays carry no labels: they are taken in the set's order."""
    m, users, items, e, x = edge_model()
    np.testing.assert_array_equal((pa.array([3.0, 2.0, 1.0]) * x).terms[0].coef, [3.0, 2.0, 1.0])


# ----------------------------------------------------------------------------------------- exact numeric labels
BIG = 2**53


def test_float_ids_from_2_to_53_are_refused_against_integer_labels():
    """Issue 19: float 2^53 was matched to the label 2^53 + 1 (a float cast decided)."""
    m = dm.Model()
    users = m.entities("user", np.array([BIG, BIG + 1], dtype=np.int64))
    items = m.entities("item", 1)
    with pytest.raises(dm.ModelError, match=r"edge set 'e': src: label 9007199254740992.0 is a float of magnitude "
                                            r"2\^53 or more and entity set 'user' has integer labels"):
        m.edges("e", users, items, src=np.array([float(BIG)]), dst=[0])
    with pytest.raises(dm.ModelError, match=r"float of magnitude 2\^53"):
        m.variable("x", over=users, upper=pd.Series([1.0, 2.0], index=np.array([BIG + 2.0, float(BIG)])))
    e = m.edges("e", users, items, src=np.array([BIG + 1, BIG], dtype=np.int64), dst=[0, 0])
    assert list(users.labels[e.src]) == [BIG + 1, BIG]


def test_integer_ids_from_2_to_53_are_refused_against_float_labels():
    m = dm.Model()
    users = m.entities("user", np.array([float(BIG), 1.0]))
    items = m.entities("item", 1)
    with pytest.raises(dm.ModelError, match=r"label 9007199254740993 is an integer of magnitude 2\^53 or more and "
                                            r"entity set 'user' has float labels"):
        m.edges("e", users, items, src=np.array([BIG + 1], dtype=np.int64), dst=[0])


def test_small_float_and_unsigned_ids_match_integer_labels_exactly():
    m = dm.Model()
    users = m.entities("user", np.array([5, 7, 2**62], dtype=np.int64))
    items = m.entities("item", np.array([0, 2**63 + 1], dtype=np.uint64))
    e = m.edges("e", users, items, src=np.array([7.0, 5.0]), dst=np.array([0, 0], dtype=np.int64))
    assert list(e.src) == [1, 0]
    e2 = m.edges("e2", users, items, src=np.array([2**62], dtype=np.uint64), dst=np.array([2**63 + 1], dtype=np.uint64))
    assert list(e2.src) == [2] and list(e2.dst) == [1]
    for bad in (np.array([5.5]), np.array([-1], dtype=np.int64)):
        with pytest.raises(dm.ModelError, match=r"is not in entity set"):
            m.edges("bad", users, items, src=np.array([5]), dst=bad)
