"""Tests of qkrum.rules.preaggregation against independent NumPy references.

The references below are plain loops over clients written from the published formulas
(float64, direct differences, exact integer/rational arithmetic for counts); they share
no code with the JAX implementation. Invalid rows are filled with NaN/Inf so that any
leak shows up as a non-finite output.
"""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import x64
from qkrum.rules import preaggregation as pre
from qkrum.rules.preaggregation import (
    adaptive_robust_clipping,
    bucketing,
    nearest_neighbor_mixing,
    num_buckets,
    static_clipping,
)


# --- independent NumPy references -------------------------------------------------------

def ref_nnm(x, valid, f):
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    idx = [j for j in range(n) if valid[j]]
    k = min(n - f, len(idx))
    out = np.zeros_like(x)
    for i in idx:
        dist = {j: float(np.sum((x[i] - x[j]) ** 2)) for j in idx}
        nearest = sorted(idx, key=lambda j: (dist[j], j))[:k]
        out[i] = np.mean([x[j] for j in nearest], axis=0)
    return out


def ref_bucketing(x, valid, s, perm):
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    b = math.ceil(n / s)
    members = [int(i) for i in perm if valid[i]]  # valid clients in permuted order
    others = [int(i) for i in perm if not valid[i]]
    means = np.zeros((b, x.shape[1]))
    bucket_valid = np.zeros(b, bool)
    for q in range(0, len(members), s):
        chunk = members[q:q + s]
        means[q // s] = np.mean([x[i] for i in chunk], axis=0)
        bucket_valid[q // s] = True
    bucket_of = np.zeros(n, np.int64)
    for p, i in enumerate(members + others):
        bucket_of[i] = p // s
    return means, bucket_valid, bucket_of


def ref_static_clip(x, valid, c):
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        if valid[i]:
            norm = np.linalg.norm(x[i])
            out[i] = x[i] * min(1.0, c / norm) if norm > 0 else x[i]
    return out


def ref_arc_k(m, f):
    if m == 0:
        return 0
    k = math.floor(Fraction(2 * f, m) * (m - f))
    return min(max(k, 0), m - 1)


def ref_arc(x, valid, f):
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    idx = [i for i in range(x.shape[0]) if valid[i]]
    for i in idx:
        out[i] = x[i]
    if not idx:
        return out
    k = ref_arc_k(len(idx), f)
    norm = {i: float(np.linalg.norm(x[i])) for i in idx}
    ranked = sorted(idx, key=lambda i: (-norm[i], i))
    threshold = norm[ranked[k]]
    for i in ranked[:k]:
        if norm[i] > 0:
            out[i] = x[i] * min(1.0, threshold / norm[i])
    return out


# --- helpers ----------------------------------------------------------------------------

def poisoned(x, valid):
    """A copy of x whose invalid rows hold NaN / +Inf / -Inf (cycling)."""
    x = np.array(x, copy=True)
    bad = [np.nan, np.inf, -np.inf]
    for t, i in enumerate(np.flatnonzero(~np.asarray(valid))):
        x[i] = bad[t % 3]
        x[i, 0] = np.nan
    return x


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-11, atol=1e-11)


def mask(n, invalid):
    v = np.ones(n, bool)
    v[list(invalid)] = False
    return v


# The permutation bucketing draws, for the reference (jitted: op-by-op is slow).
permutation = jax.jit(jax.random.permutation, static_argnums=1)


def patterns(n, f):
    """Invalid-row patterns for n clients: none, first, last, two in the middle, so many
    that fewer than n - f rows stay valid, and all."""
    many = list(range(0, n, 2))[: max(f + 1, 2)]
    return [[], [0], [n - 1], [1, n // 2], many, list(range(n))]


def check_all_patterns(fn, ref, n, f, d, dtype, jit, rng, **tolerance):
    """Compare fn(x, valid, f) with ref for every pattern of :func:`patterns`, with one
    compiled function (valid is an operand, so patterns share a compilation)."""
    g = jax.jit(lambda a, v: fn(a, v, f)) if jit else (lambda a, v: fn(a, v, f))
    for invalid in patterns(n, f):
        valid = mask(n, invalid)
        x = (rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=(n, 1))).astype(dtype)
        got = np.asarray(g(jnp.asarray(poisoned(x, valid)), jnp.asarray(valid)))
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref(x, valid, f), err_msg=f"invalid={invalid}", **tolerance)


# (n, f) with f = 0, a middle f and the largest f = n - 1
NNM_CASES = [(5, 0), (8, 2), (8, 7), (10, 3)]


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("n,f", NNM_CASES)
def test_nnm_matches_reference_float32(rng, n, f, jit):
    check_all_patterns(nearest_neighbor_mixing, ref_nnm, n, f, 4, np.float32, jit, rng, **tol(np.float32))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("n,f", NNM_CASES[1:3])
def test_nnm_matches_reference_float64(rng, n, f, jit):
    with x64():
        check_all_patterns(nearest_neighbor_mixing, ref_nnm, n, f, 3, np.float64, jit, rng, **tol(np.float64))


@given(
    data=st.lists(st.lists(st.integers(-2, 2), min_size=3, max_size=3), min_size=6, max_size=6),
    invalid=st.sets(st.integers(0, 5), max_size=3),
    f=st.sampled_from([0, 2, 4]),
)
def test_nnm_integer_ties_broken_by_lower_index(data, invalid, f):
    # Small integers: every distance is exact in float32, so ties are exact and the
    # lower-index rule decides, identically in the reference.
    x = np.array(data, np.float32)
    valid = mask(6, invalid)
    got = np.asarray(nearest_neighbor_mixing(jnp.asarray(poisoned(x, valid)), jnp.asarray(valid), f))
    np.testing.assert_allclose(got, ref_nnm(x, valid, f), rtol=1e-6, atol=1e-6)


def test_nnm_identical_rows_are_fixed(rng):
    row = rng.normal(size=5).astype(np.float32)
    x = np.tile(row, (7, 1))
    valid = mask(7, [3])
    got = np.asarray(nearest_neighbor_mixing(poisoned(x, valid), valid, 2))
    np.testing.assert_allclose(got[valid], x[valid], rtol=1e-6)
    assert np.all(got[~valid] == 0)


def test_nnm_permutation_equivariant(rng):
    n, f = 9, 2
    x = rng.normal(size=(n, 6)).astype(np.float32)
    valid = mask(n, [4])
    x = poisoned(x, valid)
    perm = rng.permutation(n)
    out = np.asarray(nearest_neighbor_mixing(x, valid, f))
    out_perm = np.asarray(nearest_neighbor_mixing(x[perm], valid[perm], f))
    np.testing.assert_allclose(out_perm, out[perm], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype,offset", [(np.float32, 1e4), (np.float64, 1e8)])
def test_nnm_large_common_offset(rng, dtype, offset):
    # The plain Gram identity loses every significant digit of these distances
    # (‖x‖² ≈ offset² · d); the median-centred one does not.
    n, f = 8, 2
    x = (offset + rng.normal(size=(n, 4))).astype(dtype)
    valid = mask(n, [5])
    with x64():
        got = np.asarray(nearest_neighbor_mixing(jnp.asarray(poisoned(x, valid)), jnp.asarray(valid), f))
    np.testing.assert_allclose(got, ref_nnm(x, valid, f), rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_nnm_huge_byzantine_row_does_not_disturb_the_others(rng):
    n, f = 8, 1
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[2] = 1e15  # valid but outsized: nobody's neighbour except its own
    valid = mask(n, [6])
    got = np.asarray(nearest_neighbor_mixing(poisoned(x, valid), valid, f))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref_nnm(x, valid, f), rtol=1e-5, atol=1e-5)


def test_nnm_under_vmap(rng):
    x = rng.normal(size=(3, 6, 2)).astype(np.float32)
    valid = np.ones((3, 6), bool)
    valid[1, 2] = False
    x[1, 2] = np.nan
    got = np.asarray(jax.vmap(lambda a, v: nearest_neighbor_mixing(a, v, 1))(x, valid))
    for r in range(3):
        np.testing.assert_allclose(got[r], ref_nnm(x[r], valid[r], 1), rtol=1e-5, atol=1e-5)


# --- bucketing ------------------------------------------------------------------------------

@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("n,s", [(6, 1), (7, 3), (10, 3), (4, 9)])
def test_bucketing_matches_reference(rng, n, s, jit):
    g = jax.jit(lambda a, v, k: bucketing(a, v, s, k)) if jit else (lambda a, v, k: bucketing(a, v, s, k))
    for t, invalid in enumerate(patterns(n, s)):
        valid = mask(n, invalid)
        x = rng.normal(size=(n, 3)).astype(np.float32)
        key = jax.random.key(t)
        perm = np.asarray(permutation(key, n))
        means, bvalid, bucket_of = g(poisoned(x, valid), valid, key)
        r_means, r_valid, r_of = ref_bucketing(x, valid, s, perm)
        assert means.shape == (num_buckets(n, s), 3) and means.dtype == jnp.float32
        assert bvalid.dtype == jnp.bool_ and bucket_of.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(bvalid), r_valid)
        np.testing.assert_array_equal(np.asarray(bucket_of), r_of)
        np.testing.assert_allclose(np.asarray(means), r_means, rtol=1e-6, atol=1e-6)


def test_bucketing_float64(rng):
    n, s = 9, 4
    valid = mask(n, [3])
    x = rng.normal(size=(n, 2))
    key = jax.random.key(3)
    with x64():
        means, bvalid, bucket_of = bucketing(jnp.asarray(poisoned(x, valid)), jnp.asarray(valid), s, key)
        perm = np.asarray(permutation(key, n))
    assert means.dtype == jnp.float64
    r_means, r_valid, r_of = ref_bucketing(x, valid, s, perm)
    np.testing.assert_allclose(np.asarray(means), r_means, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(np.asarray(bvalid), r_valid)


@given(seed=st.integers(0, 2**31 - 1), invalid=st.sets(st.integers(0, 6), max_size=7))
def test_bucketing_s1_is_a_permutation(seed, invalid):
    n = 7
    valid = mask(n, invalid)
    x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    means, bvalid, bucket_of = bucketing(poisoned(x, valid), valid, 1, jax.random.key(seed))
    means, bvalid, bucket_of = map(np.asarray, (means, bvalid, bucket_of))
    assert sorted(bucket_of) == list(range(n))  # a bijection clients -> buckets
    np.testing.assert_array_equal(means[bucket_of[valid]], x[valid])  # bit-identical
    np.testing.assert_array_equal(bvalid[bucket_of], valid)


@given(s=st.sampled_from([2, 3]), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_bucketing_means_average_to_valid_mean(s, data, seed):
    n = 10
    groups = data.draw(st.integers(1, n // s))
    n_valid = s * groups  # s divides n_valid: every valid bucket is full
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 3)).astype(np.float32)
    valid = np.zeros(n, bool)
    valid[r.choice(n, n_valid, replace=False)] = True
    means, bvalid, bucket_of = bucketing(poisoned(x, valid), valid, s, jax.random.key(seed))
    means, bvalid, bucket_of = map(np.asarray, (means, bvalid, bucket_of))
    assert bvalid.sum() == groups
    np.testing.assert_allclose(means[bvalid].mean(axis=0), x[valid].astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.all(bvalid[bucket_of[valid]])  # every valid client is in a valid bucket
    assert np.all(means[~bvalid] == 0)


def test_bucketing_every_valid_client_in_a_valid_bucket_and_deterministic(rng):
    n, s = 11, 3
    valid = mask(n, [0, 5, 7])
    x = poisoned(rng.normal(size=(n, 4)).astype(np.float32), valid)
    a = bucketing(x, valid, s, jax.random.key(42))
    b = bucketing(x, valid, s, jax.random.key(42))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    means, bvalid, bucket_of = map(np.asarray, a)
    assert np.all(bvalid[bucket_of[valid]])
    assert np.all(np.isfinite(means))
    counts = np.bincount(bucket_of, minlength=num_buckets(n, s))
    assert np.all(counts <= s)
    # another key gives (almost surely) another assignment
    others = [np.asarray(bucketing(x, valid, s, jax.random.key(k))[2]) for k in range(5)]
    assert any(not np.array_equal(o, bucket_of) for o in others)


def test_num_buckets():
    assert [num_buckets(n, 3) for n in range(8)] == [0, 1, 1, 1, 2, 2, 2, 3]
    assert num_buckets(5, 1) == 5 and num_buckets(5, 10) == 1
    with pytest.raises(ValueError, match="s"):
        num_buckets(5, 0)
    with pytest.raises(TypeError, match="n"):
        num_buckets(5.0, 2)


# --- static clipping ------------------------------------------------------------------------

@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("c", [0.5, 2, 100.0])
def test_static_clipping_matches_reference(rng, c, jit):
    n = 6
    g = jax.jit(lambda a, v: static_clipping(a, v, c)) if jit else (lambda a, v: static_clipping(a, v, c))
    for invalid in patterns(n, 1):
        valid = mask(n, invalid)
        x = (rng.normal(size=(n, 4)) * rng.uniform(0.1, 3, size=(n, 1))).astype(np.float32)
        x[1] = 0  # a zero row stays zero
        got = np.asarray(g(jnp.asarray(poisoned(x, valid)), jnp.asarray(valid)))
        np.testing.assert_allclose(got, ref_static_clip(x, valid, c), rtol=1e-6, atol=1e-7)
        assert np.all(got[1] == 0)


def test_static_clipping_float64(rng):
    x = rng.normal(size=(5, 3)) * 3
    valid = mask(5, [4])
    with x64():
        got = np.asarray(static_clipping(jnp.asarray(poisoned(x, valid)), jnp.asarray(valid), 1.5))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref_static_clip(x, valid, 1.5), rtol=1e-14, atol=1e-15)


@given(
    data=st.lists(st.lists(st.floats(-1e3, 1e3, width=32), min_size=3, max_size=3), min_size=5, max_size=5),
    c=st.floats(1e-3, 1e3),
)
def test_static_clipping_properties(data, c):
    x = np.array(data, np.float32)
    valid = np.ones(len(x), bool)
    got = np.asarray(static_clipping(x, valid, c))
    norms_in = np.linalg.norm(x.astype(np.float64), axis=1)
    norms_out = np.linalg.norm(got.astype(np.float64), axis=1)
    assert np.all(norms_out <= c * (1 + 4e-7) + 1e-30)
    inside = norms_in < c * (1 - 1e-6)
    np.testing.assert_array_equal(got[inside], x[inside])  # bit-identical
    # direction preserved
    np.testing.assert_allclose(got * norms_in[:, None], x * norms_out[:, None], rtol=1e-5, atol=1e-3)


def test_static_clipping_overflowing_norm_keeps_direction():
    x = np.array([[3e30, 4e30], [1.0, 0.0]], np.float32)  # ‖x_0‖² overflows float32
    got = np.asarray(static_clipping(x, np.ones(2, bool), 5.0))
    np.testing.assert_allclose(got, [[3.0, 4.0], [1.0, 0.0]], rtol=1e-6)


# --- adaptive robust clipping -----------------------------------------------------------------

ARC_CASES = [(5, 0), (5, 1), (8, 2), (8, 3), (10, 4), (6, 5)]  # f = 0 gives k = 0


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("n,f", ARC_CASES)
def test_arc_matches_reference(rng, n, f, jit):
    check_all_patterns(adaptive_robust_clipping, ref_arc, n, f, 4, np.float32, jit, rng, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n,f", ARC_CASES[2:4])
def test_arc_float64(rng, n, f):
    with x64():
        check_all_patterns(adaptive_robust_clipping, ref_arc, n, f, 3, np.float64, False, rng, rtol=1e-14, atol=1e-15)


def test_arc_byzfl_example():
    # The example of ByzFL's ARC documentation (f = 1, n = 3: k = floor(2·1/3·2) = 1).
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], np.float32)
    got = np.asarray(adaptive_robust_clipping(x, np.ones(3, bool), 1))
    np.testing.assert_allclose(got, [[1, 2, 3], [4, 5, 6], [4.41004009, 5.04004582, 5.67005155]], rtol=1e-6)


def test_arc_k_formula():
    assert [ref_arc_k(10, f) for f in range(6)] == [0, 1, 3, 4, 4, 5]
    assert ref_arc_k(3, 1) == 1 and ref_arc_k(2, 2) == 0 and ref_arc_k(1, 0) == 0


@given(
    data=st.lists(st.lists(st.integers(-3, 3), min_size=3, max_size=3), min_size=7, max_size=7),
    f=st.sampled_from([0, 2, 3]),
    invalid=st.sets(st.integers(0, 6), max_size=7),
)
def test_arc_clips_exactly_the_k_largest(data, f, invalid):
    # Integer rows: equal norms tie exactly, so the lower-index rule is exercised.
    x = np.array(data, np.float32)
    n = len(x)
    valid = mask(n, invalid)
    got = np.asarray(adaptive_robust_clipping(poisoned(x, valid), valid, f))
    np.testing.assert_allclose(got, ref_arc(x, valid, f), rtol=1e-6, atol=1e-6)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        assert np.all(got == 0)
        return
    k = ref_arc_k(len(idx), f)
    norms = np.linalg.norm(x[idx].astype(np.float64), axis=1)
    ranked = idx[sorted(range(len(idx)), key=lambda t: (-norms[t], idx[t]))]
    top, rest = ranked[:k], ranked[k:]
    np.testing.assert_array_equal(got[rest], x[rest])  # bit-identical
    threshold = np.linalg.norm(x[ranked[k]].astype(np.float64))
    assert np.all(np.linalg.norm(got[top].astype(np.float64), axis=1) <= threshold * (1 + 1e-6))
    assert np.all(got[~valid] == 0)


# --- NaN rows never leak ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nnm", "bucketing", "static", "arc"])
def test_invalid_rows_never_leak(rng, name):
    # Shapes of the reference tests above (their compilations are reused); the traced
    # (jit) paths are covered there, where a leaked NaN would fail the comparison.
    fns = {
        "nnm": (8, 4, lambda a, v: nearest_neighbor_mixing(a, v, 2)),
        "bucketing": (10, 3, lambda a, v: bucketing(a, v, 3, jax.random.key(0))[0]),
        "static": (6, 4, lambda a, v: static_clipping(a, v, 0.5)),
        "arc": (8, 4, lambda a, v: adaptive_robust_clipping(a, v, 2)),
    }
    n, d, fn = fns[name]
    for invalid in ([0, 3, n - 1], list(range(1, n))):
        valid = mask(n, invalid)
        x = poisoned(rng.normal(size=(n, d)).astype(np.float32), valid)
        out = np.asarray(fn(x, valid))
        assert np.all(np.isfinite(out))
        if name != "bucketing":
            assert np.all(out[~valid] == 0)


def test_gradients_stay_finite_through_invalid_rows(rng):
    # jnp.where before arithmetic: NaN rows do not poison reverse-mode gradients either.
    n = 6
    valid = mask(n, [2])
    x = jnp.asarray(poisoned(rng.normal(size=(n, 3)).astype(np.float32), valid))
    for fn in (lambda a: static_clipping(a, valid, 0.5), lambda a: adaptive_robust_clipping(a, valid, 1),
               lambda a: nearest_neighbor_mixing(a, valid, 1)):
        g = np.asarray(jax.grad(lambda a: jnp.sum(fn(a)))(x))
        assert np.all(np.isfinite(g[valid]))


# --- argument validation ------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [nearest_neighbor_mixing, adaptive_robust_clipping])
def test_f_validation(fn):
    x = np.zeros((4, 2), np.float32)
    v = np.ones(4, bool)
    for bad in (-1, 4, 10):
        with pytest.raises(ValueError, match=f"f={bad}"):
            fn(x, v, bad)
    for bad in (1.0, True, "1", None):
        with pytest.raises(TypeError, match="f="):
            fn(x, v, bad)
    fn(x, v, np.int64(3))  # NumPy integers are accepted


def test_s_and_c_validation():
    x = np.zeros((4, 2), np.float32)
    v = np.ones(4, bool)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="s=0"):
        bucketing(x, v, 0, key)
    with pytest.raises(TypeError, match="s=2.0"):
        bucketing(x, v, 2.0, key)
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="c="):
            static_clipping(x, v, bad)
    for bad in ("1", None, True):
        with pytest.raises(TypeError, match="c="):
            static_clipping(x, v, bad)


def test_shape_validation():
    with pytest.raises(ValueError, match="x.shape"):
        static_clipping(np.zeros(4, np.float32), np.ones(4, bool), 1.0)
    with pytest.raises(ValueError, match="valid.shape"):
        nearest_neighbor_mixing(np.zeros((4, 2), np.float32), np.ones(3, bool), 1)


def test_module_surface():
    assert set(pre.__all__) == {
        "adaptive_robust_clipping", "bucketing", "nearest_neighbor_mixing", "num_buckets", "static_clipping",
    }
    src = open(pre.__file__).read()
    imports = {line.split()[1] for line in src.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "typing", "jax", "jax.numpy", "numpy"}
