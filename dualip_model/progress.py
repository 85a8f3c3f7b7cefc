"""Live progress of long solves: a solver callback that shows each history record, and callback chaining.

A backend with a convergence history (``Capability.HISTORY``, e.g. ``dualip``) calls
``options.callback(record)`` with every history record (a dict with ``iteration``, ``objective``,
``bound``, ``gap``, ``infeasibility``, ``gamma``, ``time``, ...); a callback returning True stops the solve.
``Model.solve`` hands the backend a wrapper (``report_in_model_sense``): the callback sees objective, bound
and dual values in the model's sense (a maximization's objective positive), and after the solve a callback
with a ``finish(result)`` method (Progress, chain_callbacks) gets the result, for a final line.

    m.solve("dualip", callback=Progress())                       # live line on a TTY, log lines otherwise
    m.solve("dualip", callback=chain_callbacks(Progress(), my_logger))
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from typing import Any, Callable

from .errors import ModelError
from .result import in_model_sense

logger = logging.getLogger(__name__)  # a child of "dualip_model": configure that logger to see the lines

DISPLAYS = ("auto", "rich", "tqdm", "log")


def chain_callbacks(*callbacks: Callable[[dict], Any] | None) -> Chain:
    """One callback calling each of ``callbacks`` in turn (None skipped); True (stop) if any returns True.

    Every callback sees every record (each gets its own copy), even after an earlier one asked to stop,
    and ``finish(result)`` reaches every callback that has it. This is how to forward records to an
    experiment tracker without dualip_model depending on it:

        import mlflow

        def to_mlflow(record):
            mlflow.log_metrics({k: record[k] for k in ("gap", "infeasibility", "bound")},
                               step=record["iteration"])

        res = m.solve("dualip", callback=chain_callbacks(Progress(), to_mlflow))

    (With TensorBoard: ``writer.add_scalar("gap", record["gap"], record["iteration"])`` inside the callback.)
    """
    chained = [cb for cb in callbacks if cb is not None]
    for i, cb in enumerate(chained):
        if not callable(cb):
            raise ModelError(f"chain_callbacks: argument {i} ({type(cb).__name__}) is not callable")
    return Chain(tuple(chained))


@dataclasses.dataclass(frozen=True)
class Chain:
    """Callbacks called in turn on each record (see chain_callbacks)."""

    callbacks: tuple

    def __call__(self, record: dict) -> bool:
        stop = False
        for cb in self.callbacks:
            stop = (cb(dict(record)) is True) or stop
        return stop

    def finish(self, result) -> None:
        """Pass the solve's result to every chained callback with a ``finish`` method."""
        for cb in self.callbacks:
            finish_callback(cb, result)


def finish_callback(callback, result) -> None:
    """callback.finish(result) where the callback has such a method (Progress, Chain); else nothing."""
    finish = getattr(callback, "finish", None)
    if callable(finish):
        finish(result)


@dataclasses.dataclass(frozen=True)
class InModelSense:
    """callback(record with objective, bound and dual values times ``sense``): the model's sense."""

    callback: Callable[[dict], Any]
    sense: int

    def __call__(self, record: dict):
        return self.callback(in_model_sense(record, self.sense))


def report_in_model_sense(options, sense: int):
    """(options whose ``callback`` sees records in the model's sense, done(result)): the modeling side of
    a backend's callback. ``options`` without a callback field or with None come back as they are;
    ``done`` passes the result to the callback's ``finish`` (see finish_callback)."""
    callback = getattr(options, "callback", None)
    if callback is None:
        return options, lambda result: None
    return dataclasses.replace(options, callback=InModelSense(callback, sense)), \
        lambda result: finish_callback(callback, result)


def _fmt(value, spec: str = ".2e") -> str:
    """A history number formatted with ``spec`` ('-' when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def describe(record: dict) -> str:
    """One line for a history record: iteration, objective, bound, signed gap, infeasibility, gamma, time."""
    return (f"iteration {record.get('iteration', 0)}  objective {_fmt(record.get('objective'), '.8g')}  "
            f"bound {_fmt(record.get('bound'), '.8g')}  gap {_fmt(record.get('gap'), '+.2e')}  "
            f"infeasibility {_fmt(record.get('infeasibility'))}  gamma {_fmt(record.get('gamma'))}  "
            f"time {record.get('time', 0.0):.1f} s")


def summary(result) -> str:
    """The final line of a solve: status, iterations, time and, where there is a solution, objective, bound, gap."""
    line = f"{result.status} after {result.iterations} iterations, {result.solve_time:.2f} s"
    if result.status.has_solution:
        line += (f": objective {_fmt(result.objective, '.8g')}, bound {_fmt(result.bound, '.8g')}, "
                 f"gap {_fmt(result.gap, '+.2e')}")
    return line


class Progress:
    """A solver callback showing iteration, gap, infeasibility, gamma and time while a backend runs.

    ``display``: "rich" or "tqdm" (a live line), "log" (one ``logging`` INFO line on the
    ``dualip_model.progress`` logger at most every ``interval`` seconds of solve time, plus the first and,
    on close, the last record) or "auto": tqdm, else rich, when installed and ``stream`` is a TTY, else
    "log". ``stream`` defaults to sys.stderr. It never stops the solve (returns False). Model.solve calls
    finish(result) at the end: it ends the live line and adds a final line (``summary``: status,
    iterations, time, objective, bound, signed gap) to the stream, or to the log. close() ends the display
    without a final line (also as a context manager: ``with Progress() as p: ...``). Reusable: a record
    with a lower iteration starts a new display.
    """

    def __init__(self, display: str = "auto", interval: float = 5.0, stream=None, description: str = "solve",
                 level: int = logging.INFO):
        if display not in DISPLAYS:
            raise ModelError(f"Progress: display must be one of {DISPLAYS}, got {display!r}")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval >= 0:
            raise ModelError(f"Progress: interval must be a number of seconds >= 0, got {interval!r}")
        self.stream = sys.stderr if stream is None else stream
        self.display = _choose(display, self.stream)
        self.interval = float(interval)
        self.description = description
        self.level = level
        self.records = 0  # records seen by the current display
        self._bar = None  # the tqdm bar or the (rich.progress.Progress, task id) pair
        self._last: dict | None = None
        self._logged_at = -math.inf  # solve time of the last logged record
        self._logged_last = False

    def __call__(self, record: dict) -> bool:
        if self._last is not None and record.get("iteration", 0) <= self._last.get("iteration", 0):
            self.close()  # a new solve
        self.records += 1
        if self.display == "log":
            self._log(record)
        elif self.display == "tqdm":
            self._tqdm(record)
        else:
            self._rich(record)
        self._last = record
        return False

    def close(self) -> None:
        """End the current display (logs the last record if it was not logged yet)."""
        if self._last is not None and self.display == "log" and not self._logged_last:
            logger.log(self.level, "%s: %s", self.description, describe(self._last))
        if self._bar is not None:
            if self.display == "tqdm":
                self._bar.close()
            else:
                self._bar[0].stop()
        self._bar, self._last, self._logged_at, self.records = None, None, -math.inf, 0

    def finish(self, result) -> None:
        """End the display and add the solve's final line (summary(result))."""
        self.close()
        line = f"{self.description}: {summary(result)}"
        if self.display == "log":
            logger.log(self.level, "%s", line)
        else:
            print(line, file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ displays
    def _log(self, record: dict) -> None:
        now = record.get("time", 0.0)
        self._logged_last = now - self._logged_at >= self.interval
        if self._logged_last:
            self._logged_at = now
            logger.log(self.level, "%s: %s", self.description, describe(record))

    def _tqdm(self, record: dict) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(desc=self.description, unit="it", file=self.stream, dynamic_ncols=True)
        done = record.get("iteration", 0) - (self._last or {}).get("iteration", 0)
        self._bar.set_postfix_str(_stats(record), refresh=False)
        self._bar.update(done)

    def _rich(self, record: dict) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import Progress as RichProgress
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            bar = RichProgress(SpinnerColumn(), TextColumn("{task.description}"),
                               TextColumn("iteration {task.completed:>7.0f}"), TextColumn("{task.fields[stats]}"),
                               TimeElapsedColumn(), console=Console(file=self.stream), transient=False,
                               auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
            bar.start()  # no refresh thread and no redirected streams: harmless if never closed
            self._bar = (bar, bar.add_task(self.description, total=None, stats=""))
        bar, task = self._bar
        bar.update(task, completed=record.get("iteration", 0), stats=_stats(record), refresh=True)


def _stats(record: dict) -> str:
    """The live line's numbers, most telling first (a narrow terminal cuts the end)."""
    return (f"gap {_fmt(record.get('gap'), '+.2e')} infeas {_fmt(record.get('infeasibility'))} "
            f"obj {_fmt(record.get('objective'), '.8g')} bound {_fmt(record.get('bound'), '.8g')} "
            f"gamma {_fmt(record.get('gamma'))}")


def _choose(display: str, stream) -> str:
    """The display "auto" resolves to: tqdm, else rich, when importable and ``stream`` is a TTY, else log."""
    if display in ("rich", "tqdm"):
        if not _importable(display):
            raise ModelError(f"Progress: display {display!r} needs the {display} package (pip install {display})")
        return display
    if display == "log":
        return display
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return next((name for name in ("tqdm", "rich") if tty and _importable(name)), "log")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True
