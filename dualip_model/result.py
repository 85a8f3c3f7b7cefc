"""Results in the user's terms: status, objective, certified bound and gap, labeled primal and duals.

A result without a solution (status infeasible, unbounded, infeasible_or_unbounded or error) has no
objective, bound or gap (NaN), and reading x, duals or values from it raises ModelError saying why; an
infeasible one may carry a Farkas ray, read per constraint with ``infeasibility_certificate``.

Tables out: ``to_frame``/``to_arrow``/``to_parquet`` give one row per element of a variable (its label
columns, then ``value``); ``duals_frame``/``duals_to_arrow``/``duals_to_parquet`` one row per row of a
constraint (its label columns, then ``dual``, ``activity`` and ``slack``). Label columns keep the labels'
dtypes and are built columnar (one take per label level, never a Python object per row).
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from .atomic import write_table
from .backend import RawResult
from .errors import ModelError
from .polytopes import EQUALITY_KINDS, BlockKind
from .sets import EdgeSet, EntitySet
from .standard_form import StandardForm, segment_sums
from .status import Status, relative_gap
from .tables import _pyarrow


SENSE_KEYS = ("objective", "bound", "dual", "candidate_objective")  # history values in objective units


def in_model_sense(record: dict, sense: int) -> dict:
    """A copy of a history record with its objective-unit values (SENSE_KEYS) times ``sense``.

    Backends record in minimization terms; sense = -1 turns a maximization's values positive again. The
    gap is unchanged: (objective - bound) in minimization terms is (bound - objective) in maximization ones.
    """
    out = dict(record)
    if sense != 1:
        for key in SENSE_KEYS:
            if key in out and out[key] is not None:
                out[key] = sense * out[key]
    return out


def final_numbers(raw: RawResult, sense: int) -> tuple[float, float, float]:
    """(objective, bound, gap) of a backend's answer in the user's sense: sense * objective, sense * bound
    and relative_gap in minimization terms; all NaN where the status has no solution."""
    if not raw.status.has_solution:
        return float("nan"), float("nan"), float("nan")
    return sense * raw.objective, sense * raw.bound, relative_gap(raw.objective, raw.bound)


# why a status carries no solution, in a user's words
_NO_SOLUTION = {
    Status.INFEASIBLE: "no x satisfies every constraint",
    Status.UNBOUNDED: "the objective improves without limit",
    Status.INFEASIBLE_OR_UNBOUNDED: "the model is infeasible or unbounded (the backend cannot tell which)",
    Status.ERROR: "the backend failed",
}


class Result:
    """The answer of Model.solve; maximization is undone here and only here (sense = -1).

    objective: user-sense objective at x; bound: a bound on the optimum from the backend's certificate
    (a lower bound when minimizing, an upper bound when maximizing); gap: relative_gap in min terms (>= 0
    when consistent; negative when objective and bound cross, i.e. x is not feasible enough). history: the
    backend's per-check records with objective, bound and dual values in the user's sense. Without a
    solution (``status.has_solution`` False) objective, bound and gap are NaN and x, duals and values raise
    ModelError; ``raw`` keeps whatever numbers the backend returned.
    """

    def __init__(self, model, sf: StandardForm, raw: RawResult, backend: str):
        sf.layout.check(model)
        self.model = model
        self.standard_form = sf
        self.raw = raw
        self.backend = backend
        sense = sf.layout.sense
        self.status: Status = raw.status
        solved = raw.status.has_solution
        self.objective, self.bound, self.gap = final_numbers(raw, sense)
        self.iterations = raw.iterations
        self.solve_time = raw.solve_time
        self.log = raw.log
        self.message = raw.message
        self.history = [in_model_sense(record, sense) for record in raw.history]
        self.guarantees = raw.guarantees if solved else ()
        self._x = None if raw.x is None or not solved else \
            sf.layout.to_original(np.asarray(raw.x, dtype=np.float64))
        self._Ax = None  # A x in compiled row order, computed on first use

    # ------------------------------------------------------------------ primal
    @property
    def x_all(self) -> np.ndarray:
        """The full primal vector in the model's column order (variables concatenated)."""
        if self._x is None:
            raise self._no_solution("primal solution")
        return self._x

    def primal(self, var, labeled: bool = True):
        """Values of one variable: a pandas Series over its labels, or a numpy array (labeled=False)."""
        var = self._variable(var)
        values = self.x_all[var.start : var.stop]
        if not labeled:
            return values
        index = var.index.labels() if isinstance(var.index, EdgeSet) else var.index.labels
        return pd.Series(values, index=index, name=var.name)

    @property
    def x(self) -> pd.Series:
        """The labeled primal of the model's only variable (use primal(name) when there are several)."""
        return self.primal(self._the_variable(None))

    def value(self, expr) -> float | np.ndarray:
        """Evaluate any linear expression of the model at the solution."""
        from .variables import Variable

        if isinstance(expr, Variable):
            expr = expr.to_expression()
        return expr.value(self.x_all)

    @property
    def objectives(self) -> dict[str, float]:
        """Value of each named objective (unweighted) at the solution."""
        obj = self.model.objective
        return {} if obj is None else {name: self.value(e) for name, e in obj.parts.items()}

    # ------------------------------------------------------------------ duals
    def dual(self, constraint, labeled: bool = True):
        """Duals d(objective)/d(rhs) of a constraint's rows, in the user's objective sense.

        A Series over the constraint's entities, a float for a global (scalar) constraint, or with
        ``labeled=False`` a numpy array (length 1 for a global constraint).
        """
        con = self._constraint(constraint)
        slot = self._slot(con.name)
        source = self.raw.row_dual if slot.kind == "rows" else self.raw.block_dual
        if not self.status.has_solution:
            raise self._no_solution(f"duals of constraint '{con.name}'")
        if source is None:
            raise ModelError(f"backend '{self.backend}' returned no duals for constraint '{con.name}' "
                             f"(status {self.status})")
        values = self.standard_form.layout.sense * np.asarray(source[slot.start : slot.stop], dtype=np.float64)
        return self._per_row(con, values) if labeled else values

    def infeasibility_certificate(self, constraint=None):
        """A Farkas ray y over the coupling rows: min_{x in blocks, bounds} sum_r y_r a_r^T x > h(y).

        h(y) = sum_{y_r > 0} y_r upper_r + sum_{y_r < 0} y_r lower_r: y_r >= 0 on `<=` rows, <= 0 on `>=`
        rows (either sign on `==` and range rows), and the rows weighted by y add up to one row that no x of
        the blocks and column bounds meets,
        which proves the model infeasible. Scaled so that max_r |y_r| = 1; the largest weights point at the
        constraints in conflict. ``constraint``: its rows' weights, a Series over its entities (a float for
        a global constraint); None: a dict over every coupling constraint. Block constraints carry no weight
        (they are the blocks the minimum runs over) and are refused by name. Needs an infeasible result
        whose backend returns a ray (``raw.ray``; e.g. ``dualip``).
        """
        ray = self._ray()
        if constraint is None:
            return {slot.name: self._per_row(self.model.constraints[slot.name], ray[slot.start : slot.stop])
                    for slot in self.standard_form.layout.constraints if slot.kind == "rows"}
        con = self._constraint(constraint)
        slot = self._slot(con.name)
        if slot.kind != "rows":
            coupling = [s.name for s in self.standard_form.layout.constraints if s.kind == "rows"]
            raise ModelError(f"constraint '{con.name}' became block polytopes, the set the certificate minimizes "
                             f"over: it carries no weight; the certificate weighs the coupling constraints "
                             f"{coupling}")
        return self._per_row(con, ray[slot.start : slot.stop])

    def activity(self, constraint) -> tuple[np.ndarray, np.ndarray]:
        """(activity, slack) of a constraint's rows: activity = its rows of A x (block sums for block rows).

        slack_r = min(upper_r - activity_r, activity_r - lower_r), the distance to the nearest side of the
        standard-form row: >= 0 where the row holds, negative by the violation where it does not (== rows:
        -|activity - rhs|). A constant in the constraint's expression is already moved to its sides.
        """
        con = self._constraint(constraint)
        slot = self._slot(con.name)
        activity, lower, upper = self._rows(slot.kind, slot.start, slot.stop)
        with np.errstate(invalid="ignore"):
            slack = np.minimum(upper - activity, activity - lower)
        return activity, slack

    def violation(self) -> tuple[float, str | None]:
        """max(0, largest violation of a coupling row, block sum or column bound at x) and where it is."""
        sf, x = self.standard_form, self._compiled_x()
        worst, where = 0.0, None
        for kind, size in (("rows", sf.n_rows), ("blocks", sf.n_blocks)):
            if size == 0:
                continue
            activity, lower, upper = self._rows(kind, 0, size)
            v = np.maximum(lower - activity, activity - upper)
            if kind == "blocks":
                v[sf.block_kind == BlockKind.BOX] = 0.0
            i = int(np.argmax(v))
            if v[i] > worst:
                worst, where = float(v[i]), self._row_name(kind, i)
        v = np.maximum(sf.col_lower - x, x - sf.col_upper)
        j = int(np.argmax(v))
        if v[j] > worst:
            worst, where = float(v[j]), self._column_name(j)
        return worst, where

    # ------------------------------------------------------------------ tables
    def to_frame(self, var=None) -> pd.DataFrame:
        """x as a DataFrame: one row per element of ``var`` (the only variable if None), in model order.

        Columns: one per label level (the entity set's name; source and destination set names for an
        edge set), then ``value``.
        """
        var = self._the_variable(var)
        columns = _label_columns(var.index, ("value",))
        frame = pd.DataFrame({name: labels if codes is None else labels.take(codes)
                              for name, labels, codes in columns})
        frame["value"] = self.x_all[var.start : var.stop]
        return frame

    def to_arrow(self, var=None):
        """to_frame as a pyarrow Table (label columns, then ``value``), model and variable in its metadata."""
        var = self._the_variable(var)
        values = self.x_all[var.start : var.stop]
        return self._arrow(_label_columns(var.index, ("value",)), {"value": values}, {"variable": var.name})

    def to_parquet(self, path, var=None) -> None:
        """Write to_arrow(var) as a Parquet file (atomically: the old file or the new one, never a partial one)."""
        write_table(self.to_arrow(var), path, "Parquet file", "parquet")

    def duals_frame(self, constraint) -> pd.DataFrame:
        """A constraint's rows as a DataFrame: label columns, then ``dual``, ``activity`` and ``slack``.

        ``dual`` is d(objective)/d(rhs) in the user's sense (as in ``dual``); ``activity`` and ``slack``
        are those of ``activity``. A global constraint gives one row and no label columns.
        """
        con = self._constraint(constraint)
        columns = _label_columns(con.index, _DUAL_COLUMNS)
        frame = pd.DataFrame({name: labels if codes is None else labels.take(codes)
                              for name, labels, codes in columns}, index=pd.RangeIndex(con.size))
        for name, values in self._dual_values(con).items():
            frame[name] = values
        return frame

    def duals_to_arrow(self, constraint):
        """duals_frame as a pyarrow Table, model and constraint in its metadata."""
        con = self._constraint(constraint)
        return self._arrow(_label_columns(con.index, _DUAL_COLUMNS), self._dual_values(con),
                           {"constraint": con.name})

    def duals_to_parquet(self, path, constraint) -> None:
        """Write duals_to_arrow(constraint) as a Parquet file (atomically, as to_parquet)."""
        write_table(self.duals_to_arrow(constraint), path, "Parquet file", "parquet")

    # ------------------------------------------------------------------ plots
    def plot(self, **kwargs):
        """Convergence history (gap, infeasibility, objective vs bound): see dualip_model.plotting.plot_history."""
        from .plotting import plot_history

        return plot_history(self, **kwargs)

    # ------------------------------------------------------------------ helpers
    def _no_solution(self, what: str) -> ModelError:
        """The error for reading ``what`` from a result that has none, saying why."""
        why = _NO_SOLUTION.get(self.status)
        if why is None:  # a status with a solution whose backend returned no point
            return ModelError(f"no {what}: status is {self.status} and backend '{self.backend}' returned none")
        hint = ""
        if self.raw.ray is not None:
            hint = "; res.infeasibility_certificate(name) gives the Farkas ray per constraint"
        return ModelError(f"no {what}: status is {self.status} ({why}){hint}")

    def _ray(self) -> np.ndarray:
        """raw.ray over the coupling rows, scaled to max |y_r| = 1; ModelError where there is none."""
        if self.status != Status.INFEASIBLE:
            raise ModelError(f"no certificate of infeasibility: status is {self.status}, not infeasible")
        if self.raw.ray is None:
            raise ModelError(f"no certificate of infeasibility: backend '{self.backend}' returned no Farkas ray")
        ray = np.asarray(self.raw.ray, dtype=np.float64)
        if ray.shape != (self.standard_form.n_rows,):
            raise ModelError(f"backend '{self.backend}' returned a ray of shape {ray.shape} for "
                             f"{self.standard_form.n_rows} coupling rows")
        scale = np.abs(ray).max(initial=0.0)
        return ray / scale if scale > 0 else ray

    def _per_row(self, con, values: np.ndarray):
        """Per-row values of a constraint as a Series over its entities, or a float for a global constraint."""
        if con.index is None:
            return float(values[0])
        index = con.index.labels() if isinstance(con.index, EdgeSet) else con.index.labels
        return pd.Series(values, index=index, name=con.name)

    def _the_variable(self, var):
        """The named variable, or the model's only one when ``var`` is None."""
        if var is not None:
            return self._variable(var)
        if len(self.model.variables) != 1:
            raise ModelError(f"model has variables {list(self.model.variables)}; name one "
                             "(result.primal(name), result.to_frame(name))")
        return next(iter(self.model.variables.values()))

    def _dual_values(self, con) -> dict[str, np.ndarray]:
        activity, slack = self.activity(con)
        return {"dual": self.dual(con, labeled=False), "activity": activity, "slack": slack}

    def _arrow(self, columns, values: dict, what: dict):
        """A pyarrow Table of label columns (taken in arrow) and float columns, with dualip_model metadata."""
        pa = _pyarrow("Result.to_arrow")
        data = {}
        for name, labels, codes in columns:
            try:
                arr = pa.array(labels)
            except (pa.ArrowException, OverflowError, TypeError, ValueError) as err:
                raise ModelError(f"labels of set '{name}' cannot become an arrow column: {err}") from None
            data[name] = arr if codes is None else arr.take(pa.array(codes))
        data.update({name: pa.array(v) for name, v in values.items()})
        meta = {"model": self.model.name, "status": self.status.value, "backend": self.backend, **what}
        return pa.table(data, metadata={f"dualip_model.{k}": str(v) for k, v in meta.items()})

    def _compiled_x(self) -> np.ndarray:
        """x in the standard form's (compiled) column order."""
        if self._x is None:
            raise self._no_solution("primal solution")
        return np.asarray(self.raw.x, dtype=np.float64)

    def _rows(self, kind: str, start: int, stop: int):
        """(activity, lower, upper) of coupling rows or block sums [start, stop) of the standard form."""
        sf = self.standard_form
        if kind == "rows":
            if self._Ax is None:
                self._Ax = sf.A @ self._compiled_x()
            return self._Ax[start:stop], sf.row_lower[start:stop], sf.row_upper[start:stop]
        activity = segment_sums(self._compiled_x(), sf.block_ptr[start : stop + 1])
        upper = sf.block_rhs[start:stop]
        lower = np.where(np.isin(sf.block_kind[start:stop], EQUALITY_KINDS), upper, -np.inf)
        return activity, lower, upper

    def _slot(self, name: str):
        """The layout slot (rows or blocks) of the named constraint."""
        return next(s for s in self.standard_form.layout.constraints if s.name == name)

    def _row_name(self, kind: str, i: int) -> str:
        """The user's name of coupling row or block i, e.g. "budget[item='b']"."""
        for slot in self.standard_form.layout.constraints:
            if slot.kind == kind and slot.start <= i < slot.stop:
                return self.model.constraints[slot.name].label(i - slot.start)
        raise AssertionError(f"{kind} {i} is in no constraint slot")

    def _column_name(self, j: int) -> str:
        """The user's name of compiled column j's bounds, e.g. "bounds of x[edge ('u0', 'a')]"."""
        order = self.standard_form.layout.column_order
        col = int(order[j]) if order is not None else j
        for var in self.model.variables.values():
            if var.start <= col < var.stop:
                return f"bounds of {var.name}[{var._describe(col - var.start)}]"
        raise AssertionError(f"column {col} is in no variable")

    def _variable(self, var):
        return _lookup(self.model.variables, var, "variable", self.model.name)

    def _constraint(self, con):
        return _lookup(self.model.constraints, con, "constraint", self.model.name)

    def __repr__(self) -> str:
        return (f"Result(status={self.status.value!r}, objective={self.objective:.10g}, "
                f"bound={self.bound:.10g}, backend={self.backend!r})")

    def __str__(self) -> str:
        sf = self.standard_form
        lines = [f"{self.model.name}: {self.status.value} ({self.backend}, {self.solve_time:.3f} s, "
                 f"{self.iterations} iterations)"]
        if self.status.has_solution:
            lines += [f"  objective  {self.objective:.10g}",
                      f"  bound      {self.bound:.10g}   rel. gap {self.gap:.3g}"]
        else:
            lines.append(f"  no solution: {_NO_SOLUTION[self.status]}")
        lines.append(f"  size       {sf.n_cols} columns, {sf.n_rows} coupling rows, {sf.nnz} nonzeros, "
                     f"{sf.n_blocks} blocks")
        if self._x is not None:
            worst, where = self.violation()
            lines.append(f"  violation  {worst:.3g}" + (f" (largest at {where})" if where else ""))
        if self.status == Status.INFEASIBLE and self.raw.ray is not None:
            lines += self._certificate_lines()
        if self.guarantees:
            lines.append(f"  guarantees {', '.join(self.guarantees)}")
        if self.message:
            lines.append(f"  message    {self.message}")
        return "\n".join(lines)

    def _certificate_lines(self, shown: int = 5) -> list[str]:
        """The certificate's summary: what it proves and its ``shown`` largest weights, by row name."""
        ray = self._ray()
        order = np.argsort(-np.abs(ray), kind="stable")[:shown]
        weights = ", ".join(f"{self._row_name('rows', int(r))} {ray[r]:.3g}" for r in order if ray[r] != 0)
        return ["  certificate: a Farkas ray, rows weighted so that no x of the blocks meets their sum "
                "(res.infeasibility_certificate(name))",
                f"  largest weights: {weights}"]


def _lookup(table: dict, item, what: str, model: str):
    """The model's variable or constraint ``item`` (a name or the object itself), else a ModelError listing
    the names and suggesting the closest (difflib)."""
    name = item if isinstance(item, str) else getattr(item, "name", None)
    if name in table and (isinstance(item, str) or table[name] is item):
        return table[name]
    names = list(table)
    if name in table:
        raise ModelError(f"unknown {what} {item!r} in model '{model}': it is another model's {what} '{name}'")
    message = f"unknown {what} {item!r} in model '{model}'; its {what}s: {names}"
    if isinstance(name, str):
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            message += f" (did you mean '{close[0]}'?)"
    raise ModelError(message)


_DUAL_COLUMNS = ("dual", "activity", "slack")


def _label_columns(index, taken: tuple[str, ...]) -> list[tuple[str, pd.Index, np.ndarray | None]]:
    """(column name, labels, codes or None) per label level of an entity set, edge set or None (global).

    An edge set between a set and itself gives "<set>_src" and "<set>_dst"; a name already taken by a
    value column gets "_label" appended.
    """
    if index is None:
        levels = []
    elif isinstance(index, EntitySet):
        levels = [(index.name, index.labels, None)]
    else:
        src, dst = index.src_set, index.dst_set
        names = (src.name, dst.name) if src is not dst else (f"{src.name}_src", f"{dst.name}_dst")
        levels = [(names[0], src.labels, index.src), (names[1], dst.labels, index.dst)]
    out = []
    for name, labels, codes in levels:
        while name in taken:
            name += "_label"
        out.append((name, labels, codes))
    return out
