"""Tests for qkrum.attacks: each assertion checks a statistical definition from Table I.

All randomness comes from fixed keys, so the statistical checks are deterministic; the
tolerances are still chosen wide enough (several standard errors) that they would pass
for almost any key, and narrow enough that a wrong formula fails them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from qkrum.kernels import coordinate_moments
from qkrum.attacks import ATTACKS, LIE_Z_MAX_VALUES, TABLE_I, apply, baruch_z_max

NAMES = (
    "gaussian", "sign_flip", "scaling", "targeted", "clustered", "same_value",
    "lie", "blatant_lie", "alie", "sparse_lie", "shuffle", "stealthy",
)
DETERMINISTIC = {"sign_flip", "same_value", "lie"}
RANDOM = tuple(n for n in NAMES if n not in DETERMINISTIC)

N_H, D = 10, 20_000
_rng = np.random.default_rng(1234)
# Heterogeneous per-coordinate location and scale, so that attacks scaling by sigma_j
# cannot pass by accident with a scalar sigma.
H = (_rng.normal(0.0, 1.0, D) + _rng.uniform(0.5, 2.0, D) * _rng.normal(size=(N_H, D))).astype(np.float32)
HJ = jnp.asarray(H)
# The module's own float32 moments (kernels.coordinate_moments); float64 references below.
MU, _VAR = coordinate_moments(HJ, jnp.ones(HJ.shape[0], bool))
SIGMA = jnp.sqrt(_VAR)
MU64 = H.astype(np.float64).mean(axis=0)
SIGMA64 = H.astype(np.float64).std(axis=0)   # ddof=0
KEY = jax.random.key(7)
SMALL = H[:6, :500]


def _np(x):
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- registry

def test_registry_starts_with_the_twelve_table_i_attacks():
    assert tuple(ATTACKS)[:12] == NAMES == TABLE_I
    with pytest.raises(TypeError):
        ATTACKS["new"] = ATTACKS["lie"]  # type: ignore[index]


def test_lie_z_max_values_are_the_papers():
    assert LIE_Z_MAX_VALUES == (0.5, 1.0, 1.5, 2.0)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_zero_f_and_determinism(name):
    out = apply(name, KEY, SMALL, 3)
    assert out.shape == (3, SMALL.shape[1])
    assert out.dtype == jnp.float32
    assert np.all(np.isfinite(_np(out)))
    empty = apply(name, KEY, SMALL, 0)
    assert empty.shape == (0, SMALL.shape[1]) and empty.dtype == jnp.float32
    np.testing.assert_array_equal(out, apply(name, KEY, SMALL, 3))
    # A legacy uint32 key with the same seed is the same key.
    np.testing.assert_array_equal(apply(name, jax.random.key(7), SMALL, 3),
                                  apply(name, jax.random.PRNGKey(7), SMALL, 3))
    other = apply(name, jax.random.key(8), SMALL, 3)
    if name in DETERMINISTIC:
        np.testing.assert_array_equal(out, other)
    else:
        assert not np.array_equal(out, other)


@pytest.mark.parametrize("name", RANDOM)
def test_each_byzantine_client_has_its_own_randomness_and_prefix_is_stable(name):
    # clustered's default beta = f moves every row with f, so pin beta for this check.
    params = {"beta": 1.0} if name == "clustered" else {}
    out = _np(apply(name, KEY, SMALL, 5, **params))
    assert not np.array_equal(out[0], out[1])
    # Client i's stream is fold_in(key, i): adding clients does not change earlier rows.
    np.testing.assert_array_equal(out[:3], _np(apply(name, KEY, SMALL, 3, **params)))


def test_float16_dtype_is_preserved():
    h = jnp.asarray(SMALL, jnp.float16)
    for name in ("sign_flip", "alie"):
        assert apply(name, KEY, h, 2).dtype == jnp.float16


def test_float64_is_preserved_under_x64():
    with jax.enable_x64(True):
        h = jnp.asarray(SMALL, jnp.float64)
        out = apply("alie", KEY, h, 2)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(_np(apply("sign_flip", KEY, h, 1))[0], -SMALL.astype(np.float64).mean(0),
                                   rtol=1e-12, atol=1e-14)


def test_pytree_honest_is_flattened_in_tree_order():
    n = SMALL.shape[0]
    tree = {"b": SMALL[:, :300].reshape(n, 3, 100), "a": SMALL[:, 300:]}
    flat = np.concatenate([tree["a"].reshape(n, -1), tree["b"].reshape(n, -1)], axis=1)
    for name in ("alie", "sparse_lie", "lie", "shuffle"):
        out = apply(name, KEY, tree, 3)
        assert out.shape == (3, 500)
        np.testing.assert_array_equal(out, apply(name, KEY, flat, 3))


def test_single_honest_row_means_zero_sigma():
    row = SMALL[:1]
    for name in ("same_value", "alie", "sparse_lie"):
        out = _np(apply(name, KEY, row, 2))
        np.testing.assert_array_equal(out, np.broadcast_to(row.astype(np.float64), (2, row.shape[1])))
    np.testing.assert_array_equal(np.sort(_np(apply("shuffle", KEY, row, 2)), axis=1),
                                  np.broadcast_to(np.sort(row[0]), (2, row.shape[1])))


def test_nonfinite_honest_values_propagate():
    h = SMALL.copy()
    h[2, 5] = np.nan
    out = _np(apply("sign_flip", KEY, h, 1))[0]
    assert np.isnan(out[5]) and np.isfinite(np.delete(out, 5)).all()


# ----------------------------------------------------------------------------- exact formulas

def test_sign_flip_is_minus_mu_exactly():
    out = apply("sign_flip", KEY, H, 2)
    assert (_np(out) == _np(out)[0]).all()  # identical rows
    np.testing.assert_allclose(_np(out[0]), -_np(MU), rtol=1e-6, atol=1e-7)  # float32 mu, up to ulps
    np.testing.assert_allclose(_np(out[0]), -MU64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(apply("sign_flip", KEY, H, 2, scale=2.5))[0], -2.5 * MU64, rtol=1e-5, atol=1e-5)


def test_same_value_is_mu_plus_three_sigma_identical_rows():
    out = _np(apply("same_value", KEY, H, 2))
    assert (out == out[0]).all()
    np.testing.assert_allclose(out[0], MU64 + 3.0 * SIGMA64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(apply("same_value", KEY, H, 2, z=-1.5))[0], MU64 - 1.5 * SIGMA64,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("z_max", LIE_Z_MAX_VALUES)
def test_lie_with_explicit_z_max(z_max):
    out = _np(apply("lie", KEY, H, 2, z_max=z_max))
    assert (out == out[0]).all()
    np.testing.assert_allclose(out[0], MU64 - z_max * SIGMA64, rtol=1e-5, atol=1e-5)


def _baruch_scipy(n, f):
    s = math.floor(n / 2 + 1) - f
    return stats.norm.ppf((n - s) / n)


@pytest.mark.parametrize("n_h, f, expected", [(12, 3, 0.43), (80, 20, 0.496)])
def test_lie_default_z_max_is_baruch(n_h, f, expected):
    z_ref = _baruch_scipy(n_h + f, f)
    assert z_ref == pytest.approx(expected, abs=0.002)
    assert baruch_z_max(n_h + f, f) == pytest.approx(z_ref, rel=1e-9)
    rng = np.random.default_rng(n_h)
    h = rng.normal(size=(n_h, 2_000)).astype(np.float32)
    mu, sigma = h.astype(np.float64).mean(0), h.astype(np.float64).std(0)
    out = _np(apply("lie", KEY, h, f))
    assert out.shape == (f, 2_000) and (out == out[0]).all()
    np.testing.assert_allclose(out[0], mu - z_ref * sigma, rtol=1e-5, atol=1e-5)


def test_baruch_z_max_is_clipped_when_attackers_hold_a_majority():
    # n=8, f=5: s = 5 - 5 = 0 -> the raw formula is Phi^-1(1) = inf; clipped to s = 1.
    assert np.isinf(stats.norm.ppf((8 - 0) / 8))
    assert baruch_z_max(8, 5) == pytest.approx(stats.norm.ppf(7 / 8), rel=1e-9)
    out = _np(apply("lie", KEY, SMALL[:3], 5))
    assert np.isfinite(out).all()


# ----------------------------------------------------------------------------- statistical

def test_alie_statistics():
    f = 2
    out = _np(apply("alie", KEY, H, f))
    delta = out - MU64
    changed = np.abs(delta) > 1e-3 * SIGMA64      # real changes are >= 3 sigma
    # Untouched coordinates are mu (up to float32 vs float64 mean).
    np.testing.assert_allclose(out[~changed], np.broadcast_to(MU64, out.shape)[~changed], atol=1e-5)
    frac = changed.mean(axis=1)
    assert np.all(np.abs(frac - 0.2) < 0.02), frac
    assert not np.array_equal(changed[0], changed[1])  # masks drawn per client
    z = (delta / SIGMA64)[changed]
    assert np.all(np.abs(z) >= 3.0 - 1e-3) and np.all(np.abs(z) <= 8.0 + 1e-3)
    assert abs((z < 0).mean() - 0.7) < 0.05
    assert abs(np.abs(z).mean() - 5.5) < 0.2
    assert stats.kstest(np.abs(z), stats.uniform(loc=3.0, scale=5.0).cdf).pvalue > 1e-3


def test_alie_parameters_override():
    out = _np(apply("alie", KEY, H, 2, fraction=0.5, z_range=(1.0, 1.0), negative_prob=0.0))[0]
    delta = (out - MU64) / SIGMA64
    changed = np.abs(delta) > 1e-3
    assert abs(changed.mean() - 0.5) < 0.02
    np.testing.assert_allclose(delta[changed], 1.0, atol=1e-4)


def _moved(out, mu, sigma):
    """Coordinates an attack moved: by at least ~sigma, far above float32 rounding of mu."""
    out, mu, sigma = _np(out), _np(mu), _np(sigma)
    return np.abs(out - mu) > 1e-3 * sigma + 1e-6 * np.abs(mu)


def test_targeted_changes_about_ten_percent_by_exactly_five_sigma():
    out = apply("targeted", KEY, H, 2)
    unchanged = ~_moved(out, MU, SIGMA)     # moved coordinates move by 5 sigma, others by ulps
    frac = 1.0 - _np(unchanged).mean(axis=1)
    assert np.all(np.abs(frac - 0.1) < 0.01), frac
    shift = _np(out - MU[None, :])
    np.testing.assert_allclose(shift[~np.asarray(unchanged)],
                               np.broadcast_to(5.0 * _np(SIGMA), shift.shape)[~np.asarray(unchanged)],
                               rtol=1e-4, atol=1e-5)
    out2 = _np(apply("targeted", KEY, H, 2, z=-2.0, fraction=1.0))[0]
    np.testing.assert_allclose(out2, MU64 - 2.0 * SIGMA64, rtol=1e-5, atol=1e-5)


def test_sparse_lie_changes_exactly_the_top_variance_coordinates():
    f = 2
    out = apply("sparse_lie", KEY, H, f)
    top = np.sort(np.argsort(-SIGMA64 ** 2, kind="stable")[: round(0.05 * D)])
    for i in range(f):
        changed = np.flatnonzero(_moved(out[i], MU, SIGMA))
        np.testing.assert_array_equal(changed, top)
        z = (MU64[top] - _np(out[i])[top]) / SIGMA64[top]
        assert z.min() >= 5.0 - 1e-3 and z.max() <= 15.0 + 1e-3
        assert abs(z.mean() - 10.0) < 0.5         # 1000 uniforms: std err ~0.09
    assert not np.array_equal(out[0], out[1])     # z drawn per client


def test_sparse_lie_ties_go_to_lower_index_and_at_least_one_coordinate():
    base = np.array([[0.0] * 6, [2.0] * 6], np.float32)   # every column has variance 1
    out = _np(apply("sparse_lie", KEY, base, 1, fraction=0.5))[0]
    np.testing.assert_array_equal(np.flatnonzero(np.abs(out - 1.0) > 1e-3), [0, 1, 2])
    out = _np(apply("sparse_lie", KEY, SMALL, 1, fraction=0.0))[0]
    var = SMALL.astype(np.float64).var(0)
    mu, sd = SMALL.astype(np.float64).mean(0), np.sqrt(var)
    np.testing.assert_array_equal(np.flatnonzero(_moved(out, mu, sd)), [np.argmax(var)])


def test_gaussian_noise_has_requested_std_and_ignores_honest_values():
    out = _np(apply("gaussian", KEY, H, 2, std=2.5)).ravel()
    assert abs(out.mean()) < 0.05
    assert out.std() == pytest.approx(2.5, rel=0.02)
    assert stats.kstest(out / 2.5, "norm").pvalue > 1e-3
    np.testing.assert_array_equal(apply("gaussian", KEY, H, 2, std=2.5), apply("gaussian", KEY, H + 100.0, 2, std=2.5))
    assert _np(apply("gaussian", KEY, H, 2)).std() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("name, params, centre, std", [
    ("stealthy", {}, 1.0, 0.05),
    ("stealthy", {"noise_std": 0.3}, 1.0, 0.3),
    ("scaling", {}, 10.0, 0.1),
    ("scaling", {"factor": -3.0, "noise_std": 0.5}, -3.0, 0.5),
])
def test_mean_plus_noise_attacks(name, params, centre, std):
    noise = _np(apply(name, KEY, H, 2, **params)) - centre * MU64
    assert abs(noise.mean()) < 0.05 * std
    assert noise.std() == pytest.approx(std, rel=0.02)
    assert stats.kstest(noise.ravel() / std, "norm").pvalue > 1e-3


def test_clustered_default_beta_is_f_with_configured_spread():
    f = 2
    out = _np(apply("clustered", KEY, H, f))
    z = (out - MU64) / SIGMA64
    assert z.mean() == pytest.approx(2.0 * f, abs=0.01)
    assert (z - 2.0 * f).std() == pytest.approx(0.1, rel=0.03)
    assert not np.array_equal(out[0], out[1])


def test_clustered_overrides():
    out = _np(apply("clustered", KEY, H, 2, beta=1.5, spread=0.0))
    assert (out == out[0]).all()
    np.testing.assert_allclose(out[0], MU64 + 3.0 * SIGMA64, rtol=1e-5, atol=1e-5)
    z = (_np(apply("clustered", KEY, H, 2, beta=-0.5, spread=0.4)) - MU64) / SIGMA64
    assert z.mean() == pytest.approx(-1.0, abs=0.02)
    assert (z + 1.0).std() == pytest.approx(0.4, rel=0.03)


def test_blatant_lie_per_client_draws():
    f, d = 64, 4_000
    h, mu, sigma = H[:, :d], MU64[:d], SIGMA64[:d]
    delta = _np(apply("blatant_lie", KEY, h, f)) - mu
    # Least squares of delta on sigma recovers s*z; noise is independent of sigma.
    sz = delta @ sigma / (sigma @ sigma)
    z = np.abs(sz)
    assert z.min() >= 1.75 - 0.02 and z.max() <= 3.25 + 0.02
    assert z.min() < 2.1 and z.max() > 2.9          # spread over the range, not a constant
    assert 0.25 < (sz > 0).mean() < 0.75            # both signs, about half each
    eta = (delta - sz[:, None] * sigma).std(axis=1) / sigma.mean()
    assert eta.min() >= 0.1 - 0.01 and eta.max() <= 0.4 + 0.01
    assert eta.min() < 0.16 and eta.max() > 0.34


def test_blatant_lie_ranges_override():
    delta = _np(apply("blatant_lie", KEY, H, 2, z_range=(1.0, 1.0), eta_range=(0.0, 0.0))) - MU64
    np.testing.assert_allclose(np.abs(delta), np.broadcast_to(SIGMA64, delta.shape), rtol=1e-4, atol=1e-5)


def test_shuffle_rows_are_permutations_of_honest_rows():
    h = H[:5, :2_000]
    out = _np(apply("shuffle", KEY, h, 40))
    sorted_h = np.sort(h.astype(np.float64), axis=1)
    picked = []
    for row in out:
        match = [i for i in range(5) if np.array_equal(np.sort(row), sorted_h[i])]
        assert len(match) == 1
        assert not np.array_equal(row, h[match[0]])
        picked.append(match[0])
    assert len(set(picked)) >= 4                     # each client picks its own honest row


# ----------------------------------------------------------------------------- translation

# mu + g(sigma, key): sigma is translation invariant and every random draw (masks, z, sign,
# eta relative to mean(sigma), the sparse_lie index set) depends only on the key and on
# sigma, so translating honest by v translates the output by v. Excluded: gaussian (does
# not look at honest), scaling (moves by factor*v), sign_flip (moves by -v, tested
# below), shuffle (moves by a permutation of v).
TRANSLATING = ("lie", "same_value", "alie", "targeted", "sparse_lie", "clustered", "blatant_lie", "stealthy")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shift=st.floats(-100.0, 100.0), key_seed=st.integers(0, 2**31 - 1))
def test_translation_equivariance(seed, shift, key_seed):
    n_h, d = 6, 64
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_h, d))
    z = (z - z.mean(0)) / z.std(0)
    # Distinct, well separated column variances so the sparse_lie top set is not decided
    # by float32 rounding of near-ties.
    scales = 1.0 + 0.05 * rng.permutation(d)
    h = (z * scales + rng.normal(size=d)).astype(np.float32)
    v = (shift * (1.0 + 0.1 * rng.normal(size=d))).astype(np.float32)
    hv = h + v
    key = jax.random.key(key_seed)
    tol = dict(rtol=1e-5, atol=5e-5 * (1.0 + np.abs(v).max()))
    for name in TRANSLATING:
        np.testing.assert_allclose(_np(apply(name, key, hv, 3)), _np(apply(name, key, h, 3)) + v, **tol,
                                   err_msg=name)
    mu_v = hv.astype(np.float64).mean(0)
    np.testing.assert_allclose(_np(apply("sign_flip", key, hv, 2)), np.broadcast_to(-mu_v, (2, d)), **tol)
    np.testing.assert_allclose(_np(apply("sign_flip", key, hv, 2)), _np(apply("sign_flip", key, h, 2)) - v, **tol)
    np.testing.assert_allclose(_np(apply("scaling", key, hv, 2, factor=3.0)),
                               _np(apply("scaling", key, h, 2, factor=3.0)) + 3.0 * v,
                               rtol=1e-5, atol=5e-5 * (1.0 + 3.0 * np.abs(v).max()))


# ----------------------------------------------------------------------------- jit

@pytest.mark.parametrize("name", NAMES)
def test_apply_under_jit_matches_eager(name):
    h = SMALL
    eager = _np(apply(name, KEY, h, 3))
    # Same random draws; XLA may fuse the arithmetic differently inside the outer jit
    # (e.g. sum/n vs sum*(1/n)), so allow a few float32 ulps rather than bit equality.
    tol = dict(rtol=1e-6, atol=1e-6 * (1.0 + np.abs(eager).max()))
    jitted = jax.jit(lambda k, x: apply(name, k, x, 3))
    np.testing.assert_allclose(_np(jitted(KEY, h)), eager, **tol)
    if name == "alie":  # legacy uint32 keys are wrapped inside the trace too
        np.testing.assert_allclose(_np(jitted(jax.random.PRNGKey(7), h)), eager, **tol)


# ----------------------------------------------------------------------------- errors

def test_unknown_attack_name_lists_valid_names():
    with pytest.raises(ValueError, match="nope") as err:
        apply("nope", KEY, SMALL, 1)
    for name in NAMES:
        assert name in str(err.value)


def test_unknown_parameter_names_keyword_and_valid_ones():
    with pytest.raises(TypeError, match="zmax") as err:
        apply("lie", KEY, SMALL, 1, zmax=1.0)
    assert "z_max" in str(err.value)
    with pytest.raises(TypeError, match="fraction") as err:
        apply("alie", KEY, SMALL, 1, fractoin=0.1)
    assert "fractoin" in str(err.value) and "negative_prob" in str(err.value)
    with pytest.raises(TypeError, match="std"):
        apply("shuffle", KEY, SMALL, 1, std=1.0)


@pytest.mark.parametrize("f, exc", [(-1, ValueError), (1.5, TypeError), (2.0, TypeError), (True, TypeError)])
def test_bad_f(f, exc):
    with pytest.raises(exc, match="f"):
        apply("gaussian", KEY, SMALL, f)


def test_f_accepts_numpy_integers():
    assert apply("lie", KEY, SMALL, np.int64(2)).shape == (2, SMALL.shape[1])


@pytest.mark.parametrize("honest, exc", [
    (np.ones((3, 4), np.int32), TypeError),
    (np.ones((3, 4), bool), TypeError),
    (np.ones(4, np.float32), ValueError),
    (np.float32(1.0), ValueError),
    (np.ones((0, 4), np.float32), ValueError),
    (np.ones((3, 0), np.float32), ValueError),
])
def test_bad_honest(honest, exc):
    with pytest.raises(exc, match="honest"):
        apply("alie", KEY, honest, 1)


@pytest.mark.parametrize("name, params, exc, word", [
    ("alie", {"z_range": (8.0, 3.0)}, ValueError, "z_range"),
    ("sparse_lie", {"z_range": (15.0, 5.0)}, ValueError, "z_range"),
    ("blatant_lie", {"eta_range": (0.4, 0.1)}, ValueError, "eta_range"),
    ("blatant_lie", {"eta_range": (-0.1, 0.1)}, ValueError, "eta_range"),
    ("blatant_lie", {"z_range": 2.0}, TypeError, "z_range"),
    ("alie", {"fraction": 1.5}, ValueError, "fraction"),
    ("alie", {"negative_prob": -0.1}, ValueError, "negative_prob"),
    ("targeted", {"fraction": 2.0}, ValueError, "fraction"),
    ("sparse_lie", {"fraction": -0.5}, ValueError, "fraction"),
    ("gaussian", {"std": -1.0}, ValueError, "std"),
    ("gaussian", {"std": float("nan")}, ValueError, "std"),
    ("stealthy", {"noise_std": "big"}, TypeError, "noise_std"),
    ("clustered", {"spread": -0.1}, ValueError, "spread"),
    ("lie", {"z_max": float("inf")}, ValueError, "z_max"),
])
def test_bad_parameters(name, params, exc, word):
    with pytest.raises(exc, match=word):
        apply(name, KEY, SMALL, 1, **params)


@pytest.mark.parametrize("key, exc", [
    (0, TypeError),
    (np.zeros(2, np.float32), TypeError),
    (np.zeros(3, np.uint32), TypeError),
    (jax.random.split(jax.random.key(0), 2), ValueError),
])
def test_bad_key(key, exc):
    with pytest.raises(exc, match="key"):
        apply("gaussian", key, SMALL, 1)
