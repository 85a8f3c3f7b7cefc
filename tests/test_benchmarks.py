"""The benchmark scripts a GPU session runs (scripts/gpu_session.sh) still run: each on a tiny model, on the CPU.

A lent GPU machine's lease is 15 minutes: a script that broke since it last ran would waste it. These run
benchmarks/gpu_scale.py and benchmarks/profile_dualip.py as the session does (fresh processes, JSON out) at
20,000 nonzeros and check what their reports must hold; the figures themselves are not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dualip_model.backends.dualip.fused_cpu import compiler_found

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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


@pytest.mark.parametrize("extra", [[], ["--storage", "compact", "--dtype", "float32"],
                                   ["--storage", "compact", "--compile"], ["--fused-cpu"]],
                         ids=["fast", "compact float32", "compiled", "fused_cpu"])
def test_profile_counts_the_ops_of_iterations_and_check(tmp_path, extra):
    if "--fused-cpu" in extra and not compiler_found():
        pytest.skip("no C++ compiler for the fused extension")
    report = run_script("profile_dualip.py", "--size", "2e4", "--threads", "1", *extra, out=tmp_path / "p.json")
    iterations, check = report["iterations"], report["check"]
    assert iterations["count"] == 25 and iterations["ms_per_iteration"] > 0
    assert iterations["aten_ops_per_iteration"] > 0 and check["aten_ops"] > 0
    assert check["in_iterations"] > 0 and iterations["top_ops"] and check["top_ops"]
    assert report["options"]["storage"] == ("compact" if "--storage" in extra else "fast")
