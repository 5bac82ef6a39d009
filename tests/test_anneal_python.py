"""The NumPy fallback qkrum.anneal._python against brute force and against qkrum._core."""

import collections
import itertools
import math

import numpy as np
import pytest

from qkrum import _core as core
from qkrum import _native
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


# --- errors: one check in qkrum._native before either implementation runs ---------------------

Z3, H3 = np.zeros((3, 3)), np.zeros(3)
B1 = np.ones(2)
CSR3 = (np.array([0, 1, 2, 2]), np.array([1, 0]), np.array([1.0, 1.0]))
LIMIT = _native.MAX_EXHAUSTIVE_VARIABLES


def dense(J=Z3, h=H3, num_reads=2, beta=B1, seed=0, order="sequential", card=-1, threads=0, init=None,
          swap=False):
    return lambda: _native.check_anneal_arguments(
        h, J, num_reads=num_reads, beta_schedule=beta, seed=seed, order=order, cardinality=card,
        num_threads=threads, initial_states=init, swap_moves=swap)


def csr(indptr=CSR3[0], indices=CSR3[1], data=CSR3[2], h=H3, num_reads=2, beta=B1, order="sequential",
        card=-1, init=None):
    return lambda: _native.check_anneal_arguments(
        h, csr=(indptr, indices, data), num_reads=num_reads, beta_schedule=beta, seed=0, order=order,
        cardinality=card, num_threads=0, initial_states=init)


def exact(J=Z3, h=H3, card=None, max_states=10):
    return lambda: _native.check_exact_arguments(h, J, cardinality=card, max_states=max_states)


def zeros(n):
    return np.zeros((n, n)), np.zeros(n)


ERRORS = [
    (dense(J=np.zeros((2, 3))), ValueError, "J must have shape (n, n) = (3, 3) for n = len(h), got J.shape=(2, 3)"),
    (dense(J=np.zeros(3)), ValueError, "J must have shape (n, n) = (3, 3) for n = len(h), got J.shape=(3,)"),
    (dense(h=np.zeros(2)), ValueError, "J must have shape (n, n) = (2, 2) for n = len(h), got J.shape=(3, 3)"),
    (dense(h=np.zeros((3, 1))), ValueError, "h must have shape (n,), got h.shape=(3, 1)"),
    (dense(J=np.zeros((0, 0)), h=np.zeros(0)), ValueError, "the QUBO must have at least one variable, got n=0"),
    (lambda: _native.check_anneal_arguments(H3, num_reads=2, beta_schedule=B1, seed=0, order="random",
                                            cardinality=-1, num_threads=0, initial_states=None),
     TypeError, "exactly one of J (dense couplings) and csr (indptr, indices, data) must be given"),
    (dense(num_reads=0), ValueError, "num_reads must be >= 1, got num_reads=0"),
    (dense(num_reads=-3), ValueError, "num_reads must be >= 1, got num_reads=-3"),
    (dense(num_reads=2.5), TypeError, "num_reads must be an integer, got 2.5 of type float"),
    (dense(beta=np.array([1.0, -1.0])), ValueError,
     "beta_schedule must hold finite values >= 0, got beta_schedule[1]=-1.0"),
    (dense(beta=np.array([np.nan])), ValueError,
     "beta_schedule must hold finite values >= 0, got beta_schedule[0]=nan"),
    (dense(beta=np.array([1.0, -np.nan])), ValueError,
     "beta_schedule must hold finite values >= 0, got beta_schedule[1]=nan"),
    (dense(beta=np.array([np.inf])), ValueError,
     "beta_schedule must hold finite values >= 0, got beta_schedule[0]=inf"),
    (dense(beta=np.array([-np.inf])), ValueError,
     "beta_schedule must hold finite values >= 0, got beta_schedule[0]=-inf"),
    (dense(beta=[-0.125]), ValueError, "beta_schedule must hold finite values >= 0, got beta_schedule[0]=-0.125"),
    (dense(beta=np.ones((1, 2))), ValueError,
     "beta_schedule must be a 1-D array of numbers, got shape (1, 2) and dtype float64"),
    (dense(seed=-1), ValueError, "seed must be >= 0, got seed=-1"),
    (dense(seed=2**64), ValueError, f"seed must be <= {2**64 - 1}, got seed={2**64}"),
    (dense(seed=1.0), TypeError, "seed must be an integer, got 1.0 of type float"),
    (dense(card=4), ValueError, "cardinality must be <= n=3, got cardinality=4"),
    (dense(card=1.5), TypeError, "cardinality must be an integer, got 1.5 of type float"),
    (dense(order="shuffled"), ValueError, "order must be 'sequential' or 'random', got order='shuffled'"),
    (dense(order=""), ValueError, "order must be 'sequential' or 'random', got order=''"),
    (dense(order=3), TypeError, "order must be a str, 'sequential' or 'random', got order=3"),
    (dense(threads=-1), ValueError, "num_threads must be >= 0, got num_threads=-1"),
    (dense(swap="yes"), TypeError, "swap_moves must be a bool, got swap_moves='yes'"),
    (dense(init=np.zeros((2, 2), np.int8)), ValueError,
     "initial_states must have shape (num_reads, n) = (2, 3), got initial_states.shape=(2, 2)"),
    (dense(init=np.zeros((3, 3), np.int8)), ValueError,
     "initial_states must have shape (num_reads, n) = (2, 3), got initial_states.shape=(3, 3)"),
    (dense(init=np.zeros(3, np.int8)), ValueError,
     "initial_states must have shape (num_reads, n) = (2, 3), got initial_states.shape=(3,)"),
    (dense(init=np.zeros((2, 3))), TypeError, "initial_states must hold integers 0/1, got dtype float64"),
    (dense(init=np.array([[0, 5, 0], [1, 0, 0]])), ValueError,
     "initial_states must hold 0/1 values, got initial_states[0, 1]=5"),
    (dense(card=1, init=np.array([[1, 0, 0], [1, 1, 0]], np.int8)), ValueError,
     "initial_states row 1 has 2 ones but cardinality=1"),
    (dense(card=2, init=np.array([[0, 0, 0], [1, 1, 0]], np.int8)), ValueError,
     "initial_states row 0 has 0 ones but cardinality=2"),
    (csr(indptr=np.array([0, 1, 2])), ValueError, "indptr must have shape (n + 1,) = (4,), got indptr.shape=(3,)"),
    (csr(indptr=np.array([0.0, 1, 2, 2])), TypeError, "indptr must hold integers, got dtype float64"),
    (csr(data=np.array([1.0])), ValueError,
     "indices and data must be 1-D of the same length, got indices.shape=(2,), data.shape=(1,)"),
    (csr(indptr=np.array([1, 1, 2, 2])), ValueError,
     "indptr must start at 0 and end at nnz=2, got indptr[0]=1, indptr[3]=2"),
    (csr(indptr=np.array([0, 1, 2, 1])), ValueError,
     "indptr must start at 0 and end at nnz=2, got indptr[0]=0, indptr[3]=1"),
    (csr(indptr=np.array([0, 3, -1, 2])), ValueError, "indptr must be non-decreasing, got indptr[1]=3 > indptr[2]=-1"),
    (csr(indices=np.array([1, 3])), ValueError, "indices must lie in [0, n=3), got indices[1]=3"),
    (csr(indices=np.array([-1, 0])), ValueError, "indices must lie in [0, n=3), got indices[0]=-1"),
    (csr(indptr=np.array([0, 2, 2, 2]), indices=np.array([2, 1])), ValueError,
     "the column indices of each CSR row must be strictly increasing, got indices[0]=2, indices[1]=1 in row 0"),
    (csr(indptr=np.array([0, 1, 3, 3]), indices=np.array([1, 0, 0]), data=np.ones(3)), ValueError,
     "the column indices of each CSR row must be strictly increasing, got indices[1]=0, indices[2]=0 in row 1"),
    (csr(indptr=np.array([0]), indices=np.array([], np.int64), data=np.array([]), h=np.zeros(0)), ValueError,
     "the QUBO must have at least one variable, got n=0"),
    (csr(num_reads=0), ValueError, "num_reads must be >= 1, got num_reads=0"),
    (csr(beta=np.array([-2.0])), ValueError, "beta_schedule must hold finite values >= 0, got beta_schedule[0]=-2.0"),
    (csr(card=9), ValueError, "cardinality must be <= n=3, got cardinality=9"),
    (csr(order="x"), ValueError, "order must be 'sequential' or 'random', got order='x'"),
    (csr(init=np.zeros((1, 3), np.int8)), ValueError,
     "initial_states must have shape (num_reads, n) = (2, 3), got initial_states.shape=(1, 3)"),
    (csr(card=0, init=np.array([[0, 0, 0], [0, 0, 1]], np.int8)), ValueError,
     "initial_states row 1 has 1 ones but cardinality=0"),
    (exact(J=np.zeros((3, 2))), ValueError, "J must have shape (n, n) = (3, 3) for n = len(h), got J.shape=(3, 2)"),
    (exact(h=np.zeros(4)), ValueError, "J must have shape (n, n) = (4, 4) for n = len(h), got J.shape=(3, 3)"),
    (exact(J=np.zeros((0, 0)), h=np.zeros(0)), ValueError, "the QUBO must have at least one variable, got n=0"),
    (exact(card=5), ValueError, "cardinality must be an integer in 0..n=3, got cardinality=5"),
    (exact(card=-1), ValueError, "cardinality must be an integer in 0..n=3, got cardinality=-1"),
    (exact(card=1.5), ValueError, "cardinality must be an integer in 0..n=3, got cardinality=1.5"),
    (exact(card=True), ValueError, "cardinality must be an integer in 0..n=3, got cardinality=True"),
    (exact(max_states=-1), ValueError, "max_states must be >= 0, got max_states=-1"),
    (exact(max_states=2.0), TypeError, "max_states must be an integer, got 2.0 of type float"),
    (exact(*zeros(LIMIT + 1)), ValueError,
     f"exhaustive search over 2^n states is limited to n <= {LIMIT}, got n={LIMIT + 1}; "
     "pass cardinality=m to search only the C(n, m) subsets"),
    (exact(*zeros(64), card=32), ValueError,
     f"C(n=64, m=32) = {math.comb(64, 32):,} subsets is too many for an exhaustive search "
     f"(limit 2^{LIMIT} = {2**LIMIT:,}), got cardinality=32"),
]


@pytest.mark.parametrize("call,exc,message", ERRORS)
def test_argument_errors_name_the_parameter(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value) == message


def test_accepted_arguments():
    """The edge values both implementations accept pass the check."""
    for beta in (np.array([-0.0, 1.0]), np.array([]), [1, 2]):
        dense(beta=beta, seed=2**64 - 1, order="random", card=-5)()
    dense(card=3, init=np.ones((2, 3), np.int8), swap=np.bool_(True), num_reads=np.int64(2))()
    dense(init=np.array([[True, False, True], [False, False, False]]))()
    csr(card=0)()
    csr(indptr=np.array([0, 0, 0, 0]), indices=np.array([], np.int64), data=np.array([]))()
    exact(card=0)()
    exact(card=np.int64(3), max_states=0)()
    exact(*zeros(LIMIT))()
    J, h = zeros(41)
    exact(J, h, card=2)()
    _native.check_exact_arguments(np.zeros(LIMIT + 1), cardinality=1, max_states=1)  # J optional


class _Refuse:
    """An implementation that fails the test if it is called at all."""

    def __getattr__(self, name):
        raise AssertionError(f"{name} was called although the arguments are invalid")


@pytest.mark.parametrize("implementation", ["native", "python"])
def test_callers_check_before_dispatching(monkeypatch, implementation):
    """run_arrays and the exact solver raise the check's error for either implementation,
    before calling it."""
    from qkrum.anneal.exact import exact_ground_state
    from qkrum.anneal.sampler import qubo_arrays, run_arrays

    monkeypatch.setattr(_native, "core", _native._built if implementation == "native" else None)
    assert _native.name() == implementation
    arrays = qubo_arrays(np.zeros(10), np.array([0]), np.array([1]), np.array([1.0]), 0.0)
    assert arrays.csr is not None  # the sparse path
    dense_arrays = qubo_arrays(np.zeros(3), np.array([0, 0, 1]), np.array([1, 2, 2]), np.ones(3), 0.0)
    assert dense_arrays.J is not None
    monkeypatch.setattr(_native, "impl", lambda: _Refuse())
    for a in (arrays, dense_arrays):
        with pytest.raises(ValueError, match=r"^num_reads must be >= 1, got num_reads=0$"):
            run_arrays(a, np.ones(3), num_reads=0, seed=0)
        with pytest.raises(ValueError, match=r"beta_schedule\[1\]=nan$"):
            run_arrays(a, np.array([1.0, np.nan]), num_reads=1, seed=0)
        with pytest.raises(ValueError, match=r"^initial_states row 0 has 1 ones but cardinality=2$"):
            run_arrays(a, np.ones(3), num_reads=1, seed=0, cardinality=2,
                       initial_states=np.eye(1, a.n, dtype=np.int8))
    with pytest.raises(ValueError, match=rf"limited to n <= {LIMIT}, got n={LIMIT + 1};"):
        exact_ground_state(np.eye(LIMIT + 1))
    with pytest.raises(ValueError, match=r"^max_states must be >= 0, got max_states=-1$"):
        exact_ground_state(np.eye(3), max_states=-1)


@pytest.mark.parametrize("call", [
    lambda: core.anneal_dense(Z3, H3, 0, B1, 0, "sequential", -1, 0, None),
    lambda: core.anneal_dense(Z3, H3, 2, B1, 0, "sequential", 4, 0, None),
    lambda: core.anneal_dense(Z3, H3, 2, B1, 0, "shuffled", -1, 0, None),
    lambda: core.anneal_dense(Z3, H3, 2, B1, 0, "sequential", -1, 0, np.zeros((2, 2), np.int8)),
    lambda: core.anneal_dense(Z3, H3, 2, B1, 0, "sequential", 1, 0, np.zeros((2, 3), np.int8)),
    lambda: core.anneal_dense(np.zeros((2, 3)), H3, 2, B1, 0, "sequential", -1, 0, None),
    lambda: core.anneal_csr(np.array([0, 1, 2]), *CSR3[1:], H3, 2, B1, 0, "sequential", -1, 0, None),
    lambda: core.anneal_csr(*CSR3[:2], np.ones(1), H3, 2, B1, 0, "sequential", -1, 0, None),
    lambda: core.anneal_csr(CSR3[0], np.array([1, 3]), CSR3[2], H3, 2, B1, 0, "sequential", -1, 0, None),
    lambda: core.exact_dense(Z3, H3, 4, 10),
    lambda: core.exact_dense(np.zeros((0, 0)), np.zeros(0), -1, 10),
])
def test_native_still_guards_itself(call):
    """Called directly, the C++ still rejects what it relies on (ValueError)."""
    with pytest.raises(ValueError):
        call()


def test_native_formats_doubles_portably():
    """The C++ names the entry and prints NaN as "nan" whatever its sign (glibc prints "-nan")."""
    for beta, text in (([1.0, -np.nan], "beta_schedule[1]=nan"), ([np.nan], "beta_schedule[0]=nan"),
                       ([-0.125], "beta_schedule[0]=-0.125"), ([2.0, -np.inf], "beta_schedule[1]=-inf")):
        with pytest.raises(ValueError) as info:
            core.anneal_dense(Z3, H3, 2, np.array(beta), 0, "sequential", -1, 0, None)
        assert str(info.value) == f"beta_schedule must hold finite values >= 0, got {text}"


@pytest.mark.parametrize("impl", IMPLS)
def test_exhaustive_limit_is_the_same_in_both(impl):
    """Both kernels refuse 2^n states above the one limit, with the same message."""
    J, h = zeros(LIMIT + 1)
    with pytest.raises(ValueError) as info:
        impl.exact_dense(J, h, -1, 1)
    assert str(info.value) == f"exhaustive search over 2^n states is limited to n <= {LIMIT}, got n={LIMIT + 1}"


@pytest.mark.parametrize("impl", IMPLS)
def test_accepted_edge_values(impl):
    """Values both implementations accept: −0.0 in the schedule, the largest seed, n > the
    exhaustive limit in cardinality mode, cardinality below −1 (plain flips)."""
    s, e, a = impl.anneal_dense(Z3, H3, 2, np.array([-0.0, 1.0]), 2**64 - 1, "random", -5, 0, None)
    assert s.shape == (2, 3) and a == 12
    J = np.zeros((41, 41))
    J[0, 1] = J[1, 0] = -1.0
    e, states, num_ground, searched = impl.exact_dense(J, np.zeros(41), 2, 10)
    assert e == -1.0 and num_ground == 1 and searched == math.comb(41, 2)
    assert states.tolist() == [[1, 1] + [0] * 39]
