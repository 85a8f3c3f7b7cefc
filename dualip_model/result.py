"""Results in the user's terms: status, objective, certified bound and gap, labeled primal and duals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .backend import RawResult
from .errors import ModelError
from .sets import EdgeSet
from .standard_form import StandardForm
from .status import Status


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / max(1, |objective|, |bound|) in minimization terms; NaN if either is unknown."""
    if not (np.isfinite(objective) and np.isfinite(bound)):
        return float("nan") if np.isnan(objective) or np.isnan(bound) else float("inf")
    return (objective - bound) / max(1.0, abs(objective), abs(bound))


class Result:
    """The answer of Model.solve; maximization is undone here and only here (sense = -1).

    objective: user-sense objective at x; bound: a bound on the optimum from the backend's certificate
    (a lower bound when minimizing, an upper bound when maximizing); gap: relative_gap in min terms.
    """

    def __init__(self, model, sf: StandardForm, raw: RawResult, backend: str):
        self.model = model
        self.standard_form = sf
        self.raw = raw
        self.backend = backend
        sense = sf.layout.sense
        self.status: Status = raw.status
        self.objective = sense * raw.objective
        self.bound = sense * raw.bound
        self.gap = relative_gap(raw.objective, raw.bound)
        self.iterations = raw.iterations
        self.solve_time = raw.solve_time
        self.log = raw.log
        self.message = raw.message
        self.history = raw.history
        self.guarantees = raw.guarantees
        self._x = None if raw.x is None else sf.layout.to_original(np.asarray(raw.x, dtype=np.float64))

    # ------------------------------------------------------------------ primal
    @property
    def x_all(self) -> np.ndarray:
        """The full primal vector in the model's column order (variables concatenated)."""
        if self._x is None:
            raise ModelError(f"no primal solution: status is {self.status}")
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
        if len(self.model.variables) != 1:
            raise ModelError(f"model has variables {list(self.model.variables)}; use result.primal(name)")
        return self.primal(next(iter(self.model.variables.values())))

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

        A Series over the constraint's entities (one value for a global constraint), or a numpy array.
        """
        con = self._constraint(constraint)
        slot = next(s for s in self.standard_form.layout.constraints if s.name == con.name)
        source = self.raw.row_dual if slot.kind == "rows" else self.raw.block_dual
        if source is None:
            raise ModelError(f"backend '{self.backend}' returned no duals for constraint '{con.name}'")
        values = self.standard_form.layout.sense * np.asarray(source[slot.start : slot.stop], dtype=np.float64)
        if not labeled:
            return values
        if con.index is None:
            return pd.Series(values, index=pd.Index([con.name]), name=con.name)
        index = con.index.labels() if isinstance(con.index, EdgeSet) else con.index.labels
        return pd.Series(values, index=index, name=con.name)

    # ------------------------------------------------------------------ helpers
    def _variable(self, var):
        name = var if isinstance(var, str) else getattr(var, "name", None)
        if name not in self.model.variables or (not isinstance(var, str) and self.model.variables[name] is not var):
            raise ModelError(f"unknown variable {var!r} in model '{self.model.name}'")
        return self.model.variables[name]

    def _constraint(self, con):
        name = con if isinstance(con, str) else getattr(con, "name", None)
        if name not in self.model.constraints:
            raise ModelError(f"unknown constraint {con!r} in model '{self.model.name}'")
        return self.model.constraints[name]

    def __repr__(self) -> str:
        return (f"Result(status={self.status.value!r}, objective={self.objective:.10g}, "
                f"bound={self.bound:.10g}, backend={self.backend!r})")

    def __str__(self) -> str:
        sf = self.standard_form
        lines = [
            f"{self.model.name}: {self.status.value} ({self.backend}, {self.solve_time:.3f} s, "
            f"{self.iterations} iterations)",
            f"  objective  {self.objective:.10g}",
            f"  bound      {self.bound:.10g}   rel. gap {self.gap:.3g}",
            f"  size       {sf.n_cols} columns, {sf.n_rows} coupling rows, {sf.nnz} nonzeros, {sf.n_blocks} blocks",
        ]
        if self.guarantees:
            lines.append(f"  guarantees {', '.join(self.guarantees)}")
        if self.message:
            lines.append(f"  message    {self.message}")
        return "\n".join(lines)
