"""The loop both methods run: k steps on the device, then a check on the host, until the stopping rule decides.

    repeat: k steps (no host sync) -> check (one host copy) -> keep best, verdict (termination.py) -> float64
            recheck of an OPTIMAL -> the method's own between-check work -> checkpoint

``RunState`` holds what both methods carry from check to check (the best bound and candidate, the Farkas ray
bases, the clock, the history); each method's run dataclass adds its own iterate and ``best_cert``, the kept
candidate's check numbers in the method's own type (restored by that type). ``solve`` is the loop; a
method supplies ``chunk(run)`` (steps before the next check), ``advance(run, k)``, ``duals(run)``,
``certifies(run, interrupt)``, ``check_run(run, rays)``, ``record(...)``, ``carry_on(run, cert, extra)`` and
``carry_on_uncertified(run)`` (solver.py, pdhg.py). A check that does not certify (``certifies`` False: PDHG where a
certificate costs more than the iterations between two checks) runs only the method's own between-check work.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from dualip_model.status import Status

from . import checkpoint
from .termination import Interrupt


@dataclass(kw_only=True)
class RunState:
    """What a method's loop carries from check to check besides its iterate; saved whole in a checkpoint with it
    (every field, checkpoint.record), so a resume is bitwise."""

    best_y: torch.Tensor = field(metadata=checkpoint.index("rows"))  # duals behind the best bound
    ray_ref: torch.Tensor = field(metadata=checkpoint.index("rows"))  # y at the previous check
    # y at an earlier check, anchor_it / 2 or so: the base of the long Farkas ray
    anchor: torch.Tensor = field(metadata=checkpoint.index("rows"))
    # y at iteration anchor_it, the anchor once the iteration count doubles
    next_anchor: torch.Tensor = field(metadata=checkpoint.index("rows"))
    it: int = 0
    anchor_it: int = 0
    best_bound: float = -math.inf
    best_obj: float = math.inf
    best_x: torch.Tensor | None = field(default=None, metadata=checkpoint.index("columns"))
    rejected: bool = False  # the kept primal failed the float64 recheck: the next candidate replaces it
    elapsed: float = 0.0  # seconds of solving before this process (resumed runs)
    history: list = field(default_factory=list)

    @staticmethod
    def rays_at(y: torch.Tensor) -> dict:
        """The fields of a run starting at duals y: the best duals and every ray base at y."""
        return dict(best_y=y, ray_ref=y.clone(), anchor=y.clone(), next_anchor=y.clone())

    def advance_rays(self, y: torch.Tensor) -> None:
        """Move the ray bases to this check's duals y: the anchor steps forward whenever the iteration count
        doubles."""
        y = y.clone()
        self.ray_ref = y
        if self.it >= 2 * self.anchor_it:
            self.anchor, self.next_anchor, self.anchor_it = self.next_anchor, y, self.it


@dataclass
class Pace:
    """Seconds per iteration measured at the checks, to end a chunk before the time limit (no host sync)."""

    it0: int  # iteration and elapsed seconds where this process started measuring
    t0: float
    it: int = 0
    t: float = 0.0

    def at_check(self, it: int, elapsed: float) -> None:
        self.it, self.t = it, elapsed

    def chunk(self, k: int, time_limit: float | None) -> int:
        """At most k iterations, as many as fit before ``time_limit`` at the pace so far (0: none fits)."""
        if time_limit is None:
            return k
        if self.it <= self.it0:  # no pace measured yet: a short first chunk measures it
            return min(k, PACE_PROBE)
        per_iteration = (self.t - self.t0) / (self.it - self.it0)
        left = time_limit - self.t
        return k if per_iteration <= 0 else max(0, min(k, int(left / per_iteration)))


PACE_PROBE = 5  # iterations of the first chunk under a time limit (then the pace is known)


def solve(method, run: RunState, verify=None, interrupt: Interrupt | None = None) -> dict:
    """Chunks of the method's ``chunk`` steps (``check_every`` or fewer) and a check after each, until the stopping
    rule holds (termination.py), a limit, a Farkas ray or Ctrl-C; the method's result dict (its ``gamma`` aside).

    ``verify(x, y)``: the float64 recheck of a primal the working precision calls optimal (the solve goes on if it
    fails, and that primal is no longer kept); ``interrupt``: the deferred Ctrl-C flag, read at every check and at
    the end of each pass (after the method's between-check work and the checkpoint write).
    """
    p, o = method.prob, method.opts
    start = time.perf_counter() - run.elapsed
    pace = Pace(run.it, run.elapsed)
    status, ray, saved_at, verified = Status.ITERATION_LIMIT, None, run.it, None
    while run.it < o.max_iter:
        k = pace.chunk(min(method.chunk(run), o.max_iter - run.it), o.time_limit)
        if k == 0:  # the next iteration would end past the time limit
            status = Status.TIME_LIMIT
            break
        try:
            method.advance(run, k)
        except KeyboardInterrupt:  # raised, not deferred (a second Ctrl-C, or another thread's solve)
            if run.best_x is None or p.comm.world > 1:  # nothing to return, or ranks cannot agree where they stopped
                raise
            status = Status.INTERRUPTED
            break
        run.it += k
        if method.certifies(run, interrupt):
            # Farkas test rays, in the dual domain: y's move since the last certified check and since the anchor
            # check (a window of it/2..3it/4 iterations, which averages the oscillations of the iterates out)
            y = method.duals(run)
            rays = [method.kernels.to_domain(y - base) for base in (run.ray_ref, run.anchor)]
            cert, x, ray, extra = method.check_run(run, rays)
            run.advance_rays(y)
            status = method.record(run, cert, x, time.perf_counter() - start, interrupt)
            pace.at_check(run.it, run.history[-1]["time"])
            if status == Status.OPTIMAL and verify is not None:
                verified = verify(run.best_x, run.best_y)
                if not verified.passed:  # float64 disagrees with the working precision: go on without it
                    run.rejected, status, verified = True, None, None
            if status in (None, Status.INTERRUPTED, Status.TIME_LIMIT):  # a run that may go on (or be resumed)
                method.carry_on(run, cert, extra)
        else:  # no certificate at this check: the method's own work only
            method.carry_on_uncertified(run)
            pace.at_check(run.it, time.perf_counter() - start)
            status = None
        if o.checkpoint is not None and run.it - saved_at >= o.checkpoint_every:  # saved as the next step sees it
            run.elapsed = time.perf_counter() - start
            checkpoint.save_state(run, o.checkpoint, method.store, o)
            saved_at = run.it
        if status is None and interrupt is not None and interrupt.requested and p.comm.world == 1:
            status = Status.INTERRUPTED  # Ctrl-C during the between-check work or the write (ranks: next check)
        if status is not None:
            break
        status = Status.ITERATION_LIMIT
    run.elapsed = time.perf_counter() - start
    if o.checkpoint is not None and saved_at != run.it:
        checkpoint.save_state(run, o.checkpoint, method.store, o)
    return dict(status=status, x=run.best_x, y=method.duals(run), y_bound=run.best_y, bound=run.best_bound,
                objective=run.best_obj, cert=run.best_cert, iterations=run.it, history=run.history, ray=ray,
                elapsed=run.elapsed, verified=verified)
