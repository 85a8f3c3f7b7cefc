"""Tables in and out: arrow/pandas inputs, read_table on Parquet files and datasets, labeled result tables."""

import importlib.util
import os
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import dualip_model as dm
from dualip_model._arrays import as_float, to_numpy
from dualip_model.standard_form import StandardForm
from dualip_model.tables import read_table

USERS = ["u0", "u1", "u2"]
ITEMS = [10, 20]
SRC = ["u0", "u0", "u1", "u2", "u2"]
DST = [10, 20, 10, 10, 20]
VALUE = [1.0, 2.0, 3.0, 4.0, 5.0]
COST = [1.0, 1.0, 2.0, 1.0, 1.0]
BUDGET = [1.0, 1.0]


def build(users, items, src, dst, value, cost, budget, upper=1.0):
    m = dm.Model("tiny")
    u = m.entities("user", users)
    i = m.entities("item", items)
    e = m.edges("e", u, i, src=src, dst=dst)
    x = m.variable("x", over=e, upper=upper)
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=u) <= 1, name="one")
    m.subject_to((cost * x).sum(by=i) <= budget, name="budget")
    return m


def numpy_model():
    return build(np.array(USERS), np.array(ITEMS), np.array(SRC), np.array(DST), np.array(VALUE),
                 np.array(COST), np.array(BUDGET), upper=np.ones(5))


def same_form(a: StandardForm, b: StandardForm) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(StandardForm)
               if isinstance(getattr(a, f.name), np.ndarray))


# ----------------------------------------------------------------------------------------- inputs
def test_arrow_arrays_chunked_arrays_and_table_columns_everywhere():
    chunks = lambda values: pa.chunked_array([pa.array(values[:1]), pa.array(values[1:])])  # noqa: E731
    table = pa.table({"src": SRC, "dst": DST, "value": VALUE, "cost": COST})
    for m in (
        build(pa.array(USERS), pa.array(ITEMS), pa.array(SRC), pa.array(DST), pa.array(VALUE), pa.array(COST),
              pa.array(BUDGET), upper=pa.array(np.ones(5))),
        build(chunks(USERS), chunks(ITEMS), chunks(SRC), chunks(DST), chunks(VALUE), chunks(COST), chunks(BUDGET),
              upper=chunks([1.0] * 5)),
        build(pa.table({"u": USERS})["u"], pa.table({"i": ITEMS})["i"], table["src"], table["dst"],
              table["value"], table["cost"], pa.table({"b": BUDGET})["b"]),
    ):
        assert same_form(m.compile(), numpy_model().compile())
        assert m.solve("highs").objective == pytest.approx(6.5)


def test_data_enters_the_model_without_a_copy_where_it_cannot_change():
    """Arrow buffers are immutable, pandas copies on write and a numpy array owning its memory is frozen: the model
    keeps views; only a view of writable memory is copied."""
    arr = pa.array(np.arange(6.0))
    data = np.frombuffer(arr.buffers()[1], dtype=np.float64)
    assert np.shares_memory(as_float(arr, 6, "v"), data)
    assert np.shares_memory(to_numpy(pa.chunked_array([arr]), "v"), data)
    series = pd.Series(np.arange(6.0))
    kept = as_float(series, 6, "v")
    assert np.shares_memory(kept, series.to_numpy()) and not kept.flags.writeable
    series.iloc[0] = 99.0  # pandas copies the caller's side: the model's view keeps its data
    series *= 2.0
    assert kept.tolist() == list(np.arange(6.0)) and series.iloc[0] == 198.0
    numpy_data = np.arange(6.0)
    assert as_float(numpy_data, 6, "v") is numpy_data and not numpy_data.flags.writeable
    larger = np.arange(12.0)
    copied = as_float(larger[::2], 6, "v")
    assert not np.shares_memory(copied, larger) and not copied.flags.writeable and larger.flags.writeable
    multi = as_float(pa.chunked_array([arr[:2], arr[2:]]), 6, "v")  # a fresh concatenation: frozen, not copied
    assert not multi.flags.writeable and np.shares_memory(as_float(multi, 6, "v"), multi)


@pytest.mark.parametrize("dictionary", [False, True])
@pytest.mark.parametrize("kind", ["string", "large_string", "string_view", "pandas"])
def test_string_labels_looked_up_in_arrow(kind, dictionary, monkeypatch):
    """(regression: string_view endpoints, listed as supported, raised ArrowNotImplementedError from index_in)"""
    calls = []
    lookup = dm.EntitySet._arrow_codes
    monkeypatch.setattr(dm.EntitySet, "_arrow_codes", lambda self, *a: calls.append(self.name) or lookup(self, *a))
    types = {"large_string": pa.large_string(), "string_view": pa.string_view()}
    src = pa.array(SRC, type=types.get(kind, pa.string()))
    if dictionary:  # (arrow cannot dictionary_encode string_view: built from its parts)
        codes, uniques = pd.factorize(np.array(SRC))
        src = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(uniques, src.type))
    if kind == "pandas":
        src = pd.Series(SRC, dtype=pd.StringDtype("pyarrow")) if not dictionary else pd.Series(
            SRC, dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string())))
    m = build(USERS, ITEMS, src, DST, VALUE, COST, BUDGET)
    assert calls == ["user"]  # integer item labels take the numpy path
    assert same_form(m.compile(), numpy_model().compile())


def test_unknown_arrow_string_label_is_named():
    with pytest.raises(dm.ModelError, match=r"edge set 'e': src: label 'zz' is not in entity set 'user'"):
        build(USERS, ITEMS, pa.array(["u0", "u0", "u1", "zz", "u2"]), DST, VALUE, COST, BUDGET)
    with pytest.raises(dm.ModelError, match=r"edge set 'e': src has 5 entries but dst has 4"):
        build(USERS, ITEMS, pa.array(SRC), pa.array(DST[:4]), VALUE, COST, BUDGET)


@pytest.mark.parametrize("where, values, message", [
    ("src", pa.array(["u0", None, "u1", "u2", "u2"]), r"edge set 'e': src: label at position 1 is missing \(null\)"),
    ("dst", pa.chunked_array([[10, 20], [None, 10, 20]]), r"edge set 'e': dst: label at position 2 is missing"),
    ("value", pa.array([1.0, 2.0, None, 4.0, 5.0]),
     r"coefficient multiplying an expression over 'e': value at edge \('u1', 10\) is missing \(null\)"),
    ("cost", pd.Series([1, 1, 2, None, 1], dtype="Int64"), r"value at edge \('u2', 10\) is missing \(null\)"),
    ("budget", pa.array([1.0, None]), r"constraint 'budget': upper side: value at 'budget\[item=20\]' is missing"),
    ("upper", pa.array([1.0, 1.0, 1.0, 1.0, None]),
     r"variable 'x': upper bound: value at edge \('u2', 20\) is missing"),
    ("users", pa.array(["u0", None, "u2"]), r"labels of entity set 'user': label at position 1 is missing \(null\)"),
], ids=["src", "dst-chunked", "coefficient", "pandas-Int64", "rhs", "bound", "labels"])
def test_nulls_are_refused_by_name(where, values, message):
    args = dict(users=USERS, items=ITEMS, src=SRC, dst=DST, value=np.array(VALUE), cost=np.array(COST),
                budget=np.array(BUDGET), upper=1.0)
    args[where] = values
    with pytest.raises(dm.ModelError, match=message):
        build(**args)


def test_non_numeric_arrow_data_is_refused_and_decimals_are_numbers():
    with pytest.raises(dm.ModelError, match=r"over 'e': expected numeric data, got dtype string \(arrow\)"):
        build(USERS, ITEMS, SRC, DST, pa.array(["1"] * 5), COST, BUDGET)
    with pytest.raises(dm.ModelError, match=r"over 'e': expected numeric data, got dtype timestamp"):
        build(USERS, ITEMS, SRC, DST, pa.array(np.arange(5).astype("datetime64[s]")), COST, BUDGET)
    import decimal
    prices = pa.array([decimal.Decimal(v) for v in ("1.5", "2", "3", "4", "5")], type=pa.decimal128(5, 2))
    m = build(USERS, ITEMS, SRC, DST, prices, COST, BUDGET)
    np.testing.assert_array_equal(np.sort(-m.compile().c), [1.5, 2, 3, 4, 5])


def test_arrow_scalars_are_numbers():
    m = dm.Model()
    s = m.entities("s", 3)
    x = m.variable("x", over=s, upper=1)
    m.maximize((pa.scalar(2.0) * x).sum())
    m.subject_to(x.sum() <= pc.sum(pa.array([0.5, 1.0])), name="total")
    assert m.solve("highs").objective == pytest.approx(3.0)
    with pytest.raises(dm.ModelError, match=r"constraint 'cap': upper side: value is missing \(null\)"):
        m.subject_to(x <= pa.scalar(None, pa.float64()), name="cap")
    with pytest.raises(dm.ModelError, match=r"over 's': expected numeric data, got dtype string \(arrow\)"):
        x * pa.scalar("ab")


def test_whole_tables_are_refused_naming_their_columns():
    table = pa.table({"src": SRC, "dst": DST})
    with pytest.raises(dm.ModelError, match=r"edge set 'e': src: expected a 1-d array, got a pyarrow Table "
                                            r"with columns \['src', 'dst'\]; pass one column"):
        build(USERS, ITEMS, table, DST, VALUE, COST, BUDGET)
    with pytest.raises(dm.ModelError, match=r"over 'e': expected a 1-d array, got a DataFrame"):
        build(USERS, ITEMS, SRC, DST, table.to_pandas(), COST, BUDGET)


# ----------------------------------------------------------------------------------------- read_table
@pytest.fixture
def edges_file(tmp_path):
    path = tmp_path / "edges.parquet"
    pq.write_table(pa.table({"user": SRC, "item": DST, "value": VALUE, "cost": COST}), path)
    return path


def test_read_table_from_file_selects_and_orders_columns(edges_file):
    table = read_table(edges_file, columns=["cost", "user"])
    assert table.column_names == ["cost", "user"] and table.num_rows == 5
    assert read_table(str(edges_file), columns="item").column_names == ["item"]
    assert read_table(edges_file).column_names == ["user", "item", "value", "cost"]


def test_read_table_missing_column_or_file(edges_file, tmp_path):
    with pytest.raises(dm.ModelError, match=r"Parquet file '.*edges\.parquet' has no column 'budget' "
                                            r"\(columns: user, item, value, cost\)"):
        read_table(edges_file, columns=["user", "budget"])
    with pytest.raises(dm.ModelError, match=r"Parquet file '.*nope\.parquet' does not exist"):
        read_table(tmp_path / "nope.parquet")
    with pytest.raises(dm.ModelError, match=r"columns: column 'user' is requested twice"):
        read_table(edges_file, columns=["user", "user"])
    with pytest.raises(dm.ModelError, match=r"columns: names must be non-empty strings, got 3"):
        read_table(edges_file, columns=["user", 3])
    with pytest.raises(dm.ModelError, match=r"read_table: expected a path, a pyarrow Table or a DataFrame, got list"):
        read_table([1, 2])


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "flipped_footer"])
def test_read_table_corrupt_file_names_it(edges_file, tmp_path, damage):
    data = edges_file.read_bytes()
    bad = {"truncated": data[: len(data) - 20], "empty": b"",
           "random": np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8).tobytes(),
           "flipped_footer": data[:-12] + bytes(b ^ 0xFF for b in data[-12:-8]) + data[-8:]}[damage]
    path = tmp_path / "bad.parquet"
    path.write_bytes(bad)
    with pytest.raises(dm.ModelError, match=rf"Parquet file '{re.escape(str(path))}' could not be read"):
        read_table(path)


def test_read_table_dataset_directory(tmp_path):
    folder = tmp_path / "edges"
    folder.mkdir()
    pq.write_table(pa.table({"user": SRC[:2], "value": VALUE[:2]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"user": SRC[2:], "value": VALUE[2:]}), folder / "part-1.parquet")
    table = read_table(folder, columns=["value"])
    assert sorted(table["value"].to_pylist()) == VALUE
    with pytest.raises(dm.ModelError, match=r"Parquet dataset '.*edges' has no column 'cost' \(columns: user, value\)"):
        read_table(folder, columns=["cost"])
    (folder / "part-2.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(dm.ModelError, match=r"Parquet dataset '.*edges' could not be read .*part-2\.parquet"):
        read_table(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(dm.ModelError, match=r"Parquet dataset '.*empty' has no Parquet files"):
        read_table(empty)


def test_read_table_passes_tables_and_frames_through():
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    assert read_table(table) is table
    assert read_table(table, columns=["b"]).column_names == ["b"]
    frame = table.to_pandas()
    converted = read_table(frame, columns=["b", "a"])
    assert converted.column_names == ["b", "a"] and converted["a"].type == pa.int64()
    with pytest.raises(dm.ModelError, match=r"DataFrame has no column 'c' \(columns: a, b\)"):
        read_table(frame, columns=["c"])
    with pytest.raises(dm.ModelError, match=r"DataFrame could not be converted to an arrow table"):
        read_table(pd.DataFrame({"mixed": pd.Series([1, "x"], dtype=object)}))


# ----------------------------------------------------------------------------------------- outputs
@pytest.fixture(scope="module")
def solved():
    """The tiny matching model with a >= row, an == row (one coupling, one block family) and a global row."""
    m = dm.Model("tiny")
    users = m.entities("user", USERS)
    items = m.entities("item", ITEMS)
    e = m.edges("e", users, items, src=SRC, dst=DST)
    x = m.variable("x", over=e)
    value = np.array(VALUE)
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    m.subject_to((np.array(COST) * x).sum(by=items) <= np.array(BUDGET), name="budget")
    m.subject_to((value * x).sum() >= 2.0, name="revenue")
    m.subject_to(x.sum(by=items) + 0.5 >= np.array([0.5, 0.75]), name="floor")
    return m, m.solve("highs"), dict(x=x, users=users, items=items, value=value)


def test_to_frame_labels_keep_dtypes_and_values_match_x(solved):
    m, res, _ = solved
    frame = res.to_frame()
    assert list(frame.columns) == ["user", "item", "value"]
    assert pd.api.types.is_string_dtype(frame["user"]) and frame["item"].dtype == np.int64
    assert list(frame["user"]) == SRC and list(frame["item"]) == DST
    np.testing.assert_array_equal(frame["value"].to_numpy(), res.x.to_numpy())
    assert res.to_frame("x").equals(frame) and res.to_frame(m.variables["x"]).equals(frame)
    table = res.to_arrow()
    assert table.schema.field("user").type in (pa.string(), pa.large_string())
    assert table.schema.field("item").type == pa.int64()
    assert table.column_names == ["user", "item", "value"]
    assert table.schema.metadata[b"dualip_model.variable"] == b"x"
    assert table.schema.metadata[b"dualip_model.status"] == b"optimal"
    assert table.to_pandas().astype({"user": object}).equals(frame.astype({"user": object}))


def test_duals_frame_matches_dual_and_activity(solved):
    m, res, h = solved
    budget = res.duals_frame("budget")
    assert list(budget.columns) == ["item", "dual", "activity", "slack"]
    assert list(budget["item"]) == ITEMS and budget["item"].dtype == np.int64
    np.testing.assert_array_equal(budget["dual"].to_numpy(), res.dual("budget").to_numpy())
    spend = res.value((np.array(COST) * h["x"]).sum(by=h["items"]))
    np.testing.assert_allclose(budget["activity"].to_numpy(), spend, atol=1e-12)
    np.testing.assert_allclose(budget["slack"].to_numpy(), np.array(BUDGET) - spend, atol=1e-12)

    one = res.duals_frame("one")  # block rows: activity = block sums
    assert [s.kind for s in res.standard_form.layout.constraints if s.name == "one"] == ["blocks"]
    assert list(one["user"]) == USERS
    np.testing.assert_allclose(one["activity"], res.value(h["x"].sum(by=h["users"])), atol=1e-12)
    np.testing.assert_allclose(one["slack"], 1.0 - one["activity"], atol=1e-12)

    revenue = res.duals_frame("revenue")  # global >= row: one row, no label columns, slack = activity - lower
    assert list(revenue.columns) == ["dual", "activity", "slack"] and len(revenue) == 1
    assert revenue["activity"][0] == pytest.approx(res.objective)
    assert revenue["slack"][0] == pytest.approx(res.objective - 2.0)

    floor = res.duals_frame("floor")  # constant moved to the side: activity is A x, slack against 0 and 0.25
    sums = res.value(h["x"].sum(by=h["items"]))
    np.testing.assert_allclose(floor["activity"], sums, atol=1e-12)
    np.testing.assert_allclose(floor["slack"], sums - np.array([0.0, 0.25]), atol=1e-12)


def test_block_activity_with_edgeless_users_in_the_middle_and_at_the_end():
    users = ["u0", "ux", "u1", "u2", "uz"]  # ux and uz have no edges: empty blocks
    res = build(users, ITEMS, SRC, DST, VALUE, COST, BUDGET).solve("highs")
    one = res.duals_frame("one")
    assert list(one["user"]) == users
    x = res.x
    expected = [x[x.index.get_level_values("user") == u].sum() for u in users]
    np.testing.assert_allclose(one["activity"], expected, atol=1e-12)
    assert one["activity"][1] == 0.0 and one["activity"][4] == 0.0


def test_equality_rows_have_nonpositive_slack():
    m = dm.Model("eq")
    s = m.entities("s", ["a", "b", "c"])
    x = m.variable("x", over=s, upper=1.0)
    m.minimize((np.array([1.0, 2.0, 3.0]) * x).sum())
    m.subject_to(x.sum() == 1.5, name="total", block=False)
    m.subject_to((np.array([1.0, -1.0, 0.0]) * x).sum() == 0.25, name="diff")
    res = m.solve("highs")
    for name in ("total", "diff"):
        frame = res.duals_frame(name)
        assert frame["slack"][0] <= 0 and frame["slack"][0] == pytest.approx(0.0, abs=1e-9)
    assert res.duals_frame("total")["activity"][0] == pytest.approx(1.5)


def test_parquet_outputs_round_trip(solved, tmp_path):
    _, res, _ = solved
    res.to_parquet(tmp_path / "x.parquet")
    res.duals_to_parquet(tmp_path / "budget.parquet", "budget")
    x = read_table(tmp_path / "x.parquet")
    assert x.equals(res.to_arrow())
    back = pq.read_table(tmp_path / "budget.parquet").to_pandas()
    assert back["item"].dtype == np.int64
    np.testing.assert_array_equal(back["dual"], res.dual("budget").to_numpy())
    with pytest.raises(dm.ModelError, match=r"could not write Parquet file '.*missing_dir.*x\.parquet'"):
        res.to_parquet(tmp_path / "missing_dir" / "x.parquet")


def test_label_column_names_for_self_edges_and_clashes():
    m = dm.Model("graph")
    nodes = m.entities("value", ["a", "b", "c"])  # a set named like the value column
    arcs = m.edges("arcs", nodes, nodes, src=["a", "b", "c"], dst=["b", "c", "a"])
    f = m.variable("flow", over=arcs, upper=1.0)
    y = m.variable("y", over=nodes, upper=1.0)
    m.maximize(f.sum() + y.sum())
    m.subject_to(f.sum(by=None) <= 2, name="cap")
    res = m.solve("highs")
    assert list(res.to_frame("flow").columns) == ["value_src", "value_dst", "value"]
    assert list(res.to_frame("y").columns) == ["value_label", "value"]
    assert list(res.to_frame("y")["value_label"]) == ["a", "b", "c"]
    assert res.to_arrow("flow").column_names == ["value_src", "value_dst", "value"]
    with pytest.raises(dm.ModelError, match=r"model has variables \[.flow., .y.\]; name one \(result.primal\(name\)"):
        res.to_frame()
    with pytest.raises(dm.ModelError, match=r"unknown variable 'z' in model 'graph'"):
        res.to_arrow("z")
    with pytest.raises(dm.ModelError, match=r"unknown constraint 'nope' in model 'graph'"):
        res.duals_frame("nope")


def test_no_primal_means_no_tables_and_print_shows_the_violation():
    m = dm.Model("inf")
    s = m.entities("s", ["a", "b"])
    x = m.variable("x", over=s, upper=1.0)
    m.minimize(x.sum())
    m.subject_to(x.sum() >= 5, name="need")
    res = m.solve("highs")
    assert res.status is dm.Status.INFEASIBLE
    with pytest.raises(dm.ModelError, match=r"no primal solution: status is infeasible"):
        res.to_frame()
    with pytest.raises(dm.ModelError, match=r"no primal solution: status is infeasible"):
        res.duals_frame("need")
    assert "violation" not in str(res)



@pytest.mark.parametrize("x, worst, where", [
    ([0.0, 0.0, 0.0, 0.0, -0.5], 0.5, "bounds of x[edge ('u2', 20)]"),
    ([0.0, 0.0, 0.75, 0.0, 0.0], 0.5, "budget[item=10]"),
    ([0.6, 0.6, 0.0, 0.0, 0.0], 0.2, "one[user='u0']"),
    ([0.0, 0.0, 0.5, 0.0, 1.0], 0.0, None),
], ids=["bound", "coupling-row", "block-row", "feasible"])
def test_violation_names_the_worst_row_or_bound(x, worst, where):
    m = build(USERS, ITEMS, SRC, DST, VALUE, COST, BUDGET)
    sf = m.compile()
    res = dm.Result(m, sf, dm.RawResult(status=dm.Status.ITERATION_LIMIT, x=np.array(x)), "test")
    got, at = res.violation()
    assert got == pytest.approx(worst) and at == where
    assert f"violation  {worst:.3g}" + (f" (largest at {where})" if where else "") in str(res)


# ----------------------------------------------------------------------------------------- quickstart
def test_parquet_quickstart_example(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "examples" / "parquet_quickstart.py"
    spec = importlib.util.spec_from_file_location("parquet_quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    res = module.main(["--users", "300", "--items", "20", "--density", "0.1", "--out", str(tmp_path)])
    assert res.status is dm.Status.OPTIMAL
    assert sorted(os.listdir(tmp_path)) == ["budget_duals.parquet", "edges.parquet", "items.parquet", "x.parquet"]
    x = pq.read_table(tmp_path / "x.parquet")
    edges = pq.read_table(tmp_path / "edges.parquet")
    assert x.column_names == ["user", "item", "value"]
    assert x["user"].to_pylist() == edges["user"].to_pylist() and pc.all(pc.greater_equal(x["value"], -1e-9))
    duals = pq.read_table(tmp_path / "budget_duals.parquet")
    assert duals.column_names == ["item", "dual", "activity", "slack"] and duals.num_rows == 20
    assert "x.parquet" in capsys.readouterr().out
