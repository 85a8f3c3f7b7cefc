"""Restarted Halpern PDHG on min_{x in X} max_y c^T x + y^T A x - h(y), X the product of the block polytopes.

h(y) = sum_r u_r y_r^+ - l_r y_r^- (y_r >= 0 on <= rows, <= 0 on >= rows, as in solver.py); rows are scaled to unit
norm and c by its RMS (problem.py). One PDHG step T(x, y) = (x+, y+), with tau = eta / omega, sigma = eta omega,
eta = 0.99 / ||A||_2 and omega the primal weight:

    x+ = P_X(x - tau (c + A^T y))                                   (exact block projections, warm-started Newton)
    y+ = sigma (z - clip(z, l, u)),  z = y / sigma + A (2 x+ - x)    (prox of sigma h: y+ lies in the dual domain)

Reflected Halpern iterations z_{k+1} = (k+1)/(k+2) ((1 + rho) T(z_k) - rho z_k) + 1/(k+2) z_anchor restart from
T(z_k) on the fixed-point residual ||z - T(z)||_P (cuPDLPx's criteria, decided at the checks); the primal weight is
smoothed in log space at each restart. Every ``check_every`` iterations one host copy carries the certified bound
g(y+) = min_{x in X} (c + A^T y+)^T x - h(y+), the measures of the candidate x+ (projected into X, then repaired
where ``prob.repairable``) and two Farkas tests; the stopping rule is the dual ascent's (termination.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dualip_model.errors import ModelError
from dualip_model.status import Status, relative_gap

from . import check_loop, checkpoint
from .check_loop import RunState
from .kernels import Kernels
from .problem import ScaledProblem
from .termination import Interrupt, Measures, StoppingRule, keep_best, verdict

STEP_SHARE = 0.99  # eta = STEP_SHARE / ||A||_2: tau sigma ||A||^2 < 1, PDHG's condition
REFLECTION = 1.0  # rho of the reflected Halpern step (0: plain Halpern)
NEWTON_STEPS = 3  # warm-started Newton steps of the loop's projection onto X
# ... where the repair cuts and refills the candidate (x = 0 feasible): 2 steps took as many iterations as 3 on few
# users per item and power-law (2e5 nonzeros, seeds 0 and 1) and 15% less time; 1 step up to 4x more iterations
NEWTON_STEPS_CUT = 2
SUFFICIENT_DECAY = 0.2  # restart when the residual fell to this share of the cycle's first
NECESSARY_DECAY = 0.8  # ... or to this share and stopped falling since the previous check
ARTIFICIAL_SHARE = 0.36  # ... or when the cycle is this share of all iterations so far
WEIGHT_SMOOTHING = 0.5  # log omega <- (1 - s) log omega + s log(||dy|| / ||dx||) at a restart
# checks per certified check where the repair runs its moves (equality blocks or floors, repair.repair_moves): a
# certificate there costs about as much as two chunks of iterations (fused_cpu at 1e6 nonzeros, one thread: 620 ms
# against 315 on delivery, 400 against 295 on assignment); the checks between decide the restarts only
CHECKS_PER_CERTIFICATE_MOVES = 2
WARM_GAMMA = 1e-2  # a warm start's x: argmin_{x in X} L(x, y0) + gamma/2 ||x||^2 (gamma relative to RMS(c))


@dataclass
class PdhgState:
    """The Halpern iterate z = (x, y) with A x, its image T(z_prev) = (x_t, y_t) with A x_t, the anchor (x0, y0) with
    A x0, the projection's warm start, and the residuals measured in the last chunk (device tensors; k on the host)."""

    # may leave X (the reflection extrapolates); x_t never does
    x: torch.Tensor = field(metadata=checkpoint.index("columns"))
    y: torch.Tensor = field(metadata=checkpoint.index("rows"))
    ax: torch.Tensor = field(metadata=checkpoint.index("rows"))
    x_t: torch.Tensor = field(metadata=checkpoint.index("columns"))
    y_t: torch.Tensor = field(metadata=checkpoint.index("rows"))  # in the dual domain exactly
    ax_t: torch.Tensor = field(metadata=checkpoint.index("rows"))
    x0: torch.Tensor = field(metadata=checkpoint.index("columns"))
    y0: torch.Tensor = field(metadata=checkpoint.index("rows"))
    ax0: torch.Tensor = field(metadata=checkpoint.index("rows"))
    newton: torch.Tensor = field(metadata=checkpoint.index("blocks"))  # (n_blocks,) threshold of the last projection
    # ||z - T(z)||_P at the cycle's first iteration (0-d)
    first: torch.Tensor = field(metadata=checkpoint.index("scalar"))
    # ||z - T(z)||_P at the chunk's last iteration (0-d)
    last: torch.Tensor = field(metadata=checkpoint.index("scalar"))
    k: int = 0  # Halpern iterations since the anchor

    @staticmethod
    def at(x: torch.Tensor, y: torch.Tensor, ax: torch.Tensor, newton: torch.Tensor) -> "PdhgState":
        """A cycle anchored at (x, y): z = T(z) = anchor."""
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        return PdhgState(x.clone(), y.clone(), ax.clone(), x, y, ax, x, y, ax, newton, zero, zero)


@dataclass
class PdhgCheck:
    """Host numbers of one check, original units (minimization)."""

    bound: float  # g(y_t)
    objective: float  # of the candidate (repaired where the repair applies)
    infeasibility: float  # its largest relative violation of a row or block sum
    raw_infeasibility: float  # that of x_t before the repair
    dual_violation: float  # sum_r |y_r| viol_r
    residual: float  # ||z - T(z)||_P at the chunk's last iteration (scaled units)
    first: float  # ... at the cycle's first iteration
    moved_x: float  # ||x_t - x0||, ||y_t - y0||: the move since the anchor, for the primal weight
    moved_y: float
    farkas: float

    def measures(self) -> Measures:
        return Measures(self.objective, self.infeasibility, self.dual_violation)


@dataclass(kw_only=True)
class PdhgRun(RunState):
    """The PDHG's run: its iterate, primal weight and restart state beside what both methods carry (RunState)."""

    st: PdhgState
    omega: float  # primal weight: tau = eta / omega, sigma = eta omega
    best_cert: PdhgCheck | None = None
    first_it: int = 0  # the iteration this method began at (after a dual ascent's when it took over, choice.py)
    cycle_start: int = 0  # iteration of the last restart
    previous: float = math.inf  # the residual at the previous check of this cycle
    restarts: int = 0


class PdhgSolver:
    """Restarted Halpern PDHG over the block polytopes; the same ``solve`` contract as DualAscentSolver.

    Restarts are decided at the checks (one host copy each), not inside the k iterations: the k steps then
    have no data-dependent branch and no host synchronization; checks (and so restart decisions) every 10, 25 or
    40 iterations took about as many iterations on the five benchmark families (docs/algorithm.md).
    """

    def __init__(self, prob: ScaledProblem, options, store=None):
        if options.engine == "compiled":
            raise ModelError("DualipOptions.engine 'compiled' fuses the dual ascent's iteration only; choose "
                             "'auto', 'torch', 'compact' or 'fused_cpu' for algorithm='pdhg'")
        self.prob, self.opts = prob, options
        self.kernels = Kernels.of(prob, options)  # the engine's operations (kernels.py)
        self.store = store if store is not None else checkpoint.FileStore(prob.sf)  # where checkpoints go
        self.eta = STEP_SHARE / math.sqrt(prob.norm_sq)
        self.newton_steps = NEWTON_STEPS_CUT if prob.zero_feasible else NEWTON_STEPS
        moves = prob.repairable and prob.m > 0 and prob.repair_plan.moves
        self.checks_per_certificate = CHECKS_PER_CERTIFICATE_MOVES if moves else 1

    def linear_minimize(self, g: torch.Tensor, need_x: bool = True):
        """(value per block, minimizer or None, block multipliers) of min_{x in X} g^T x (the float64 recheck's)."""
        return self.kernels.linear_minimize(g, need_x)

    # ------------------------------------------------------------------ the iteration
    def iterate(self, st: PdhgState, omega: float, steps: int) -> PdhgState:
        """``steps`` reflected Halpern PDHG iterations; tensor kn only (no host synchronization)."""
        p, kn = self.prob, self.kernels
        tau, sigma, rho = self.eta / omega, self.eta * omega, REFLECTION
        x, y, ax, newton, k = st.x, st.y, st.ax, st.newton, st.k
        x_t, y_t, ax_t, first, last = st.x_t, st.y_t, st.ax_t, st.first, st.last
        for i in range(steps):
            w = (k + 1.0) / (k + 2.0)
            weights = ((1.0 + rho) * w, rho * w, 1.0 - w)  # z+ = (1 + rho) w T(z) - rho w z + (1 - w) z_anchor
            measure = k == 0 or i == steps - 1
            x_t, x_next, ax_t, newton, moved = kn.pdhg_primal(x, y, st.x0, tau, newton, self.newton_steps, weights,
                                                              measure)
            ax_t = p.comm.sum(ax_t)
            y_t, y, ax_next, sums = kn.pdhg_dual(y, ax, ax_t, st.y0, st.ax0, sigma, weights, measure)
            if measure:
                residual = self.residual(p.comm.sum(moved), sums, omega)
                first, last = (residual, residual) if k == 0 else (first, residual)
            x, ax = x_next, ax_next
            k += 1
        return PdhgState(x, y, ax, x_t, y_t, ax_t, st.x0, st.y0, st.ax0, newton, first, last, k)

    def residual(self, primal: torch.Tensor, sums: torch.Tensor, omega: float) -> torch.Tensor:
        """||(dx, dy)||_P scaled by eta: sqrt(omega ||dx||^2 + ||dy||^2 / omega - 2 eta dy^T A dx) (0-d), ``primal`` =
        ||dx||^2 over all columns, ``sums`` = [||dy||^2, dy^T A dx] (Kernels.pdhg_dual)."""
        return (omega * primal + sums[0] / omega - 2.0 * self.eta * sums[1]).clamp(min=0.0).sqrt()

    # ------------------------------------------------------------------ checks
    def check_run(self, run: PdhgRun, rays: list[torch.Tensor]):
        """(host numbers, candidate primal, the ray with the largest Farkas value, None) at T(z); one host copy."""
        p, kn, st = self.prob, self.kernels, run.st
        y = st.y_t
        bound = kn.lagrangian_bound(y)
        # into X (the loop's Newton steps may leave a block sum off): x_t is nearly there, so Newton steps from a zero
        # threshold where the repair finishes the block sums (simplex and box blocks), else the exact projection
        x = kn.project(st.x_t, torch.zeros_like(st.newton), 2 * NEWTON_STEPS)
        ax = p.comm.sum(kn.A_times(x))
        raw = torch.maximum(kn.row_violation(ax), kn.block_violation(x))
        if p.repairable:
            x = kn.repair(x, ax)
            ax = p.comm.sum(kn.A_times(x))
        infeasibility = torch.maximum(kn.row_violation(ax), kn.block_violation(x))
        farkas = kn.farkas_tests(rays, infeasibility)
        objective = p.comm.sum(kn.dot(p.c, x))
        stats = torch.stack([
            bound, objective, infeasibility, raw,
            (y.abs() * kn.row_scale * kn.violation(ax)).sum(),  # |y|^T violation, scaled by 1 / sigma
            *self.restart_measures(st), *farkas,
        ]).double().cpu().numpy()
        best_ray = int(np.argmax(stats[9:]))
        off = p.sf.offset
        check = PdhgCheck(bound=p.sigma * stats[0] + off, objective=p.sigma * stats[1] + off,
                          infeasibility=stats[2], raw_infeasibility=stats[3], dual_violation=p.sigma * stats[4],
                          residual=stats[5], first=stats[6], moved_x=stats[7], moved_y=stats[8],
                          farkas=stats[9 + best_ray])
        return check, x, rays[best_ray], None

    def restart(self, run: PdhgRun, residual: float, first: float, moved_x: float, moved_y: float) -> None:
        """Restart from T(z) when the residual decayed enough (cuPDLPx's three criteria); then smooth omega."""
        decayed = residual <= SUFFICIENT_DECAY * first
        stalled = residual <= NECESSARY_DECAY * first and residual > run.previous
        long = run.it - run.cycle_start >= ARTIFICIAL_SHARE * (run.it - run.first_it)
        if not (decayed or stalled or long):
            run.previous = residual
            return
        if moved_x > 1e-10 and moved_y > 1e-10:
            s = WEIGHT_SMOOTHING
            run.omega = math.exp(s * math.log(moved_y / moved_x) + (1.0 - s) * math.log(run.omega))
        st = run.st
        run.st = PdhgState.at(st.x_t, st.y_t, st.ax_t, st.newton)
        run.cycle_start, run.previous, run.restarts = run.it, math.inf, run.restarts + 1

    # ------------------------------------------------------------------ the method
    def initial_weight(self) -> float:
        """omega0 = ||c|| / ||b|| (scaled units, b the finite row sides); 1 where either is 0."""
        p = self.prob
        side = torch.maximum(torch.where(torch.isfinite(p.row_lower), p.row_lower.abs(), 0.0),
                             torch.where(torch.isfinite(p.row_upper), p.row_upper.abs(), 0.0))
        c_norm = math.sqrt(float(p.comm.sum(p.c.pow(2).sum())))
        b_norm = float(side.norm())
        return c_norm / b_norm if c_norm > 0 and b_norm > 0 else 1.0

    def start(self, y0: np.ndarray | None) -> PdhgRun:
        """y = y0 (in the domain) or 0; x = P_X(0) or, warm, P_X(-(c + A^T y0) / WARM_GAMMA): the minimizer of the
        ridge-regularized Lagrangian at y0 (x = P_X(0) halved the iterations a warm start saved on a revenue-floor
        model)."""
        p, kn = self.prob, self.kernels
        y = torch.zeros(p.m, dtype=p.dtype, device=p.device) if y0 is None else \
            kn.to_domain(torch.as_tensor(y0, dtype=p.dtype, device=p.device))
        v = torch.zeros(p.n, dtype=p.dtype, device=p.device) if y0 is None else \
            p.At.matvec(y, add=p.c).mul_(-1.0 / WARM_GAMMA)
        x = kn.exact_projection(v)
        newton = torch.zeros(p.sf.n_blocks, dtype=p.dtype, device=p.device)
        st = PdhgState.at(x, y, p.comm.sum(kn.A_times(x)), newton)
        return PdhgRun(st=st, omega=self.initial_weight(), **RunState.rays_at(y))

    def take_over(self, out: dict) -> PdhgRun:
        """A run that continues a dual ascent's ``out`` (its solve's dict): warm-started at its last duals, its
        iterations, seconds, history and best bound carried on."""
        run = self.start(out["y"])
        run.it = run.anchor_it = run.first_it = run.cycle_start = out["iterations"]
        run.elapsed, run.history = out["elapsed"], list(out["history"])
        run.best_bound, run.best_y = out["bound"], out["y_bound"]
        return run

    def solve(self, y0: np.ndarray | None = None, gamma0: float | None = None, verify=None,
              interrupt: Interrupt | None = None, after: dict | None = None):
        """Halpern PDHG cycles until the stopping rule holds (termination.py), a limit, a Farkas ray or Ctrl-C.

        ``gamma0`` is ignored (no regularization). ``verify(x, y)``: the float64 recheck of a primal the working
        precision calls optimal (the solve goes on if it fails); ``interrupt``: the deferred Ctrl-C flag, read at
        every check; ``after``: a dual ascent's result to take over from (``take_over``).
        """
        p, o = self.prob, self.opts
        if o.resume is not None:
            run = checkpoint.load_state(PdhgRun, o.resume, self.store, o, p)
        else:
            run = self.start(y0) if after is None else self.take_over(after)
        out = check_loop.solve(self, run, verify, interrupt)
        out["gamma"] = None
        return out

    def advance(self, run: PdhgRun, k: int) -> None:
        """k Halpern PDHG steps from the run's state (the loop's chunk, check_loop.py)."""
        run.st = self.iterate(run.st, run.omega, k)

    def chunk(self, run: PdhgRun) -> int:
        """Steps before the next check: ``check_every``."""
        return self.opts.check_every

    @staticmethod
    def duals(run: PdhgRun) -> torch.Tensor:
        """The duals of T(z), in the dual domain."""
        return run.st.y_t

    def certifies(self, run: PdhgRun, interrupt: Interrupt | None) -> bool:
        """Whether the check at ``run.it`` certifies (bound, candidate, repair, Farkas tests, the stopping rule) or only
        decides the restart: the first check since this method began and every ``checks_per_certificate``-th after
        it, and one where Ctrl-C was pressed. By iteration counts alone, so that a run resumed from any checkpoint
        certifies where the uninterrupted one did (a max_iter stop between certificates returns the last one)."""
        if self.checks_per_certificate == 1 or (interrupt is not None and interrupt.requested):
            return True
        check = -(-(run.it - run.first_it) // self.opts.check_every)  # 1, 2, ... since this method began
        return (check - 1) % self.checks_per_certificate == 0

    def carry_on(self, run: PdhgRun, check: PdhgCheck, extra: None) -> None:
        """Between checks of a run that goes on: a restart where the residual says so."""
        self.restart(run, check.residual, check.first, check.moved_x, check.moved_y)

    def carry_on_uncertified(self, run: PdhgRun) -> None:
        """A check without a certificate: the restart decision from ``restart_measures`` (one host copy)."""
        self.restart(run, *torch.stack(self.restart_measures(run.st)).tolist())

    def restart_measures(self, st: PdhgState) -> list[torch.Tensor]:
        """What ``restart`` reads, as 0-d tensors: the residual at the chunk's last iteration and at the cycle's
        first, ||x_t - x0|| and ||y_t - y0|| (the move since the anchor, for the primal weight)."""
        moved_x = self.prob.comm.sum(self.kernels.dot(st.x_t - st.x0, st.x_t - st.x0)).sqrt()
        return [st.last, st.first, moved_x, (st.y_t - st.y0).norm()]

    def record(self, run: PdhgRun, check: PdhgCheck, x: torch.Tensor, elapsed: float,
               interrupt: Interrupt | None) -> Status | None:
        """Keep the best bound and primal (StoppingRule.better), log the check, and say whether the solve ends."""
        rule = StoppingRule.of(self.opts.tol, self.prob.dtype)
        keep_best(run, check, x, run.st.y_t, rule)
        rec = dict(iteration=run.it, gamma=None, dual=check.bound, bound=run.best_bound, objective=run.best_obj,
                   candidate_objective=check.objective, infeasibility=run.best_cert.infeasibility,
                   raw_infeasibility=check.raw_infeasibility, stationarity=check.residual,
                   gap=relative_gap(run.best_obj, run.best_bound), step=self.eta / run.omega, time=elapsed)
        run.history.append(rec)
        return verdict(run, check, rec, self.opts, rule, self.prob.comm, self.prob.dtype, elapsed, interrupt)
