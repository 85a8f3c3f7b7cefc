"""HiGHS model status -> dualip_model Status."""

from __future__ import annotations

from dualip_model.status import Status


def map_status(model_status) -> Status:
    import highspy

    ms = highspy.HighsModelStatus
    table = {
        ms.kOptimal: Status.OPTIMAL,
        ms.kInfeasible: Status.INFEASIBLE,
        ms.kUnbounded: Status.UNBOUNDED,
        ms.kUnboundedOrInfeasible: Status.INFEASIBLE_OR_UNBOUNDED,
        ms.kTimeLimit: Status.TIME_LIMIT,
        ms.kIterationLimit: Status.ITERATION_LIMIT,
        ms.kInterrupt: Status.INTERRUPTED,
    }
    return table.get(model_status, Status.ERROR)
