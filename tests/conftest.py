import numpy as np
import pytest

import dualip_model as dm


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
