"""qkrum.select(method="qubo") and the shared solver step, against brute force."""

import itertools

import dimod
import jax
import numpy as np
import pytest

import qkrum
from conftest import ref_cosine
from qkrum import attacks, metrics
from qkrum.qubo import CardinalityRepairWarning, objective_value, repair, solve_selection
from qkrum.synthetic import honest_updates


def brute_best(D, m, objective):
    best, arg = np.inf, None
    for S in itertools.combinations(range(len(D)), m):
        mask = np.zeros(len(D), bool)
        mask[list(S)] = True
        v = objective_value(D, mask, objective)
        if v < best - 1e-12:
            best, arg = v, mask
    return best, arg


def distances(rng, n):
    a = rng.uniform(0.1, 2.0, (n, n))
    d = (a + a.T) / 2
    np.fill_diagonal(d, 0)
    return d


@pytest.mark.parametrize("objective", ["intra", "paper"])
@pytest.mark.parametrize("sampler", [None, "exact", "dimod-exact", "dwave-sa"])
def test_solver_step_finds_the_best_subset_with_every_sampler(rng, objective, sampler):
    if sampler == "dwave-sa":
        pytest.importorskip("dwave.samplers")
    D = distances(rng, 9)
    want, _ = brute_best(D, 6, objective)
    sol = solve_selection(D, 6, objective=objective, sampler=sampler, num_reads=200, seed=1)
    assert sol.selected.sum() == 6
    assert sol.objective == pytest.approx(want) and sol.certified and sol.optimum == pytest.approx(want)


def test_repair_adds_and_drops_by_distance_sums():
    pts = np.array([0.0, 0.1, 0.2, 5.0, 9.0])
    D = np.abs(pts[:, None] - pts[None, :])
    fixed, steps = repair(D, np.ones(5, bool), 3)  # drop the two farthest
    assert fixed.tolist() == [True, True, True, False, False] and steps == 2
    fixed, steps = repair(D, np.array([True, False, False, False, False]), 3)  # add the two closest
    assert fixed.tolist() == [True, True, True, False, False] and steps == 2


class TooMany(dimod.Sampler):
    """A sampler that answers with every client selected (an infeasible sample)."""

    parameters, properties = {}, {}

    def sample(self, bqm):
        return dimod.SampleSet.from_samples(([[1] * bqm.num_variables], list(bqm.variables)), "BINARY", [0.0])


def test_infeasible_sample_is_repaired_and_reported(rng):
    D = distances(rng, 7)
    with pytest.warns(CardinalityRepairWarning, match="selects 7 of n=7 clients, not m=4.* dropped the 3 farthest"):
        sol = solve_selection(D, 4, sampler=TooMany())
    assert sol.selected.sum() == 4 and sol.repaired == 3 and sol.sample.sum() == 7


def test_cut_objective_keeps_outliers_intra_rejects_them():
    # The paper's pattern on outlier attacks: Eq. 8 (the cut) keeps every Byzantine client.
    honest = honest_updates(jax.random.key(0), 12, 3000)
    x = jax.numpy.concatenate([honest, attacks.apply("gaussian", jax.random.key(1), honest, 3)])
    byz = np.arange(15) >= 12
    paper = qkrum.select(x, 3, method="qubo", objective="paper")
    intra = qkrum.select(x, 3, method="qubo", objective="intra")
    assert metrics.detection(paper.selected, byz)["accuracy"] == pytest.approx(0.6)  # Table III
    assert metrics.detection(paper.selected, byz)["f1"] == 0.0
    assert metrics.detection(intra.selected, byz)["accuracy"] == 1.0
    assert paper.info["certified"] and intra.info["certified"]


def test_qubo_method_matches_brute_force_on_cosine_distances(rng):
    x = rng.standard_normal((10, 40)).astype(np.float32)
    D = np.clip(ref_cosine(x), 0, 2)
    _, want = brute_best(D, 7, "intra")
    sel = qkrum.select(x, 3, method="qubo", seed=3)
    np.testing.assert_array_equal(sel.selected, want)
    assert sel.info["objective_value"] == pytest.approx(objective_value(D, want, "intra"), rel=1e-5)
    np.testing.assert_allclose(sel.scores, D[:, want].sum(axis=1), rtol=1e-5)
    again = qkrum.select(x, 3, method="qubo", seed=3)
    np.testing.assert_array_equal(again.selected, sel.selected)


def test_qubo_method_leaves_nonfinite_clients_out(rng):
    x = rng.standard_normal((9, 20)).astype(np.float32)
    x[4, 0] = np.nan
    sel = qkrum.select(x, 2, method="qubo")
    assert not sel.selected[4] and sel.selected.sum() == 7 and np.isinf(sel.scores[4])


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"distance": "manhattan"}, ValueError, "distance must be one of"),
    ({"objective": "cut"}, ValueError, "objective must be one of"),
    ({"alpha": 2.0}, ValueError, "alpha must lie in"),
    ({"lam": -1.0}, ValueError, "lam must be"),
    ({"bogus": 1}, TypeError, "unknown option"),
    ({"sampler": "neal"}, ValueError, "unknown sampler='neal'"),
])
def test_qubo_method_bad_options(rng, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        qkrum.select(rng.standard_normal((6, 5)).astype(np.float32), 1, method="qubo", **kwargs)
