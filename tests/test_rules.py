"""The rule contract: rules as validated values, chains with pre-aggregators, one path
from select through the jit aggregator to the FL loop, checked against NumPy references."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qkrum
from qkrum.rules import PreAggregator, Rule
from qkrum.selection import pre_key


def round_updates(n=15, d=40, f=3, seed=0):
    """Honest clients around a common direction, ``f`` attackers far along another."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, d)) * 0.3 + 1.0).astype(np.float32)
    x[:f] = -4.0 + rng.standard_normal((f, d)).astype(np.float32)
    return x


def round_with_invalid(nan_row):
    """:func:`round_updates` with row ``nan_row`` (if any) NaN, and the valid mask."""
    x = round_updates()
    if nan_row is not None:
        x[nan_row] = np.nan
    return x, np.isfinite(x).all(axis=1)


# --- NumPy references ---------------------------------------------------------------------

def ref_nnm(x, valid, f):
    x = np.asarray(x, np.float64)
    idx = np.flatnonzero(valid)
    k = min(len(x) - f, idx.size)
    out = np.zeros_like(x)
    for i in idx:
        dist = [((x[i] - x[j]) ** 2).sum() for j in idx]
        nearest = idx[np.argsort(dist, kind="stable")[:k]]
        out[i] = x[nearest].mean(axis=0)
    return out


def ref_trimmed_mean(rows, beta):
    s = np.sort(np.asarray(rows, np.float64), axis=0)
    return s[beta:len(s) - beta].mean(axis=0)


def ref_buckets(x, valid, s, key):
    """Bucketing from its definition: the permutation of the round's key, valid clients
    first in permuted order, consecutive buckets of s."""
    n = len(x)
    perm = np.asarray(jax.random.permutation(key, n))
    order = [c for c in perm if valid[c]] + [c for c in perm if not valid[c]]
    b = -(-n // s)
    means, ok, owner = np.zeros((b, x.shape[1])), np.zeros(b, bool), np.zeros(n, int)
    for p, c in enumerate(order):
        owner[c] = p // s
    for j in range(b):
        members = [c for c in order[j * s:(j + 1) * s] if valid[c]]
        if members:
            ok[j] = True
            means[j] = np.asarray(x, np.float64)[members].mean(axis=0)
    return means, ok, owner


# --- rules are validated, immutable values ------------------------------------------------

@pytest.mark.parametrize("name,options,exc,match", [
    ("trimmed_mean", {"bogus": 1}, TypeError, r"method 'trimmed_mean' got unknown option\(s\) \['bogus'\]; valid options: beta"),
    ("trimmed_mean", {"beta": -1}, ValueError, "beta must be >= 0, got beta=-1"),
    ("multikrum", {"beta": 1}, TypeError, r"method 'multikrum' takes no options, got \['beta'\]"),
    ("qubo", {"distance": "manhattan"}, ValueError, "distance must be one of"),
    ("qubo", {"num_reads": 0}, ValueError, "num_reads must be >= 1, got num_reads=0"),
    ("qubo", {"sampler": "neal"}, ValueError, "unknown sampler='neal'"),
    ("qubo", {"lam": "big"}, ValueError, "lam must be None, 'paper' or a number"),
    ("multisignal", {"percentile": 101}, ValueError, r"percentile must lie in \[0, 100\], got percentile=101"),
    ("multisignal", {"tau_e": -0.1}, ValueError, "tau_e must be a finite number >= 0, got tau_e=-0.1"),
    ("cascade-paper", {"alpha": 2}, ValueError, r"alpha must lie in \[0, 1\], got alpha=2"),
    ("centered_clipping", {"tau": "big"}, TypeError, "tau must be a real number, got 'big'"),
    ("nope", {}, ValueError, "unknown method='nope'; valid methods: .*multikrum"),
])
def test_rule_validates_at_construction(name, options, exc, match):
    with pytest.raises(exc, match=match):
        qkrum.rule(name, **options)


def test_bad_options_fail_before_any_round():
    # The aggregator and the FL server step build the rule first: nothing runs.
    with pytest.raises(ValueError, match="num_reads must be >= 1"):
        qkrum.aggregator(3, method="qubo", num_reads=0)
    with pytest.raises(ValueError, match="s must be >= 1, got s=0"):
        qkrum.aggregator(3, method="bucketing(s=0),multikrum")
    from qkrum.fl.simulation import selection_aggregator

    with pytest.raises(TypeError, match="unknown option"):
        selection_aggregator("multisignal", bogus=True)


def test_rules_are_immutable_values_with_a_spec():
    r = qkrum.rule("trimmed_mean", beta=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "mean"
    assert r == qkrum.rules.trimmed_mean(beta=2) and r != qkrum.rule("trimmed_mean")
    assert hash(r) == hash(qkrum.rules.trimmed_mean(beta=2))
    assert r.spec == "trimmed_mean(beta=2)" and r.kwargs == {"beta": 2}
    assert r.with_options(beta=1) == qkrum.rule("trimmed_mean", beta=1) and r.kwargs == {"beta": 2}
    c = qkrum.chain("nnm", "bucketing(s=3)", r)
    assert c.spec == "nnm,bucketing(s=3),trimmed_mean(beta=2)"
    assert qkrum.rules.as_rule(c.spec) == c  # the spec parses back to the same rule
    assert c.with_options(beta=0).pre == c.pre
    assert not r.selects and qkrum.rule("multikrum").selects
    assert sorted(qkrum.METHODS) == sorted(qkrum.rules.RULES)


@pytest.mark.parametrize("steps,exc,match", [
    (("multikrum", "nnm"), TypeError, "the last step of a chain must be a rule"),
    (("multikrum", "median"), TypeError, "chain step 0 'multikrum' is a rule"),
    (("nnm", "nope"), ValueError, "unknown method='nope'"),
    ((), ValueError, "at least one step"),
    (("nnm", 3), TypeError, "a chain step must be"),
])
def test_chain_errors(steps, exc, match):
    with pytest.raises(exc, match=match):
        qkrum.chain(*steps)


def test_a_preaggregator_alone_is_not_a_rule():
    x = round_updates()
    with pytest.raises(ValueError, match="need a rule after them, e.g. 'nnm,multikrum'"):
        qkrum.select(x, 3, method="nnm")
    with pytest.raises(TypeError, match="not a rule on its own"):
        qkrum.select(x, 3, method=qkrum.preaggregator("arc"))
    with pytest.raises(ValueError, match=r"unbalanced parentheses"):
        qkrum.select(x, 3, method="bucketing(s=2,multikrum")


# --- chains against NumPy references ------------------------------------------------------

@pytest.mark.parametrize("nan_row", [None, 7])
def test_nnm_then_trimmed_mean_matches_numpy(nan_row):
    x, valid = round_with_invalid(nan_row)
    sel = qkrum.select(x, 3, method="nnm,trimmed_mean", project=None)
    mixed = ref_nnm(x, valid, 3)[valid]
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), ref_trimmed_mean(mixed, 3), rtol=1e-5, atol=1e-5)
    assert sel.info["preaggregation"] == ["nnm"] and np.array_equal(sel.selected, valid)


def test_bucketing_then_mean_and_multikrum_match_numpy():
    x = round_updates(n=16, f=3)
    x[5] = np.nan
    valid = np.isfinite(x).all(axis=1)
    seed = 11
    # Step i of a chain draws from fold_in(pre_key(round key), i).
    means, ok, owner = ref_buckets(x, valid, 2, jax.random.fold_in(pre_key(jax.random.key(seed)), 0))
    sel = qkrum.select(x, 3, method="bucketing(s=2),mean", seed=seed, project=None)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), means[ok].mean(axis=0), rtol=1e-5)
    assert sel.info["rows"] == 8
    # MultiKrum on the bucket means: m = rows − f buckets, chosen by the Krum scores of
    # the NumPy bucket means; a client is selected when its bucket is.
    sel = qkrum.select(x, 3, method="bucketing(s=2),multikrum", seed=seed, project=None)
    b = means.shape[0]
    sq = ((means[:, None] - means[None]) ** 2).sum(-1)
    sq[~ok] = sq[:, ~ok] = np.inf
    scores = np.array([np.sort(np.delete(sq[i], i))[:b - 3 - 2].sum() if ok[i] else np.inf for i in range(b)])
    chosen = np.argsort(scores, kind="stable")[:b - 3]
    np.testing.assert_array_equal(sel.selected, np.isin(owner, chosen) & valid)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), means[chosen].mean(axis=0), rtol=1e-5)
    # The f attackers share at most f buckets; what MultiKrum keeps holds none of them.
    assert not sel.selected[:3].any()


def test_clipping_and_arc_chains_match_numpy():
    x = round_updates()
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    clipped = x * np.minimum(1, 2.0 / norms)[:, None]
    sel = qkrum.select(x, 3, method="clipping(c=2.0),median", project=None)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), np.median(clipped, axis=0), rtol=1e-5, atol=1e-6)
    k = (2 * 3 * (15 - 3)) // 15
    order = np.argsort(-norms, kind="stable")
    arc = x.astype(np.float64).copy()
    arc[order[:k]] *= (norms[order[k]] / norms[order[:k]])[:, None]
    sel = qkrum.select(x, 3, method="arc,mean", project=None)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), arc.mean(axis=0), rtol=1e-5, atol=1e-6)


# --- multikrum_nnm (the default's rule behind its screen): MultiKrum on the full updates
# selects, NNM feeds the aggregate -----------------------------------------------------------

def ref_multikrum_full(x, valid, f, m):
    x = np.asarray(x, np.float64)
    n = len(x)
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    sq[:, ~valid] = np.inf
    scores = np.array([np.sort(np.delete(sq[i], i))[:n - f - 2].sum() if valid[i] else np.inf for i in range(n)])
    chosen = np.argsort(scores, kind="stable")[:m]
    return np.isin(np.arange(n), chosen) & valid


@pytest.mark.parametrize("nan_row", [None, 7])
def test_multikrum_nnm_selects_like_full_multikrum_and_averages_mixed_rows(nan_row):
    x, valid = round_with_invalid(nan_row)
    sel = qkrum.select(x, 3, method="multikrum_nnm")
    want = ref_multikrum_full(x, valid, 3, 12)  # m = n - f, the invalid row never among them
    np.testing.assert_array_equal(sel.selected, want)
    assert (not sel.selected[nan_row]) if nan_row else not sel.selected[:3].any()
    mixed = ref_nnm(x, valid, 3)  # mixing over every valid client, rejected ones included
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), mixed[want].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert sel.info["mixing"] == ["nnm"] and "preaggregation" not in sel.info
    # With a NaN row, one attacker is selected and enters every mixed row: the aggregate
    # is then not the mean of the selected updates themselves.
    if nan_row is not None:
        assert not np.allclose(np.asarray(sel.aggregate(x)), np.asarray(x, np.float64)[want].mean(axis=0), atol=1e-4)


def test_default_rule_is_blind_to_no_coordinate():
    """Noise in the low-variance coordinates: MultiKrum on a k-coordinate variance projection
    never sees it; the default, on the full updates, rejects it."""
    rng = np.random.default_rng(3)
    n, d, f, k = 15, 2_000, 3, 100
    scale = np.where(np.arange(d) < k, 3.0, 0.01)
    x = (1.0 + rng.standard_normal((n, d)) * scale).astype(np.float32)
    x[:f, k:] += rng.standard_normal((f, d - k)).astype(np.float32) * 1.0  # 100x the honest spread there
    projected = qkrum.select(x, f, method="multikrum", project=k)
    assert projected.selected[:f].any()
    default = qkrum.select(x, f, project=k)  # project does not apply to the default
    assert not default.selected[:f].any()


def test_mix_steps_keep_rows_in_place():
    rule = qkrum.rule("multikrum")
    with pytest.raises(ValueError, match="keep rows in place"):
        dataclasses.replace(rule, mix=(qkrum.preaggregator("bucketing", s=2),))


# --- one chain, one aggregate: select, the jit aggregator, the FL loop --------------------

CHAINS = ["nnm,trimmed_mean", "bucketing(s=2),multikrum", "arc,multisignal", "multikrum", "trimmed_mean",
          "multikrum_nnm", "clipping(c=5.0),multikrum_nnm", "screened_multikrum_nnm"]


@pytest.mark.parametrize("spec", CHAINS)
def test_same_aggregate_through_select_and_the_jit_aggregator(spec):
    x = round_updates()
    x[9] = np.nan
    pytree = {"w": jnp.asarray(x[:, :30].reshape(15, 5, 6)), "b": jnp.asarray(x[:, 30:])}
    key = jax.random.key(4)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    want = qkrum.select(pytree, 3, method=spec, seed=seed)
    agg = qkrum.aggregator(3, method=qkrum.rules.as_rule(spec), num_clients=15)
    got, state = jax.jit(agg.update)(pytree, agg.init(), key=key)
    expected = want.aggregate(pytree)
    for leaf in ("w", "b"):
        np.testing.assert_allclose(np.asarray(got[leaf]), np.asarray(expected[leaf]), rtol=1e-5, atol=1e-6)
        assert got[leaf].shape == pytree[leaf].shape[1:]
    np.testing.assert_array_equal(np.asarray(state.selected), want.selected)
    assert not want.selected[9]


def test_the_fl_loop_aggregates_with_the_same_chain(monkeypatch):
    import qkrum.fl.simulation as sim

    seen = []
    real = sim.selection_aggregator

    def recording(method, **kwargs):
        step = real(method, **kwargs)

        def wrapped(updates, f, key):
            out, info = step(updates, f, key)
            seen.append((np.asarray(updates), f, key, np.asarray(out), info))
            return out, info

        wrapped.rule, wrapped.name = step.rule, step.name
        return wrapped

    monkeypatch.setattr(sim, "selection_aggregator", recording)
    history = qkrum.fl.simulate("digits", clients=10, byzantine=2, attack="sign_flip", method="nnm,trimmed_mean",
                                rounds=1, seed=0, progress=False)
    assert history.config["server"] == "nnm,trimmed_mean"
    updates, f, key, out, info = seen[-1]  # the round (the first call is the dummy check)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    want = qkrum.select(updates, f, method="nnm,trimmed_mean", seed=seed)
    np.testing.assert_allclose(out, np.asarray(want.aggregate(updates)), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(info["selected"], want.selected)
    assert history.rounds[0]["selected"] == np.flatnonzero(want.selected).tolist()


def test_cqsa_screening_takes_a_rule():
    from qkrum.cqsa.screening import screen_select

    means = round_updates(n=12, f=2)
    by_name, _ = screen_select(means, 2, "multikrum", seed=0, options={"project": None})
    by_rule, info = screen_select(means, 2, qkrum.rule("multikrum"), seed=0, options={"project": None})
    np.testing.assert_array_equal(by_name, by_rule)
    assert by_rule[:2].all() and info["method"] == "multikrum"
    with pytest.raises(ValueError, match="robust statistic"):
        screen_select(means, 2, "nnm,median", seed=0)


def test_a_third_party_rule_registers_explicitly():
    from qkrum.rules import MethodResult, factory_of, register_rule

    def run(rnd):
        norms = np.linalg.norm(np.where(rnd.valid_np[:, None], np.asarray(rnd.full), 0), axis=1)
        norms[~rnd.valid_np] = np.inf
        keep = np.zeros(rnd.n, bool)
        keep[np.argsort(norms, kind="stable")[:rnd.m]] = True
        return MethodResult(keep, norms, {})

    @factory_of("smallest_norms")
    def smallest_norms() -> Rule:
        return Rule("smallest_norms", (), run=run)

    assert "smallest_norms" not in qkrum.METHODS
    register_rule("smallest_norms", smallest_norms)
    try:
        x = round_updates()
        x[:3] *= 10
        sel = qkrum.select(x, 3, method="clipping(c=100.0),smallest_norms")
        assert sel.rejected.tolist() == [0, 1, 2]
    finally:
        from qkrum.rules import base

        base._RULES.pop("smallest_norms")
    assert isinstance(qkrum.preaggregator("nnm"), PreAggregator)
