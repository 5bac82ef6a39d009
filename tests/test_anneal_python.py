"""The NumPy fallback qkrum.anneal._python against brute force and against qkrum._core."""

import collections
import itertools
import math
import re

import numpy as np
import pytest

from qkrum import _core as core
from qkrum.anneal import _python as pyanneal

IMPLS = [pytest.param(pyanneal, id="python"), pytest.param(core, id="native")]
SCHEDULE = np.geomspace(0.05, 20, 300)


# --- helpers ---------------------------------------------------------------------------

def random_qubo(rng, n, integer=False, density=1.0):
    if integer:
        A = rng.integers(-3, 4, size=(n, n)).astype(np.float64)
        h = rng.integers(-3, 4, size=n).astype(np.float64)
    else:
        A = rng.normal(size=(n, n))
        h = rng.normal(size=n)
    A *= rng.random((n, n)) < density
    J = np.triu(A, 1)
    return J + J.T, h


def to_csr(J):
    n = J.shape[0]
    indptr, indices, data = [0], [], []
    for i in range(n):
        cols = np.flatnonzero(J[i])
        indices.extend(cols.tolist())
        data.extend(J[i, cols].tolist())
        indptr.append(len(indices))
    return (np.array(indptr, np.int64), np.array(indices, np.int64), np.array(data, np.float64))


def energy(J, h, x):
    """h·x + Σ_{i<j} J_ij x_i x_j, summed term by term."""
    x = np.asarray(x, np.float64)
    return float(h @ x + np.triu(J, 1)[np.outer(x, x) > 0].sum())


def brute(J, h, cardinality=-1):
    """(E_min, sorted list of ground states, number of states) by itertools.product."""
    n = len(h)
    states = [s for s in itertools.product((0, 1), repeat=n)
              if cardinality < 0 or sum(s) == cardinality]
    es = np.array([energy(J, h, s) for s in states])
    e_min = es.min()
    tol = 1e-9 * max(1.0, abs(e_min))
    ground = sorted(s for s, e in zip(states, es) if abs(e - e_min) <= tol)
    return e_min, ground, len(states)


def as_set(states):
    return sorted(tuple(int(v) for v in row) for row in states)


# --- read_seed ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed,read", [(0, 0), (0, 1), (1, 0), (12345, 7), (2**63, 3),
                                       (2**64 - 1, 2**64 - 1), (0x9E3779B97F4A7C15, 2**40 + 5)])
def test_read_seed_matches_native(seed, read):
    value = pyanneal.read_seed(seed, read)
    assert isinstance(value, int)
    assert value == core.read_seed(seed, read)
    assert 0 <= value < 2**64


def test_read_seed_mixes():
    values = {pyanneal.read_seed(s, r) for s in range(4) for r in range(4)}
    assert len(values) == 16


# --- exact_dense -------------------------------------------------------------------------

@pytest.mark.parametrize("n", range(1, 13))
def test_exact_matches_brute_force(n):
    rng = np.random.default_rng(n)
    for integer in (False, True):  # integer coefficients give degenerate ground states
        J, h = random_qubo(rng, n, integer=integer)
        e_min, ground, total = brute(J, h)
        e, states, num_ground, searched = pyanneal.exact_dense(J, h, -1, 1000)
        assert isinstance(e, float) and isinstance(num_ground, int) and isinstance(searched, int)
        assert states.dtype == np.int8 and states.shape == (num_ground, n)
        assert e == pytest.approx(e_min, rel=1e-12, abs=1e-12)
        assert searched == total == 2**n
        assert num_ground == len(ground)
        assert as_set(states) == ground
        for x in states:
            assert energy(J, h, x) == pytest.approx(e_min, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_exact_cardinality_matches_brute_force(n):
    rng = np.random.default_rng(100 + n)
    for integer in (False, True):
        J, h = random_qubo(rng, n, integer=integer)
        for m in range(n + 1):
            e_min, ground, total = brute(J, h, m)
            e, states, num_ground, searched = pyanneal.exact_dense(J, h, m, 1000)
            assert e == pytest.approx(e_min, rel=1e-12, abs=1e-12)
            assert searched == total == math.comb(n, m)
            assert num_ground == len(ground)
            assert as_set(states) == ground
            assert (states.sum(axis=1) == m).all()


@pytest.mark.parametrize("n,cardinality", [(3, -1), (8, -1), (12, -1), (16, -1), (17, -1),
                                           (9, 4), (12, 0), (12, 12), (16, 5), (41, 2)])
def test_exact_matches_native(n, cardinality):
    rng = np.random.default_rng(7 * n + cardinality)
    for integer in (False, True):
        J, h = random_qubo(rng, n, integer=integer)
        py = pyanneal.exact_dense(J, h, cardinality, 10**6)
        nat = core.exact_dense(J, h, cardinality, 10**6)
        assert py[0] == pytest.approx(nat[0], rel=1e-9, abs=1e-9)
        assert py[2:] == nat[2:]
        assert as_set(py[1]) == as_set(nat[1])


def test_exact_chunking(monkeypatch):
    """Small chunks exercise the high-bit batches and the skipping of chunks in pass 2."""
    monkeypatch.setattr(pyanneal, "_LOW_BITS", 3)
    monkeypatch.setattr(pyanneal, "_CHUNK", 16)
    monkeypatch.setattr(pyanneal, "_SUBSET_CHUNK", 5)
    rng = np.random.default_rng(3)
    for n in (4, 9):
        J, h = random_qubo(rng, n, integer=True)
        e_min, ground, _ = brute(J, h)
        e, states, num_ground, _ = pyanneal.exact_dense(J, h, -1, 1000)
        assert e == e_min and num_ground == len(ground) and as_set(states) == ground
        e_min, ground, total = brute(J, h, 3)
        e, states, num_ground, searched = pyanneal.exact_dense(J, h, 3, 1000)
        assert e == e_min and num_ground == len(ground) and as_set(states) == ground
        assert searched == total


@pytest.mark.parametrize("impl", IMPLS)
def test_exact_degenerate(impl):
    n = 10
    e, states, num_ground, searched = impl.exact_dense(np.zeros((n, n)), np.zeros(n), -1, 7)
    assert e == 0.0 and num_ground == searched == 2**n
    assert states.shape == (7, n) and len(as_set(states)) == 7
    e, states, num_ground, searched = impl.exact_dense(np.zeros((n, n)), np.zeros(n), 4, 10**4)
    assert num_ground == searched == math.comb(n, 4)
    assert len(set(as_set(states))) == math.comb(n, 4) and (states.sum(axis=1) == 4).all()
    # max_states = 0 keeps no state but still counts them
    e, states, num_ground, _ = impl.exact_dense(np.zeros((n, n)), np.zeros(n), -1, 0)
    assert states.shape == (0, n) and num_ground == 2**n


@pytest.mark.parametrize("impl", IMPLS)
def test_exact_relative_tolerance(impl):
    """States within 1e-9·max(1, |E_min|) of the minimum are all ground states."""
    J = np.zeros((3, 3))
    J[0, 1] = J[1, 0] = J[0, 2] = J[2, 0] = J[1, 2] = J[2, 1] = 1e6
    for scale in (1.0, 1e4):
        for gap, ground in ((1e-12, 3), (1e-10, 3), (1e-8, 1)):
            h = -scale * np.array([1.0, 1.0 + gap, 1.0 + 2 * gap])
            e, states, num_ground, _ = impl.exact_dense(J, h, -1, 10)
            assert num_ground == ground and len(states) == ground
            assert (0, 0, 1) in as_set(states)


def test_exact_returns_first_states_in_enumeration_order():
    n = 6
    _, states, num_ground, _ = pyanneal.exact_dense(np.zeros((n, n)), np.zeros(n), -1, 5)
    index = (states.astype(np.int64) << np.arange(n)).sum(axis=1)
    assert index.tolist() == [0, 1, 2, 3, 4] and num_ground == 64


# --- annealing finds ground states --------------------------------------------------------

@pytest.mark.parametrize("order", ["sequential", "random"])
@pytest.mark.parametrize("n", [5, 10, 14])
def test_anneal_finds_ground_state(n, order):
    rng = np.random.default_rng(1000 + n)
    J, h = random_qubo(rng, n, density=0.7)
    e_exact = pyanneal.exact_dense(J, h, -1, 1)[0]
    for samples, energies, attempts in (
        pyanneal.anneal_dense(J, h, 200, SCHEDULE, 5, order, -1, 0, None),
        pyanneal.anneal_csr(*to_csr(J), h, 200, SCHEDULE, 5, order, -1, 0, None),
    ):
        assert samples.dtype == np.int8 and samples.shape == (200, n)
        assert energies.dtype == np.float64 and energies.shape == (200,)
        assert isinstance(attempts, int) and attempts == 200 * len(SCHEDULE) * n
        assert energies.min() == pytest.approx(e_exact, abs=1e-9)
        native = core.anneal_dense(J, h, 200, SCHEDULE, 5, order, -1, 0, None)[1]
        assert native.min() == pytest.approx(energies.min(), abs=1e-9)


@pytest.mark.parametrize("n,m", [(6, 2), (10, 3), (14, 7), (14, 1), (14, 13)])
def test_anneal_swaps_find_cardinality_optimum(n, m):
    rng = np.random.default_rng(2000 + n + m)
    J, h = random_qubo(rng, n)
    e_exact = pyanneal.exact_dense(J, h, m, 1)[0]
    assert e_exact == pytest.approx(core.exact_dense(J, h, m, 1)[0], abs=1e-9)
    for samples, energies, attempts in (
        pyanneal.anneal_dense(J, h, 200, SCHEDULE, 9, "sequential", m, 0, None),
        pyanneal.anneal_csr(*to_csr(J), h, 200, SCHEDULE, 9, "random", m, 0, None),
    ):
        assert (samples.sum(axis=1) == m).all()
        assert set(np.unique(samples)) <= {0, 1}
        assert attempts == 200 * len(SCHEDULE) * n
        assert energies.min() == pytest.approx(e_exact, abs=1e-9)
    native = core.anneal_dense(J, h, 200, SCHEDULE, 9, "sequential", m, 0, None)[1]
    assert native.min() == pytest.approx(e_exact, abs=1e-9)


def test_anneal_energies_match_samples():
    rng = np.random.default_rng(11)
    J, h = random_qubo(rng, 20)
    for card in (-1, 8):
        for order in ("sequential", "random"):
            samples, energies, _ = pyanneal.anneal_dense(J, h, 30, np.geomspace(0.1, 3, 20), 2,
                                                         order, card, 0, None)
            assert len(set(as_set(samples))) > 1  # warm end: not all reads collapse
            expected = [energy(J, h, x) for x in samples]
            np.testing.assert_allclose(energies, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["sequential", "random", "swap"])
def test_metropolis_samples_boltzmann(impl, mode):
    """At a fixed β the chain's stationary law is exp(−βE)/Z (checks the acceptance rule)."""
    rng = np.random.default_rng(5)
    n = 4
    J, h = random_qubo(rng, n)
    card = 2 if mode == "swap" else -1
    order = "random" if mode == "random" else "sequential"
    beta = 1.3
    reads = 4000
    samples, _, _ = impl.anneal_dense(J, h, reads, np.full(30, beta), 17, order, card, 0, None)
    states = [s for s in itertools.product((0, 1), repeat=n) if card < 0 or sum(s) == card]
    weights = np.exp(-beta * np.array([energy(J, h, s) for s in states]))
    expected = weights / weights.sum()
    index = {s: k for k, s in enumerate(states)}
    counts = np.zeros(len(states))
    for row in as_set(samples):
        counts[index[row]] += 1
    assert np.abs(counts / reads - expected).max() < 0.03
    assert 0.5 * np.abs(counts / reads - expected).sum() < 0.05


# --- determinism, initial states, schedules ------------------------------------------------

@pytest.mark.parametrize("card,order", [(-1, "sequential"), (-1, "random"), (4, "sequential")])
def test_determinism(card, order):
    rng = np.random.default_rng(12)
    J, h = random_qubo(rng, 12)
    sched = np.geomspace(0.01, 1, 10)
    a = pyanneal.anneal_dense(J, h, 50, sched, 123, order, card, 0, None)
    b = pyanneal.anneal_dense(J, h, 50, sched, 123, order, card, 4, None)  # num_threads ignored
    c = pyanneal.anneal_dense(J, h, 50, sched, 124, order, card, 0, None)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] == c[2]
    assert not np.array_equal(a[0], c[0])
    d = pyanneal.anneal_dense(J, h, 50, sched, 2**64 - 1, order, card, 0, None)
    assert not np.array_equal(a[0], d[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_order_ignored_in_swap_mode(impl):
    rng = np.random.default_rng(13)
    J, h = random_qubo(rng, 9)
    a = impl.anneal_dense(J, h, 20, np.geomspace(0.1, 5, 10), 4, "sequential", 3, 1, None)
    b = impl.anneal_dense(J, h, 20, np.geomspace(0.1, 5, 10), 4, "random", 3, 1, None)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("card", [-1, 0, 3, 7])
def test_empty_schedule_returns_initial_states(impl, card):
    rng = np.random.default_rng(14)
    n, reads = 7, 25
    J, h = random_qubo(rng, n)
    init = np.zeros((reads, n), np.int8)
    for r in range(reads):
        ones = rng.permutation(n)[: (card if card >= 0 else rng.integers(0, n + 1))]
        init[r, ones] = 1 if r % 2 else 5  # any nonzero value counts as 1
    samples, energies, attempts = impl.anneal_dense(J, h, reads, np.array([]), 1, "sequential",
                                                    card, 0, init)
    np.testing.assert_array_equal(samples, (init != 0).astype(np.int8))
    np.testing.assert_allclose(energies, [energy(J, h, x) for x in samples], atol=1e-12)
    assert attempts == 0
    # without initial states: random states (uniform m-subsets in cardinality mode)
    samples, _, attempts = impl.anneal_dense(J, h, reads, np.array([]), 1, "sequential", card,
                                             0, None)
    assert attempts == 0 and len(set(as_set(samples))) > (1 if 0 < card < n else 0)
    if card >= 0:
        assert (samples.sum(axis=1) == card).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_random_initial_states_are_uniform(impl):
    reads = 5000
    samples, _, _ = impl.anneal_dense(np.zeros((6, 6)), np.zeros(6), reads, np.array([]), 3,
                                      "sequential", -1, 0, None)
    assert np.abs(samples.mean(axis=0) - 0.5).max() < 0.03
    assert np.abs(np.corrcoef(samples.T.astype(float)) - np.eye(6)).max() < 0.06
    samples, _, _ = impl.anneal_dense(np.zeros((5, 5)), np.zeros(5), reads, np.array([]), 3,
                                      "sequential", 2, 0, None)
    counts = collections.Counter(as_set(samples))
    assert len(counts) == 10
    assert max(abs(c / reads - 0.1) for c in counts.values()) < 0.02


@pytest.mark.parametrize("impl", IMPLS)
def test_nothing_moves_at_full_or_empty_cardinality(impl):
    rng = np.random.default_rng(15)
    n = 6
    J, h = random_qubo(rng, n)
    for m in (0, n):
        samples, energies, attempts = impl.anneal_dense(J, h, 4, np.ones(5), 0, "sequential", m,
                                                        0, None)
        assert attempts == 0
        assert (samples == (1 if m else 0)).all()
        np.testing.assert_allclose(energies, energy(J, h, samples[0]))


def test_initial_states_are_honoured():
    rng = np.random.default_rng(16)
    n, reads = 12, 40
    J, h = random_qubo(rng, n)
    init = (rng.random((reads, n)) < 0.5).astype(np.int8)
    e0 = np.array([energy(J, h, x) for x in init])
    # Zero temperature: only moves that do not raise the energy are accepted.
    for order in ("sequential", "random"):
        samples, energies, _ = pyanneal.anneal_dense(J, h, reads, np.full(2, 1e9), 3, order, -1,
                                                     0, init)
        assert (energies <= e0 + 1e-12).all()
        assert (energies < e0 - 1e-12).any()
    # One cold sweep from a local minimum stays there.
    local_min = pyanneal.anneal_dense(J, h, reads, np.full(20, 1e9), 3, "sequential", -1, 0,
                                      init)[0]
    again = pyanneal.anneal_dense(J, h, reads, np.full(1, 1e9), 99, "random", -1, 0, local_min)[0]
    np.testing.assert_array_equal(again, local_min)
    # Swap mode starts from (and keeps the cardinality of) the given subsets.
    init = np.zeros((reads, n), np.int8)
    init[:, :4] = 1
    samples, energies, _ = pyanneal.anneal_dense(J, h, reads, np.full(3, 1e9), 3, "sequential", 4,
                                                 0, init)
    assert (samples.sum(axis=1) == 4).all()
    assert (energies <= energy(J, h, init[0]) + 1e-12).all()


def test_zero_beta_accepts_every_flip():
    n = 5
    J, h = np.zeros((n, n)), np.full(n, 100.0)
    init = np.zeros((3, n), np.int8)
    samples, _, _ = pyanneal.anneal_dense(J, h, 3, np.zeros(1), 0, "sequential", -1, 0, init)
    assert (samples == 1).all()  # every uphill flip accepted at β = 0
    samples, _, _ = pyanneal.anneal_dense(J, h, 3, np.full(1, 1e9), 0, "sequential", -1, 0, init)
    assert (samples == 0).all()


# --- the CSR path without densifying ----------------------------------------------------------

@pytest.mark.parametrize("card,order", [(-1, "sequential"), (-1, "random"), (5, "sequential")])
def test_csr_row_path_equals_dense(monkeypatch, card, order):
    """With integer couplings every field is exact, so both paths take the same decisions."""
    rng = np.random.default_rng(17)
    n = 40
    J, h = random_qubo(rng, n, integer=True, density=0.2)
    sched = np.geomspace(0.05, 5, 8)
    dense = pyanneal.anneal_dense(J, h, 64, sched, 8, order, card, 0, None)
    monkeypatch.setattr(pyanneal, "_DENSIFY_MAX_N", 0)
    monkeypatch.setattr(pyanneal, "_BLOCK", 7)  # blocks that straddle rows unevenly
    sparse = pyanneal.anneal_csr(*to_csr(J), h, 64, sched, 8, order, card, 0, None)
    np.testing.assert_array_equal(dense[0], sparse[0])
    np.testing.assert_array_equal(dense[1], sparse[1])
    assert dense[2] == sparse[2]
    assert len(set(as_set(sparse[0]))) > 1


def test_csr_row_path_with_empty_rows_and_duplicates(monkeypatch):
    n = 6
    J = np.zeros((n, n))
    J[0, 3] = J[3, 0] = -2.0
    J[1, 4] = J[4, 1] = 1.5
    h = np.array([1.0, -1.0, 0.5, 0.5, -1.0, -0.25])
    # row 0 holds its (0, 3) entry split into two duplicates; rows 2 and 5 are empty
    indptr = np.array([0, 2, 3, 3, 4, 5, 5])
    indices = np.array([3, 3, 4, 0, 1])
    data = np.array([-0.5, -1.5, 1.5, -2.0, 1.5])
    e_exact = pyanneal.exact_dense(J, h, -1, 1)[0]
    for limit in (2000, 0):
        monkeypatch.setattr(pyanneal, "_DENSIFY_MAX_N", limit)
        for order in ("sequential", "random"):
            samples, energies, _ = pyanneal.anneal_csr(indptr, indices, data, h, 50, SCHEDULE, 1,
                                                       order, -1, 0, None)
            assert energies.min() == pytest.approx(e_exact)
            np.testing.assert_allclose(energies, [energy(J, h, x) for x in samples], atol=1e-12)


# --- errors: the same type and message from both implementations -------------------------------

Z3, H3 = np.zeros((3, 3)), np.zeros(3)
B1 = np.ones(2)
CSR3 = (np.array([0, 1, 2, 2]), np.array([1, 0]), np.array([1.0, 1.0]))


def dense(J=Z3, h=H3, num_reads=2, beta=B1, seed=0, order="sequential", card=-1, init=None):
    return lambda impl: impl.anneal_dense(J, h, num_reads, beta, seed, order, card, 0, init)


def csr(indptr=CSR3[0], indices=CSR3[1], data=CSR3[2], h=H3, num_reads=2, beta=B1,
        order="sequential", card=-1, init=None):
    return lambda impl: impl.anneal_csr(indptr, indices, data, h, num_reads, beta, 0, order, card,
                                        0, init)


def exact(J=Z3, h=H3, card=-1):
    return lambda impl: impl.exact_dense(J, h, card, 10)


ERRORS = [
    (dense(J=np.zeros((2, 3))), "J must be a square matrix"),
    (dense(J=np.zeros(3)), "J must be a square matrix"),
    (dense(h=np.zeros(2)), "h must have shape (n,)"),
    (dense(h=np.zeros((3, 1))), "h must have shape (n,)"),
    (dense(J=np.zeros((0, 0)), h=np.zeros(0)),
     "the QUBO must have at least one variable, got n=0"),
    (dense(num_reads=0), "num_reads must be >= 1, got num_reads=0"),
    (dense(num_reads=-3), "num_reads must be >= 1, got num_reads=-3"),
    (dense(beta=np.array([1.0, -1.0])), "beta_schedule must hold finite values >= 0, got -1.000000"),
    (dense(beta=np.array([np.nan])), "beta_schedule must hold finite values >= 0, got nan"),
    (dense(beta=np.array([np.inf])), "beta_schedule must hold finite values >= 0, got inf"),
    (dense(beta=np.array([-np.inf])), "beta_schedule must hold finite values >= 0, got -inf"),
    (dense(beta=np.array([-0.125])), "beta_schedule must hold finite values >= 0, got -0.125000"),
    (dense(card=4), "cardinality must be <= n=3, got cardinality=4"),
    (dense(order="shuffled"), "order must be 'sequential' or 'random', got 'shuffled'"),
    (dense(order=""), "order must be 'sequential' or 'random', got ''"),
    (dense(init=np.zeros((2, 2), np.int8)), "initial_states must have shape (num_reads, n)"),
    (dense(init=np.zeros((3, 3), np.int8)), "initial_states must have shape (num_reads, n)"),
    (dense(init=np.zeros(3, np.int8)), "initial_states must have shape (num_reads, n)"),
    (dense(card=1, init=np.array([[1, 0, 0], [1, 1, 0]], np.int8)),
     "initial_states row 1 has 2 ones but cardinality=1"),
    (dense(card=2, init=np.array([[0, 0, 0], [1, 1, 0]], np.int8)),
     "initial_states row 0 has 0 ones but cardinality=2"),
    (csr(indptr=np.array([0, 1, 2])), "indptr must have shape (n + 1,)"),
    (csr(data=np.array([1.0])), "indices and data must have the same length"),
    (csr(indptr=np.array([1, 1, 2, 2])), "indptr must start at 0 and end at nnz"),
    (csr(indptr=np.array([0, 1, 2, 1])), "indptr must start at 0 and end at nnz"),
    (csr(indices=np.array([1, 3])), "indices must lie in [0, n)"),
    (csr(indices=np.array([-1, 0])), "indices must lie in [0, n)"),
    (csr(indptr=np.array([0]), indices=np.array([], np.int64), data=np.array([]), h=np.zeros(0)),
     "the QUBO must have at least one variable, got n=0"),
    (csr(num_reads=0), "num_reads must be >= 1, got num_reads=0"),
    (csr(beta=np.array([-2.0])), "beta_schedule must hold finite values >= 0, got -2.000000"),
    (csr(card=9), "cardinality must be <= n=3, got cardinality=9"),
    (csr(order="x"), "order must be 'sequential' or 'random', got 'x'"),
    (csr(init=np.zeros((1, 3), np.int8)), "initial_states must have shape (num_reads, n)"),
    (csr(card=0, init=np.array([[0, 0, 0], [0, 0, 1]], np.int8)),
     "initial_states row 1 has 1 ones but cardinality=0"),
    (exact(J=np.zeros((3, 2))), "J must be a square matrix"),
    (exact(h=np.zeros(4)), "h must have shape (n,)"),
    (exact(J=np.zeros((0, 0)), h=np.zeros(0)), "the QUBO must have at least one variable, got n=0"),
    (exact(card=5), "cardinality must be <= n=3, got cardinality=5"),
    (exact(J=np.zeros((41, 41)), h=np.zeros(41)),
     "exhaustive search over 2^n states needs n <= 40, got n=41"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("call,message", ERRORS)
def test_errors_match_native(impl, call, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        call(impl)
    assert str(info.value) == message


TYPE_ERRORS = [
    dense(seed=-1),
    dense(seed=2**64),
    dense(num_reads=2.5),
    dense(order=3),
    lambda impl: impl.read_seed(-1, 0),
    lambda impl: impl.exact_dense(Z3, H3, 1.5, 10),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("call", TYPE_ERRORS)
def test_type_errors_match_native(impl, call):
    with pytest.raises(TypeError):
        call(impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_accepted_edge_values(impl):
    """Values both implementations accept: −0.0 in the schedule, the largest seed, n > 40
    in cardinality mode, cardinality below −1 (plain flips)."""
    s, e, a = impl.anneal_dense(Z3, H3, 2, np.array([-0.0, 1.0]), 2**64 - 1, "random", -5, 0, None)
    assert s.shape == (2, 3) and a == 12
    J = np.zeros((41, 41))
    J[0, 1] = J[1, 0] = -1.0
    e, states, num_ground, searched = impl.exact_dense(J, np.zeros(41), 2, 10)
    assert e == -1.0 and num_ground == 1 and searched == math.comb(41, 2)
    assert states.tolist() == [[1, 1] + [0] * 39]
