"""The command line: solve, compare and describe model files (``python -m dualip_model --help``).

Exit codes: 0 solved to optimality (every backend, for compare), 1 solved with another status
(infeasible, unbounded, iteration or time limit, interrupted), 2 bad usage or input (a one-line message
on stderr naming the file, backend or option, no traceback; checked before solving), or an output that
could not be written after all (the result is printed, with the path that failed), 3 a sharded job lost a
rank, 130 Ctrl-C outside a solver that handles it.

A model file's kind is read from its content: a standard form saved by ``StandardForm.save`` (.npz or
.safetensors), a gzipped or plain MPS/LP text file. Every file written (--out, --duals, --plot,
--write-model) is written atomically (``atomic.atomic_write``).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys

import numpy as np
import pandas as pd

from . import registry
from .backend import Capability
from .atomic import atomic_write, check_writable, check_writable_directory, write_table
from .errors import BackendNotFoundError, CapabilityError, DistributedError, ModelError
from .polytopes import BlockKind
from .status import Status

EXIT_OPTIMAL, EXIT_NOT_OPTIMAL, EXIT_USAGE, EXIT_LOST_RANK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
FLAGS = {"device": "--device", "engine": "--engine", "tol": "--tol", "max_iter": "--max-iter",
         "time_limit": "--time-limit"}
TABLE_FORMATS = (".parquet", ".csv")

_EPILOG = """\
examples:
  python -m dualip_model info model.mps
  python -m dualip_model solve model.mps --backend dualip --tol 1e-4 --out x.parquet --duals y.parquet
  python -m dualip_model solve model.lp --backend highs --option solver=ipm --option threads=2 --json
  python -m dualip_model compare model.mps --backends highs,dualip --time-limit 60 --out table.csv
  torchrun --nproc-per-node 4 -m dualip_model solve-sharded model.npz --out x/ --option checkpoint=ckpt

exit codes: 0 optimal, 1 another status (infeasible, unbounded, limits), 2 usage or input error,
3 a sharded job lost a rank
"""


# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m dualip_model`` (subcommands solve, compare, info)."""
    parser = argparse.ArgumentParser(
        prog="python -m dualip_model", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Solve, compare and describe LP/MPS model files with the dualip_model backends "
                    f"(available: {', '.join(registry.available())}).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    solve = sub.add_parser("solve", help="solve a model file on one backend",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
                           description="Read a model file (LP/MPS, or a saved standard form; the kind from its "
                                       "content), solve it on one backend, print the result and write the primal "
                                       "and duals. Exit code 0 when optimal, 1 otherwise.")
    _model_argument(solve)
    solve.add_argument("--backend", default="highs", metavar="NAME",
                       help="backend to solve with (default: highs; see 'info' or the README for the list)")
    _option_arguments(solve, "the backend's options; a flag the backend has no option for is an error")
    solve.add_argument("--out", metavar="PATH",
                       help="write the primal as a table (one column per label level, for a file 'columns'; "
                            "then 'value'): .parquet or .csv")
    solve.add_argument("--duals", metavar="PATH",
                       help="write the row duals d(objective)/d(rhs) (columns 'constraint', 'row', 'dual', "
                            "'activity', 'slack'): .parquet or .csv")
    solve.add_argument("--write-model", metavar="PATH",
                       help="also write the model as read to an .mps or .lp file (before solving)")
    solve.add_argument("--plot", metavar="PATH", help="save the convergence plot (needs matplotlib), e.g. conv.png")
    solve.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")

    compare = sub.add_parser("compare", help="solve a model file on several backends and tabulate the results",
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
                             description="Solve one model on several backends and print a table of status, "
                                         "objective, bound, gap, time, iterations and the objective's relative "
                                         "difference to the exact (highs) optimum. Exit code 0 when every "
                                         "backend is optimal, 1 otherwise.")
    _model_argument(compare)
    compare.add_argument("--backends", default="highs,dualip", metavar="A,B",
                         help="comma-separated backend names (default: highs,dualip)")
    _option_arguments(compare, "options for every compared backend that has them; an option none of them "
                               "has is an error")
    compare.add_argument("--out", metavar="PATH", help="write the table: .csv or .parquet")
    compare.add_argument("--plot", metavar="PATH", help="save the overlaid convergence plots, e.g. conv.png")
    compare.add_argument("--json", action="store_true", help="print the table as JSON records on stdout")

    sharded = sub.add_parser(
        "solve-sharded", help="solve a saved standard form as one rank of a torchrun job (dualip)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Run under torchrun: every rank reads only its shard (contiguous blocks of even work) of a "
                    "standard form saved with StandardForm.save, and the ranks solve it together with the dualip "
                    "backend on torch.distributed (nccl on GPUs, gloo otherwise). Rank 0 prints the result. "
                    "Exit code 0 when optimal, 1 otherwise, 3 when a rank was lost.")
    sharded.add_argument("model", metavar="FILE",
                         help="a standard form written by StandardForm.save (.npz or .safetensors)")
    _option_arguments(sharded, "DualipOptions fields; checkpoint/resume name a directory (any number of ranks "
                               "can resume from it)")
    sharded.add_argument("--out", metavar="DIR",
                         help="directory: each rank writes its primal to x-RANK-of-WORLD.parquet (columns 'column', "
                              "the model column index, and 'value')")
    sharded.add_argument("--duals", metavar="PATH",
                         help="rank 0 writes the row duals (columns 'constraint', 'row', 'dual'): .parquet or .csv")
    sharded.add_argument("--distributed-backend", choices=("nccl", "gloo"),
                         help="torch.distributed backend (default: nccl when CUDA is available, else gloo)")
    sharded.add_argument("--json", action="store_true", help="rank 0 prints the result as one JSON object")

    info = sub.add_parser("info", help="describe a model file: sizes, blocks, bounds, coefficient ranges",
                          formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
                          description="Print the size of a model file (rows, columns, nonzeros), its blocks "
                                      "by kind, a summary of its column and row bounds, its coefficient "
                                      "ranges, and how many rows are sums over disjoint nonnegative columns "
                                      "(rows that could be written as simplex blocks).")
    _model_argument(info)
    info.add_argument("--json", action="store_true", help="print the description as one JSON object")
    return parser


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="an .mps or .lp file (also gzipped), or a standard form saved by StandardForm.save "
                             "(.npz or .safetensors); the kind is read from the file's content, not its name")
    parser.add_argument("--no-detect-blocks", dest="detect_blocks", action="store_false",
                        help="keep every row a coupling row (default: rows that are positive sums over disjoint "
                             "nonnegative columns are solved as simplex blocks; see docs/standard_form.md)")


def _option_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("solver options", what)
    group.add_argument("--device", metavar="DEV", help="torch device, e.g. cpu or cuda (dualip)")
    group.add_argument("--engine", metavar="NAME",
                       help="how the iteration runs (dualip): auto, torch, compact, compiled or fused_cpu")
    group.add_argument("--tol", type=float, metavar="TOL",
                       help="relative infeasibility and gap tolerance (dualip; default 1e-4)")
    group.add_argument("--max-iter", type=int, metavar="N", help="iteration limit (dualip)")
    group.add_argument("--time-limit", type=float, metavar="S", help="time limit in seconds (highs, dualip)")
    group.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="any other field of the backend's Options dataclass, e.g. solver=ipm, threads=2, "
                            "dtype=float32, check_every=10 (repeatable; true/false/none, numbers or text)")
    group.add_argument("--progress", action="store_true",
                       help="show live progress on stderr (backends with a history callback, e.g. dualip)")


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    package_logger = logging.getLogger("dualip_model")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    try:
        command = {"solve": _solve, "compare": _compare, "info": _info, "solve-sharded": _solve_sharded}[args.command]
        code, text = command(args)
    except DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOST_RANK
    except (ModelError, BackendNotFoundError, CapabilityError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(old_level)
    if text:
        print(text)
    return code


@contextlib.contextmanager
def native_stdout_to_stderr():
    """Meanwhile, send what native code prints on file descriptor 1 (HiGHS's banner) to descriptor 2.

    Keeps stdout for the command's own output (``--json`` stays parseable).
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1: nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ---------------------------------------------------------------------------------------------- solve
def _solve(args) -> tuple[int, str]:
    from .io import read_model, write_model
    from .progress import Progress

    solver = registry.get(args.backend)
    fields = {f.name for f in dataclasses.fields(solver.Options)}
    given = _setting_values(args)
    for key, (_, flag) in given.items():
        if key not in fields:
            raise ModelError(f"backend '{args.backend}' has no option '{key}' (given by {flag}); "
                             f"its options: {', '.join(sorted(fields))}")
    values = {key: value for key, (value, _) in given.items()}
    progress = None
    if args.progress:
        if "callback" not in fields:
            raise ModelError(f"backend '{args.backend}' reports no progress (its options have no 'callback'); "
                             f"drop --progress")
        progress = Progress(description=args.backend)
        values["callback"] = progress
    if args.duals and Capability.DUALS not in solver.capabilities:
        raise CapabilityError(f"backend '{args.backend}' returns no duals (--duals)")
    for flag, path in (("--out", args.out), ("--duals", args.duals)):
        if path:
            _check_table_path(path, flag)
    if args.write_model:
        check_writable(args.write_model, "--write-model")
    if args.plot:
        _check_plot_path(args.plot)

    from .compare import backend_options

    _check_option_types({args.backend: solver.Options}, given)
    options = backend_options(args.backend, values)
    with native_stdout_to_stderr():
        model = read_model(args.model, detect_blocks=args.detect_blocks)
        if args.write_model:
            write_model(model, args.write_model)
        try:
            result = model.solve(args.backend, options)
        finally:
            if progress is not None:
                progress.close()
    written, failed = {}, []
    if result.raw.x is not None:
        if args.out:
            _write_output(written, failed, "out", args.out, lambda: write_table(_primal_frame(result), args.out, "--out"))
        if args.duals:
            if result.raw.row_dual is None:
                print(f"warning: backend '{args.backend}' returned no duals ({result.status}); "
                      f"{args.duals} not written", file=sys.stderr)
            else:
                _write_output(written, failed, "duals", args.duals,
                              lambda: write_table(_dual_frame(result), args.duals, "--duals"))
    elif args.out or args.duals:
        print(f"warning: no primal solution ({result.status}); nothing written to --out/--duals", file=sys.stderr)
    if args.plot:
        _write_output(written, failed, "plot", args.plot, lambda: _save_plot(result, args.plot))
    if args.write_model:
        written["model"] = args.write_model
    code = _exit_code(result.status == Status.OPTIMAL, failed)
    if args.json:
        sf = result.standard_form
        return code, json.dumps({
            "model": model.name, "file": args.model, "backend": args.backend, "status": result.status.value,
            "objective": _number(result.objective), "bound": _number(result.bound), "gap": _number(result.gap),
            "iterations": int(result.iterations), "solve_time": _number(result.solve_time),
            "message": result.message, "guarantees": list(result.guarantees),
            "columns": sf.n_cols, "rows": sf.n_rows, "nonzeros": sf.nnz, "written": written,
        })
    lines = [str(result)] + [f"  wrote      {path} ({what})" for what, path in written.items()]
    return code, "\n".join(lines + failed)


# ---------------------------------------------------------------------------------------------- solve-sharded
def _solve_sharded(args) -> tuple[int, str]:
    """One rank's part of ``torchrun ... -m dualip_model solve-sharded FILE``; rank 0 reports."""
    import torch.distributed as dist

    from .backends.dualip.distributed import init_process_group, solve_sharded
    from .compare import backend_options
    from .progress import Progress

    given = _setting_values(args)
    values = {key: value for key, (value, _) in given.items()}
    if args.duals:
        _check_table_path(args.duals, "--duals")
    if args.out:
        check_writable_directory(args.out, "--out")
    _check_option_types({"dualip": registry.get("dualip").Options}, given)
    options = backend_options("dualip", values)
    comm = init_process_group(args.distributed_backend)
    progress = Progress(description="dualip sharded") if args.progress and comm.rank == 0 else None
    broken = False
    try:
        if progress is not None:
            options = dataclasses.replace(options, callback=progress)
        result = solve_sharded(args.model, options, comm)
        written = {}
        if args.out and result.x is not None:
            written["out"] = result.save(args.out)
        if args.duals and comm.rank == 0 and result.row_dual is not None:
            write_table(_sharded_dual_frame(result), args.duals, "--duals")
            written["duals"] = args.duals
        comm.barrier()  # every rank's file is written before rank 0 reports
    except DistributedError:
        broken = True  # destroying a group that lost a rank can abort the process: leave it to the exit
        raise
    finally:
        if progress is not None:
            progress.close()
        if not broken:
            dist.destroy_process_group()
    code = EXIT_OPTIMAL if result.status == Status.OPTIMAL else EXIT_NOT_OPTIMAL
    if comm.rank != 0:
        return code, ""
    summary = {"file": args.model, "ranks": result.world, "status": result.status.value,
               "objective": _number(result.objective), "bound": _number(result.bound), "gap": _number(result.gap),
               "iterations": int(result.iterations), "solve_time": _number(result.solve_time),
               "message": result.message, "guarantees": list(result.guarantees), "written": written}
    if args.json:
        return code, json.dumps(summary)
    lines = [f"{args.model} on {result.world} ranks: {result.status.value}",
             f"  objective  {result.objective:.10g}", f"  bound      {result.bound:.10g}",
             f"  gap        {result.gap:.3g}", f"  iterations {result.iterations}",
             f"  time       {result.solve_time:.3f} s"]
    lines += [f"  wrote      {path} ({what})" for what, path in written.items()]
    return code, "\n".join(lines)


def _sharded_dual_frame(result) -> pd.DataFrame:
    """Row duals by constraint family of the layout: columns 'constraint', 'row' (index in the family), 'dual'."""
    frames = [pd.DataFrame({"constraint": slot.name, "row": np.arange(slot.stop - slot.start),
                            "dual": result.row_dual[slot.start:slot.stop]})
              for slot in result.layout.constraints if slot.kind == "rows"]
    if not frames:
        return pd.DataFrame({"constraint": pd.Series(dtype=str), "row": pd.Series(dtype=np.int64),
                             "dual": pd.Series(dtype=np.float64)})
    return pd.concat(frames, ignore_index=True)


def _setting_values(args) -> dict[str, tuple[object, str]]:
    """Options given on the command line: field -> (value, the flag that gave it)."""
    given = {key: (getattr(args, key), flag) for key, flag in FLAGS.items() if getattr(args, key) is not None}
    for item in args.option:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ModelError(f"--option {item!r}: expected KEY=VALUE, e.g. --option threads=2")
        if key == "callback":
            raise ModelError(f"--option {item!r}: a callback cannot be given on the command line (see --progress)")
        if key in given:
            raise ModelError(f"option '{key}' given twice ({given[key][1]} and --option {item})")
        given[key] = (_parse_value(text.strip()), f"--option {item}")
    return given


def _parse_value(text: str):
    """A command-line option value: true/false, none, an int, a float, else the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if lowered in ("inf", "+inf", "-inf", "nan"):
        return float(lowered)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else text


def _primal_frame(result) -> pd.DataFrame:
    """The primal with one column per label level (for a file: 'columns', the column names) and 'value'; with
    several variables (a saved standard form's), a 'variable' column first and each one's label columns."""
    names = list(result.model.variables)
    if len(names) == 1:
        return result.to_frame()
    return pd.concat([result.to_frame(name).assign(variable=name) for name in names], ignore_index=True)[
        lambda f: ["variable", *(c for c in f.columns if c != "variable")]]


def _dual_frame(result) -> pd.DataFrame:
    """Duals of every constraint family: columns 'constraint', 'row', 'dual', 'activity', 'slack'."""
    frames = []
    for name in result.model.constraints:
        duals = result.dual(name)
        duals = duals if isinstance(duals, pd.Series) else pd.Series([duals], index=[name])  # a global constraint
        activity, slack = result.activity(name)
        frames.append(pd.DataFrame({"constraint": name, "row": duals.index.to_numpy(), "dual": duals.to_numpy(),
                                    "activity": activity, "slack": slack}))
    if not frames:
        return pd.DataFrame({"constraint": pd.Series(dtype=str), "row": pd.Series(dtype=str),
                             **{k: pd.Series(dtype=np.float64) for k in ("dual", "activity", "slack")}})
    return pd.concat(frames, ignore_index=True)


def _check_table_path(path: str, flag: str) -> None:
    """Before solving: a known table suffix and a path a file can be written at."""
    if not path.lower().endswith(TABLE_FORMATS):
        raise ModelError(f"{flag} {path}: unknown table format; use a name ending in {' or '.join(TABLE_FORMATS)}")
    check_writable(path, flag)


def _check_plot_path(path: str) -> None:
    """Before solving: matplotlib present, an image format it writes, and a writable path."""
    figure = _figure_class(path)
    formats = figure().canvas.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in formats:
        raise ModelError(f"--plot {path}: unknown image format {suffix!r}; use one of {', '.join(sorted(formats))}")
    check_writable(path, "--plot")


def _figure_class(path: str):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ModelError(f"--plot {path}: plotting needs matplotlib (pip install matplotlib)") from exc
    return Figure


def _save_plot(results, path: str) -> None:
    """Save plot_history(results) to ``path`` atomically, without pyplot (no window, no global backend change)."""
    from .plotting import PANELS, plot_history

    fig = _figure_class(path)(figsize=(4.5 * len(PANELS), 3.6), layout="constrained")
    plot_history(results, ax=fig.subplots(1, len(PANELS)))
    with atomic_write(path, "--plot") as tmp:  # tmp keeps the suffix matplotlib reads the format from
        fig.savefig(tmp)


def _write_output(written: dict, failed: list, what: str, path: str, write) -> None:
    """Run ``write``; on ModelError keep going (the result is printed all the same) and note where it failed."""
    try:
        write()
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        failed.append(f"  NOT written {path} ({what}): {exc}")
        return
    written[what] = path


def _exit_code(optimal: bool, failed: list) -> int:
    """2 when an output could not be written (the result was still printed), else 0 optimal / 1 another status."""
    if failed:
        return EXIT_USAGE
    return EXIT_OPTIMAL if optimal else EXIT_NOT_OPTIMAL


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_option_types(options_classes: dict, given: dict) -> None:
    """Refuse, before anything is read or solved, a command-line option whose value has the wrong type for the
    field of every backend's Options dataclass that has it (``--option check_every=2.5``: not an integer)."""
    for key, (value, flag) in given.items():
        for backend, cls in options_classes.items():
            field = next((f for f in dataclasses.fields(cls) if f.name == key), None)
            if field is None or not isinstance(field.type, str):
                continue
            parts = [p.strip() for p in field.type.split("|")]
            if any(p not in _TYPES and p != "None" for p in parts):
                continue  # a type the command line cannot spell (Any, a callable): the Options class checks it
            if value is None and "None" in parts:
                continue
            allowed = tuple(t for p in parts for t in _TYPES.get(p, ()))
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed) \
                    or (isinstance(value, float) and math.isnan(value)):
                spelled = " or ".join({"int": "an integer", "float": "a number", "bool": "true or false",
                                       "str": "text", "None": "none"}[p] for p in parts)
                raise ModelError(f"{flag}: {backend} option '{key}' takes {spelled}, not {value!r}")


def _number(value) -> float | None:
    """A float for JSON: None for NaN and infinities (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------- compare
def _compare(args) -> tuple[int, str]:
    from .compare import compare
    from .io import read_model
    from .progress import Progress

    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if not names:
        raise ModelError(f"--backends {args.backends!r}: no backend names")
    solvers = {name: registry.get(name) for name in names}
    values = {key: value for key, (value, _) in _setting_values(args).items()}
    per_backend, progresses = {}, []
    if args.progress:
        for name, solver in solvers.items():
            if "callback" in {f.name for f in dataclasses.fields(solver.Options)}:
                progresses.append(Progress(description=name))
                per_backend[name] = {"callback": progresses[-1]}
        if not progresses:
            raise ModelError(f"--progress: none of the compared backends ({', '.join(names)}) reports progress")
    if args.out:
        _check_table_path(args.out, "--out")
    if args.plot:
        _check_plot_path(args.plot)
    _check_option_types({name: solver.Options for name, solver in solvers.items()}, _setting_values(args))
    with native_stdout_to_stderr():
        try:
            comparison = compare(read_model(args.model, detect_blocks=args.detect_blocks), names,
                                 options=per_backend, **values)
        finally:
            for progress in progresses:
                progress.close()
    table = comparison.table
    written, failed = {}, []
    if args.out:
        _write_output(written, failed, "out", args.out, lambda: write_table(table.reset_index(), args.out, "--out"))
    if args.plot:
        _write_output(written, failed, "plot", args.plot, lambda: _save_plot(comparison.results, args.plot))
    all_optimal = all(r.status == Status.OPTIMAL for r in comparison.results.values())
    code = _exit_code(all_optimal, failed)
    if args.json:
        records = [{"backend": name, **{k: _json_cell(v) for k, v in row.items()}}
                   for name, row in table.to_dict(orient="index").items()]
        return code, json.dumps({"file": args.model, "reference": comparison.reference_backend, "results": records,
                                 "written": written, "not_written": failed})
    reference = comparison.reference_backend or "none (no exact backend reached optimal)"
    return code, "\n".join([table.to_string(), f"reference: {reference}", *failed])


def _json_cell(value):
    if isinstance(value, (float, np.floating)):
        return _number(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------- info
def _info(args) -> tuple[int, str]:
    from .io import read_model

    with native_stdout_to_stderr():
        model = read_model(args.model, detect_blocks=args.detect_blocks)
        sf = model.compile()
    facts = describe_standard_form(sf)
    facts = {"model": model.name, "file": args.model, **facts}
    if model.reduction is not None:
        detected = describe_standard_form(model.reduction(sf)[0])
        facts["detected"] = {"rows": sf.n_rows - detected["rows"], "blocks": detected["blocks"]}
    if args.json:
        return EXIT_OPTIMAL, json.dumps(facts)
    blocks = ", ".join(f"{kind} {b['blocks']} ({b['columns']} columns)" for kind, b in facts["blocks"].items())
    cols, rows, ranges = facts["column_bounds"], facts["row_bounds"], facts["ranges"]
    lines = [
        f"model      {facts['model']} ({facts['sense']}), file {facts['file']}",
        f"size       {facts['columns']} columns, {facts['rows']} rows, {facts['nonzeros']} nonzeros",
        f"blocks     {facts['n_blocks']}: {blocks}",
        "columns    " + ", ".join(f"{n} {what}" for what, n in cols.items()),
        "rows       " + ", ".join(f"{n} {what}" for what, n in rows.items()),
        "ranges     " + "  ".join(f"{what} {_range_text(r)}" for what, r in ranges.items()),
        f"sum rows   {facts['simplex_rows']} rows are sums over disjoint nonnegative columns "
        f"({facts['simplex_row_columns']} columns): candidates for simplex blocks",
    ]
    if "detected" in facts:
        lines.append(f"detected   {facts['detected']['rows']} rows solved as blocks: " + ", ".join(
            f"{kind} {b['blocks']} ({b['columns']} columns)" for kind, b in facts["detected"]["blocks"].items()))
    return EXIT_OPTIMAL, "\n".join(lines)


def _range_text(r) -> str:
    return "-" if r is None else f"[{r[0]:.0e}, {r[1]:.0e}]"


def describe_standard_form(sf) -> dict:
    """Sizes, blocks by kind, bound kinds, |coefficient| ranges and simplex-like rows of a standard form."""
    inf = np.inf
    sizes = np.diff(sf.block_ptr)
    blocks = {}
    for code in np.unique(sf.block_kind):
        mask = sf.block_kind == code
        blocks[BlockKind(int(code)).name] = {"blocks": int(mask.sum()), "columns": int(sizes[mask].sum())}
    lo, up = np.asarray(sf.col_lower), np.asarray(sf.col_upper)
    column_bounds = {
        "fixed": int((lo == up).sum()), "boxed": int((np.isfinite(lo) & np.isfinite(up) & (lo != up)).sum()),
        "lower bound only": int((np.isfinite(lo) & (up == inf)).sum()),
        "upper bound only": int(((lo == -inf) & np.isfinite(up)).sum()),
        "free": int(((lo == -inf) & (up == inf)).sum()),
    }
    rl, ru = sf.row_lower, sf.row_upper
    row_bounds = {
        "==": int((rl == ru).sum()), "range": int((np.isfinite(rl) & np.isfinite(ru) & (rl != ru)).sum()),
        "<=": int(((rl == -inf) & np.isfinite(ru)).sum()), ">=": int((np.isfinite(rl) & (ru == inf)).sum()),
        "free": int(((rl == -inf) & (ru == inf)).sum()),
    }
    ranges = {"matrix": _abs_range(sf.A_data), "cost": _abs_range(sf.c),
              "bounds": _abs_range(np.concatenate([lo, up])), "rhs": _abs_range(np.concatenate([rl, ru]))}
    simplex = _simplex_like_rows(sf)
    return {
        "sense": "maximize" if sf.layout.sense == -1 else "minimize", "columns": sf.n_cols, "rows": sf.n_rows,
        "nonzeros": sf.nnz, "n_blocks": sf.n_blocks, "blocks": blocks, "column_bounds": column_bounds,
        "row_bounds": row_bounds, "ranges": ranges, "simplex_rows": int(simplex.sum()),
        "simplex_row_columns": int(np.diff(sf.A.tocsr().indptr)[simplex].sum()),
    }


def _abs_range(values: np.ndarray) -> list[float] | None:
    """[min, max] of the finite nonzero magnitudes, or None when there are none."""
    mags = np.abs(np.asarray(values, dtype=np.float64))
    mags = mags[np.isfinite(mags) & (mags > 0)]
    return None if mags.size == 0 else [float(mags.min()), float(mags.max())]


def _simplex_like_rows(sf) -> np.ndarray:
    """Rows sum_j x_j <= r or == r (r >= 0, unit coefficients) over columns with lower bound 0 that no other
    such row touches: each could be a simplex block instead of a coupling row. A boolean mask over rows."""
    m = sf.n_rows
    if m == 0:
        return np.zeros(0, dtype=bool)
    csr = sf.A.tocsr()
    per_row = np.diff(csr.indptr)
    row_of = np.repeat(np.arange(m), per_row)
    off = (csr.data != 1.0) | (np.asarray(sf.col_lower)[csr.indices] != 0.0)
    rl, ru = sf.row_lower, sf.row_upper
    shape_ok = np.isfinite(ru) & (ru >= 0) & ((rl == -np.inf) | (rl == ru))
    candidate = shape_ok & (per_row > 0) & (np.bincount(row_of, weights=off, minlength=m) == 0)
    in_candidate = candidate[row_of]
    cover = np.bincount(csr.indices[in_candidate], minlength=sf.n_cols)
    shared = np.bincount(row_of, weights=in_candidate & (cover[csr.indices] > 1), minlength=m) > 0
    return candidate & ~shared
