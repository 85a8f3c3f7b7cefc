"""Shared fixtures: the tiny matching model, every registered backend, one torch thread, hypothesis profiles.

Hypothesis profiles: "ci" (default; 240 fuzzed models per backend, derandomized so CI is repeatable) and
"slow" (2,000 per backend, random), chosen by ``pytest --slow`` or ``HYPOTHESIS_PROFILE=slow``.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import dualip_model as dm

# examples per test: test_fuzz.py has one test per (backend, family), 8 families, so "ci" fuzzes 240 models
# per backend and "slow" 2,000
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=_QUIET)
settings.register_profile("slow", max_examples=250, deadline=None, print_blob=True, suppress_health_check=_QUIET)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="run the long fuzz campaign (hypothesis profile 'slow', >= 1,000 examples)")


def pytest_configure(config):
    if config.getoption("--slow"):
        settings.load_profile("slow")
    elif not config.getoption("--hypothesis-profile", None):  # hypothesis's own option wins
        settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=dm.registry.available())
def backend(request):
    """Each registered backend by name; skips one whose dependencies do not import here."""
    name = request.param
    try:
        dm.registry.get(name)
    except ImportError as exc:  # a third-party backend whose dependencies are missing here
        pytest.skip(f"backend {name!r} does not import: {exc}")
    return name


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """torch.set_num_threads(1) for every test: tiny solves gain nothing from threads, and two threads spin on
    each other (many-fold slower) on a loaded 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny():
    """3 users x 2 items matching; returns (model, handles). Edges sorted by user."""
    m = dm.Model("tiny")
    users = m.entities("user", ["u0", "u1", "u2"])
    items = m.entities("item", ["a", "b"])
    e = m.edges("e", users, items, src=["u0", "u0", "u1", "u2", "u2"], dst=["a", "b", "a", "a", "b"])
    x = m.variable("x", over=e)
    value = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    cost = np.array([1.0, 1.0, 2.0, 1.0, 1.0])
    m.maximize((value * x).sum())
    m.subject_to(x.sum(by=users) <= 1, name="one")
    m.subject_to((cost * x).sum(by=items) <= np.array([1.0, 1.0]), name="budget")
    return m, dict(users=users, items=items, e=e, x=x, value=value, cost=cost)
