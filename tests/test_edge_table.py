"""compile_edge_table: a Parquet edge table compiled row group by row group into a standard-form file, the same
problem as the model built in memory, in memory bounded by a row group, with errors that name the culprit."""

from __future__ import annotations

import math
import os
import tracemalloc

import numpy as np
import pytest

import dualip_model as dm
from dualip_model.edge_table import GlobalRow, compile_edge_table, write_edge_values
from dualip_model.shards import load_shard
from dualip_model.synthetic import matching_model, synthetic_matching

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def edge_file(path, data, row_group_size: int, **extra) -> str:
    """The matching's edges as a Parquet file sorted by user (the model's block order), in row groups."""
    order = np.lexsort((data.item, data.user))
    columns = {"user": data.user[order], "item": data.item[order], "value": data.value[order],
               "cost": data.cost[order], **{k: v[order] for k, v in extra.items()}}
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return os.fspath(path)


def matching_table(tmp_path, users=300, items=12, density=0.25, row_group_size=97, seed=0):
    data = synthetic_matching(users, items, density, seed=seed)
    return data, edge_file(tmp_path / "edges.parquet", data, row_group_size)


def compile_matching(source, out, data, **kw):
    return compile_edge_table(source, out, block="user", cost="value", sense="max", row="item",
                              coefficient="cost", row_upper=data.budget, **kw)


def test_the_streamed_form_is_the_model_compiled_in_memory(tmp_path):
    data, source = matching_table(tmp_path)
    info = compile_matching(source, tmp_path / "m.npz", data)
    assert info.row_groups > 5 and info.n_cols == data.n_edges and info.nnz == data.n_edges
    streamed = dm.StandardForm.load(info.path)
    built = matching_model(data).compile()
    # the same problem up to the order of the columns: both sort the edges by user (then item here)
    order = np.lexsort((data.item, data.user))
    assert streamed.n_rows == built.n_rows == data.n_items
    users_with_edges = np.unique(data.user).size  # the model also holds users without edges (empty blocks)
    assert streamed.n_blocks == users_with_edges and built.n_blocks == data.n_users
    np.testing.assert_array_equal(streamed.c, -data.value[order])
    np.testing.assert_array_equal(streamed.A.toarray(), np.eye(data.n_items)[data.item[order]].T * data.cost[order])
    np.testing.assert_array_equal(streamed.row_upper, data.budget)
    np.testing.assert_array_equal(np.diff(streamed.block_ptr), np.bincount(data.user)[np.unique(data.user)])
    assert (streamed.block_kind == dm.BlockKind.SIMPLEX_LE).all() and (streamed.block_rhs == 1.0).all()
    assert streamed.layout.sense == -1
    # and the same optimum
    highs = dm.registry.get("highs")
    a = highs.solve(streamed, highs.Options())
    b = matching_model(data).solve("highs")
    assert a.status == dm.Status.OPTIMAL
    assert -a.objective == pytest.approx(b.objective, rel=1e-9)  # the standard form minimizes -value


def test_global_rows_box_blocks_and_one_row_group(tmp_path):
    data = synthetic_matching(80, 6, 0.3, seed=1)
    source = edge_file(tmp_path / "e.parquet", data, row_group_size=10**6, reach=np.ones(data.n_edges))
    info = compile_edge_table(source, tmp_path / "a.npz", block="user", cost="value", sense="max",
                              global_rows={"spend": GlobalRow("cost", upper=5.0),
                                           "reach": GlobalRow("reach", lower=2.0)},
                              block_kind="box", upper=1.0)
    sf = dm.StandardForm.load(info.path)
    assert info.row_groups == 1 and sf.n_rows == 2 and sf.nnz == 2 * data.n_edges
    np.testing.assert_array_equal(sf.row_lower, [-math.inf, 2.0])
    np.testing.assert_array_equal(sf.row_upper, [5.0, math.inf])
    assert (sf.block_kind == dm.BlockKind.BOX).all() and (sf.col_upper == 1.0).all()
    assert [s.name for s in sf.layout.constraints] == ["user", "spend", "reach"]
    res = dm.registry.get("dualip").solve(sf, dm.registry.get("dualip").Options(tol=1e-5))
    ref = dm.registry.get("highs").solve(sf, dm.registry.get("highs").Options())
    assert res.status == ref.status == dm.Status.OPTIMAL
    assert res.objective == pytest.approx(ref.objective, rel=2e-5)


def test_the_solution_goes_back_beside_the_edges(tmp_path):
    data, source = matching_table(tmp_path)
    sf = dm.StandardForm.load(compile_matching(source, tmp_path / "m.npz", data).path)
    raw = dm.registry.get("dualip").solve(sf, dm.registry.get("dualip").Options())
    write_edge_values(source, raw.x, tmp_path / "x.parquet", columns=["user", "item"])
    back = pq.read_table(tmp_path / "x.parquet")
    assert back.column_names == ["user", "item", "x"]
    assert pq.ParquetFile(tmp_path / "x.parquet").num_row_groups == pq.ParquetFile(source).num_row_groups
    edges = pq.read_table(source)
    np.testing.assert_array_equal(back.column("user").to_numpy(), edges.column("user").to_numpy())
    np.testing.assert_array_equal(back.column("x").to_numpy(), raw.x)
    # the objective of x read beside the edges is the optimum of the model solved in memory
    ref = matching_model(data).solve("highs")
    assert float(edges.column("value").to_numpy() @ back.column("x").to_numpy()) == pytest.approx(ref.objective,
                                                                                                   rel=2e-4)
    with pytest.raises(dm.ModelError, match="values for the .* edges"):
        write_edge_values(source, raw.x[:-1], tmp_path / "y.parquet")
    with pytest.raises(dm.ModelError, match="has no column 'price'"):
        write_edge_values(source, raw.x, tmp_path / "y.parquet", columns=["price"])


def test_a_block_split_across_row_groups_stays_one_block(tmp_path):
    data, source = matching_table(tmp_path, users=40, items=5, density=0.6, row_group_size=7)
    sf = dm.StandardForm.load(compile_matching(source, tmp_path / "m.npz", data).path)
    groups = pq.ParquetFile(source).metadata
    assert groups.num_row_groups > 5
    np.testing.assert_array_equal(np.diff(sf.block_ptr), np.bincount(data.user)[np.unique(data.user)])


def test_shards_of_the_streamed_file_read_their_own_blocks(tmp_path):
    data, source = matching_table(tmp_path)
    path = compile_matching(source, tmp_path / "m.npz", data).path
    whole = dm.StandardForm.load(path)
    parts = [load_shard(path, rank, 3) for rank in range(3)]
    assert sum(p.sf.n_cols for p in parts) == whole.n_cols
    np.testing.assert_array_equal(np.concatenate([p.sf.c for p in parts]), whole.c)


def test_memory_is_bounded_by_a_row_group(tmp_path):
    """2,000,000 edges in 40 row groups, 48 MB of per-edge arrays in the form: numpy's peak is a row group's
    arrays plus the 16 MiB buffer numpy copies an array to the .npz through (arrow's own buffers are not
    traced; they too hold one row group)."""
    data = synthetic_matching(100_000, 200, 0.1, seed=0)
    source = edge_file(tmp_path / "big.parquet", data, row_group_size=50_000)
    tracemalloc.start()
    try:
        info = compile_matching(source, tmp_path / "big.npz", data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    per_edge_arrays = info.n_cols * (8 + 4 + 4 + 8)  # c, indptr, indices, data
    assert info.row_groups == 40 and per_edge_arrays == 48_000_000
    assert peak < per_edge_arrays / 2, (peak, per_edge_arrays)


# --------------------------------------------------------------------------------------------- bad input
def bad_table(tmp_path, **columns):
    base = {"user": np.array([0, 0, 1, 2, 2]), "item": np.array([0, 1, 1, 0, 1]),
            "value": np.array([1.0, 2.0, 3.0, 4.0, 5.0]), "cost": np.ones(5)}
    base.update(columns)
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(base), path, row_group_size=2)
    return os.fspath(path)


@pytest.mark.parametrize("columns, match", [
    (dict(user=np.array([0, 0, 2, 1, 2])), r"row group 1: column 'user' is not nondecreasing at file row 3 "
                                           r"\(block 1 after block 2\)"),
    (dict(user=np.array([0, 1, 1, 0, 2])), r"row group 1: column 'user' is not nondecreasing at file row 3"),
    (dict(value=np.array([1.0, 2.0, 3.0, np.nan, 5.0])), r"row group 1: column 'value' holds nan at file row 3"),
    (dict(cost=np.array([1.0, np.inf, 1.0, 1.0, 1.0])), r"row group 0: column 'cost' holds inf at file row 1"),
    (dict(item=np.array([0, 1, 7, 0, 1])), r"column 'item' holds row 7 at file row 2; rows are 0..1"),
    (dict(user=np.array([0.0, 0.0, 1.0, 2.0, 2.0])), r"column 'user' must hold integers, not double"),
    (dict(value=np.array(["a", "b", "c", "d", "e"])), r"column 'value' must hold numbers, not string"),
    (dict(value=pa.array([1.0, None, 3.0, 4.0, 5.0])), r"file row 1 is missing \(null\)"),
])
def test_bad_edges_are_named_and_nothing_is_written(tmp_path, columns, match):
    source = bad_table(tmp_path, **columns)
    out = tmp_path / "out.npz"
    with pytest.raises(dm.ModelError, match=match):
        compile_edge_table(source, out, block="user", cost="value", row="item", coefficient="cost",
                           row_upper=np.ones(2))
    assert not out.exists() and os.listdir(tmp_path) == ["bad.parquet"]  # no output, no scratch left


def test_bad_arguments_and_files(tmp_path):
    source = bad_table(tmp_path)
    args = dict(block="user", cost="value", row="item", row_upper=np.ones(2))
    with pytest.raises(dm.ModelError, match="has no column 'price'"):
        compile_edge_table(source, tmp_path / "o.npz", **{**args, "cost": "price"})
    with pytest.raises(dm.ModelError, match="must be an .npz file"):
        compile_edge_table(source, tmp_path / "o.safetensors", **args)
    with pytest.raises(dm.ModelError, match="row 1 has bounds \\[3.0, 1.0\\]"):
        compile_edge_table(source, tmp_path / "o.npz", **args, row_lower=np.array([0.0, 3.0]))
    with pytest.raises(dm.ModelError, match="needs row_upper"):
        compile_edge_table(source, tmp_path / "o.npz", block="user", cost="value", row="item")
    with pytest.raises(dm.ModelError, match="a coefficient column needs a row column"):
        compile_edge_table(source, tmp_path / "o.npz", block="user", cost="value", coefficient="cost")
    with pytest.raises(dm.ModelError, match="block_kind must be one of"):
        compile_edge_table(source, tmp_path / "o.npz", **args, block_kind="simplex")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    with pytest.raises(dm.ModelError, match="garbage.parquet' is not a readable Parquet file"):
        compile_edge_table(garbage, tmp_path / "o.npz", **args)
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"user": pa.array([], pa.int64()), "value": pa.array([], pa.float64())}), empty)
    with pytest.raises(dm.ModelError, match="has no rows"):
        compile_edge_table(empty, tmp_path / "o.npz", block="user", cost="value")
