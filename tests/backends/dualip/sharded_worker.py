"""One rank of the sharded-solve tests (test_distributed.py, beside this file), started by torchrun or by hand.

    python -m torch.distributed.run --standalone --nproc-per-node W tests/backends/dualip/sharded_worker.py \
        JOB.json OUT_DIR

JOB.json: {"models": {name: saved standard form}, "options": DualipOptions fields, "iterates": k (also record
the duals after exactly k iterations), "die": [rank, check] (that rank exits at that check: a lost rank),
"rank_options": {rank: fields} (that rank's own options on top)}.
Each rank writes OUT_DIR/NAME-RANK.npz with its part of every answer, or OUT_DIR/error-RANK.txt with the
DistributedError it met.
"""

import json
import os
import sys

import numpy as np
import torch

from dualip_model.backends.dualip import solver as solver_module
from dualip_model.backends.dualip.distributed import init_process_group, solve_sharded
from dualip_model.errors import DistributedError


def die_at_check(check: int) -> None:
    """Make this process exit abruptly at its ``check``-th certificate check (a rank lost mid-solve)."""
    original = solver_module.DualAscentSolver.check
    calls = [0]

    def check_then_die(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == check:
            os._exit(17)
        return original(self, *args, **kwargs)

    solver_module.DualAscentSolver.check = check_then_die


def main(job_path: str, out: str) -> None:
    torch.set_num_threads(1)
    with open(job_path) as f:
        job = json.load(f)
    comm = init_process_group("gloo", timeout=60)
    if job.get("die") and job["die"][0] == comm.rank:
        die_at_check(job["die"][1])
    options = {**job["options"], **job.get("rank_options", {}).get(str(comm.rank), {})}
    try:
        for name, path in job["models"].items():
            part = {}
            if job.get("iterates"):
                fixed = solve_sharded(path, comm=comm, **{**options, "tol": 1e-14, "max_iter": job["iterates"],
                                                          "checkpoint": None, "resume": None})
                part["y_fixed"] = fixed.raw.state["y"]
            r = solve_sharded(path, comm=comm, **options)
            np.savez(os.path.join(out, f"{name}-{comm.rank}.npz"), x=r.x, columns=r.columns, y=r.raw.state["y"],
                     row_dual=r.row_dual, status=r.status.value, objective=r.objective, bound=r.bound,
                     iterations=r.iterations, world=r.world, **part)
    except DistributedError as exc:
        with open(os.path.join(out, f"error-{comm.rank}.txt"), "w") as f:
            f.write(str(exc))
        sys.stderr.flush()
        os._exit(3)  # as python -m dualip_model does: tearing down a group that lost a rank can abort (gloo)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
