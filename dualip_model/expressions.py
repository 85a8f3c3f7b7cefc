"""Linear expressions kept as columnar term blocks: e_r = sum_k a_k x_{j_k} [r_k = r] + const_r.

An expression is indexed by an entity set, an edge set, or nothing (a scalar). Its terms are a tuple of
``Terms`` blocks, each referring to one variable with arrays (or scalars) of coefficients, rows and
columns; arrays are read-only (user data is frozen once on entry, see ``_arrays.frozen``) and shared
between terms and with the sets, never copied per term or expanded into Python objects.

A pandas Series is aligned by label to the expression's index (``sets.align``); every computed coefficient
and constant is checked for float64 overflow, naming the entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import as_float, check_finite_result, frozen, is_arrow
from .errors import ModelError
from .sets import EdgeSet, EntitySet, _plain, align


@dataclass(frozen=True)
class Terms:
    """Terms a_k x[var.start + col_k] in row row_k, k = 0..n-1.

    ``cols`` None means cols = 0..var.size-1; ``rows`` None means row_k = k (aligned with the expression
    index; for scalar expressions every row is 0); ``coef`` is a float or a float64 array of length n.
    """

    var: object  # Variable (not imported to avoid a cycle)
    coef: float | np.ndarray
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    name: str | None = None  # name of the data ``coef`` is (a pandas Series' name), for display only

    def __len__(self) -> int:
        return self.var.size if self.cols is None else self.cols.shape[0]

    def col_array(self) -> np.ndarray:
        return np.arange(self.var.size) if self.cols is None else self.cols

    def row_array(self) -> np.ndarray:
        return np.arange(len(self)) if self.rows is None else self.rows

    def coef_array(self) -> np.ndarray:
        return np.full(len(self), self.coef) if np.isscalar(self.coef) else self.coef


def _describe_row(index, i: int) -> str:
    """How a message names row i of an expression over ``index`` (an edge, an entity, or the scalar row)."""
    if isinstance(index, EdgeSet):
        return index.describe(i)
    if isinstance(index, EntitySet):
        return f"{index.name}={_plain(index.labels[i])!r}"
    return "the scalar row"


def _index_size(index) -> int:
    return 1 if index is None else len(index)


def _index_name(index) -> str:
    return "scalar" if index is None else f"'{index.name}'"


class LinearExpression:
    """e_r = sum over term blocks of a_k x_{j_k} for rows r of ``index`` (None: one scalar row), plus const."""

    __array_ufunc__ = None  # make numpy defer `array * expr`, `array <= expr` to us
    __pandas_priority__ = 5000  # same for pandas Series

    def __init__(self, model, index, terms: tuple[Terms, ...], constant=0.0):
        self.model = model
        self.index = index
        self.terms = terms
        self.constant = constant  # float or array aligned with index

    # ----------------------------------------------------------------- construction helpers
    @property
    def size(self) -> int:
        return _index_size(self.index)

    @property
    def nterms(self) -> int:
        return sum(len(t) for t in self.terms)

    def __repr__(self) -> str:
        return f"LinearExpression(index={_index_name(self.index)}, rows={self.size}, terms={self.nterms})"

    def _describe(self, i: int) -> str:
        return _describe_row(self.index, i)

    def _data(self, values, what: str, allow_inf: bool = False, held: bool = True):
        """Validate a scalar or an array aligned with this expression's index (a pandas Series by label).

        ``held``: the array may be kept in an expression, so it is frozen (see ``_arrays.as_float``).
        """
        n = None if self.index is None else len(self.index)
        if self.index is None and not np.isscalar(values) and not is_arrow(values):
            arr = np.asarray(values)
            if arr.size != 1:
                raise ModelError(f"{what}: a scalar expression takes a scalar, got {arr.size} values")
            values = arr.reshape(()).item()
        values = align(values, self.index, what)
        return as_float(values, n, what, allow_inf=allow_inf, describe=self._describe, held=held)

    def _checked(self, result, what: str, operation: str):
        """``result`` (a coefficient or constant array, rows of this expression's index) if it did not overflow."""
        return check_finite_result(result, what, describe=self._describe, operation=operation)

    # ----------------------------------------------------------------- arithmetic
    def _scaled(self, factor, what: str | None = None) -> LinearExpression:
        """factor * e for a validated or raw factor (scalar or one entry per row); overflow is named."""
        what = what or f"coefficient multiplying an expression over {_index_name(self.index)}"
        label = getattr(factor, "name", None)
        factor = self._data(factor, what)
        terms = []
        with np.errstate(over="ignore", invalid="ignore"):
            for t in self.terms:
                name = None
                if np.isscalar(factor):
                    coef = t.coef * factor
                    name = t.name if factor == 1.0 else None
                elif t.rows is None and np.isscalar(t.coef) and t.coef == 1.0:
                    coef = factor  # the validated, frozen array: shared, no copy per term
                    name = label if isinstance(label, str) and label else None
                else:
                    coef = t.coef * (factor if t.rows is None else factor[t.rows])
                _check_coefficients(t, coef, what)
                terms.append(Terms(t.var, coef, t.rows, t.cols, name))
            constant = self._checked(self.constant * factor, what, "constant")
        return LinearExpression(self.model, self.index, tuple(terms), constant)

    def __mul__(self, other):
        if isinstance(other, (LinearExpression, _variable_type())):
            raise ModelError("product of two expressions is not linear")
        return self._scaled(other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        what = f"divisor of an expression over {_index_name(self.index)}"
        divisor = self._data(other, what, held=False)  # only its reciprocal is kept
        zero = np.asarray(divisor) == 0.0
        if zero.any():
            where = "" if zero.ndim == 0 else f" at {self._describe(int(np.argmax(zero)))}"
            raise ModelError(f"{what}: division by zero{where}")
        with np.errstate(over="ignore"):
            reciprocal = self._checked(1.0 / divisor, what, "reciprocal")
        return self._scaled(reciprocal, what)

    def __neg__(self):
        return self._scaled(-1.0)

    def __pos__(self):
        return self

    def __add__(self, other):
        other = as_expression(other, like=self)
        if other is NotImplemented:
            return NotImplemented
        if other.model is not self.model:
            raise ModelError("cannot combine expressions of two different models")
        index = self.index
        if other.index is not self.index:
            if other.index is None and not other.terms:
                index = self.index
            elif self.index is None and not self.terms:
                index = other.index
            else:
                raise ModelError(
                    f"cannot add an expression over {_index_name(other.index)} to one over "
                    f"{_index_name(self.index)}; sum one of them first"
                )
        with np.errstate(over="ignore", invalid="ignore"):
            constant = self.constant + other.constant
        constant = check_finite_result(constant, "constant of a sum of expressions", operation="sum",
                                       describe=lambda i: _describe_row(index, i))
        return LinearExpression(self.model, index, self.terms + other.terms, constant)

    __radd__ = __add__

    def __sub__(self, other):
        other = as_expression(other, like=self)
        if other is NotImplemented:
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    # ----------------------------------------------------------------- aggregation
    def sum(self, by: EntitySet | None = None) -> LinearExpression:
        """Sum over the index: to a scalar (by=None) or to one row per entity of ``by``."""
        if by is None:
            if self.index is None:
                return self
            terms = tuple(Terms(t.var, t.coef, None, t.cols, t.name) for t in self.terms)
            with np.errstate(over="ignore", invalid="ignore"):
                const = float(np.sum(np.broadcast_to(self.constant, (self.size,))))
            check_finite_result(const, f"sum of an expression over {_index_name(self.index)}", operation="constant")
            return LinearExpression(self.model, None, terms, const)
        if not isinstance(by, EntitySet):
            raise ModelError(f"sum(by=...) takes an EntitySet, got {type(by).__name__}")
        if by is self.index:
            return self
        if isinstance(self.index, EdgeSet) and by in (self.index.src_set, self.index.dst_set):
            codes = self.index.src if by is self.index.src_set else self.index.dst
            if self.index.src_set is self.index.dst_set:
                raise ModelError(
                    f"edge set '{self.index.name}' joins '{by.name}' to itself; sum by src or dst is ambiguous"
                )
            terms = tuple(Terms(t.var, t.coef, codes if t.rows is None else codes[t.rows], t.cols, t.name)
                          for t in self.terms)
            const = 0.0
            if not np.isscalar(self.constant) or self.constant != 0.0:
                weights = np.broadcast_to(np.asarray(self.constant, dtype=np.float64), codes.shape)
                with np.errstate(over="ignore", invalid="ignore"):
                    const = np.bincount(codes, weights=weights, minlength=len(by))
                const = check_finite_result(const, f"sum of an expression over '{self.index.name}' by '{by.name}'",
                                            describe=lambda i: _describe_row(by, i),
                                            operation="constant")
            return LinearExpression(self.model, by, terms, const)
        raise ModelError(
            f"cannot sum an expression over {_index_name(self.index)} by '{by.name}': "
            f"'{by.name}' is not an endpoint of it"
        )

    # ----------------------------------------------------------------- relations
    def _relation(self, rhs, lower_side: bool, upper_side: bool) -> Relation:
        """self (<=, >=, ==) rhs; a data rhs stays raw until the named constraint validates it."""
        if isinstance(rhs, (LinearExpression, _variable_type())):
            body, bound = self - rhs, 0.0
        else:
            body, bound = self, rhs
        return Relation(body, bound if lower_side else -np.inf, bound if upper_side else np.inf)

    def __le__(self, rhs):
        return self._relation(rhs, False, True)

    def __ge__(self, rhs):
        return self._relation(rhs, True, False)

    def __eq__(self, rhs):  # noqa: D105  (builds a relation, like numpy)
        return self._relation(rhs, True, True)

    __hash__ = None

    def between(self, lower, upper) -> Relation:
        """lower <= e <= upper (a range); either side may be +-inf, scalars or arrays, or None for no bound."""
        return Relation(self, -np.inf if lower is None else lower, np.inf if upper is None else upper)

    # ----------------------------------------------------------------- evaluation
    def value(self, x: np.ndarray) -> np.ndarray | float:
        """Evaluate at the model's full primal vector x (original column order)."""
        out = np.zeros(self.size)
        for t in self.terms:
            vals = x[t.var.start : t.var.stop]
            vals = vals if t.cols is None else vals[t.cols]
            contrib = t.coef * vals
            if self.index is None:
                out[0] += contrib.sum()
            elif t.rows is None:
                out += contrib
            else:
                out += np.bincount(t.rows, weights=contrib, minlength=self.size)
        out = out + self.constant
        return float(out[0]) if self.index is None else out


def _check_coefficients(t: Terms, coef, what: str) -> None:
    """Raise naming the variable and its element if a computed coefficient of ``t`` overflowed float64."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(coef)
    if not bad.any():
        return
    if np.ndim(coef) == 0:
        raise ModelError(f"{what}: the coefficient of variable '{t.var.name}' overflows float64 ({coef})")
    k = int(np.argmax(bad))
    col = k if t.cols is None else int(t.cols[k])
    raise ModelError(f"{what}: the coefficient of variable '{t.var.name}' at {t.var._describe(col)} overflows "
                     f"float64 ({coef[k]})")


class Relation:
    """lower <= e <= upper, the not-yet-named body of a constraint; the sides are validated by Constraint."""

    def __init__(self, expr: LinearExpression, lower, upper):
        self.expr = expr
        self.lower = lower
        self.upper = upper

    def __bool__(self):
        raise ModelError("a relation has no truth value; pass it to Model.subject_to (ranges: expr.between(lo, hi))")


def as_expression(value, like: LinearExpression):
    """Wrap a variable, a number or an aligned array as an expression with ``like``'s index."""
    if isinstance(value, LinearExpression):
        return value
    if isinstance(value, _variable_type()):
        return value.to_expression()
    if isinstance(value, Relation):
        return NotImplemented
    const = like._data(value, f"constant added to an expression over {_index_name(like.index)}")
    return LinearExpression(like.model, like.index if not np.isscalar(const) else None, (), const)


def _variable_type():
    from .variables import Variable

    return Variable


def matmul(matrix, var, index) -> LinearExpression:
    """The expression (M x)_r = sum_j M[r, j] x_j, one row per element of ``index``, from a sparse matrix."""
    import scipy.sparse as sp

    from .variables import Variable

    if not isinstance(var, Variable):
        raise ModelError(f"matmul: expected a Variable, got {type(var).__name__}")
    if not isinstance(index, (EntitySet, EdgeSet)) or index.model is not var.model:
        raise ModelError(f"matmul: index must be an entity or edge set of the model of variable '{var.name}'")
    coo = sp.coo_matrix(matrix)
    if coo.shape != (len(index), var.size):
        raise ModelError(
            f"matmul: matrix has shape {coo.shape}, expected ({len(index)}, {var.size}) for rows "
            f"'{index.name}' and variable '{var.name}'"
        )
    coo = coo.tocsr().tocoo()  # canonical: duplicates summed
    data = as_float(frozen(coo.data, fresh=True), None, f"matmul: matrix entries for variable '{var.name}'")
    return LinearExpression(var.model, index, (Terms(var, data, coo.row.astype(np.int64), coo.col.astype(np.int64)),))
