"""Convergence plots of solve histories with matplotlib (an optional dependency, imported on first use).

Panels, against iterations or seconds: |relative gap| = |objective - bound| / max(1, |objective|, |bound|)
on a log scale, with a cross where the signed gap is negative (objective and bound crossed: the primal is
not feasible enough yet); the relative primal infeasibility ||(Ax - b)_+|| / (1 + ||b||); and the
objective with the Lagrangian bound and the regularized dual value, zoomed on the objective and bound of
the second half of each run (early iterates sit far from the optimum and would flatten the end to a line;
the regularized dual, the value of the smoothed problem, may lie outside). A result without a history
(an exact backend) is drawn from its final numbers: a point and a dashed horizontal line. Values are in the
user's objective sense (a Result's or FormResult's history already is; a RawResult is in minimization
terms, as a backend returns it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .errors import ModelError
from .status import relative_gap

PANELS = ("gap", "infeasibility", "objective")
AXES = ("iteration", "time")
FLOOR = 1e-16  # zero gaps and infeasibilities are drawn here on the log scale

_TITLES = {"gap": "|relative gap|", "infeasibility": "relative primal infeasibility",
           "objective": "objective, bound and dual"}


def plot_history(results, ax=None, x: str | None = None, panels=PANELS, zoom: bool = True):
    """Plot the convergence of one or several results; returns the matplotlib Figure.

    ``results``: a Result (or RawResult), a sequence of them, or a mapping label -> result (labels default
    to the backend names). ``x``: "iteration", "time" (seconds) or None: "time" when the results come
    from different backends (whose iterations are not comparable), else "iteration". ``panels``: any of
    "gap", "infeasibility", "objective", in order. ``ax``: None (a new figure, one panel per column), one
    Axes (one panel) or a sequence of Axes, one per panel. ``zoom``: the objective panel's y-range covers
    the second half of each history and the final values (False: everything).
    """
    if x is not None and x not in AXES:
        raise ModelError(f"plot_history: x must be one of {AXES} or None, got {x!r}")
    panels = (panels,) if isinstance(panels, str) else tuple(panels)
    unknown = [p for p in panels if p not in PANELS]
    if unknown or not panels:
        raise ModelError(f"plot_history: unknown panel(s) {unknown}; choose from {PANELS}")
    curves, backends = _curves(results)
    if x is None:
        x = "time" if len(backends) > 1 else "iteration"
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
        elif zoom:
            _zoom(axis, curves)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize="small")
    return axes[0].figure


def _curves(results) -> tuple[list[tuple[str, pd.DataFrame | None, dict]], set]:
    """(label, history frame in the user's sense or None, final numbers) for each result, and the set of
    their backends (a RawResult's counts as one of its own)."""
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
    curves, seen, backends = [], set(), set()
    for i, (label, res) in enumerate(items):
        if not hasattr(res, "history"):
            raise ModelError(f"plot_history: item {label if label is not None else i!r} "
                             f"({type(res).__name__}) is not a Result")
        backend = getattr(res, "backend", None)
        backends.add(backend if isinstance(backend, str) else f"raw result {i}")
        if label is None:
            label = backend if isinstance(backend, str) else f"result {i}"
        label = str(label) if str(label) not in seen else f"{label} #{i}"
        seen.add(label)
        final = dict(objective=res.objective, bound=res.bound, iteration=res.iterations, time=res.solve_time,
                     gap=res.gap if hasattr(res, "gap") else relative_gap(res.objective, res.bound))
        frame = pd.DataFrame.from_records(res.history) if res.history else None
        curves.append((label, frame, final))
    return curves, backends


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
        gap = _column(frame, "gap")
        axis.plot(xs, np.maximum(np.abs(gap), FLOOR), color=color, label=label)
        negative = gap < 0
        if negative.any():
            axis.plot(xs[negative], np.maximum(-gap[negative], FLOOR), "x", color=color,
                      label=f"{label} (gap < 0: primal not yet feasible)")
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


def _zoom(axis, curves, tail: float = 0.5, pad: float = 0.1) -> None:
    """y-limits of the objective panel: the objective and bound over the last ``tail`` of each history and
    the final values, widened by ``pad`` of their span on each side (nothing finite: left as it is)."""
    values = []
    for _, frame, final in curves:
        values += [final["objective"], final["bound"]]
        if frame is not None:
            start = int(len(frame) * (1 - tail))
            values += [v for key in ("objective", "bound") for v in _column(frame, key)[start:]]
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    low, high = float(values.min()), float(values.max())
    span = high - low if high > low else max(1e-9, 1e-6 * abs(high))
    axis.set_ylim(low - pad * span, high + pad * span)
