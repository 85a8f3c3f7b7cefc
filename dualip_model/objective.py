"""The objective: min or max of sum_k w_k f_k(x), a weighted sum of named linear objectives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .expressions import LinearExpression


@dataclass(frozen=True)
class Objective:
    """`sense * sum_k weights[k] * parts[k](x)`, with sense +1 (minimize) or -1 (maximize)."""

    sense: int
    parts: dict  # name -> LinearExpression (scalar)
    weights: dict  # name -> float

    @staticmethod
    def build(model, sense: int, objective, weights) -> Objective:
        parts = objective if isinstance(objective, dict) else {"objective": objective}
        if not parts:
            raise ModelError("objective: no expression given")
        weights = dict(weights or {})
        unknown = set(weights) - set(parts)
        if unknown:
            raise ModelError(f"objective: weights given for unknown objectives {sorted(unknown)}")
        checked = {}
        for name, expr in parts.items():
            expr = _as_scalar_expression(model, name, expr)
            w = weights.setdefault(name, 1.0)
            if isinstance(w, (bool, str, bytes)) or not isinstance(w, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(w):
                raise ModelError(f"objective '{name}': weight must be a finite number, got {w!r}")
            checked[name] = expr
        return Objective(sense, checked, {k: float(weights[k]) for k in checked})


def _as_scalar_expression(model, name, expr) -> LinearExpression:
    """A variable or scalar expression of ``model``, or a finite number (a constant objective, e.g. minimize(0))."""
    from .variables import Variable

    if isinstance(expr, Variable):
        expr = expr.to_expression()
    if isinstance(expr, (int, float, np.integer, np.floating)) and not isinstance(expr, (bool, np.bool_)):
        if not np.isfinite(expr):
            raise ModelError(f"objective '{name}': a constant objective must be finite, got {expr!r}")
        return LinearExpression(model, None, (), float(expr))
    if not isinstance(expr, LinearExpression):
        raise ModelError(f"objective '{name}': expected a linear expression, got {type(expr).__name__}")
    if expr.model is not model:
        raise ModelError(f"objective '{name}': expression uses variables of another model")
    if expr.index is not None:
        raise ModelError(
            f"objective '{name}': expression is indexed by '{expr.index.name}'; use .sum() to make it a scalar"
        )
    return expr
