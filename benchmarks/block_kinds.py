"""Per-iteration cost of the `dualip` ascent by block kind on one model shape, side by side in one process; prints JSON.

    python benchmarks/block_kinds.py                          # 1e5 and 1e6 nonzeros, one thread, median of 3
    python benchmarks/block_kinds.py --sizes 1e5 --layouts sorted

Model ("guaranteed delivery", issue 20): E edges between users and campaigns (each edge's user and campaign
uniform: a Poisson(--edges-per-user) degree; repeated pairs dropped), max sum v_e x_e with a floor and a cap row
per campaign (sum_e x_e >= f_c, sum_e x_e <= k_c), so A holds 2 E nonzeros. Layout "sorted" numbers the users
by degree, so that the compiled blocks come sorted by size and every kind gets the grouped layout (dense
per-size reductions, block_order.py, where there are few sizes for the columns: at 1e6 nonzeros, not at 1e5);
with "random" only the simplex and box variants get it (the solver sorts only those). Three variants differ
only in the blocks:

- "simplex": 0 <= x, sum over a user's edges <= 1 (SIMPLEX_LE blocks),
- "boxcut":  0 <= x <= 0.5, sum over a user's edges <= 1 (BOXCUT_LE blocks: the delivery family),
- "box":     0 <= x <= 0.5, no user rows (one BOX block);

and "boxcut_exact", the box-cut model with the iteration's projection done as before issue 20 (the exact
sort-based projection every iteration, ``ExactIterationKernels``).

Per variant and size: the milliseconds of one iteration of DualAscentSolver.iterate (the two products and the
projection, after --warm iterations from y = 0), of the projection alone (``primal`` at the same point, the
iteration's Newton steps) and of the exact sort-based projection (``projections.project``, what the checks
run), each the median of --repeat timings of --iterations iterations, the variants timed in turn, with torch
pinned to --threads threads. ``boxcut_over_simplex`` and ``box_over_simplex``: the median of the rounds'
ratios of iteration times (the issue's target: box-cut at most 1.5x). The machine's
load average is reported: timings on a shared machine are noisy, compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from dualip_model.backends.dualip.backend import _scaled_problem
from dualip_model.backends.dualip.kernels import Kernels
from dualip_model.backends.dualip.options import DualipOptions
from dualip_model.backends.dualip.projections import BlockStructure, project
from dualip_model.backends.dualip.solver import AscentState, DualAscentSolver
from dualip_model.model import Model
from gpu_scale import emit  # benchmarks/ is the script's folder, on sys.path

VARIANTS = ("simplex", "boxcut", "box")
EDGE_UPPER = 0.5  # the delivery family's per-edge cap


def delivery_model(n_edges: int, variant: str, edges_per_user: int, layout: str, seed: int) -> Model:
    """The delivery LP with about ``n_edges`` edges (2 per nonzero of A), blocks as ``variant`` says."""
    rng = np.random.default_rng(seed)
    n_users = max(1, n_edges // edges_per_user)
    n_camps = max(1, n_edges // 500)
    user = rng.integers(0, n_users, size=n_edges)
    camp = rng.integers(0, n_camps, size=n_edges)
    keys = np.unique(user * n_camps + camp)  # one edge per (user, campaign) pair
    user, camp = keys // n_camps, keys % n_camps
    if layout == "sorted":  # user i is the i-th by degree: its block is as large as any before it
        rank = np.empty(n_users, dtype=np.int64)
        rank[np.argsort(np.bincount(user, minlength=n_users), kind="stable")] = np.arange(n_users)
        user = rank[user]
    value = rng.lognormal(0.0, 1.0, size=keys.shape[0])
    reach = np.bincount(camp, minlength=n_camps).astype(np.float64) * EDGE_UPPER
    floor = 0.2 * reach * rng.uniform(0.5, 1.0, size=n_camps)
    cap = 0.6 * reach * rng.uniform(0.5, 1.0, size=n_camps)
    m = Model(f"delivery_{variant}")
    users = m.entities("user", n_users)
    camps = m.entities("campaign", n_camps)
    edges = m.edges("eligible", users, camps, src=user, dst=camp)
    x = m.variable("x", over=edges, lower=0.0, upper=np.inf if variant == "simplex" else EDGE_UPPER)
    m.maximize((value * x).sum())
    if variant != "box":
        m.subject_to(x.sum(by=users) <= 1.0, name="per_user", block=True)
    m.subject_to(x.sum(by=camps) >= floor, name="floor", block=False)
    m.subject_to(x.sum(by=camps) <= cap, name="cap", block=False)
    return m


def ms_per(work, count: int) -> float:
    """Milliseconds of one ``work()`` call, per ``count``."""
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1e3 / count


class ExactIterationKernels(Kernels):
    """The torch kernels with the former box-cut iteration: the exact sort-based projection at every step."""

    def primal(self, v, tau, steps, overwrite=False):
        return project(v, self.bs), tau


class Variant:
    """One variant's solver, warmed up: an ascent state after --warm iterations and the projection point there."""

    def __init__(self, sf, args, kernels=None):
        self.opts = DualipOptions(dtype=args.dtype, engine=args.engine)
        prob, _ = _scaled_problem(sf, self.opts)
        self.solver = DualAscentSolver(prob, self.opts)
        if kernels is not None:
            self.solver.kernels = kernels(prob, self.opts)
        self.gamma = 3e-2
        self.step = self.gamma / prob.norm_sq
        st = AscentState.start(torch.zeros(prob.m, dtype=prob.dtype), sf.n_blocks, prob.norm_sq / self.gamma)
        self.st = self.solver.iterate(st, self.gamma, self.step, args.warm)
        self.v = prob.At.matvec(self.st.w, add=prob.c).mul_(-1.0 / self.gamma)  # the projection point at w
        self.bs = BlockStructure.from_standard_form(prob.sf, prob.device, prob.dtype)
        self.info = {"n_cols": int(sf.n_cols), "n_rows": int(sf.n_rows), "n_blocks": int(sf.n_blocks),
                     "nnz": int(sf.nnz), "block_kinds": sorted({int(k) for k in sf.block_kind}),
                     "fast_projection": bool(prob.fast_projection), "grouped_blocks": prob.blocks.groups is not None}

    def timings(self, k: int) -> dict:
        """One timing of k iterations, k warm projections (``primal``, the iteration's Newton steps; the copy of
        the point they overwrite subtracted) and k exact ones, in ms each."""
        s, v = self.solver, self.v
        copies = ms_per(lambda: [v.clone() for _ in range(k)], k)
        warm = ms_per(lambda: [s.kernels.primal(v.clone(), self.st.tau, self.opts.newton_steps, overwrite=True)
                               for _ in range(k)], k)
        return {"iteration_ms": ms_per(lambda: s.iterate(self.st, self.gamma, self.step, k), k),
                "projection_ms": max(warm - copies, 0.0),
                "exact_projection_ms": ms_per(lambda: [project(v, self.bs) for _ in range(k)], k)}


def measure(size: float, layout: str, args) -> dict:
    """The three variants at one size and layout, timed in turn --repeat times (so that a change of the machine's
    load hits all of them alike); medians, and the per-round ratios to simplex."""
    models = {name: delivery_model(int(size) // 2, name, args.edges_per_user, layout, args.seed).compile()
              for name in VARIANTS}
    variants = {name: Variant(sf, args) for name, sf in models.items()}
    variants["boxcut_exact"] = Variant(models["boxcut"], args, ExactIterationKernels)
    rounds = [{name: variant.timings(args.iterations) for name, variant in variants.items()}
              for _ in range(args.repeat)]
    run = {"layout": layout, "nnz_target": size}
    for name, variant in variants.items():
        run[name] = {**variant.info, **{key: statistics.median(r[name][key] for r in rounds)
                                        for key in rounds[0][name]}}
    for name in ("boxcut", "box", "boxcut_exact"):
        ratios = [r[name]["iteration_ms"] / r["simplex"]["iteration_ms"] for r in rounds]
        run[f"{name}_over_simplex"] = statistics.median(ratios)
        run[f"{name}_over_simplex_rounds"] = ratios
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6", help="nonzeros of A (2 per edge), comma-separated")
    parser.add_argument("--edges-per-user", type=int, default=5)
    parser.add_argument("--layouts", default="random,sorted", help="comma-separated: random, sorted")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--engine", choices=["torch", "compact"], default="torch", help="DualipOptions.engine")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warm", type=int, default=50, help="iterations from y = 0 before timing")
    parser.add_argument("--iterations", type=int, default=20, help="iterations per timing")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = [measure(float(size), layout, args) for layout in args.layouts.split(",") for size in args.sizes.split(",")]
    report = {"benchmark": "block_kinds", "machine": platform.machine(), "cpus": os.cpu_count(),
              "threads": args.threads, "load_average": os.getloadavg(), "torch": torch.__version__,
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "runs": runs}
    emit(report, args.out)


if __name__ == "__main__":
    main()
