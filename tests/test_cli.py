"""The command line, run in-process through cli.main(argv) (and once as ``python -m dualip_model``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dualip_model as dm
from dualip_model import cli
from dualip_model.synthetic import matching_model, synthetic_matching

ROOT = Path(__file__).resolve().parent.parent
NETLIB = ROOT / "tests" / "data" / "netlib"
AVGAS = str(NETLIB / "avgas.mps")  # a netlib LP with finite bounds, where dualip converges
AFIRO = str(NETLIB / "afiro.mps")
GALENET = str(ROOT / "tests" / "data" / "netlib-infeasible" / "galenet.mps")
OPTIMA = json.loads((NETLIB / "optima.json").read_text())


def run(capsys, *argv):
    """(exit code, stdout, stderr) of the command line on argv."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def rel(a, b):
    return abs(a - b) / max(1.0, abs(b))


# ----------------------------------------------------------------------------------------- solve
def test_round_trip_netlib_on_highs_and_dualip(capsys, tmp_path):
    """Read avgas, solve on highs, write it as MPS, read that back and solve on highs and dualip."""
    written = tmp_path / "avgas_out.mps"
    code, out, err = run(capsys, "solve", AVGAS, "--backend", "highs", "--write-model", written,
                         "--out", tmp_path / "x.parquet", "--duals", tmp_path / "y.csv", "--json")
    assert code == 0, err
    first = json.loads(out)
    optimum = OPTIMA["avgas"]["objective"]
    assert first["status"] == "optimal" and rel(first["objective"], optimum) <= 1e-9
    assert (first["columns"], first["rows"], first["nonzeros"]) == (8, 10, 30)
    assert set(first["written"]) == {"out", "duals", "model"} and written.stat().st_size > 0

    code, out, err = run(capsys, "solve", written, "--backend", "highs", "--json")
    assert code == 0 and rel(json.loads(out)["objective"], optimum) <= 1e-9
    code, out, err = run(capsys, "solve", written, "--backend", "dualip", "--device", "cpu", "--tol", "1e-4",
                         "--max-iter", "5000", "--time-limit", "120", "--out", tmp_path / "x_dualip.parquet",
                         "--json")
    assert code == 0, err
    second = json.loads(out)
    assert second["status"] == "optimal" and second["backend"] == "dualip"
    assert rel(second["objective"], optimum) <= 2e-4

    x = pd.read_parquet(tmp_path / "x.parquet")
    model = dm.read_model(AVGAS)
    exact = model.solve("highs")
    assert list(x.columns) == ["columns", "value"]
    assert list(x["columns"]) == list(model.sets["columns"].labels)  # the MPS column names
    np.testing.assert_allclose(x.value, exact.x.to_numpy(), atol=1e-9)
    x2 = pd.read_parquet(tmp_path / "x_dualip.parquet")  # the written MPS kept the names
    assert list(x2["columns"]) == list(model.sets["columns"].labels)
    np.testing.assert_allclose(x2.value, x.value, atol=1e-2)

    duals = pd.read_csv(tmp_path / "y.csv")
    assert list(duals.columns) == ["constraint", "row", "dual", "activity", "slack"]
    assert (duals.constraint == "rows").all() and (duals.slack >= -1e-7).all()
    assert list(duals.row) == list(model.sets["rows"].labels)
    np.testing.assert_allclose(duals.dual, exact.dual("rows").to_numpy(), atol=1e-9)


def test_text_output_and_progress_lines(capsys, tmp_path):
    plot = tmp_path / "conv.png"
    code, out, err = run(capsys, "solve", AVGAS, "--backend", "dualip", "--progress", "--option", "check_every=50",
                         "--plot", plot)
    assert code == 0, err
    assert out.startswith("avgas: optimal (dualip,") and f"wrote      {plot}" in out
    assert abs(float(re.search(r"objective  (\S+)", out).group(1)) + 7.75) <= 1e-4 * 7.75  # within tol of the optimum
    progress = [line for line in err.splitlines() if line.startswith("dualip: iteration ")]
    assert progress and "gap" in progress[-1] and "infeasibility" in progress[-1]
    assert plot.stat().st_size > 1000


def test_other_status_exits_1(capsys, tmp_path):
    code, out, err = run(capsys, "solve", AVGAS, "--backend", "dualip", "--max-iter", "5", "--json")
    assert code == 1 and json.loads(out)["status"] == "iteration_limit"
    code, out, err = run(capsys, "solve", GALENET, "--out", tmp_path / "x.parquet")
    assert code == 1 and "infeasible" in out and "nothing written to --out" in err
    assert not (tmp_path / "x.parquet").exists()


def test_engine_flag_reaches_dualip(capsys):
    code, out, err = run(capsys, "solve", AVGAS, "--backend", "dualip", "--engine", "compact", "--max-iter", "5",
                         "--json")
    assert code == 1 and json.loads(out)["status"] == "iteration_limit", err


def test_highs_options_through_option_flags(capsys):
    code, out, err = run(capsys, "solve", AFIRO, "--option", "solver=ipm", "--option", "threads=1",
                         "--option", "presolve=false", "--time-limit", "60", "--json")
    assert code == 0, err
    assert rel(json.loads(out)["objective"], OPTIMA["afiro"]["objective"]) <= 1e-8


@pytest.mark.parametrize("argv, match", [
    (["solve", "nowhere/model.mps"], "model file 'nowhere/model.mps' does not exist"),
    (["solve", AVGAS, "--backend", "gurobi"], "no backend named 'gurobi'"),
    (["compare", AVGAS, "--backends", "highs,gurobi"], "no backend named 'gurobi'"),
    (["solve", AVGAS, "--tol", "1e-4"], "backend 'highs' has no option 'tol' \\(given by --tol\\)"),
    (["solve", AVGAS, "--device", "cuda:0"], "backend 'highs' has no option 'device'"),
    (["solve", AVGAS, "--progress"], "backend 'highs' reports no progress"),
    (["solve", AVGAS, "--option", "solver=barrier"], "HighsOptions.solver"),
    (["solve", AVGAS, "--option", "threads"], "--option 'threads': expected KEY=VALUE"),
    (["solve", AVGAS, "--time-limit", "5", "--option", "time_limit=6"], "'time_limit' given twice"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "callback=print"], "callback cannot be given"),
    (["solve", AFIRO, "--backend", "dualip"], "cannot bound"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "tol=abc"], "dualip option 'tol' takes a number, not 'abc'"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "check_every=2.5"],
     r"--option check_every=2\.5: dualip option 'check_every' takes an integer, not 2\.5"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "seed=a"], "'seed' takes an integer, not 'a'"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "flat_rows=1"], "'flat_rows' takes true or false"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "max_iter=nan"], "'max_iter' takes an integer, not nan"),
    (["compare", AVGAS, "--backends", "highs,dualip", "--option", "check_every=0.5"], "takes an integer"),
    (["solve", AVGAS, "--plot", "p.xyz"], r"--plot p\.xyz: unknown image format 'xyz'; use one of .*png"),
    (["solve", AVGAS, "--backend", "dualip", "--device", "tpu"], "DualipOptions.device"),
    (["solve", AVGAS, "--backend", "dualip", "--engine", "fast"],
     "DualipOptions.engine: invalid value 'fast'; expected 'auto' or 'torch' or 'compact' or 'compiled' or "
     "'fused_cpu'"),
    (["solve", AVGAS, "--backend", "dualip", "--engine", "torch", "--option", "matrix_dtype=bfloat16"],
     "DualipOptions.engine 'torch' cannot run this solve: matrix_dtype 'bfloat16'"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "storage=fast"], "backend 'dualip' has no option 'storage'"),
    (["solve", AVGAS, "--backend", "dualip", "--option", "fused_cpu=true"], "has no option 'fused_cpu'"),
    (["solve", AVGAS, "--engine", "torch"], r"backend 'highs' has no option 'engine' \(given by --engine\)"),
    (["solve", AVGAS, "--out", "x.txt"], "--out x.txt: unknown table format"),
    (["solve", AVGAS, "--duals", "missing_dir/y.parquet"], "--duals 'missing_dir/y.parquet': directory .* does not exist"),
    (["solve", AVGAS, "--write-model", "missing_dir/m.mps"], "--write-model 'missing_dir/m.mps': directory"),
    (["compare", AVGAS, "--plot", "missing_dir/p.png"], "--plot 'missing_dir/p.png': directory"),
    (["compare", AVGAS, "--backends", "highs", "--tol", "1e-3"], r"no compared backend \(highs\).*\['tol'\]"),
    (["compare", AVGAS, "--backends", "highs", "--progress"], "none of the compared backends"),
    (["compare", AVGAS, "--backends", ","], "no backend names"),
    (["info", str(NETLIB / "afiro.lp")], "afiro.lp' does not exist"),
])
def test_usage_and_input_errors_exit_2_with_a_message(capsys, argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(match, err), err


def test_argparse_errors_exit_2(capsys):
    assert run(capsys)[0] == 2
    code, out, err = run(capsys, "solve", AVGAS, "--max-iter", "many")
    assert code == 2 and "invalid int value: 'many'" in err
    assert run(capsys, "optimize", AVGAS)[0] == 2


def test_unreadable_model_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "broken.mps"
    bad.write_text("this is not an MPS file\n")
    code, out, err = run(capsys, "info", bad)
    assert code == 2 and "could not be read" in err and str(bad) in err


def test_unreadable_binary_file_is_named_as_such(capsys, tmp_path):
    bad = tmp_path / "model.mps"
    bad.write_bytes(bytes(range(256)) * 4)
    for command in ("info", "solve"):
        code, out, err = run(capsys, command, bad)
        assert code == 2 and out == "" and f"model file '{bad}' could not be read: its content is none of MPS or LP text" in err


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_commands_read_saved_standard_forms_by_content(capsys, tmp_path, suffix):
    """solve, info and compare take the package's own saved form, whatever the file is called (issue 18, 5)."""
    model = matching_model(synthetic_matching(40, 4, 0.4, seed=3))
    reference = model.solve("highs")
    saved = tmp_path / f"form{suffix}"
    model.compile().save(saved)
    renamed = tmp_path / "form.data"  # the name says nothing: the content decides
    os.replace(saved, renamed)
    code, out, err = run(capsys, "solve", renamed, "--json", "--out", tmp_path / "x.csv", "--duals", tmp_path / "y.csv")
    assert code == 0, err
    assert rel(json.loads(out)["objective"], reference.objective) <= 1e-9
    x = pd.read_csv(tmp_path / "x.csv")
    assert np.allclose(np.sort(x["value"]), np.sort(reference.x_all), atol=1e-9)
    code, out, err = run(capsys, "info", renamed, "--json")
    assert code == 0 and json.loads(out)["blocks"]["SIMPLEX_LE"]["blocks"] == 40
    code, out, err = run(capsys, "compare", renamed, "--backends", "highs", "--json")
    assert code == 0 and rel(json.loads(out)["results"][0]["objective"], reference.objective) <= 1e-9


def test_text_model_without_its_suffix_is_read_by_content(capsys, tmp_path):
    plain = tmp_path / "afiro.model"
    plain.write_bytes(Path(AFIRO).read_bytes())
    code, out, err = run(capsys, "solve", plain, "--json")
    assert code == 0 and rel(json.loads(out)["objective"], OPTIMA["afiro"]["objective"]) <= 1e-9


def test_unwritable_outputs_are_refused_before_solving(capsys, tmp_path, monkeypatch):
    """A path that is a folder, or in a missing folder, fails before anything is read or solved (issue 19, 7)."""
    folder = tmp_path / "taken.csv"
    folder.mkdir()
    solved = []
    monkeypatch.setattr(dm.Model, "solve", lambda *a, **k: solved.append(1))
    for flag, path in (("--out", folder), ("--duals", tmp_path / "none" / "y.csv"), ("--plot", tmp_path / "p.png" / "q.png")):
        code, out, err = run(capsys, "solve", AVGAS, flag, path)
        assert code == 2 and out == "" and str(path) in err and flag in err
    assert solved == []


def test_an_output_that_fails_after_the_solve_keeps_the_result_and_names_the_path(capsys, tmp_path, monkeypatch):
    out_path = tmp_path / "x.csv"
    out_path.write_text("old\n")

    def disk_full(frame, path, what, fmt=None):
        raise dm.ModelError(f"could not write {what} '{path}': [Errno 28] No space left on device")

    monkeypatch.setattr(cli, "write_table", disk_full)
    code, out, err = run(capsys, "solve", AVGAS, "--out", out_path, "--duals", tmp_path / "y.csv")
    assert code == 2
    assert "optimal" in out and f"NOT written {out_path} (out)" in out  # the result is printed all the same
    assert "No space left on device" in err and out_path.read_text() == "old\n"


# ----------------------------------------------------------------------------------------- compare
def test_compare_prints_and_writes_the_table(capsys, tmp_path):
    table = tmp_path / "table.csv"
    code, out, err = run(capsys, "compare", AVGAS, "--backends", "highs,dualip", "--tol", "1e-4",
                         "--out", table, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["reference"] == "highs" and [r["backend"] for r in got["results"]] == ["highs", "dualip"]
    assert all(r["status"] == "optimal" for r in got["results"])
    assert abs(got["results"][1]["objective_rel_diff"]) <= 2e-4
    frame = pd.read_csv(table)
    assert list(frame.columns) == ["backend", "status", "objective", "bound", "gap", "time", "iterations",
                                   "objective_rel_diff"]
    assert list(frame.backend) == ["highs", "dualip"]


def test_compare_text_and_exit_1_when_one_is_not_optimal(capsys):
    code, out, err = run(capsys, "compare", AVGAS, "--backends", "highs,dualip", "--max-iter", "5")
    assert code == 1
    assert "iteration_limit" in out and "optimal" in out and out.rstrip().endswith("reference: highs")


# ----------------------------------------------------------------------------------------- info
def test_info_of_a_netlib_file(capsys):
    code, out, err = run(capsys, "info", AFIRO, "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert (facts["columns"], facts["rows"], facts["nonzeros"]) == (32, 27, 83)
    assert facts["model"] == "afiro" and facts["sense"] == "minimize"
    assert facts["blocks"] == {"BOX": {"blocks": 1, "columns": 32}}
    assert facts["column_bounds"]["lower bound only"] == 32
    assert sum(facts["row_bounds"].values()) == 27 and facts["row_bounds"]["=="] == 8
    assert facts["ranges"]["bounds"] is None and facts["ranges"]["rhs"] == [44.0, 500.0]
    code, out, err = run(capsys, "info", AFIRO)
    assert code == 0
    assert "size       32 columns, 27 rows, 83 nonzeros" in out and "blocks     1: BOX 1 (32 columns)" in out


def test_info_finds_the_simplex_rows_of_a_matching_written_as_mps(capsys, tmp_path):
    data = synthetic_matching(30, 4, 0.5, seed=1)  # lognormal costs: the budget rows are not unit sums
    path = tmp_path / "matching.mps"
    dm.write_model(matching_model(data), path)
    code, out, err = run(capsys, "info", path, "--json")
    facts = json.loads(out)
    users_with_edges = int((np.bincount(data.user, minlength=data.n_users) > 0).sum())
    assert facts["sense"] == "maximize"
    assert facts["simplex_rows"] == users_with_edges and facts["simplex_row_columns"] == data.n_edges


def test_simplex_rows_must_be_disjoint_unit_sums_over_nonnegative_columns():
    flat = dm.Model("flat")
    cols = flat.entities("col", 5)
    x = flat.variable("x", over=cols)
    rows = flat.entities("row", 4)
    a = np.array([[1, 1, 0, 0, 0],    # a unit sum sharing column 1 with row 1: not a block
                  [0, 1, 0, 1, 0],    # idem
                  [0, 0, 1, 0, 0],    # a unit sum over column 2 alone: a block candidate
                  [0, 0, 0, 0, 2.0]])  # coefficient 2: not a sum
    flat.minimize(x.sum())
    flat.subject_to(dm.matmul(a, x, rows) <= 1, name="rows", block=False)
    facts = cli.describe_standard_form(flat.compile())
    assert facts["simplex_rows"] == 1 and facts["simplex_row_columns"] == 1


# ----------------------------------------------------------------------------------------- help
@pytest.mark.parametrize("command, flags", [
    ("solve", ["--backend", "--device", "--tol", "--max-iter", "--time-limit", "--option", "--progress",
               "--out", "--duals", "--write-model", "--plot", "--json"]),
    ("compare", ["--backends", "--tol", "--max-iter", "--time-limit", "--option", "--progress", "--out",
                 "--plot", "--json"]),
    ("info", ["--json"]),
])
def test_help_of_each_subcommand(capsys, command, flags):
    code, out, err = run(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: python -m dualip_model {command}")
    assert all(flag in out for flag in flags) and "exit codes" in out


@pytest.mark.parametrize("text, value", [
    ("true", True), ("False", False), ("none", None), ("2", 2), ("1e-4", 1e-4), ("-inf", -np.inf),
    ("ipm", "ipm"), ("float32", "float32"), ("[1]", "[1]"),
])
def test_option_values(text, value):
    assert cli._parse_value(text) == value


def test_python_dash_m_keeps_stdout_for_the_command():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "dualip_model", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0 and "solve" in done.stdout and "compare" in done.stdout and "info" in done.stdout
    done = subprocess.run([sys.executable, "-m", "dualip_model", "info", AVGAS, "--json"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0
    assert json.loads(done.stdout)["columns"] == 8  # HiGHS's banner went to stderr, not into the JSON
