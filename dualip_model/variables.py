"""Decision variables: one column per element of an entity or edge set, l <= x <= u.

Bounds are scalars or one value per element (a pandas Series aligned by label, see ``sets.align``);
``None`` means no bound (lower -inf, upper +inf).
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_float
from .errors import ModelError
from .expressions import LinearExpression, Terms
from .sets import EdgeSet, EntitySet, _plain, align


class Variable:
    """x_e for every e in ``index`` (an EntitySet or EdgeSet), occupying columns [start, stop) of the model."""

    __array_ufunc__ = None  # numpy defers `array * x` to Variable.__rmul__
    __pandas_priority__ = 5000

    def __init__(self, model, name: str, index, start: int, lower=0.0, upper=np.inf):
        if not isinstance(index, (EntitySet, EdgeSet)):
            raise ModelError(f"variable '{name}': over= must be an EntitySet or EdgeSet, got {type(index).__name__}")
        if index.model is not model:
            raise ModelError(f"variable '{name}': set '{index.name}' belongs to another model")
        self.model = model
        self.name = name
        self.index = index
        self.start = start
        self.size = len(index)
        self.stop = start + self.size
        describe = self._describe
        bounds = []
        for which, value, unbounded in (("lower", lower, -np.inf), ("upper", upper, np.inf)):
            what = f"variable '{name}': {which} bound"
            value = unbounded if value is None else align(value, index, what)
            bounds.append(as_float(value, self.size, what, allow_inf=True, describe=describe))
        self.lower, self.upper = bounds
        bad = np.broadcast_to(self.lower, (self.size,)) > np.broadcast_to(self.upper, (self.size,))
        if bad.any():
            i = int(np.argmax(bad))
            raise ModelError(
                f"variable '{name}' at {describe(i)}: lower bound {np.broadcast_to(self.lower, (self.size,))[i]}"
                f" exceeds upper bound {np.broadcast_to(self.upper, (self.size,))[i]}"
            )
        if np.any(self.lower == np.inf):
            raise ModelError(f"variable '{name}': lower bound is +inf")
        if np.any(self.upper == -np.inf):
            raise ModelError(f"variable '{name}': upper bound is -inf")

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, over={self.index.name!r}, size={self.size})"

    def _describe(self, i: int) -> str:
        if isinstance(self.index, EdgeSet):
            return self.index.describe(i)
        return f"{self.index.name}={_plain(self.index.labels[i])!r}"

    def to_expression(self) -> LinearExpression:
        return LinearExpression(self.model, self.index, (Terms(self, 1.0),))

    # Arithmetic and aggregation delegate to the expression form.
    def __mul__(self, other):
        return self.to_expression() * other

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self.to_expression() / other

    def __neg__(self):
        return -self.to_expression()

    def __add__(self, other):
        return self.to_expression() + other

    __radd__ = __add__

    def __sub__(self, other):
        return self.to_expression() - other

    def __rsub__(self, other):
        return other - self.to_expression()

    def __le__(self, rhs):
        return self.to_expression() <= rhs

    def __ge__(self, rhs):
        return self.to_expression() >= rhs

    def __eq__(self, rhs):
        return self.to_expression() == rhs

    __hash__ = object.__hash__

    def sum(self, by: EntitySet | None = None) -> LinearExpression:
        """sum_e x_e (by=None) or, per entity s of ``by``, sum over edges incident to s."""
        return self.to_expression().sum(by=by)

    def between(self, lower, upper):
        return self.to_expression().between(lower, upper)
