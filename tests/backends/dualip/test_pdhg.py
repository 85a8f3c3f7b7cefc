"""algorithm="pdhg" of the dualip backend (backends/dualip/pdhg.py): restarted Halpern PDHG over the block polytopes.

Parity with HiGHS on the conformance suite's small models, the dual iterate's domain, valid bounds, the OPTIMAL
contract, infeasibility rays, stops (callback, Ctrl-C, limits), warm starts, the checkpoint refusal, and
convergence on the five benchmark families and the revenue-floor models within iteration caps.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dualip_model as dm
from dualip_model.backends.dualip import pdhg as pdhg_module
from dualip_model.backends.dualip.backend import _scaled_problem
from dualip_model.backends.dualip.fused_cpu import compiler_found
from dualip_model.backends.dualip.kernels import Kernels
from dualip_model.backends.dualip.options import DualipOptions
from dualip_model.synthetic import matching_model, synthetic_matching
from fuzz_models import ALL_FAMILIES, DUALIP_DEVICE, Config, run, specs
from test_parity import (SCALINGS, STATUS_CASES, allocation, assignment_short_of_capacity, box_lp, check_optimal,
                         mildly_infeasible_matching, scaled_matching, small_matching)
from test_termination import assert_contract, revenue_floor_model

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from families import FAMILIES  # noqa: E402

PDHG = dict(algorithm="pdhg")


def pdhg_solve(model, **options):
    return model.solve("dualip", **{"tol": 1e-4, "max_iter": 20_000, "dtype": "float64", **PDHG, **options})


# ----------------------------------------------------------------------------------------- parity with HiGHS
# Entries spread over 1e-6..1e6 within a row: after row scaling most of a row's entries are ~1e-6 of its norm, and
# PDHG (one step 1 / ||A|| for all) crawls on them: not OPTIMAL in 20,000 iterations (the dual ascent's flat-row
# search handles them; PDLP column-scales, which the simplex blocks do not allow). 1e-3..1e3 passes (7,850 it).
BEYOND = {"entries 1e-6..1e6", "all 1e-6..1e6"}
PARITY = {
    **{f"matching {s}": (lambda s=s: small_matching(s)) for s in range(4)},
    **{f"allocation {s}": (lambda s=s: allocation(s)) for s in range(3)},
    **{f"box_lp {s}": (lambda s=s: box_lp(s)) for s in range(3)},
    **{f"scaled {name}": (lambda name=name: scaled_matching(0, **SCALINGS[name])) for name in SCALINGS
       if name not in BEYOND},
}


@pytest.mark.parametrize("case", list(PARITY))
def test_pdhg_agrees_with_highs(case):
    """OPTIMAL, objective within 2e-4 of HiGHS, the bound on the right side of the optimum (check_optimal), and the
    contract: every row within tol and 0 <= gap <= tol."""
    model = PARITY[case]()
    res, _ = check_optimal(model, "dualip", **PDHG)
    assert_contract(res, 1e-4)
    assert res.raw.history[-1]["gamma"] is None and "gamma" not in res.message


def test_pdhg_reads_a_flat_matching_back_from_mps(tmp_path):
    path = tmp_path / "matching.mps"
    dm.write_model(small_matching(1), path)
    check_optimal(dm.read_model(path), "dualip", **PDHG)


@pytest.mark.parametrize("options", [dict(dtype="float32", tol=1e-3), dict(engine="compact"),
                                     dict(dtype="float32", engine="compact", tol=1e-3)],
                         ids=["float32", "compact", "float32 compact"])
@pytest.mark.parametrize("case", ["matching 0", "allocation 0", "box_lp 0"])
def test_pdhg_in_other_precisions_and_storages(case, options):
    model = PARITY[case]()
    tol = options.get("tol", 1e-4)
    res, _ = check_optimal(model, "dualip", Config(options={}, objective_rtol=2 * tol), **PDHG, **options)
    assert_contract(res, tol)


# ----------------------------------------------------------------------------------------- the dual domain
ENGINES = ["torch"] + (["fused_cpu"] if compiler_found() and DUALIP_DEVICE == "cpu" else [])


@pytest.mark.parametrize("engine", ENGINES)
def test_dual_step_keeps_y_in_its_domain_exactly(engine):
    """y+ = sigma (z - clip(z, l, u)) is >= 0 on upper-only rows and <= 0 on lower-only rows, bit for bit (the form
    v - sigma clip(v / sigma, l, u) gave y = -1e-17 on upper-only rows, and the bound -inf); the torch and C++
    kernels give the same step, Halpern combination and residual sums to rounding."""
    m = dm.Model("sides")
    s = m.entities("s", 6)
    x = m.variable("x", over=s, lower=0.0, upper=1.0)
    m.minimize(x.sum())
    r = m.entities("r", 400)
    rng = np.random.default_rng(0)
    lo = np.where(np.arange(400) % 2 == 0, -np.inf, -3.0)
    hi = np.where(np.arange(400) % 2 == 0, 3.0, np.inf)
    m.subject_to(dm.matmul(rng.uniform(0.1, 1.0, (400, 6)), x, r).between(lo, hi), name="rows")
    options = DualipOptions(engine=engine, **PDHG)
    solver = pdhg_module.PdhgSolver(_scaled_problem(m.compile(), options)[0], options)
    p, torch_kernels = solver.prob, Kernels(solver.prob, options)
    for sigma in (1e-3, 0.37, 3.0, 1e3):
        y, y0 = (solver.kernels.to_domain(torch.tensor(rng.normal(size=400))) for _ in range(2))
        ax, ax_t, ax0 = (torch.tensor(rng.normal(size=400)) for _ in range(3))
        out = solver.kernels.pdhg_dual(y, ax, ax_t, y0, ax0, sigma, (1.4, 0.5, 0.1), True)
        y_new = out[0]
        assert (y_new[torch.isinf(p.row_lower)] >= 0).all() and (y_new[torch.isinf(p.row_upper)] <= 0).all()
        assert torch.isfinite(solver.kernels.support(y_new))
        for got, expect in zip(out, torch_kernels.pdhg_dual(y, ax, ax_t, y0, ax0, sigma, (1.4, 0.5, 0.1), True)):
            assert (got - expect).abs().max() <= 1e-12 * (float(expect.abs().max()) + 1.0)


def test_every_dual_iterate_lies_in_the_domain_and_every_bound_is_finite():
    m = allocation(1)  # == blocks, a >= row and <= rows
    seen = []
    pdhg_solve(m, check_every=5, callback=lambda rec: seen.append(rec["dual"]))
    assert seen and np.isfinite(seen).all()


# ----------------------------------------------------------------------------------------- bound and contract
@pytest.mark.parametrize("max_iter", [10, 50, 200])
def test_bound_is_valid_at_any_iteration_limit(max_iter):
    m = small_matching(5, users=200, items=20)
    ref = m.solve("highs")
    res = pdhg_solve(m, max_iter=max_iter, check_every=10)
    assert res.bound >= ref.objective - 1e-9 * abs(ref.objective)  # maximization: an upper bound
    if res.status != dm.Status.OPTIMAL:
        assert res.status == dm.Status.ITERATION_LIMIT


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_revenue_floor_reaches_optimal_within_the_contract(seed):
    m = revenue_floor_model(800, 40, 0.1, seed)
    ref = m.solve("highs")
    res = pdhg_solve(m, max_iter=3000)
    assert_contract(res, 1e-4)
    assert abs(res.objective - ref.objective) <= 2e-4 * abs(ref.objective)
    assert res.bound >= ref.objective - 1e-9 * abs(ref.objective)


def test_the_hardest_revenue_floor_seed_takes_a_few_thousand_iterations_at_most():
    """5,000 x 200 seed 5: the dual ascent needs 8,100 iterations (issue 18 item 2), PDHG 1,275."""
    m = revenue_floor_model(5000, 200, 0.02, 5)
    res = pdhg_solve(m, max_iter=2500)
    assert_contract(res, 1e-4)


# ----------------------------------------------------------------------------------------- infeasible models
INFEASIBLE = {name: build for name, (build, truth) in STATUS_CASES.items() if truth == dm.Status.INFEASIBLE
              and not name.startswith("netlib")}
INFEASIBLE.update(mildly_infeasible_matching=mildly_infeasible_matching,
                  assignment_short_of_capacity=assignment_short_of_capacity)


@pytest.mark.parametrize("case", list(INFEASIBLE))
def test_infeasible_model_is_reported_with_a_ray(case):
    res = pdhg_solve(INFEASIBLE[case](), max_iter=5000)
    assert res.status == dm.Status.INFEASIBLE, res.message
    assert res.raw.ray is not None and np.isfinite(res.raw.ray).all() and np.abs(res.raw.ray).max() > 0


# ----------------------------------------------------------------------------------------- stops and warm starts
def matching():
    return matching_model(synthetic_matching(300, 20, 0.3, seed=1))


def test_callback_stop_returns_interrupted_with_the_best_result():
    records = []
    res = pdhg_solve(matching(), tol=1e-9, check_every=10,
                     callback=lambda rec: records.append(rec) or len(records) == 3)
    assert res.status == dm.Status.INTERRUPTED and res.iterations == 30
    assert set(records[0]) == {"iteration", "gamma", "dual", "bound", "objective", "candidate_objective",
                               "infeasibility", "raw_infeasibility", "stationarity", "gap", "step", "time"}
    assert res.x_all is not None and np.isfinite(res.objective) and np.isfinite(res.bound)


def test_ctrl_c_returns_interrupted_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    res = pdhg_solve(matching(), tol=1e-9, check_every=10,
                     callback=lambda rec: os.kill(os.getpid(), signal.SIGINT) if rec["iteration"] == 20 else None)
    assert res.status == dm.Status.INTERRUPTED and res.iterations == 20
    assert res.x_all is not None and np.isfinite(res.bound)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("limit, status", [(dict(max_iter=40), dm.Status.ITERATION_LIMIT),
                                           (dict(time_limit=0.2), dm.Status.TIME_LIMIT)])
def test_limits(limit, status):
    res = pdhg_solve(matching_model(synthetic_matching(3000, 100, 0.1, seed=0)), tol=1e-9, **limit)
    assert res.status == status
    if "max_iter" in limit:
        assert res.iterations == 40
    else:
        assert res.raw.history[-1]["time"] <= 0.2 + 0.15


def test_warm_start_from_the_optimal_duals_finishes_sooner():
    m = revenue_floor_model(800, 40, 0.1, 1)
    cold = pdhg_solve(m)
    warm = pdhg_solve(m, warm_start=cold)
    assert cold.status == warm.status == dm.Status.OPTIMAL
    assert warm.iterations < 0.6 * cold.iterations, (warm.iterations, cold.iterations)
    # and the dual ascent takes a PDHG result too (its gamma is None: the default gamma is used)
    assert m.solve("dualip", warm_start=cold).status == dm.Status.OPTIMAL


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("stop_at", [50, 100])
def test_pdhg_resume_is_bitwise_identical_to_an_uninterrupted_solve(tmp_path, suffix, stop_at):
    """The PDHG run (iterate, anchor, image, primal weight, restart state, best candidate) is saved whole: a solve
    stopped at a check and resumed from its file ends bit for bit like one run, restarts included."""
    m = revenue_floor_model(800, 40, 0.1, 1)
    whole = pdhg_solve(m, check_every=25)
    assert whole.status == dm.Status.OPTIMAL and whole.iterations > 2 * stop_at
    path = tmp_path / f"run{suffix}"
    first = pdhg_solve(m, check_every=25, max_iter=stop_at, checkpoint=str(path))
    assert first.status == dm.Status.ITERATION_LIMIT and path.is_file()
    resumed = pdhg_solve(m, check_every=25, resume=str(path))
    assert resumed.status == whole.status and resumed.iterations == whole.iterations
    assert np.array_equal(resumed.x_all, whole.x_all) and np.array_equal(resumed.raw.row_dual, whole.raw.row_dual)
    assert resumed.objective == whole.objective and resumed.bound == whole.bound
    assert [h["step"] for h in resumed.history] == [h["step"] for h in whole.history]  # the same primal weights


def test_checks_certify_every_other_time_where_the_repair_runs_its_moves():
    """Floors or equality blocks (repair.repair_moves: a certificate costs about two chunks of iterations): the first
    check and every second one after it certify (history records), the ones between decide the restarts; without
    moves every check certifies. A max_iter stop between certificates keeps the last one."""
    floors = pdhg_solve(revenue_floor_model(800, 40, 0.1, 1), check_every=10)
    assert floors.status == dm.Status.OPTIMAL
    assert [h["iteration"] for h in floors.history] == list(range(10, floors.iterations + 1, 20))
    plain = pdhg_solve(small_matching(1), check_every=10)
    assert [h["iteration"] for h in plain.history] == list(range(10, plain.iterations + 1, 10))
    stopped = pdhg_solve(revenue_floor_model(800, 40, 0.1, 1), check_every=10, max_iter=40)
    assert stopped.status == dm.Status.ITERATION_LIMIT and stopped.history[-1]["iteration"] == 30
    assert stopped.x_all is not None and np.isfinite(stopped.bound)


def test_a_dual_ascent_checkpoint_does_not_resume_pdhg(tmp_path):
    path = tmp_path / "run.npz"
    small_matching(0).solve("dualip", algorithm="dual_ascent", dtype="float64", max_iter=20, checkpoint=str(path))
    with pytest.raises(dm.ModelError, match=r"other options: algorithm='dual_ascent' \(now 'pdhg'\)"):
        pdhg_solve(small_matching(0), resume=str(path))


def test_compiled_engine_is_refused_for_pdhg():
    with pytest.raises(dm.ModelError, match="engine 'compiled' fuses the dual ascent's iteration only"):
        pdhg_solve(small_matching(0), engine="compiled")


def test_algorithm_option_is_checked():
    with pytest.raises(dm.ModelError, match=r"DualipOptions\.algorithm: invalid value 'pdlp'; expected 'auto' or 'dual_ascent' or 'pdhg'"):
        DualipOptions(algorithm="pdlp")


# ----------------------------------------------------------------------------------------- families
# iterations to OPTIMAL at tol 1e-4 and 5,000 nonzeros, about twice those measured on seeds 0 and 1 (power-law 230-655,
# few users per item 330-1,230, multi-objective 1,005-1,105, assignment 180-230, guaranteed delivery 280-405)
FAMILY_CAPS = {"power_law": 1500, "few_users_per_item": 2500, "multi_objective": 2500, "assignment": 500,
               "guaranteed_delivery": 1000}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("family", list(FAMILY_CAPS))
def test_every_family_converges_within_its_cap(family, seed):
    m = FAMILIES[family](5000, seed)
    res = pdhg_solve(m, max_iter=FAMILY_CAPS[family])
    assert_contract(res, 1e-4)


# ----------------------------------------------------------------------------------------- sharded
@pytest.mark.parametrize("row", ["<=", ">="])
def test_two_ranks_give_the_single_process_answer(row, tmp_path):
    """The columns split over two gloo ranks: every sum over columns goes through the Comm, so both ranks take the
    same restarts and stop together at the certified optimum."""
    from test_distributed import _gather, _launch, matching_model as sharded_matching

    m = sharded_matching(global_row=row)
    sf = m.compile()
    sf.save(tmp_path / "model.npz")
    proc = _launch(2, {"models": {"m": str(tmp_path / "model.npz")}, "options": {"tol": 1e-4, **PDHG}},
                   tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    x, parts = _gather(tmp_path / "out", "m", 2, sf.n_cols)
    exact, whole = m.solve("highs"), pdhg_solve(m)
    assert str(parts[0]["status"]) == "optimal" and np.array_equal(parts[0]["y"], parts[1]["y"])
    assert abs(int(parts[0]["iterations"]) - whole.iterations) <= 100
    assert abs(float(parts[0]["objective"]) - exact.objective) <= 2e-4 * max(1.0, abs(exact.objective))
    assert float(parts[0]["bound"]) >= exact.objective - 1e-7 * abs(exact.objective)  # maximizing: an upper bound
    ax = sf.A @ x[sf.layout.column_order]
    rel = np.maximum(ax - sf.row_upper, sf.row_lower - ax) / (1 + np.abs(np.where(ax > sf.row_upper, sf.row_upper,
                                                                                 sf.row_lower)))
    assert np.nan_to_num(rel, nan=0.0).max() <= 1e-4


# ----------------------------------------------------------------------------------------- fuzzed models
@pytest.mark.parametrize("family", ALL_FAMILIES)
@given(data=st.data())
def test_fuzz_pdhg(family, data):
    """The fuzz suite's random models (tests/fuzz_models.py) with algorithm="pdhg": every claim checked against
    scipy's linprog (status, objective, bound, feasibility, guarantees)."""
    outcome = run(data.draw(specs(family), label="spec"), "dualip", extra=PDHG)
    unexpected = outcome.unexpected()
    assert not unexpected, "\n".join(map(str, unexpected))
