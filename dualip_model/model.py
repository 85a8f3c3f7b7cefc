"""The Model: entity and edge sets, variables, constraints and an objective, compiled and solved by name."""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from . import registry
from .backend import Capability
from .compile import compile_model
from .constraints import Constraint
from .errors import CapabilityError, ModelError
from .objective import Objective
from .progress import report_in_model_sense
from .result import Result
from .sets import EdgeSet, EntitySet
from .standard_form import StandardForm
from .status import Status
from .variables import Variable


class NoObjectiveWarning(UserWarning):
    """A model with no objective was solved (as a feasibility problem); ``m.minimize(0)`` says so explicitly."""


class Model:
    """min/max sum_k w_k f_k(x) s.t. named constraint families, x over labeled entity/edge sets."""

    def __init__(self, name: str = "model"):
        self.name = name
        self.sets: dict[str, EntitySet | EdgeSet] = {}
        self.variables: dict[str, Variable] = {}
        self.constraints: dict[str, Constraint] = {}
        self.objective: Objective | None = None
        self.n_cols = 0
        # sf -> (the form a backend solves, its inverse: .invert(raw) gives sf's RawResult), applied by solve;
        # read_model sets block_detection.detect_blocks
        self.reduction = None

    def __repr__(self) -> str:
        return (f"Model({self.name!r}: {len(self.sets)} sets, {len(self.variables)} variables "
                f"({self.n_cols} columns), {len(self.constraints)} constraints)")

    # ------------------------------------------------------------------ building
    def _new_name(self, table: dict, name: str, what: str) -> str:
        if not isinstance(name, str) or not name:
            raise ModelError(f"{what} name must be a non-empty string, got {name!r}")
        if name in table:
            raise ModelError(f"{what} '{name}' already exists in model '{self.name}'")
        return name

    def entities(self, name: str, labels) -> EntitySet:
        """An entity set with the given labels (any array-like of unique values, or a size n for 0..n-1)."""
        s = EntitySet(self, self._new_name(self.sets, name, "set"), labels)
        self.sets[name] = s
        return s

    def edges(self, name: str, src_set: EntitySet, dst_set: EntitySet, src, dst) -> EdgeSet:
        """A sparse edge set: edge k joins label src[k] of src_set to label dst[k] of dst_set."""
        s = EdgeSet(self, self._new_name(self.sets, name, "set"), src_set, dst_set, src, dst)
        self.sets[name] = s
        return s

    def variable(self, name: str, over, lower=0.0, upper=np.inf) -> Variable:
        """One variable per element of ``over``, with scalar or per-element bounds (default x >= 0; None: no bound).

        Per-element bounds are arrays in the order of ``over``, or pandas Series aligned by label.
        """
        var = Variable(self, self._new_name(self.variables, name, "variable"), over, self.n_cols, lower, upper)
        self.variables[name] = var
        self.n_cols = var.stop
        return var

    def subject_to(self, relation, name: str | None = None, block: bool | None = None) -> Constraint:
        """Add a constraint family; ``block`` forces (True) or forbids (False) a block polytope."""
        name = f"c{len(self.constraints)}" if name is None else name
        con = Constraint(self, self._new_name(self.constraints, name, "constraint"), relation, block)
        self.constraints[name] = con
        return con

    def minimize(self, objective, weights: dict | None = None) -> None:
        """Minimize an expression, or a weighted sum of named ones: minimize({"a": e1, "b": e2}, {"b": 0.5}).

        ``minimize(0)`` states a feasibility problem (solving a model with no objective warns).
        """
        self.objective = Objective.build(self, 1, objective, weights)

    def maximize(self, objective, weights: dict | None = None) -> None:
        """Maximize an expression, or a weighted sum of named ones (see minimize)."""
        self.objective = Objective.build(self, -1, objective, weights)

    # ------------------------------------------------------------------ display (dualip_model.display)
    def to_latex(self, data=None) -> str:
        """LaTeX of the model as indexed sums; ``data`` (DataFrame or name -> array) names coefficient arrays."""
        from .display import to_latex

        return to_latex(self, data)

    def to_text(self, data=None) -> str:
        """Short plain-text form of the model for terminals (see to_latex for ``data``)."""
        from .display import to_text

        return to_text(self, data)

    def _repr_latex_(self) -> str:
        """Jupyter display: the LaTeX of to_latex as $$...$$ display math."""
        from .display import repr_latex

        return repr_latex(self)

    # ------------------------------------------------------------------ compiling and solving
    def compile(self) -> StandardForm:
        """The block-structured standard form of this model (see docs/standard_form.md)."""
        return compile_model(self)

    def solve(self, backend: str = "highs", options=None, *, standard_form: StandardForm | None = None,
              **settings) -> Result:
        """Compile (unless a standard form is given) and solve on the named backend.

        ``options`` is the backend's Options dataclass; keyword settings override its fields by name.
        """
        solver = registry.get(backend)
        wants_warm = settings.get("warm_start") is not None or getattr(options, "warm_start", None) is not None
        if wants_warm and Capability.WARM_START not in solver.capabilities:
            raise CapabilityError(f"backend '{backend}' does not support warm starts")
        opts = backend_options(backend, solver, options, settings)
        if standard_form is not None:
            standard_form.layout.check(self)  # before solving: a form compiled from another model is refused
        sf = standard_form if standard_form is not None else self.compile()
        if self.objective is None:
            warnings.warn(f"model '{self.name}' has no objective: solving it as a feasibility problem (minimize 0); "
                          f"call m.minimize(0) to say so, or set an objective", NoObjectiveWarning, stacklevel=2)
        opts, finish = report_in_model_sense(opts, sf.layout.sense)  # the callback sees the model's sense
        solved, inverse = (sf, None) if self.reduction is None else self.reduction(sf)
        start = time.perf_counter()
        raw = solver.solve(solved, opts)
        if not raw.solve_time:
            raw.solve_time = time.perf_counter() - start
        if not isinstance(raw.status, Status):
            raise TypeError(f"backend '{backend}' returned status {raw.status!r}, not a Status")
        result = Result(self, sf, raw if inverse is None else inverse.invert(raw), backend)
        finish(result)
        return result


def backend_options(name: str, solver, options, settings: dict):
    """``options`` (the backend's Options instance or None for its defaults) with ``settings`` replaced by name.

    Unknown names raise ModelError naming the backend ``name`` and them; the Options dataclass validates the
    values, and a value of the wrong type reaching its checks becomes a ModelError too.
    """
    opts = solver.Options() if options is None else options
    if not isinstance(opts, solver.Options):
        raise ModelError(f"options for backend '{name}' must be {solver.Options.__name__}, "
                         f"got {type(opts).__name__}")
    if not settings:
        return opts
    known = {f.name for f in dataclasses.fields(opts)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ModelError(f"backend '{name}' has no option(s) {unknown}; known: {sorted(known)}")
    try:
        return dataclasses.replace(opts, **settings)
    except TypeError as exc:
        raise ModelError(f"invalid option value for backend '{name}' ({', '.join(sorted(settings))}): {exc}") from exc
