"""Crafted files (issue 19, items 3, 8, 9, 10, 14): refused with a ModelError naming the file, before any large
allocation, never read outside their folder, never a raw KeyError/TypeError/RecursionError."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import tracemalloc
import zipfile

import numpy as np
import pytest

import dualip_model as dm
from dualip_model.backends.dualip import checkpoint
from dualip_model.backends.dualip.comm import LOCAL
from dualip_model.backends.dualip.distributed import solve_sharded
from dualip_model.shards import load_shard
from dualip_model.standard_form import StandardForm
from dualip_model.synthetic import matching_model, synthetic_matching
from dualip_model.untrusted import MAX_JSON_DEPTH


def small_form():
    return matching_model(synthetic_matching(30, 3, 0.5, seed=2)).compile()


def npy_bytes(dtype, shape, payload: bytes) -> bytes:
    """An .npy member whose header declares (dtype, shape), followed by ``payload`` whatever its length."""
    fh = io.BytesIO()
    np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return fh.getvalue() + payload


def rewrite_npz(path, replace: dict, compress: dict | None = None):
    """Rewrite the .npz at ``path`` with members replaced by raw .npy bytes (name -> bytes)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members.update({f"{k}.npy": v for k, v in replace.items()})
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            kind = zipfile.ZIP_DEFLATED if compress and name[:-4] in compress else zipfile.ZIP_STORED
            z.writestr(name, data, compress_type=kind)


# ----------------------------------------------------------------------------------------- memory bombs
@pytest.mark.parametrize("loader", ["load", "shard"])
def test_header_declaring_2_to_the_40_floats_is_refused_before_allocating(tmp_path, loader):
    path = tmp_path / "bomb.npz"
    small_form().save(path)
    rewrite_npz(path, {"c": npy_bytes(np.float64, (2**40,), b"\0" * 16)})
    with pytest.raises(dm.ModelError, match=r"bomb\.npz.*member 'c\.npy' declares shape \(1099511627776,\)"):
        StandardForm.load(path) if loader == "load" else load_shard(path, 0, 1)


def test_compressed_member_inconsistent_with_the_others_is_refused_unread(tmp_path):
    """256 MiB of zeros deflated to a few hundred KB: its length disagrees with the other arrays, so nothing is read."""
    path = tmp_path / "zip-bomb.npz"
    sf = small_form()
    sf.save(path)
    n = 2**25
    header = npy_bytes(np.float64, (n,), b"")
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist() if i.filename != "c.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        info = zipfile.ZipInfo("c.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as fh:
            fh.write(header)
            for _ in range(n * 8 // len(zeros)):
                fh.write(zeros)
    assert path.stat().st_size < 16 << 20
    tracemalloc.start()
    try:
        with pytest.raises(dm.ModelError, match=rf"array 'A_indptr' has {sf.n_cols + 1} entries, expected {n + 1}"):
            StandardForm.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak


def test_stored_member_shorter_than_its_header_says_is_refused(tmp_path):
    path = tmp_path / "short.npz"
    small_form().save(path)
    rewrite_npz(path, {"block_rhs": npy_bytes(np.float64, (30,), b"\0" * 8)})
    with pytest.raises(dm.ModelError, match=r"member 'block_rhs\.npy' declares shape \(30,\) .* but holds 8 bytes"):
        StandardForm.load(path)


def test_safetensors_header_declaring_a_huge_tensor_is_refused(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "bomb.safetensors"
    header = json.dumps({"c": {"dtype": "F64", "shape": [2**40], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(dm.ModelError, match=r"bomb\.safetensors' could not be read"):
        StandardForm.load(path)


def deep(depth: int) -> str:
    return json.dumps({"format": "dualip_model.StandardForm", "version": 1}).replace(
        "}", ', "x": ' + "[" * depth + "]" * depth + "}")


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_deeply_nested_metadata_is_refused_without_recursion(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    sf = small_form()
    sf.save(path)
    text = deep(100_000)
    if suffix == ".npz":
        rewrite_npz(path, {"dualip_model": npy_bytes(np.uint8, (len(text),), text.encode())})
    else:
        import safetensors.numpy

        arrays = safetensors.numpy.load_file(str(path))
        safetensors.numpy.save_file(arrays, str(path), metadata={"dualip_model": text})
    with pytest.raises(dm.ModelError, match=r"metadata nests 100001 levels deep, more than the 32 allowed"):
        StandardForm.load(path)


def test_metadata_just_within_the_depth_bound_is_parsed(tmp_path):
    from dualip_model.untrusted import parse_json

    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "x") is not None
    assert parse_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', "x") == {"a": "[" * 44}  # strings
    with pytest.raises(dm.ModelError, match="nests 33 levels"):
        parse_json("[" * 33 + "]" * 33, "x")


# ----------------------------------------------------------------------------------------- checkpoints
def crafted_checkpoint(tmp_path, **changes):
    """A real checkpoint of a short solve, its metadata then changed (None deletes a field)."""
    path = tmp_path / "ck.npz"
    m = matching_model(synthetic_matching(30, 3, 0.5, seed=2))
    m.solve("dualip", algorithm="dual_ascent", max_iter=20, check_every=10, checkpoint=str(path))  # Run's fields
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)
    return m, path


@pytest.mark.parametrize("changes, message", [
    (dict(it=None), r"metadata field 'it' is 'None', expected int"),
    (dict(gamma="fast"), r"metadata field 'gamma' is 'fast', expected int or float"),
    (dict(history=3), r"metadata field 'history' is '3', expected list"),
    (dict(options=[1]), r"metadata field 'options' is '\[1\]', expected dict"),
    (dict(best_cert={"bound": 1.0}), r"metadata field 'best_cert.objective' is 'None', expected int or float"),
], ids=["missing", "type", "history", "options", "certificate"])
def test_crafted_checkpoint_metadata_is_a_model_error(tmp_path, changes, message):
    m, path = crafted_checkpoint(tmp_path, **changes)
    with pytest.raises(dm.ModelError, match=rf"checkpoint file '.*ck\.npz': {message}"):
        m.solve("dualip", max_iter=40, check_every=10, resume=str(path))


def test_checkpoint_with_a_text_array_is_refused(tmp_path):
    m, path = crafted_checkpoint(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["best_y"] = np.array(["a", "b"])
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(dm.ModelError, match=r"array 'best_y' has dtype <U1, not a number type"):
        checkpoint.load(path)


def sharded_run(tmp_path, max_iter=20):
    form = tmp_path / "form.npz"
    small_form().save(form)
    ckpt = tmp_path / "ckpt"
    solve_sharded(form, comm=LOCAL, max_iter=max_iter, check_every=10, checkpoint=str(ckpt), checkpoint_every=10)
    return form, ckpt


def test_sharded_checkpoint_deletes_only_the_shards_its_state_named(tmp_path):
    """A user's shard-*.npz in the folder survives every save; the package's own older shards go (issue 19, 8)."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    mine = ckpt / "shard-00000-of-00001-it5.npz"
    mine.write_bytes(b"the user's own file")
    form, ckpt = sharded_run(tmp_path, max_iter=30)
    state = checkpoint.load(ckpt / checkpoint.STATE_FILE)[1]
    assert [s[0] for s in state["shards"]] == ["shard-00000-of-00001-it30.npz"]
    assert sorted(p.name for p in ckpt.iterdir()) == ["shard-00000-of-00001-it30.npz", "shard-00000-of-00001-it5.npz",
                                                     "state.npz"]
    assert mine.read_bytes() == b"the user's own file"


@pytest.mark.parametrize("name", ["../outside.npz", "/etc/passwd", "sub/shard.npz", "..", ""])
def test_sharded_state_naming_a_file_outside_its_folder_is_refused(tmp_path, name):
    form, ckpt = sharded_run(tmp_path)
    tensors, meta = checkpoint.load(ckpt / checkpoint.STATE_FILE)
    entry = meta["shards"][0]
    meta["shards"] = [[name, *entry[1:]]]
    meta = {k: v for k, v in meta.items() if k != "format"}
    checkpoint.save(ckpt / checkpoint.STATE_FILE, tensors, meta)
    (tmp_path / "outside.npz").write_bytes((ckpt / entry[0]).read_bytes())  # a readable target, were it followed
    with pytest.raises(dm.ModelError, match=r"names shard file .* outside the checkpoint directory"):
        solve_sharded(form, comm=LOCAL, max_iter=40, check_every=10, resume=str(ckpt))


@pytest.mark.parametrize("entry", [[["x.npz", 0, 1]], [["x.npz", -1, 2, 0, 3]], "many", [[5, 0, 1, 0, 1]]])
def test_sharded_state_with_malformed_entries_is_a_model_error(tmp_path, entry):
    form, ckpt = sharded_run(tmp_path)
    tensors, meta = checkpoint.load(ckpt / checkpoint.STATE_FILE)
    meta = {k: v for k, v in meta.items() if k != "format"}
    checkpoint.save(ckpt / checkpoint.STATE_FILE, tensors, {**meta, "shards": entry})
    with pytest.raises(dm.ModelError, match=r"state\.npz (has a malformed shard entry|lists no shard files)"):
        solve_sharded(form, comm=LOCAL, max_iter=40, check_every=10, resume=str(ckpt))


def test_unwritable_checkpoint_paths_are_refused_before_solving(tmp_path, monkeypatch):
    m = matching_model(synthetic_matching(30, 3, 0.5, seed=2))
    from dualip_model.backends.dualip import solver

    monkeypatch.setattr(solver.DualAscentSolver, "solve", lambda *a, **k: pytest.fail("solved"))
    for path, message in ((tmp_path / "none" / "ck.npz", "directory .* does not exist"), (tmp_path, "is a directory")):
        with pytest.raises(dm.ModelError, match=rf"checkpoint file '{path}'.*{message}"):
            m.solve("dualip", checkpoint=str(path))


def test_a_checkpoint_that_cannot_be_written_mid_solve_keeps_the_result(tmp_path, monkeypatch):
    """The folder vanishes after the start: the solve warns, naming the path, and returns its result."""
    m = matching_model(synthetic_matching(30, 3, 0.5, seed=2))
    path = tmp_path / "gone" / "ck.npz"
    monkeypatch.setattr(checkpoint, "check_target", lambda *a: None)  # as if the folder went after the check
    with pytest.warns(RuntimeWarning, match=r"checkpoint not written: could not write checkpoint file '.*gone/ck\.npz'"):
        res = m.solve("dualip", max_iter=30, check_every=10, checkpoint=str(path), checkpoint_every=10)
    assert res.iterations == 30 and res.x_all is not None and not path.exists()


# ----------------------------------------------------------------------------------------- compile and tables
def test_costs_that_overflow_when_compiled_are_refused():
    m = dm.Model("big")
    s = m.entities("s", 3)
    x = m.variable("x", over=s, upper=1.0)
    m.minimize((1e308 * x).sum() + (1e308 * x).sum())  # each finite, their sum is not
    with pytest.raises(dm.ModelError, match=r"variable 'x' at s=0 overflows float64"):
        m.compile()
    m.minimize({"a": (1e308 * x).sum()}, {"a": 10.0})  # a finite cost times a finite weight
    with pytest.raises(dm.ModelError, match=r"weighted cost of variable 'x' at s=0 overflows float64"):
        m.compile()


def test_validate_refuses_an_infinite_cost_that_reached_a_form():
    """The last line of defence behind the modeling layer's overflow checks: compile_model and load run it."""
    m = dm.Model("big")
    x = m.variable("x", over=m.entities("s", 3), upper=1.0)
    m.minimize(x.sum())
    sf = m.compile()
    c = np.array(sf.c)
    c[0] = np.inf
    with pytest.raises(dm.ModelError, match=r"column 0 \(variable 'x', entry 0\): cost is inf"):
        dataclasses.replace(sf, c=c).validate()


def test_to_parquet_with_labels_beyond_int64_is_a_model_error(tmp_path):
    pytest.importorskip("pyarrow")
    m = dm.Model("wide")
    s = m.entities("s", [2**64 + 1, 2**65])
    x = m.variable("x", over=s, upper=1.0)
    m.maximize(x.sum())
    res = m.solve("highs")
    with pytest.raises(dm.ModelError, match=r"labels of set 's' cannot become an arrow column"):
        res.to_parquet(tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []


def edge_table(tmp_path, **columns):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "edges.parquet"
    pq.write_table(pa.table({"block": [0, 0, 1], "cost": [1.0, 2.0, 3.0], "row": [0, 1, 0], **columns}), path)
    return path


def test_compile_edge_table_refuses_what_compile_refuses(tmp_path):
    from dualip_model.edge_table import compile_edge_table

    src = edge_table(tmp_path)
    with pytest.raises(dm.ModelError, match=r"output '.*missing/form\.npz': directory .* does not exist"):
        compile_edge_table(src, tmp_path / "missing" / "form.npz", block="block", cost="cost")
    with pytest.raises(dm.ModelError, match=r"row 1 has bounds \[-inf, -inf\]"):
        compile_edge_table(src, tmp_path / "f.npz", block="block", cost="cost", row="row", row_upper=[1.0, -math.inf])
    with pytest.raises(dm.ModelError, match=r"block 0 \(constraint 'block', entry 0\): block polytope is empty \(sum x == 1\.0 over 2 columns whose "
                                            r"bounds sum to \[0\.0, 0\.6\]\)"):
        compile_edge_table(src, tmp_path / "f.npz", block="block", cost="cost", block_kind="simplex_eq", upper=0.3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.parquet"]  # no output, no scratch left
