"""Kernels against independent NumPy references, on random and adversarial inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import ref_cosine, ref_gap, ref_krum, ref_sq_euclidean, x64
from qkrum import kernels as K


def rel_close(got, want, rtol, scale):
    """|got - want| <= rtol * scale elementwise (scale: the size rounding is relative to)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.all(np.abs(got - want) <= rtol * scale)


# --- distances ------------------------------------------------------------------------

@pytest.mark.parametrize("n,d", [(2, 3), (7, 50), (40, 1000)])
def test_sq_euclidean_matches_reference(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    got = np.asarray(K.pairwise_sq_euclidean(jnp.asarray(x)))
    want = ref_sq_euclidean(x)
    scale = (np.linalg.norm(x, axis=1) ** 2).max()
    assert rel_close(got, want, 1e-5, scale)
    assert np.all(np.diag(got) == 0)
    assert np.all(got >= 0)
    np.testing.assert_array_equal(got, got.T)


def test_sq_euclidean_adversarial_inputs(rng):
    x = rng.standard_normal((6, 300)).astype(np.float32)
    x[1] = x[0]  # duplicate
    x[2] = 0  # zero update
    x[3] *= 1e6  # huge norm
    got = np.asarray(K.pairwise_sq_euclidean(jnp.asarray(x)))
    want = ref_sq_euclidean(x)
    # duplicates: clamped at >= 0 and tiny relative to their norms
    assert 0 <= got[0, 1] <= 1e-5 * np.sum(x[0] ** 2)
    # distances to the zero update are the squared norms
    np.testing.assert_allclose(got[2, [0, 4, 5]], np.sum(x[[0, 4, 5]].astype(np.float64) ** 2, 1), rtol=1e-5)
    # the huge update is far from everyone, with the right magnitude
    np.testing.assert_allclose(got[3, [0, 4, 5]], want[3, [0, 4, 5]], rtol=1e-4)
    assert np.all(np.isfinite(got))


def test_euclidean_and_normalised(rng):
    x = rng.standard_normal((9, 64)).astype(np.float32)
    e = np.asarray(K.pairwise_euclidean(jnp.asarray(x)))
    want = np.sqrt(ref_sq_euclidean(x))
    np.testing.assert_allclose(e, want, rtol=1e-4, atol=1e-5)
    nrm = np.asarray(K.normalized_euclidean(jnp.asarray(e)))
    np.testing.assert_allclose(nrm, want / want.max(), rtol=1e-4, atol=1e-6)
    assert nrm.max() == pytest.approx(1.0) and nrm.min() == 0
    # all-identical updates: the zero matrix stays zero instead of dividing by zero
    zero = np.asarray(K.normalized_euclidean(jnp.zeros((4, 4))))
    assert np.all(zero == 0)


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_cosine_matches_eq5(rng, eps):
    x = rng.standard_normal((10, 200)).astype(np.float32)
    x[4] = 0  # zero vector: distance 1 - 0/eps = 1 to everyone
    x[5] = -3 * x[6]  # antiparallel: distance ~2
    got = np.asarray(K.pairwise_cosine_distance(jnp.asarray(x), eps=eps))
    want = np.clip(ref_cosine(x, eps), 0, 2)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert np.all(got[4, np.arange(10) != 4] == 1)
    n5, n6 = np.linalg.norm(x[5].astype(np.float64)), np.linalg.norm(x[6].astype(np.float64))
    assert got[5, 6] == pytest.approx(1 + n5 * n6 / (n5 * n6 + eps), abs=1e-6)
    assert np.all(np.diag(got) == 0)


def test_dual_distance_is_eq14_blend(rng):
    x = rng.standard_normal((8, 100)).astype(np.float32)
    e = np.sqrt(ref_sq_euclidean(x))
    want = 0.3 * e / e.max() + 0.7 * ref_cosine(x)
    got = np.asarray(K.dual_distance(jnp.asarray(x), alpha=0.3))
    np.testing.assert_allclose(got, want, atol=2e-5)


# --- non-finite clients --------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30])
def test_nonfinite_client_is_isolated(rng, bad):
    x = rng.standard_normal((8, 40)).astype(np.float32)
    x[2, 5] = bad  # 1e30 is finite but its square overflows float32
    xj = jnp.asarray(x)
    assert list(np.asarray(K.valid_clients(xj))) == [i != 2 for i in range(8)]
    for dist in (K.pairwise_sq_euclidean(xj), K.pairwise_cosine_distance(xj), K.dual_distance(xj)):
        dist = np.asarray(dist)
        others = np.delete(np.arange(8), 2)
        assert np.all(np.isinf(dist[2, others])) and np.all(np.isinf(dist[others, 2]))
        assert dist[2, 2] == 0
        assert np.all(np.isfinite(dist[np.ix_(others, others)]))
    scores = np.asarray(K.krum_scores(K.pairwise_sq_euclidean(xj), 2))
    assert np.isinf(scores[2]) and np.all(np.isfinite(np.delete(scores, 2)))
    keep = np.delete(np.arange(8), 2)
    np.testing.assert_allclose(np.delete(scores, 2), ref_krum(ref_sq_euclidean(x[keep]), 1), rtol=1e-4)


def test_projection_keeps_invalid_clients_invalid(rng):
    x = rng.standard_normal((6, 30)).astype(np.float32)
    x[:, 0] *= 100  # coordinate 0 has the top variance ...
    x[2, 29] = np.nan  # ... and client 2's NaN sits in a coordinate the projection drops
    proj = np.asarray(K.project_topk_variance(jnp.asarray(x), 3))
    assert np.isnan(proj[2]).all() and np.isfinite(np.delete(proj, 2, 0)).all()
    assert not np.asarray(K.valid_clients(jnp.asarray(proj)))[2]


def test_variance_ignores_invalid_clients(rng):
    x = rng.standard_normal((6, 30)).astype(np.float32)
    x[0, 3] = np.nan
    got = np.asarray(K.coordinate_variance(jnp.asarray(x)))
    np.testing.assert_allclose(got, x[1:].astype(np.float64).var(0), rtol=1e-5)


# --- projection -----------------------------------------------------------------------

def test_projection_keeps_highest_variance_coordinates(rng):
    x = rng.standard_normal((12, 500)).astype(np.float32) * rng.uniform(0.1, 5, 500).astype(np.float32)
    var = x.astype(np.float64).var(0)
    want = np.argsort(-var, kind="stable")[:37]
    got = np.asarray(K.topk_variance_indices(jnp.asarray(x), 37))
    np.testing.assert_array_equal(got, want)
    proj = np.asarray(K.project_topk_variance(jnp.asarray(x), 37))
    np.testing.assert_array_equal(proj, x[:, want])


def test_projection_ties_prefer_lower_index_and_k_ge_d_is_identity(rng):
    x = np.zeros((4, 6), np.float32)
    x[:, [1, 3, 4]] = [[1], [-1], [1], [-1]]  # three coordinates with equal variance
    np.testing.assert_array_equal(np.asarray(K.topk_variance_indices(jnp.asarray(x), 2)), [1, 3])
    y = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(K.project_topk_variance(jnp.asarray(y), 5)), y)
    np.testing.assert_array_equal(np.asarray(K.project_topk_variance(jnp.asarray(y), 99)), y)


# --- Krum ------------------------------------------------------------------------------

@pytest.mark.parametrize("n,f", [(4, 0), (4, 1), (15, 3), (30, 10), (100, 20)])
def test_krum_scores_match_reference(rng, n, f):
    x = rng.standard_normal((n, 20)).astype(np.float32)
    d = ref_sq_euclidean(x).astype(np.float32)
    want = ref_krum(d, f)
    eager = np.asarray(K.krum_scores(jnp.asarray(d), f))
    traced = np.asarray(jax.jit(K.krum_scores, static_argnums=1)(jnp.asarray(d), f))
    np.testing.assert_allclose(eager, want, rtol=1e-5)
    np.testing.assert_allclose(traced, want, rtol=1e-5)


def test_sum_smallest_handles_ties_negatives_and_inf():
    v = jnp.array([[3.0, -1.0, 2.0, 2.0, -5.0, 0.0], [1.0, 1.0, 1.0, np.inf, 1.0, -0.0]])
    for k in range(1, 7):
        want = np.sort(np.asarray(v), axis=1)[:, :k].sum(1)
        np.testing.assert_array_equal(np.asarray(K.sum_smallest(v, k)), want)


@given(st.integers(4, 30), st.integers(0, 2**31 - 1))
def test_krum_eager_and_traced_paths_agree(n, seed):
    rng = np.random.default_rng(seed)
    f = int(rng.integers(0, n - 2))
    d = rng.exponential(size=(n, n)).astype(np.float32)
    d = (d + d.T).round(1)  # rounding creates many ties
    eager = np.asarray(K.krum_scores(jnp.asarray(d), f))
    traced = np.asarray(jax.jit(K.krum_scores, static_argnums=1)(jnp.asarray(d), f))
    np.testing.assert_allclose(eager, traced, rtol=1e-5)
    np.testing.assert_allclose(eager, ref_krum(d, f), rtol=1e-5)


def test_krum_needs_a_neighbour():
    with pytest.raises(ValueError, match="n - f - 2"):
        K.krum_scores(jnp.zeros((5, 5)), 3)


def test_multikrum_select_lowest_with_stable_ties():
    scores = jnp.array([3.0, 1.0, 2.0, 1.0, np.inf, np.nan])
    np.testing.assert_array_equal(np.asarray(K.multikrum_select(scores, 2)), [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(K.multikrum_select(scores, 3)), [0, 1, 1, 1, 0, 0])
    # NaN scores are never selected, even when m asks for every client
    assert not np.asarray(K.multikrum_select(scores, 6))[5]
    valid = jnp.array([True, False, True, True, True, True])
    np.testing.assert_array_equal(np.asarray(K.multikrum_select(scores, 2, valid)), [0, 0, 1, 1, 0, 0])


def test_krum_gap_matches_eq13(rng):
    s = rng.exponential(size=25)
    for m in (1, 12, 24):
        assert float(K.krum_gap(jnp.asarray(s, jnp.float32), m)) == pytest.approx(ref_gap(s, m), rel=1e-5)
    assert float(K.krum_gap(jnp.ones(5), 2)) == 0.0  # no spread, no gap
    assert float(K.krum_gap(jnp.array([1.0, 2.0, np.inf]), 2)) == np.inf
    with pytest.raises(ValueError, match="m < n"):
        K.krum_gap(jnp.ones(5), 5)


# --- jit, vmap, dtypes -------------------------------------------------------------------

def test_kernels_jit_and_vmap_over_rounds(rng):
    rounds = rng.standard_normal((3, 10, 30)).astype(np.float32)

    def pipeline(x):
        d = K.pairwise_sq_euclidean(K.project_topk_variance(x, 12))
        s = K.krum_scores(d, 2)
        return s, K.multikrum_select(s, 8), K.krum_gap(s, 8), K.pairwise_cosine_distance(x)

    batched = jax.jit(jax.vmap(pipeline))(jnp.asarray(rounds))
    for r in range(3):
        eager = pipeline(jnp.asarray(rounds[r]))
        for got, want in zip(batched, eager):
            np.testing.assert_allclose(np.asarray(got[r]), np.asarray(want), rtol=2e-5, atol=1e-6)


def test_float64_when_asked(rng):
    x = rng.standard_normal((6, 40))
    with x64():
        xj = jnp.asarray(x, jnp.float64)
        got = np.asarray(K.pairwise_sq_euclidean(xj))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref_sq_euclidean(x), rtol=1e-12, atol=1e-12)
        assert np.asarray(K.krum_scores(jnp.asarray(got), 1)).dtype == np.float64
