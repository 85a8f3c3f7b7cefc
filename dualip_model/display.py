"""Symbolic display of a model: e_r = sum_{j in D(r)} a_j x_j as sympy sums over its named index sets.

Each term block of an expression becomes one indexed sum (sum_{(u,i) in E} over an edge set, sum_{i in
item(u)} over the neighbours of a row entity, sum_{u in user} over an entity set), each constraint one
family "for all u in user", so rendering costs O(term blocks) (plus O(rows) vectorized checks of
array-valued constraint sides), never O(nnz). Coefficient and bound arrays become indexed symbols, named
after the user's data where ``data`` passes it (the very arrays the model holds), else generic (a, b, ...);
array right-hand sides are named after their constraint. ``to_latex`` prints with ``sympy.latex``,
``to_text`` with ``sympy.sstr``.
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass

import numpy as np
import sympy
from sympy import Expr, Idx, IndexedBase, Symbol
from sympy.concrete.expr_with_limits import AddWithLimits
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from ._arrays import to_numpy
from .errors import ModelError
from .sets import EdgeSet, EntitySet


# --------------------------------------------------------------------------- sympy objects
class SetIndex(Idx):
    """An index i ranging over a named set D: i in D, or i in D(j) (the neighbours of index j) when ``of`` is set.

    Indices of one edge set share its domain and range over it jointly: (u, i) in E.
    """

    def __new__(cls, label: Symbol, domain: Symbol, *of: SetIndex):
        return Expr.__new__(cls, label, domain, *of)

    @property
    def domain(self) -> Symbol:
        """The set this index ranges over (an entity set, an edge set, or a neighbour set's name)."""
        return self.args[1]

    @property
    def of(self) -> tuple:
        """The indices the domain depends on: (u,) for i in item(u), () otherwise."""
        return self.args[2:]

    @property
    def lower(self):
        """No integer bounds: sums over this index take its domain, not a range."""
        return None

    @property
    def upper(self):
        """No integer bounds (see lower)."""
        return None


class SetSum(sympy.Sum):
    """sum_{i in D} f: a sympy Sum whose limits are SetIndex objects (ranges over named sets, not integers)."""

    def __new__(cls, function, *indices: SetIndex):
        return AddWithLimits.__new__(cls, function, *indices)

    def _latex(self, printer) -> str:
        body = printer._print(self.function)
        if self.function.is_Add:
            body = rf"\left({body}\right)"
        where = _domain(printer, [lim[0] for lim in self.limits], r"\in")
        return rf"\sum_{{{where}}} {body}"

    def _sympystr(self, printer) -> str:
        body = printer._print(self.function)
        if self.function.is_Add:
            body = f"({body})"
        return f"sum_{{{_domain(printer, [lim[0] for lim in self.limits], 'in')}}} {body}"


def _domain(printer, indices, member: str) -> str:
    """'u in user', '(u,i) in eligible', 'i in item(u)': consecutive indices of one domain range jointly."""
    parts = []
    for (domain, of), group in itertools.groupby(indices, key=lambda ix: (ix.domain, ix.of)):
        labels = [printer._print(ix.label) for ix in group]
        joint = labels[0] if len(labels) == 1 else f"({','.join(labels)})"
        where = printer._print(domain)
        if of:
            where += f"({','.join(printer._print(ix.label) for ix in of)})"
        parts.append(f"{joint} {member} {where}")
    return ", ".join(parts)


@dataclass(frozen=True)
class SymbolicRow:
    """lower <= body <= upper for all ``forall`` (a constraint family or a variable's bounds); None: no side."""

    name: str
    lower: Expr | None
    body: Expr
    upper: Expr | None
    forall: tuple[SetIndex, ...]
    role: str | None = None  # constraints: "block", "coupling", or None when only compiling can tell

    @property
    def relation(self):
        """The row as a sympy relation: Le, Ge, Eq, an And of two Le for a range, sympy.true when free."""
        if self.lower is None and self.upper is None:
            return sympy.true
        if self.lower is None:
            return sympy.Le(self.body, self.upper, evaluate=False)
        if self.upper is None:
            return sympy.Ge(self.body, self.lower, evaluate=False)
        if self.lower == self.upper:
            return sympy.Eq(self.body, self.upper, evaluate=False)
        return sympy.And(sympy.Le(self.lower, self.body, evaluate=False),
                         sympy.Le(self.body, self.upper, evaluate=False), evaluate=False)


@dataclass(frozen=True)
class SymbolicModel:
    """sense * objective s.t. constraint families and variable bounds, with the LaTeX name of every symbol.

    ``parts`` (name -> expression) is set when the objective is a weighted sum of named parts; then
    ``objective`` is sum_k w_k part_k over their symbols.
    """

    sense: int
    objective: Expr
    parts: dict
    constraints: tuple[SymbolicRow, ...]
    bounds: tuple[SymbolicRow, ...]
    latex_names: dict

    def _cells(self, printer, words: dict, note) -> list[tuple[str, str, str, str]]:
        """One (keyword, relation, for all, note) line per objective, where-part, constraint family, bound."""
        lines = [(words["max"] if self.sense < 0 else words["min"], printer.doprint(self.objective), "", "")]
        for k, (name, expr) in enumerate(self.parts.items()):
            part = f"{printer.doprint(Symbol(name))} = {printer.doprint(expr)}"
            lines.append((words["where"] if k == 0 else "", part, "", ""))
        rows = [(row, note(row)) for row in self.constraints] + [(row, "") for row in self.bounds]
        for k, (row, tag) in enumerate(rows):
            forall = words["forall"] + _domain(printer, row.forall, words["in"]) if row.forall else ""
            lines.append((words["st"] if k == 0 else "", _relation(printer, row, words), forall, tag))
        return lines

    def to_latex(self) -> str:
        """The model as a LaTeX ``array`` (math mode, needs amsmath for \\text)."""
        printer = LatexPrinter({"symbol_names": self.latex_names, "order": "none"})

        def note(row):
            return f"({_latex_name(row.name)}" + (rf",\ \text{{{row.role}}})" if row.role else ")")

        lines = self._cells(printer, _LATEX_WORDS, note)
        body = " \\\\\n".join(" & ".join(cells).rstrip() for cells in lines)
        return f"\\begin{{array}}{{llll}}\n{body}\n\\end{{array}}"

    def to_text(self) -> str:
        """The model as aligned plain text: objective, where-lines, 'for all' families, bounds."""
        printer = StrPrinter({"order": "none", "full_prec": False})

        def note(row):
            return f"({row.name}" + (f", {row.role})" if row.role else ")")

        lines = self._cells(printer, _TEXT_WORDS, note)
        widths = [max(len(cells[c]) for cells in lines) for c in range(3)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(cells, widths + [0])).rstrip()
                         for cells in lines)


_LATEX_WORDS = {"max": r"\max", "min": r"\min", "where": r"\text{where}", "st": r"\text{s.t.}",
                "forall": r"\forall\, ", "in": r"\in", "le": r"\leq", "ge": r"\geq", "eq": "=",
                "free": r"\ \text{free}"}
_TEXT_WORDS = {"max": "max", "min": "min", "where": "where", "st": "s.t.", "forall": "for all ", "in": "in",
               "le": "<=", "ge": ">=", "eq": "==", "free": " free"}


def _relation(printer, row: SymbolicRow, words: dict) -> str:
    """'lo <= body <= hi', 'body <= hi', 'body >= lo', 'body == rhs' or 'body free' in the printer's words."""
    body = printer.doprint(row.body)
    if row.lower is None and row.upper is None:
        return body + words["free"]
    if row.lower is None:
        return f"{body} {words['le']} {printer.doprint(row.upper)}"
    if row.upper is None:
        return f"{body} {words['ge']} {printer.doprint(row.lower)}"
    if row.lower == row.upper:
        return f"{body} {words['eq']} {printer.doprint(row.upper)}"
    return f"{printer.doprint(row.lower)} {words['le']} {body} {words['le']} {printer.doprint(row.upper)}"


# --------------------------------------------------------------------------- entry points
def symbolic(model, data=None) -> SymbolicModel:
    """The model as sympy objects: indexed sums, per-entity constraint families, variable bounds.

    ``data``: a pandas DataFrame or a mapping name -> array; a coefficient or bound array of the model
    that is one of these very arrays (float64 data shared with the model, as when a float64 column
    multiplies a variable) is shown under that name. Other entries are ignored.
    """
    return _Builder(model, data).build()


def to_latex(model, data=None) -> str:
    """LaTeX of the model as indexed sums (see ``symbolic`` for ``data``)."""
    return symbolic(model, data).to_latex()


def to_text(model, data=None) -> str:
    """Short plain-text form of the model for terminals (see ``symbolic`` for ``data``)."""
    return symbolic(model, data).to_text()


def repr_latex(model) -> str:
    """The LaTeX wrapped as display math, for Jupyter's ``_repr_latex_``."""
    return f"$$\n{to_latex(model)}\n$$"


# --------------------------------------------------------------------------- building
class _Builder:
    """One pass over the model's sets, variables, constraints and objective, O(1) work per term block."""

    def __init__(self, model, data):
        self.model = model
        self.latex_names: dict = {}
        self.taken = set(model.sets) | set(model.variables) | set(model.constraints)
        if model.objective is not None:
            self.taken |= set(model.objective.parts)
        self.arrays = self._data_names(data)  # array key -> name
        self.taken |= set(self.arrays.values())
        self.letters = {}  # entity set name -> index label text
        for s in model.sets.values():
            if isinstance(s, EntitySet):
                self.letters[s.name] = self._fresh(next((ch.lower() for ch in s.name if ch.isalpha()), "k"))
        self.edge_letters = {}
        for s in model.sets.values():
            if isinstance(s, EdgeSet):
                src = self.letters[s.src_set.name]
                dst = self.letters[s.dst_set.name]
                self.edge_letters[s.name] = (src, self._fresh(dst + "'") if dst == src else dst)
        pool = itertools.chain(string.ascii_lowercase, (f"a{k}" for k in itertools.count(2)))
        self.generic = (name for name in pool if name not in self.taken)

    def _data_names(self, data) -> dict:
        """Array key -> name for the float64 arrays of ``data`` (other dtypes are copies the model never holds)."""
        if data is None:
            return {}
        if not hasattr(data, "items"):
            raise ModelError(f"data: expected a DataFrame or a mapping of names to arrays, got {type(data).__name__}")
        names = {}
        for name, values in data.items():
            if not isinstance(name, str) or not name:
                raise ModelError(f"data: names must be non-empty strings, got {name!r}")
            arr = to_numpy(values, f"data['{name}']", allow_null=True)
            if arr.dtype == np.float64:
                names[_key(arr)] = name
        return names

    def _fresh(self, text: str) -> str:
        while text in self.taken:
            text += "'"
        self.taken.add(text)
        return text

    def symbol(self, text: str, latex: str | None = None, **assumptions) -> Symbol:
        """The Symbol printed as ``text`` by sstr and ``latex`` (default: upright if multi-letter) by latex."""
        sym = Symbol(text, **assumptions)
        self.latex_names[sym] = _latex_name(text) if latex is None else latex
        return sym

    def base(self, text: str, latex: str | None = None) -> IndexedBase:
        """An indexed symbol (a variable, a coefficient or side array) named ``text``."""
        return IndexedBase(self.symbol(text, latex))

    def index(self, text: str, domain: Symbol, *of: SetIndex) -> SetIndex:
        """An integer index labeled ``text`` ranging over ``domain`` (the neighbours of ``of`` when given)."""
        return SetIndex(self.symbol(text, integer=True), domain, *of)

    def members(self, index, avoid=()) -> tuple[SetIndex, ...]:
        """The free indices of an entity set (u,) or edge set (u, i); labels in ``avoid`` get primes."""
        if index is None:
            return ()
        texts = self.edge_letters[index.name] if isinstance(index, EdgeSet) else (self.letters[index.name],)
        used = {str(ix.label) for ix in avoid}
        out = []
        for text in texts:
            while text in used:
                text += "'"
            used.add(text)
            out.append(self.index(text, self.symbol(index.name)))
        return tuple(out)

    def array(self, arr: np.ndarray, fallback: str | None = None, latex: str | None = None) -> IndexedBase:
        """The symbol of a coefficient or bound array: the data's name, else ``fallback``, else a generic letter."""
        key = _key(arr)
        if key in self.arrays:
            if self.arrays[key] in self.model.variables:
                raise ModelError(f"data: '{self.arrays[key]}' names an array of the model but is also a variable")
            return self.base(self.arrays[key])
        if fallback is not None:
            return self.base(fallback, latex)
        self.arrays[key] = next(self.generic)
        return self.base(self.arrays[key])

    # ----------------------------------------------------------------- expressions
    def term(self, t, index, rows: tuple[SetIndex, ...]) -> Expr:
        """One term block as sympy: scale * sum_{summed} coef[...] x[...], rows the expression's free indices."""
        if t.name and not np.isscalar(t.coef) and _key(t.coef) not in self.arrays and t.name not in self.taken \
                and t.name not in self.model.variables:  # a named pandas Series keeps its name (data= comes first)
            self.arrays[_key(t.coef)] = t.name
            self.taken.add(t.name)
        var = t.var
        x = self.base(var.name)
        E = var.index
        if t.cols is None and index is None:  # sum over all of x
            summed = self.members(E)
            return self._sum(t.coef, x, summed, summed, summed)
        if t.cols is None and t.rows is None and index is E:  # element-wise
            return self._sum(t.coef, x, rows, rows, ())
        if t.cols is None and isinstance(E, EdgeSet) and isinstance(index, EntitySet):
            ends = ((E.src_set, E.src, E.dst_set, 1), (E.dst_set, E.dst, E.src_set, 0))
            for fixed_set, codes, other_set, pos in ends:
                if t.rows is codes and index is fixed_set:  # sum(by=...): over the row entity's neighbours
                    (row,) = rows
                    text = self.edge_letters[E.name][pos]
                    neighbour = self.index(text, self.symbol(other_set.name if self._only_edges(E) else E.name), row)
                    elem = (row, neighbour) if pos == 1 else (neighbour, row)
                    return self._sum(t.coef, x, elem, elem, (neighbour,))
        summed = self.members(E, avoid=rows)  # general rows (from matmul): a_{r,j} per row r and column j
        coef_idx = summed if index is None else rows + summed
        return self._sum(t.coef, x, summed, coef_idx, summed)

    def _only_edges(self, E: EdgeSet) -> bool:
        """True if E is the model's only edge set from its source set to its destination set."""
        return sum(1 for s in self.model.sets.values() if isinstance(s, EdgeSet)
                   and s.src_set is E.src_set and s.dst_set is E.dst_set) == 1

    def _sum(self, coef, x: IndexedBase, x_idx, coef_idx, summed) -> Expr:
        """scale * sum_{summed} a[coef_idx] x[x_idx]: a scalar coefficient outside the sum, an array inside."""
        if np.isscalar(coef):
            inner, scale = x[x_idx], _number(coef)
        else:
            inner, scale = sympy.Mul(self.array(coef)[coef_idx], x[x_idx], evaluate=False), sympy.Integer(1)
        return scale * (SetSum(inner, *summed) if summed else inner)

    def expression(self, expr, rows) -> Expr:
        """A LinearExpression's row as sympy: its term blocks (in order) plus a scalar constant."""
        terms = [self.term(t, expr.index, rows) for t in expr.terms]
        if np.isscalar(expr.constant) and expr.constant != 0.0:
            terms.append(_number(expr.constant))
        return sympy.Add(*terms, evaluate=False) if terms else sympy.Integer(0)

    def sides(self, lower, upper, rows, name: str, single: bool):
        """(lower, upper) as numbers or indexed symbols, None for an all-infinite side.

        Array sides are named name_lo / name_up (LaTeX: underlined / overlined name), or just ``name`` when
        ``single`` and there is one array side or both sides are equal arrays (which share one symbol).
        """
        lo = _finite_side(lower, -np.inf)
        hi = _finite_side(upper, np.inf)
        lo_arr, hi_arr = lo is not None and not np.isscalar(lo), hi is not None and not np.isscalar(hi)
        equal = lo_arr and hi_arr and lo[0] == hi[0] and np.array_equal(lo, hi)
        plain = single and (equal or not (lo_arr and hi_arr))
        tex = _latex_name(name)
        out = []
        for side, is_arr, suffix, latex in ((hi, hi_arr, "_up", rf"\overline{{{tex}}}"),
                                            (lo, lo_arr, "_lo", rf"\underline{{{tex}}}")):
            if side is None:
                out.append(None)
            elif equal and out:
                out.append(out[0])
            elif is_arr:
                out.append(self.array(side, name if plain else name + suffix, None if plain else latex)[rows])
            else:
                out.append(_number(side))
        upper_expr, lower_expr = out
        return lower_expr, upper_expr

    # ----------------------------------------------------------------- model
    def build(self) -> SymbolicModel:
        """Objective (and weighted parts), constraint families with their roles, then variable bounds."""
        model = self.model
        obj = model.objective
        parts: dict = {}
        if obj is None:
            sense, objective = 1, sympy.Integer(0)
        else:
            sense = obj.sense
            exprs = {name: self.expression(e, ()) for name, e in obj.parts.items()}
            if list(obj.parts) == ["objective"] and obj.weights["objective"] == 1.0:
                objective = exprs["objective"]
            else:
                parts = exprs
                objective = sympy.Add(*(_number(obj.weights[n]) * self.symbol(n) for n in exprs), evaluate=False)
        roles = _roles(model.constraints.values())
        constraints = []
        for con in model.constraints.values():
            rows = self.members(con.index)
            body = self.expression(con.expr, rows)
            lower, upper = self.sides(con.lower, con.upper, rows, con.name, single=True)
            constraints.append(SymbolicRow(con.name, lower, body, upper, rows, roles[con.name]))
        bounds = []
        for var in model.variables.values():
            elem = self.members(var.index)
            x = self.base(var.name)
            lower, upper = self.sides(var.lower, var.upper, elem, var.name, single=False)
            indexed = not (lower is None or lower.is_Number) or not (upper is None or upper.is_Number)
            bounds.append(SymbolicRow(var.name, lower, x[elem] if indexed else x, upper, elem if indexed else ()))
        return SymbolicModel(sense, objective, parts, tuple(constraints), tuple(bounds), self.latex_names)


def _roles(constraints) -> dict:
    """Per constraint "block" or "coupling" as compile_model decides, from O(1) facts per term block and
    O(rows) side checks; None where only compiling can tell (array coefficients, matmul columns).

    Mirrors compile._choose_block_constraints: unit scalar coefficients on whole variables not used by an
    earlier block constraint, finite upper sides, all rows `<=` or all `==`.
    """
    claimed: dict = {}  # variable -> "all" (claimed by a block constraint) or "some" (perhaps claimed)
    roles = {}
    for con in constraints:
        if con.block is False:
            roles[con.name] = "coupling"
            continue
        certain, unsure, seen = False, False, set()
        for t in con.expr.terms:
            certain |= t.var in seen or (np.isscalar(t.coef) and t.coef != 1.0) or claimed.get(t.var) == "all"
            unsure |= not np.isscalar(t.coef) or t.cols is not None or claimed.get(t.var) == "some"
            seen.add(t.var)
        lower, upper = con.lower, con.upper  # scalars stay scalars: no O(rows) broadcast
        certain = certain or not (np.isfinite(upper).all() and (np.all(lower == -np.inf) or np.all(lower == upper)))
        if con.block or not (certain or unsure):
            roles[con.name] = "block"
            claimed.update((t.var, "all") for t in con.expr.terms)
        elif certain:
            roles[con.name] = "coupling"
        else:
            roles[con.name] = None
            claimed.update((t.var, claimed.get(t.var, "some")) for t in con.expr.terms)
    return roles


def _finite_side(side, infinite: float):
    """None if every entry of ``side`` is ``infinite`` (first entry checked first), else ``side``."""
    if np.isscalar(side):
        return None if side == infinite else side
    return None if side[0] == infinite and (side == infinite).all() else side


def _key(arr: np.ndarray) -> tuple:
    """Identity of an array's data (address, length, stride): equal keys of live arrays mean the same data."""
    return arr.__array_interface__["data"][0], arr.shape[0], arr.strides[0]


def _number(value) -> Expr:
    """A float as a sympy Integer when whole, else a Float with 6 significant digits."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return sympy.Integer(int(value))
    return sympy.Float(format(value, ".6g"))


_LATEX_SPECIAL = {"\\": r"\backslash ", "{": r"\{", "}": r"\}", "_": r"\_", "&": r"\&", "%": r"\%", "$": r"\$",
                  "#": r"\#", "^": r"\wedge ", "~": r"\sim ", " ": r"\ "}


def _latex_name(text: str) -> str:
    """A single letter (with primes) as is, anything longer upright: value -> \\mathrm{value}."""
    if re.fullmatch(r"[A-Za-z]'*", text):
        return text
    return r"\mathrm{" + "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text) + "}"
