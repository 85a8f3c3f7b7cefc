"""Backend registry and protocol: names without heavy imports, run-time registration, entry points, mocks."""

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import dualip_model as dm
from dualip_model import registry


@dataclass(frozen=True)
class MockOptions:
    answer: float = 1.0


class MockBackend:
    """A scripted backend: returns x = answer on every column, to test the layers above the protocol."""

    name = "mock"
    capabilities = frozenset({dm.Capability.DUALS})
    Options = MockOptions

    def __init__(self):
        self.calls = []

    def solve(self, sf, options):
        self.calls.append(sf)
        x = np.full(sf.n_cols, options.answer)
        return dm.RawResult(status=dm.Status.OPTIMAL, x=x, objective=float(sf.c @ x) + sf.offset,
                            bound=float(sf.c @ x) + sf.offset, row_dual=-np.arange(sf.n_rows, dtype=float),
                            block_dual=np.zeros(sf.n_blocks))


@pytest.fixture
def mock():
    backend = MockBackend()
    registry.register("mock", backend)
    yield backend
    registry._registered.pop("mock", None)
    registry._instances.pop("mock", None)


def test_listing_backends_imports_neither_torch_nor_highspy():
    code = ("import sys, dualip_model as dm; names = dm.registry.available(); "
            "assert {'highs', 'dualip'} <= set(names), names; "
            "assert 'torch' not in sys.modules and 'highspy' not in sys.modules, "
            "[m for m in ('torch', 'highspy') if m in sys.modules]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mock_backend_results_are_mapped_back_with_sense_and_labels(mock, tiny):
    m, h = tiny
    res = m.solve("mock", answer=0.5)
    assert len(mock.calls) == 1 and isinstance(mock.calls[0], dm.StandardForm)
    assert res.backend == "mock" and res.status == dm.Status.OPTIMAL
    assert res.objective == pytest.approx(0.5 * h["value"].sum())  # maximization undone once
    np.testing.assert_allclose(res.x.to_numpy(), 0.5)
    # raw duals are d(min objective)/d(rhs); the user sees d(max objective)/d(rhs) = -raw
    np.testing.assert_allclose(res.dual("budget").to_numpy(), [0.0, 1.0])
    assert list(res.dual("budget").index) == ["a", "b"]


def test_unknown_backend_and_options(mock, tiny):
    m, _ = tiny
    with pytest.raises(dm.BackendNotFoundError, match="no backend named 'nope'; available: .*mock"):
        m.solve("nope")
    with pytest.raises(dm.ModelError, match=r"backend 'mock' has no option\(s\) \['tol'\]"):
        m.solve("mock", tol=1e-3)
    with pytest.raises(dm.ModelError, match="options for backend 'mock' must be MockOptions"):
        m.solve("mock", options=object())


def test_missing_capability_fails_before_solving(mock, tiny):
    m, _ = tiny

    @dataclass(frozen=True)
    class WarmOptions:
        warm_start: object = None

    class NoWarm(MockBackend):
        Options = WarmOptions

        def solve(self, sf, options):
            raise AssertionError("must not be called")

    registry.register("nowarm", NoWarm)
    try:
        with pytest.raises(dm.CapabilityError, match="backend 'nowarm' does not support warm starts"):
            m.solve("nowarm", warm_start={"y": np.zeros(2)})
    finally:
        registry._registered.pop("nowarm", None)
        registry._instances.pop("nowarm", None)


def test_entry_point_backends_are_discovered(monkeypatch):
    class FakeEntryPoint:
        name = "plugin"
        group = registry.ENTRY_POINT_GROUP

        def load(self):
            return MockBackend

    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint()] if group == registry.ENTRY_POINT_GROUP else [])
    assert "plugin" in registry.available()
    try:
        assert isinstance(registry.get("plugin"), MockBackend)
    finally:
        registry._instances.pop("plugin", None)


def test_an_object_without_the_protocol_is_rejected():
    registry.register("broken", object())
    try:
        with pytest.raises(dm.BackendNotFoundError, match="does not implement"):
            registry.get("broken")
    finally:
        registry._registered.pop("broken", None)
