"""The constrained-model path (D-Wave's LeapHybridCQMSampler): the selection's objective
with the equality constraint sum(x) == m instead of a penalty.

Leap needs a token, so the sampler here is a stand-in with the same interface
(``sample_cqm`` and no ``sample``) that solves the model it is given with dimod's exact CQM
solver; the tests check what qkrum hands it and what qkrum does with the answer. Without a
token, "leap-hybrid-cqm" says how to configure one (tests/test_adapter.py, with the other
cloud samplers).
"""

import dimod
import numpy as np
import pytest

from qkrum.anneal import cqm_from_problem, is_cqm_sampler
from qkrum.errors import SamplerError
from qkrum.qubo import objective_value, selection_problem, solve_selection


class ExactCQMStandIn:
    """A CQM sampler like LeapHybridCQMSampler: ``sample_cqm(cqm, time_limit=...)``."""

    def __init__(self, answer=None):
        self.parameters = {"time_limit": [], "label": []}
        self.properties = {}
        self.calls = []
        self.answer = answer

    def sample_cqm(self, cqm, time_limit=None, label=None):
        self.calls.append((cqm, time_limit))
        if self.answer is not None:
            return self.answer(cqm)
        return dimod.ExactCQMSolver().sample_cqm(cqm)


def distances(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[: n // 4] += 4.0
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def test_the_constrained_model_is_the_objective_with_one_equality():
    D = distances(7)
    cqm = cqm_from_problem(selection_problem(D, 5, keep_cardinality=True))
    assert list(cqm.constraints) == ["cardinality"]
    c = cqm.constraints["cardinality"]
    assert c.sense is dimod.sym.Sense.Eq and c.rhs == 5
    assert all(c.lhs.get_linear(v) == 1.0 for v in range(7)) and c.lhs.num_interactions == 0
    # The objective carries no penalty: its energy is the within-subset distance sum for
    # any x, feasible or not.
    rng = np.random.default_rng(1)
    for _ in range(10):
        x = rng.integers(0, 2, size=7).astype(bool)
        assert cqm.objective.energy(dict(enumerate(x.astype(int)))) == pytest.approx(objective_value(D, x, "intra"))


def test_solve_selection_with_a_cqm_sampler_reaches_the_exact_optimum():
    D = distances(10)
    sampler = ExactCQMStandIn()
    assert is_cqm_sampler(sampler)
    sol = solve_selection(D, 7, sampler=sampler, sampler_params={"time_limit": 5})
    assert sol.certified is True and sol.repaired == 0 and sol.selected.sum() == 7
    assert sol.sampler == "ExactCQMStandIn"
    ((cqm, time_limit),) = sampler.calls
    assert time_limit == 5 and isinstance(cqm, dimod.ConstrainedQuadraticModel)
    assert not sol.selected[: 10 // 4].any()  # the shifted quarter is left out


def test_infeasible_samples_are_dropped_and_none_feasible_is_an_error():
    D = distances(6)

    def one_infeasible_one_feasible(cqm):
        return dimod.SampleSet.from_samples_cqm([[1] * 6, [1, 1, 1, 1, 0, 0]], cqm)

    sol = solve_selection(D, 4, sampler=ExactCQMStandIn(one_infeasible_one_feasible), certify=False)
    # All-ones has the lowest objective but breaks the constraint: the feasible one is taken.
    np.testing.assert_array_equal(sol.selected, [1, 1, 1, 1, 0, 0])

    def only_infeasible(cqm):
        return dimod.SampleSet.from_samples_cqm([[1] * 6], cqm)

    with pytest.raises(SamplerError, match=r"no feasible sample: none has sum\(x\) == m=4"):
        solve_selection(D, 4, sampler=ExactCQMStandIn(only_infeasible))


def test_a_plain_qubo_is_refused_for_a_cqm_sampler():
    from qkrum.anneal import solve_qubo

    with pytest.raises(ValueError, match="solves constrained models"):
        solve_qubo(np.eye(3), sampler=ExactCQMStandIn())


def test_a_penalty_weight_is_refused_for_a_cqm_sampler():
    with pytest.raises(ValueError, match="lam='paper' is a penalty weight.*pass lam=None"):
        solve_selection(distances(5), 3, sampler=ExactCQMStandIn(), lam="paper")


def test_the_qubo_rule_takes_a_cqm_sampler():
    import qkrum

    x = np.random.default_rng(0).normal(size=(9, 30)).astype(np.float32)
    x[:2] += 5.0
    sel = qkrum.select(x, 2, method="qubo", sampler=ExactCQMStandIn(), distance="euclidean")
    assert not np.asarray(sel.selected)[:2].any() and int(np.asarray(sel.selected).sum()) == 7

