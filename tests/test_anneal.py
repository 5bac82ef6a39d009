"""qkrum.anneal: the dimod sampler, the exact solver, schedules, determinism, bad input.

Each implementation (the C++ extension and the NumPy fallback) runs the same tests.
"""

import itertools
import unittest

import dimod
import dimod.testing
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qkrum._native import core
from qkrum.anneal import ExactSolver, SimulatedAnnealingSampler, exact_ground_state
from qkrum.anneal.schedule import default_beta_range, exchange_energy_scale, make_beta_schedule


def brute_force(Q, m=None):
    """Lowest energy of an upper-triangular QUBO over all states (or all |x| = m)."""
    n = Q.shape[0]
    best = np.inf
    for bits in itertools.product((0, 1), repeat=n):
        x = np.array(bits, float)
        if m is not None and x.sum() != m:
            continue
        best = min(best, x @ np.diag(Q) + x @ np.triu(Q, 1) @ x)
    return best


def random_qubo(rng, n):
    Q = np.triu(rng.standard_normal((n, n)))
    return Q


def random_bqm(rng, n, vartype="BINARY"):
    Q = random_qubo(rng, n)
    bqm = dimod.BinaryQuadraticModel.from_qubo({(i, j): Q[i, j] for i in range(n) for j in range(i, n)}, 0.5)
    return bqm if vartype == "BINARY" else bqm.change_vartype("SPIN", inplace=False)


# --- dimod conformance -------------------------------------------------------------------

@dimod.testing.load_sampler_bqm_tests(SimulatedAnnealingSampler)
class TestSamplerBqm(unittest.TestCase):
    pass


@dimod.testing.load_sampler_bqm_tests(ExactSolver)
class TestExactBqm(unittest.TestCase):
    pass


def test_sampler_api():
    dimod.testing.assert_sampler_api(SimulatedAnnealingSampler())
    dimod.testing.assert_sampler_api(ExactSolver())
    sampler = SimulatedAnnealingSampler()
    assert sampler.properties["beta_schedule_options"] == ("linear", "geometric", "custom")
    for name in ("num_reads", "num_sweeps", "beta_range", "beta_schedule_type", "seed", "initial_states",
                 "cardinality", "num_threads", "randomize_order"):
        assert name in sampler.parameters


# --- finding ground states ------------------------------------------------------------------

@pytest.mark.parametrize("vartype", ["BINARY", "SPIN"])
def test_annealer_finds_exact_ground_state(implementation, rng, vartype):
    for n in (1, 2, 7, 12):
        bqm = random_bqm(rng, n, vartype)
        ground = dimod.ExactSolver().sample(bqm).first.energy
        ss = SimulatedAnnealingSampler().sample(bqm, num_reads=50, num_sweeps=300, seed=3)
        assert ss.vartype is bqm.vartype
        assert ss.first.energy == pytest.approx(ground, abs=1e-9)
        np.testing.assert_allclose(ss.record.energy, bqm.energies(ss), atol=1e-9)
        assert ss.info["implementation"] == implementation
        assert ss.info["flip_attempts"] == 50 * 300 * n
        assert set(ss.info["timing"]) == {"preprocessing_ns", "sampling_ns", "postprocessing_ns"}


def test_sparse_problem_uses_csr_and_agrees(implementation, rng):
    # A chain is sparse: the sampler stores it as CSR.
    n = 30
    bqm = dimod.generators.chimera_anticluster(1, 1, 4, seed=5)  # 8 spins, sparse bipartite
    ground = dimod.ExactSolver().sample(bqm).first.energy
    assert SimulatedAnnealingSampler().sample(bqm, num_reads=30, seed=1).first.energy == pytest.approx(ground)
    chain = dimod.BinaryQuadraticModel({i: rng.normal() for i in range(n)},
                                       {(i, i + 1): rng.normal() for i in range(n - 1)}, 0.0, "SPIN")
    ss = SimulatedAnnealingSampler().sample(chain, num_reads=20, seed=2)
    # A chain's ground state is easy to get by dynamic programming; compare with it.
    assert ss.first.energy == pytest.approx(_chain_ground(chain, n), abs=1e-9)


def _chain_ground(bqm, n):
    best = {s: bqm.linear[0] * s for s in (-1, 1)}
    for i in range(1, n):
        best = {s: bqm.linear[i] * s + min(best[t] + bqm.quadratic[(i - 1, i)] * t * s for t in (-1, 1))
                for s in (-1, 1)}
    return min(best.values())


@pytest.mark.parametrize("m", [0, 1, 4, 9])
def test_cardinality_mode_keeps_m_and_finds_constrained_optimum(implementation, rng, m):
    n = 9
    Q = random_qubo(rng, n)
    bqm = dimod.BinaryQuadraticModel.from_qubo({(i, j): Q[i, j] for i in range(n) for j in range(i, n)})
    ss = SimulatedAnnealingSampler().sample(bqm, num_reads=40, num_sweeps=200, cardinality=m, seed=4)
    assert np.all(ss.record.sample.sum(axis=1) == m)
    assert ss.first.energy == pytest.approx(brute_force(Q, m), abs=1e-9)
    exact = ExactSolver().sample(bqm, cardinality=m)
    assert exact.first.energy == pytest.approx(brute_force(Q, m), abs=1e-9)
    assert exact.info["num_states_searched"] == len(list(itertools.combinations(range(n), m)))


def test_exact_solver_ground_states_and_degeneracy(implementation):
    # Two degenerate ground states: x = (1, 0) and (0, 1) at energy -1.
    bqm = dimod.BinaryQuadraticModel({"a": -1, "b": -1}, {("a", "b"): 2}, 0.0, "BINARY")
    ss = ExactSolver().sample(bqm)
    assert ss.info["num_ground"] == 2 and len(ss) == 2
    assert sorted(tuple(s.values()) for s in ss.samples()) == [(0, 1), (1, 0)]
    assert np.all(ss.record.energy == -1)


@given(st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_exact_ground_state_equals_brute_force(n, seed):
    Q = random_qubo(np.random.default_rng(seed), n)
    res = exact_ground_state(Q, 0.25)
    assert res.energy == pytest.approx(brute_force(Q) + 0.25, abs=1e-9)
    assert res.num_states_searched == 2**n
    m = seed % (n + 1)
    assert exact_ground_state(Q, cardinality=m).energy == pytest.approx(brute_force(Q, m), abs=1e-9)


# --- schedules and determinism --------------------------------------------------------------

def test_same_seed_same_samples_regardless_of_threads(implementation, rng):
    bqm = random_bqm(rng, 20)
    # A short hot anneal keeps the samples random, so equal samples mean equal streams.
    hot = dict(num_reads=16, num_sweeps=5, beta_range=(1e-3, 1e-2))
    runs = [SimulatedAnnealingSampler().sample(bqm, seed=11, num_threads=t, **hot) for t in (1, 2, 3)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].record.sample, other.record.sample)
    assert len({tuple(r) for r in runs[0].record.sample}) > 8  # the reads really differ
    different = SimulatedAnnealingSampler().sample(bqm, seed=12, **hot)
    assert not np.array_equal(runs[0].record.sample, different.record.sample)


def test_native_and_python_share_read_seeds():
    if core is None:
        pytest.skip("native extension not built")
    from qkrum.anneal import _python

    for seed, read in [(0, 0), (1, 5), (2**63 + 7, 123456)]:
        assert core.read_seed(seed, read) == _python.read_seed(seed, read)


def test_initial_states_and_zero_sweeps(implementation, rng):
    bqm = random_bqm(rng, 6)
    init = dimod.SampleSet.from_samples(([[0, 1, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0]], range(6)), "BINARY", 0)
    ss = SimulatedAnnealingSampler().sample(bqm, initial_states=init, num_sweeps=0, seed=1)
    assert len(ss) == 2
    got = sorted(tuple(int(v) for v in row) for row in ss.record.sample)
    assert got == sorted([(0, 1, 0, 1, 1, 0), (1, 1, 1, 0, 0, 0)])


def test_exchange_energy_scale_matches_the_exact_population_std(rng):
    n, m = 8, 3
    A = rng.normal(size=(n, n))
    J = np.triu(A, 1) + np.triu(A, 1).T
    h = rng.normal(size=n)
    deltas = []  # every exchange of every m-subset, weighted equally (as the estimator samples)
    for subset in itertools.combinations(range(n), m):
        x = np.zeros(n)
        x[list(subset)] = 1
        f = h + J @ x
        outside = [b for b in range(n) if b not in subset]
        deltas += [f[b] - J[a, b] - f[a] for a in subset for b in outside]
    exact = np.std(deltas)
    est = exchange_energy_scale(h, m, J=J, states=64, exchanges=512)
    assert est == pytest.approx(exact, rel=0.05)
    # The CSR path reads the same couplings: the same estimate.
    indptr = np.arange(0, n * (n - 1) + 1, n - 1)
    indices = np.array([j for i in range(n) for j in range(n) if j != i])
    data = np.array([J[i, j] for i in range(n) for j in range(n) if j != i])
    assert exchange_energy_scale(h, m, csr=(indptr, indices, data), states=64, exchanges=512) == pytest.approx(est)
    assert exchange_energy_scale(h, 0, J=J) == exchange_energy_scale(h, n, J=J) == 0.0


def test_cardinality_mode_hot_end_accepts_a_typical_exchange_with_probability_half(rng):
    n, m = 30, 20
    bqm = random_bqm(rng, n)
    ss = SimulatedAnnealingSampler().sample(bqm, cardinality=m, num_reads=2, num_sweeps=10, seed=0)
    h, (irow, icol, q), _ = bqm.to_numpy_vectors(variable_order=list(range(n)))
    J = np.zeros((n, n))
    J[irow, icol] = q
    J = J + J.T
    scale = exchange_energy_scale(h, m, J=J)
    assert ss.info["beta_range"][0] == pytest.approx(max(np.log(2) / scale, default_beta_range(
        h, np.abs(J).sum(1), q, swaps=True)[0]))


def test_schedule_types():
    np.testing.assert_allclose(make_beta_schedule((1, 100), 3, "geometric"), [1, 10, 100])
    np.testing.assert_allclose(make_beta_schedule((1, 3), 3, "linear"), [1, 2, 3])
    np.testing.assert_allclose(make_beta_schedule((1, 3), 4, "linear", num_sweeps_per_beta=2), [1, 1, 3, 3])
    np.testing.assert_allclose(make_beta_schedule(None, 0, "custom", 1, [0.5, 2]), [0.5, 2])


def test_custom_schedule_is_used(implementation, rng):
    bqm = random_bqm(rng, 5)
    ss = SimulatedAnnealingSampler().sample(bqm, beta_schedule_type="custom", beta_schedule=[0.1, 1, 10],
                                            num_reads=2, seed=0)
    assert ss.info["flip_attempts"] == 2 * 3 * 5 and ss.info["beta_range"] == [0.1, 10]


def test_default_beta_range_resolves_spread_not_penalty():
    # Couplings all near a large penalty 1000, spread 1: the cold end must resolve the spread.
    rng = np.random.default_rng(0)
    n = 50
    pairs = 1000 + rng.uniform(-1, 1, n * (n - 1) // 2)
    h = np.full(n, -50_000.0) + rng.uniform(-1, 1, n)
    row_abs = np.full(n, 1000.0 * (n - 1))
    hot, cold = default_beta_range(h, row_abs, pairs)
    assert hot == pytest.approx(np.log(2) / (50_001 + 1000 * 49), rel=1e-3)
    # an excitation of size 1 (the spread) is accepted with probability <= 0.01 / n at the end
    assert np.exp(-cold * np.std(pairs)) <= 0.01 / n * 1.0001
    # dwave-samplers' rule would set the cold end from the smallest coefficient (~999)
    assert cold > 100 * np.log(100) / 999


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    ({"num_reads": 0}, ValueError, "num_reads must be >= 1, got num_reads=0"),
    ({"num_reads": 2.0}, TypeError, "num_reads must be an integer"),
    ({"num_sweeps": -1}, ValueError, "num_sweeps must be >= 0, got num_sweeps=-1"),
    ({"beta_range": (2.0, 1.0)}, ValueError, "beta_min <= beta_max"),
    ({"beta_range": (-1.0, 1.0)}, ValueError, "finite values >= 0"),
    ({"beta_range": (0.0, 1.0)}, ValueError, "> 0 for a geometric"),
    ({"beta_range": (1.0,)}, ValueError, "pair"),
    ({"beta_schedule_type": "cosine"}, ValueError, "beta_schedule_type must be one of"),
    ({"beta_schedule_type": "custom"}, ValueError, "beta_schedule must be given"),
    ({"beta_schedule_type": "custom", "beta_schedule": [1, -2]}, ValueError, "finite values >= 0"),
    ({"beta_schedule": [1, 2]}, ValueError, "beta_schedule must be None"),
    ({"num_sweeps": 3, "num_sweeps_per_beta": 2}, ValueError, "divisible"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"cardinality": 9}, ValueError, "cardinality must be <= the number of variables n=4, got cardinality=9"),
    ({"proposal_acceptance_criteria": "Gibbs"}, ValueError, "Metropolis"),
    ({"bogus": 1}, TypeError, "unknown parameter"),
])
def test_bad_parameters(kwargs, exc, match):
    bqm = dimod.BinaryQuadraticModel({i: 1.0 for i in range(4)}, {(0, 1): -2.0}, 0.0, "BINARY")
    with pytest.raises(exc, match=match):
        SimulatedAnnealingSampler().sample(bqm, **kwargs)


def test_bad_models_and_initial_states():
    sampler = SimulatedAnnealingSampler()
    with pytest.raises(ValueError, match="the QUBO must be finite, got linear bias nan on variable 'a'"):
        sampler.sample(dimod.BinaryQuadraticModel({"a": np.nan}, {}, 0.0, "BINARY"))
    with pytest.raises(ValueError, match=r"quadratic bias inf on \('[ab]', '[ab]'\)"):
        sampler.sample(dimod.BinaryQuadraticModel({"a": 1, "b": 1}, {("a", "b"): np.inf}, 0.0, "BINARY"))
    bqm = dimod.BinaryQuadraticModel({i: 1.0 for i in range(3)}, {}, 0.0, "BINARY")
    with pytest.raises(ValueError):  # values outside the vartype
        sampler.sample(bqm, initial_states=([[0, 2, 1]], range(3)))
    with pytest.raises(ValueError):  # wrong variables
        sampler.sample(bqm, initial_states=([[0, 1]], range(2)))
    with pytest.raises(ValueError, match="initial_states row 0 has 2 ones but cardinality=1"):
        sampler.sample(bqm, initial_states=([[1, 1, 0]], range(3)), cardinality=1)


def test_exact_solver_limits():
    with pytest.raises(ValueError, match="limited to n <= 30"):
        exact_ground_state(np.eye(31))
    with pytest.raises(ValueError, match="cardinality must be an integer in 0..n=3"):
        exact_ground_state(np.eye(3), cardinality=4)
    with pytest.raises(ValueError, match="Q must be finite"):
        exact_ground_state(np.array([[np.nan]]))


def test_swap_moves_solve_penalised_selection_qubo(implementation, rng):
    from qkrum.qubo import selection_qubo

    n, m = 12, 9
    a = rng.uniform(0.2, 1.5, (n, n))
    D = (a + a.T) / 2
    np.fill_diagonal(D, 0)
    Q, offset = selection_qubo(D, m, objective="paper", lam="paper")
    bqm = dimod.BinaryQuadraticModel.from_qubo({(i, j): Q[i, j] for i in range(n) for j in range(i, n)}, offset)
    ground = exact_ground_state(Q, offset).energy
    auto = SimulatedAnnealingSampler().sample(bqm, num_reads=30, num_sweeps=200, seed=1)
    assert auto.info["swap_moves"] is True  # detected as cardinality-penalised
    assert auto.first.energy == pytest.approx(ground, abs=1e-9)
    assert auto.info["flip_attempts"] > 30 * 200 * n  # exchanges were attempted too
    off = SimulatedAnnealingSampler().sample(bqm, num_reads=30, num_sweeps=200, seed=1, swap_moves=False)
    assert off.info["swap_moves"] is False and off.info["flip_attempts"] == 30 * 200 * n
    # an unpenalised random model is left to single flips
    assert SimulatedAnnealingSampler().sample(random_bqm(rng, 8), num_reads=2, seed=0).info["swap_moves"] is False


def test_swap_moves_sample_the_boltzmann_distribution(implementation):
    # Exchanges satisfy detailed balance: at fixed beta the empirical distribution over all
    # 2^n states matches exp(-beta E) / Z.
    rng = np.random.default_rng(7)
    n = 4
    Q = np.triu(rng.uniform(-1, 1, (n, n)))
    bqm = dimod.BinaryQuadraticModel.from_qubo({(i, j): Q[i, j] for i in range(n) for j in range(i, n)})
    beta = 0.7
    ss = SimulatedAnnealingSampler().sample(bqm, num_reads=20_000, beta_schedule_type="custom",
                                            beta_schedule=[beta] * 30, swap_moves=True, seed=3)
    states = np.array(list(itertools.product((0, 1), repeat=n)))
    energies = bqm.energies((states, range(n)))
    want = np.exp(-beta * energies)
    want /= want.sum()
    order = [ss.variables.index(v) for v in range(n)]
    codes = ss.record.sample[:, order] @ (2 ** np.arange(n)[::-1])
    got = np.bincount(codes, minlength=2**n) / len(codes)
    assert np.abs(got - want).max() < 0.015
