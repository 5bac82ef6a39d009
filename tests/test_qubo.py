"""qkrum.qubo: coefficients by hand, optimum = brute force, the penalty bound."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qkrum.anneal import exact_ground_state, solve_qubo
from qkrum.qubo import penalty_bound, qubo_energy, selection_qubo


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
