"""The benchmark scripts still run: each on a tiny model, on the CPU, as a fresh process with JSON out.

A lent GPU machine's lease is 15 minutes: a script that broke since it last ran would waste it. These run
benchmarks/gpu_scale.py and benchmarks/profile_dualip.py as the GPU session does (scripts/gpu_session.sh) at
20,000 nonzeros, and benchmarks/family_suite.py (the five LP families of benchmarks/families.py against HiGHS
IPM and OR-Tools PDLP) at 2,000, and check what their reports must hold; the figures themselves are not
asserted. The families' generators are checked on their own: size, seeds, block kinds, binding rows.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dualip_model as dm
from dualip_model.backends.dualip.fused_cpu import compiler_found

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from families import FAMILIES  # noqa: E402


def run_script(name: str, *args: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / name), *args, "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_gpu_scale_reports_the_solve_the_pair_and_the_peers(tmp_path):
    report = run_script("gpu_scale.py", "--sizes", "2e4", "--highs-max-nnz", "2e4", "--pdlp-max-nnz", "0",
                        "--spmv-repeat", "3", "--copy-mib", "8", "--threads", "1", out=tmp_path / "scale.json")
    (run,) = report["runs"]
    assert "error" not in run, run
    assert run["nnz"] == report["summary"][0]["nnz"] and run["nnz"] > 15_000
    dualip = run["dualip"]
    assert dualip["status"] == "optimal" and dualip["gap"] <= 1e-4
    assert dualip["ms_per_iteration"] > 0 and dualip["iteration_over_spmv_pair"] > 0
    assert {"compact", "fast"} <= set(dualip["accounted_memory"])
    assert run["highs_ipm"]["status"] == "optimal" and run["highs_ipm"]["dualip_rel_objective_error"] <= 1e-3
    assert "not_run" in run["highs_pdlp"] and "not_run" in run["cupdlpx"]  # PDLP capped to 0 nonzeros; no GPU
    assert run["targets"]["iteration_over_spmv_pair_at_most"] == 3.0


@pytest.mark.parametrize("extra", [["--engine", "torch"], ["--engine", "compact", "--dtype", "float32"],
                                   ["--engine", "compiled"], ["--engine", "fused_cpu"]],
                         ids=["fast", "compact float32", "compiled", "fused_cpu"])
def test_profile_counts_the_ops_of_iterations_and_check(tmp_path, extra):
    if "fused_cpu" in extra and not compiler_found():
        pytest.skip("no C++ compiler for the fused extension")
    report = run_script("profile_dualip.py", "--size", "2e4", "--threads", "1", *extra, out=tmp_path / "p.json")
    iterations, check = report["iterations"], report["check"]
    assert iterations["count"] == 25 and iterations["ms_per_iteration"] > 0
    assert iterations["aten_ops_per_iteration"] > 0 and check["aten_ops"] > 0
    assert check["in_iterations"] > 0 and iterations["top_ops"] and check["top_ops"]
    engine = extra[1]
    assert report["options"]["engine"] == engine
    assert report["options"]["storage"] == ("compact" if engine in ("compact", "compiled") else "fast")


# the block kind every family compiles to, and its coupling constraints (rows per item or global)
FAMILY_SHAPES = {
    "power_law": (dm.BlockKind.SIMPLEX_LE, ["budget"]),
    "few_users_per_item": (dm.BlockKind.SIMPLEX_LE, ["capacity"]),
    "multi_objective": (dm.BlockKind.SIMPLEX_LE, ["budget", "revenue_floor", "conversion_floor", "promotion_cap"]),
    "assignment": (dm.BlockKind.SIMPLEX_EQ, ["capacity"]),
    "guaranteed_delivery": (dm.BlockKind.BOXCUT_LE, ["delivery"]),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_is_sized_seeded_feasible_and_its_coupling_rows_bind(family):
    kind, coupling = FAMILY_SHAPES[family]
    model = FAMILIES[family](20_000, 1)
    sf = model.compile()
    assert abs(sf.nnz - 20_000) <= 0.05 * 20_000
    assert set(np.unique(sf.block_kind)) == {kind}
    other = FAMILIES[family](20_000, 2).compile()
    assert other.nnz != sf.nnz or not np.array_equal(other.c, sf.c)  # the seed changes the data
    again = FAMILIES[family](20_000, 1).compile()
    assert np.array_equal(again.c, sf.c) and np.array_equal(again.A_data, sf.A_data)  # and fixes it
    res = model.solve("highs", standard_form=sf, solver="ipm")
    assert res.status == dm.Status.OPTIMAL
    for name in coupling:  # every coupling constraint has binding rows: the blocks alone do not solve it
        assert (np.abs(res.dual(name, labeled=False)) > 1e-7).any(), name


def test_family_suite_reports_every_solver_on_every_family(tmp_path):
    if importlib.util.find_spec("ortools") is None:
        pytest.skip("ortools is not installed (pip install 'dualip_model[test]')")
    report = run_script("family_suite.py", "--sizes", "2e3", "--threads", "1", "--dualip-time-limit", "1",
                        out=tmp_path / "families.json")
    assert [r["family"] for r in report["runs"]] == list(FAMILIES) and report["threads"] == [1]
    for run in report["runs"]:
        assert abs(run["nnz"] - 2_000) <= 100 and run["threads"] == 1
        ipm, dualip, pdlp = run["highs-ipm"], run["dualip"], run["ortools-pdlp"]
        assert ipm["status"] == "optimal" and ipm["max_row_violation"] <= 1e-9 and ipm["certified_gap"] <= 1e-6
        assert pdlp["status"] == "optimal" and pdlp["rel_objective_error"] <= 1e-2 and pdlp["iterations"] > 0
        assert dualip["status"] in ("optimal", "time_limit") and dualip["seconds"] <= 10
        for solver in (ipm, dualip, pdlp):
            assert solver["max_row_violation"] >= 0 and solver["lagrangian_bound"] is not None
        if dualip["status"] == "optimal":
            assert dualip["rel_objective_error"] <= 1e-3
            assert dualip["own_bound"] == pytest.approx(dualip["lagrangian_bound"], rel=1e-9)  # one L(y)
    assert len(report["summary"]) == 5 and report["targets"][0]["size"] == 2_000
    assert "at_most_2x_slower_than_ipm" in report["targets"][0]["met"]


def test_family_suite_violation_is_relative_and_names_the_row(tiny):
    from family_suite import violation

    from dualip_model.flat_lp import flat_lp

    m, _ = tiny  # one <= 1 per user (blocks), budget <= 1 per item (rows), x >= 0
    sf = m.compile()
    flat = flat_lp(sf)
    assert violation(sf, flat, np.zeros(sf.n_cols)) == (0.0, None)
    x = np.zeros(sf.n_cols)
    x[0] = 1.6  # edge (u0, a): block u0 sums to 1.6, item a's budget row (cost 1) reads 1.6: both 0.6 / 2 over
    x[1] = 0.3  # edge (u0, b): the block now sums to 1.9, the worst (0.9 / 2)
    worst, where = violation(sf, flat, x)
    assert worst == pytest.approx(0.45) and where == "one[0]"
    x[:] = 0.0
    x[2] = -0.5  # a column bound, 0.5 / (1 + 0)
    assert violation(sf, flat, x) == (pytest.approx(0.5), "x[2] (bounds)")


def test_family_suite_targets_need_every_family_measured():
    from family_suite import targets

    def run(family, size, dualip, ipm, pdlp, status="optimal"):
        return {"family": family, "size": size, "threads": 1, "dualip": {"status": status, "seconds": dualip},
                "highs-ipm": {"status": "optimal", "seconds": ipm}, "ortools-pdlp": {"status": "optimal",
                                                                                    "seconds": pdlp}}

    large = targets([run("a", 10**6, 1.0, 20.0, 4.0), run("b", 10**6, 1.0, 10.0, 2.5)])[0]
    assert large["families"]["a"] == {"dualip_optimal": True, "speedup_vs_ipm": 20.0, "speedup_vs_pdlp": 4.0}
    assert large["geomean_speedup_vs_pdlp"] == pytest.approx(10**0.5, rel=1e-3)
    assert large["met"] == {"certified_tol_everywhere": True, "speedup_vs_ipm_at_least_10x": True,
                            "faster_than_pdlp_everywhere": True, "geomean_vs_pdlp_at_least_3x": True}
    late = targets([run("a", 10**6, 1.0, 20.0, 4.0), run("b", 10**6, 9.0, 10.0, 2.5, status="time_limit")])[0]
    assert late["families"]["b"]["speedup_vs_ipm"] is None and late["geomean_speedup_vs_pdlp"] is None
    assert not any(late["met"].values())
    small = targets([run("a", 50_000, 2.0, 1.0, 1.0), run("b", 50_000, 3.0, 1.0, 1.0)])[0]
    assert small["met"] == {"at_most_2x_slower_than_ipm": False}  # b: 3x slower than IPM
