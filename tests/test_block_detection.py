"""Block detection in flat LPs (dualip_model/block_detection.py): rows sum_j a_j x_j <= r (or == r) with a > 0
over disjoint nonnegative columns become simplex blocks (x'_j = a_j x_j), and results map back to the flat LP."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import dualip_model as dm
from dualip_model import block_detection, cli
from dualip_model.block_detection import candidate_rows, choose_rows, detect_blocks, sum_row_weights
from dualip_model.polytopes import BlockKind
from dualip_model.synthetic import matching_model, synthetic_matching

ARRAYS = ("c", "col_lower", "col_upper", "A_indptr", "A_indices", "A_data", "row_lower", "row_upper", "block_ptr",
          "block_kind", "block_rhs")


def read_back(model, tmp_path, **kwargs):
    """The model written to MPS and read back (a flat LP: one BOX block, every row a coupling row)."""
    path = tmp_path / f"{model.name}.mps"
    dm.write_model(model, path)
    return dm.read_model(path, **kwargs)


def flat_model(a, lower, upper, col_lower=0.0, col_upper=np.inf, name="flat"):
    """min -sum x s.t. lower <= a x <= upper (every row a coupling row), col_lower <= x <= col_upper."""
    a = np.asarray(a, dtype=np.float64)
    m = dm.Model(name)
    x = m.variable("x", over=m.entities("col", a.shape[1]), lower=col_lower, upper=col_upper)
    m.minimize(-x.sum())
    m.subject_to(dm.matmul(a, x, m.entities("row", a.shape[0])).between(lower, upper), name="rows", block=False)
    return m


def row_sets(sf, rows):
    """The column sets of the given rows of sf's A."""
    csr = sf.A.tocsr()
    return [set(csr.indices[csr.indptr[r] : csr.indptr[r + 1]]) for r in rows]


# ------------------------------------------------------------------------------------- (1) a matching from MPS
def test_a_matching_read_from_mps_gets_its_blocks_back(tmp_path):
    """2000 users x 200 items: the 2000 user rows (not the 200 budget rows, which also qualify after scaling) are
    the blocks, and the detected form is the block model's own standard form, array for array."""
    model = matching_model(synthetic_matching(2000, 200, 0.02, seed=3))
    original = model.compile()
    flat = read_back(model, tmp_path).compile()
    assert flat.n_blocks == 1 and flat.n_rows == 2200
    detected, inverse = detect_blocks(flat)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(detected, name), getattr(original, name), err_msg=name)
        assert getattr(detected, name).dtype == getattr(original, name).dtype, name
    np.testing.assert_array_equal(inverse.rows, np.arange(200, 2200))
    assert (inverse.scale == 1.0).all()
    assert [(s.name, s.kind, s.start, s.stop) for s in detected.layout.constraints] == [
        ("rows", "rows", 0, 200), ("rows", "blocks", 0, 2000)]


def test_dualip_solves_a_matching_read_from_mps_as_it_solves_the_block_model(tmp_path):
    """Before detection dualip ran to its limit on the read model with every dual 0.0; now it is the block model's
    solve: OPTIMAL, the same objective, x and duals by label, and the 193 binding budgets' duals close to HiGHS's
    (near-optimal duals need not be near the optimal dual face row by row: most are within 1e-3, none 0.2 off)."""
    data = synthetic_matching(2000, 200, 0.02, seed=3)
    model = matching_model(data)
    read = read_back(model, tmp_path)
    ref, res = model.solve("dualip"), read.solve("dualip")
    assert res.status == dm.Status.OPTIMAL and res.objective == pytest.approx(ref.objective, rel=1e-12)
    names = [f"x[{u},{i}]" for u, i in zip(data.user, data.item)]
    np.testing.assert_allclose(res.x[names].to_numpy(), ref.x.to_numpy(), rtol=1e-12, atol=1e-15)
    rows = res.dual("rows")
    budget = rows[[f"budget[{i}]" for i in range(data.n_items)]].to_numpy()
    np.testing.assert_allclose(budget, ref.dual("budget").to_numpy(), rtol=1e-12, atol=1e-15)
    users = rows[[f"one_per_user[{u}]" for u in range(data.n_users)]].to_numpy()
    np.testing.assert_allclose(users, ref.dual("one_per_user").to_numpy(), rtol=1e-12, atol=1e-15)
    exact = model.solve("highs").dual("budget").to_numpy()
    binding = exact > 1e-6
    assert binding.sum() == 193 and (budget[binding] > 1e-3).all()
    assert np.median(np.abs(budget - exact)) <= 1e-2 and np.abs(budget - exact).max() <= 0.2
    assert data.budget @ budget == pytest.approx(data.budget @ exact, rel=1e-2)


# ------------------------------------------------------------------------------------- (2) scaled rows
def weighted_matching(sense: str, col_upper: float):
    """Users' rows sum_i w_ui x_ui <= cap_u (or == cap_u), w in [0.5, 3], written with block=False, next to budget
    rows; every user has an edge to item u mod 6, and cap_u is at most half of sum_i w_ui (== rows are feasible)."""
    rng = np.random.default_rng(7)
    n_users, n_items = 60, 6
    keys = np.flatnonzero(rng.random(n_users * n_items) < 0.35)
    keys = np.union1d(keys, np.arange(n_users) * n_items + np.arange(n_users) % n_items)
    user, item = keys // n_items, keys % n_items
    w = rng.uniform(0.5, 3.0, keys.shape[0])
    m = dm.Model(f"weighted_{'le' if sense == '<=' else 'eq'}")
    users, items = m.entities("user", n_users), m.entities("item", n_items)
    x = m.variable("x", over=m.edges("e", users, items, src=user, dst=item), upper=col_upper)
    m.maximize((rng.lognormal(0, 1, keys.shape[0]) * x).sum())
    weighted = (w * x).sum(by=users)
    cap = 0.5 * np.bincount(user, weights=w, minlength=n_users) * rng.uniform(0.3, 1.0, n_users)
    m.subject_to(weighted <= cap if sense == "<=" else weighted == cap, name="weighted", block=False)
    budget = rng.uniform(4, 8, n_items) * (1 if sense == "<=" else 10)  # == rows force spend: looser budgets
    m.subject_to((rng.lognormal(0, 1, keys.shape[0]) * x).sum(by=items) <= budget, name="budget")
    return m, w


@pytest.mark.parametrize("sense", ["<=", "=="])
def test_scaled_rows_change_variables_and_map_back_exactly(sense):
    """x'_j = w_j x_j: the detected form's costs, coupling rows, bounds and block sums at x' are the flat form's at
    x (upper bounds 1 make some blocks box-cut), and HiGHS gives the same optimum, x and duals through it."""
    m, w = weighted_matching(sense, col_upper=1.0)
    flat = m.compile()
    detected, inverse = detect_blocks(flat)
    assert detected.n_blocks == 60 and detected.n_rows == 6
    np.testing.assert_array_equal(inverse.rows, np.arange(60))  # the "weighted" rows, then "budget"
    kinds = {BlockKind(k) for k in detected.block_kind}
    eq = sense == "=="
    assert kinds <= {BlockKind.BOXCUT_EQ, BlockKind.SIMPLEX_EQ} if eq else {BlockKind.BOXCUT_LE, BlockKind.SIMPLEX_LE}
    assert BlockKind.BOXCUT_EQ in kinds or BlockKind.BOXCUT_LE in kinds  # some cap_u exceeds some w_ui
    x = np.random.default_rng(1).uniform(0, 1, flat.n_cols)
    x_new = (inverse.scale * x)[inverse.columns]
    np.testing.assert_allclose(inverse.x(x_new), x, rtol=1e-15)
    np.testing.assert_allclose(detected.c @ x_new, flat.c @ x, rtol=1e-12)
    np.testing.assert_allclose(detected.A @ x_new, (flat.A @ x)[inverse.kept], rtol=1e-12)
    sums = np.add.reduceat(x_new, detected.block_ptr[:-1])
    np.testing.assert_allclose(sums, (flat.A @ x)[inverse.rows], rtol=1e-12)
    np.testing.assert_array_equal(detected.block_rhs, flat.row_upper[inverse.rows])
    np.testing.assert_allclose(detected.col_upper, (inverse.scale * flat.col_upper)[inverse.columns], rtol=1e-15)
    assert (detected.col_lower == 0).all()

    plain = m.solve("highs")
    m.reduction = detect_blocks
    through = m.solve("highs")
    assert plain.status == through.status == dm.Status.OPTIMAL
    assert through.objective == pytest.approx(plain.objective, rel=1e-9)
    np.testing.assert_allclose(through.x.to_numpy(), plain.x.to_numpy(), atol=1e-7)
    for name in ("weighted", "budget"):
        np.testing.assert_allclose(through.dual(name, labeled=False), plain.dual(name, labeled=False), atol=1e-7)
    assert through.violation()[0] <= 1e-9


def test_dualip_on_scaled_rows_is_optimal_with_x_in_the_flat_terms():
    m, _ = weighted_matching("<=", col_upper=np.inf)
    exact = m.solve("highs")
    m.reduction = detect_blocks
    res = m.solve("dualip", tol=1e-5)
    assert res.status == dm.Status.OPTIMAL
    assert res.objective == pytest.approx(exact.objective, rel=1e-4)
    activity, slack = res.activity("weighted")  # x mapped back: the user rows hold at x, not at x'
    assert slack.min() >= -1e-5 * (1 + np.abs(activity).max())
    assert res.violation()[0] <= 1e-4
    np.testing.assert_allclose(res.dual("weighted").to_numpy(), exact.dual("weighted").to_numpy(), atol=2e-2)
    np.testing.assert_allclose(res.dual("budget").to_numpy(), exact.dual("budget").to_numpy(), atol=2e-2)


# ------------------------------------------------------------------------------------- (3) overlapping rows
def test_overlapping_rows_fewest_conflicts_first_then_most_columns():
    """A row's conflicts: sum over its columns of (qualifying rows holding the column - 1)."""
    a = np.zeros((9, 13))
    a[0, [0, 1, 2]] = 1    # A: column 2 also in B            conflicts 1, 3 columns: taken
    a[1, [2, 3]] = 1       # B: columns 2 and 3 shared        conflicts 2: closed by A
    a[2, [3, 4]] = 1       # C: column 3 also in B            conflicts 1: taken
    a[3, 5] = 1            # D: alone                         conflicts 0: taken
    a[4, [6, 7, 8]] = 1    # E: columns 6 (F) and 7 (G)       conflicts 2: F and G are two blocks instead of one
    a[5, 6] = 2            # F                                conflicts 1: taken (coefficient 2: scaled)
    a[6, 7] = 1            # G                                conflicts 1: taken
    a[7, [9, 10, 11]] = 1  # P: column 11 also in Q           conflicts 1, 3 columns: taken
    a[8, [11, 12]] = 1     # Q                                conflicts 1, 2 columns: P comes first
    chosen = choose_rows(flat_model(a, -np.inf, 1.0).compile())
    np.testing.assert_array_equal(np.flatnonzero(chosen), [0, 2, 3, 5, 6, 7])


def test_chosen_rows_are_disjoint_maximal_and_greedy_on_random_overlaps():
    rng = np.random.default_rng(11)
    n_rows, n_cols = 300, 500
    a = np.zeros((n_rows, n_cols))
    for r in range(n_rows):
        a[r, rng.choice(n_cols, size=rng.integers(1, 6), replace=False)] = rng.uniform(0.5, 2)
    sf = flat_model(a, -np.inf, 1.0).compile()
    chosen = np.flatnonzero(choose_rows(sf))
    sets = row_sets(sf, range(n_rows))
    holders = np.count_nonzero(a, axis=0)
    key = [(sum(holders[j] - 1 for j in s), -len(s)) for s in sets]
    taken = set()
    for r in chosen:
        assert not sets[r] & taken, "chosen rows share a column"
        taken |= sets[r]
    for r in set(range(n_rows)) - set(chosen):
        rivals = [q for q in chosen if sets[q] & sets[r]]
        assert rivals, f"row {r} could be added: the set is not maximal"
        assert min(key[q] for q in rivals) <= key[r], f"row {r} lost to rows the greedy order puts after it"
    assert 0 < len(chosen) < n_rows


def test_a_long_chain_of_overlapping_rows_ends_maximal():
    """Rows k = {s_k, s_k+1} plus k columns of their own: each row comes first on its columns only after its
    larger neighbour closed, one round per two rows, so the greedy switches to the pseudo-random order."""
    length = 4 * block_detection.ORDERED_ROUNDS
    own = np.arange(length)
    a = np.zeros((length, length + 1 + int(own.sum())))
    start = length + 1
    for k in range(length):
        a[k, [k, k + 1]] = 1
        a[k, start : start + own[k]] = 1
        start += own[k]
    chosen = np.flatnonzero(choose_rows(flat_model(a, -np.inf, 1.0).compile()))
    gaps = np.diff(chosen)
    assert (gaps >= 2).all(), "two neighbours chosen"
    assert (gaps <= 3).all() and chosen[0] <= 1 and chosen[-1] >= length - 2, "a row could still be added"


# ------------------------------------------------------------------------------------- (4) rows that stay rows
def test_rows_with_a_negative_entry_or_over_a_column_below_zero_are_not_blocks():
    a = np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0],     # 0: a block
                  [0, 0, 1, -1, 0, 0, 0, 0, 0, 0],    # 1: a negative entry
                  [0, 0, 0, 0, 1, 0, 0, 0, 0, 0],     # 2: column 4 has lower bound -1
                  [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],     # 3: a >= row
                  [0, 0, 0, 0, 0, 0, 1, 0, 0, 0],     # 4: a range
                  [0, 0, 0, 0, 0, 0, 0, 1, 0, 0],     # 5: rhs < 0: the block would be empty
                  [0, 0, 0, 0, 0, 0, 0, 0, 2, 0],     # 6: == 3 over a column <= 1: 2 x <= 2 < 3, empty
                  [0, 0, 0, 0, 0, 0, 0, 0, 0, 3.0]])  # 7: == 3 over a column <= 1: a block (3 x = 3)
    lower = [-np.inf, -np.inf, -np.inf, 0.5, 0.5, -np.inf, 3, 3]
    upper = [1, 1, 1, np.inf, 1, -1, 3, 3]
    col_lower = np.array([0, 0, 0, 0, -1, 0, 0, 0, 0, 0.0])
    m = flat_model(a, lower, upper, col_lower=col_lower, col_upper=np.where(np.arange(10) >= 8, 1.0, np.inf))
    plain = m.solve("highs")
    sf = m.compile()
    np.testing.assert_array_equal(np.flatnonzero(candidate_rows(sf)), [0, 7])
    detected, inverse = detect_blocks(sf)
    assert [BlockKind(k) for k in detected.block_kind] == [BlockKind.SIMPLEX_LE, BlockKind.SIMPLEX_EQ,
                                                           BlockKind.BOX]
    m.reduction = detect_blocks
    res = m.solve("highs")
    assert res.status == plain.status == dm.Status.INFEASIBLE  # rows 5 and 6 stayed rows and say so


def test_columns_of_a_block_constraint_are_left_to_it():
    """A model with a block family and a block=False family: the row over the block's columns stays a row, the
    other becomes a block after the input's own, and both families' duals come back as without detection."""
    m = dm.Model("mixed")
    y = m.variable("y", over=m.entities("a", 3))
    z = m.variable("z", over=m.entities("b", 3), upper=1.0)
    m.maximize((np.array([1.0, 2, 3]) * y).sum() + (np.array([4.0, 5, 6]) * z).sum())
    m.subject_to(y.sum() <= 1, name="own")
    rows = m.entities("r", 2)
    m.subject_to(dm.matmul(np.array([[0, 1, 1], [0, 0, 0.0]]), y, rows)
                 + dm.matmul(np.array([[0, 0, 0], [2, 1, 0.0]]), z, rows) <= [0.5, 1], name="rows", block=False)
    sf = m.compile()
    detected, inverse = detect_blocks(sf)
    np.testing.assert_array_equal(inverse.rows, [1])
    assert [(s.name, s.kind, s.start, s.stop) for s in detected.layout.constraints] == [
        ("own", "blocks", 1, 2), ("rows", "rows", 0, 1), ("rows", "blocks", 0, 1)]
    assert [BlockKind(k) for k in detected.block_kind] == [BlockKind.SIMPLEX_LE, BlockKind.SIMPLEX_LE, BlockKind.BOX]
    plain = m.solve("highs")
    m.reduction = detect_blocks
    through = m.solve("highs")
    assert through.objective == pytest.approx(plain.objective, rel=1e-12)
    np.testing.assert_allclose(through.x_all, plain.x_all, atol=1e-9)
    for name in ("own", "rows"):
        np.testing.assert_allclose(through.dual(name, labeled=False), plain.dual(name, labeled=False), atol=1e-9)
    assert np.abs(plain.dual("rows", labeled=False)).min() > 0 and abs(plain.dual("own")) > 0


def test_a_form_without_qualifying_rows_is_solved_as_it_is():
    sf = flat_model(np.array([[1.0, -1.0]]), -np.inf, 1.0).compile()
    detected, inverse = detect_blocks(sf)
    assert detected is sf
    raw = dm.RawResult(status=dm.Status.OPTIMAL, x=np.array([1.0, 2.0]))
    assert inverse.invert(raw) is raw


# ------------------------------------------------------------------------------------- infeasible models
@pytest.mark.parametrize("sense", ["<=", "=="])
def test_sum_row_weights_are_the_multipliers_of_the_block_minimum(sense):
    """min_{x in C_b} g^T x = min_{0 <= x <= u} (g + z_b)^T x - r_b z_b, C_b from scaled rows with and without
    binding upper bounds, checked against scipy's LP solver block by block."""
    from scipy.optimize import linprog

    m, _ = weighted_matching(sense, col_upper=1.0)
    detected, inverse = detect_blocks(m.compile())
    k = inverse.rows.shape[0]
    g = np.random.default_rng(3).normal(size=detected.n_cols)
    z = sum_row_weights(detected, k, g)
    upper = np.asarray(detected.col_upper)
    for b in range(k):
        cols = slice(detected.block_ptr[b], detected.block_ptr[b + 1])
        gb, ub, r = g[cols], upper[cols], detected.block_rhs[b]
        row = {"A_eq" if sense == "==" else "A_ub": np.ones((1, gb.shape[0])),
               "b_eq" if sense == "==" else "b_ub": [r]}
        best = linprog(gb, bounds=list(zip(np.zeros_like(ub), ub)), **row).fun
        shifted = gb + z[b]
        assert np.where(shifted < 0, shifted * ub, 0.0).sum() - r * z[b] == pytest.approx(best, abs=1e-9)
        if sense == "<=":
            assert z[b] >= 0


def test_an_infeasible_model_read_from_mps_gets_a_farkas_ray_over_the_file_rows(tmp_path):
    """dualip's ray over the detected form's coupling rows, completed on the user rows, certifies the flat LP:
    min over the column bounds of (A^T y)^T x exceeds h(y) = sum_{y > 0} y upper + sum_{y < 0} y lower."""
    model = matching_model(synthetic_matching(12, 4, 0.5, seed=2))
    model.subject_to(model.variables["x"].sum() >= 1.01 * 11.0, name="impossible")  # max sum x is 11.0
    read = read_back(model, tmp_path)
    res = read.solve("dualip", max_iter=5000)
    assert res.status == dm.Status.INFEASIBLE
    flat = read.compile()
    y = res.raw.ray
    assert y.shape == (flat.n_rows,) and np.isfinite(y).all()
    d = flat.A.T @ y
    lower, upper = np.asarray(flat.col_lower), np.asarray(flat.col_upper)
    assert (d[upper == np.inf] >= -1e-12).all()
    least = np.where(d < 0, d * np.where(np.isinf(upper), 0.0, upper), d * lower).sum()
    h = y[y > 0] @ flat.row_upper[y > 0] + y[y < 0] @ flat.row_lower[y < 0]
    assert least - h > 1e-9 * np.abs(y).max()


# ------------------------------------------------------------------------------------- (5) labels and the CLI
def test_read_model_results_keep_the_file_labels(tmp_path):
    m, _ = weighted_matching("<=", col_upper=np.inf)
    detected = read_back(m, tmp_path)
    flat = read_back(m, tmp_path, detect_blocks=False)
    assert flat.reduction is None and detected.reduction is detect_blocks
    a, b = detected.solve("highs"), flat.solve("highs")
    pd.testing.assert_series_equal(a.x, b.x, atol=1e-7, rtol=0)
    pd.testing.assert_series_equal(a.dual("rows"), b.dual("rows"), atol=1e-7, rtol=0)
    assert list(a.dual("rows").index[:2]) == ["weighted[0]", "weighted[1]"]
    assert a.x.index[0].startswith("x[") and a.x.abs().sum() > 0
    frame = a.duals_frame("rows")
    assert (frame["slack"] >= -1e-9).all() and frame["dual"].abs().max() > 0


def test_cli_detects_blocks_unless_told_not_to(capsys, tmp_path):
    model = matching_model(synthetic_matching(30, 4, 0.5, seed=1))
    path = tmp_path / "matching.mps"
    dm.write_model(model, path)
    assert cli.main(["info", str(path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["detected"]["rows"] == 30 and facts["detected"]["blocks"] == {"SIMPLEX_LE": {"blocks": 30,
                                                                                              "columns": 60}}
    assert cli.main(["info", str(path), "--json", "--no-detect-blocks"]) == 0
    assert "detected" not in json.loads(capsys.readouterr().out)
    duals = tmp_path / "y.csv"
    assert cli.main(["solve", str(path), "--backend", "highs", "--duals", str(duals), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "optimal"
    table = pd.read_csv(duals)
    exact = model.solve("highs")
    budget = table.set_index("row").loc[[f"budget[{i}]" for i in range(4)], "dual"].to_numpy()
    np.testing.assert_allclose(budget, exact.dual("budget").to_numpy(), atol=1e-9)
    assert cli.main(["compare", str(path), "--backends", "highs", "--no-detect-blocks", "--json"]) == 0
    capsys.readouterr()


def test_detected_form_is_a_valid_standard_form_file(tmp_path):
    """The detected form saves and loads (its layout slots are in range), e.g. for solve-sharded."""
    flat = read_back(matching_model(synthetic_matching(40, 5, 0.4, seed=2)), tmp_path).compile()
    detected, _ = detect_blocks(flat)
    detected.save(tmp_path / "detected.npz")
    again = dm.StandardForm.load(tmp_path / "detected.npz")
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(detected, name))
    assert dataclasses.asdict(again.layout.constraints[0]) == dataclasses.asdict(detected.layout.constraints[0])
