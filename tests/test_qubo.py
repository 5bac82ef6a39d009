"""qkrum.qubo: coefficients by hand, optimum = brute force, the penalty bound, one formula and one
problem form (the energy minus the penalty is the objective; the dense J equals the old paths')."""

import dataclasses
import itertools

import dimod
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qkrum.anneal import exact_ground_state, solve_qubo
from qkrum.anneal.adapter import bqm_from_problem, qubo_vectors
from qkrum.anneal.sampler import qubo_arrays
from qkrum.qubo import (
    SelectionProblem,
    objective_value,
    penalty_bound,
    penalty_weight,
    problem_from_qubo,
    qubo_energy,
    selection_coefficients,
    selection_problem,
    selection_qubo,
    suspicion_penalty,
)


def distances(rng, n):
    a = rng.uniform(0.1, 2.0, (n, n))
    d = (a + a.T) / 2
    np.fill_diagonal(d, 0)
    return d


def best_subset(D, m, objective):
    """Brute force over all m-subsets of the objective itself (no QUBO)."""
    n = len(D)
    best, arg = np.inf, None
    for S in itertools.combinations(range(n), m):
        S = list(S)
        out = [j for j in range(n) if j not in S]
        value = D[np.ix_(S, out)].sum() if objective == "paper" else np.triu(D[np.ix_(S, S)], 1).sum()
        if value < best - 1e-12:
            best, arg = value, S
    return best, arg


def test_paper_coefficients_are_eqs_10_11_by_hand():
    D = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]], float)
    Q, offset = selection_qubo(D, 2, objective="paper", lam=10.0)
    # Q_ii = sum_j D_ij + lam (1 - 2m) = rowsum - 30; Q_ij = -2 D_ij + 2 lam
    np.testing.assert_allclose(np.diag(Q), [3 - 30, 4 - 30, 5 - 30])
    np.testing.assert_allclose([Q[0, 1], Q[0, 2], Q[1, 2]], [18, 16, 14])
    assert np.all(np.tril(Q, -1) == 0) and offset == 40.0
    Qp, _ = selection_qubo(D, 2, objective="paper", lam="paper")  # lam = 10 max D = 30
    assert Qp[0, 1] == -2 + 60


def test_intra_coefficients_by_hand():
    D = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]], float)
    Q, offset = selection_qubo(D, 2, objective="intra", lam=5.0)
    np.testing.assert_allclose(np.diag(Q), [-15, -15, -15])
    np.testing.assert_allclose([Q[0, 1], Q[0, 2], Q[1, 2]], [11, 12, 13])
    assert offset == 20.0
    Q0, off0 = selection_qubo(D, 2, objective="intra", lam=0)
    assert np.all(np.diag(Q0) == 0) and off0 == 0


@pytest.mark.parametrize("objective", ["paper", "intra"])
def test_qubo_energy_equals_objective_plus_penalty(rng, objective):
    D = distances(rng, 7)
    Q, offset = selection_qubo(D, 4, objective=objective, lam=2.5)
    for bits in itertools.product((0, 1), repeat=7):
        x = np.array(bits)
        S, out = np.flatnonzero(x), np.flatnonzero(1 - x)
        obj = D[np.ix_(S, out)].sum() if objective == "paper" else np.triu(D[np.ix_(S, S)], 1).sum()
        assert qubo_energy(Q, x, offset) == pytest.approx(obj + 2.5 * (x.sum() - 4) ** 2)


@given(st.integers(4, 11), st.integers(0, 2**31 - 1), st.sampled_from(["paper", "intra"]))
def test_provable_penalty_makes_qubo_optimum_the_best_m_subset(n, seed, objective):
    rng = np.random.default_rng(seed)
    D = distances(rng, n)
    m = int(rng.integers(1, n + 1))
    Q, offset = selection_qubo(D, m, objective=objective)  # lam=None: the bound
    res = exact_ground_state(Q, offset)
    want, _ = best_subset(D, m, objective)
    assert np.all(res.states.sum(axis=1) == m)
    assert res.energy == pytest.approx(want, abs=1e-9 * max(1, abs(want)))
    # the cardinality-constrained objective-only QUBO has the same optimum
    Q0, off0 = selection_qubo(D, m, objective=objective, lam=0)
    assert exact_ground_state(Q0, off0, cardinality=m).energy == pytest.approx(want, abs=1e-9 * max(1, abs(want)))


def test_paper_lambda_breaks_cardinality_for_the_cut_at_moderate_n(rng):
    # Adding a client changes the cut by about (n - 2|S|) mean D, more than lambda = 10 max D.
    n, m = 60, 48
    D = distances(rng, n)
    assert penalty_bound(D, m, "paper") > 10 * D.max()
    Qb, offb = selection_qubo(D, m, objective="paper")  # provable lambda
    sol = solve_qubo(Qb, offb, num_reads=100, seed=0)
    assert sol.sample.sum() == m
    Q, offset = selection_qubo(D, m, objective="paper", lam="paper")
    x = sol.sample.astype(float)
    base = qubo_energy(Q, x, offset)
    gains = []
    for j in np.flatnonzero(x == 0):
        y = x.copy()
        y[j] = 1
        gains.append(qubo_energy(Q, y, offset) - base)
    # With uniform D, every addition changes the cut by about (n - 2m) mean D = -38 mean D
    # while the penalty adds only lambda = 10 max D ~ 20: adding lowers the energy by
    # ~20, so the paper-lambda optimum has |S| > m.
    assert min(gains) < -5


def test_cut_objective_rejects_the_most_central_clients():
    # Two tight groups plus a far outlier: the cut keeps the outlier, intra drops it.
    pts = np.array([[0.0], [0.1], [0.2], [0.15], [0.05], [10.0]])
    D = np.abs(pts - pts.T)
    m = 5
    _, keep_paper = best_subset(D, m, "paper")
    _, keep_intra = best_subset(D, m, "intra")
    assert 5 in keep_paper and 5 not in keep_intra


@pytest.mark.parametrize("D,m,kw,match", [
    (np.ones((2, 3)), 1, {}, "square"),
    (np.array([[0, np.nan], [np.nan, 0]]), 1, {}, "finite"),
    (np.array([[0, -1.0], [-1.0, 0]]), 1, {}, "non-negative"),
    (np.array([[0, 1.0], [2.0, 0]]), 1, {}, "symmetric"),
    (np.zeros((2, 2)), 0, {}, "m must be an integer in 1..n=2, got m=0"),
    (np.zeros((2, 2)), 3, {}, "m must be an integer in 1..n=2, got m=3"),
    (np.zeros((2, 2)), 1, {"objective": "cut"}, "objective must be one of"),
    (np.zeros((2, 2)), 1, {"lam": -1.0}, "lam must be"),
    (np.zeros((2, 2)), 1, {"lam": "big"}, "lam must be"),
])
def test_bad_input(D, m, kw, match):
    with pytest.raises(ValueError, match=match):
        selection_qubo(D, m, **kw)


# --- one formula, one problem form (qkrum.qubo.formulation / qkrum.qubo.problem) -----------

@pytest.mark.parametrize("objective", ["paper", "intra"])
@pytest.mark.parametrize("lam", [None, "paper", 2.5])
@pytest.mark.parametrize("suspicion", [False, True])
def test_bqm_energy_of_every_subset_minus_the_penalty_is_the_objective_value(rng, objective, lam, suspicion):
    n, m = 7, 4
    D = distances(rng, n)
    P = suspicion_penalty(D, percentile=30)[0] if suspicion else None
    problem = selection_problem(D, m, objective=objective, lam=lam, pair_penalty=P)
    assert problem.cardinality is None and problem.m == m
    assert problem.penalty == penalty_weight(D, m, objective, lam, P) > 0
    bqm = bqm_from_problem(problem)
    states = np.array(list(itertools.product((0, 1), repeat=n)))
    energies = bqm.energies((states, range(n)))
    np.testing.assert_allclose(problem.energy(states), energies, rtol=1e-12, atol=1e-12)
    for x, energy in zip(states, energies):
        want = objective_value(D, x.astype(bool), objective, P)
        penalty = problem.penalty * (x.sum() - m) ** 2
        assert problem.penalty_energy(x) == pytest.approx(penalty, rel=1e-12, abs=1e-12)
        assert energy - penalty == pytest.approx(want, rel=1e-12, abs=1e-12)
        if x.sum() == m:  # no penalty at |S| = m: the energy is the objective
            assert energy == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("objective", ["paper", "intra"])
@pytest.mark.parametrize("lam", [None, "paper", 0])
@pytest.mark.parametrize("suspicion", [False, True])
def test_dense_couplings_built_once_equal_the_old_paths(rng, objective, lam, suspicion):
    """J of the problem = the couplings of the old Q → vectors → BQM → dense-J path, bit for bit."""
    n, m = 9, 6
    D = distances(rng, n)
    P = suspicion_penalty(D)[0] if suspicion else None
    problem = selection_problem(D, m, objective=objective, lam=lam, pair_penalty=P)
    Q, offset = selection_qubo(D, m, objective=objective, lam=lam, pair_penalty=P)
    # The upper-triangular form is the same numbers.
    Qp, offp = problem.qubo()
    np.testing.assert_array_equal(Qp, Q)
    assert offp == offset == problem.offset
    np.testing.assert_array_equal(problem.h, np.diag(Q))
    np.testing.assert_array_equal(problem.J, np.triu(Q, 1) + np.triu(Q, 1).T)
    # The BQM: as the old path built it (qubo_vectors → from_numpy_vectors), and via a dict.
    lin, quad = qubo_vectors(Q)
    old = dimod.BinaryQuadraticModel.from_numpy_vectors(lin, quad, offset, dimod.BINARY)
    new = bqm_from_problem(problem)
    order = list(range(n))
    for a, b in zip(new.to_numpy_vectors(variable_order=order), old.to_numpy_vectors(variable_order=order)):
        if isinstance(a, tuple):
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_array_equal(a, b)
    as_dict = dimod.BinaryQuadraticModel.from_qubo({(i, j): Q[i, j] for i in range(n) for j in range(i, n)}, offset)
    assert new.linear == as_dict.linear and new.offset == as_dict.offset
    assert dict(new.quadratic) == {k: v for k, v in as_dict.quadratic.items() if v != 0}
    # The dense J inside qkrum's annealer is the problem's J.
    ldata, (irow, icol, qdata), off = new.to_numpy_vectors(variable_order=order)
    arrays = qubo_arrays(ldata, irow, icol, qdata, off)
    np.testing.assert_array_equal(arrays.J, problem.J)
    np.testing.assert_array_equal(arrays.h, problem.h)
    # solve_qubo's problem from the matrix is the same problem (its penalty unknown).
    from_q = problem_from_qubo(Q, offset)
    np.testing.assert_array_equal(from_q.J, problem.J)
    assert from_q.penalty is None and from_q.cardinality is None


def test_cardinality_kept_problem_is_the_objective_alone(rng):
    D = distances(rng, 6)
    P, _ = suspicion_penalty(D)
    kept = selection_problem(D, 3, objective="paper", pair_penalty=P, keep_cardinality=True)
    assert kept.cardinality == kept.m == 3 and kept.penalty == 0.0 and kept.offset == 0.0
    Q0, off0 = selection_qubo(D, 3, objective="paper", lam=0, pair_penalty=P)
    np.testing.assert_array_equal(kept.qubo()[0], Q0)
    h, J, offset, lam = selection_coefficients(D, 3, objective="paper", lam=0, pair_penalty=P)
    np.testing.assert_array_equal(J, kept.J)
    np.testing.assert_array_equal(h, kept.h)
    assert lam == 0.0 and offset == 0.0
    with pytest.raises(ValueError, match="lam='paper' is a penalty weight, but the solver keeps the cardinality"):
        selection_problem(D, 3, lam="paper", keep_cardinality=True)


def test_selection_problem_is_immutable_and_validated(rng):
    D = distances(rng, 5)
    problem = selection_problem(D, 2)
    assert not problem.J.flags.writeable and not problem.h.flags.writeable
    with pytest.raises(ValueError):
        problem.J[0, 1] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.cardinality = 3
    J = np.array([[0.0, 1.0], [1.0, 0.0]])
    mine = SelectionProblem(J, np.zeros(2), 0.0)
    J[0, 1] = 5.0  # the problem holds its own copy
    assert mine.J[0, 1] == 1.0 and mine.J.dtype == np.float64
    for kwargs, match in [
        ({"J": np.array([[0.0, 1.0], [2.0, 0.0]])}, "J must be symmetric"),
        ({"J": np.eye(2)}, "zero diagonal"),
        ({"J": np.zeros((3, 3))}, r"J must have shape \(2, 2\)"),
        ({"h": np.array([np.nan, 0.0])}, "finite"),
        ({"offset": np.inf}, "offset must be finite"),
        ({"cardinality": 3}, r"cardinality must be an integer in 0..n=2"),
        ({"cardinality": 1, "penalty": 2.0}, "carries no penalty"),
        ({"penalty": -1.0}, "penalty must be a finite number >= 0"),
    ]:
        args = {"J": np.zeros((2, 2)), "h": np.zeros(2), "offset": 0.0, **kwargs}
        with pytest.raises(ValueError, match=match):
            SelectionProblem(**args)


def test_public_names_of_the_package():
    import qkrum.qubo as qubo

    for name in ("selection_qubo", "suspicion_penalty", "suspicion_qubo", "penalty_bound", "penalty_weight",
                 "qubo_energy", "objective_value", "OBJECTIVES", "solve_selection", "repair", "CERTIFY_MAX_SUBSETS",
                 "DEFAULT_SWEEPS", "SelectionSolution", "CardinalityRepairWarning", "SelectionProblem",
                 "selection_problem", "problem_from_qubo", "selection_coefficients", "exhaustive_optimum"):
        assert name in qubo.__all__ and hasattr(qubo, name)
