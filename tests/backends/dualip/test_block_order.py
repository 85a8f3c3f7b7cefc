"""Blocks sorted by size (backends/dualip/block_order.py): the permuted standard form is the same problem, the
per-size row reductions equal segment reductions, and a solve in that order returns the original order's answer."""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import numpy as np
import pytest
import torch

import dualip_model as dm
from dualip_model.backends.dualip import block_order
from dualip_model.backends.dualip.block_order import BlockOrder, size_groups
from dualip_model.backends.dualip.problem import Blocks
from dualip_model.polytopes import BlockKind
from dualip_model.synthetic import matching_model, synthetic_matching
from test_dualip import assert_primal_feasible, make_sf, random_fast_blocks

CPU, F64 = torch.device("cpu"), torch.float64


@pytest.fixture
def no_thresholds(monkeypatch):
    """Small models take the grouped layout too (it needs 2^14 columns per size by default)."""
    monkeypatch.setattr(block_order, "MIN_GROUP_COLUMNS", 0)


def ptr_of(sizes) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def random_sf(seed: int, rows: int = 3):
    """Random BOX / SIMPLEX blocks of 0..7 columns (empty and singleton ones included) and sparse >= 0 rows."""
    rng = np.random.default_rng(seed)
    blocks = random_fast_blocks(rng)
    n = sum(len(b[1]) for b in blocks)
    A = rng.uniform(0, 1, (rows, n)) * (rng.random((rows, n)) < 0.4)
    sf = make_sf(blocks, (A, np.full(rows, -np.inf), np.ones(rows)))
    return sf, rng


def test_size_groups_are_the_runs_of_equal_sizes(no_thresholds):
    groups = size_groups(ptr_of([0, 0, 1, 3, 3, 3]))
    assert groups == ((0, 2, 0, 0, 0), (2, 3, 0, 1, 1), (3, 6, 1, 10, 3))
    assert size_groups(ptr_of([2, 1])) is None  # not sorted by size
    assert size_groups(ptr_of([])) is None


def test_size_groups_pay_only_with_few_sizes_over_many_columns():
    few = ptr_of(np.repeat([8, 9, 10], 10_000))  # 270,000 columns, 3 sizes
    assert size_groups(few) is not None
    assert size_groups(ptr_of(np.repeat([8, 9, 10], 100))) is None  # 900 columns per size: op overhead
    many = ptr_of(np.repeat(np.arange(1, block_order.MAX_GROUPS + 2), 100_000))
    assert size_groups(many) is None


@pytest.mark.parametrize("seed", range(4))
def test_the_sorted_standard_form_is_the_same_problem(no_thresholds, seed):
    sf, rng = random_sf(seed)
    sf = replace(sf, c=rng.normal(size=sf.n_cols))
    order = BlockOrder.of(sf)
    assert order is not None
    out, cols = order.sf, order.columns
    sizes, old_sizes = np.diff(out.block_ptr), np.diff(sf.block_ptr)
    assert (np.diff(sizes) >= 0).all() and sorted(old_sizes) == list(sizes)
    blocks = np.argsort(old_sizes, kind="stable")  # equal sizes keep their order
    np.testing.assert_array_equal(out.block_kind, sf.block_kind[blocks])
    np.testing.assert_array_equal(out.block_rhs, sf.block_rhs[blocks])
    np.testing.assert_array_equal(np.sort(cols), np.arange(sf.n_cols))
    np.testing.assert_array_equal(out.A.toarray(), sf.A.toarray()[:, cols])
    np.testing.assert_array_equal(out.c, sf.c[cols])
    np.testing.assert_array_equal(out.col_lower, sf.col_lower[cols])
    np.testing.assert_array_equal(out.col_upper, sf.col_upper[cols])
    np.testing.assert_array_equal(order.columns_back(out.c), sf.c)
    for i, b in enumerate(blocks):  # block i of the new form holds block b's columns, in their order
        np.testing.assert_array_equal(cols[out.block_ptr[i]:out.block_ptr[i + 1]],
                                      np.arange(sf.block_ptr[b], sf.block_ptr[b + 1]))
    assert BlockOrder.of(out) is None  # already sorted


def test_box_cut_blocks_are_ordered_too_but_not_too_many_sizes(no_thresholds):
    sf = make_sf([(BlockKind.SIMPLEX_LE, np.zeros(3), np.full(3, np.inf), 1.0),
                  (BlockKind.BOXCUT_LE, np.zeros(2), np.ones(2), 1.0)])
    order = BlockOrder.of(sf)  # the box-cut Newton steps reduce equal-size groups densely too
    assert [BlockKind(k) for k in order.sf.block_kind] == [BlockKind.BOXCUT_LE, BlockKind.SIMPLEX_LE]
    np.testing.assert_array_equal(order.columns, [3, 4, 0, 1, 2])
    with mock.patch.object(block_order, "MAX_GROUPS", 2):
        sf3 = make_sf([(BlockKind.SIMPLEX_LE, np.zeros(k), np.full(k, np.inf), 1.0) for k in (3, 1, 2)])
        assert BlockOrder.of(sf3) is None


@pytest.mark.parametrize("seed", range(4))
def test_per_size_reductions_equal_segment_reductions(no_thresholds, seed):
    sf, rng = random_sf(seed)
    sf = BlockOrder.of(sf).sf
    grouped = Blocks.build(sf, CPU, F64, compact=False)
    segments = Blocks.build(sf, CPU, F64, compact=True)
    assert grouped.groups is not None and grouped.member is None and segments.groups is None
    z = torch.as_tensor(rng.normal(size=sf.n_cols), dtype=F64)
    torch.testing.assert_close(grouped.sum(z), segments.sum(z), rtol=0, atol=1e-14)
    for how in ("sum", "max", "min"):
        assert torch.equal(grouped.reduce(z, how).isinf(), segments.reduce(z, how).isinf())  # empty blocks
        torch.testing.assert_close(grouped.reduce(z, how), segments.reduce(z, how), rtol=0, atol=1e-14)
        for initial in (-0.5, 0.5):
            torch.testing.assert_close(grouped.reduce(z, how, initial), segments.reduce(z, how, initial),
                                       rtol=0, atol=1e-14)


def unsorted_matching(seed: int):
    """A matching with users of 0..~12 edges in random order (users without edges are empty blocks)."""
    return matching_model(synthetic_matching(300, 25, 0.2, seed=seed))


@pytest.mark.parametrize("seed", range(3))
def test_a_solve_in_size_order_returns_the_answer_in_the_original_order(no_thresholds, seed):
    model = unsorted_matching(seed)
    sf = model.compile()
    assert BlockOrder.of(sf) is not None and (np.diff(sf.block_ptr) == 0).any()
    ref = model.solve("highs")
    made = []

    def record(sf):
        made.append(original(sf))
        return made[-1]
    original = BlockOrder.of
    with mock.patch.object(BlockOrder, "of", side_effect=record):
        res = model.solve("dualip", tol=1e-5)
    assert len(made) == 1 and made[0] is not None  # the solve ran in size order
    assert res.status == dm.Status.OPTIMAL
    assert abs(res.objective - ref.objective) <= 2e-5 * abs(ref.objective)
    assert res.bound >= ref.objective - 1e-9 * abs(ref.objective)  # maximization: an upper bound
    assert_primal_feasible(res)
    with mock.patch.object(BlockOrder, "of", return_value=None):  # the same solve in the compiled order
        plain = model.solve("dualip", tol=1e-5)
    assert abs(plain.objective - res.objective) <= 2e-5 * abs(ref.objective)
