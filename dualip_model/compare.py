"""One model solved on several backends, side by side: a table of status, objective, bound, gap and time.

The objective's relative difference to the reference, (objective - best exact optimum) / max(1, |best|),
is measured against the best optimum of the exact backends (``Capability.EXACT``, e.g. ``highs``).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pandas as pd

from . import registry
from .backend import Capability
from .errors import ModelError
from .model import Model
from .model import backend_options as model_backend_options
from .progress import report_in_model_sense
from .result import Result, final_numbers, in_model_sense
from .standard_form import StandardForm
from .status import Status

COLUMNS = ("status", "objective", "bound", "gap", "time", "iterations", "objective_rel_diff")


def backend_options(backend: str, options=None, **settings):
    """The named backend's Options: ``options`` (an Options instance, a dict of fields or None) + ``settings``.

    Unknown fields raise ModelError naming the backend and the fields; the Options dataclass validates the
    values. An unknown backend raises the registry's BackendNotFoundError.
    """
    solver = registry.get(backend)
    if isinstance(options, dict):
        options, settings = None, {**options, **settings}
    if options is not None and not isinstance(options, solver.Options):
        raise ModelError(f"options for backend '{backend}' must be {solver.Options.__name__} or a dict, "
                         f"got {type(options).__name__}")
    return model_backend_options(backend, solver, options, settings)


def compare(model, backends=("highs", "dualip"), options: dict | None = None, **settings) -> Comparison:
    """Solve one model on each of ``backends`` and tabulate the results (see Comparison).

    ``model``: a Model, a StandardForm or the path of an LP/MPS file (read with ``read_model``); it is
    compiled once. A bare StandardForm (no model to label answers) gives FormResults. ``options``:
    backend name -> that backend's Options instance (used as it is) or dict of fields. ``settings`` (e.g.
    ``time_limit=60``) go to every compared backend whose Options has the field, under the per-backend
    dicts; a setting no compared backend has raises ModelError. Every backend name and option is checked
    before anything is solved.
    """
    names = [backends] if isinstance(backends, str) else list(backends)
    if not names:
        raise ModelError("compare: no backends given")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ModelError(f"compare: backend(s) {duplicated} given more than once")
    solvers = {name: registry.get(name) for name in names}
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise ModelError(f"compare: options must be a dict backend name -> options, got {type(options).__name__}")
    stray = sorted(set(options) - set(names))
    if stray:
        raise ModelError(f"compare: options given for backend(s) {stray}, which are not compared ({names})")
    fields = {name: {f.name for f in dataclasses.fields(s.Options)} for name, s in solvers.items()}
    unused = sorted(k for k in settings if not any(k in f for f in fields.values()))
    if unused:
        raise ModelError(f"compare: no compared backend ({', '.join(names)}) has option(s) {unused}")
    resolved = {}
    for name in names:
        shared = {k: v for k, v in settings.items() if k in fields[name]}
        given = options.get(name)
        if given is None or isinstance(given, dict):
            resolved[name] = backend_options(name, {**shared, **(given or {})})
        else:  # an Options instance, used as it is (anything else is rejected, naming the backend)
            resolved[name] = backend_options(name, given)
    if isinstance(model, StandardForm):
        return Comparison({name: _solve_form(model, name, resolved[name]) for name in names})
    if isinstance(model, (str, os.PathLike)):
        from .io import read_model

        model = read_model(model)
    if not isinstance(model, Model):
        raise ModelError(f"compare: expected a Model, a StandardForm or a model file path, got {type(model).__name__}")
    sf = model.compile()
    return Comparison({name: model.solve(name, resolved[name], standard_form=sf) for name in names})


def _solve_form(sf: StandardForm, backend: str, options) -> FormResult:
    options, finish = report_in_model_sense(options, sf.layout.sense)
    start = time.perf_counter()
    raw = registry.get(backend).solve(sf, options)
    if not raw.solve_time:
        raw.solve_time = time.perf_counter() - start
    result = FormResult(sf, raw, backend)
    finish(result)
    return result


class FormResult:
    """A backend's answer for a bare StandardForm (no model, so no labels): a Result's numbers, user sense.

    objective = sense * raw objective, bound likewise, gap = relative_gap in minimization terms, all NaN
    without a solution (as for a Result); history in the user's sense; the primal in compiled column order
    is ``raw.x``.
    """

    def __init__(self, sf: StandardForm, raw, backend: str):
        sense = sf.layout.sense
        self.standard_form, self.raw, self.backend = sf, raw, backend
        self.status: Status = raw.status
        self.objective, self.bound, self.gap = final_numbers(raw, sense)
        self.iterations, self.solve_time = raw.iterations, raw.solve_time
        self.history = [in_model_sense(record, sense) for record in raw.history]
        self.message = raw.message
        self.guarantees = raw.guarantees if raw.status.has_solution else ()

    def __repr__(self) -> str:
        return (f"FormResult(status={self.status.value!r}, objective={self.objective:.10g}, "
                f"bound={self.bound:.10g}, backend={self.backend!r})")


class Comparison:
    """Results of one model on several backends (``results``, by backend name) and their ``table``.

    Results are Results, or FormResults for a bare StandardForm. ``table``: a DataFrame indexed by
    backend with status, objective, bound, gap, time (s), iterations and objective_rel_diff =
    (objective - reference) / max(1, |reference|), where ``reference`` is the best objective among the
    exact backends that reached OPTIMAL (NaN when there is none).
    """

    def __init__(self, results: dict[str, Result | FormResult]):
        self.results = dict(results)
        self.reference_backend, self.reference = _reference(self.results)
        self.table = self._table()

    def _table(self) -> pd.DataFrame:
        res = list(self.results.values())
        objective = np.array([r.objective for r in res], dtype=np.float64)
        if self.reference_backend is None:
            diff = np.full(len(res), np.nan)
        else:
            diff = (objective - self.reference) / max(1.0, abs(self.reference))
        table = pd.DataFrame({
            "status": [r.status.value for r in res], "objective": objective,
            "bound": [r.bound for r in res], "gap": [r.gap for r in res],
            "time": [r.solve_time for r in res], "iterations": [r.iterations for r in res],
            "objective_rel_diff": diff,
        }, index=pd.Index(list(self.results), name="backend"))
        return table[list(COLUMNS)]

    def __getitem__(self, backend: str) -> Result | FormResult:
        if backend not in self.results:
            raise ModelError(f"comparison has no backend {backend!r}; it has {list(self.results)}")
        return self.results[backend]

    def plot(self, **kwargs):
        """Overlay the backends' convergence histories (plot_history); returns the matplotlib Figure."""
        from .plotting import plot_history

        return plot_history(self.results, **kwargs)

    def __repr__(self) -> str:
        return f"Comparison({list(self.results)}, reference={self.reference_backend!r})"

    def __str__(self) -> str:
        return self.table.to_string()


def _reference(results: dict[str, Result | FormResult]) -> tuple[str | None, float]:
    """(backend, objective) of the best OPTIMAL result among exact backends, or (None, NaN)."""
    best_name, best_key = None, np.inf
    for name, res in results.items():
        if res.status != Status.OPTIMAL or Capability.EXACT not in registry.get(name).capabilities:
            continue
        key = res.standard_form.layout.sense * res.objective  # minimization terms: lower is better
        if key < best_key:
            best_name, best_key = name, key
    if best_name is None:
        return None, float("nan")
    return best_name, results[best_name].objective
