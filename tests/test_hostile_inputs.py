"""Hostile but finite updates, too few valid clients, one huge client, float16, NumPy
buffers: each test fails on the code before the fix it guards (issue 10, items 1-4, 13, 14, 16)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qkrum
from qkrum import attacks, baselines, kernels
from qkrum.synthetic import honest_updates

# The paper's penalty (lam="paper") does not enforce |S| = m at n = 50: repairs are expected.
pytestmark = pytest.mark.filterwarnings("ignore::qkrum.CardinalityRepairWarning")

SELECTORS = ["multikrum", "qubo", "cascade", "multisignal", "qubo-paper", "cascade-paper", "multisignal-paper"]
FAST = {"num_reads": 20}  # the QUBO's options, where a method has a QUBO
ALL_METHODS = sorted(qkrum.METHODS)


def options(method: str) -> dict:
    return dict(FAST) if ("qubo" in method or "cascade" in method or "multisignal" in method) else {}


def lie_round(n=50, f=10, d=20_000, seed=0):
    honest = honest_updates(jax.random.key(seed), n - f, d)
    byz = attacks.apply("lie", jax.random.key(seed + 1), honest, f)
    return np.array(jnp.concatenate([honest, byz]))


@pytest.fixture
def qubo_inputs(monkeypatch):
    """Every distance matrix handed to the QUBO solver."""
    import qkrum.qubo as qs

    seen = []
    original = qs.solve_selection

    def recording(D, *args, **kwargs):
        seen.append(np.array(D))
        return original(D, *args, **kwargs)

    monkeypatch.setattr(qs, "solve_selection", recording)
    return seen


# --- 1. pairwise overflow ------------------------------------------------------------------

@pytest.mark.parametrize("method", SELECTORS)
@pytest.mark.parametrize("forced", [False, True])
def test_colluding_pair_whose_distance_overflows_is_rejected(method, forced, qubo_inputs):
    x = lie_round()
    # Finite rows, finite squared norms (1.25e38 < 3.4e38), but ‖x40 − x41‖² = 5e38 overflows.
    x[40, :500], x[41, :500] = 5e17, -5e17
    assert np.isfinite(np.sum(x[40].astype(np.float32) ** 2))
    opts = options(method)
    if forced and "multisignal" in method:
        opts.update(tau_e=1e9, tau_c=1e9)
    elif forced and "cascade" in method:
        opts.update(tau=1e9)
    sel = qkrum.select(x, 10, method=method, **opts)
    assert not sel.selected[[40, 41]].any()
    assert {40, 41} <= set(sel.info["nonfinite"])
    assert np.isfinite(sel.scores[np.flatnonzero(sel.selected)]).all()
    assert all(np.isfinite(D).all() for D in qubo_inputs)
    assert np.isfinite(np.asarray(sel.aggregate(x))).all()


def test_colluding_pair_under_jit():
    x = lie_round()
    x[40, :500], x[41, :500] = 5e17, -5e17
    agg = qkrum.aggregator(10, method="multisignal", num_clients=50, num_reads=20, tau_e=1e9, tau_c=1e9)
    out, state = jax.jit(agg.update)(jnp.asarray(x), agg.init(None))
    assert not np.asarray(state.selected)[[40, 41]].any()
    assert np.isfinite(np.asarray(out)).all()


def test_representable_bound_keeps_every_valid_pair_finite():
    n, d = 12, 64
    bound = kernels.representable_bound(n, np.float32)
    c = np.sqrt(0.99 * bound / d)
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    x[0], x[1] = c, -c  # the farthest apart two valid rows can be
    x[2] = np.sqrt(1.02 * bound / d)  # just above the bound: invalid
    valid = np.asarray(kernels.valid_clients(jnp.asarray(x)))
    assert valid[:2].all() and not valid[2]
    D = np.asarray(kernels.pairwise_sq_euclidean(jnp.asarray(x)))
    assert np.isfinite(D[np.ix_(valid, valid)]).all() and np.isinf(D[2, 3])
    scores = np.asarray(kernels.krum_scores(D, 1))
    assert np.isfinite(scores[valid]).all()
    sel = qkrum.select(x, 1, norm_guard=None, project=None)
    assert sel.info["nonfinite"] == [2] and not sel.selected[2]


# --- 2. fewer valid clients than m ------------------------------------------------------------

def few_valid_round(positions, n=15, d=40, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    x[positions] = np.nan
    return x


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("placement", ["lowest", "highest", "scattered"])
def test_fewer_valid_than_m_selects_every_valid_client(method, placement):
    n = 15
    bad = {"lowest": np.arange(10), "highest": np.arange(5, 15),
           "scattered": np.array([0, 2, 3, 5, 7, 8, 9, 11, 12, 14])}[placement]
    x = few_valid_round(bad)
    good = np.setdiff1d(np.arange(n), bad)
    f = 2 if method == "bulyan" else 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = qkrum.select(x, f, method=method, **options(method))
    agg = np.asarray(sel.aggregate(x))
    assert np.isfinite(agg).all()
    if method == "krum":  # one client, and it is a valid one
        assert sel.selected.sum() == 1 and sel.indices[0] in good
    elif method == "bulyan":
        assert set(sel.indices) <= set(good) and sel.selected.sum() >= 1
    else:
        np.testing.assert_array_equal(sel.indices, good)
    if method in ("multikrum", "qubo", "cascade", "multisignal", "mean"):
        np.testing.assert_allclose(agg, x[good].astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["multikrum", "krum", "multisignal"])
def test_selection_with_many_invalid_clients_follows_the_clients_not_their_index(method):
    # 7 valid of 15 with m = 12: every valid client is scored against the valid ones only,
    # so permuting the rows permutes the selection.
    rng = np.random.default_rng(3)
    x = few_valid_round(rng.choice(15, 8, replace=False), seed=3)
    perm = rng.permutation(15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = qkrum.select(x, 3, method=method, m=4, **options(method))
        b = qkrum.select(x[perm], 3, method=method, m=4, **options(method))
    np.testing.assert_array_equal(a.selected[perm], b.selected)
    assert np.isfinite(a.scores[a.selected]).all()


def test_jit_aggregator_means_the_valid_clients_and_reports_the_shortfall():
    x = few_valid_round(np.arange(10))
    agg = qkrum.aggregator(3, method="multikrum", num_clients=15)
    out, state = jax.jit(agg.update)(jnp.asarray(x), agg.init(None))
    np.testing.assert_allclose(np.asarray(out), x[10:].mean(0), rtol=1e-5, atol=1e-6)
    assert int(state.num_valid) == 5 and int(state.shortfall) == 7
    # No valid client at all: no step (a zero update), reported as such.
    out, state = jax.jit(agg.update)(jnp.full((15, 40), jnp.nan), agg.init(None))
    assert int(state.num_valid) == 0 and not np.asarray(state.selected).any()
    assert np.all(np.asarray(out) == 0)


# --- 3. one huge client -----------------------------------------------------------------------

def weiszfeld64(x, iterations=3000):
    x = x.astype(np.float64)
    z = np.median(x, axis=0)
    for _ in range(iterations):
        w = 1 / np.maximum(np.linalg.norm(x - z, axis=1), 1e-12)
        z = (w[:, None] * x).sum(0) / w.sum()
    return z


@pytest.mark.parametrize("scale", [1e9, 1e12, 1e15])
def test_geometric_median_matches_float64_weiszfeld_with_one_huge_client(rng, scale):
    honest = (0.05 + 0.1 * rng.standard_normal((14, 1000))).astype(np.float32)
    unit = np.median(np.linalg.norm(honest, axis=1))
    huge = (rng.standard_normal((1, 1000)) * unit * scale / np.sqrt(1000)).astype(np.float32)
    x = np.concatenate([honest, huge])
    gm = baselines.geometric_median(jnp.asarray(x), jnp.ones(15, bool))
    want = weiszfeld64(x)
    assert bool(gm.converged)
    assert np.linalg.norm(np.asarray(gm.point) - want) / unit < 1e-3
    assert np.linalg.norm(np.asarray(gm.point) - honest.mean(0)) / unit < 0.2


@pytest.mark.parametrize("method", [m for m in ALL_METHODS if m != "mean"])
@pytest.mark.parametrize("n,f", [(15, 1), (15, 3)])
def test_no_method_is_dominated_by_one_huge_client(method, n, f):
    if method == "bulyan" and n < 4 * f + 3:
        pytest.skip("bulyan needs n >= 4f + 3")
    honest = np.asarray(honest_updates(jax.random.key(5), n - 1, 2_000))
    direction = honest.mean(0) / np.linalg.norm(honest.mean(0))  # aligned: cosine sees no outlier
    unit = np.median(np.linalg.norm(honest, axis=1))
    x = np.concatenate([honest, (1e12 * unit * direction)[None].astype(np.float32)])
    sel = qkrum.select(x, f, method=method, **options(method))
    err = np.linalg.norm(np.asarray(sel.aggregate(x)) - honest.mean(0)) / unit
    assert not sel.selected[-1] and sel.info["outsized"] == [n - 1]
    assert err < 2.0
    # plain mean, the unprotected reference, is dominated
    assert np.linalg.norm(qkrum.select(x, f, method="mean").aggregate(x) - honest.mean(0)) / unit > 1e10


def test_norm_guard_bounds_and_options(rng):
    x = rng.standard_normal((10, 30)).astype(np.float32)
    x[0] *= 50
    assert qkrum.select(x, 1, norm_guard=20, project=None).info["outsized"] == [0]
    assert qkrum.select(x, 1, norm_guard=None, project=None).info["outsized"] == []
    assert qkrum.select(x, 1, project=None).info["norm_guard"] == qkrum.NORM_GUARD
    assert qkrum.select(x, 1, method="mean").info["norm_guard"] is None
    for bad, exc in [(1.0, ValueError), (float("nan"), ValueError), ("big", ValueError), (True, TypeError)]:
        with pytest.raises(exc, match="norm_guard"):
            qkrum.select(x, 1, norm_guard=bad)


# --- 4. float16 -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["mean", "trimmed_mean", "geometric_median", "multikrum", "median"])
def test_float16_inputs_accumulate_in_float32(rng, method):
    x = (5000 + 50 * rng.standard_normal((20, 64))).astype(np.float16)
    sel = qkrum.select(x, 2, method=method)
    agg = np.asarray(sel.aggregate(x))
    assert agg.dtype == np.float16 and np.isfinite(agg).all()
    ref = np.asarray(qkrum.select(x.astype(np.float32), 2, method=method).aggregate(x.astype(np.float32)))
    np.testing.assert_allclose(agg.astype(np.float32), ref, rtol=2e-3)
    np.testing.assert_array_equal(sel.selected, qkrum.select(x.astype(np.float32), 2, method=method).selected)


def test_float16_under_jit(rng):
    x = jnp.asarray((5000 + 50 * rng.standard_normal((20, 64))).astype(np.float16))
    agg = qkrum.aggregator(2, method="multikrum", num_clients=20)
    out, _ = jax.jit(agg.update)(x, agg.init(None))
    assert out.dtype == jnp.float16 and bool(jnp.isfinite(out).all())


def test_computation_dtype_below_float32_is_refused(rng):
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got dtype=float16"):
        qkrum.select(rng.standard_normal((5, 4)).astype(np.float32), 1, dtype=np.float16)


# --- 13. vmap, grad, scan ---------------------------------------------------------------------

def test_aggregator_under_vmap_equals_one_round_at_a_time(rng):
    rounds = jnp.asarray(rng.standard_normal((3, 12, 20)).astype(np.float32))
    agg = qkrum.aggregator(3, method="multikrum", num_clients=12)
    state = agg.init(None)
    keys = jax.random.split(jax.random.key(1), 3)
    outs, states = jax.vmap(lambda u, k: agg.update(u, state, key=k))(rounds, keys)
    for t in range(3):
        out, st = agg.update(rounds[t], state, key=keys[t])
        np.testing.assert_allclose(np.asarray(outs[t]), np.asarray(out), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(states.selected[t]), np.asarray(st.selected))


def test_aggregator_under_grad_says_what_to_do(rng):
    x = jnp.asarray(rng.standard_normal((12, 20)).astype(np.float32))
    agg = qkrum.aggregator(3, method="multikrum", num_clients=12)
    state = agg.init(None)
    with pytest.raises(TypeError, match="cannot be differentiated with respect to client_updates"):
        jax.grad(lambda u: agg.update(u, state)[0].sum())(x)
    # With the updates held constant the rest of a loss differentiates.
    g = jax.grad(lambda u: agg.update(jax.lax.stop_gradient(u), state)[0].sum() + jnp.sum(u ** 2))(x)
    np.testing.assert_allclose(np.asarray(g), 2 * np.asarray(x), rtol=1e-6)


def test_aggregator_without_num_clients_scans(rng):
    rounds = jnp.asarray(rng.standard_normal((3, 12, 20)).astype(np.float32))
    agg = qkrum.aggregator(3, method="multikrum")

    def step(state, ups):
        out, state = agg.update(ups, state)
        return state, out

    state, outs = jax.lax.scan(step, agg.init(None), rounds)
    assert state.selected is None and int(state.count) == 3 and outs.shape == (3, 20)


# --- 14. info["k"] --------------------------------------------------------------------------

def test_info_k_is_none_when_no_projection_ran(rng):
    x = rng.standard_normal((8, 50)).astype(np.float32)
    assert qkrum.select(x, 1, project=1000).info["k"] is None
    assert qkrum.select(x, 1, project=None).info["k"] is None
    assert qkrum.select(x, 1, project=10).info["k"] == 10


# --- 16. NumPy buffers are read, not copied -----------------------------------------------------

@pytest.mark.parametrize("method", ["multikrum", "multisignal", "median"])
def test_unaligned_numpy_input_gives_the_jax_result_bit_for_bit(method):
    # A row size that is not a multiple of 64 bytes, and an offset base: copied head and
    # tail blocks, aliased blocks in between.
    rng = np.random.default_rng(0)
    buf = rng.standard_normal(41 * 1003 + 5).astype(np.float32)
    start = 4 if (buf.ctypes.data + 16) % 64 else 5  # never 64-byte aligned, whatever malloc gave
    x = buf[start:start + 41 * 1003].reshape(41, 1003)
    assert x.ctypes.data % 64 != 0 and x.flags.c_contiguous
    x[3] = np.nan
    old = kernels._HOST_BLOCK_BYTES
    kernels._HOST_BLOCK_BYTES = 8 * 1003 * 4  # several blocks even at this size
    try:
        a = qkrum.select(x, 8, method=method, project=200, **options(method))
        agg_a = np.asarray(a.aggregate(x))
    finally:
        kernels._HOST_BLOCK_BYTES = old
    b = qkrum.select(jnp.asarray(x), 8, method=method, project=200, **options(method))
    np.testing.assert_array_equal(a.selected, b.selected)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(agg_a, np.asarray(b.aggregate(jnp.asarray(x))))


def test_host_blocks_cover_every_row_once_in_order():
    rng = np.random.default_rng(1)
    for offset, rows, cols in [(4, 37, 1003), (0, 5, 7), (12, 64, 16), (8, 3, 1000)]:
        x = rng.standard_normal(rows * cols + offset).astype(np.float32)[offset:].reshape(rows, cols)
        old = kernels._HOST_BLOCK_BYTES
        kernels._HOST_BLOCK_BYTES = 4 * cols * 4
        try:
            blocks = list(kernels.host_blocks(x))
        finally:
            kernels._HOST_BLOCK_BYTES = old
        assert [lo for lo, _, _ in blocks] == sorted(lo for lo, _, _ in blocks)
        covered = np.concatenate([np.arange(lo, hi) for lo, hi, _ in blocks])
        np.testing.assert_array_equal(covered, np.arange(rows))
        for lo, hi, block in blocks:
            np.testing.assert_array_equal(np.asarray(block)[:hi - lo], x[lo:hi])
            assert not np.asarray(block)[hi - lo:].any()


def test_all_subnormal_updates_are_flushed_to_zero_as_documented():
    # XLA's CPU kernels flush subnormals (|v| < 1.18e-38 in float32) to zero: such an
    # update is a zero update. Documented in the README; no NaN, no crash, no division by 0.
    x = np.full((6, 10), 1e-40, np.float32)
    x[1] *= 2
    x[2] *= -1
    for method in ("multikrum", "mean", "geometric_median", "qubo"):
        sel = qkrum.select(x, 1, method=method, project=None, **options(method))
        agg = np.asarray(sel.aggregate(x))
        assert np.all(agg == 0), method
