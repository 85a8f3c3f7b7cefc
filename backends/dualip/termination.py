"""OPTIMAL iff max_k viol_k(x) / (1 + |side_k|) <= tol over every constraint k and 0 <= (f(x) - L) / max(1, |f|, |L|) <= tol.

The stopping rule of both methods (the dual ascent and the PDHG), in one place: the loops' checks (working
precision, on the device) and the float64 recheck of the returned primal (backend.py) measure the same numbers
with the same functions here; ``keep_best`` and ``verdict`` are what each check does with them.

- ``side_violation``: per constraint, (a - u)_+ / (1 + |u|) and (l - a)_+ / (1 + |l|), the larger; 0 on an
  infinite side. Constraints are the coupling rows, the block sums (sum x <= r or == r) and the column bounds.
- ``Measures``: what the rule reads about one primal: its objective, its largest relative violation and
  sum_r |y_r| viol_r, what the violations may hide of the objective (an infeasible x can pass the optimum by
  about that much, so it must be within tol too, relative to max(1, |objective|)).
- ``StoppingRule.optimal``: the contract. A gap below 0 (the objective passes a valid bound by more than the
  rounding of the precision) says the primal is not feasible enough: never OPTIMAL, the solve goes on.
- ``StoppingRule.rank``: the best-candidate rule. Candidates that pass the whole test first, then those within tol of
  feasibility whose objective does not cross the bound, then those that cross it, then the rest (again those
  that do not cross first); within a tier the lowest merit f + |y|^T viol (the objective plus the worth of its violations: keeping the lowest objective
  kept the most infeasible candidate, which failed the test forever), and outside tol the smallest violation.
- ``Interrupt``: SIGINT deferred to the loop's safe points (a flag, read between iteration chunks and at the
  end of each check), so that Ctrl-C always returns the best result; a second Ctrl-C raises at once.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass

import torch

from dualip_model.status import Status, relative_gap

FAR = 3  # rank tier of a candidate outside tol of feasibility (FAR + 1: one whose objective also crosses the bound)
ROUNDING_EPS = 100  # a gap above -100 eps of the working precision is rounding, read as 0


def side_violation(activity: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """max((a - u)_+ / (1 + |u|), (l - a)_+ / (1 + |l|)) per entry, 0 on an infinite side (any device, dtype)."""
    zero = torch.zeros((), dtype=activity.dtype, device=activity.device)
    above = torch.where(torch.isfinite(upper), torch.relu(activity - upper) / (1.0 + upper.abs()), zero)
    below = torch.where(torch.isfinite(lower), torch.relu(lower - activity) / (1.0 + lower.abs()), zero)
    return torch.maximum(above, below)


def block_violation(sums: torch.Tensor, rhs: torch.Tensor, is_box: torch.Tensor, is_eq: torch.Tensor) -> torch.Tensor:
    """Per block: the relative violation of sum x <= r (== r where ``is_eq``); 0 for BOX blocks."""
    inf = torch.full((), math.inf, dtype=sums.dtype, device=sums.device)
    lower = torch.where(is_eq, rhs, -inf)
    upper = torch.where(is_box, inf, rhs)
    return side_violation(sums, lower, upper)


def largest(v: torch.Tensor) -> torch.Tensor:
    """max(0, max v) as a 0-d tensor (0 for an empty v), without a host synchronization."""
    return v.amax().clamp(min=0.0) if v.numel() else torch.zeros((), dtype=v.dtype, device=v.device)


@dataclass(frozen=True)
class Measures:
    """What the stopping rule reads about one primal x (original units, minimization)."""

    objective: float  # c^T x + offset
    violation: float  # largest relative violation of a coupling row, block sum or column bound
    dual_violation: float = 0.0  # sum_r |y_r| viol_r: what the violations may hide of the objective


@dataclass(frozen=True)
class StoppingRule:
    """The contract at tolerance ``tol``; ``rounding``: how far below 0 a gap may be and still be read as 0 (the
    relative rounding of the objective and bound in the precision they were computed in)."""

    tol: float
    rounding: float

    @staticmethod
    def of(tol: float, dtype: torch.dtype) -> "StoppingRule":
        return StoppingRule(tol, ROUNDING_EPS * torch.finfo(dtype).eps)

    def gap(self, m: Measures, bound: float) -> float:
        """Relative gap of the objective to ``bound``, rounding-level crossings read as 0."""
        gap = relative_gap(m.objective, bound)
        return 0.0 if -self.rounding <= gap < 0.0 else gap

    def hidden(self, m: Measures) -> float:
        """The relative worth of the violations, |y|^T viol / max(1, |objective|)."""
        return relative_gap(m.objective + m.dual_violation, m.objective)

    def optimal(self, m: Measures, bound: float) -> bool:
        """Every constraint within tol of its side, 0 <= gap <= tol, and |y|^T viol within tol."""
        return m.violation <= self.tol and 0.0 <= self.gap(m, bound) <= self.tol and self.hidden(m) <= self.tol

    def rank(self, m: Measures, bound: float) -> tuple[int, float]:
        """(tier, merit) of a candidate primal, the lower the better (see the module docstring)."""
        crossing = self.gap(m, bound) < 0.0
        if m.violation > self.tol:
            return FAR + crossing, m.violation
        merit = m.objective + m.dual_violation
        if self.optimal(m, bound):
            return 0, merit
        return 1 + crossing, merit

    def better(self, new: Measures, kept: Measures | None, bound: float) -> bool:
        """True if candidate ``new`` replaces ``kept`` (ties go to the newer one, nearer the dual optimum)."""
        return kept is None or self.rank(new, bound) <= self.rank(kept, bound)


FARKAS_MIN = {torch.float64: 1e-9, torch.float32: 1e-4}  # F(d) / ||d|| above this certifies infeasibility


def keep_best(run, cert, x: torch.Tensor, y: torch.Tensor, rule: StoppingRule) -> None:
    """A method's run keeps the highest bound (with its duals y) and the best candidate x (StoppingRule.better; a
    candidate the float64 recheck rejected is replaced by the next one). ``cert``: the check's host numbers
    (bound, objective, measures())."""
    if cert.bound > run.best_bound:
        run.best_bound, run.best_y = cert.bound, y
    kept = None if run.best_cert is None or run.rejected else run.best_cert.measures()
    if rule.better(cert.measures(), kept, run.best_bound):
        run.best_obj, run.best_x, run.best_cert, run.rejected = cert.objective, x, cert, False


def verdict(run, cert, rec: dict, options, rule: StoppingRule, comm, dtype: torch.dtype, elapsed: float,
            interrupt: "Interrupt | None") -> Status | None:
    """Whether a solve ends at this check, in this order: the callback (called on rank 0 with the history record
    ``rec``; a truthy value stops) or Ctrl-C, a Farkas ray, the stopping rule at the kept candidate and bound, the
    time limit (the slowest rank's clock decides, for all); None: go on."""
    stop = options.callback is not None and comm.rank == 0 and bool(options.callback(dict(rec)))
    stop = stop or (interrupt is not None and interrupt.requested)
    if comm.world > 1:  # the ranks' clocks differ: the slowest one decides, for all
        stop, elapsed = comm.max_np([stop, elapsed])
        rec["time"] = float(elapsed)
    if stop:
        return Status.INTERRUPTED
    if cert.farkas > FARKAS_MIN.get(dtype, 1e-4):
        return Status.INFEASIBLE
    if not run.rejected and rule.optimal(run.best_cert.measures(), run.best_bound):
        return Status.OPTIMAL
    if options.time_limit is not None and elapsed > options.time_limit:
        return Status.TIME_LIMIT
    return None


class Interrupt:
    """Ctrl-C deferred to safe points: within ``with Interrupt() as stop``, SIGINT sets ``stop.requested``.

    Installed only in the main thread and only over Python's own handler (a process that ignores SIGINT or
    handles it itself keeps its handler); the previous handler comes back on exit. A second SIGINT before the
    solve reaches a safe point raises KeyboardInterrupt at once (a way out of a long check).
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> "Interrupt":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
