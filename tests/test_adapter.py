"""solve_qubo / sample_problem with stand-in samplers at the dimod interface (third-party samplers
that do and do not declare 'cardinality'); D-Wave credentials. No network."""

import itertools
import re

import dimod
import numpy as np
import pytest

from qkrum.anneal import (
    ExactSolver,
    SamplerError,
    SimulatedAnnealingSampler,
    adapter,
    bqm_from_qubo,
    get_sampler,
    sample_problem,
    solve_qubo,
)
from qkrum.anneal.adapter import MissingCredentialsError
from qkrum.errors import CardinalityRepairWarning
from qkrum.qubo import objective_value, penalty_weight, selection_problem, selection_qubo, solve_selection


class StandInHybrid(dimod.Sampler):
    """Behaves like LeapHybridSampler at the dimod interface: one sample, time_limit."""

    parameters = {"time_limit": []}
    properties = {"category": "hybrid"}

    def __init__(self):
        self.calls = []

    def sample(self, bqm, time_limit=None):
        self.calls.append(time_limit)
        ss = dimod.ExactSolver().sample(bqm).lowest()
        ss.info["timing"] = {"qpu_access_time": 1234, "run_time": 5678}
        return ss.truncate(1)


class WrongValues(dimod.Sampler):
    parameters, properties = {}, {}

    def sample(self, bqm):
        return dimod.SampleSet.from_samples(([[2] * bqm.num_variables], list(bqm.variables)), "INTEGER", [0.0])


class MissingVariable(dimod.Sampler):
    parameters, properties = {}, {}

    def sample(self, bqm):
        return dimod.SampleSet.from_samples(([[0]], [0]), "BINARY", [0.0])


class ExtraVariable(dimod.Sampler):
    parameters, properties = {}, {}

    def sample(self, bqm):
        return dimod.SampleSet.from_samples(([[0] * (bqm.num_variables + 1)], [*bqm.variables, "x"]), "BINARY", [0.0])


class Broken(dimod.Sampler):
    parameters, properties = {}, {}

    def sample(self, bqm):
        raise ConnectionError("solver went away")


class Base:
    """A sampler with the default repr ``<module.Base object at 0x...>`` and no dimod base."""

    def sample(self, bqm):
        raise ValueError("internal solver failure")


def test_bqm_from_qubo_is_vectorised_and_exact(rng):
    full = rng.standard_normal((6, 6))
    bqm = bqm_from_qubo(full, 1.5)
    x = rng.integers(0, 2, (20, 6))
    want = np.einsum("ki,ij,kj->k", x, full, x) + 1.5  # x^T Q x for a full matrix
    np.testing.assert_allclose(bqm.energies((x, range(6))), want)


@pytest.mark.parametrize("name", ["qkrum", "exact", "dimod-exact", "dwave-sa"])
def test_solve_qubo_with_each_local_sampler_finds_ground_state(rng, name):
    pytest.importorskip("dwave.samplers") if name == "dwave-sa" else None
    Q = np.triu(rng.standard_normal((8, 8)))
    ground = dimod.ExactSolver().sample(bqm_from_qubo(Q, 0.3)).first.energy
    params = {"num_reads": 50, "seed": 1} if name in ("qkrum", "dwave-sa") else {}
    sol = solve_qubo(Q, 0.3, sampler=name, **params)
    assert sol.energy == pytest.approx(ground)
    assert sol.sample.shape == (8,) and set(np.unique(sol.sample)) <= {0, 1}
    assert sol.timing["wall_s"] > 0


def test_stand_in_hybrid_gets_time_limit_and_its_timing_is_kept(rng):
    Q = np.triu(rng.standard_normal((5, 5)))
    hybrid = StandInHybrid()
    sol = solve_qubo(Q, sampler=hybrid, time_limit=3)
    assert hybrid.calls == [3]
    assert sol.sampler == "StandInHybrid" and sol.timing["qpu_access_time"] == 1234
    assert sol.energy == pytest.approx(dimod.ExactSolver().sample(bqm_from_qubo(Q)).first.energy)


def test_cardinality_only_where_it_can_be_kept(rng):
    Q = np.triu(rng.standard_normal((6, 6)))
    assert solve_qubo(Q, cardinality=2, num_reads=20, seed=0).sample.sum() == 2
    assert solve_qubo(Q, sampler="exact", cardinality=2).sample.sum() == 2
    with pytest.raises(ValueError, match="cannot keep cardinality=2"):
        solve_qubo(Q, sampler=StandInHybrid(), cardinality=2)


@pytest.mark.parametrize("sampler,match", [
    (WrongValues(), "outside"),
    (MissingVariable(), r"wrong variables \(missing \[1, 2\]; the problem's variables are 0\.\.2\)"),
    (ExtraVariable(), r"wrong variables \(extra \['x'\]; the problem's variables are 0\.\.2\)"),
    (Broken(), re.escape(f"sampler {__name__}.Broken failed: ConnectionError: solver went away")),
    (Base(), re.escape(f"sampler {__name__}.Base failed: ValueError: internal solver failure")),
])
def test_bad_sampler_answers_are_refused(sampler, match):
    # SamplerError is a RuntimeError, as these errors were before it existed.
    with pytest.raises(SamplerError, match=match) as info:
        solve_qubo(np.eye(3), sampler=sampler)
    assert isinstance(info.value, RuntimeError)
    assert "object at 0x" not in str(info.value)


def test_sampler_argument_that_is_no_sampler():
    with pytest.raises(TypeError, match=r"got an object of type object, which has no sample method"):
        solve_qubo(np.eye(2), sampler=object())
    with pytest.raises(TypeError, match=r"the class \S*SimulatedAnnealingSampler; pass SimulatedAnnealingSampler\(\)"):
        solve_qubo(np.eye(2), sampler=adapter.SimulatedAnnealingSampler)


@pytest.mark.parametrize("Q,match", [
    (np.ones((2, 3)), "square"),
    (np.array([[1.0, np.inf], [0, 1]]), r"Q must be finite, got Q\[0, 1\]=inf"),
    (np.zeros((0, 0)), "at least one variable"),
])
def test_bad_qubo(Q, match):
    with pytest.raises(ValueError, match=match):
        solve_qubo(Q)


def test_unknown_sampler_name():
    with pytest.raises(ValueError, match="unknown sampler=.neal.; valid names: qkrum, qkrum-tabu, exact"):
        get_sampler("neal")


@pytest.mark.parametrize("name", ["leap-hybrid", "leap-hybrid-cqm", "qpu"])
def test_cloud_samplers_without_token_say_how_to_configure(monkeypatch, tmp_path, name):
    pytest.importorskip("dwave.cloud")
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    empty = tmp_path / "dwave.conf"
    empty.write_text("[defaults]\n")
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(MissingCredentialsError, match="DWAVE_API_TOKEN") as info:
        get_sampler(name)
    assert "dwave config create" in str(info.value) and "does not fall back" in str(info.value)
    with pytest.raises(MissingCredentialsError):
        solve_qubo(np.eye(2), sampler=name, time_limit=5)


def test_cloud_samplers_without_dwave_installed(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dwave(name, *args, **kwargs):
        if name.startswith("dwave.cloud") or name.startswith("dwave.system"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dwave)
    with pytest.raises(ImportError, match=r'pip install "qkrum\[dwave\]"'):
        adapter.leap_hybrid_sampler()


def test_unreadable_dwave_config_is_a_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("dwave.cloud")
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(tmp_path / "absent.conf"))
    with pytest.raises(MissingCredentialsError, match="could not be read") as info:
        get_sampler("leap-hybrid")
    assert "absent.conf" in str(info.value) and "dwave config create" in str(info.value)


# --- one problem form, capability declared, one sampler resolution -------------------------

def distances(rng, n):
    a = rng.uniform(0.1, 2.0, (n, n))
    d = (a + a.T) / 2
    np.fill_diagonal(d, 0)
    return d


def _lowest(bqm, size=None):
    """The lowest-energy state of a small BQM, over all states or those with ``size`` ones."""
    n = bqm.num_variables
    states = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8)
    if size is not None:
        states = states[states.sum(axis=1) == size]
    energies = bqm.energies((states, range(n)))
    best = int(np.argmin(energies))
    return dimod.SampleSet.from_samples((states[best:best + 1], list(range(n))), "BINARY", energies[best:best + 1])


class KeepsCardinality(dimod.Sampler):
    """A third party's sampler that keeps Σx = m: it declares 'cardinality' in its parameters."""

    parameters = {"cardinality": []}
    properties = {}

    def __init__(self):
        self.calls = []

    def sample(self, bqm, cardinality=None):
        self.calls.append((bqm, cardinality))
        return _lowest(bqm, cardinality)


class PlainThirdParty(dimod.Sampler):
    """A third party's sampler that declares nothing (its sample takes no cardinality)."""

    parameters, properties = {}, {}

    def __init__(self):
        self.bqms = []

    def sample(self, bqm):
        self.bqms.append(bqm)
        return _lowest(bqm)


class SpyAnnealer(SimulatedAnnealingSampler):
    """qkrum's annealer, recording the keywords it is called with."""

    def __init__(self):
        super().__init__()
        self.kwargs = []

    def sample(self, bqm, **kwargs):
        self.kwargs.append(kwargs)
        return super().sample(bqm, **kwargs)


def _energy(bqm, mask):
    return float(bqm.energy({i: int(v) for i, v in enumerate(mask)}))


@pytest.mark.parametrize("objective", ["intra", "paper"])
def test_third_party_sampler_declaring_cardinality_gets_the_problem_without_penalty(rng, objective):
    n, m = 7, 4
    D = distances(rng, n)
    sampler = KeepsCardinality()
    assert adapter.keeps_cardinality(sampler)
    sol = solve_selection(D, m, objective=objective, sampler=sampler)
    [(bqm, cardinality)] = sampler.calls
    assert cardinality == m
    a, b = np.zeros(n, bool), np.zeros(n, bool)
    a[[0, 1, 2, 3]] = True
    b[[2, 4, 5, 6]] = True
    # Two subsets of size m differ by exactly their objective difference ...
    assert _energy(bqm, a) - _energy(bqm, b) == pytest.approx(
        objective_value(D, a, objective) - objective_value(D, b, objective), rel=1e-12, abs=1e-12)
    # ... and one of size m + 1 is not penalised: its energy is its objective.
    big = a.copy()
    big[6] = True
    assert _energy(bqm, big) == pytest.approx(objective_value(D, big, objective), rel=1e-12, abs=1e-12)
    assert bqm.offset == 0
    assert sol.selected.sum() == m and sol.repaired == 0 and sol.certified


@pytest.mark.parametrize("objective", ["intra", "paper"])
def test_third_party_sampler_not_declaring_cardinality_gets_the_penalised_problem(rng, objective):
    n, m = 7, 4
    D = distances(rng, n)
    sampler = PlainThirdParty()
    assert not adapter.keeps_cardinality(sampler)
    sol = solve_selection(D, m, objective=objective, sampler=sampler)  # sample(bqm): no cardinality passed
    [bqm] = sampler.bqms
    lam = penalty_weight(D, m, objective)
    a = np.zeros(n, bool)
    a[[0, 1, 2, 3]] = True
    big = a.copy()
    big[6] = True
    assert _energy(bqm, a) == pytest.approx(objective_value(D, a, objective), rel=1e-12, abs=1e-12)
    assert _energy(bqm, big) - objective_value(D, big, objective) == pytest.approx(lam, rel=1e-12)
    assert sol.selected.sum() == m and sol.sample.sum() == m and sol.repaired == 0 and sol.certified
    with pytest.raises(ValueError, match="cannot keep cardinality=4: it does not declare 'cardinality'"):
        sample_problem(selection_problem(D, m, keep_cardinality=True), sampler)


def test_cardinality_is_a_declared_capability():
    assert adapter.keeps_cardinality(SimulatedAnnealingSampler())
    assert adapter.keeps_cardinality(ExactSolver())  # qkrum/anneal/exact.py declares it
    assert not adapter.keeps_cardinality(dimod.ExactSolver())
    assert not adapter.keeps_cardinality(StandInHybrid())

    class NoParameters:
        parameters = None

        def sample(self, bqm):
            raise AssertionError

    assert not adapter.keeps_cardinality(NoParameters()) and not adapter.keeps_cardinality(object())


def test_qkrum_annealer_is_told_cardinality_and_swap_moves_by_the_problem(rng):
    D = distances(rng, 8)
    spy = SpyAnnealer()
    solve_selection(D, 5, sampler=spy, num_reads=5, certify=False)  # lam=None: cardinality kept
    solve_selection(D, 5, sampler=spy, lam="paper", num_reads=5, certify=False)  # penalised
    with pytest.warns(CardinalityRepairWarning):  # no penalty, no cardinality: |S| = m is the repair's
        solve_selection(D, 5, sampler=spy, lam=0, num_reads=5, certify=False)
    solve_selection(D, 5, sampler=spy, lam="paper", num_reads=5, certify=False,
                    sampler_params={"swap_moves": False})  # the caller's choice wins
    solve_qubo(selection_qubo(D, 5, lam="paper")[0], sampler=spy, num_reads=5)  # a matrix: penalty unknown
    got = [(kw["cardinality"], kw.get("swap_moves", "guess")) for kw in spy.kwargs]
    assert got == [(5, False), (None, True), (None, False), (None, False), (None, "guess")]


def test_one_sampler_resolution(monkeypatch, rng):
    assert type(adapter.resolve_sampler(None)) is SimulatedAnnealingSampler
    assert type(adapter.resolve_sampler("exact")) is ExactSolver
    mine = StandInHybrid()
    assert adapter.resolve_sampler(mine) is mine
    with pytest.raises(TypeError, match=r"the class \S*ExactSolver; pass ExactSolver\(\)"):
        adapter.resolve_sampler(ExactSolver)
    with pytest.raises(TypeError, match="which has no sample method"):
        adapter.resolve_sampler(object())
    with pytest.raises(ValueError, match="unknown sampler='neal'"):
        adapter.resolve_sampler("neal")
    seen = []
    original = adapter.resolve_sampler

    def recording(sampler=None):
        seen.append(sampler)
        return original(sampler)

    monkeypatch.setattr(adapter, "resolve_sampler", recording)
    solve_selection(distances(rng, 5), 3, sampler="exact")
    solve_qubo(np.eye(3), sampler="exact")
    assert [s for s in seen if isinstance(s, str)] == ["exact", "exact"]
