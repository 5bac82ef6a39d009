"""What a failing or misbehaving QUBO sampler gives the caller: messages, classes, warnings,
and which annealer implementation ran. Stand-in samplers and config files; no network."""

import re
import warnings

import dimod
import numpy as np
import pytest

import qkrum
from qkrum import _native
from qkrum.anneal import ExactSolver, SamplerError, get_sampler, solve_qubo
from qkrum.anneal.adapter import MissingCredentialsError
from qkrum.errors import CardinalityRepairWarning
from qkrum.qubo import solve_selection


def distances(rng, n):
    a = rng.uniform(0.1, 2.0, (n, n))
    d = (a + a.T) / 2
    np.fill_diagonal(d, 0)
    return d


def updates(rng, n=8, d=12):
    return rng.standard_normal((n, d)).astype(np.float32)


class Base:
    """A sampler without dimod's base class: its repr is ``<... object at 0x...>``."""

    def sample(self, bqm):
        raise ValueError("internal solver failure")


class RaisesTypeError(dimod.Sampler):
    parameters, properties = {}, {}

    def sample(self, bqm):
        raise TypeError("unsupported operand type(s) inside the solver")


class RequestTimeout(Exception):
    """Stands in for dwave.cloud's RequestTimeout: the real cause is only in the chain."""


class Unreachable(dimod.Sampler):
    """Fails as the Leap client does when the API host cannot be reached."""

    parameters, properties = {}, {}

    def sample(self, bqm):
        try:
            try:
                raise OSError(-3, "Temporary failure in name resolution")
            except OSError as exc:
                raise ConnectionError("Max retries exceeded with url: /sapi/v2/solvers/remote/") from exc
        except ConnectionError:
            raise RequestTimeout("API request timed out")  # chained implicitly (__context__)


class Nested(dimod.Sampler):
    """A composite that runs a failing sampler through qkrum itself."""

    parameters, properties = {}, {}

    def sample(self, bqm):
        return solve_qubo(np.eye(bqm.num_variables), sampler=Base()).sampleset


class Answers(dimod.Sampler):
    """Answers with the given clients selected, whatever the problem."""

    parameters, properties = {}, {}

    def __init__(self, ones):
        self.ones = ones

    def sample(self, bqm):
        x = np.zeros((1, bqm.num_variables), np.int8)
        x[0, list(self.ones)] = 1
        return dimod.SampleSet.from_samples((x, list(bqm.variables)), "BINARY", [0.0])


# --- 8a: what a sampler raises is a SamplerError, option errors stay what they are -----

def test_sampler_value_error_is_a_sampler_error_naming_the_sampler_by_type(rng):
    with pytest.raises(qkrum.SamplerError) as info:
        qkrum.select(updates(rng), 2, method="qubo", sampler=Base())
    text = str(info.value)
    assert text.startswith(f"sampler {__name__}.Base failed: ValueError: internal solver failure"), text
    assert text.count("failed") == 1 and "object at 0x" not in text
    assert isinstance(info.value.__cause__, ValueError)
    assert qkrum.SamplerError is SamplerError and issubclass(SamplerError, RuntimeError)


def test_sampler_type_error_is_a_sampler_error(rng):
    with pytest.raises(SamplerError, match=re.escape(
            f"sampler {__name__}.RaisesTypeError failed: TypeError: unsupported operand")):
        solve_selection(distances(rng, 6), 3, sampler=RaisesTypeError())


def test_a_sampler_error_is_never_wrapped_twice(rng):
    want = f"sampler {__name__}.Base failed: ValueError: internal solver failure"
    with pytest.raises(qkrum.SamplerError) as info:
        qkrum.select(updates(rng), 2, method="qubo", sampler=Nested())
    assert str(info.value) == want
    # Passed on as is, chained to what the inner sampler raised (not to itself).
    assert isinstance(info.value.__cause__, ValueError) and info.value.__cause__ is not info.value
    for solve in (lambda: solve_selection(distances(rng, 6), 3, sampler=Nested()),
                  lambda: solve_qubo(np.eye(3), sampler=Nested())):
        with pytest.raises(SamplerError) as info:
            solve()
        assert str(info.value) == want and isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"num_reads": 0}, ValueError, "num_reads must be >= 1, got num_reads=0"),
    ({"num_sweeps": 2.5}, TypeError, "num_sweeps must be an integer, got 2.5"),
    ({"sampler": Base(), "num_reads": -1}, ValueError, "num_reads must be >= 1"),  # checked before any sampler
    # qkrum's samplers check their own arguments before they run: a bad option, not a failure.
    ({"sampler": "qkrum", "sampler_params": {"beta_range": (2.0, 1.0)}}, ValueError, "beta_min <= beta_max"),
    ({"sampler_params": {"tenure": -1}}, ValueError, "tenure must be >= 0"),  # the default: tabu search
    ({"sampler_params": {"bogus": 1}}, TypeError, r"unknown parameter\(s\) \['bogus'\]"),
])
def test_option_errors_stay_value_and_type_errors(rng, kwargs, exc, match):
    with pytest.raises(exc, match=match) as info:
        qkrum.select(updates(rng), 2, method="qubo", **kwargs)
    assert not isinstance(info.value, SamplerError)


def test_missing_credentials_is_a_sampler_error():
    assert issubclass(MissingCredentialsError, SamplerError)


# --- 8b: an unreadable dwave.conf names the file ------------------------------------

@pytest.fixture
def garbage_conf(monkeypatch, tmp_path):
    pytest.importorskip("dwave.cloud")
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    monkeypatch.delenv("DWAVE_CONFIG_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "dwave.conf"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81\x9c garbage")
    return path


def test_binary_dwave_conf_named_in_the_error(monkeypatch, garbage_conf):
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(garbage_conf))
    with pytest.raises(MissingCredentialsError) as info:
        get_sampler("leap-hybrid")
    text = str(info.value)
    assert repr(str(garbage_conf)) in text and "is not a text file" in text
    assert "dwave config create" in text and "DWAVE_API_TOKEN" in text
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_binary_dwave_conf_given_as_config_file(garbage_conf):
    with pytest.raises(MissingCredentialsError, match=re.escape(f"file {str(garbage_conf)!r} is not a text file")):
        get_sampler("qpu", config_file=str(garbage_conf))


# --- 8c: the root cause of a chained failure is in the message --------------------------

def test_root_cause_and_network_hint_are_in_the_message(rng):
    with pytest.raises(SamplerError) as info:
        solve_qubo(np.eye(3), sampler=Unreachable())
    text = str(info.value)
    assert f"sampler {__name__}.Unreachable failed: RequestTimeout: API request timed out" in text
    assert "root cause: OSError: [Errno -3] Temporary failure in name resolution" in text
    assert "network" in text and "token" in text
    assert isinstance(info.value.__cause__, RequestTimeout)


def test_cloud_sampler_that_cannot_reach_the_api(monkeypatch, rng):
    dwave_system = pytest.importorskip("dwave.system")

    class LeapHybridSampler:  # its constructor contacts the API to pick a solver
        def __init__(self, **config):
            try:
                raise ConnectionError("HTTPSConnectionPool(host='na-west-1.cloud.dwavesys.com', port=443)")
            except ConnectionError as exc:
                raise RequestTimeout("API request timed out") from exc

    monkeypatch.setenv("DWAVE_API_TOKEN", "garbage-token")
    monkeypatch.setattr(dwave_system, "LeapHybridSampler", LeapHybridSampler)
    with pytest.raises(SamplerError) as info:
        get_sampler("leap-hybrid")
    text = str(info.value)
    assert f"sampler {__name__}.{LeapHybridSampler.__qualname__} could not be created: RequestTimeout" in text
    assert "root cause: ConnectionError: HTTPSConnectionPool(host='na-west-1.cloud.dwavesys.com'" in text
    assert "network" in text
    with pytest.raises(qkrum.SamplerError, match="could not be created") as info:
        qkrum.select(updates(rng), 2, method="qubo", sampler="leap-hybrid")
    assert str(info.value).startswith(f"sampler {__name__}.") and str(info.value).count("could not be created") == 1


# --- 8d: answers over the wrong variables say which -----------------------------------

class Relabelled(dimod.Sampler):
    """Answers over the variables 1..n instead of 0..n-1: one missing, one extra."""

    parameters, properties = {}, {}

    def sample(self, bqm):
        n = bqm.num_variables
        return dimod.SampleSet.from_samples(([[0] * n], [v + 1 for v in bqm.variables]), "BINARY", [0.0])


def test_wrong_variables_says_which_are_missing_and_extra(rng):
    with pytest.raises(qkrum.SamplerError) as info:
        qkrum.select(updates(rng), 2, method="qubo", sampler=Relabelled())
    text = str(info.value)
    assert text == (f"sampler {__name__}.Relabelled returned samples over the wrong variables "
                    "(missing [0]; extra [8]; the problem's variables are 0..7)")


# --- 8e: a repaired answer is announced and counted -----------------------------------

def test_too_many_clients_are_dropped_with_a_warning(rng):
    with pytest.warns(CardinalityRepairWarning, match=r"selects 7 of n=7 clients, not m=4; the repair step "
                      r"\(paper IV-C\) dropped the 3 farthest by distance sums") as record:
        sol = solve_selection(distances(rng, 7), 4, sampler=Answers(range(7)))
    assert sol.repaired == 3 and sol.selected.sum() == 4 and len(record) == 1
    assert "lam=None is the penalty that provably enforces |S| = m" in str(record[0].message)
    with pytest.warns(CardinalityRepairWarning, match=r"lam='paper' may be too weak to enforce \|S\| = m"):
        solve_selection(distances(rng, 7), 4, sampler=Answers(range(7)), lam="paper")
    assert issubclass(CardinalityRepairWarning, UserWarning)
    assert qkrum.qubo.CardinalityRepairWarning is CardinalityRepairWarning


def test_too_few_clients_are_added_and_the_count_reaches_selection_info(rng):
    with pytest.warns(CardinalityRepairWarning, match=r"selects 1 of n=8 clients, not m=6;.* added the 5 closest"):
        sel = qkrum.select(updates(rng), 2, method="qubo", sampler=Answers([0]))
    assert sel.info["repaired"] == 5 and sel.selected.sum() == 6


def test_no_warning_without_a_repair(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CardinalityRepairWarning)
        sol = solve_selection(distances(rng, 7), 4, sampler=Answers([0, 1, 2, 3]), certify=False)
    assert sol.repaired == 0


# --- 17: the implementation that ran is recorded --------------------------------------

@pytest.mark.parametrize("sampler", [None, "exact"])
def test_forced_python_implementation_is_recorded(monkeypatch, rng, sampler):
    monkeypatch.setattr(_native, "core", None)  # as QKRUM_IMPLEMENTATION=python does
    sol = solve_selection(distances(rng, 7), 4, sampler=sampler, num_reads=20, seed=0)
    assert sol.implementation == "python"
    sel = qkrum.select(updates(rng), 2, method="qubo", sampler=sampler, num_reads=20)
    assert sel.info["implementation"] == "python"


def test_implementation_of_the_default_annealer_and_of_foreign_samplers(rng):
    assert solve_selection(distances(rng, 7), 4, num_reads=20).implementation == qkrum.IMPLEMENTATION
    assert solve_qubo(np.eye(3), sampler=ExactSolver()).implementation == qkrum.IMPLEMENTATION
    # Not qkrum's kernel: nothing to record.
    assert solve_selection(distances(rng, 7), 4, sampler=Answers([0, 1, 2, 3])).implementation is None
