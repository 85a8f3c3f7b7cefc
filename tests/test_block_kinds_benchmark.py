"""benchmarks/block_kinds.py still runs: a tiny model per block kind and layout, one process, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "block_kinds.py"


def test_block_kinds_reports_every_kind_and_the_ratios(tmp_path):
    out = tmp_path / "kinds.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "4e3", "--warm", "2", "--iterations", "2",
                           "--repeat", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["threads"] == 1 and len(report["load_average"]) == 3
    assert [run["layout"] for run in report["runs"]] == ["random", "sorted"]
    for run in report["runs"]:
        kinds = {variant: run[variant]["block_kinds"] for variant in ("simplex", "boxcut", "box")}
        assert kinds == {"simplex": [1], "boxcut": [3], "box": [0]}
        assert run["simplex"]["nnz"] == run["boxcut"]["nnz"] == run["box"]["nnz"] > 1500
        assert not run["boxcut"]["fast_projection"] and run["simplex"]["fast_projection"]
        for variant in ("simplex", "boxcut", "box"):
            assert run[variant]["iteration_ms"] > 0 and run[variant]["exact_projection_ms"] > 0
        assert run["boxcut_exact"]["block_kinds"] == [3]
        assert min(run["boxcut_over_simplex"], run["box_over_simplex"], run["boxcut_exact_over_simplex"]) > 0
