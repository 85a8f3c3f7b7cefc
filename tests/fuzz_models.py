"""Random small models for the conformance suite: hypothesis strategies, a dense reference LP and the checks.

A ``Spec`` is plain arrays describing one model: edge variable x over users -> items, optional box variable
y over items, per-user sums (simplex / box-cut blocks, or coupling rows), per-item rows, global rows and
named weighted objectives. ``build(spec)`` writes it through the public modeling API; ``DenseLP.of(spec)``
writes the same LP as dense matrices, solved by scipy's ``linprog`` without compile() or any backend, so
the reference does not share the code it checks. ``disagreements(...)`` lists what one backend's result
claims that the reference contradicts (status, objective, bound, primal feasibility, stated guarantees).

The families (``FAMILIES``) are built feasible and bounded around a drawn interior point x0, except
``infeasible`` (one extra global row beyond the LP maximum of its body) and ``unbounded`` (one y column
with an improving cost, no upper bound and no row holding it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import linprog

import dualip_model as dm
from dualip_model import Capability, Status

# ----------------------------------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Config:
    """Options and tolerances of one backend in the conformance suite.

    objective_rtol: |objective - optimum| / max(1, |optimum|) when the backend reports OPTIMAL;
    infeasibility_tol: the largest violation of a row, block sum or column bound, relative to 1 + |its side|, an
    OPTIMAL primal may keep (the OPTIMAL contract, every backend); fuzz_options: cheaper options for the fuzz campaign.
    """

    options: dict
    objective_rtol: float
    infeasibility_tol: float = 1e-6
    fuzz_options: dict = field(default_factory=dict)
    precisions: dict = field(default_factory=dict)  # name -> Config of another working precision
    beyond: frozenset = frozenset()  # test_parity cases (a SCALINGS or STATUS_CASES name) this backend skips, named


# The device of the dualip solves: DUALIP_TEST_DEVICE=cuda runs the suite on a GPU, in float64 as on the CPU unless
# a precision below says otherwise (the fused C++ iteration's tests need the CPU and skip elsewhere)
DUALIP_DEVICE = os.environ.get("DUALIP_TEST_DEVICE", "cpu")


def allocation_model() -> dm.Model:
    """A 4-user allocation: == 1 blocks and ranged item rows, minimized (the adapters' shared small case)."""
    m = dm.Model("alloc")
    users, items = m.entities("user", 4), m.entities("item", 3)
    e = m.edges("e", users, items, src=[0, 0, 1, 1, 2, 3, 3], dst=[0, 1, 1, 2, 0, 1, 2])
    x = m.variable("x", over=e)
    m.minimize((np.array([1.0, 2.0, 0.5, 1.5, 1.0, 0.2, 2.0]) * x).sum())
    m.subject_to(x.sum(by=users) == 1.0, name="assign")
    m.subject_to(x.sum(by=items).between(0.5, 2.0), name="load")
    return m


def _on_device(**options) -> dict:
    return dict(options, device=DUALIP_DEVICE)


CONFIG = {
    "highs": Config(options={}, objective_rtol=1e-7),
    "dualip": Config(options=_on_device(tol=1e-4, max_iter=20_000, dtype="float64"), objective_rtol=2e-4,
                     infeasibility_tol=1e-4,
                     fuzz_options=_on_device(tol=1e-4, max_iter=400, time_limit=5.0, dtype="float64"),
                     precisions={"float32": Config(options=_on_device(dtype="float32", tol=1e-3, max_iter=20_000),
                                                   objective_rtol=2e-3, infeasibility_tol=1e-3,
                                                   fuzz_options=_on_device(dtype="float32", tol=1e-3, max_iter=400,
                                                                           time_limit=5.0)),
                                 # the compact engine (gathers and segment sums), alone and as on a GPU
                                 "compact": Config(options=_on_device(engine="compact", tol=1e-4, max_iter=20_000),
                                                   objective_rtol=2e-4, infeasibility_tol=1e-4),
                                 "float32 compact": Config(options=_on_device(dtype="float32", engine="compact",
                                                                              tol=1e-3, max_iter=20_000),
                                                           objective_rtol=2e-3, infeasibility_tol=1e-3),
                                 # A's values in 16 bits (about 3 significant digits): a 1e-2 answer
                                 "bfloat16 values": Config(options=_on_device(dtype="float32", engine="compact",
                                                                              matrix_dtype="bfloat16", tol=1e-2,
                                                                              max_iter=20_000),
                                                           objective_rtol=2e-2, infeasibility_tol=1e-2)}),
    "cupdlpx": Config(options=dict(tol=1e-6), objective_rtol=1e-4, infeasibility_tol=1e-4,
                      fuzz_options=dict(tol=1e-6, time_limit=5.0)),
    # OR-Tools PDLP (first-order, blind to the blocks), 20 s per solve: at 1e-6 KKT it does not finish the two widest
    # all-dimension spreads, nor prove netlib klein1 infeasible (13M iterations, a minute)
    "ortools-pdlp": Config(options=dict(tol=1e-6, time_limit=20.0), objective_rtol=1e-4, infeasibility_tol=1e-4,
                           fuzz_options=dict(tol=1e-6, time_limit=5.0),
                           beyond=frozenset({"all 1e-6..1e6", "costs, rows and rhs 1e-6..1e6", "netlib_klein1"})),
}
DEFAULT = Config(options={}, objective_rtol=1e-4, infeasibility_tol=1e-4)
FEASIBLE_ATOL = 1e-6  # per row, times (1 + |side|): "feasible" primals (exact backends, repaired ones)
BOUND_RTOL = 1e-7  # a certified bound may pass the reference optimum by this much (reference tolerances)


def config(backend: str) -> Config:
    """The backend's Config (DEFAULT for a backend this suite does not know)."""
    return CONFIG.get(backend, DEFAULT)


def needed_capabilities(sf: dm.StandardForm) -> set[Capability]:
    """The declared capabilities a backend needs to solve ``sf`` (see dm.Capability)."""
    needs = set()
    if (np.isfinite(sf.row_lower) & np.isfinite(sf.row_upper)).any():
        needs.add(Capability.RANGES)
    box_cols = np.repeat(sf.block_kind == dm.BlockKind.BOX, np.diff(sf.block_ptr))
    lower, upper = np.asarray(sf.col_lower)[box_cols], np.asarray(sf.col_upper)[box_cols]
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        needs.add(Capability.FREE_VARIABLES)
    return needs


# ----------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Rows:
    """lo <= sum_e ax_e x_e + (ay y) <= hi: one row per item (by="item", ay_i y_i) or one (by="global", ay . y)."""

    by: str
    ax: np.ndarray
    ay: np.ndarray | None
    lo: np.ndarray
    hi: np.ndarray


@dataclass(frozen=True)
class Objective:
    """weight * (cx . x + cy . y + constant), one named part of the objective."""

    name: str
    weight: float
    cx: np.ndarray
    cy: np.ndarray | None
    constant: float


@dataclass(frozen=True)
class Spec:
    """One small model as arrays; edge k joins user src[k] to item dst[k] (not sorted)."""

    family: str
    sense: int  # +1 minimize, -1 maximize
    n_users: int
    n_items: int
    src: np.ndarray
    dst: np.ndarray
    x_lower: np.ndarray
    x_upper: np.ndarray
    y_lower: np.ndarray | None  # None: no variable y
    y_upper: np.ndarray | None
    block: str  # "none", "le" (x.sum(by=user) <= r) or "eq" (== r)
    block_rhs: np.ndarray
    block_flag: bool | None  # Model.subject_to(block=...) for the per-user sums
    objectives: tuple[Objective, ...]  # empty: no objective (a feasibility problem)
    rows: tuple[Rows, ...]
    string_labels: bool

    @property
    def n_edges(self) -> int:
        return self.src.shape[0]

    def __repr__(self) -> str:
        """Python that rebuilds this spec (with numpy as np and this module's names): the report's reproducers."""
        def arr(a):
            if a is None:
                return None
            values = ("np.inf" if v == np.inf else "-np.inf" if v == -np.inf else repr(v)
                      for v in np.asarray(a).tolist())
            return f"np.array([{', '.join(values)}])"

        rows = ", ".join(f"Rows({r.by!r}, {arr(r.ax)}, {arr(r.ay)}, {arr(r.lo)}, {arr(r.hi)})"
                         for r in self.rows)
        objs = ", ".join(f"Objective({o.name!r}, {o.weight!r}, {arr(o.cx)}, {arr(o.cy)}, {o.constant!r})"
                         for o in self.objectives)
        return (f"Spec({self.family!r}, {self.sense}, {self.n_users}, {self.n_items}, {arr(self.src)}, "
                f"{arr(self.dst)}, {arr(self.x_lower)}, {arr(self.x_upper)}, {arr(self.y_lower)}, "
                f"{arr(self.y_upper)}, {self.block!r}, {arr(self.block_rhs)}, {self.block_flag!r}, "
                f"({objs}{',' if len(self.objectives) == 1 else ''}), ({rows}{',' if len(self.rows) == 1 else ''}), "
                f"{self.string_labels!r})")


def build(spec: Spec) -> dm.Model:
    """The spec as a dm.Model, through the public API (`<=`, `>=`, `==` or between as the sides say)."""
    m = dm.Model(spec.family)
    user_labels = [f"u{i}" for i in range(spec.n_users)] if spec.string_labels else spec.n_users
    item_labels = [f"i{i}" for i in range(spec.n_items)] if spec.string_labels else spec.n_items
    users = m.entities("user", user_labels)
    items = m.entities("item", item_labels)
    src, dst = spec.src, spec.dst
    if spec.string_labels:
        src = np.array([f"u{i}" for i in src])
        dst = np.array([f"i{i}" for i in dst])
    e = m.edges("e", users, items, src=src, dst=dst)
    x = m.variable("x", over=e, lower=spec.x_lower, upper=spec.x_upper)
    y = None if spec.y_lower is None else m.variable("y", over=items, lower=spec.y_lower, upper=spec.y_upper)
    if spec.objectives:
        parts, weights = {}, {}
        for o in spec.objectives:
            expr = (o.cx * x).sum() + o.constant
            if y is not None and o.cy is not None:
                expr = expr + (o.cy * y).sum()
            parts[o.name], weights[o.name] = expr, o.weight
        (m.minimize if spec.sense == 1 else m.maximize)(parts, weights)
    else:
        m.minimize(0)  # a feasibility problem, said so
    if spec.block != "none":
        sums = x.sum(by=users)
        relation = sums <= spec.block_rhs if spec.block == "le" else sums == spec.block_rhs
        m.subject_to(relation, name="per_user", block=spec.block_flag)
    for k, r in enumerate(spec.rows):
        expr = (r.ax * x).sum(by=items) if r.by == "item" else (r.ax * x).sum()
        if y is not None and r.ay is not None:
            expr = expr + (r.ay * y if r.by == "item" else (r.ay * y).sum())
        lo, hi = (r.lo, r.hi) if r.by == "item" else (float(r.lo[0]), float(r.hi[0]))
        m.subject_to(_relation(expr, lo, hi), name=f"{r.by}{k}")
    return m


def _relation(expr, lo, hi):
    lo_inf, hi_inf = np.all(np.isneginf(lo)), np.all(np.isposinf(hi))
    if lo_inf and not hi_inf:
        return expr <= hi
    if hi_inf and not lo_inf:
        return expr >= lo
    if not lo_inf and np.array_equal(np.asarray(lo), np.asarray(hi)):
        return expr == hi
    return expr.between(lo, hi)


# ----------------------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class Reference:
    """The reference answer: status ("optimal", "infeasible", "unbounded") and the optimum in user sense."""

    status: str
    objective: float = float("nan")


@dataclass(frozen=True)
class DenseLP:
    """The spec's LP with dense matrices over z = [x, y]: optimize c.z + const s.t. lo <= A z <= hi, l <= z <= u.

    Per-user sums are rows of A here (whatever the compiler makes of them); ``names`` name the rows.
    """

    sense: int
    c: np.ndarray
    const: float
    lower: np.ndarray
    upper: np.ndarray
    A: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    names: tuple[str, ...]

    @staticmethod
    def of(spec: Spec) -> DenseLP:
        E, I = spec.n_edges, spec.n_items
        has_y = spec.y_lower is not None
        n = E + (I if has_y else 0)
        c, const = np.zeros(n), 0.0
        for o in spec.objectives:
            c[:E] += o.weight * o.cx
            if has_y and o.cy is not None:
                c[E:] += o.weight * o.cy
            const += o.weight * o.constant
        rows, lo, hi, names = [], [], [], []
        if spec.block != "none":
            for u in range(spec.n_users):
                a = np.zeros(n)
                a[:E] = spec.src == u
                rows.append(a)
                hi.append(spec.block_rhs[u])
                lo.append(spec.block_rhs[u] if spec.block == "eq" else -np.inf)
                names.append(f"per_user[{u}]")
        for k, r in enumerate(spec.rows):
            count = I if r.by == "item" else 1
            for i in range(count):
                a = np.zeros(n)
                a[:E] = r.ax * (spec.dst == i) if r.by == "item" else r.ax
                if has_y and r.ay is not None:
                    if r.by == "item":
                        a[E + i] = r.ay[i]
                    else:
                        a[E:] = r.ay
                rows.append(a)
                lo.append(r.lo[i])
                hi.append(r.hi[i])
                names.append(f"{r.by}{k}[{i}]" if r.by == "item" else f"{r.by}{k}")
        lower = np.concatenate([spec.x_lower, spec.y_lower]) if has_y else spec.x_lower.copy()
        upper = np.concatenate([spec.x_upper, spec.y_upper]) if has_y else spec.x_upper.copy()
        A = np.array(rows).reshape(len(rows), n)
        sense = spec.sense if spec.objectives else 1  # no objective: the model minimizes 0
        return DenseLP(sense, c, const, lower, upper, A, np.array(lo, dtype=float),
                       np.array(hi, dtype=float), tuple(names))

    def point(self, res: dm.Result) -> np.ndarray:
        """z = [x, y] of a result, from its labeled primal (so the mapping back is checked too)."""
        parts = [res.primal("x", labeled=False)]
        if "y" in res.model.variables:
            parts.append(res.primal("y", labeled=False))
        return np.concatenate(parts)

    def objective(self, z: np.ndarray) -> float:
        return float(self.c @ z + self.const)

    def violation(self, z: np.ndarray) -> tuple[float, str]:
        """Largest violation of a row or column bound, relative to 1 + |side|, and where it is."""
        act = self.A @ z
        with np.errstate(invalid="ignore"):  # an infinite side gives inf / inf = NaN, which fmax skips
            row = np.fmax((self.lo - act) / (1 + np.abs(self.lo)), (act - self.hi) / (1 + np.abs(self.hi)))
            col = np.fmax((self.lower - z) / (1 + np.abs(self.lower)), (z - self.upper) / (1 + np.abs(self.upper)))
        row, col = np.nan_to_num(row, nan=-np.inf), np.nan_to_num(col, nan=-np.inf)
        worst, where = 0.0, ""
        if row.size and row.max() > worst:
            worst, where = float(row.max()), self.names[int(np.argmax(row))]
        if col.size and col.max() > worst:
            worst, where = float(col.max()), f"column {int(np.argmax(col))}"
        return worst, where

    def solve(self, objective: np.ndarray | None = None) -> Reference:
        """min (or max) of ``objective`` (default c) over the LP by scipy's linprog, status decided exactly."""
        c = self.c if objective is None else objective
        sense = self.sense if objective is None else -1
        eq = self.lo == self.hi
        up = ~eq & np.isfinite(self.hi)
        down = ~eq & np.isfinite(self.lo)
        A_ub = np.vstack([self.A[up], -self.A[down]])
        b_ub = np.concatenate([self.hi[up], -self.lo[down]])
        bounds = [(None if np.isinf(lo) else lo, None if np.isinf(hi) else hi)
                  for lo, hi in zip(self.lower, self.upper)]
        kw = dict(A_ub=A_ub if A_ub.size else None, b_ub=b_ub if A_ub.size else None,
                  A_eq=self.A[eq] if eq.any() else None, b_eq=self.hi[eq] if eq.any() else None,
                  bounds=bounds, method="highs")
        tight = dict(primal_feasibility_tolerance=1e-10, dual_feasibility_tolerance=1e-10)
        out = linprog(sense * c, options=tight, **kw)
        if out.status == 2 or out.status == 3:  # presolve may not tell infeasible from unbounded: decide
            out = linprog(sense * c, options={**tight, "presolve": False}, **kw)
        if out.status == 0:
            return Reference("optimal", sense * float(out.fun) + (self.const if objective is None else 0.0))
        if out.status in (2, 3):
            return Reference("infeasible" if out.status == 2 else "unbounded")
        raise RuntimeError(f"linprog could not decide the reference LP: {out.message}")


# ----------------------------------------------------------------------------------------- checks


class Disagreement(NamedTuple):
    """One contradiction between a backend's result and the reference: a kind (see KINDS) and the details."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


KINDS = ("wrong_status", "missed_infeasible", "missed_unbounded", "invalid_bound", "objective_not_of_primal",
         "infeasible_primal", "wrong_infeasibility_claim", "objective_error", "objective_error_infeasible_primal",
         "no_primal", "rejected_valid_model")
# Contradictions a backend is known to produce; each is documented by a strict xfail regression test and
# counted apart (never silently) by the fuzz tests and the reliability report.
KNOWN_ISSUES: dict[tuple[str, str], str] = {}

# a stated largest violation of a row, block sum or column bound, relative to 1 + |side| (DenseLP.violation's measure)
_CLAIMED_VIOLATION = re.compile(r"primal: .*largest relative violation ([0-9.eE+-]+)")


def disagreements(lp: DenseLP, ref: Reference, res: dm.Result, backend: str,
                  cfg: Config | None = None) -> list[Disagreement]:
    """What ``res`` (a solve of the model behind ``lp`` on ``backend``) claims that the reference contradicts.

    Checked whatever the status: the status is possible for the reference's answer (never OPTIMAL on an
    infeasible or unbounded LP; INFEASIBLE / UNBOUNDED when the backend declares it detects them); the
    bound never passes the optimum; the reported objective is that of the returned primal; a primal said
    feasible (exact backends, "primal: feasible" guarantees) is, to FEASIBLE_ATOL; a stated largest relative
    violation is the true one. For OPTIMAL also (the OPTIMAL contract): the objective is within objective_rtol
    of the optimum and every row, block sum and column bound within infeasibility_tol of 1 + |its side|.
    """
    caps = dm.registry.get(backend).capabilities
    out = []
    st = res.status
    if ref.status == "optimal":
        if st in (Status.INFEASIBLE, Status.UNBOUNDED, Status.INFEASIBLE_OR_UNBOUNDED, Status.ERROR):
            out.append(Disagreement("wrong_status", f"status {st} on an LP with optimum {ref.objective!r}"))
    elif ref.status == "infeasible":
        if st in (Status.OPTIMAL, Status.UNBOUNDED):
            out.append(Disagreement("wrong_status", f"status {st} on an infeasible LP"))
        elif Capability.DETECTS_INFEASIBLE in caps and st != Status.INFEASIBLE:
            out.append(Disagreement("missed_infeasible",
                                    f"declares DETECTS_INFEASIBLE but returned {st} on an infeasible LP"))
    elif ref.status == "unbounded":
        if st in (Status.OPTIMAL, Status.INFEASIBLE):
            out.append(Disagreement("wrong_status", f"status {st} on an unbounded LP"))
        elif Capability.DETECTS_UNBOUNDED in caps and st != Status.UNBOUNDED:
            out.append(Disagreement("missed_unbounded",
                                    f"declares DETECTS_UNBOUNDED but returned {st} on an unbounded LP"))
    if Capability.CERTIFIED_BOUND in caps and not np.isnan(res.bound):
        bound = lp.sense * res.bound  # minimization terms: a lower bound on sense * optimum
        if ref.status == "optimal":
            opt = lp.sense * ref.objective
            if bound > opt + BOUND_RTOL * max(1.0, abs(opt)):
                out.append(Disagreement("invalid_bound", f"bound {res.bound!r} passes the optimum {ref.objective!r}"))
        elif ref.status == "unbounded" and bound > -np.inf:
            out.append(Disagreement("invalid_bound", f"finite bound {res.bound!r} on an unbounded LP"))
    if st.has_solution and res.raw.x is not None:
        out += _primal_claims(lp, ref, res, caps, cfg or config(backend))
    elif st == Status.OPTIMAL:
        out.append(Disagreement("no_primal", "status optimal without a primal"))
    return out


def _primal_claims(lp: DenseLP, ref: Reference, res: dm.Result, caps, cfg: Config) -> list[Disagreement]:
    out = []
    z = lp.point(res)
    if not np.isfinite(z).all():
        return [Disagreement("infeasible_primal", f"primal holds {int((~np.isfinite(z)).sum())} non-finite values")]
    value = lp.objective(z)
    scale = max(1.0, abs(value), float(np.abs(lp.c) @ np.abs(z)))
    if not abs(value - res.objective) <= 1e-9 * scale:
        out.append(Disagreement("objective_not_of_primal",
                                f"objective {res.objective!r} is not that of the returned primal ({value!r})"))
    worst, where = lp.violation(z)
    said_feasible = Capability.EXACT in caps or any(g.startswith("primal: feasible") for g in res.guarantees)
    if said_feasible and worst > FEASIBLE_ATOL:
        out.append(Disagreement("infeasible_primal", f"primal said feasible violates {where} by {worst:.3g}"))
    for g in res.guarantees:
        claim = _CLAIMED_VIOLATION.match(g)
        if claim and not abs(worst - float(claim.group(1))) <= 0.01 * worst + 1e-12:
            out.append(Disagreement("wrong_infeasibility_claim",
                                    f"guarantee {g!r} but the largest relative violation is {worst:.3g} ({where})"))
    if res.status == Status.OPTIMAL:
        # the OPTIMAL contract: every row, block sum and column bound within tol relative to 1 + |its side|
        if worst > cfg.infeasibility_tol:
            out.append(Disagreement("infeasible_primal", f"optimal primal violates {where} by {worst:.3g} "
                                                         f"(relative to 1 + |side|) > {cfg.infeasibility_tol}"))
        if ref.status == "optimal":
            err = abs(res.objective - ref.objective) / max(1.0, abs(ref.objective))
            if err > cfg.objective_rtol:
                # a primal violating rows (within tol) may pass the optimum; one feasible cannot
                kind = "objective_error" if worst <= FEASIBLE_ATOL else "objective_error_infeasible_primal"
                out.append(Disagreement(kind, f"objective {res.objective!r} vs optimum {ref.objective!r}: "
                                              f"relative error {err:.3g} (primal violates {where or 'nothing'} "
                                              f"by {worst:.3g})"))
    return out


# ----------------------------------------------------------------------------------------- strategies
TIED = (0.0, 1.0, 1.0, 2.0, 3.0)  # few distinct values: ties and zeros (degenerate LPs)


def _array(draw, n: int, lo: int = -3, hi: int = 3, signed: bool = True) -> np.ndarray:
    """n values: tied (a few small integers, zeros included) or spread (multiples of 0.01 in [lo, hi])."""
    if n == 0:
        return np.zeros(0)
    if draw(st.booleans()):
        values = draw(st.lists(st.sampled_from(TIED), min_size=n, max_size=n))
        signs = draw(st.lists(st.sampled_from((-1.0, 1.0)), min_size=n, max_size=n)) if signed else [1.0] * n
        return np.array(values) * np.array(signs)
    low = lo * 100 if signed else 0
    return np.array(draw(st.lists(st.integers(low, hi * 100), min_size=n, max_size=n)), dtype=float) / 100.0


def _slack(draw, n: int) -> np.ndarray:
    """Room between a row's activity at x0 and its side: 0 (binding, degenerate) to 2."""
    return np.array(draw(st.lists(st.sampled_from((0.0, 0.0, 0.25, 0.5, 2.0)), min_size=n, max_size=n)))


@dataclass(frozen=True)
class Family:
    """What one family of random models may contain."""

    block: tuple[str, ...]  # per-user sums: "none", "le", "eq"
    block_flags: tuple  # values of Model.subject_to(block=...) for them
    x_lower: tuple[float, ...]
    x_upper: tuple[float, ...]
    row_kinds: tuple[str, ...]  # of item and global rows: "le", "ge", "eq", "range", "free"
    nonnegative_rows: bool  # row coefficients >= 0 (with "le" rows and x >= 0: repairable by scaling down)
    item_rows: tuple[int, ...]  # how many per-item row families
    global_rows: tuple[int, ...]
    objectives: tuple[int, ...]  # how many named objective parts (0: no objective)
    has_y: tuple[bool, ...]
    senses: tuple[int, ...] = (1, -1)
    max_users: int = 5
    max_items: int = 4


FAMILIES = {
    "matching": Family(block=("le",), block_flags=(None,), x_lower=(0.0,), x_upper=(np.inf, 1.0),
                       row_kinds=("le",), nonnegative_rows=True, item_rows=(0, 1, 1), global_rows=(0, 0, 1),
                       objectives=(1,), has_y=(False,), senses=(-1,)),
    "assignment": Family(block=("eq",), block_flags=(None,), x_lower=(0.0,), x_upper=(np.inf,),
                         row_kinds=("le", "ge", "range"), nonnegative_rows=False, item_rows=(0, 1),
                         global_rows=(0, 1, 2), objectives=(1, 2), has_y=(False,)),
    "multi_objective": Family(block=("le",), block_flags=(None,), x_lower=(0.0,), x_upper=(np.inf, 1.0),
                              row_kinds=("le", "ge", "eq"), nonnegative_rows=False, item_rows=(0, 1),
                              global_rows=(1, 2), objectives=(2, 3), has_y=(False, True)),
    "equality_rows": Family(block=("none", "le"), block_flags=(None,), x_lower=(0.0, -1.0), x_upper=(1.0, 2.0),
                            row_kinds=("eq",), nonnegative_rows=False, item_rows=(1, 2), global_rows=(0, 1),
                            objectives=(0, 1), has_y=(False, True)),
    "box": Family(block=("none", "le"), block_flags=(False,), x_lower=(-1.0, 0.0), x_upper=(0.5, 1.0, 2.0),
                  row_kinds=("le", "ge", "eq", "range", "free"), nonnegative_rows=False, item_rows=(0, 1, 2),
                  global_rows=(0, 1, 2), objectives=(0, 1, 2), has_y=(False, True)),
    "boxcut": Family(block=("le", "eq"), block_flags=(None, True), x_lower=(0.0, 0.1, 0.25), x_upper=(0.5, 1.0),
                     row_kinds=("le", "ge"), nonnegative_rows=False, item_rows=(0, 1), global_rows=(0, 1),
                     objectives=(1,), has_y=(False, True)),
}
FEASIBLE_FAMILIES = tuple(FAMILIES)
ALL_FAMILIES = FEASIBLE_FAMILIES + ("infeasible", "unbounded")


@st.composite
def specs(draw, family: str) -> Spec:
    """A random model of ``family`` (see FAMILIES; "infeasible" and "unbounded" derive from a feasible one)."""
    if family == "infeasible":
        return draw(_infeasible(draw(st.sampled_from(FEASIBLE_FAMILIES))))
    if family == "unbounded":
        return _unbounded(draw, draw(specs(draw(st.sampled_from(FEASIBLE_FAMILIES)))))
    f = FAMILIES[family]
    n_users = draw(st.integers(1, f.max_users))
    n_items = draw(st.integers(1, f.max_items))
    mask = np.array(draw(st.lists(st.booleans(), min_size=n_users * n_items, max_size=n_users * n_items)))
    if not mask.any():
        mask[draw(st.integers(0, mask.size - 1))] = True
    keys = np.flatnonzero(mask)
    keys = keys[np.array(draw(st.permutations(range(keys.size))), dtype=np.int64)]  # edges in any order
    src, dst = keys // n_items, keys % n_items
    E = keys.size
    x_lower = np.full(E, draw(st.sampled_from(f.x_lower)))
    x_upper = np.maximum(np.full(E, draw(st.sampled_from(f.x_upper))), x_lower)
    # an interior point x0 of the column bounds, then sides built around it: feasible by construction
    t = np.array(draw(st.lists(st.sampled_from((0.0, 0.25, 0.5, 1.0)), min_size=E, max_size=E)))
    x0 = x_lower + t * np.where(np.isfinite(x_upper), x_upper - x_lower, 1.0)
    block = draw(st.sampled_from(f.block))
    sums = np.bincount(src, weights=x0, minlength=n_users)
    block_rhs = sums + (_slack(draw, n_users) if block == "le" else 0.0)
    has_y = draw(st.sampled_from(f.has_y))
    y_lower = y_upper = y0 = None
    if has_y:
        y_lower = np.full(n_items, draw(st.sampled_from((0.0, -1.0))))
        y_upper = y_lower + np.array(draw(st.lists(st.sampled_from((0.5, 1.0, 3.0)), min_size=n_items,
                                                   max_size=n_items)))
        y0 = y_lower + 0.5 * (y_upper - y_lower)
    rows = []
    for by, count in (("item", draw(st.sampled_from(f.item_rows))), ("global", draw(st.sampled_from(f.global_rows)))):
        for _ in range(count):
            ax = _array(draw, E, signed=not f.nonnegative_rows)
            size = n_items if by == "item" else 1
            ay = _array(draw, n_items, signed=not f.nonnegative_rows) if has_y and draw(st.booleans()) else None
            act = np.bincount(dst, weights=ax * x0, minlength=n_items) if by == "item" else np.array([ax @ x0])
            if ay is not None:
                act = act + (ay * y0 if by == "item" else ay @ y0)
            kind = draw(st.sampled_from(f.row_kinds))
            lo = act - _slack(draw, size) if kind in ("ge", "range") else np.full(size, -np.inf)
            hi = act + _slack(draw, size) if kind in ("le", "range") else np.full(size, np.inf)
            if kind == "eq":
                lo, hi = act, act.copy()
            rows.append(Rows(by, ax, ay, lo, hi))
    objectives = []
    for k in range(draw(st.sampled_from(f.objectives))):
        weight = draw(st.sampled_from((1.0, 1.0, 0.5, 2.0, 0.0)))
        cy = _array(draw, n_items) if has_y else None
        objectives.append(Objective(f"obj{k}", weight, _array(draw, E), cy, draw(st.sampled_from((0.0, 1.5)))))
    return Spec(family=family, sense=draw(st.sampled_from(f.senses)), n_users=n_users, n_items=n_items, src=src,
                dst=dst, x_lower=x_lower, x_upper=x_upper, y_lower=y_lower, y_upper=y_upper, block=block,
                block_rhs=block_rhs, block_flag=draw(st.sampled_from(f.block_flags)) if block != "none" else None,
                objectives=tuple(objectives), rows=tuple(rows), string_labels=draw(st.booleans()))


@st.composite
def _infeasible(draw, base_family: str) -> Spec:
    """A feasible spec plus a global row lo <= g.z with lo above the LP maximum of g.z (or == beyond it)."""
    spec = draw(specs(base_family))
    lp = DenseLP.of(spec)
    E = spec.n_edges
    g = _array(draw, E, lo=1, hi=3, signed=False)
    g = np.where(g == 0.0, 1.0, g)  # every edge counts: the maximum is attained on the whole feasible set
    gz = np.concatenate([g, np.zeros(lp.c.shape[0] - E)])
    top = lp.solve(objective=gz)
    assert top.status == "optimal", top  # the base families are feasible and bounded
    margin = draw(st.sampled_from((0.05, 0.3, 1.0))) * (1.0 + abs(top.objective))
    side = np.array([top.objective + margin])
    equal = draw(st.booleans())
    row = Rows("global", g, None, side, side.copy() if equal else np.array([np.inf]))
    return replace(spec, family="infeasible", rows=spec.rows + (row,))


def _unbounded(draw, spec: Spec) -> Spec:
    """Give one item k a y column with no upper bound, an improving cost and no row holding it.

    Rows lose y_k's term and their sides move by its value at the interior point the spec was built
    around (y0 = the middle of y's box), so the model stays feasible.
    """
    n_items = spec.n_items
    k = draw(st.integers(0, n_items - 1))
    at_k = np.arange(n_items) == k
    if spec.y_lower is None:
        y_lower, y_upper, rows = np.zeros(n_items), np.ones(n_items), spec.rows
    else:
        y_lower, y_upper = spec.y_lower, spec.y_upper
        y0k = 0.5 * (y_lower[k] + y_upper[k])
        rows = tuple(r if r.ay is None else _without_column(r, k, y0k) for r in spec.rows)
    gain = -spec.sense * draw(st.sampled_from((0.5, 1.0, 2.0)))  # improves the objective as y_k grows
    objectives = tuple(o if o.cy is None else replace(o, cy=np.where(at_k, 0.0, o.cy)) for o in spec.objectives)
    objectives += (Objective("unbounded", 1.0, np.zeros(spec.n_edges), np.where(at_k, gain, 0.0), 0.0),)
    return replace(spec, family="unbounded", y_lower=y_lower, y_upper=np.where(at_k, np.inf, y_upper), rows=rows,
                   objectives=objectives)


def _without_column(r: Rows, k: int, y0k: float) -> Rows:
    """The rows without y_k's term, sides moved by its activity at y_k = y0k."""
    shift = np.where(np.arange(r.lo.shape[0]) == k, r.ay[k] * y0k, 0.0) if r.by == "item" else r.ay[k] * y0k
    return replace(r, ay=np.where(np.arange(r.ay.shape[0]) == k, 0.0, r.ay), lo=r.lo - shift, hi=r.hi - shift)


# ----------------------------------------------------------------------------------------- one case


@dataclass
class Outcome:
    """One spec solved by one backend: the reference, the result (None: refused by a CapabilityError)."""

    spec: Spec
    backend: str
    reference: Reference
    result: dm.Result | None
    disagreements: list[Disagreement]
    error: str = ""  # the ModelError of an infeasible model rejected before solving (an empty block)

    def unexpected(self) -> list[Disagreement]:
        """The disagreements that are not KNOWN_ISSUES of this backend."""
        return [d for d in self.disagreements if (self.backend, d.kind) not in KNOWN_ISSUES]


def run(spec: Spec, backend: str, extra: dict | None = None, precision: str | None = None) -> Outcome:
    """Solve ``spec`` on ``backend`` and on the dense reference, and compare.

    The backend runs with its cheap fuzz options, or its full options where it must prove a status it
    declares it detects (infeasible, unbounded), plus ``extra`` options; ``precision`` names one of its
    Config.precisions (options and tolerances, e.g. dualip's "float32"). compile() may reject an infeasible model
    (a block polytope is empty): that is a correct answer, and an error on a feasible one a disagreement.
    """
    lp = DenseLP.of(spec)
    ref = lp.solve()
    model = build(spec)
    cfg = config(backend) if precision is None else config(backend).precisions[precision]
    caps = dm.registry.get(backend).capabilities
    must_detect = (ref.status == "infeasible" and Capability.DETECTS_INFEASIBLE in caps) or (
        ref.status == "unbounded" and Capability.DETECTS_UNBOUNDED in caps)
    try:
        options = cfg.options if must_detect or not cfg.fuzz_options else cfg.fuzz_options
        res = model.solve(backend, **{**options, **(extra or {})})
    except dm.CapabilityError:  # a backend may refuse what it does not declare, before solving
        return Outcome(spec, backend, ref, None, [])
    except dm.ModelError as err:
        found = [] if ref.status == "infeasible" else [Disagreement("rejected_valid_model", str(err))]
        return Outcome(spec, backend, ref, None, found, error=str(err))
    return Outcome(spec, backend, ref, res, disagreements(lp, ref, res, backend, cfg))
