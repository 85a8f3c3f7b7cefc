"""The family suite (issue 20): dualip, HiGHS IPM and OR-Tools PDLP on five LP families, side by side; prints JSON.

    python benchmarks/family_suite.py --sizes 5e4 --threads 1                     # the small size, one thread
    python benchmarks/family_suite.py --sizes 1e6 --threads 1,all --out benchmarks/results/family_suite_cpu.json

The families are those of benchmarks/families.py (power-law popularity, few users per item, multi-objective,
assignment, guaranteed delivery), each at about --sizes coupling nonzeros and for each of --seeds. Every
(family, size, seed) model is built and compiled once, then for each thread count in --threads (``all`` =
the machine's cores) solved by each of --solvers in the same process, one after the other:

- ``highs-ipm``: the ``highs`` backend, interior point (HiGHS's default crossover included), threads = t, its
  own tolerances; the reference of the objective errors;
- ``dualip``: the ``dualip`` backend with default options (``algorithm="auto"``: what a user gets) and
  tol = --tol, torch.set_num_threads(t); the speedups and the targets are this entry's;
- ``dualip-ascent`` and ``dualip-pdhg``: the same with ``algorithm="dual_ascent"`` (the ridge-regularized dual
  ascent alone) and ``algorithm="pdhg"`` (restarted Halpern PDHG over the blocks), the evidence for auto's rule;
- ``ortools-pdlp``: the ``ortools-pdlp`` backend (OR-Tools PDLP on the flat LP), relative and absolute KKT
  tolerance --tol, num_threads = t.

Each gets a time limit (--dualip-time-limit, --ipm-time-limit, --pdlp-time-limit). Per solve: status, wall
seconds of Model.solve (flattening or scaling included) and the solver's own seconds, iterations, the user-
sense objective and its relative error against IPM's, |f - f_ipm| / max(1, |f_ipm|), and from one function
for all solvers (``violation``) the largest violation of a coupling row, block sum or column bound at the
returned x, each relative to 1 + |side| (blocks included), and where it is. Each solver's row duals give a
Lagrangian bound L(y) = min_{x in C} (c - A^T y)^T x + h(y) over the exact block polytopes (valid for any
y, float64), so the bound of every solver is measured alike; ``certified_gap`` is the relative gap between
the objective and L(y) when the primal is feasible to 1e-9 (then both ends are certified), else null.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

import dualip_model as dm
from dualip_model.backends.dualip.backend import float64_certificate
from dualip_model.cli import native_stdout_to_stderr
from dualip_model.flat_lp import FlatLP, flat_lp
from dualip_model.polytopes import BlockKind
from dualip_model.status import relative_gap
from families import FAMILIES
from gpu_scale import emit, source_version

SOLVERS = ("highs-ipm", "dualip", "dualip-ascent", "dualip-pdhg", "ortools-pdlp")
ALGORITHMS = {"dualip": "auto", "dualip-ascent": "dual_ascent", "dualip-pdhg": "pdhg"}  # entry: algorithm
REFERENCE = "highs-ipm"
FEASIBLE = 1e-9  # a primal within this of every side (relative to 1 + |side|) is feasible: float64 rounding
WARM_UP_NNZ = 2_000  # each solver first solves the power-law family at this size (loads its code and threads)
WARM_UP_ITERATIONS = 50  # ... dualip and PDLP for this many iterations
TARGETS = {  # the targets (benchmarks, not timed tests); see targets()
    "large_nnz": 1e6, "large_min_speedup_vs_ipm": 10.0, "large_min_speedup_vs_pdlp": 1.0,
    "large_min_geomean_speedup_vs_pdlp": 3.0, "small_nnz": 5e4, "small_max_slowdown_vs_ipm": 2.0,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--sizes", default="5e4,1e6", help="comma-separated target coupling nonzero counts")
    parser.add_argument("--seeds", default="0", help="comma-separated generator seeds")
    parser.add_argument("--threads", default="1,all", help="comma-separated thread counts per solver; all = cores")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help=f"comma-separated, of {', '.join(SOLVERS)}")
    parser.add_argument("--tol", type=float, default=1e-4, help="dualip's tol and PDLP's KKT tolerances")
    parser.add_argument("--dualip-time-limit", type=float, default=600.0)
    parser.add_argument("--ipm-time-limit", type=float, default=600.0)
    parser.add_argument("--pdlp-time-limit", type=float, default=600.0)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    args.families = listed(parser, "--families", args.families, FAMILIES)
    args.solvers = listed(parser, "--solvers", args.solvers, SOLVERS)
    try:
        args.sizes = [round(float(s)) for s in args.sizes.split(",")]
        args.seeds = [int(s) for s in args.seeds.split(",")]
        args.threads = [(os.cpu_count() or 1) if t == "all" else int(t) for t in args.threads.split(",")]
    except ValueError as exc:
        parser.error(f"--sizes, --seeds and --threads take comma-separated numbers ('all' for threads): {exc}")
    if min(args.sizes) < 1 or min(args.threads) < 1:
        parser.error("--sizes and --threads must be >= 1")
    return args


def listed(parser: argparse.ArgumentParser, option: str, text: str, known) -> list[str]:
    """The comma-separated names of ``text``, each checked against ``known``."""
    names = [s for s in text.split(",") if s]
    unknown = [s for s in names if s not in known]
    if unknown or not names:
        parser.error(f"{option}: unknown or no names {unknown}; known: {', '.join(known)}")
    return names


# ------------------------------------------------------------------------------------------- measuring
def violation(sf: dm.StandardForm, flat: FlatLP, x: np.ndarray) -> tuple[float, str | None]:
    """max(0, l - a, a - u) / (1 + |that side|) over the rows of [A; B] (coupling rows, block sums) and the
    column bounds at x (compiled order), and the row, block or column where it is largest."""
    worst, where = 0.0, None
    for kind, activity, lower, upper in (("row", flat.A @ x, flat.row_lower, flat.row_upper),
                                         ("column", x, flat.col_lower, flat.col_upper)):
        with np.errstate(invalid="ignore"):
            below = np.where(np.isfinite(lower), (lower - activity) / (1.0 + np.abs(lower)), 0.0)
            above = np.where(np.isfinite(upper), (activity - upper) / (1.0 + np.abs(upper)), 0.0)
        v = np.maximum(below, above)
        if v.size and v.max() > worst:
            i = int(np.argmax(v))
            worst, where = float(v[i]), place(sf, flat, kind, i)
    return worst, where


def place(sf: dm.StandardForm, flat: FlatLP, kind: str, i: int) -> str:
    """The model's name of flat row i (a coupling row or a block sum) or compiled column i: 'budget[17]'."""
    if kind == "row" and i < sf.n_rows:
        slots, index = [s for s in sf.layout.constraints if s.kind == "rows"], i
    elif kind == "row":
        slots, index = [s for s in sf.layout.constraints if s.kind == "blocks"], int(flat.sum_blocks[i - sf.n_rows])
    else:
        order = sf.layout.column_order
        slots, index = sf.layout.variables, i if order is None else int(order[i])
    slot = next(s for s in slots if s.start <= index < s.stop)
    return f"{slot.name}[{index - slot.start}]" + (" (bounds)" if kind == "column" else "")


def lagrangian_bound(sf: dm.StandardForm, raw: dm.RawResult) -> float:
    """L(y) in minimization terms at the solver's row duals y (HiGHS's sign), a valid lower bound for any y:
    a dual of the wrong sign for a one-sided row is set to 0 first; NaN without duals."""
    if raw.row_dual is None or raw.x is None:
        return float("nan")
    y = -np.asarray(raw.row_dual, dtype=np.float64)  # the dualip solver's sign: y > 0 prices the upper side
    y[(y > 0) & ~np.isfinite(sf.row_upper)] = 0.0
    y[(y < 0) & ~np.isfinite(sf.row_lower)] = 0.0
    return float64_certificate(sf, np.asarray(raw.x, dtype=np.float64), y).bound


def finite(value: float) -> float | None:
    """value, or None where it is NaN or infinite (JSON has neither)."""
    return value if math.isfinite(value) else None


def solve(model: dm.Model, sf: dm.StandardForm, solver: str, threads: int, args, **limits) -> dm.Result:
    """One solve on ``solver`` with ``threads`` threads and its time limit (``limits``: further options)."""
    if solver == "highs-ipm":
        return model.solve("highs", standard_form=sf, solver="ipm", threads=threads, time_limit=args.ipm_time_limit,
                           **limits)
    if solver in ALGORITHMS:
        torch.set_num_threads(threads)
        return model.solve("dualip", standard_form=sf, algorithm=ALGORITHMS[solver], tol=args.tol,
                           time_limit=args.dualip_time_limit, **limits)
    return model.solve("ortools-pdlp", standard_form=sf, tol=args.tol, threads=threads,
                       time_limit=args.pdlp_time_limit, **limits)


def measure(model: dm.Model, sf: dm.StandardForm, flat: FlatLP, solver: str, threads: int, args,
            reference: dict | None) -> dict:
    """Solve and report status, times, iterations, objective error, violation, bounds (module docstring)."""
    start = time.perf_counter()
    try:
        res = solve(model, sf, solver, threads, args)
    except Exception as exc:  # noqa: BLE001  (a failed solver is recorded; the others still run)
        return {"error": f"{type(exc).__name__}: {exc}", "seconds": round(time.perf_counter() - start, 3)}
    wall = time.perf_counter() - start
    raw, sense = res.raw, sf.layout.sense
    out = {"status": res.status.value, "message": res.message, "seconds": round(wall, 3),
           "solver_seconds": round(res.solve_time, 3), "iterations": res.iterations}
    if raw.x is None:
        return out
    worst, where = violation(sf, flat, np.asarray(raw.x, dtype=np.float64))
    bound = lagrangian_bound(sf, raw)
    gap = finite(relative_gap(raw.objective, bound))
    out.update({
        "objective": res.objective, "max_row_violation": worst, "violated_at": where,
        "own_bound": finite(res.bound),
        "own_bound_certified": dm.Capability.CERTIFIED_BOUND in dm.registry.get(res.backend).capabilities,
        "lagrangian_bound": finite(sense * bound), "gap_to_lagrangian_bound": gap,
        "certified_gap": gap if worst <= FEASIBLE else None,
    })
    if reference is not None and "objective" in reference and reference["status"] == dm.Status.OPTIMAL.value:
        out["rel_objective_error"] = abs(res.objective - reference["objective"]) / max(1.0, abs(reference["objective"]))
    return out


# ------------------------------------------------------------------------------------------- runs
def run_model(family: str, size: int, seed: int, args) -> list[dict]:
    """One (family, size, seed): build and compile once, then every thread count x solver."""
    start = time.perf_counter()
    model = FAMILIES[family](size, seed)
    build = time.perf_counter() - start
    start = time.perf_counter()
    sf = model.compile()
    compile_seconds = time.perf_counter() - start
    flat = flat_lp(sf)
    shape = {
        "family": family, "size": size, "seed": seed, "nnz": sf.nnz, "flat_nnz": flat.A.nnz, "rows_m": sf.n_rows,
        "columns_n": sf.n_cols, "blocks": sf.n_blocks,
        "block_kinds": {BlockKind(k).name.lower(): int(c) for k, c in enumerate(np.bincount(sf.block_kind))
                        if c},
        "build_seconds": round(build, 3), "compile_seconds": round(compile_seconds, 3),
    }
    print(f"{family} {size:g} seed {seed}: {sf.nnz} nonzeros, {sf.n_rows} rows, {sf.n_blocks} blocks",
          file=sys.stderr)
    runs = []
    for threads in args.threads:
        run = {**shape, "threads": threads}
        reference = None
        for solver in sorted(args.solvers, key=lambda s: s != REFERENCE):  # the reference first
            with native_stdout_to_stderr():  # HiGHS's banner goes to stderr: stdout is the JSON alone
                run[solver] = measure(model, sf, flat, solver, threads, args, reference)
            if solver == REFERENCE:
                reference = run[solver]
            print(f"  threads {threads} {solver}: {run[solver].get('status', run[solver].get('error'))} in "
                  f"{run[solver]['seconds']} s", file=sys.stderr)
        runs.append(run)
    return runs


def warm_up(args) -> None:
    """Each solver once on a tiny power-law model (the first-order ones for WARM_UP_ITERATIONS): loads torch's
    kernels, HiGHS's and OR-Tools' libraries."""
    model = FAMILIES["power_law"](WARM_UP_NNZ, 0)
    sf = model.compile()
    with native_stdout_to_stderr():
        for solver in args.solvers:
            solve(model, sf, solver, 1, args, **({} if solver == "highs-ipm" else {"max_iter": WARM_UP_ITERATIONS}))


def speedup(run: dict, peer: str) -> float | None:
    """peer seconds / dualip seconds, where both reached OPTIMAL."""
    d, p = run.get("dualip", {}), run.get(peer, {})
    if d.get("status") != "optimal" or p.get("status") != "optimal":
        return None
    return round(p["seconds"] / d["seconds"], 3)


def summary(runs: list[dict]) -> list[dict]:
    """One line per (family, size, seed, threads): each solver's status, seconds, iterations, error, violation."""
    rows = []
    for run in runs:
        row = {k: run[k] for k in ("family", "size", "seed", "threads", "nnz")}
        for solver in SOLVERS:
            if solver in run:
                r = run[solver]
                row[solver] = {k: r.get(k) for k in ("status", "seconds", "iterations", "rel_objective_error",
                                                     "max_row_violation", "certified_gap")}
                if "error" in r:
                    row[solver]["error"] = r["error"]
        row["dualip_speedup_vs_ipm"] = speedup(run, "highs-ipm")
        row["dualip_speedup_vs_pdlp"] = speedup(run, "ortools-pdlp")
        rows.append(row)
    return rows


def targets(runs: list[dict]) -> list[dict]:
    """Per (size, threads): the issue's targets against the figures (median over seeds of each family's speedup).

    At >= TARGETS["large_nnz"] nonzeros: dualip OPTIMAL (certified tol) on every family, >= 10x IPM and
    faster than PDLP on each, >= 3x PDLP as the geometric mean over the families; at <= small_nnz: no family
    more than 2x slower than IPM. A speedup that cannot be measured (a solver not OPTIMAL) fails its target.
    """
    out = []
    for size in sorted({r["size"] for r in runs}):
        for threads in sorted({r["threads"] for r in runs}):
            group = [r for r in runs if r["size"] == size and r["threads"] == threads]
            per_family = {}
            for family in dict.fromkeys(r["family"] for r in group):
                mine = [r for r in group if r["family"] == family]
                ipm = [speedup(r, "highs-ipm") for r in mine]
                pdlp = [speedup(r, "ortools-pdlp") for r in mine]
                per_family[family] = {
                    "dualip_optimal": all(r.get("dualip", {}).get("status") == "optimal" for r in mine),
                    "speedup_vs_ipm": None if None in ipm else statistics.median(ipm),
                    "speedup_vs_pdlp": None if None in pdlp else statistics.median(pdlp),
                }
            ipm_all = [f["speedup_vs_ipm"] for f in per_family.values()]
            pdlp_all = [f["speedup_vs_pdlp"] for f in per_family.values()]
            geomean = None if None in pdlp_all else round(math.exp(statistics.fmean(map(math.log, pdlp_all))), 3)
            entry = {"size": size, "threads": threads, "families": per_family, "geomean_speedup_vs_pdlp": geomean}
            if size >= TARGETS["large_nnz"]:
                entry["met"] = {
                    "certified_tol_everywhere": all(f["dualip_optimal"] for f in per_family.values()),
                    "speedup_vs_ipm_at_least_10x": None not in ipm_all
                    and min(ipm_all) >= TARGETS["large_min_speedup_vs_ipm"],
                    "faster_than_pdlp_everywhere": None not in pdlp_all
                    and min(pdlp_all) > TARGETS["large_min_speedup_vs_pdlp"],
                    "geomean_vs_pdlp_at_least_3x": (geomean or 0) >= TARGETS["large_min_geomean_speedup_vs_pdlp"],
                }
            elif size <= TARGETS["small_nnz"]:
                entry["met"] = {"at_most_2x_slower_than_ipm": None not in ipm_all
                                and min(ipm_all) >= 1 / TARGETS["small_max_slowdown_vs_ipm"]}
            out.append(entry)
    return out


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(argv=None) -> None:
    args = parse_args(argv)
    load_before = os.getloadavg()
    report = {
        "benchmark": "family_suite", "families": args.families, "sizes": args.sizes, "seeds": args.seeds,
        "threads": args.threads, "solvers": args.solvers, "tol": args.tol,
        "time_limits": {"dualip": args.dualip_time_limit, "highs-ipm": args.ipm_time_limit,
                        "ortools-pdlp": args.pdlp_time_limit},
        "command": " ".join(["python", "benchmarks/family_suite.py", *(sys.argv[1:] if argv is None else argv)]),
        "source": source_version(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "arch": platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "highspy": package_version("highspy"), "ortools": package_version("ortools")},
        "families_described": {f: FAMILIES[f].__doc__.splitlines()[0] for f in args.families},
        "notes": {
            "size": "target nonzeros of the coupling matrix A (StandardForm.nnz); nnz is the count reached, "
                    "flat_nnz that of the flat LP [A; B] the general solvers get (one more entry per column of "
                    "a sum block)",
            "seconds": "wall seconds of Model.solve on the compiled form: HiGHS's and PDLP's include flattening "
                       "the blocks into rows and passing the model, dualip's its scaling, setup and float64 "
                       "certificate; solver_seconds is each solver's own clock",
            "iterations": "dualip: the iterations of the method(s) auto ran (its message names them); dualip-ascent: "
                          "dual ascent iterations; dualip-pdhg: PDHG iterations; HiGHS: its largest count "
                          "(IPM iterations, or the crossover's simplex iterations if more); PDLP: PDHG iterations",
            "rel_objective_error": "|objective - IPM's| / max(1, |IPM's|), user sense, where IPM is optimal",
            "max_row_violation": "largest violation of a coupling row, block sum or column bound at the returned "
                                 "x, relative to 1 + |side|, from one function for every solver; violated_at "
                                 "names the row",
            "bounds": "lagrangian_bound: L(y) at the solver's row duals over the exact block polytopes (float64, "
                      "a valid bound on the optimum for any y); own_bound: the solver's reported bound, "
                      "certified only where own_bound_certified (PDLP's is its dual objective); "
                      "certified_gap: relative gap of objective and lagrangian_bound where the primal is "
                      f"feasible to {FEASIBLE:g}, else null (then the objective is no bound)",
            "tolerances": "dualip stops at certified relative gap and relative infeasibility <= tol; PDLP at "
                          "relative KKT residuals <= tol (its rows may stay violated by more); HiGHS IPM at its "
                          "default tolerances, with crossover",
            "order": "per thread count the solvers run one after the other in this process, IPM first; each "
                     "solver first solved a tiny power-law model (warm-up; dualip and PDLP for "
                     f"{WARM_UP_ITERATIONS} iterations)",
        },
    }
    torch_threads = torch.get_num_threads()
    warm_up(args)
    runs = [run for family in args.families for size in args.sizes for seed in args.seeds
            for run in run_model(family, size, seed, args)]
    torch.set_num_threads(torch_threads)
    report["load_average_1min_5min_before"] = [round(v, 2) for v in load_before[:2]]
    report["load_average_1min_5min_after"] = [round(v, 2) for v in os.getloadavg()[:2]]
    report["summary"] = summary(runs)
    report["targets"] = targets(runs)
    report["runs"] = runs
    emit(report, args.out)


if __name__ == "__main__":
    main()
