"""Accelerated dual ascent on g_gamma(y) = min_{x in C} c^T x + y^T A x - h(y) + gamma/2 ||x||^2, with continuation.

h(y) = sum_r u_r y_r^+ - l_r y_r^- is the support function of the row bounds, so one proximal step
y <- z - s clip(z / s, l, u), z = w + s A x*(w), handles <=, >= , == and range rows alike; x*(w) is the
projection of -(c + A^T w) / gamma onto C. Nesterov momentum with per-row gradient restarts, a step from the local
curvature (never below gamma / ||A||^2), gamma halved per stage, duals extrapolated across stages
(y(0) ~ 2 y(gamma/2) - y(gamma)). Every
``check_every`` iterations the unregularized Lagrangian bound, a repaired feasible primal and Farkas
tests of two rays are evaluated on the device and copied to the host once: the loop itself never synchronizes.
Where the stationarity stops falling, the checks also move the rows the ascent creeps along to where their
gradient changes sign (``flat_row_search``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dualip_model.status import Status, relative_gap

from . import check_loop, checkpoint
from .check_loop import RunState
from .kernels import Kernels
from .memory import MemoryReport, TemporaryTracker, held_bytes
from .problem import ScaledProblem
from .termination import Interrupt, Measures, StoppingRule, keep_best, largest, verdict


@dataclass
class AscentState:
    """Iterate y, extrapolated point w, momentum parameters t (one per row), Newton warm start tau (device tensors)."""

    y: torch.Tensor = field(metadata=checkpoint.index("rows"))
    w: torch.Tensor = field(metadata=checkpoint.index("rows"))
    t: torch.Tensor = field(metadata=checkpoint.index("rows"))
    tau: torch.Tensor = field(metadata=checkpoint.index("blocks"))
    # running estimate of the local Lipschitz constant of the dual gradient
    lip: torch.Tensor = field(metadata=checkpoint.index("scalar"))
    # previous extrapolated point and its A x*(w), for that estimate
    w_prev: torch.Tensor = field(metadata=checkpoint.index("rows"))
    ax_prev: torch.Tensor = field(metadata=checkpoint.index("rows"))

    @staticmethod
    def start(y: torch.Tensor, n_blocks: int, lip: float, tau: torch.Tensor | None = None) -> "AscentState":
        """Momentum reset at y (a new stage or a warm start)."""
        one = torch.ones((), dtype=y.dtype, device=y.device)
        tau = torch.zeros(n_blocks, dtype=y.dtype, device=y.device) if tau is None else tau
        return AscentState(y, y.clone(), torch.ones_like(y), tau, one * lip, y.clone(), torch.zeros_like(y))


@dataclass
class Certificate:
    """Host-side numbers from one check, in the original (unscaled, minimization) units."""

    bound: float
    objective: float  # of the repaired primal (or of x*(y) when no repair applies)
    # the largest violation of a coupling row or block sum relative to 1 + |its side| (termination.py), of the
    # candidate primal and of x*(y) before repair
    infeasibility: float
    raw_infeasibility: float
    # G = (y+ - y) / s relative to ||b||, per row to |b_r|, and sum_r |y_r G_r| relative to the objective (the
    # largest): 0 iff y = y*(gamma); the last catches rows whose dual is large next to their side
    stationarity: float
    dual_value: float  # regularized dual g_gamma(y)
    farkas: float  # > 0 certifies infeasibility along the best of the tested rays
    dual_violation: float = 0.0  # sum_r |y_r| (violation of row r) in objective units: what the violation may hide

    def measures(self) -> Measures:
        """What the stopping rule reads about this check's candidate primal."""
        return Measures(self.objective, self.infeasibility, self.dual_violation)


@dataclass(kw_only=True)
class Run(RunState):
    """The dual ascent's run: its iterate and continuation state beside what both methods carry (RunState)."""

    st: AscentState
    gamma: float
    best_cert: Certificate | None = None
    # y at the end of the previous gamma stage (extrapolation)
    prev_stage_y: torch.Tensor | None = field(default=None, metadata=checkpoint.index("rows"))
    # prox-gradient of g_gamma at the previous check (flat_rows option)
    grad_prev: torch.Tensor | None = field(default=None, metadata=checkpoint.index("rows"))
    stationarity_low: float = math.inf  # lowest stationarity of the gamma stage so far (flat_rows option)
    stationarity_wait: int = 0  # checks since the stationarity last halved
    calm: int = 0  # consecutive stationary checks
    lip_floor: float = 1e-2  # the adaptive step's curvature estimate stays >= lip_floor ||A||^2 / gamma
    best_dual: float = -math.inf  # highest regularized dual value g_gamma(y) of the gamma stage so far
    stalled: int = 0  # consecutive checks that did not raise it

    @staticmethod
    def start(st: AscentState, gamma: float) -> "Run":
        return Run(st=st, gamma=gamma, **RunState.rays_at(st.y))


_SEARCH_NEWTON_STEPS = 4  # Newton steps of the flat-row search's projections (trial points move a few rows only)


SETTLED = 0.1  # a stage whose candidates miss rows by more than tol ends at this share of tol's stationarity
CONFIRM_SHARE = 0.4  # the check that confirms a stage's first stationary one comes after this share of check_every


class DualAscentSolver:
    """Runs the method on a ScaledProblem; stateless between solves except what warm starts pass in."""

    def __init__(self, prob: ScaledProblem, options, store=None):
        self.prob = prob
        self.opts = options
        self.store = store if store is not None else checkpoint.FileStore(prob.sf)  # where checkpoints go
        self.kernels = Kernels.of(prob, options)  # the engine's operations (kernels.py)
        self._steps = self.kernels.steps(self._iterate)

    def iterate(self, st: AscentState, gamma: float, step: float, k: int, lip_floor: float = 1e-2) -> AscentState:
        """k accelerated proximal ascent steps; tensor ops only (no host synchronization).

        With ``adaptive_step`` the step is 1 / (1.1 L_hat), L_hat a decaying maximum of the local curvature
        ||A x(w_k) - A x(w_{k-1})|| / ||w_k - w_{k-1}||, kept within [lip_floor, 1] ||A||^2 / gamma: never
        below the safe step ``step`` = gamma / ||A||^2. The kernels run the k steps as they are, or as one
        torch.compile graph (the "compiled" engine; gamma, step and lip_floor then enter as 0-d tensors, so a new
        gamma stage replays the same graph).
        """
        return self._steps(st, k, gamma, step, lip_floor)

    def _iterate(self, st: AscentState, k: int, gamma, step, lip_floor) -> AscentState:
        """The k steps of ``iterate``; gamma, step and lip_floor are floats or 0-d tensors."""
        kn = self.kernels
        y, w, t, tau, lip = st.y, st.w, st.t, st.tau, st.lip
        w_prev, ax_prev = st.w_prev, st.ax_prev
        adaptive = self.opts.adaptive_step
        for _ in range(k):
            ax, tau = kn.projected_ax(w, gamma, tau, self.opts.newton_steps)
            w_used = w
            y, w, t, lip = kn.ascent_update(y, w, t, lip, ax, w_prev, ax_prev, step, lip_floor, adaptive)
            if adaptive:
                w_prev, ax_prev = w_used, ax
        return AscentState(y, w, t, tau, lip, w_prev, ax_prev)

    def row_stationarity(self, g: torch.Tensor) -> torch.Tensor:
        """The per-row term of the stationarity from G_r / (1 + |side_r|): the largest where the candidate is x*(y)
        itself (no repair), so that a stage ends only once every row of it is within tol (the stopping rule's
        measure); the RMS where a repair makes the candidate feasible anyway."""
        return g.pow(2).mean().sqrt() if self.prob.repairable else largest(g.abs())

    def check(self, y: torch.Tensor, tau: torch.Tensor, gamma: float, rays: list[torch.Tensor]):
        """Certificate numbers at y (one host copy), the primal candidate, the ray with the largest Farkas value and
        the prox-gradient of g_gamma at y (``prox_move``, scaled units)."""
        p, kn = self.prob, self.kernels
        v = kn.gradient(y)  # g = c + A^T y
        block_value = kn.block_minima(v).sum()
        v.mul_(-1.0 / gamma)  # -g / gamma, in g's memory: g^T x = -gamma v^T x below
        x = kn.project(v, tau, 2 * self.opts.newton_steps)
        reg_value = gamma * (0.5 * kn.dot(x, x) - kn.dot(v, x))  # g^T x + gamma/2 ||x||^2
        del v
        ax = p.comm.sum(kn.A_times(x))
        raw_infeasibility = kn.row_violation(ax)
        grad = kn.prox_move(y, ax, gamma / p.norm_sq)  # scaled: the flat-row search compares it across checks
        moved = grad / kn.row_scale
        if p.repairable:
            xr = kn.repair(x, ax)
            del x
            ax = p.comm.sum(kn.A_times(xr))
        else:
            xr = x
        viol = kn.violation(ax)
        infeasibility = kn.row_violation(ax)
        if not p.repairable:  # (the repair scales blocks back within their sums; the float64 recheck measures all)
            infeasibility = torch.maximum(infeasibility, kn.block_violation(xr))
        h = kn.support(y)
        farkas = kn.farkas_tests(rays, infeasibility)  # (equality blocks and floors can make a problem infeasible)
        # sums over columns: one all-reduce for the three of them
        objective = kn.dot(p.c, xr)
        block_values, objective, reg_value = p.comm.sum(torch.stack([block_value, objective, reg_value]))
        stats = torch.stack([
            block_values - h,  # unregularized bound (scaled)
            objective,  # of the candidate (scaled)
            infeasibility, raw_infeasibility,
            # relative to ||b|| and, row by row, to each row's own side: a row with a small side counts fully
            torch.maximum(moved.norm() / (1.0 + p.b_norm), self.row_stationarity(moved / p.row_size)),
            reg_value - h,  # g_gamma(y)
            (y.abs() * kn.row_scale * viol).sum(),  # |y|^T violation, y and violation in original units / sigma
            (y * grad).abs().sum(),  # sum_r |y_r G_r| (scaled): what the inexact stationarity may cost the objective
            *farkas,
        ]).double().cpu().numpy()
        best_ray = int(np.argmax(stats[8:]))
        sf = p.sf
        cert = Certificate(
            bound=p.sigma * stats[0] + sf.offset, objective=p.sigma * stats[1] + sf.offset,
            infeasibility=stats[2], raw_infeasibility=stats[3],
            stationarity=max(stats[4], p.sigma * stats[7] / max(1.0, abs(p.sigma * stats[1] + sf.offset))),
            dual_value=p.sigma * stats[5] + sf.offset,
            farkas=stats[8 + best_ray], dual_violation=p.sigma * stats[6],
        )
        return cert, xr, rays[best_ray], grad

    # ------------------------------------------------------------------ accounting
    def memory_report(self, iterations: int | None = None) -> MemoryReport:
        """Bytes of every tensor the solve holds and the peak of its temporaries, measured on this problem.

        From the starting duals: ``iterations`` (default check_every) iterations to warm up, then as many again
        and one check under a TemporaryTracker. Held: the problem, the ascent state, the ray bases and the
        best primal and duals a run keeps.
        """
        p, k = self.prob, iterations or self.opts.check_every
        gamma = self.opts.gamma if self.opts.gamma is not None else 3e-2
        run = Run.start(AscentState.start(torch.zeros(p.m, dtype=p.dtype, device=p.device), p.sf.n_blocks,
                                          p.norm_sq / gamma), gamma)
        st = self.iterate(run.st, gamma, gamma / p.norm_sq, k)
        with TemporaryTracker() as loop:
            st = self.iterate(st, gamma, gamma / p.norm_sq, k)
        rays = [self.kernels.to_domain(st.y - base) for base in (run.ray_ref, run.anchor)]
        with TemporaryTracker() as check:
            _, x, _, _ = self.check(st.y, st.tau, gamma, rays)
        state = {f"state.{name}": t for name, t in checkpoint.record(st)[0].items()}
        state.update({name: getattr(run, name) for name in ("ray_ref", "anchor", "next_anchor")},
                     best_y=st.y.clone(), best_x=x, row_scale=self.kernels.row_scale, **self.kernels.tensors())
        return MemoryReport(nnz=p.sf.nnz,
                            held=held_bytes({**p.tensors(), **state}), iteration_temporaries=loop.peak,
                            check_temporaries=check.peak, iterations=k)

    # ------------------------------------------------------------------ the method
    def solve(self, y0: np.ndarray | None = None, gamma0: float | None = None, verify=None,
              interrupt: Interrupt | None = None):
        """Stages of accelerated ascent until the stopping rule holds (termination.py), a limit, a Farkas ray or Ctrl-C.

        ``verify(x, y)``: the float64 recheck of a primal that the working precision calls optimal; it returns an
        object whose ``passed`` says whether the rule holds there too (else the solve goes on, and that primal is
        no longer kept for its rank). ``interrupt``: the flag a deferred Ctrl-C sets, read at every check and at
        the end of each pass (after the flat-row search and the checkpoint write).
        """
        p, o = self.prob, self.opts
        if o.resume is not None:
            run = checkpoint.load_state(Run, o.resume, self.store, o, p)
        else:
            gamma = gamma0 if gamma0 is not None else (o.gamma if o.gamma is not None else 3e-2)
            y = torch.zeros(p.m, dtype=p.dtype, device=p.device) if y0 is None else \
                torch.as_tensor(y0, dtype=p.dtype, device=p.device)
            run = Run.start(AscentState.start(y, p.sf.n_blocks, p.norm_sq / gamma), gamma)
        out = check_loop.solve(self, run, verify, interrupt)
        out["gamma"] = run.gamma
        return out

    def advance(self, run: "Run", k: int) -> None:
        """k steps of the ascent from the run's state (the loop's chunk, check_loop.py)."""
        run.st = self.iterate(run.st, run.gamma, run.gamma / self.prob.norm_sq, k, run.lip_floor)

    def chunk(self, run: "Run") -> int:
        """Steps before the next check: ``check_every``, or CONFIRM_SHARE of it after a stage's first stationary check
        (the stage is settled then; the check that confirms it, and ends the stage, need not wait a whole chunk:
        10 steps of 25 took 5-20% fewer iterations on the family suite, docs/algorithm.md)."""
        k = self.opts.check_every
        return max(1, round(CONFIRM_SHARE * k)) if run.calm == 1 else k

    @staticmethod
    def duals(run: "Run") -> torch.Tensor:
        """The ascent's current duals y."""
        return run.st.y

    @staticmethod
    def certifies(run: "Run", interrupt: Interrupt | None) -> bool:
        """Every check of the ascent certifies (its continuation and flat-row search need the check's numbers)."""
        return True

    def check_run(self, run: "Run", rays: list[torch.Tensor]):
        """``check`` at the run's duals: (certificate, candidate, best ray, prox-gradient for the flat-row search)."""
        return self.check(run.st.y, run.st.tau, run.gamma, rays)

    def carry_on(self, run: "Run", cert: Certificate, grad: torch.Tensor) -> None:
        """Between checks of a run that goes on: the flat-row search (``flat_rows`` option), then the continuation."""
        if self.opts.flat_rows:
            self.flat_row_search(run, grad, cert)
        self.continuation(run, cert)

    def record(self, run: "Run", cert: Certificate, x: torch.Tensor, elapsed: float,
               interrupt: Interrupt | None = None) -> Status | None:
        """Keep the best bound and primal (StoppingRule.better), log the check, and say whether the solve ends here."""
        rule = StoppingRule.of(self.opts.tol, self.prob.dtype)
        keep_best(run, cert, x, run.st.y, rule)
        rec = dict(iteration=run.it, gamma=run.gamma, dual=cert.dual_value, bound=run.best_bound,
                   objective=run.best_obj, candidate_objective=cert.objective,
                   infeasibility=run.best_cert.infeasibility, raw_infeasibility=cert.raw_infeasibility,
                   stationarity=cert.stationarity, gap=relative_gap(run.best_obj, run.best_bound),
                   step=run.gamma / self.prob.norm_sq, time=elapsed)
        run.history.append(rec)
        self.safeguard(run, cert)
        return verdict(run, cert, rec, self.opts, rule, self.prob.comm, self.prob.dtype, elapsed, interrupt)

    def safeguard(self, run: "Run", cert: Certificate) -> None:
        """Raise the adaptive step's curvature floor 10x when 2 checks in a row do not raise g_gamma(y).

        The secant curvature along the last move can miss stiffer directions (many nearly uncoupled rows, as
        in a matching with few users per item): the steps then overshoot and y oscillates without raising
        g_gamma. The floor goes up to 1 (the safe step gamma / ||A||^2, with which the ascent converges) and
        back to 1e-2 at each new gamma stage.
        """
        if cert.dual_value > run.best_dual:
            run.best_dual, run.stalled = cert.dual_value, 0
            return
        run.stalled += 1
        if run.stalled >= 2:
            run.lip_floor = min(1.0, 10.0 * run.lip_floor)
            run.stalled = 0

    def prox_gradient(self, y: torch.Tensor, tau: torch.Tensor, gamma: float) -> torch.Tensor:
        """G(y) = prox_move at x*(y), s = gamma / ||A||^2: the ascent direction of g_gamma at y."""
        kn = self.kernels
        return kn.prox_move(y, kn.projected_ax(y, gamma, tau, _SEARCH_NEWTON_STEPS)[0], gamma / self.prob.norm_sq)

    def flat_row_search(self, run: "Run", g: torch.Tensor, cert: Certificate) -> None:
        """Move the flat rows of y to where their gradient changes sign (the ``flat_rows`` option).

        Flat rows: coefficients spread far within a row leave it with columns at their bounds (or one free column
        with a tiny entry) until y_r passes a far price |c_j| / a_rj, and the ascent creeps there at a nearly
        constant gradient. The search runs once the stage's stationarity has not halved for two checks (a solve
        that progresses is left alone) on the rows whose prox-gradient ``g`` kept its sign, changed by < 10% since
        the previous check and would alone fail a term of the stationarity test (``check``) at 1% of tol. They
        move together along sign(g_r): steps growing 4x from 10 s |g_r| (up to 60 of them: the needed move can be
        1e12 times the first step) until g_r's sign flips or the domain's edge stops the row, then 15 bisection
        steps keep the last point of the old sign. Only the moved rows restart their momentum. Costs one
        gradient evaluation per trial, only at the checks that search.
        """
        p = self.prob
        prev, run.grad_prev = run.grad_prev, g
        if cert.stationarity < 0.5 * run.stationarity_low:
            run.stationarity_low, run.stationarity_wait = cert.stationarity, 0
        else:
            run.stationarity_wait += 1
        if prev is None or run.stationarity_wait < 2:
            return
        # significant: one of the row's terms of the stationarity (see check) alone is above 1% of tol
        floor = 0.01 * self.opts.tol
        significant = (g.abs() / self.kernels.row_scale > floor * p.row_size) | (
            p.sigma * (run.st.y * g).abs() > floor * max(1.0, abs(cert.objective)))
        search = (g * prev > 0) & ((g - prev).abs() <= 0.1 * g.abs()) & significant
        if not bool(search.any()):
            return
        st = run.st
        y, tau = st.y, st.tau
        sign, delta = torch.sign(g), 10.0 * run.gamma / p.norm_sq * g.abs()
        lo, hi, found = y.clone(), y.clone(), torch.zeros_like(search)  # lo: old sign, hi: flipped (or the edge)
        for k in range(60):  # up to 4^59 ~ 3e35 times the first step (capped at 1e30: finite in float32)
            moving = search & ~found
            raw = y + sign * torch.clamp(delta * 4.0 ** k, max=1e30)
            trial = torch.where(moving, self.kernels.to_domain(raw), hi)
            # a flip, or the domain's edge (y_r = 0): the bisection then finds the flip or ends at the edge
            flipped = moving & ((self.prox_gradient(trial, tau, run.gamma) * sign <= 0) | (trial != raw))
            hi = torch.where(moving, trial, hi)
            lo = torch.where(moving & ~flipped, trial, lo)
            found |= flipped
            if bool((found | ~search).all()):
                break
        for _ in range(15):
            mid = torch.where(found, 0.5 * (lo + hi), y)
            same = self.prox_gradient(mid, tau, run.gamma) * sign > 0
            lo, hi = torch.where(found & same, mid, lo), torch.where(found & ~same, mid, hi)
        y_new = torch.where(found, lo, y)
        run.st = AscentState(y_new, torch.where(found, y_new, st.w), torch.where(found, 1.0, st.t), tau, st.lip,
                             st.w_prev, st.ax_prev)

    def continuation(self, run: "Run", cert: Certificate) -> None:
        """End the gamma stage once y is stationary at two checks in a row: gamma *= decay, duals extrapolated."""
        p, o = self.prob, self.opts
        # two in a row, not a noisy dip; and a candidate within tol of its rows (the stage's own optimum meets them:
        # a stage ended at stationarity ~ tol left the candidates' floors short by ~ tol at every stage)
        # (not where the candidate is already more than tol from this stage's bound: the bound needs a smaller gamma)
        settled = cert.infeasibility <= o.tol or cert.stationarity <= SETTLED * o.tol or \
            relative_gap(cert.objective, run.best_bound) > o.tol
        run.calm = run.calm + 1 if cert.stationarity <= o.tol and settled else 0
        if run.calm < 2 or run.gamma * o.gamma_decay < o.gamma_min:
            return
        y_stage = run.st.y.clone()
        rho = o.gamma_decay
        if o.extrapolate and run.prev_stage_y is not None:
            # y(gamma) ~ y(0) + k gamma across stages gamma/rho -> gamma -> rho gamma
            slope_step = y_stage - run.prev_stage_y  # = -k gamma (1/rho - 1)
            y_zero = self.kernels.to_domain(y_stage + slope_step * (rho / (1.0 - rho)))
            zero_bound = p.sigma * float(self.kernels.lagrangian_bound(y_zero)) + p.sf.offset
            if zero_bound > run.best_bound:
                run.best_bound, run.best_y = zero_bound, y_zero
            y_next = self.kernels.to_domain(y_stage + slope_step * rho)
        else:
            y_next = y_stage
        run.prev_stage_y = y_stage
        run.gamma *= o.gamma_decay
        run.st = AscentState.start(y_next, p.sf.n_blocks, p.norm_sq / run.gamma, run.st.tau)
        run.calm = 0
        run.best_dual, run.stalled, run.lip_floor = -math.inf, 0, 1e-2  # each stage earns its own floor
        run.stationarity_low, run.stationarity_wait = math.inf, 0
