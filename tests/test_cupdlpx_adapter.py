"""The cupdlpx adapter against a stand-in ``cupdlpx`` module that answers like cuPDLPx, solved by scipy's HiGHS.

The real package needs an NVIDIA GPU; where it is installed the conformance suite (test_parity.py) runs
the adapter for real. Here the stand-in checks what the adapter owns: the flat LP it builds, options,
status mapping, and the split of row duals into coupling-row and block duals (same signs as HiGHS).
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
from scipy.optimize import linprog

import dualip_model as dm
from dualip_model.synthetic import matching_model, synthetic_matching
from fuzz_models import allocation_model

PDLP = types.SimpleNamespace(MINIMIZE=1, MAXIMIZE=-1, OPTIMAL=0, PRIMAL_INFEASIBLE=1, DUAL_INFEASIBLE=2,
                             TIME_LIMIT=3, ITERATION_LIMIT=4, INFEASIBLE_OR_UNBOUNDED=5, FEAS_POLISH_SUCCESS=6)


class StandInModel:
    """min c^T x + c0 s.t. l <= A x <= u, lb <= x <= ub, with cuPDLPx's attribute names."""

    seen_params: dict = {}

    def __init__(self, objective_vector, constraint_matrix, constraint_lower_bound, constraint_upper_bound,
                 variable_lower_bound, variable_upper_bound, objective_constant=0.0):
        self.c, self.A = objective_vector, constraint_matrix.tocsr()
        self.l, self.u = constraint_lower_bound, constraint_upper_bound
        self.bounds = list(zip(variable_lower_bound, variable_upper_bound))
        self.c0 = objective_constant
        self.ModelSense = PDLP.MINIMIZE

    def setParams(self, **params):
        StandInModel.seen_params = params

    def optimize(self):
        eq = self.l == self.u
        up, lo = ~eq & np.isfinite(self.u), ~eq & np.isfinite(self.l)
        A_ub = np.vstack([self.A[up].toarray(), -self.A[lo].toarray()])
        b_ub = np.concatenate([self.u[up], -self.l[lo]])
        res = linprog(self.c, A_ub=A_ub if len(b_ub) else None, b_ub=b_ub if len(b_ub) else None,
                      A_eq=self.A[eq].toarray() if eq.any() else None, b_eq=self.u[eq] if eq.any() else None,
                      bounds=self.bounds, method="highs")
        codes = {0: PDLP.OPTIMAL, 1: PDLP.ITERATION_LIMIT, 2: PDLP.PRIMAL_INFEASIBLE, 3: PDLP.DUAL_INFEASIBLE}
        self.Status = codes[res.status]
        self.StatusName = res.message
        self.IterCount = int(res.nit)
        self.X = res.x
        self.Pi = None
        if res.status == 0:
            self.ObjVal = res.fun + self.c0
            self.DualObj = self.ObjVal
            pi = np.zeros(self.A.shape[0])
            marg = res.ineqlin.marginals if len(b_ub) else np.zeros(0)
            pi[up] += marg[: up.sum()]
            pi[lo] -= marg[up.sum():]
            if eq.any():
                pi[eq] = res.eqlin.marginals
            self.Pi = pi
        return self


@pytest.fixture
def cupdlpx_backend(monkeypatch):
    fake = types.ModuleType("cupdlpx")
    fake.Model, fake.PDLP = StandInModel, PDLP
    monkeypatch.setitem(sys.modules, "cupdlpx", fake)
    monkeypatch.setitem(sys.modules, "cupdlpx.PDLP", PDLP)
    monkeypatch.delitem(sys.modules, "dualip_model.backends.cupdlpx.backend", raising=False)
    monkeypatch.delitem(sys.modules, "dualip_model.backends.cupdlpx", raising=False)
    module = importlib.import_module("dualip_model.backends.cupdlpx")
    dm.registry.register("cupdlpx_standin", module.CupdlpxBackend)
    yield "cupdlpx_standin"
    dm.registry._registered.pop("cupdlpx_standin", None)
    dm.registry._instances.pop("cupdlpx_standin", None)
    for name in ("dualip_model.backends.cupdlpx.backend", "dualip_model.backends.cupdlpx"):
        sys.modules.pop(name, None)  # bound to the stand-in: later imports must see the real (absent) package


def test_without_the_package_the_backend_says_what_to_install():
    if importlib.util.find_spec("cupdlpx") is not None:
        pytest.skip("cupdlpx is installed here")
    with pytest.raises(ImportError, match="pip install 'dualip_model\\[cupdlpx\\]'"):
        dm.registry.get("cupdlpx")


def test_matching_objective_and_duals_match_highs(cupdlpx_backend):
    m = matching_model(synthetic_matching(30, 6, 0.4, seed=1))
    ref = m.solve("highs")
    res = m.solve(cupdlpx_backend, tol=1e-6, time_limit=10.0)
    assert res.status == dm.Status.OPTIMAL
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert np.allclose(res.dual("budget").to_numpy(), ref.dual("budget").to_numpy(), atol=1e-7)
    assert np.allclose(res.dual("one_per_user").to_numpy(), ref.dual("one_per_user").to_numpy(), atol=1e-7)
    assert StandInModel.seen_params["OptimalityTol"] == 1e-6 and StandInModel.seen_params["TimeLimit"] == 10.0


def test_equality_blocks_and_ranges(cupdlpx_backend):
    m = allocation_model()
    ref, res = m.solve("highs"), m.solve(cupdlpx_backend)
    assert res.status == dm.Status.OPTIMAL and res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert np.allclose(res.dual("assign").to_numpy(), ref.dual("assign").to_numpy(), atol=1e-7)


def test_infeasible_and_unbounded_statuses(cupdlpx_backend):
    m = dm.Model("infeasible")
    users = m.entities("user", 2)
    x = m.variable("x", over=users, upper=1.0)
    m.minimize(x.sum())
    m.subject_to(x.sum() >= 5.0, name="too_much")
    assert m.solve(cupdlpx_backend).status == dm.Status.INFEASIBLE
    u = dm.Model("unbounded")
    users = u.entities("user", 2)
    y = u.variable("y", over=users, lower=-np.inf)
    u.minimize(y.sum())
    u.subject_to(y.sum() <= 1.0, name="cap")
    assert u.solve(cupdlpx_backend).status == dm.Status.UNBOUNDED


@pytest.mark.parametrize("field, value", [("tol", 0), ("tol", "1e-4"), ("time_limit", -1.0), ("max_iter", 0),
                                          ("presolve", "yes")])
def test_options_are_validated(cupdlpx_backend, field, value):
    options = dm.registry.get(cupdlpx_backend).Options
    with pytest.raises(dm.ModelError, match=f"CupdlpxOptions.{field}"):
        options(**{field: value})
