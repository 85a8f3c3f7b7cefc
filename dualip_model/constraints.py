"""Named constraints lower_r <= sum_k a_k x_{j_k} <= upper_r, one row per entity of their index (or one row).

Sides are scalars or one value per row (a pandas Series aligned by label, see ``sets.align``); the
expression's constant moves to the sides, and a side that overflows float64 on the way is an error.
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_float, check_finite_result, is_arrow
from .errors import ModelError
from .expressions import LinearExpression, Relation
from .sets import EdgeSet, EntitySet, _plain, align


class Constraint:
    """A named family of rows; per-entity when its expression is indexed by a set, global when scalar.

    ``block``: True forces the rows to become block polytopes (error if they cannot), False forces
    coupling rows, None (default) lets the compiler decide.
    """

    def __init__(self, model, name: str, relation: Relation, block: bool | None = None):
        if not isinstance(relation, Relation):
            raise ModelError(
                f"constraint '{name}': expected a relation such as `expr <= rhs`, got {type(relation).__name__}"
            )
        expr = relation.expr
        if expr.model is not model:
            raise ModelError(f"constraint '{name}': its expression uses variables of another model")
        if not expr.terms:
            raise ModelError(f"constraint '{name}' has no variables")
        self.model = model
        self.name = name
        self.block = block
        self.index = expr.index
        self.expr = LinearExpression(model, expr.index, expr.terms, 0.0)
        n = expr.size
        length = None if self.index is None else n
        const = np.asarray(expr.constant, dtype=np.float64)
        sides = []
        for which, raw in (("lower", relation.lower), ("upper", relation.upper)):
            what = f"constraint '{name}': {which} side"
            if self.index is None and raw is not None and not np.isscalar(raw) and not is_arrow(raw):
                if np.size(raw) != 1:
                    raise ModelError(f"{what}: a global (scalar) constraint takes a scalar, got {np.size(raw)} values")
                raw = np.asarray(raw).reshape(-1)[0]
            value = np.asarray(as_float(align(raw, self.index, what), length, what, allow_inf=True, held=False,
                                        describe=lambda i: f"'{self.label(i)}'"), dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                side = value - const  # a new array: the caller's side is not kept
            sides.append(check_finite_result(side, f"{what} minus the expression's constant",
                                             finite_inputs=np.isfinite(value), operation="value",
                                             describe=lambda i: f"'{self.label(i)}'"))
        lower, upper = sides
        self.lower = float(lower) if lower.ndim == 0 else lower
        self.upper = float(upper) if upper.ndim == 0 else upper
        lo, hi = np.broadcast_to(self.lower, (n,)), np.broadcast_to(self.upper, (n,))
        bad = lo > hi
        if bad.any():
            i = int(np.argmax(bad))
            raise ModelError(f"constraint '{self.label(i)}': lower side {lo[i]} exceeds upper side {hi[i]}")
        if (lo == np.inf).any() or (hi == -np.inf).any():
            i = int(np.argmax((lo == np.inf) | (hi == -np.inf)))
            raise ModelError(f"constraint '{self.label(i)}': infeasible infinite bound")

    @property
    def size(self) -> int:
        return self.expr.size

    def label(self, i: int) -> str:
        """Human-readable name of row i, e.g. "budget[item='i7']"."""
        if isinstance(self.index, EntitySet):
            return f"{self.name}[{self.index.name}={_plain(self.index.labels[i])!r}]"
        if isinstance(self.index, EdgeSet):
            return f"{self.name}[{self.index.describe(i)}]"
        return self.name

    def __repr__(self) -> str:
        where = "global" if self.index is None else f"per '{self.index.name}'"
        return f"Constraint({self.name!r}, {where}, rows={self.size})"
