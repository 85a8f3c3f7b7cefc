"""Reliability report: the fuzz campaign, infeasible/unbounded cases, bad inputs and scaling; prints JSON.

    python benchmarks/reliability_report.py --examples 1200          # writes benchmarks/results/reliability.json
    python benchmarks/reliability_report.py --examples 100 --no-scaling --out /tmp/r.json

1. fuzz: ``--examples`` random models from the families of tests/fuzz_models.py (split evenly), each solved
   by every importable backend and by scipy's linprog on the same LP written densely; every claim of each
   result is checked (status, objective, bound, primal feasibility, stated guarantees). ``disagreements``
   lists the unexpected ones (must be 0); ``known_issues`` counts those documented by strict xfail tests.
2. status_cases: the constructed and netlib infeasible/unbounded models of tests/test_parity.py, per backend,
   plus the fuzzed infeasible and unbounded models: detected or not, by backends that declare detection.
3. bad_inputs: each bad input tried and the error it raised (all must be ModelError before any solve).
4. precision: dualip float32 vs float64 on the parity models and the scaled matchings of the parity suite.
5. scaling: dualip on matchings whose costs, rows, entries or rhs spread over 1e-k..1e+k (k = 1..7), and
   per kind of spread the widest one every seed solved to OPTIMAL (``dualip_handles``).
6. files and faults: the outcome of each case of the test suite's crafted-file, failed-write, Ctrl-C, SIGKILL,
   resume and lost-rank tests (``AREAS``); ``wrong_answers`` (the fuzz disagreements) and ``lost_results``
   (failed fault cases) must be 0. Per fuzz family and backend, ``not_converged_rate``: the share of models
   with an optimum that ended at a limit.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the shared strategies, checks and parity models live there

import hypothesis  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

import dualip_model as dm  # noqa: E402
from fuzz_models import ALL_FAMILIES, KNOWN_ISSUES, config, needed_capabilities, run, specs  # noqa: E402


def backends() -> list[str]:
    """Every registered backend whose dependencies import here."""
    found = []
    for name in dm.registry.available():
        try:
            dm.registry.get(name)
        except ImportError:
            continue
        found.append(name)
    return found


# ----------------------------------------------------------------------------------------- 1. fuzz
def fuzz(examples: int, names: list[str], rng_seed: int) -> dict:
    """Run the campaign; per family and backend: reference status x backend status counts, time, findings."""
    per_family = -(-examples // len(ALL_FAMILIES))
    families, disagreements, known = {}, [], collections.Counter()
    known_examples = {}
    detection = {name: collections.Counter() for name in names}
    for family in ALL_FAMILIES:
        stats = {"models": 0, "backends": {name: {"statuses": collections.Counter(), "seconds": 0.0}
                                           for name in names}}

        @seed(rng_seed)
        @settings(max_examples=per_family, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(spec=specs(family))
        def campaign(spec):
            stats["models"] += 1
            for name in names:
                start = time.perf_counter()
                outcome = run(spec, name)
                mine = stats["backends"][name]
                mine["seconds"] += time.perf_counter() - start
                got = "compile error" if outcome.result is None else outcome.result.status.value
                mine["statuses"][f"{outcome.reference.status} -> {got}"] += 1
                if outcome.reference.status in ("infeasible", "unbounded"):
                    detection[name][f"{outcome.reference.status}: {got}"] += 1
                for d in outcome.disagreements:
                    if (name, d.kind) in KNOWN_ISSUES:
                        known[f"{name}: {d.kind}"] += 1
                        known_examples.setdefault(f"{name}: {d.kind}", {"message": d.message, "spec": repr(spec)})
                    else:
                        disagreements.append({"backend": name, "family": family, "kind": d.kind,
                                              "message": d.message, "spec": repr(spec)})

        campaign()
        for mine in stats["backends"].values():
            solvable = sum(n for key, n in mine["statuses"].items() if key.startswith("optimal -> "))
            limits = sum(n for key, n in mine["statuses"].items()
                         if key in ("optimal -> iteration_limit", "optimal -> time_limit"))
            # models with an optimum that the backend ended at a limit (the goal is 0)
            mine["not_converged_rate"] = round(limits / solvable, 4) if solvable else None
            mine["statuses"] = dict(mine["statuses"])
            mine["seconds"] = round(mine["seconds"], 2)
        families[family] = stats
    return {
        "models": sum(f["models"] for f in families.values()),
        "models_by_family": {family: f["models"] for family, f in families.items()},
        "families": families,
        "disagreements": disagreements,
        "known_issues": {key: {"count": count, "reason": KNOWN_ISSUES[tuple(key.split(": "))],
                               "first": known_examples[key]} for key, count in known.items()},
        "fuzzed_infeasible_unbounded": {name: dict(c) for name, c in detection.items()},
    }


# ----------------------------------------------------------------------------------------- files and faults
AREAS = {  # area -> (what each case shows, the test files and -k selection that hold its cases)
    "files": ("a crafted, truncated or oversized file is refused with a ModelError naming it before any large "
              "allocation, a loaded form passes compile()'s checks, and a write that fails half way leaves the "
              "previous file and no temporary",
              ["tests/test_untrusted_files.py", "tests/test_atomic_writes.py", "tests/test_standard_form_files.py"],
              None),
    "faults": ("Ctrl-C anywhere in a solve returns INTERRUPTED with the best result, SIGKILL during a save leaves "
               "the old or the new file, checkpoints resume bit for bit, a lost rank is named",
               ["tests/backends/dualip/test_termination.py", "tests/test_atomic_writes.py",
                "tests/backends/dualip/test_checkpoint.py", "tests/backends/dualip/test_distributed.py"],
               "ctrl_c or sigkill or resume or checkpoint or killed"),
}


def suite_areas() -> dict:
    """Per area, the outcome of each of its test cases (a pytest run over the files that hold them)."""
    import xml.etree.ElementTree as ElementTree

    out = {}
    for area, (shows, files, keyword) in AREAS.items():
        with tempfile.TemporaryDirectory() as tmp:
            junit = os.path.join(tmp, "junit.xml")
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *files]
            if keyword:
                command += ["-k", keyword]
            subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            cases = ElementTree.parse(junit).getroot().iter("testcase")
            outcome = collections.Counter()
            failed = []
            for case in cases:
                kind = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
                outcome[kind] += 1
                if kind in ("failure", "error"):
                    failed.append(f"{case.get('classname')}::{case.get('name')}")
        out[area] = {"shows": shows, "command": " ".join(command[1:]).replace(junit, "JUNIT"),
                     "cases": sum(outcome.values()), "passed": outcome["passed"], "skipped": outcome["skipped"],
                     "failed": failed}
    return out


# ----------------------------------------------------------------------------------------- 2. status cases
def status_cases(names: list[str]) -> dict:
    """Each constructed/netlib infeasible or unbounded model on each backend: status, detected, or why skipped."""
    from test_parity import DETECTS, STATUS_CASES, solve

    out = {}
    for case, (build, truth) in STATUS_CASES.items():
        model = build()
        row = {"truth": truth.value}
        for name in names:
            caps = dm.registry.get(name).capabilities
            missing = sorted(c.value for c in ({DETECTS[truth]} | needed_capabilities(model.compile())) - caps)
            if missing:
                row[name] = {"skipped": f"lacks {missing}"}
                continue
            start = time.perf_counter()
            res, _ = solve(model, name)
            row[name] = {"status": res.status.value, "detected": res.status == truth,
                         "seconds": round(time.perf_counter() - start, 2)}
        out[case] = row
    mild = mildly_infeasible(names)
    out["mildly_infeasible_matching"] = mild
    return out


def mildly_infeasible(names: list[str]) -> dict:
    """sum x >= 1.01 x (largest sum x) on a 12-user matching (tests/test_parity.py)."""
    from dualip_model.synthetic import matching_model, synthetic_matching

    row = {"truth": "infeasible"}
    for name in names:
        if dm.Capability.DETECTS_INFEASIBLE not in dm.registry.get(name).capabilities:
            row[name] = {"skipped": "lacks ['detects_infeasible']"}
            continue
        m = matching_model(synthetic_matching(12, 4, 0.5, seed=2))
        m.subject_to(m.variables["x"].sum() >= 1.01 * 11.0, name="impossible")
        res = m.solve(name, **config(name).options)
        row[name] = {"status": res.status.value, "detected": res.status == dm.Status.INFEASIBLE,
                     "iterations": res.iterations}
    return row


# ----------------------------------------------------------------------------------------- 3. bad inputs
def _tiny():
    """The model of tests/test_bad_input.py: 3 users x 2 items, 4 edges, variable x."""
    from test_bad_input import build

    m, users, items, _, x = build()
    return m, users, items, x


def _file_cases(tmp: str) -> list[tuple[str, object]]:
    """Corrupt, truncated and foreign model files."""
    from test_bad_input import AFIRO, TINY_MPS

    afiro = AFIRO.read_bytes()
    files = {
        "mps-garbage.mps": b"this is not an MPS file\n\x00\x01 garbage\n",
        "mps-empty.mps": b"",
        "mps-truncated-10pct.mps": afiro[: len(afiro) // 10],
        "mps-truncated-90pct.mps": afiro[: len(afiro) * 9 // 10],
        "mps-no-endata.mps": afiro[: afiro.rindex(b"ENDATA")],
        "mps-matrix-inf.mps": TINY_MPS.replace("X1        LIM2         1.0", "X1        LIM2         inf").encode(),
        "mps-cost-nan.mps": TINY_MPS.replace("2.0   LIM1", "nan   LIM1").encode(),
        "mps-bad-row-type.mps": TINY_MPS.replace(" G  LIM2", " Q  LIM2").encode(),
        "mps-gz-truncated-30pct.mps.gz": gzip.compress(afiro)[: len(gzip.compress(afiro)) * 3 // 10],
        "mps-undefined-row.mps": TINY_MPS.replace("X1        LIM2         1.0", "X1        NOPE         1.0").encode(),
        "mps-gz-truncated-50pct.mps.gz": gzip.compress(afiro)[: len(gzip.compress(afiro)) // 2],
        "missing-file.mps": None,
    }
    cases = []
    for name, data in files.items():
        path = os.path.join(tmp, name)
        if data is not None:
            with open(path, "wb") as fh:
                fh.write(data)
        cases.append((f"file: {name}", lambda path=path: dm.read_model(path)))
    return cases


@contextlib.contextmanager
def _index_limit(limit: int):
    """compile's int32 limit lowered, so the check is tried without 2^31-element arrays."""
    from dualip_model import compile as compile_module

    saved = compile_module.INDEX_LIMIT
    compile_module.INDEX_LIMIT = limit
    try:
        yield
    finally:
        compile_module.INDEX_LIMIT = saved


def _model_cases() -> list[tuple[str, object]]:
    """Bad models, data and options beyond the shared lists of tests/test_bad_input.py."""
    def on_tiny(make):
        def attempt():
            m, users, items, x = _tiny()
            return make(m, users, items, x)
        return attempt

    def compiled(make):
        def attempt():
            m, users, items, x = _tiny()
            make(m, users, items, x)
            return m.compile()
        return attempt

    def too_many_columns():
        with _index_limit(5):
            m, users, _, _ = _tiny()
            m.variable("y", over=users)
            return m.compile()

    def too_many_nonzeros():
        with _index_limit(5):  # 4 columns, 2 coupling rows, 8 nonzeros
            m, users, _, x = _tiny()
            m.subject_to((2 * x).sum() <= 1, name="row2")
            m.subject_to((3 * x).sum() <= 1, name="row3")
            return m.compile()

    def other_model_variable():
        m, *_ = _tiny()
        _, _, _, x2 = _tiny()
        return m.subject_to(x2.sum() <= 1, name="c")

    def other_model_standard_form():
        m, *_ = _tiny()
        other, users, _, x = _tiny()
        other.subject_to(x.sum(by=users) <= 1, name="one")
        return m.solve("highs", standard_form=other.compile())

    return [
        ("empty model", lambda: dm.Model("empty").solve("highs")),
        ("empty entity set", lambda: dm.Model().entities("user", [])),
        ("duplicate entity labels", lambda: dm.Model().entities("user", ["a", "b", "a"])),
        ("unknown edge label", on_tiny(lambda m, u, i, x: m.edges("p", u, i, src=["u0", "zz"], dst=["a", "a"]))),
        ("duplicate edge", on_tiny(lambda m, u, i, x: m.edges("p", u, i, src=["u0", "u0"], dst=["a", "a"]))),
        ("src/dst length mismatch", on_tiny(lambda m, u, i, x: m.edges("p", u, i, src=["u0", "u1"], dst=["a"]))),
        ("duplicate constraint name", on_tiny(lambda m, u, i, x: [m.subject_to(x.sum() <= 1, name="c"),
                                                                  m.subject_to(x.sum() <= 2, name="c")])),
        ("variable of another model", other_model_variable),
        ("standard form of another model", other_model_standard_form),
        ("NaN coefficient", on_tiny(lambda m, u, i, x: np.array([1.0, np.nan, 1.0, 1.0]) * x)),
        ("NaN rhs", on_tiny(lambda m, u, i, x: m.subject_to(x.sum(by=i) <= np.array([1.0, np.nan]), name="c"))),
        ("NaN bound", on_tiny(lambda m, u, i, x: m.variable("y", over=u, upper=np.array([1.0, np.nan, 1.0])))),
        ("lower bound above upper", on_tiny(lambda m, u, i, x: m.variable("y", over=u, lower=2.0, upper=1.0))),
        ("negative rhs empties a simplex block", compiled(lambda m, u, i, x: m.subject_to(
            x.sum(by=u) <= np.array([1.0, -1.0, 1.0]), name="one"))),
        ("negative upper bounds empty an equality block", compiled(lambda m, u, i, x: m.subject_to(
            m.variable("y", over=m.sets["e"], lower=-2.0, upper=-1.0).sum(by=u) == 1.0, name="eq"))),
        ("product of two expressions", on_tiny(lambda m, u, i, x: x * x)),
        ("int32 limit: columns (limit lowered to 5)", too_many_columns),
        ("int32 limit: coupling nonzeros (limit lowered to 5)", too_many_nonzeros),
        ("unknown backend", lambda: _tiny()[0].solve("gurobi")),
        ("unknown option", lambda: _tiny()[0].solve("highs", tolerance=1e-6)),
        ("invalid option value", lambda: _tiny()[0].solve("highs", threads=0)),
        ("invalid dualip option value", lambda: _tiny()[0].solve("dualip", tol=-1.0)),
    ]


def bad_inputs() -> list[dict]:
    """Every bad input tried; its error type and message, and whether a backend was reached."""
    from dualip_model.backends.highs import HighsBackend
    from test_bad_input import NAN_ELSEWHERE, OVERFLOW, SHAPES_AND_TYPES

    def on_tiny(make):
        def attempt():
            m, users, items, x = _tiny()
            return make(m, users, items, x)
        return attempt

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = ([(f"NaN/inf: {cid}", on_tiny(make)) for cid, make, _ in NAN_ELSEWHERE]
                 + [(f"shape/type: {cid}", on_tiny(make)) for cid, make, _ in SHAPES_AND_TYPES]
                 + [(f"overflow: {cid}", on_tiny(make)) for cid, make, _ in OVERFLOW]
                 + _model_cases() + _file_cases(tmp))
        solve = HighsBackend.solve
        reached = []
        HighsBackend.solve = lambda self, sf, options: reached.append(sf) or solve(self, sf, options)
        try:
            for name, attempt in cases:
                reached.clear()
                try:
                    attempt()
                    entry = {"input": name, "error": None, "message": "accepted (no error)"}
                except Exception as err:  # noqa: BLE001  (the report records whatever was raised)
                    entry = {"input": name, "error": type(err).__name__, "message": str(err)}
                entry["solved"] = bool(reached)
                out.append(entry)
        finally:
            HighsBackend.solve = solve
    return out


# ----------------------------------------------------------------------------------------- 4. precision
def precision(names: list[str]) -> dict:
    """Other working precisions (CONFIG.precisions) vs the default on the parity and scaled models."""
    from test_parity import PRECISION_CASES, SCALINGS, scaled_matching

    cases = dict(PRECISION_CASES)
    cases.update({f"scaled: {label}": (lambda kw=kw: scaled_matching(0, **kw)) for label, kw in SCALINGS.items()})
    out = {}
    for name in names:
        for label, other in config(name).precisions.items():
            rows = {}
            for case, build in cases.items():
                model = build()
                if needed_capabilities(model.compile()) - dm.registry.get(name).capabilities:
                    continue
                ref = model.solve("highs").objective
                base = model.solve(name, **config(name).options)
                res = model.solve(name, **other.options)
                scale = max(1.0, abs(ref))
                rows[case] = {"status": res.status.value, "default_status": base.status.value,
                              "difference": abs(res.objective - base.objective) / scale,
                              "error": abs(res.objective - ref) / scale,
                              "default_error": abs(base.objective - ref) / scale,
                              "iterations": res.iterations, "default_iterations": base.iterations}
            out[f"{name} {label}"] = rows
    return out


# ----------------------------------------------------------------------------------------- 5. scaling
def scaling(seeds: int) -> dict:
    """dualip (default options) on matchings scaled over 1e-k..1e+k, k = 1..7: statuses and errors per spread."""
    from test_parity import scaled_matching

    dims = {"costs": dict(costs=1), "rows": dict(rows=1), "entries": dict(entries=1), "rhs": dict(rhs=1),
            "costs+rows+rhs": dict(costs=1, rows=1, rhs=1), "all": dict(costs=1, rows=1, entries=1, rhs=1)}
    out = {}
    for dim, unit in dims.items():
        out[dim] = {}
        for k in range(1, 8):
            runs = []
            for s in range(seeds):
                model = scaled_matching(s, **{key: k for key in unit})  # 40 users x 6 items, as in the tests
                ref = model.solve("highs").objective
                res = model.solve("dualip", **config("dualip").options)
                runs.append({"status": res.status.value, "iterations": res.iterations,
                             "error": abs(res.objective - ref) / max(1.0, abs(ref)), "gap": res.gap})
            out[dim][f"1e-{k}..1e{k}"] = {"optimal": sum(r["status"] == "optimal" for r in runs), "of": seeds,
                                         "runs": runs}
    return out


def handled_range(table: dict) -> dict:
    """Per dimension, the widest spread 1e-k..1e+k up to which every seed reached OPTIMAL."""
    out = {}
    for dim, rows in table.items():
        widest = None
        for spread, row in rows.items():
            if row["optimal"] < row["of"]:
                break
            widest = spread
        out[dim] = widest
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1200, help="models to fuzz (split over the families)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scaling-seeds", type=int, default=5)
    parser.add_argument("--no-scaling", action="store_true", help="skip the (slow) scaling sweep")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: torch's thread pool costs more than it gives

    names = backends()
    start = time.perf_counter()
    report = {
        "command": "python benchmarks/reliability_report.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "hypothesis": hypothesis.__version__, "dualip_model": dm.__version__},
        "backends": names,
        "backends_not_importable": sorted(set(dm.registry.available()) - set(names)),
    }
    report["fuzz"] = fuzz(args.examples, names, args.seed)
    report["disagreements"] = len(report["fuzz"]["disagreements"])
    report["status_cases"] = status_cases(names)
    report["bad_inputs"] = bad_inputs()
    report["bad_inputs_not_refused"] = [b["input"] for b in report["bad_inputs"]
                                        if b["error"] != "ModelError" and b["error"] != "BackendNotFoundError"]
    report.update(suite_areas())
    report["wrong_answers"] = report["disagreements"]
    report["lost_results"] = len(report["faults"]["failed"])
    report["precision"] = precision(names)
    if not args.no_scaling and "dualip" in names:
        table = scaling(args.scaling_seeds)
        report["scaling"] = {"dualip_handles": handled_range(table), "table": table}
    report["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(report, indent=1, default=str)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
