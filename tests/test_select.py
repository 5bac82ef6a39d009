"""qkrum.select: MultiKrum against brute-force references, properties, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import qkrum
from conftest import ref_krum, ref_sq_euclidean, x64
from qkrum import attacks, metrics
from qkrum.synthetic import honest_updates


def ref_multikrum(x, f, m, k=None):
    """Independent MultiKrum: float64, direct differences, stable ordering."""
    x = np.asarray(x, np.float64)
    if k is not None and k < x.shape[1]:
        x = x[:, np.argsort(-x.var(0), kind="stable")[:k]]
    scores = ref_krum(ref_sq_euclidean(x), f)
    mask = np.zeros(len(x), bool)
    mask[np.argsort(scores, kind="stable")[:m]] = True
    return mask, scores


def updates_strategy(min_n=5, max_n=14):
    return st.tuples(st.integers(min_n, max_n), st.integers(2, 24), st.integers(0, 2**31 - 1))


def draw(params):
    n, d, seed = params
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32), seed


def distinct_scores(scores):
    s = np.sort(scores)
    return np.all(np.diff(s) > 1e-4 * (1 + np.abs(s[1:])))


@given(updates_strategy())
def test_matches_reference_multikrum(params):
    x, seed = draw(params)
    n = len(x)
    f = seed % (n - 2)
    want, scores = ref_multikrum(x, f, n - f)
    assume(distinct_scores(scores))
    for method in ("multikrum", "multikrum_nnm", None):  # multikrum_nnm selects as MultiKrum on the full updates
        sel = qkrum.select(x, f) if method is None else qkrum.select(x, f, method=method)
        if method is None and sel.info["screened"]:
            continue  # the default's screen removed someone first (tests/test_screen.py)
        np.testing.assert_array_equal(sel.selected, want)
        np.testing.assert_allclose(sel.scores, scores, rtol=1e-4)
        assert sel.method == (method or qkrum.rules.DEFAULT)
        assert sel.selected.dtype == bool and sel.selected.shape == (n,)


@given(updates_strategy())
def test_permuting_clients_permutes_the_selection(params):
    x, seed = draw(params)
    n = len(x)
    f = seed % (n - 2)
    _, scores = ref_multikrum(x, f, n - f)
    assume(distinct_scores(scores))  # with ties, the index tie-break is not permutation-invariant
    perm = np.random.default_rng(seed + 1).permutation(n)
    a = qkrum.select(x, f)
    b = qkrum.select(x[perm], f)
    np.testing.assert_array_equal(b.selected, a.selected[perm])
    np.testing.assert_allclose(b.scores, a.scores[perm], rtol=1e-5)


@given(updates_strategy(min_n=3))
def test_f_zero_and_m_n_selects_everyone_and_aggregate_is_the_mean(params):
    x, _ = draw(params)
    sel = qkrum.select(x, 0)
    assert sel.selected.all()
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)


@given(updates_strategy(), st.floats(-3, 3))
def test_scores_are_translation_invariant(params, shift):
    x, seed = draw(params)
    n = len(x)
    f = seed % (n - 2)
    v = shift * np.random.default_rng(seed).standard_normal(x.shape[1]).astype(np.float32)
    # multikrum_nnm (the default's direction screen depends on the origin, the global model)
    a = qkrum.select(x, f, method="multikrum_nnm").scores
    b = qkrum.select(x + v, f, method="multikrum_nnm").scores
    # Gram-form rounding is relative to the squared norms, which the shift enlarges.
    scale = (n - f - 2) * float(np.max(np.sum((x + v).astype(np.float64) ** 2, 1)) + np.max(np.sum(x.astype(np.float64) ** 2, 1)))
    assert np.max(np.abs(a - b)) <= 2e-6 * scale


def test_projection_matches_reference(rng):
    x = rng.standard_normal((15, 400)).astype(np.float32) * rng.uniform(0.1, 3, 400).astype(np.float32)
    want, scores = ref_multikrum(x, 3, 12, k=50)
    sel = qkrum.select(x, 3, method="multikrum", project=50)
    np.testing.assert_array_equal(sel.selected, want)
    assert sel.info["k"] == 50
    assert set(sel.info["timings"]) >= {"projection", "distances", "scores", "selection", "total"}


def test_pytree_updates_equal_their_flattening(rng):
    tree = {"w": rng.standard_normal((9, 4, 5)).astype(np.float32), "b": rng.standard_normal((9, 5)).astype(np.float32)}
    flat = np.concatenate([tree["b"].reshape(9, -1), tree["w"].reshape(9, -1)], axis=1)  # tree_util order: b, w
    a = qkrum.select(tree, 2, method="multikrum")
    b = qkrum.select(flat, 2, method="multikrum")
    np.testing.assert_array_equal(a.selected, b.selected)
    agg = a.aggregate(tree)
    np.testing.assert_allclose(np.asarray(agg["w"]), tree["w"][a.selected].mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(agg["b"]), tree["b"][a.selected].mean(0), rtol=1e-5)
    # The default (mixing after the selection): the pytree aggregate is the flat one, split.
    a, b = qkrum.select(tree, 2), qkrum.select(flat, 2)
    np.testing.assert_array_equal(a.selected, b.selected)
    agg, want = a.aggregate(tree), np.asarray(b.aggregate(flat))
    np.testing.assert_allclose(np.asarray(agg["b"]).ravel(), want[:5], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(agg["w"]).ravel(), want[5:], rtol=1e-5)


def test_float64_selection(rng):
    x = rng.standard_normal((8, 30))
    with x64():
        sel = qkrum.select(x, 2, dtype=jnp.float64, method="multikrum_nnm")
        assert sel.scores.dtype == np.float64
        np.testing.assert_allclose(sel.scores, ref_multikrum(x, 2, 6)[1], rtol=1e-12)
    with pytest.raises(ValueError, match="jax_enable_x64"):
        qkrum.select(x, 2, dtype=np.float64)


@pytest.mark.parametrize("attack", ["gaussian", "sign_flip", "scaling", "same_value", "clustered"])
def test_multikrum_rejects_outlier_attacks(attack):
    key = jax.random.key(3)
    honest = honest_updates(key, 12, 2000)
    byz = attacks.apply(attack, jax.random.key(4), honest, 3)
    x = jnp.concatenate([honest, byz])
    is_byz = np.arange(15) >= 12
    det = metrics.detection(qkrum.select(x, 3, project=1000).selected, is_byz)
    assert det["accuracy"] == 1.0 and det["f1"] == 1.0


# --- non-finite updates ---------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("project", [None, 5])
def test_nonfinite_clients_never_selected_nor_aggregated(rng, bad, project):
    x = rng.standard_normal((10, 20)).astype(np.float32)
    x[[1, 6], 3] = bad
    sel = qkrum.select(x, 2, project=project)  # m = 8 = the number of finite clients
    assert not sel.selected[[1, 6]].any() and sel.selected.sum() == 8
    assert sel.info["nonfinite"] == [1, 6]
    assert np.isinf(sel.scores[[1, 6]]).all() and np.isfinite(np.delete(sel.scores, [1, 6])).all()
    agg = np.asarray(sel.aggregate(x))
    np.testing.assert_allclose(agg, np.delete(x, [1, 6], 0).mean(0), rtol=1e-5, atol=1e-6)


def test_more_nonfinite_clients_than_f_warns_and_selects_the_finite(rng):
    x = rng.standard_normal((10, 20)).astype(np.float32)
    x[[0, 2, 4], 0] = np.nan
    with pytest.warns(RuntimeWarning, match="only 7 of n=10"):
        sel = qkrum.select(x, 2)
    np.testing.assert_array_equal(sel.indices, [1, 3, 5, 6, 7, 8, 9])


def test_all_nonfinite_is_an_error():
    with pytest.raises(ValueError, match="all 4 client updates"):
        qkrum.select(np.full((4, 3), np.nan, np.float32), 1)


def test_aggregate_rejects_empty_selection(rng):
    with pytest.raises(ValueError, match="nothing to aggregate"):
        qkrum.aggregate(rng.standard_normal((3, 2)), np.zeros(3, bool))


# --- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    ({"f": -1}, ValueError, "f must be >= 0, got f=-1"),
    ({"f": 10}, ValueError, "f must be smaller than the number of clients n=10, got f=10"),
    ({"f": 8}, ValueError, "n - f - 2 >= 1"),
    ({"f": 1.0}, TypeError, "f must be an integer"),
    ({"f": 1, "m": 0}, ValueError, "m must be >= 1, got m=0"),
    ({"f": 1, "m": 11}, ValueError, "m must be <= 10, got m=11"),
    ({"f": 1, "project": 0}, ValueError, "project must be >= 1, got project=0"),
    ({"f": 1, "method": "nope"}, ValueError, "unknown method='nope'; valid methods: .*multikrum"),
    ({"f": 1, "bogus": 3}, TypeError, "unknown option.*'bogus'.*valid options: kappa"),
    ({"f": 1, "method": "multikrum", "bogus": 3}, TypeError, "takes no options"),
])
def test_bad_arguments(rng, kwargs, exc, match):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(exc, match=match):
        qkrum.select(x, **kwargs)


@pytest.mark.parametrize("updates,exc,match", [
    (np.ones(5, np.float32), ValueError, r"shape \(n, d\)"),
    (np.ones((0, 3), np.float32), ValueError, "at least one client"),
    (np.ones((4, 3), np.int32), TypeError, "floating-point"),
    ({"a": np.ones((4, 2), np.float32), "b": np.ones((5, 2), np.float32)}, ValueError, "leading client axis"),
    ({}, ValueError, "empty"),
])
def test_bad_updates(updates, exc, match):
    with pytest.raises(exc, match=match):
        qkrum.select(updates, 0)
