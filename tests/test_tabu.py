"""qkrum.anneal.ExchangeTabuSampler: the exchange tabu search over m-subsets.

Checked against brute force over all C(n, m) subsets, against dwave-samplers' TabuSampler
at a size brute force cannot reach, and for its own contract: |S| = m, polished local
minima, the confirm rule, determinism over thread counts, warm starts, bad input. Each
implementation (C++ and NumPy fallback) runs the same tests.
"""

import itertools

import dimod
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkrum._native import core
from qkrum.anneal import ExchangeTabuSampler, get_sampler
from qkrum.anneal.adapter import bqm_from_problem
from qkrum.qubo import selection_problem, solve_selection


def dense_bqm(h, J, offset=0.0):
    n = len(h)
    quadratic = {(i, j): J[i, j] for i in range(n) for j in range(i + 1, n) if J[i, j] != 0}
    return dimod.BinaryQuadraticModel(dict(enumerate(h)), quadratic, offset, "BINARY")


def random_model(rng, n):
    h = rng.normal(size=n)
    J = np.triu(rng.normal(size=(n, n)), 1)
    return h, J + J.T


def brute_force(h, J, m):
    """The lowest h·x + Σ_{i<j} J_ij x_i x_j over all x with exactly m ones."""
    best = np.inf
    for chosen in itertools.combinations(range(len(h)), m):
        x = np.zeros(len(h))
        x[list(chosen)] = 1
        best = min(best, h @ x + 0.5 * x @ J @ x)
    return best


def as_array(sampleset, n):
    return sampleset.record.sample[:, [sampleset.variables.index(v) for v in range(n)]].astype(np.int8)


def improving_exchanges(h, J, x, tol=1e-9):
    """How many (a selected, b not) exchanges lower the energy of x by more than tol."""
    f = h + J @ x
    ins, outs = np.flatnonzero(x), np.flatnonzero(x == 0)
    delta = f[outs][None, :] - f[ins][:, None] - J[np.ix_(ins, outs)]
    return int(np.sum(delta < -tol * max(1.0, abs(h @ x + 0.5 * x @ J @ x))))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 10), data=st.data())
def test_reaches_the_brute_force_optimum(n, data):
    m = data.draw(st.integers(0, n), label="m")
    seed = data.draw(st.integers(0, 2**32), label="seed")
    h, J = random_model(np.random.default_rng(seed), n)
    ss = ExchangeTabuSampler().sample(dense_bqm(h, J, offset=1.5), cardinality=m, num_reads=16, seed=seed)
    assert np.all(as_array(ss, n).sum(axis=1) == m)
    assert ss.first.energy == pytest.approx(brute_force(h, J, m) + 1.5, abs=1e-9)


@pytest.mark.parametrize("n, m", [(12, 3), (14, 7), (13, 11)])
def test_both_implementations_reach_the_optimum(implementation, n, m):
    h, J = random_model(np.random.default_rng(n), n)
    ss = ExchangeTabuSampler().sample(dense_bqm(h, J), cardinality=m, num_reads=8, confirm=0, seed=3)
    assert ss.info["implementation"] == implementation
    assert len(ss) == 8 and ss.info["restarts"] == 8 and not ss.info["confirmed"]
    samples = as_array(ss, n)
    assert np.all(samples.sum(axis=1) == m)
    # Every returned state is polished: no single exchange improves it.
    assert all(improving_exchanges(h, J, x) == 0 for x in samples)
    # Energies are the model's (offset included), not the kernel's running sums.
    np.testing.assert_allclose(ss.record.energy, dense_bqm(h, J).energies((samples, range(n))), rtol=1e-12)
    assert ss.first.energy == pytest.approx(brute_force(h, J, m), abs=1e-9)


def test_confirm_rule_returns_the_shortest_confirmed_prefix(implementation):
    rng = np.random.default_rng(0)
    A = rng.random((60, 60))
    D = np.triu(A, 1) + np.triu(A, 1).T
    bqm = dense_bqm(np.zeros(60), D)
    full = ExchangeTabuSampler().sample(bqm, cardinality=30, num_reads=24, confirm=0, seed=5, tenure=3)
    hits = lambda es: np.sum(es <= es.min() + 1e-9 * abs(es.min()))  # noqa: E731
    for confirm, floor in ((1, 1), (2, 1), (3, 1), (2, 5)):
        ss = ExchangeTabuSampler().sample(bqm, cardinality=30, num_reads=24, confirm=confirm, min_restarts=floor,
                                          seed=5, tenure=3)
        e = ss.record.energy  # restart order: from_samples keeps it
        k = len(e)
        assert ss.info["confirmed"] and hits(e) >= confirm and k >= floor
        assert k == floor or hits(e[:-1]) < confirm  # no shorter prefix (of at least `floor`) was confirmed
        # The returned restarts are the first k of the unconfirmed run, unchanged.
        np.testing.assert_array_equal(as_array(ss, 60), as_array(full, 60)[:k])


def test_same_seed_same_samples_whatever_the_thread_count():
    if core is None:
        pytest.skip("the NumPy fallback runs restarts one after another")
    D, m = _planted(120)
    bqm = dense_bqm(np.zeros(len(D)), D)
    runs = [ExchangeTabuSampler().sample(bqm, cardinality=m, num_reads=12, confirm=c, seed=11, num_threads=t)
            for c in (0, 2) for t in (1, 2, 5)]
    for c in range(2):
        first = runs[3 * c]
        for other in runs[3 * c + 1:3 * c + 3]:
            np.testing.assert_array_equal(as_array(first, len(D)), as_array(other, len(D)))
            np.testing.assert_array_equal(first.record.energy, other.record.energy)


def _planted(n, seed=0):
    """Distances of n clients, a fifth of them a tight group far from the others."""
    rng = np.random.default_rng(seed)
    f = n // 5
    x = rng.normal(size=(n, 20))
    x[:f] = 3.0 + 0.05 * rng.normal(size=(f, 20))
    D = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    return D, n - f


def test_no_worse_than_dwave_tabu_on_random_and_planted_instances():
    from dwave.samplers import TabuSampler

    rng = np.random.default_rng(1)
    A = rng.random((200, 200))
    instances = [(np.triu(A, 1) + np.triu(A, 1).T, 160), _planted(200)]
    for D, m in instances:
        ours = solve_selection(D, m, sampler="qkrum-tabu", seed=0)
        bqm = bqm_from_problem(selection_problem(D, m))  # the provable penalty: optimum at |S| = m
        theirs = TabuSampler().sample(bqm, num_reads=2, timeout=300, seed=0)
        x = as_array(theirs, 200)
        energies = bqm.energies((x, range(200)))
        assert ours.objective <= energies.min() + 1e-9 * abs(energies.min())
        assert ours.selected.sum() == m and ours.repaired == 0


def test_selection_is_certified_against_exhaustive_search(implementation):
    D, m = _planted(16, seed=2)
    sol = solve_selection(D, m, sampler="qkrum-tabu", seed=1)
    assert sol.certified is True and sol.implementation == implementation
    assert sol.sampler == "ExchangeTabuSampler"
    # The tight group of a fifth of the clients is left out.
    assert not sol.selected[:16 // 5].any()


def test_warm_start_from_the_optimum_keeps_it(implementation):
    h, J = random_model(np.random.default_rng(4), 11)
    bqm = dense_bqm(h, J)
    best = ExchangeTabuSampler().sample(bqm, cardinality=4, num_reads=16, seed=0).first
    ss = ExchangeTabuSampler().sample(bqm, cardinality=4, num_reads=1, initial_states=best.sample,
                                      stall=1, max_iterations=0)
    assert ss.first.energy == pytest.approx(best.energy)
    assert ss.info["iterations"] == [0]  # started at a local minimum: the polish made no move


def test_spin_models_count_up_spins(implementation):
    h, J = random_model(np.random.default_rng(6), 9)
    binary = dense_bqm(h, J)
    spin = binary.change_vartype("SPIN", inplace=False)
    ss = ExchangeTabuSampler().sample(spin, cardinality=3, num_reads=8, seed=2)
    assert ss.vartype is dimod.SPIN
    assert all(sum(v == 1 for v in s.values()) == 3 for s in ss.samples())
    assert ss.first.energy == pytest.approx(brute_force(h, J, 3), abs=1e-9)


def test_timeout_returns_what_was_started(implementation):
    rng = np.random.default_rng(0)
    A = rng.random((150, 150))
    bqm = dense_bqm(np.zeros(150), np.triu(A, 1) + np.triu(A, 1).T)
    ss = ExchangeTabuSampler().sample(bqm, cardinality=100, num_reads=10**6, confirm=0, timeout=50, seed=0)
    assert ss.info["timed_out"] and 1 <= len(ss) < 10**6
    assert np.all(as_array(ss, 150).sum(axis=1) == 100)


def test_the_sampler_is_registered_and_declares_cardinality():
    sampler = get_sampler("qkrum-tabu")
    assert isinstance(sampler, ExchangeTabuSampler)
    assert "cardinality" in sampler.parameters and "num_reads" in sampler.parameters


@pytest.mark.parametrize("kwargs, match", [
    ({}, "cardinality must be given"),
    ({"cardinality": 9}, "cardinality must be <= the number of variables n=5, got cardinality=9"),
    ({"cardinality": 2, "num_reads": 0}, "num_reads"),
    ({"cardinality": 2, "confirm": -1}, "confirm"),
    ({"cardinality": 2, "stall": 0}, "stall"),
    ({"cardinality": 2, "tenure": -2}, "tenure"),
    ({"cardinality": 2, "timeout": -5}, "timeout must be a positive number of milliseconds"),
    ({"cardinality": 2, "timeout": float("nan")}, "timeout"),
    ({"cardinality": 2, "initial_states": [[1, 1, 1, 0, 0]]}, "initial_states row 0 has 3 ones but cardinality=2"),
    ({"cardinality": 2, "num_reads": 1, "initial_states": [[1, 1, 0, 0, 0], [0, 0, 0, 1, 1]]}, "initial_states"),
])
def test_bad_arguments_name_the_parameter(implementation, kwargs, match):
    h, J = random_model(np.random.default_rng(0), 5)
    with pytest.raises((ValueError, TypeError), match=match):
        ExchangeTabuSampler().sample(dense_bqm(h, J), **kwargs)


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="unknown parameter"):
        ExchangeTabuSampler().sample(dense_bqm(np.zeros(3), np.zeros((3, 3))), cardinality=1, num_sweeps=10)


def test_dense_arrays_give_what_the_model_gives(implementation):
    h, J = random_model(np.random.default_rng(8), 13)
    via_model = ExchangeTabuSampler().sample(dense_bqm(h, J, offset=0.5), cardinality=6, num_reads=5, seed=4)
    via_arrays = ExchangeTabuSampler().sample_dense(h, J, 0.5, cardinality=6, num_reads=5, seed=4)
    np.testing.assert_array_equal(as_array(via_arrays, 13), as_array(via_model, 13))
    np.testing.assert_allclose(via_arrays.record.energy, via_model.record.energy, rtol=1e-12)
    # solve_selection hands the problem over as arrays: the same answer as through a model.
    D, m = _planted(40, seed=5)
    sol = solve_selection(D, m, seed=2)
    assert sol.sampler == "ExchangeTabuSampler" and sol.selected.sum() == m
    ss = ExchangeTabuSampler().sample(bqm_from_problem(selection_problem(D, m, keep_cardinality=True)),
                                      cardinality=m, seed=2)
    np.testing.assert_array_equal(sol.selected, as_array(ss, 40)[np.argmin(ss.record.energy)].astype(bool))


@pytest.mark.parametrize("J, match", [
    (np.triu(np.ones((4, 4)), 1), "symmetric with a zero diagonal"),
    (np.eye(4), "symmetric with a zero diagonal"),
    (np.full((4, 4), np.nan), r"finite, got J\[0, 0\]=nan"),
    (np.zeros((3, 3)), r"J shape \(n, n\)"),
])
def test_dense_arrays_are_checked(J, match):
    with pytest.raises(ValueError, match=match):
        ExchangeTabuSampler().sample_dense(np.zeros(4), J, cardinality=2)


def _trap(seed):
    """12 clients around the origin and 3 identical ones at distance 10: a basin (the three
    selected) that single exchanges cannot leave, since moving one out breaks a zero pair."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(15, 50))
    x[12:] = 10.0 / np.sqrt(50)
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def test_the_restart_floor_keeps_two_restarts_from_confirming_a_wrong_basin(implementation):
    certified = [solve_selection(_trap(s), 12, seed=s).certified for s in range(20)]
    assert all(certified)
    # Without the floor, two restarts agreeing in the trap stop the search: the floor is
    # what the default's certification rests on.
    floorless = [solve_selection(_trap(s), 12, seed=s, sampler_params={"min_restarts": 1}).certified
                 for s in range(20)]
    assert not all(floorless)
    ss = ExchangeTabuSampler().sample_dense(np.zeros(15), _trap(0), cardinality=12, seed=0)
    assert ss.info["min_restarts"] == 64 and len(ss) >= 64 and ss.info["confirmed"]
