"""Convergence plots of solve histories with matplotlib (an optional dependency, imported on first use).

Panels, against iterations or seconds: |relative gap| = |objective - bound| / max(1, |objective|, |bound|)
(the signed gap is negative while the primal is infeasible), the relative primal infeasibility
||(Ax - b)_+|| / (1 + ||b||), and the objective with the Lagrangian bound and the regularized dual value.
A result without a history (an exact backend) is drawn from its final numbers: a point and a dashed
horizontal line.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .errors import ModelError
from .result import relative_gap

PANELS = ("gap", "infeasibility", "objective")
AXES = ("iteration", "time")
FLOOR = 1e-16  # zero gaps and infeasibilities are drawn here on the log scale

_TITLES = {"gap": "|relative gap|", "infeasibility": "relative primal infeasibility",
           "objective": "objective, bound and dual"}


def plot_history(results, ax=None, x: str = "iteration", panels=PANELS):
    """Plot the convergence of one or several results; returns the matplotlib Figure.

    ``results``: a Result (or RawResult), a sequence of them, or a mapping label -> result (labels default
    to the backend names). ``x``: "iteration" or "time" (seconds). ``panels``: any of "gap",
    "infeasibility", "objective", in order. ``ax``: None (a new figure, one panel per column), one Axes
    (one panel) or a sequence of Axes, one per panel. Values are in the user's objective sense.
    """
    if x not in AXES:
        raise ModelError(f"plot_history: x must be one of {AXES}, got {x!r}")
    panels = (panels,) if isinstance(panels, str) else tuple(panels)
    unknown = [p for p in panels if p not in PANELS]
    if unknown or not panels:
        raise ModelError(f"plot_history: unknown panel(s) {unknown}; choose from {PANELS}")
    curves = _curves(results)
    axes = _axes(ax, len(panels))
    for i, (label, frame, final) in enumerate(curves):
        color = f"C{i % 10}"
        for panel, axis in zip(panels, axes):
            if frame is None:
                _draw_final(axis, panel, label, final, x, color)
            else:
                _draw_history(axis, panel, label, frame, x, color)
    for panel, axis in zip(panels, axes):
        axis.set_title(_TITLES[panel])
        axis.set_xlabel("iteration" if x == "iteration" else "time (s)")
        if panel != "objective":
            axis.set_yscale("log")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize="small")
    return axes[0].figure


def _curves(results) -> list[tuple[str, pd.DataFrame | None, dict]]:
    """(label, history frame in the user's sense or None, final numbers) for each result."""
    if isinstance(results, Mapping):
        items = list(results.items())
    elif hasattr(results, "history"):
        items = [(None, results)]
    elif isinstance(results, (list, tuple)):
        items = [(None, r) for r in results]
    else:
        raise ModelError(f"plot_history: expected a Result, a sequence or a mapping of Results, "
                         f"got {type(results).__name__}")
    if not items:
        raise ModelError("plot_history: no results to plot")
    curves, seen = [], set()
    for i, (label, res) in enumerate(items):
        if not hasattr(res, "history"):
            raise ModelError(f"plot_history: item {label if label is not None else i!r} "
                             f"({type(res).__name__}) is not a Result")
        if label is None:
            label = res.backend if isinstance(getattr(res, "backend", None), str) else f"result {i}"
        label = str(label) if str(label) not in seen else f"{label} #{i}"
        seen.add(label)
        sf = getattr(res, "standard_form", None)
        sense = sf.layout.sense if sf is not None else 1  # a RawResult is in minimization terms
        final = dict(objective=res.objective, bound=res.bound, iteration=res.iterations, time=res.solve_time,
                     gap=res.gap if hasattr(res, "gap") else relative_gap(res.objective, res.bound))
        frame = None
        if res.history:
            frame = pd.DataFrame.from_records(res.history)
            for key in ("objective", "bound", "dual", "candidate_objective"):
                if key in frame:
                    frame[key] = sense * frame[key]
        curves.append((label, frame, final))
    return curves


def _axes(ax, n: int) -> list:
    if ax is None:
        plt = _pyplot()
        fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False, layout="constrained")
        return list(axes[0])
    axes = [ax] if hasattr(ax, "plot") else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != n or not all(hasattr(a, "plot") for a in axes):
        raise ModelError(f"plot_history: ax must be {n} matplotlib Axes (one per panel), got {len(axes)} item(s)")
    return axes


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ModelError("plotting needs matplotlib, which is not installed (pip install matplotlib)") from exc
    return plt


def _column(frame: pd.DataFrame, key: str) -> np.ndarray:
    """A history column as float64 with non-finite values as NaN (gaps in the line)."""
    if key not in frame:
        return np.full(len(frame), np.nan)
    values = frame[key].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def _draw_history(axis, panel: str, label: str, frame: pd.DataFrame, x: str, color: str) -> None:
    xs = _column(frame, x)
    if panel == "gap":
        axis.plot(xs, np.maximum(np.abs(_column(frame, "gap")), FLOOR), color=color, label=label)
    elif panel == "infeasibility":
        axis.plot(xs, np.maximum(_column(frame, "infeasibility"), FLOOR), color=color, label=f"{label} (best primal)")
        if "raw_infeasibility" in frame:
            axis.plot(xs, np.maximum(_column(frame, "raw_infeasibility"), FLOOR), color=color, ls=":",
                      label=f"{label} (iterate, unrepaired)")
    else:
        axis.plot(xs, _column(frame, "objective"), color=color, label=f"{label} objective")
        axis.plot(xs, _column(frame, "bound"), color=color, ls="--", label=f"{label} bound")
        if "dual" in frame:
            axis.plot(xs, _column(frame, "dual"), color=color, ls=":", label=f"{label} regularized dual")


def _draw_final(axis, panel: str, label: str, final: dict, x: str, color: str) -> None:
    """A result without history: its final gap or objective as a point at its end and a dashed line."""
    key = "gap" if panel == "gap" else "objective" if panel == "objective" else None
    if key is None or not np.isfinite(final[key]):
        return
    value = max(abs(final[key]), FLOOR) if key == "gap" else final[key]
    axis.axhline(value, color=color, ls="--", lw=1, label=f"{label} (final {key})")
    axis.plot([final[x]], [value], "o", color=color)
