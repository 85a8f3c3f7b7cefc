"""One status enum for every backend (each maps its native codes to it in its own package); the relative gap."""

from __future__ import annotations

import enum
import math


class Status(str, enum.Enum):
    """Termination status of a solve."""

    OPTIMAL = "optimal"  # within the backend's tolerances (first-order backends: certified gap <= tol)
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
    ITERATION_LIMIT = "iteration_limit"
    TIME_LIMIT = "time_limit"
    INTERRUPTED = "interrupted"
    ERROR = "error"

    @property
    def has_solution(self) -> bool:
        """True if the result carries a primal point worth reading (possibly not optimal)."""
        return self in (Status.OPTIMAL, Status.ITERATION_LIMIT, Status.TIME_LIMIT, Status.INTERRUPTED)

    def __str__(self) -> str:
        return self.value


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / max(1, |objective|, |bound|) in minimization terms; NaN if either is unknown."""
    if not (math.isfinite(objective) and math.isfinite(bound)):
        return math.nan if math.isnan(objective) or math.isnan(bound) else math.inf
    return (objective - bound) / max(1.0, abs(objective), abs(bound))
