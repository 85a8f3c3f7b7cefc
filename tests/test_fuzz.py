"""Property-based fuzzing: random small models of every family on every backend, against a dense reference.

The families (tests/fuzz_models.py) cover matching, equality (assignment) blocks with global rows, several
weighted objectives, equality rows, box and box-cut blocks, empty blocks (users without edges), zero rows
and columns, tied and zero costs (degenerate LPs), and infeasible and unbounded models. Each model is
solved by the backend (cheap first-order options: ITERATION_LIMIT is fine) and by scipy's linprog on the
same LP written densely; every claim of the result is checked (fuzz_models.disagreements). Examples per
test: 30 under the "ci" hypothesis profile, 250 under "slow" (``pytest --slow``); a disagreement listed in
fuzz_models.KNOWN_ISSUES is documented by a strict xfail test instead of failing here.
"""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dualip_model as dm
from dualip_model.backends.dualip import block_order
from dualip_model.backends.dualip.fused_cpu import compiler_found
from dualip_model.backends.highs import HighsBackend
from fuzz_models import (ALL_FAMILIES, DUALIP_DEVICE, KINDS, KNOWN_ISSUES, DenseLP, Objective, Rows, Spec, build,
                         run, specs)



@pytest.mark.parametrize("family", ALL_FAMILIES)
@given(data=st.data())
def test_fuzz(backend, family, data):
    outcome = run(data.draw(specs(family), label="spec"), backend)
    unexpected = outcome.unexpected()
    assert not unexpected, "\n".join(map(str, unexpected))


@pytest.mark.parametrize("family", ALL_FAMILIES)
@given(data=st.data())
def test_fuzz_dualip_compact_storage(family, data):
    """The compact engine (gathers and segment sums, the CUDA default) on the same fuzzed models."""
    outcome = run(data.draw(specs(family), label="spec"), "dualip", extra=dict(engine="compact"))
    unexpected = outcome.unexpected()
    assert not unexpected, "\n".join(map(str, unexpected))


@pytest.mark.parametrize("family", ALL_FAMILIES)
@given(data=st.data())
def test_fuzz_dualip_float32(family, data):
    """float32 (the CUDA default): every OPTIMAL meets the contract at its tol 1e-3, block sums included (was: ==
    blocks' sums off by up to 1.8e-3 passed, since only coupling rows were measured)."""
    outcome = run(data.draw(specs(family), label="spec"), "dualip", precision="float32")
    unexpected = outcome.unexpected()
    assert not unexpected, "\n".join(map(str, unexpected))


@pytest.mark.parametrize("family", ALL_FAMILIES)
@given(data=st.data())
def test_fuzz_dualip_blocks_by_size(family, data):
    """The fast storage with the blocks sorted by size (per-size row reductions), on models of any size."""
    with mock.patch.object(block_order, "MIN_GROUP_COLUMNS", 0):
        outcome = run(data.draw(specs(family), label="spec"), "dualip")
    unexpected = outcome.unexpected()
    assert not unexpected, "\n".join(map(str, unexpected))


@pytest.mark.skipif(not compiler_found() or DUALIP_DEVICE != "cpu", reason="no C++ compiler, or not the CPU")
@pytest.mark.parametrize("family", ALL_FAMILIES)
@given(data=st.data())
def test_fuzz_dualip_fused_cpu(family, data):
    """The fused C++ iteration (engine "fused_cpu") on the same fuzzed models: every block kind, empty blocks."""
    outcome = run(data.draw(specs(family), label="spec"), "dualip", extra=dict(engine="fused_cpu"))
    unexpected = outcome.unexpected()
    assert not unexpected, "\n".join(map(str, unexpected))


def test_known_issues_name_a_check_kind():
    assert all(kind in KINDS for _, kind in KNOWN_ISSUES)


# ----------------------------------------------------------------------------------------- regressions
# Examples the fuzzer found, kept as plain tests (on every backend, all disagreements, known ones included).
A = np.array
REGRESSIONS = {
    # no objective: the model minimizes 0 whatever sense the spec drew (the reference once maximized)
    "no_objective_equality_rows": (Spec(
        "equality_rows", -1, 3, 3, A([0, 0, 1, 1, 1, 2, 2, 2]), A([1, 2, 0, 1, 2, 2, 1, 0]), A([-1.0] * 8),
        A([1.0] * 8), None, None, "none", A([-2.0, -3.0, -2.5]), None, (),
        (Rows("item", A([0.0, 0.0, 0.0, 0.0, -0.01, -0.03, 0.0, 0.01]), None, A([-0.005, 0.0, 0.04]),
              A([-0.005, 0.0, 0.04])),), False), {}),
    # the row x0 <= -0.25 (one infinite side) is violated by 1.2e-4 and the objective passes the optimum 3.0
    "one_sided_coupling_row": (Spec(
        "box", -1, 1, 3, A([0]), A([0]), A([-1.0]), A([0.5]), A([-1.0, -1.0, -1.0]), A([2.0, 2.0, 0.0]), "le",
        A([-0.25]), False, (Objective("obj0", 1.0, A([3.0]), A([0.0, -1.0, 0.0]), 0.0),
                            Objective("obj1", 1.0, A([1.0]), A([0.0, 2.0, -1.0]), 1.5)),
        (Rows("item", A([0.29]), A([-1.03, 2.14, 0.02]), A([-0.5875, 0.82, -0.01]), A([np.inf] * 3)),
         Rows("global", A([0.0]), None, A([0.0]), A([0.0]))), False),
        {}),  # (was: dualip optimal at 3.00061, the primal violating x0 <= -0.25 by 1.5e-4)
    # an equality row with coefficients 0.01 violated by 2.2e-5 times its dual 19: objective 4.2e-4 off
    "small_equality_row": (Spec(
        "box", 1, 3, 4, A([1, 1, 2, 2, 2, 2]), A([2, 3, 0, 1, 2, 3]), A([-1.0] * 6), A([0.5] * 6), None, None,
        "none", A([0.0, -2.0, -3.25]), None,
        (Objective("obj0", 1.0, A([0.0, -0.19, 0.0, 0.01, -0.02, 0.0]), None, 0.0),),
        (Rows("item", A([0.0] * 6), None, A([-np.inf] * 4), A([0.0] * 4)),
         Rows("global", A([0.0, -0.01, -0.01, 0.0, 0.0, 0.0]), None, A([0.01625]), A([0.01625])),
         Rows("global", A([-1.98, 0.0, 0.5, 0.0, 0.0, 0.0]), None, A([-np.inf]), A([1.6675]))), False),
        {}),  # (was: dualip optimal at 0.098331, optimum 0.09875: the row violated by 2.2e-5, its dual 19)
    # equality item rows and a >= row 5% beyond its largest value: y's move between checks never certified it
    "infeasible_beyond_equality_rows": (Spec(
        "infeasible", 1, 4, 4, A([1, 0, 1, 2, 3, 1, 2]), A([2, 0, 1, 2, 1, 3, 1]), A([-1.0] * 7), A([0.5] * 7),
        A([0.0] * 4), A([3.0, 0.5, 3.0, 1.0]), "le", A([-0.125, -2.25, -1.25, 1.75]), False, (),
        (Rows("item", A([0.39, 1.4, -3.0, -1.86, -1.42, 1.47, 0.79]), A([-2.36, 0.82, 1.65, -2.5]),
              A([-4.415, 0.52, 2.55, -2.72]), A([-4.415, 0.52, 2.55, -2.72])),
         Rows("item", A([1.66, -2.29, -1.28, 1.77, 1.89, -1.84, 2.76]), A([1.0, -3.0, 2.0, 3.0]),
              A([2.93125, -3.6625, 0.8975, 3.34]), A([2.93125, -3.6625, 0.8975, 3.34])),
         Rows("global", A([0.02, 0.03, 0.01, 0.0, 0.01, 0.0, 0.01]), A([0.03, 0.0, 0.01, 0.01]), A([0.01125]),
              A([0.01125])),
         Rows("global", A([0.01, 0.01, 0.01, 0.01, 1.0, 0.02, 0.02]), None, A([-0.2456875]), A([np.inf]))), False),
        {}),  # (was: dualip iteration_limit at 20,000; the move since the anchor check certifies at 425)
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_fuzz_regression(backend, name, request):
    spec, known = REGRESSIONS[name]
    if backend in known:
        request.applymarker(pytest.mark.xfail(strict=True, reason=known[backend]))
    outcome = run(spec, backend)
    assert not outcome.disagreements, "\n".join(map(str, outcome.disagreements))


def test_dense_reference_checks_rows_with_one_infinite_side():
    """DenseLP.violation once skipped every row with an infinite side (NaN from inf / inf)."""
    spec = REGRESSIONS["one_sided_coupling_row"][0]
    lp = DenseLP.of(spec)
    z = np.array([-0.2, 0.0, 2.0, -0.5])  # x0 = -0.2 > -0.25
    worst, where = lp.violation(z)
    assert where == "per_user[0]" and worst == pytest.approx(0.05 / 1.25)


# ----------------------------------------------------------------------------------------- the checks can fail
class LyingBackend:
    """HiGHS with one lie told about its answer, to show each check of fuzz_models.disagreements fires."""

    name = "liar"
    capabilities = frozenset({dm.Capability.CERTIFIED_BOUND, dm.Capability.DETECTS_INFEASIBLE})
    Options = HighsBackend.Options

    def __init__(self, lie: str):
        self.lie = lie

    def solve(self, sf, options):
        if self.lie == "reject":
            raise dm.ModelError("the liar refuses this model")
        raw = HighsBackend().solve(sf, options)
        raw.guarantees = ("primal: feasible by construction",)
        if self.lie == "status":
            raw.status = dm.Status.ITERATION_LIMIT if raw.status == dm.Status.INFEASIBLE else dm.Status.INFEASIBLE
        if raw.x is None:
            return raw
        if self.lie == "objective":
            raw.objective += 1.0
        elif self.lie == "bound":
            raw.bound = raw.objective + 1.0
        elif self.lie == "primal":  # the primal of a neighbour: off by 0.5 in every column
            raw.x = raw.x + 0.5
            raw.objective = float(sf.c @ raw.x) + sf.offset
        elif self.lie == "claim":
            raw.x = raw.x + 0.5
            raw.objective = float(sf.c @ raw.x) + sf.offset
            raw.guarantees = ("primal: largest relative violation 0.00e+00",)
        return raw


@pytest.mark.parametrize("lie, expected", [
    ("objective", {"objective_not_of_primal", "objective_error"}),
    ("bound", {"invalid_bound"}),
    ("primal", {"infeasible_primal", "objective_error_infeasible_primal"}),
    ("claim", {"wrong_infeasibility_claim"}),
    ("status", {"wrong_status"}),
    ("reject", {"rejected_valid_model"}),
])
def test_checks_catch_a_lying_backend(lie, expected):
    spec = REGRESSIONS["small_equality_row"][0]
    dm.registry.register("liar", LyingBackend(lie))
    try:
        found = {d.kind for d in run(spec, "liar").disagreements}
        infeasible = replace(spec, rows=spec.rows + (Rows("global", np.ones(spec.n_edges), None, A([10.0]),
                                                          A([np.inf])),))
        on_infeasible = {d.kind for d in run(infeasible, "liar").disagreements}
    finally:
        dm.registry._registered.pop("liar", None)
        dm.registry._instances.pop("liar", None)
    assert expected <= found | on_infeasible
    if lie == "status":
        assert on_infeasible == {"missed_infeasible"}  # declared detection, answered ITERATION_LIMIT
