"""Per-iteration cost of both `dualip` methods on the family suite's models against the SpMV pair; prints JSON.

    python benchmarks/iteration_cost.py --sizes 1e6 --repeat 15 --out benchmarks/results/iteration_cost_cpu_1e6.json

Issue 20's target: an iteration at 1e6-1e7 nonzeros within 2x the SpMV pair A x + A^T y on the CPU, for every
block kind and both methods. Per family of benchmarks/families.py (seed 0, about --sizes coupling nonzeros), with
the engine ``--engine`` resolves to and torch pinned to --threads threads:

- ``dual_ascent_ms``: one step of DualAscentSolver.iterate (products, projection, momentum), from the state after
  --warm steps at gamma 0.03;
- ``pdhg_ms``: one step of PdhgSolver.iterate (primal step with exact thresholds, A x+, dual prox, Halpern
  combination), from the state after --warm steps;
- ``spmv_pair_ms``: the problem's own products A x then A^T y (torch sparse CSR, MKL, in the fast storage), the
  same vectors' sizes, no projection;
- the ratios of the two methods to the pair. Each figure is the median of --repeat timings of --iterations
  steps, the three taking turns within each repeat. Checks are not counted (see family_suite.py for whole solves).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from dualip_model.backends.dualip.backend import _scaled_problem
from dualip_model.backends.dualip.options import DualipOptions, resolve_engine
from dualip_model.backends.dualip.pdhg import PdhgSolver
from dualip_model.backends.dualip.solver import AscentState, DualAscentSolver
from families import FAMILIES
from gpu_scale import emit, source_version

TARGET = 2.0  # the bound on an iteration over the SpMV pair
GAMMA = 3e-2  # the dual ascent's first stage


def median_ms(works, count: int, repeat: int) -> list[float]:
    """Per work, the median over ``repeat`` timings of the milliseconds of ``work()`` per ``count``; the works take
    turns within each repeat, so that a slower spell of a shared machine weighs on all of them alike."""
    times = [[] for _ in works]
    for _ in range(repeat):
        for work, spent in zip(works, times):
            start = time.perf_counter()
            work()
            spent.append((time.perf_counter() - start) * 1e3 / count)
    return [statistics.median(spent) for spent in times]


def measure(family: str, size: int, args) -> dict:
    sf = FAMILIES[family](size, 0).compile()
    opts = DualipOptions(engine=args.engine)
    prob, _ = _scaled_problem(sf, opts)
    engine = resolve_engine(opts.engine, prob.device, opts.matrix_dtype, 1, prob.m, prob.n, prob.n)
    k = args.iterations

    ascent = DualAscentSolver(prob, opts)
    step = GAMMA / prob.norm_sq
    state = AscentState.start(torch.zeros(prob.m, dtype=prob.dtype), sf.n_blocks, prob.norm_sq / GAMMA)
    state = ascent.iterate(state, GAMMA, step, args.warm)

    pdhg = PdhgSolver(prob, opts)
    run = pdhg.start(None)
    pdhg_state = pdhg.iterate(run.st, run.omega, args.warm)

    x, y = pdhg_state.x_t.clone(), pdhg_state.y_t.clone()

    def pair():
        for _ in range(k):
            prob.A.matvec(x)
            prob.At.matvec(y)

    dual_ascent, pdhg_ms, pair_ms = median_ms([lambda: ascent.iterate(state, GAMMA, step, k),
                                               lambda: pdhg.iterate(pdhg_state, run.omega, k), pair], k, args.repeat)
    kinds = sorted({int(v) for v in sf.block_kind})
    return dict(family=family, nnz=sf.nnz, rows=sf.n_rows, columns=sf.n_cols, blocks=sf.n_blocks,
                block_kinds=kinds, engine=engine, dual_ascent_ms=round(dual_ascent, 3), pdhg_ms=round(pdhg_ms, 3),
                spmv_pair_ms=round(pair_ms, 3), dual_ascent_over_pair=round(dual_ascent / pair_ms, 2),
                pdhg_over_pair=round(pdhg_ms / pair_ms, 2),
                within_target=dict(dual_ascent=dual_ascent <= TARGET * pair_ms, pdhg=pdhg_ms <= TARGET * pair_ms))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}")
    ap.add_argument("--sizes", default="1e6", help="comma-separated target coupling nonzero counts")
    ap.add_argument("--engine", default="auto", help="DualipOptions.engine")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warm", type=int, default=50, help="steps before timing")
    ap.add_argument("--iterations", type=int, default=10, help="steps per timing")
    ap.add_argument("--repeat", type=int, default=7, help="timings per figure (the median is reported)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = [measure(family, int(float(size)), args)
            for size in args.sizes.split(",") for family in args.families.split(",")]
    report = dict(benchmark="iteration_cost", machine=platform.machine(), cpus=os.cpu_count(), threads=args.threads,
                  torch=torch.__version__, source=source_version(), load_average=os.getloadavg(),
                  settings=dict(engine=args.engine, warm=args.warm, iterations=args.iterations, repeat=args.repeat,
                                target=f"iteration <= {TARGET} x the SpMV pair"),
                  runs=runs)
    emit(report, args.out)


if __name__ == "__main__":
    main()
