"""Suspicion QUBO (Eq. 15), routing gate, agreement voting, cascade and MultiSignal."""

import itertools

import dimod
import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qkrum
from conftest import ref_cosine, ref_gap, ref_krum, ref_sq_euclidean
from qkrum import attacks, metrics
from qkrum.anneal import ExactSolver
from qkrum.ensemble import REGIMES, VoteWeights, agreement_vote, route, vote_categories
from qkrum.qubo import penalty_bound, selection_qubo, suspicion_penalty, suspicion_qubo
from qkrum.qubo import objective_value, solve_selection
from qkrum.selection import ByzantineMajorityWarning, SamplerError
from qkrum.synthetic import honest_updates


def distances(rng, n):
    a = rng.uniform(0.1, 2.0, (n, n))
    d = (a + a.T) / 2
    np.fill_diagonal(d, 0)
    return d


def brute_best(D, m, objective, P):
    best, arg = np.inf, None
    for S in itertools.combinations(range(len(D)), m):
        mask = np.zeros(len(D), bool)
        mask[list(S)] = True
        v = objective_value(D, mask, objective, P)
        if v < best - 1e-12:
            best, arg = v, mask
    return best, arg


def round_with(attack, seed, n=15, f=3, d=4000, **params):
    honest = honest_updates(jax.random.key(seed), n - f, d)
    byz = attacks.apply(attack, jax.random.key(1000 + seed), honest, f, **params)
    return np.concatenate([np.asarray(byz), np.asarray(honest)]), np.arange(n) < f


# --- Eq. 15 -------------------------------------------------------------------------------

def test_suspicion_coefficients_by_hand():
    D = np.array([[0, 1, 4, 2], [1, 0, 3, 5], [4, 3, 0, 6], [2, 5, 6, 0]], float)
    # Upper-triangular entries 1, 4, 2, 3, 5, 6: 10th percentile = 1 + 0.5 * (2 - 1) = 1.5.
    P, tau = suspicion_penalty(D)
    assert tau == pytest.approx(1.5)
    want_P = np.zeros((4, 4))
    want_P[0, 1] = want_P[1, 0] = 10 * 0.5  # only D_01 = 1 lies below 1.5
    np.testing.assert_allclose(P, want_P)
    lam, m = 2.0, 2
    Q, off = suspicion_qubo(D, m, objective="paper", lam=lam)
    # Eq. 10 and Eq. 15 with the penalty's 2λ kept: Q_ij = -2 D_ij + P_ij + 2λ.
    np.testing.assert_allclose(np.diag(Q), D.sum(1) + lam * (1 - 2 * m))
    assert Q[0, 1] == pytest.approx(-2 * 1 + 5 + 4) and Q[0, 2] == pytest.approx(-2 * 4 + 4)
    assert off == pytest.approx(lam * m * m) and np.all(np.tril(Q, -1) == 0)
    Qi, _ = suspicion_qubo(D, m, objective="intra", lam=lam)
    assert Qi[0, 1] == pytest.approx(1 + 5 + 4) and Qi[2, 3] == pytest.approx(6 + 4)


@pytest.mark.parametrize("objective", ["intra", "paper"])
@pytest.mark.parametrize("n,m", [(8, 5), (11, 8), (12, 3)])
def test_suspicion_optimum_equals_brute_force_and_annealer_finds_it(rng, objective, n, m):
    D = distances(rng, n)
    P, _ = suspicion_penalty(D, percentile=20, weight=10)
    want, _ = brute_best(D, m, objective, P)
    sol = solve_selection(D, m, objective=objective, pair_penalty=P, num_reads=200, seed=3)
    assert sol.objective == pytest.approx(want) and sol.certified
    # The penalised QUBO (provable λ) solved without any cardinality help: |S| = m.
    Q, off = selection_qubo(D, m, objective=objective, pair_penalty=P)
    ground = ExactSolver().sample_qubo({(i, j): Q[i, j] for i in range(n) for j in range(i, n)}).first
    x = np.array([ground.sample[i] for i in range(n)])
    assert x.sum() == m and ground.energy + off == pytest.approx(want)


def test_suspicion_penalty_errors():
    D = np.ones((3, 3)) - np.eye(3)
    with pytest.raises(ValueError, match="percentile must lie in \\[0, 100\\], got percentile=120"):
        suspicion_penalty(D, percentile=120)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0, got weight=-1"):
        suspicion_penalty(D, weight=-1)
    with pytest.raises(ValueError, match="pair_penalty must have the shape of D"):
        selection_qubo(D, 2, pair_penalty=np.zeros((2, 2)))


# --- routing gate ---------------------------------------------------------------------------

@pytest.mark.parametrize("de,dc,want", [
    (0.3, 0.6, "outlier"), (0.3, 0.4, "magnitude"), (0.1, 0.6, "clustered"), (0.1, 0.4, "evasion"),
    (0.2, 0.5, "evasion"),  # equal to the threshold is not clear
    (0.1, 0.3, "evasion"),  # the paper's hole (tau_E < dC <= tau_C) is evasion, as Algorithm 1's else
    (np.inf, np.inf, "outlier"), (np.nan, np.nan, "evasion"),
])
def test_route(de, dc, want):
    assert route(de, dc, 0.2, 0.5) == want and want in REGIMES


@given(st.floats(0, 5), st.floats(0, 5))
def test_route_routes_as_algorithm_1(de, dc):
    """Every round Algorithm 1 sends to MultiKrum goes to a classical regime here, and vice versa."""
    tau_e, tau_c = 0.2, 0.5
    paper_classical = (de > tau_e and dc > tau_e) or (de <= tau_e and dc > tau_c) or (de > tau_e and dc <= tau_e)
    assert (route(de, dc, tau_e, tau_c) != "evasion") == paper_classical


# --- agreement voting -------------------------------------------------------------------------

def ref_vote(classical, qubo, scores, m, weights):
    s = (scores - scores.min()) / (scores.max() - scores.min())
    adj = [weights.agreed_accept if c and q else weights.qubo_only if q else
           weights.classical_only if c else weights.agreed_reject for c, q in zip(classical, qubo)]
    order = sorted(range(len(s)), key=lambda i: (s[i] + adj[i], i))
    out = np.zeros(len(s), bool)
    out[order[:m]] = True
    return out


@given(st.integers(4, 20), st.integers(0, 2**31 - 1))
def test_vote_matches_reference(n, seed):
    r = np.random.default_rng(seed)
    m = int(r.integers(1, n))
    classical = np.zeros(n, bool)
    classical[r.choice(n, m, replace=False)] = True
    qubo = np.zeros(n, bool)
    qubo[r.choice(n, m, replace=False)] = True
    scores = r.random(n)
    w = VoteWeights()
    got = agreement_vote(classical, qubo, scores, m, weights=w)
    np.testing.assert_array_equal(got, ref_vote(classical, qubo, scores, m, w))
    cats = vote_categories(classical, qubo)
    # With the default weights agreed-accept clients are always kept (there are at most m),
    # agreed-reject ones never (the other three categories hold at least m clients).
    assert got.sum() == m and got[cats == 0].all() and not got[cats == 3].any()


def test_vote_weights_decide_between_qubo_and_classical():
    classical = np.array([1, 1, 0, 0, 1], bool)
    qubo = np.array([1, 0, 1, 0, 1], bool)
    scores = np.array([0.0, 0.1, 0.9, 0.5, 1.0])  # QUBO-only client 2 has a bad cosine score
    # Default: 2 (0.9 + 0) vs classical-only 1 (0.1 + 0.5): the classical one wins.
    np.testing.assert_array_equal(agreement_vote(classical, qubo, scores, 3), [1, 1, 0, 0, 1])
    # A QUBO-trusting vote (large classical-only penalty) returns the QUBO's subset.
    qubo_first = VoteWeights(classical_only=5.0, agreed_reject=10.0)
    np.testing.assert_array_equal(agreement_vote(classical, qubo, scores, 3, weights=qubo_first), qubo)
    # Invalid clients are never selected.
    valid = np.array([0, 1, 1, 1, 1], bool)
    assert not agreement_vote(classical, qubo, scores, 3, valid)[0]


# --- cascade and MultiSignal through qkrum.select ---------------------------------------------

@pytest.mark.parametrize("attack", ["gaussian", "scaling"])
@pytest.mark.parametrize("seed", range(3))
def test_multisignal_routes_outlier_attacks_to_multikrum_and_detects_perfectly(attack, seed):
    x, byz = round_with(attack, seed)
    sel = qkrum.select(x, 3, method="multisignal", seed=seed)
    assert sel.info["regime"] in ("outlier", "magnitude")
    np.testing.assert_array_equal(sel.info["subsets"]["multikrum"], np.flatnonzero(sel.selected))
    assert metrics.detection(sel.selected, byz)["accuracy"] == 1.0


def test_multisignal_gaps_equal_reference(rng):
    x, _ = round_with("alie", 0, d=600)
    sel = qkrum.select(x, 3, method="multisignal", project=200)
    xp = x[:, np.argsort(-x.astype(np.float64).var(0), kind="stable")[:200]]
    assert sel.info["gap_euclidean"] == pytest.approx(ref_gap(ref_krum(ref_sq_euclidean(x), 3), 12), rel=1e-3)
    assert sel.info["gap_cosine"] == pytest.approx(ref_gap(ref_krum(ref_cosine(xp), 3), 12), rel=1e-3, abs=1e-4)


def evasion_round(seed=0):
    # Clients indistinguishable by both gaps: i.i.d. noise, both gaps far below the thresholds.
    x, _ = round_with("stealthy", seed, d=3000)
    return x


def test_multisignal_evasion_runs_the_vote_and_is_deterministic():
    x = evasion_round()
    a = qkrum.select(x, 3, method="multisignal", seed=5, tau_e=1e6, tau_c=1e6)
    b = qkrum.select(x, 3, method="multisignal", seed=5, tau_e=1e6, tau_c=1e6)
    assert a.info["regime"] == "evasion" and a.selected.sum() == 12
    np.testing.assert_array_equal(a.selected, b.selected)
    assert set(a.info["subsets"]) == {"multikrum", "qubo"} and a.info["certified"] is True
    assert sum(a.info["vote_counts"].values()) == 15 and a.info["qubo_energy"] is not None
    assert {"distances_full", "distances", "scores", "qubo_build", "solve", "vote"} <= set(a.info["timings"])
    # The vote with a QUBO-trusting weighting returns the suspicion QUBO's own subset.
    q = qkrum.select(x, 3, method="multisignal", seed=5, tau_e=1e6, tau_c=1e6,
                     vote_weights=VoteWeights(classical_only=5.0, agreed_reject=10.0))
    np.testing.assert_array_equal(q.indices, q.info["subsets"]["qubo"])


def test_paranoid_flags_the_union_of_rejections():
    x, byz = round_with("gaussian", 1)
    sel = qkrum.select(x, 3, method="multisignal", paranoid=True)
    both = np.intersect1d(sel.info["subsets"]["multikrum"], sel.info["subsets"]["qubo"])
    np.testing.assert_array_equal(sel.indices, both)
    assert sel.selected.sum() <= 12 and not sel.selected[byz].any()


def test_cascade_routes_by_the_euclidean_gap():
    x, _ = round_with("gaussian", 0)
    low = qkrum.select(x, 3, method="cascade")
    assert low.info["route"] == "multikrum"
    np.testing.assert_array_equal(low.selected, qkrum.select(x, 3, method="multikrum", project=None).selected)
    high = qkrum.select(x, 3, method="cascade", tau=1e9, seed=2)
    assert high.info["route"] == "qubo"
    np.testing.assert_array_equal(high.selected, qkrum.select(x, 3, method="qubo", distance="dual", seed=2).selected)


@pytest.mark.parametrize("method", ["cascade", "multisignal", "qubo"])
def test_nonfinite_clients_never_selected_nor_aggregated(method):
    x, _ = round_with("alie", 2, d=500)
    x[4, 7] = np.nan
    x[9, :] = np.inf
    opts = {"tau_e": 1e6, "tau_c": 1e6} if method == "multisignal" else {"tau": 1e6} if method == "cascade" else {}
    sel = qkrum.select(x, 3, method=method, **opts)
    assert not sel.selected[[4, 9]].any() and sel.selected.sum() == 12
    assert np.isfinite(np.asarray(sel.aggregate(x))).all()


class Raises(dimod.Sampler):
    parameters, properties = {}, {}

    def sample(self, bqm):
        raise ConnectionError("solver unreachable")


class Empty(dimod.Sampler):
    parameters, properties = {}, {}

    def sample(self, bqm):
        return dimod.SampleSet.from_samples(([[0] * bqm.num_variables], list(bqm.variables)), "BINARY", [0.0])


def test_raising_sampler_is_an_error_not_a_guess():
    x = evasion_round()
    with pytest.raises(SamplerError, match="ConnectionError: solver unreachable"):
        qkrum.select(x, 3, method="multisignal", tau_e=1e6, tau_c=1e6, sampler=Raises())


def test_infeasible_sampler_answer_is_repaired_and_reported():
    x = evasion_round()
    with pytest.warns(qkrum.CardinalityRepairWarning, match="selects 0 of n=15 clients, not m=12"):
        sel = qkrum.select(x, 3, method="qubo", sampler=Empty())
    assert sel.selected.sum() == 12 and sel.info["repaired"] == 12 and sel.info["certified"] in (True, False)


@pytest.mark.parametrize("method,kwargs,match", [
    ("multisignal", {"tau_e": -0.1}, "tau_e must be a finite number >= 0, got tau_e=-0.1"),
    ("multisignal", {"tau_c": float("nan")}, "tau_c must be a finite number >= 0, got tau_c=nan"),
    ("cascade", {"tau": float("inf")}, "tau must be a finite number >= 0, got tau=inf"),
    ("multisignal", {"alpha": 1.5}, "alpha must lie in \\[0, 1\\], got alpha=1.5"),
    ("multisignal", {"percentile": 101}, "percentile must lie in \\[0, 100\\], got percentile=101"),
    ("multisignal", {"bogus": 1}, "unknown option\\(s\\) \\['bogus'\\]"),
])
def test_bad_options(method, kwargs, match):
    x = evasion_round()
    if "percentile" in kwargs:
        kwargs = {**kwargs, "tau_e": 1e6, "tau_c": 1e6}
    with pytest.raises((ValueError, TypeError), match=match):
        qkrum.select(x, 3, method=method, **kwargs)


def test_byzantine_majority_warns_with_the_lost_guarantee(rng):
    x = rng.standard_normal((10, 5)).astype(np.float32)
    with pytest.warns(ByzantineMajorityWarning, match="f >= n/2 the attackers can be a majority"):
        qkrum.select(x, 5, method="qubo")
    with pytest.warns(ByzantineMajorityWarning, match="needs n >= 2f \\+ 3 \\(here 11\\)"):
        qkrum.select(x, 4, method="qubo")


@pytest.mark.parametrize("base", ["qubo", "cascade", "multisignal"])
def test_paper_presets_equal_the_method_with_the_published_qubo(base):
    x = round_with("alie", 0)[0]
    forced = {"tau": 1e30} if base == "cascade" else {"tau_e": 1e30, "tau_c": 1e30} if base == "multisignal" else {}
    preset = qkrum.select(x, 3, method=f"{base}-paper", seed=1, project=None, **forced)
    direct = qkrum.select(x, 3, method=base, seed=1, project=None, objective="paper", lam="paper", **forced)
    np.testing.assert_array_equal(preset.selected, direct.selected)
    assert preset.info["objective"] == "paper" and preset.info["lam"] == "paper"
    # Options still override the preset.
    intra = qkrum.select(x, 3, method=f"{base}-paper", seed=1, project=None, objective="intra", lam=None, **forced)
    assert intra.info["objective"] == "intra"
