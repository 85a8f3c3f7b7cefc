"""The sharded dualip solve: shard planning and loading, its collectives, and real gloo jobs of 1, 2 and 4 ranks.

The multi-process tests launch sharded_worker.py (beside this file) under torchrun (or by hand, for a lost rank) on
small models and compare every rank count with the single-process solve of the same model: the same answer to
tolerance, the same duals after the first iterations (to rounding: the sums run in another order), identical
duals on every rank, a feasible assembled primal, checkpoints resumed on another number of ranks.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import dualip_model as dm
from dualip_model.backends.dualip.checkpoint import sharded_fingerprint
from dualip_model.backends.dualip.comm import LOCAL, Comm
from dualip_model.backends.dualip.fused_cpu import compiler_found
from dualip_model.backends.dualip.problem import ScaledProblem
from dualip_model.backends.dualip.repair import cut_rows, cut_rows_by_threshold
from dualip_model.shards import load_shard, plan_shards
from dualip_model.synthetic import synthetic_matching

WORKER = Path(__file__).with_name("sharded_worker.py")
TOL = 1e-4


def matching_model(n_users=600, n_items=20, global_row: str | None = "<=", seed=0) -> dm.Model:
    """Synthetic matching with edges in shuffled order (the compiled columns are permuted) and a global row."""
    d = synthetic_matching(n_users, n_items, 0.15, seed=seed)
    order = np.random.default_rng(seed).permutation(len(d.user))
    m = dm.Model("sharded")
    users, items = m.entities("user", n_users), m.entities("item", n_items)
    e = m.edges("e", users, items, src=d.user[order], dst=d.item[order])
    x = m.variable("x", over=e, lower=0)
    m.maximize((d.value[order] * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    m.subject_to((d.cost[order] * x).sum(by=items) <= d.budget, name="budget")
    revenue = (d.value[order] * x).sum()
    if global_row == "<=":
        m.subject_to(revenue <= 0.8 * d.value.sum() / n_items, name="cap")
    elif global_row == ">=":
        m.subject_to(revenue >= 0.2 * d.value.sum() / n_items, name="floor")
    return m


# --------------------------------------------------------------------------------------- planning and loading
def test_plan_balances_nonzeros_plus_columns_at_block_boundaries():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 40, 500)
    block_ptr = np.concatenate([[0], np.cumsum(counts)])
    col_ptr = np.concatenate([[0], np.cumsum(rng.integers(0, 5, block_ptr[-1]))])
    work = col_ptr[block_ptr] + block_ptr
    biggest = np.diff(work).max()
    for world in (1, 2, 3, 7, 16):
        bounds = plan_shards(block_ptr, col_ptr, world)
        assert bounds[0] == 0 and bounds[-1] == 500 and (np.diff(bounds) >= 0).all()
        share = np.diff(work[bounds])
        assert np.abs(share - work[-1] / world).max() <= biggest  # off by at most one block


def test_plan_gives_empty_shards_when_there_are_more_ranks_than_blocks():
    bounds = plan_shards(np.array([0, 5, 10]), np.arange(11), 4)
    assert bounds[0] == 0 and bounds[-1] == 2 and (np.diff(bounds) >= 0).all()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_shards_put_back_together_are_the_saved_standard_form(tmp_path, suffix):
    sf = matching_model().compile()
    path = tmp_path / f"m{suffix}"
    sf.save(path)
    assert sf.layout.column_order is not None  # the model's columns are permuted: `columns` must say so
    for world in (1, 2, 3, 5):
        parts = [load_shard(path, r, world) for r in range(world)]
        for name in ("c", "A_data", "A_indices", "block_kind", "block_rhs"):
            assert np.array_equal(np.concatenate([getattr(p.sf, name) for p in parts]), getattr(sf, name)), name
        assert np.array_equal(np.concatenate([p.columns for p in parts]), sf.layout.column_order)
        for p in parts:
            assert np.array_equal(p.sf.row_upper, sf.row_upper) and p.sf.offset == sf.offset
            assert p.sf.nnz == sf.A_indptr[p.col_stop] - sf.A_indptr[p.col_start]
            assert p.n_cols_total == sf.n_cols and p.nnz_total == sf.nnz and p.layout.sense == -1


def test_a_compressed_npz_is_read_whole_and_still_split(tmp_path):
    sf = matching_model().compile()
    plain = tmp_path / "plain.npz"
    sf.save(plain)
    packed = tmp_path / "packed.npz"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    a, b = load_shard(plain, 1, 2), load_shard(packed, 1, 2)
    assert np.array_equal(a.sf.A_data, b.sf.A_data) and a.block_start == b.block_start


@pytest.mark.parametrize("damage, message", [
    ("truncate", "could not be read"),
    ("foreign", "no dualip_model metadata"),
    ("nan", r"shard 1 of 2: its column 0 is column \d+.*\): column \d+: cost is nan"),
])
def test_bad_shard_files_are_refused_naming_the_file(tmp_path, damage, message):
    sf = matching_model().compile()
    path = tmp_path / "m.npz"
    if damage == "truncate":
        sf.save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        np.savez(path, c=np.zeros(3))
    else:
        c = sf.c.copy()
        c[-1] = np.nan  # in the last shard
        arrays = {k: v for k, v in np.load(_saved(sf, tmp_path)).items()}
        arrays["c"] = c
        np.savez(path, **arrays)
    with pytest.raises(dm.ModelError, match=message) as err:
        for rank in range(2):
            load_shard(path, rank, 2)
    assert str(path) in str(err.value)


def _saved(sf, folder):
    path = folder / "whole.npz"
    sf.save(path)
    return path


def test_rank_outside_the_world_is_refused(tmp_path):
    path = _saved(matching_model().compile(), tmp_path)
    with pytest.raises(dm.ModelError, match="rank 2 is not in 0..1"):
        load_shard(path, 2, 2)


# --------------------------------------------------------------------------------------- collectives, one process
class _Gathered(Comm):
    """A communicator that answers all_gather with parts given in advance (to test split invariance)."""

    def __init__(self, parts=None):
        self.parts, self.seen = parts, None

    def all_gather_np(self, a):
        self.seen = np.array(a)
        return self.parts if self.parts is not None else [np.array(a)]


def _fingerprint(path, world):
    shards = [load_shard(path, r, world) for r in range(world)]
    locals_ = []
    for s in shards:
        capture = _Gathered()
        sharded_fingerprint(s, capture)
        locals_.append(capture.seen)
    return sharded_fingerprint(shards[0], _Gathered(locals_))


def test_sharded_fingerprint_does_not_depend_on_the_split_but_on_the_data(tmp_path):
    sf = matching_model().compile()
    path = _saved(sf, tmp_path)
    prints = {world: _fingerprint(path, world) for world in (1, 2, 3, 4)}
    assert len(set(prints.values())) == 1
    arrays = dict(np.load(path))
    arrays["A_data"] = arrays["A_data"].copy()
    arrays["A_data"][7] *= 1.0 + 1e-12
    other = tmp_path / "other.npz"
    np.savez(other, **arrays)
    assert _fingerprint(other, 2) != prints[2]


@pytest.mark.parametrize("budget", [2, 1 << 10, 1 << 16])  # 2, 48 and 64 buckets per row and round
def test_threshold_cut_matches_the_sorted_greedy_cut(budget):
    """With the whole row on one rank, the threshold search equals cut_rows where densities are distinct.

    (The global row of matching_model has one density, value / value, for every entry: a tie that cut_rows
    breaks by column order and the search by proportion; both are feasible, neither is wrong.)
    """
    sf = matching_model(global_row=None).compile()
    p = ScaledProblem.build(sf, torch.device("cpu"), torch.float64)
    x = torch.as_tensor(np.random.default_rng(1).uniform(0, 1, p.n))
    ax = p.A @ x
    exact = cut_rows(x, ax, p.row_upper, p.repair_plan)
    searched = cut_rows_by_threshold(x, ax, p.row_upper, p.c, p.repair_plan, LOCAL, budget=budget * p.m)
    assert float((exact - searched).abs().max()) <= 1e-9
    assert float((p.A @ searched - p.row_upper).max()) <= 1e-9


def test_threshold_cut_keeps_rows_feasible_with_ties_and_shared_columns():
    """The global row's entries all tie and every column sits in two rows: the cut still meets every row."""
    sf = matching_model(global_row="<=").compile()
    p = ScaledProblem.build(sf, torch.device("cpu"), torch.float64)
    for seed in range(5):
        x = torch.as_tensor(np.random.default_rng(seed).uniform(0, 2, p.n))
        cut = cut_rows_by_threshold(x, p.A @ x, p.row_upper, p.c, p.repair_plan, LOCAL)
        assert float((p.A @ cut - p.row_upper).max()) <= 1e-9 and bool(((cut >= 0) & (cut <= x)).all())


# --------------------------------------------------------------------------------------- gloo jobs
def _launch(world: int, job: dict, out: Path, by_hand: bool = False, timeout: float = 240):
    """Run the worker on ``world`` gloo ranks; returns the CompletedProcess."""
    out.mkdir(parents=True, exist_ok=True)
    job_file = out / "job.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if not by_hand:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
               str(WORKER), str(job_file), str(out)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    with socket.socket() as s:  # a free port on the loopback for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(job_file), str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "WORLD_SIZE": str(world), "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r in range(world)]
    return [(p.wait(timeout=timeout), p.communicate()[1]) for p in procs]


def _gather(out: Path, name: str, world: int, n: int):
    """The ranks' parts of one answer: the assembled primal in model order and each rank's record."""
    parts = [dict(np.load(out / f"{name}-{r}.npz")) for r in range(world)]
    x = np.full(n, np.nan)
    for p in parts:
        x[p["columns"]] = p["x"]
    return x, parts


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two models saved once: repairable (<= rows only) and not (a >= row), with single-process answers."""
    folder = tmp_path_factory.mktemp("sharded")
    out = {}
    for name, row in (("repairable", "<="), ("floor", ">=")):
        m = matching_model(global_row=row)
        sf = m.compile()
        sf.save(folder / f"{name}.npz")
        whole = m.solve("dualip", tol=TOL)
        fixed = m.solve("dualip", tol=1e-14, max_iter=50)
        exact = m.solve("highs")
        out[name] = dict(path=str(folder / f"{name}.npz"), model=m, sf=sf, whole=whole, fixed=fixed, exact=exact)
    return out


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    """Each model on 1, 2 and 4 gloo ranks (one torchrun job per rank count)."""
    job = {"models": {k: v["path"] for k, v in models.items()}, "options": {"tol": TOL}, "iterates": 50}
    out = {}
    for world in (1, 2, 4):
        folder = tmp_path_factory.mktemp(f"world{world}")
        proc = _launch(world, job, folder)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[world] = folder
    return out


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("name", ["repairable", "floor"])
def test_every_rank_count_gives_the_single_process_answer(models, runs, name, world):
    ref = models[name]
    sf, whole, exact = ref["sf"], ref["whole"], ref["exact"]
    x, parts = _gather(runs[world], name, world, sf.n_cols)
    assert not np.isnan(x).any()  # every column came back from exactly one rank
    for p in parts:  # the replicated numbers are the same on every rank, bit for bit
        assert np.array_equal(p["y"], parts[0]["y"]) and float(p["objective"]) == float(parts[0]["objective"])
    p = parts[0]
    assert str(p["status"]) == "optimal" == whole.status.value
    assert abs(float(p["objective"]) - exact.objective) <= 2 * TOL * max(1.0, abs(exact.objective))
    assert float(p["bound"]) >= exact.objective - 1e-7 * abs(exact.objective)  # maximizing: an upper bound
    assert abs(float(p["objective"]) - whole.objective) <= 2 * TOL * abs(whole.objective)
    ax = sf.A @ x[sf.layout.column_order]  # compiled order
    viol = np.maximum(ax - sf.row_upper, 0) + np.maximum(sf.row_lower - ax, 0)
    rel = np.linalg.norm(viol) / (1 + np.linalg.norm(np.concatenate([sf.row_lower[np.isfinite(sf.row_lower)],
                                                                      sf.row_upper[np.isfinite(sf.row_upper)]])))
    if name == "repairable":
        assert viol.max() <= 1e-9  # the repaired primal is feasible
    else:
        assert rel <= TOL
    assert x.min() >= -1e-12
    if world == 1:  # one rank runs the single-process method exactly
        assert np.array_equal(p["y"], whole.raw.state["y"])


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", ["repairable", "floor"])
def test_the_first_iterates_agree_with_one_process_to_rounding(models, runs, name, world):
    """After 50 iterations the duals agree to 1e-10 (the sums' order differs; later steps amplify it)."""
    _, parts = _gather(runs[world], name, world, models[name]["sf"].n_cols)
    ref = models[name]["fixed"].raw.state["y"]
    assert np.abs(parts[0]["y_fixed"] - ref).max() <= 1e-10 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("options", [
    # gathers, segment sums and the chunked repair with the columns split over ranks (the CUDA default)
    pytest.param({"engine": "compact"}, id="compact storage"),
    # fused_cpu on each rank's columns, its A x all-reduced
    pytest.param({"engine": "fused_cpu"}, id="fused_cpu",
                 marks=pytest.mark.skipif(not compiler_found(), reason="no C++ compiler")),
])
def test_two_ranks_give_the_answer(models, tmp_path, options):
    """Other iteration paths with the columns split over two ranks: the certified optimum of one process."""
    ref = models["repairable"]
    job = {"models": {"repairable": ref["path"]}, "options": {"tol": TOL, **options}}
    proc = _launch(2, job, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sf, exact = ref["sf"], ref["exact"]
    x, parts = _gather(tmp_path, "repairable", 2, sf.n_cols)
    assert str(parts[0]["status"]) == "optimal" and np.array_equal(parts[0]["y"], parts[1]["y"])
    assert abs(float(parts[0]["objective"]) - exact.objective) <= 2 * TOL * max(1.0, abs(exact.objective))
    assert float(parts[0]["bound"]) >= exact.objective - 1e-7 * abs(exact.objective)
    assert (sf.A @ x[sf.layout.column_order] - sf.row_upper).max() <= 1e-9  # the repaired primal is feasible


def test_the_flat_row_search_runs_in_step_on_two_ranks(tmp_path):
    """Entries spread 1e-6..1e6 within rows, 3,000 iterations (where the plain ascent stops at the limit, see
    test_dualip.py): the flat-row search's host decisions (on all-reduced gradients) and its gradient
    evaluations (collective) agree on both ranks, and the certified optimum is the single process's."""
    from test_parity import scaled_matching
    m = scaled_matching(0, entries=6)
    sf = m.compile()
    sf.save(tmp_path / "spread.npz")
    exact = m.solve("highs")
    proc = _launch(2, {"models": {"spread": str(tmp_path / "spread.npz")}, "options": {"tol": TOL, "max_iter": 3000}},
                   tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    x, parts = _gather(tmp_path / "run", "spread", 2, sf.n_cols)
    assert str(parts[0]["status"]) == "optimal"
    assert np.array_equal(parts[0]["y"], parts[1]["y"])
    assert abs(float(parts[0]["objective"]) - exact.objective) <= 2 * TOL * max(1.0, abs(exact.objective))
    xc = x if sf.layout.column_order is None else x[sf.layout.column_order]
    assert (sf.A @ xc - sf.row_upper).max() <= 1e-9 * (1.0 + np.abs(sf.row_upper).max())


@pytest.mark.parametrize("algorithm", ["dual_ascent", "pdhg"])
def test_a_checkpoint_resumes_on_other_rank_counts(models, tmp_path, algorithm):
    ref = models["repairable"]
    ckpt = tmp_path / "ckpt"
    first = {"models": {"repairable": ref["path"]}, "options": {"tol": TOL, "max_iter": 100, "checkpoint": str(ckpt),
                                                                "checkpoint_every": 50, "algorithm": algorithm}}
    proc = _launch(2, first, tmp_path / "first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ckpt / "state.npz").is_file() and len(list(ckpt.glob("shard-*-of-00002-it100.npz"))) == 2
    for world in (4, 1):
        resume = {"models": {"repairable": ref["path"]},
                  "options": {"tol": TOL, "resume": str(ckpt), "algorithm": algorithm}}
        proc = _launch(world, resume, tmp_path / f"resume{world}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        x, parts = _gather(tmp_path / f"resume{world}", "repairable", world, ref["sf"].n_cols)
        assert str(parts[0]["status"]) == "optimal" and int(parts[0]["iterations"]) > 100  # continued, not restarted
        assert abs(float(parts[0]["objective"]) - ref["exact"].objective) <= 2 * TOL * abs(ref["exact"].objective)


def test_a_checkpoint_of_another_problem_is_refused(models, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = {"models": {"repairable": models["repairable"]["path"]},
             "options": {"max_iter": 50, "checkpoint": str(ckpt)}}
    assert _launch(2, first, tmp_path / "first").returncode == 0
    other = {"models": {"floor": models["floor"]["path"]}, "options": {"resume": str(ckpt)}}
    proc = _launch(2, other, tmp_path / "other")
    assert proc.returncode != 0 and "written for a different problem" in proc.stderr


def test_ranks_given_different_options_refuse_to_start(models, tmp_path):
    job = {"models": {"repairable": models["repairable"]["path"]}, "options": {"tol": TOL},
           "rank_options": {"1": {"tol": 1e-3}}}
    proc = _launch(2, job, tmp_path / "out")
    assert proc.returncode != 0
    for rank in (0, 1):
        assert "the ranks were given different options" in (tmp_path / "out" / f"error-{rank}.txt").read_text()


def test_a_lost_rank_fails_the_job_with_a_clear_error_and_it_resumes(models, tmp_path):
    """Rank 1 dies at its third check; rank 0 raises DistributedError; the job resumes on one rank."""
    ref = models["repairable"]
    ckpt = tmp_path / "ckpt"
    job = {"models": {"repairable": ref["path"]}, "die": [1, 3],
           "options": {"tol": TOL, "checkpoint": str(ckpt), "checkpoint_every": 25}}
    (code0, err0), (code1, err1) = _launch(2, job, tmp_path / "lost", by_hand=True, timeout=120)
    assert (code0, code1) == (3, 17), f"rank 0:\n{err0[-3000:]}\nrank 1:\n{err1[-3000:]}"
    message = (tmp_path / "lost" / "error-0.txt").read_text()
    assert "rank 0 of 2: an all-reduce failed, a peer rank has probably died" in message
    state = json.loads(str(np.load(ckpt / "state.npz")["__meta__"]))
    assert state["it"] == 50  # the checks before the loss were saved
    resume = {"models": {"repairable": ref["path"]}, "options": {"tol": TOL, "resume": str(ckpt)}}
    proc = _launch(1, resume, tmp_path / "resumed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, parts = _gather(tmp_path / "resumed", "repairable", 1, ref["sf"].n_cols)
    assert str(parts[0]["status"]) == "optimal"


def test_cli_solve_sharded_writes_every_ranks_primal_and_rank_zero_reports(models, tmp_path):
    ref = models["repairable"]
    out = tmp_path / "x"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "dualip_model", "solve-sharded", ref["path"], "--tol", str(TOL), "--out", str(out),
           "--duals", str(tmp_path / "y.csv"), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])  # rank 0 alone prints
    assert summary["ranks"] == 2 and summary["status"] == "optimal"
    import pandas as pd

    x = pd.concat([pd.read_parquet(f) for f in sorted(out.glob("x-*-of-00002.parquet"))])
    assert sorted(x["column"]) == list(range(ref["sf"].n_cols))
    duals = pd.read_csv(tmp_path / "y.csv")
    assert set(duals["constraint"]) == {"budget", "cap"}
    whole_duals = ref["whole"].dual("budget").to_numpy()
    got = duals[duals.constraint == "budget"]["dual"].to_numpy()
    assert np.abs(got - whole_duals).max() <= 1e-2 * max(1.0, np.abs(whole_duals).max())


def test_a_rank_without_blocks_contributes_zeros(tmp_path):
    """avgas read flat compiles to one BOX block: rank 1 gets no column, and 2 ranks give the one-process duals
    exactly."""
    model = dm.read_model(Path(__file__).parents[2] / "data" / "netlib" / "avgas.mps", detect_blocks=False)
    sf = model.compile()
    assert sf.n_blocks == 1
    sf.save(tmp_path / "avgas.npz")
    whole = model.solve("dualip", max_iter=300)
    job = {"models": {"avgas": str(tmp_path / "avgas.npz")}, "options": {"max_iter": 300}}
    proc = _launch(2, job, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    x, parts = _gather(tmp_path / "out", "avgas", 2, sf.n_cols)
    assert parts[1]["x"].shape == (0,) and str(parts[0]["status"]) == whole.status.value
    assert np.array_equal(parts[0]["y"], whole.raw.state["y"]) and np.array_equal(x, whole.x_all)


def test_cli_rank_killed_mid_solve_exits_3_naming_the_lost_peer(models, tmp_path):
    """Two CLI ranks started by hand; rank 1 is killed (SIGKILL) once a checkpoint exists: rank 0 says so, exit 3."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "dualip_model", "solve-sharded", models["repairable"]["path"], "--tol", "1e-12",
           "--max-iter", "1000000", "--option", f"checkpoint={ckpt}", "--option", "checkpoint_every=25"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        deadline = time.monotonic() + 120
        while not (ckpt / "state.npz").is_file() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.05)
        assert (ckpt / "state.npz").is_file(), procs[0].communicate(timeout=30)[1][-3000:]
        procs[1].kill()
        code = procs[0].wait(timeout=120)
    finally:
        for p in procs:
            p.kill()
    err = procs[0].communicate()[1]
    assert code == 3, err[-3000:]
    # (which collective fails depends on where the peer died: a sum or the gather of a maximum)
    assert re.search(r"error: rank 0 of 2: an all-(reduce|gather) failed, a peer rank has probably died", err), err


def test_cli_solve_sharded_outside_torchrun_is_a_usage_error(models):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, "-m", "dualip_model", "solve-sharded", models["repairable"]["path"]],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "launch with 'torchrun --nproc-per-node N ...'" in proc.stderr
