"""The backend protocol: ``solve(standard_form, options) -> RawResult`` plus declared capabilities.

A backend is any object with ``name``, ``capabilities`` (a frozenset of Capability), ``Options`` (a
dataclass type of its settings) and ``solve``. Results are in the standard form's own terms
(minimization, compiled column order); Model.solve maps them back to the user's labels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from .status import Status


class Capability(str, enum.Enum):
    """What a backend can do; tests and Model.solve read these, never the backend's name."""

    EXACT = "exact"  # returns vertex-accurate optima (simplex/IPM)
    DUALS = "duals"  # returns row duals
    BLOCK_DUALS = "block_duals"  # returns duals of block sum constraints
    CERTIFIED_BOUND = "certified_bound"  # returns a valid lower bound (objective - bound is a certified gap)
    DETECTS_INFEASIBLE = "detects_infeasible"
    DETECTS_UNBOUNDED = "detects_unbounded"
    WARM_START = "warm_start"
    GPU = "gpu"
    HISTORY = "history"  # returns a convergence history
    RANGES = "ranges"  # accepts rows with two finite sides
    FREE_VARIABLES = "free_variables"  # accepts columns with infinite bounds in BOX blocks


@dataclass
class RawResult:
    """A backend's answer in standard-form terms: min c^T x + offset, compiled column order.

    ``row_dual[r]`` = d(optimal value)/d(bound of row r) (HiGHS's convention: <= 0 on a binding <= row);
    ``block_dual[i]`` likewise for the block sum constraint of block i. ``bound`` is a valid lower bound
    on the optimal value when the backend certifies one (exact backends: the optimum itself).
    """

    status: Status
    x: np.ndarray | None = None
    objective: float = float("nan")
    bound: float = float("nan")
    row_dual: np.ndarray | None = None
    block_dual: np.ndarray | None = None
    iterations: int = 0
    solve_time: float = 0.0
    log: str = ""
    message: str = ""
    history: list = field(default_factory=list)
    guarantees: tuple[str, ...] = ()
    ray: np.ndarray | None = None  # infeasibility certificate (dual ray) where available
    state: dict | None = None  # backend state for warm starts


@runtime_checkable
class Backend(Protocol):
    """solve(standard form, options) -> RawResult, with a name, declared capabilities and an Options dataclass."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset]
    Options: ClassVar[type]

    def solve(self, sf, options) -> RawResult: ...
