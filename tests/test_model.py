"""Model building and compilation, checked by hand on small models."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dualip_model as dm
from dualip_model import BlockKind


def test_tiny_standard_form_by_hand(tiny):
    m, h = tiny
    sf = m.compile()
    assert sf.n_cols == 5 and sf.n_rows == 2 and sf.n_blocks == 3
    np.testing.assert_array_equal(sf.c, -h["value"])  # maximize -> minimize -c
    np.testing.assert_array_equal(sf.A.toarray(), [[1, 0, 2, 1, 0], [0, 1, 0, 0, 1]])
    np.testing.assert_array_equal(sf.row_upper, [1, 1])
    assert (sf.row_lower == -np.inf).all()
    np.testing.assert_array_equal(sf.block_ptr, [0, 2, 3, 5])
    assert (sf.block_kind == BlockKind.SIMPLEX_LE).all()
    np.testing.assert_array_equal(sf.block_rhs, [1, 1, 1])
    assert sf.A_indices.dtype == np.int32 and sf.A_indptr.dtype == np.int32
    assert sf.layout.sense == -1 and sf.layout.column_order is None
    assert [s.name for s in sf.layout.constraints] == ["one", "budget"]
    with pytest.raises(ValueError):
        sf.c[0] = 1.0  # immutable


def test_unsorted_edges_are_permuted_into_blocks_and_mapped_back():
    m = dm.Model()
    users = m.entities("user", 3)
    items = m.entities("item", 2)
    src = np.array([2, 0, 1, 0, 2])
    dst = np.array([0, 1, 0, 0, 1])
    e = m.edges("e", users, items, src=src, dst=dst)
    x = m.variable("x", over=e)
    value = np.array([4.0, 2.0, 3.0, 1.0, 5.0])
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    m.subject_to(x.sum(by=items) <= np.array([2.0, 1.0]), name="cap")
    sf = m.compile()
    order = sf.layout.column_order
    assert order is not None
    np.testing.assert_array_equal(src[order], np.sort(src))  # columns grouped by block
    np.testing.assert_array_equal(sf.c, -value[order])
    res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    # user 2 takes item 1 (5), user 1 item 0 (3), user 0 item 0 (1): cap on item 0 is 2
    assert res.objective == pytest.approx(9.0)
    np.testing.assert_allclose(res.primal("x", labeled=False), [0, 0, 1, 1, 1], atol=1e-9)
    assert res.x[(2, 1)] == pytest.approx(1.0)


def test_equality_and_boxcut_blocks_and_fallback_to_coupling_rows():
    m = dm.Model()
    s = m.entities("s", 4)
    t = m.entities("t", 3)
    e = m.edges("e", s, t, src=[0, 0, 1, 1, 2, 2, 3, 3], dst=[0, 1, 1, 2, 2, 0, 0, 2])
    x = m.variable("x", over=e, upper=0.7)
    y = m.variable("y", over=s, lower=-1, upper=1)
    m.minimize((np.arange(8.0) * x).sum() + y.sum())
    m.subject_to(x.sum(by=s) == 1, name="assign")  # unit coefficients, == 1, upper 0.7 binds: BOXCUT_EQ
    m.subject_to(x.sum(by=t) <= 2, name="cap")  # overlaps 'assign': becomes coupling rows
    m.subject_to((2 * y).sum() <= 1, name="scaled")  # coefficient 2: coupling row
    sf = m.compile()
    kinds = [BlockKind(k) for k in sf.block_kind]
    assert kinds == [BlockKind.BOXCUT_EQ] * 4 + [BlockKind.BOX]  # y: one BOX block
    assert [s.kind for s in sf.layout.constraints] == ["blocks", "rows", "rows"]
    assert sf.n_rows == 4
    res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    # each s puts 0.7 on its cheaper edge and 0.3 on the other; y = -1
    assert res.objective == pytest.approx(0.7 * (0 + 2 + 4 + 6) + 0.3 * (1 + 3 + 5 + 7) - 4)


def test_block_flag_forces_or_forbids():
    m = dm.Model()
    s = m.entities("s", 2)
    x = m.variable("x", over=s)
    m.minimize(x.sum())
    m.subject_to(x.sum() <= 1, name="g", block=False)
    assert m.compile().n_rows == 1
    m2 = dm.Model()
    s2 = m2.entities("s", 2)
    x2 = m2.variable("x", over=s2)
    m2.minimize(x2.sum())
    with pytest.raises(dm.ModelError, match="cannot be a block polytope: its coefficients"):
        m2.subject_to((3 * x2).sum() <= 1, name="g", block=True)
        m2.compile()


def test_global_unit_sum_becomes_one_simplex_block():
    m = dm.Model()
    s = m.entities("s", 3)
    x = m.variable("x", over=s)
    m.maximize((np.array([1.0, 3.0, 2.0]) * x).sum())
    m.subject_to(x.sum() <= 2, name="total")
    sf = m.compile()
    assert sf.n_rows == 0 and sf.n_blocks == 1 and sf.block_kind[0] == BlockKind.SIMPLEX_LE
    res = m.solve("highs")
    assert res.objective == pytest.approx(6.0)
    assert res.dual("total") == pytest.approx(3.0)


def test_ranges_constants_and_named_objectives():
    m = dm.Model()
    s = m.entities("s", ["p", "q"])
    x = m.variable("x", over=s, upper=10)
    m.maximize({"a": (np.array([1.0, 0.0]) * x).sum() + 5.0, "b": x.sum()}, weights={"b": 2.0})
    m.subject_to((x + 1).between(2, np.array([4.0, 3.0])), name="rng")  # 1 <= x_i <= 3 / 2
    res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL
    np.testing.assert_allclose(res.x.to_numpy(), [3.0, 2.0], atol=1e-9)
    assert res.objectives == pytest.approx({"a": 8.0, "b": 5.0})
    assert res.objective == pytest.approx(8.0 + 2 * 5.0)


def test_repeated_variable_terms_are_merged():
    m = dm.Model()
    s = m.entities("s", 2)
    x = m.variable("x", over=s)
    m.maximize(x.sum())
    m.subject_to((x + 2 * x).sum() <= 3, name="c")  # 3 x0 + 3 x1 <= 3
    sf = m.compile()
    np.testing.assert_array_equal(sf.A.toarray(), [[3.0, 3.0]])
    assert m.solve("highs").objective == pytest.approx(1.0)


def test_pandas_and_arrow_inputs():
    df = pd.DataFrame({"u": ["a", "a", "b"], "i": [10, 20, 10], "v": [1.0, 2.0, 3.0]})
    m = dm.Model()
    users = m.entities("user", pa.array(["a", "b"]))
    items = m.entities("item", pd.Series([10, 20]))
    e = m.edges("e", users, items, src=pa.chunked_array([pa.array(["a", "a"]), pa.array(["b"])]), dst=df.i)
    x = m.variable("x", over=e)
    m.maximize((df.v * x).sum())  # pandas Series on the left
    m.subject_to(x.sum(by=users) <= 1, name="one")
    m.subject_to((pa.array([1.0, 1.0, 1.0]) * x).sum(by=items) <= 1, name="cap")
    res = m.solve("highs")
    assert res.objective == pytest.approx(5.0)
    assert res.x[("a", 20)] == pytest.approx(1.0)


def test_matmul_and_file_model_round_trip(tmp_path):
    m = dm.read_model("tests/data/netlib/afiro.mps")
    assert [s.kind for s in m.compile().layout.constraints] == ["rows"]
    assert set(BlockKind(k) for k in m.compile().block_kind) == {BlockKind.BOX}
    path = tmp_path / "afiro_out.mps"
    dm.write_model(m, path)
    again = dm.read_model(path)
    assert again.solve("highs").objective == pytest.approx(m.solve("highs").objective, rel=1e-9)


def test_expression_value_and_sum_by_destination(tiny):
    m, h = tiny
    res = m.solve("highs")
    spend = res.value((h["cost"] * h["x"]).sum(by=h["items"]))
    assert spend.shape == (2,) and (spend <= 1 + 1e-9).all()
    assert res.value((h["value"] * h["x"]).sum()) == pytest.approx(res.objective)


def test_bytes_per_nonzero_of_compiled_matching():
    from dualip_model.synthetic import matching_model, synthetic_matching

    data = synthetic_matching(2000, 200, 0.05, seed=3)
    sf = matching_model(data).compile()
    assert sf.layout.column_order is None  # generator sorts edges by user: no permutation
    assert sf.nbytes / sf.nnz <= 32  # int32 indptr + int32 indices + f64 values + f64 cost (+ blocks)


def test_standard_form_of_another_model_is_refused_before_solving(tiny):
    m, _ = tiny
    other = dm.Model("other")
    other.variable("y", over=other.entities("s", 3))
    other.minimize(other.variables["y"].sum())
    with pytest.raises(dm.ModelError, match="does not match model"):
        m.solve("highs", standard_form=other.compile())


# ----------------------------------------------------------------------------------------- data is copied on entry
def test_writing_user_arrays_after_building_cannot_change_the_model():
    """Issue 19: the model kept references; NaN written into a cost after building was solved.

    numpy arrays the model holds are frozen (a write raises), views of larger arrays are copied, pandas Series
    are protected by copy-on-write, edge endpoints become codes: after every write the compiled model is the same.
    """
    src, dst = np.array([0, 0, 1]), np.array([0, 1, 1])
    value, cost = np.array([3.0, 1.0, 2.0]), pd.Series([1.0, 1.0, 1.0])
    storage = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    upper, lower = storage[:, 0], storage[:, 1]  # views of a larger writable array
    rhs, shift = pd.Series([1.0, 1.0]), np.array([0.0, 0.0])

    m = dm.Model()
    users, items = m.entities("user", 2), m.entities("item", 2)
    x = m.variable("x", over=m.edges("e", users, items, src=src, dst=dst), lower=lower, upper=upper)
    m.maximize((value * x).sum())
    m.subject_to((cost * x).sum(by=items) + shift <= rhs, name="budget")
    m.subject_to(x.sum(by=users) <= 1, name="one")
    side = np.array([2.0, 2.0])
    m.subject_to(x.sum(by=users) <= side, name="loose")
    assert side.flags.writeable  # the model keeps side - constant, a new array, so the caller's stays writable
    before = m.compile()
    side[:] = -1.0
    for frozen in (value, shift):
        with pytest.raises(ValueError, match="read-only"):
            frozen[0] = 7
    src[:], dst[:] = src[::-1], dst[::-1]  # the model holds its own codes of the labels
    storage[:] = np.nan
    cost.iloc[0] = np.inf
    rhs *= -1.0
    after = m.compile()
    for name in ("c", "col_lower", "col_upper", "A_data", "A_indices", "row_upper", "block_rhs", "block_ptr"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name), err_msg=name)
    assert m.solve("highs").objective == pytest.approx(5.0)


def test_arrow_data_is_kept_without_a_copy_and_model_arrays_are_read_only():
    value = pa.array([3.0, 1.0, 2.0])
    m = dm.Model()
    x = m.variable("x", over=m.entities("s", 3))
    term = (value * x).terms[0]
    assert np.shares_memory(term.coef, np.frombuffer(value.buffers()[1], dtype=np.float64))
    weights = np.arange(6.0)[::2]
    coef = (weights * x).terms[0].coef
    assert not np.shares_memory(coef, weights) and not coef.flags.writeable
    with pytest.raises(ValueError):
        coef[0] = 5.0


# ----------------------------------------------------------------------------------------- None bounds, objectives
def test_none_bounds_mean_no_bound():
    m = dm.Model()
    s = m.entities("s", 2)
    x = m.variable("x", over=s, lower=None, upper=None)
    y = m.variable("y", over=s, upper=None)
    assert x.lower == -np.inf and x.upper == np.inf and y.lower == 0.0 and y.upper == np.inf
    m.minimize(x.sum() + y.sum())
    m.subject_to(x >= -1, name="floor")
    assert m.solve("highs").objective == pytest.approx(-2.0)


def test_constant_objective_is_a_feasibility_problem_and_a_missing_one_warns():
    m = dm.Model("feas")
    x = m.variable("x", over=m.entities("s", 2))
    m.subject_to(x.sum() >= 1, name="c")
    with pytest.warns(dm.NoObjectiveWarning, match=r"model 'feas' has no objective: solving it as a "
                                                         r"feasibility problem \(minimize 0\); call m.minimize\(0\)"):
        res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL and res.objective == 0.0
    m.minimize(0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = m.solve("highs")
    assert res.status == dm.Status.OPTIMAL and res.objective == 0.0 and res.objectives == {"objective": 0.0}
    m.maximize(2.5)
    assert m.compile().offset == -2.5 and m.solve("highs").objective == 2.5


# ----------------------------------------------------------------------------------------- block rhs rounding
@pytest.mark.parametrize("sense", ["<=", "=="])
def test_constant_moved_to_a_block_rhs_is_compared_with_a_tolerance(sense):
    """Issue 19: `x + 0.1 <= 0.41` with x >= 0.31 was 'block polytope is empty ... [0.31, inf]' (0.41 - 0.1 < 0.31)."""
    m = dm.Model()
    s = m.entities("s", 2)
    x = m.variable("x", over=s, lower=0.31, upper=0.31 if sense == "==" else 1.0)
    m.minimize(x.sum())
    lhs = x.sum(by=s) + 0.1
    m.subject_to(lhs <= 0.41 if sense == "<=" else lhs == 0.41, name="blk")
    sf = m.compile()
    assert sf.block_rhs.tolist() == [0.31, 0.31]  # moved onto the bound sum, so every backend sees a point
    assert sf.block_kind.tolist() == [BlockKind.BOXCUT_LE if sense == "<=" else BlockKind.BOXCUT_EQ] * 2
    assert m.solve("highs").objective == pytest.approx(0.62)


def test_empty_block_message_prints_both_bound_sums():
    m = dm.Model()
    s = m.entities("s", 1)
    x = m.variable("x", over=m.edges("e", s, m.entities("t", 2), src=[0, 0], dst=[0, 1]), lower=0.5, upper=2.0)
    m.minimize(x.sum())
    m.subject_to(x.sum(by=s) <= 0.9, name="blk")
    with pytest.raises(dm.ModelError, match=r"constraint 'blk\[s=0\]': block polytope is empty \(rhs 0.9, column "
                                            r"bounds sum to \[1.0, 4.0\]; the block needs sum <= 0.9"):
        m.compile()


def test_between_takes_none_for_a_side_without_bound():
    """None means no bound, as for variable bounds (and in linopy and cvxpy)."""
    m = dm.Model("range")
    x = m.variable("x", over=m.entities("s", 3), upper=1.0)
    m.maximize(x.sum())
    w = np.array([1.0, 2.0, 3.0])
    m.subject_to((w * x).sum().between(None, 2.0), name="at_most")
    m.subject_to((w * x).sum().between(0.5, None), name="at_least")
    res = m.solve("highs")
    assert res.objective == pytest.approx(1.5)  # x = (1, 0.5, 0): the weighted row caps the sum at 2
    sf = m.compile()
    assert sorted(zip(sf.row_lower.tolist(), sf.row_upper.tolist())) == [(-np.inf, 2.0), (0.5, np.inf)]
