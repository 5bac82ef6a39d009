"""Classical baselines (qkrum.baselines) against independent float64 NumPy references."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.optimize import minimize

import qkrum
from conftest import ref_krum

BASELINES = ["mean", "median", "trimmed_mean", "geometric_median", "krum", "bulyan", "centered_clipping"]
AVERAGING = ["mean", "median", "trimmed_mean", "geometric_median", "centered_clipping"]  # every finite client


# --- independent references (float64, direct differences, plain loops) ------------------

def ref_dists(v):
    """Squared distances by direct differences; non-finite rows at +inf (0 on the diagonal)."""
    v = np.asarray(v, np.float64)
    ok = np.isfinite(v).all(1)
    safe = np.where(ok[:, None], v, 0)
    d = ((safe[:, None, :] - safe[None, :, :]) ** 2).sum(-1)
    d[~ok, :] = np.inf
    d[:, ~ok] = np.inf
    np.fill_diagonal(d, 0)
    return d


def ref_trimmed(v, beta):
    s = np.sort(np.asarray(v, np.float64), axis=0)
    return s[beta:len(s) - beta].mean(0)


def ref_objective(v, z):
    return np.linalg.norm(np.asarray(v, np.float64) - z, axis=1).sum()


def ref_geomed(v):
    """argmin_z Σ‖v_i − z‖ by scipy's BFGS with the analytic gradient, from the mean."""
    v = np.asarray(v, np.float64)

    def fun(z):
        diff = z - v
        norm = np.maximum(np.linalg.norm(diff, axis=1), 1e-300)
        return norm.sum(), (diff / norm[:, None]).sum(0)

    return minimize(fun, v.mean(0), jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 10000}).x


def ref_krum_pick(v, f):
    """Brute-force Krum over all n clients, non-finite ones at infinite distance."""
    scores = ref_krum(ref_dists(v), f)
    s = np.sort(scores)
    return int(np.argmin(scores)), scores, s[1] - s[0]


def ref_bulyan(v, f):
    """Bulyan, El Mhamdi et al. 2018, as a plain loop. Returns (aggregate, picks, margin,
    tied): ``margin`` is the smallest relative gap between the lowest Krum score and the
    next *different* one over the picks, so callers can skip float near-ties; ``tied``
    says an exact tie decided a pick (by the lowest index). With f = 0 every client is
    picked and neither matters. With f = 1 the last pick has one neighbour and the
    nearest pair of the three clients left always ties."""
    v = np.asarray(v, np.float64)
    n = len(v)
    theta, beta = n - 2 * f, n - 4 * f
    d = ref_dists(v)
    remaining, picks, margin, tied = list(range(n)), [], np.inf, False
    for _ in range(theta):
        r = len(remaining)
        if r <= 2:
            best = remaining[0]
        else:
            k = max(r - f - 2, 1)
            scores = []
            for i in remaining:
                others = sorted(d[i, j] for j in remaining if j != i)
                scores.append(sum(others[:k]))
            lowest = min(scores)
            above = [s for s in scores if s > lowest]
            if f > 0:
                tied |= scores.count(lowest) > 1
                if above:
                    margin = min(margin, (min(above) - lowest) / (1 + abs(lowest)))
            best = remaining[int(np.argmin(scores))]
        picks.append(best)
        remaining.remove(best)
    chosen = v[picks]
    out = np.empty(v.shape[1])
    for c in range(v.shape[1]):
        col = chosen[:, c]
        med = np.median(col)
        closest = col[np.argsort(np.abs(col - med), kind="stable")[:beta]]
        out[c] = closest.mean()
    return out, sorted(picks), margin, tied


def ref_cc(v, center, tau, iterations):
    v = np.asarray(v, np.float64)
    c = np.asarray(center, np.float64).copy()
    for _ in range(iterations):
        step = np.zeros_like(c)
        for xi in v:
            u = xi - c
            norm = np.linalg.norm(u)
            step += u * min(1.0, tau / norm) if norm > 0 else u
        c = c + step / len(v)
    return c


def ref_aggregate(method, v, f, **options):
    """The reference aggregate of the finite rows ``v`` (krum, bulyan: all rows finite)."""
    v = np.asarray(v, np.float64)
    if method == "mean":
        return v.mean(0)
    if method == "median":
        return np.median(v, axis=0)
    if method == "trimmed_mean":
        return ref_trimmed(v, options.get("beta", f))
    if method == "geometric_median":
        return ref_geomed(v)
    if method == "krum":
        return v[ref_krum_pick(v, f)[0]]
    if method == "bulyan":
        return ref_bulyan(v, f)[0]
    center = options.get("center", np.median(v, axis=0))
    tau = options.get("tau", np.median(np.linalg.norm(v - center, axis=1)))
    return ref_cc(v, center, tau, options.get("iterations", 1))


def largest_f(method, n):
    return {"trimmed_mean": (n - 1) // 2, "krum": n - 3, "bulyan": (n - 3) // 4}.get(method, n - 3)


def check_close(method, got, want, v):
    scale = 1 + np.abs(np.asarray(v, np.float64)).max()
    if method == "geometric_median":
        # Weiszfeld in float32 against BFGS in float64: compare the objective tightly and
        # the point loosely (the objective is flat around its minimum).
        assert ref_objective(v, got) <= ref_objective(v, want) * (1 + 2e-5)
        np.testing.assert_allclose(got, want, atol=5e-3 * scale)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6 * scale)


# Few shapes, so each jitted statistic compiles a handful of times for the whole file.
SHAPES = [(7, 3), (11, 5), (12, 4)]
cases = st.tuples(st.sampled_from(SHAPES), st.integers(0, 2**31 - 1))


def draw(case):
    (n, d), seed = case
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), seed


def distinct_krum(v, f):
    return ref_krum_pick(v, f)[2] > 1e-4 * (1 + np.abs(ref_krum_pick(v, f)[1]).min())


def well_posed_round(method, case, *, untied=False):
    """A drawn round and its f, skipping rounds where Krum's or Bulyan's pick is a near tie."""
    x, seed = draw(case)
    f = seed % (largest_f(method, len(x)) + 1)
    if method == "krum":
        assume(distinct_krum(x, f))
    if method == "bulyan":
        _, _, margin, tied = ref_bulyan(x, f)
        assume(margin > 1e-4 and not (untied and tied))
    return x, f, seed


# --- against the references -------------------------------------------------------------

@pytest.mark.parametrize("method", BASELINES)
@given(case=cases)
def test_matches_reference(method, case):
    x, f, _ = well_posed_round(method, case)
    n = len(x)
    sel = qkrum.select(x, f, method=method, project=None)
    agg = np.asarray(sel.aggregate(x))
    check_close(method, agg, ref_aggregate(method, x, f), x)
    assert sel.method == method and sel.selected.dtype == bool and sel.scores.shape == (n,)
    if method in AVERAGING:
        assert sel.selected.all()
        np.testing.assert_allclose(sel.scores, np.linalg.norm(x - agg, axis=1), rtol=1e-4, atol=1e-5)
    elif method == "krum":
        pick, scores, _ = ref_krum_pick(x, f)
        np.testing.assert_array_equal(sel.indices, [pick])
        np.testing.assert_allclose(sel.scores, scores, rtol=1e-4)
    else:
        _, picks, _, _ = ref_bulyan(x, f)
        np.testing.assert_array_equal(sel.indices, picks)
        np.testing.assert_allclose(sel.scores, ref_krum(ref_dists(x), f), rtol=1e-4)
        assert sel.info["theta"] == n - 2 * f and sel.info["beta"] == n - 4 * f


def test_hand_checked_small_case():
    x = np.array([[0.0, 10.0], [1.0, -3.0], [2.0, 4.0], [3.0, 5.0], [100.0, 6.0]], np.float32)
    med = qkrum.select(x, 1, method="median", project=None)
    np.testing.assert_array_equal(np.asarray(med.aggregate(x)), [2.0, 5.0])
    tm = qkrum.select(x, 1, method="trimmed_mean", project=None)  # keep ranks 2-4 per coordinate
    np.testing.assert_allclose(np.asarray(tm.aggregate(x)), [2.0, 5.0])
    tm0 = qkrum.select(x, 1, method="trimmed_mean", beta=2, project=None)
    np.testing.assert_array_equal(np.asarray(tm0.aggregate(x)), [2.0, 5.0])
    assert tm.info["beta"] == 1 and tm.info["kept"] == 3


def test_trimmed_mean_matches_scipy(rng):
    from scipy.stats import trim_mean

    x = rng.standard_normal((20, 7)).astype(np.float32)
    sel = qkrum.select(x, 0, method="trimmed_mean", beta=5, project=None)  # 5/20 = 25% each end
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), trim_mean(x.astype(np.float64), 0.25, axis=0),
                               rtol=1e-5, atol=1e-6)


def test_geometric_median_closed_forms(rng):
    x = rng.standard_normal((9, 4)).astype(np.float32)
    x64 = x.astype(np.float64)
    # One smoothed Weiszfeld step from the mean.
    z0 = x64.mean(0)
    w = 1 / np.linalg.norm(x64 - z0, axis=1)
    one = qkrum.select(x, 0, method="geometric_median", max_iter=1, project=None)
    np.testing.assert_allclose(np.asarray(one.aggregate(x)), (w[:, None] * x64).sum(0) / w.sum(), rtol=1e-5)
    assert one.info["iterations"] == 1 and one.info["converged"] is False
    # A smoothing radius larger than every distance gives equal weights: the mean.
    flat = qkrum.select(x, 0, method="geometric_median", eps=1e6, project=None)
    np.testing.assert_allclose(np.asarray(flat.aggregate(x)), x64.mean(0), rtol=1e-5, atol=1e-6)
    full = qkrum.select(x, 0, method="geometric_median", project=None)
    assert full.info["converged"] and 1 <= full.info["iterations"] < 100
    np.testing.assert_allclose(full.info["objective"], ref_objective(x, np.asarray(full.aggregate(x))), rtol=1e-5)


def test_geometric_median_resists_a_far_outlier(rng):
    x = rng.standard_normal((9, 4)).astype(np.float32)
    x[0] = 1e6
    sel = qkrum.select(x, 1, method="geometric_median", project=None)
    gm = np.asarray(sel.aggregate(x))
    # One outlier of nine shifts the geometric median by O(spread), the mean by ~1e5.
    assert np.linalg.norm(gm - ref_geomed(x[1:])) < 1.5 and sel.info["converged"]
    assert np.linalg.norm(x.astype(np.float64).mean(0) - ref_geomed(x[1:])) > 1e5


def test_centered_clipping_against_loop_with_options(rng):
    x = rng.standard_normal((10, 6)).astype(np.float32)
    center = rng.standard_normal(6).astype(np.float32)
    sel = qkrum.select(x, 2, method="centered_clipping", tau=0.7, iterations=3, center=center, project=None)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), ref_cc(x, center, 0.7, 3), rtol=1e-5, atol=1e-6)
    assert sel.info["tau"] == pytest.approx(0.7) and sel.info["center"] == "given"
    # One iteration moves the center by at most tau (a mean of vectors of norm <= tau).
    one = np.asarray(qkrum.select(x, 2, method="centered_clipping", tau=0.1, center=center,
                                  project=None).aggregate(x))
    assert np.linalg.norm(one - center) <= 0.1 + 1e-6
    # A radius above every distance clips nothing: one step lands on the mean.
    big = qkrum.select(x, 2, method="centered_clipping", tau=1e6, center=center, project=None)
    np.testing.assert_allclose(np.asarray(big.aggregate(x)), x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)


def test_centered_clipping_default_tau_is_the_median_distance(rng):
    x = rng.standard_normal((9, 5)).astype(np.float32)
    sel = qkrum.select(x, 2, method="centered_clipping", project=None)
    med = np.median(x.astype(np.float64), axis=0)
    assert sel.info["tau"] == pytest.approx(np.median(np.linalg.norm(x - med, axis=1)), rel=1e-5)
    assert sel.info["center"] == "median" and sel.info["iterations"] == 1


def test_centered_clipping_center_as_previous_aggregate_pytree(rng):
    tree = {"w": rng.standard_normal((8, 3, 2)).astype(np.float32), "b": rng.standard_normal((8, 2)).astype(np.float32)}
    prev = qkrum.select(tree, 1, method="mean", project=None).aggregate(tree)
    sel = qkrum.select(tree, 1, method="centered_clipping", center=prev, tau=0.5, project=None)
    flat = np.concatenate([tree["b"].reshape(8, -1), tree["w"].reshape(8, -1)], axis=1)  # tree_util order
    want = ref_cc(flat, flat.astype(np.float64).mean(0), 0.5, 1)
    agg = sel.aggregate(tree)
    np.testing.assert_allclose(np.asarray(agg["b"]), want[:2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(agg["w"]), want[2:].reshape(3, 2), rtol=1e-5, atol=1e-6)


# --- pytrees, non-finite clients --------------------------------------------------------

@pytest.mark.parametrize("method", BASELINES)
def test_pytree_updates_keep_their_structure(rng, method):
    tree = {"w": rng.standard_normal((11, 4, 3)).astype(np.float32),
            "b": rng.standard_normal((11, 3)).astype(np.float32)}
    flat = np.concatenate([tree["b"].reshape(11, -1), tree["w"].reshape(11, -1)], axis=1)
    a = qkrum.select(tree, 2, method=method, project=None)
    b = qkrum.select(flat, 2, method=method, project=None)
    np.testing.assert_array_equal(a.selected, b.selected)
    agg = a.aggregate(tree)
    assert jax.tree.structure(agg) == jax.tree.structure({"w": 0, "b": 0})
    assert agg["w"].shape == (4, 3) and agg["b"].shape == (3,)
    want = np.asarray(b.aggregate(flat))
    np.testing.assert_allclose(np.asarray(agg["b"]), want[:3], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(agg["w"]), want[3:].reshape(4, 3), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", BASELINES)
def test_nonfinite_clients_are_ignored(rng, method, bad):
    x = rng.standard_normal((13, 5)).astype(np.float32)
    x[[2, 9], 1] = bad
    f = 2  # bulyan: 11 finite clients >= 4f + 3; select: 11 finite >= m = n - f
    finite = np.delete(x, [2, 9], 0)
    sel = qkrum.select(x, f, method=method, project=None)
    agg = np.asarray(sel.aggregate(x))
    assert np.isfinite(agg).all()
    assert not sel.selected[[2, 9]].any() and np.isinf(sel.scores[[2, 9]]).all()
    assert sel.info["nonfinite"] == [2, 9]
    if method == "krum":  # Krum counts every client in n, the non-finite ones at infinite distance
        np.testing.assert_array_equal(sel.indices, [ref_krum_pick(x, f)[0]])
        np.testing.assert_array_equal(agg, x[ref_krum_pick(x, f)[0]])
    else:
        check_close(method, agg, ref_aggregate(method, finite, f), finite)
    if method in AVERAGING:
        assert sel.selected.sum() == 11


def test_bulyan_with_too_few_finite_clients_lowers_f_and_warns(rng):
    x = rng.standard_normal((11, 4)).astype(np.float32)
    x[[0, 5], 0] = np.nan  # 9 finite < 4*2 + 3: tolerate f = (9 - 3) // 4 = 1 among them
    with pytest.warns(RuntimeWarning, match="only 9 of n=11 .* tolerating f=1"):
        sel = qkrum.select(x, 2, method="bulyan", project=None)
    finite = np.delete(x, [0, 5], 0)
    want, picks, _, _ = ref_bulyan(finite, 1)
    assert sel.info["f_effective"] == 1 and sel.info["theta"] == 7 and sel.info["beta"] == 5
    np.testing.assert_array_equal(sel.indices, np.delete(np.arange(11), [0, 5])[picks])
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), want, rtol=1e-5, atol=1e-6)


# --- properties -------------------------------------------------------------------------

@pytest.mark.parametrize("method", BASELINES)
@given(case=cases)
def test_permuting_clients_leaves_the_aggregate(method, case):
    # With ties, the index tie-break is not invariant under permutation.
    x, f, seed = well_posed_round(method, case, untied=True)
    n = len(x)
    perm = np.random.default_rng(seed + 1).permutation(n)
    a = qkrum.select(x, f, method=method, project=None)
    b = qkrum.select(x[perm], f, method=method, project=None)
    np.testing.assert_array_equal(b.selected, a.selected[perm])
    # Weiszfeld's stopping step depends on float summation order, hence its looser bound.
    atol = 5e-3 if method == "geometric_median" else 1e-5
    np.testing.assert_allclose(np.asarray(b.aggregate(x[perm])), np.asarray(a.aggregate(x)), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("method", BASELINES)
@given(case=cases, shift=st.floats(-3, 3))
def test_translation_equivariance(method, case, shift):
    x, seed = draw(case)
    n = len(x)
    f = seed % (largest_f(method, n) + 1)
    t = (shift * np.random.default_rng(seed + 2).standard_normal(x.shape[1])).astype(np.float32)
    if method == "krum":
        assume(distinct_krum(x, f) and distinct_krum(x + t, f))
    if method == "bulyan":
        assume(ref_bulyan(x, f)[2] > 1e-3 and ref_bulyan(x + t, f)[2] > 1e-3 and not ref_bulyan(x, f)[3])
    a = np.asarray(qkrum.select(x, f, method=method, project=None).aggregate(x))
    b = np.asarray(qkrum.select(x + t, f, method=method, project=None).aggregate(x + t))
    tol = 5e-3 if method == "geometric_median" else 1e-5
    np.testing.assert_allclose(b, a + t, atol=tol * (1 + np.abs(t).max() + np.abs(x).max()))


@pytest.mark.parametrize("method", BASELINES)
@given(row=st.lists(st.floats(-1e3, 1e3, width=32), min_size=3, max_size=3))
def test_identical_rows_aggregate_to_that_row(method, row):
    x = np.tile(np.asarray(row, np.float32), (7, 1))
    sel = qkrum.select(x, 1, method=method, project=None)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), x[0], rtol=1e-6, atol=1e-6 * (1 + np.abs(x).max()))


@given(case=cases)
def test_trimmed_mean_with_f_zero_is_the_mean(case):
    x, _ = draw(case)
    sel = qkrum.select(x, 0, method="trimmed_mean", project=None)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    assert sel.info["beta"] == 0


# --- under jax.jit ----------------------------------------------------------------------

def updates(seed, n=11, d=6, nan_row=None):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    x[:2] *= 30  # two far-off clients
    if nan_row is not None:
        x[nan_row, 3] = np.nan
    return x


def host_mask(method, f, options):
    def fn(x):
        return np.asarray(qkrum.select(np.asarray(x), f, method=method, project=None, **options).selected)
    return fn


# The methods whose statistic needs neither f nor options go through qkrum.aggregator as it is.
@pytest.mark.parametrize("method", ["mean", "median", "geometric_median", "krum", "bulyan", "centered_clipping"])
def test_aggregator_under_jit_equals_select(method):
    x = updates(3, n=12, nan_row=7)  # bulyan with f=2: 11 finite >= 4f + 3
    agg = qkrum.aggregator(2, method=method, num_clients=12, project=None)
    out, state = jax.jit(agg.update)(jnp.asarray(x), agg.init())
    sel = qkrum.select(x, 2, method=method, project=None)
    np.testing.assert_array_equal(np.asarray(state.selected), sel.selected)
    np.testing.assert_allclose(np.asarray(out), np.asarray(sel.aggregate(x)), rtol=1e-6, atol=1e-6)
    assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("method,options", [
    ("median", {}), ("trimmed_mean", {}), ("trimmed_mean", {"beta": 3}),
    ("geometric_median", {"eps": 1e-3, "tol": 0.0}),
    ("bulyan", {}), ("centered_clipping", {"tau": 0.3, "iterations": 4}),
    ("centered_clipping", {"center": np.full(6, 0.2, np.float32)}),
])
def test_rule_combine_under_jit_equals_select(method, options):
    # What qkrum.aggregator does, with the statistic built for this f and these options:
    # the mask comes back from a host callback, the statistic is traced.
    x = updates(5, nan_row=4)
    f = 2
    combine = qkrum.rule(method, **options).combine(f)

    @jax.jit
    def step(x):
        mask = jax.pure_callback(host_mask(method, f, options), jax.ShapeDtypeStruct((x.shape[0],), jnp.bool_), x)
        return combine(x, mask)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bulyan with a NaN row: 10 finite < 4f + 3
        want = np.asarray(qkrum.select(x, f, method=method, project=None, **options).aggregate(x))
        got = np.asarray(step(jnp.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.isfinite(got).all()


def test_aggregator_builds_trimmed_mean_with_its_f():
    x = updates(1)
    agg = qkrum.aggregator(2, method="trimmed_mean", num_clients=11, project=None)
    out, _ = jax.jit(agg.update)(jnp.asarray(x), agg.init())
    np.testing.assert_allclose(np.asarray(out), np.asarray(
        qkrum.select(x, 2, method="trimmed_mean", project=None).aggregate(x)), rtol=1e-6)


def test_aggregator_passes_options_to_the_statistic():
    x = updates(1)
    agg = qkrum.aggregator(2, method="centered_clipping", num_clients=11, project=None, tau=0.05)
    out, _ = jax.jit(agg.update)(jnp.asarray(x), agg.init())
    np.testing.assert_allclose(np.asarray(out), np.asarray(
        qkrum.select(x, 2, method="centered_clipping", project=None, tau=0.05).aggregate(x)), rtol=1e-6)


def test_nan_in_a_rejected_row_never_reaches_the_statistic():
    # Masked-out rows must enter no arithmetic, not even as NaN * 0.
    x = jnp.asarray(updates(2))
    x = x.at[0].set(jnp.nan).at[1].set(jnp.inf)
    mask = jnp.ones(11, bool).at[0].set(False).at[1].set(False)
    finite = np.asarray(x)[2:]
    for name in ["median", "geometric_median", "centered_clipping"]:
        got = np.asarray(jax.jit(qkrum.rule(name).combine(0))(x, mask))
        check_close(name, got, ref_aggregate(name, finite, 0), finite)
    got = np.asarray(jax.jit(qkrum.rule("trimmed_mean").combine(2))(x, mask))
    np.testing.assert_allclose(got, ref_trimmed(finite, 2), rtol=1e-5, atol=1e-6)


# --- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("n,f,kwargs,exc,match", [
    (10, 2, {"method": "bulyan"}, ValueError, r"bulyan needs n >= 4f \+ 3 clients, got n=10, f=2 \(4f \+ 3 = 11\)"),
    (10, 1, {"method": "trimmed_mean", "beta": 5}, ValueError, r"needs 2\*beta < 10.*got beta=5$"),
    (10, 5, {"method": "trimmed_mean"}, ValueError, r"got beta=5 \(the default, f=5\)"),
    (10, 1, {"method": "trimmed_mean", "beta": -1}, ValueError, "beta must be >= 0, got beta=-1"),
    (10, 1, {"method": "trimmed_mean", "beta": 1.0}, TypeError, "beta must be an integer"),
    (10, 1, {"method": "centered_clipping", "tau": -1.0}, ValueError, r"tau must be a finite number > 0, got tau=-1.0"),
    (10, 1, {"method": "centered_clipping", "tau": 0}, ValueError, "tau must be a finite number > 0, got tau=0.0"),
    (10, 1, {"method": "centered_clipping", "tau": np.nan}, ValueError, "tau must be a finite number > 0"),
    (10, 1, {"method": "centered_clipping", "tau": "big"}, TypeError, "tau must be a real number, got 'big'"),
    (10, 1, {"method": "centered_clipping", "iterations": 0}, ValueError, "iterations must be >= 1, got iterations=0"),
    (10, 1, {"method": "centered_clipping", "center": np.zeros(3)}, ValueError, r"d=4 values once flattened, got 3"),
    (10, 1, {"method": "centered_clipping", "center": np.array([0, np.nan, 0, 0])}, ValueError, "center must be finite"),
    (10, 1, {"method": "geometric_median", "max_iter": 0}, ValueError, "max_iter must be >= 1, got max_iter=0"),
    (10, 1, {"method": "geometric_median", "eps": 0.0}, ValueError, "eps must be a finite number > 0, got eps=0.0"),
    (10, 1, {"method": "geometric_median", "tol": -1e-3}, ValueError, r"tol must be a finite number >= 0, got tol=-0.001"),
    (10, 1, {"method": "geometric_median", "maxiter": 5}, TypeError,
     r"method 'geometric_median' got unknown option\(s\) \['maxiter'\]; valid options: max_iter, tol, eps"),
    (10, 1, {"method": "centered_clipping", "L": 2}, TypeError, "valid options: tau, iterations, center"),
    (10, 1, {"method": "trimmed_mean", "b": 2}, TypeError, "valid options: beta"),
    (10, 1, {"method": "mean", "beta": 1}, TypeError, r"method 'mean' takes no options, got \['beta'\]"),
    (10, 1, {"method": "median", "beta": 1}, TypeError, "method 'median' takes no options"),
    (10, 1, {"method": "krum", "m_krum": 1}, TypeError, "method 'krum' takes no options"),
    (10, 1, {"method": "bulyan", "theta": 1}, TypeError, "method 'bulyan' takes no options"),
    (10, 8, {"method": "krum"}, ValueError, "n - f - 2 >= 1"),
])
def test_bad_input(rng, n, f, kwargs, exc, match):
    x = rng.standard_normal((n, 4)).astype(np.float32)
    with pytest.raises(exc, match=match):
        qkrum.select(x, f, project=None, **kwargs)


def test_trimmed_mean_bound_counts_finite_clients(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    x[:3, 0] = np.nan  # 7 finite: beta = 3 passes, beta = 4 does not
    assert qkrum.select(x, 3, method="trimmed_mean", project=None).info["kept"] == 1
    # beta = 4 would trim all 7: an attacker's NaN must not fail the round, so it is lowered.
    with pytest.warns(RuntimeWarning, match=r"only 7 of n=10 client updates are valid, so beta=4"):
        sel = qkrum.select(x, 3, method="trimmed_mean", beta=4, project=None)
    assert sel.info["beta"] == 3 and sel.info["kept"] == 1


def test_rules_validate_options_at_construction():
    with pytest.raises(TypeError, match="valid options: beta"):
        qkrum.rule("trimmed_mean", bogus=1)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        qkrum.rule("centered_clipping", tau=-2)
    with pytest.raises(ValueError, match="f must be >= 0"):
        qkrum.rule("trimmed_mean").combine(-1)


@pytest.mark.parametrize("data", ["gaussian", "ties"])
def test_host_and_xla_paths_agree(rng, data):
    # Eager CPU calls take NumPy, traced calls XLA (as in qkrum.kernels); same values,
    # also with ties, where both must keep the lower row index.
    if data == "gaussian":
        x = rng.standard_normal((12, 40)).astype(np.float32)
    else:
        x = rng.integers(-2, 3, (12, 40)).astype(np.float32)
    x[[3, 8]] = np.nan
    mask = np.ones(12, bool)
    mask[[3, 8, 10]] = False
    b = qkrum.baselines
    cases = [
        (b.coordinate_median, lambda x, m: b.coordinate_median(x, m)),
        (lambda x, m: b.trimmed_mean(x, m, 2), lambda x, m: b.trimmed_mean(x, m, 2)),
        (lambda x, m: b.closest_to_median_mean(x, m, 5), lambda x, m: b.closest_to_median_mean(x, m, 5)),
        (lambda x, m: b.centered_clipping(x, m).point, lambda x, m: b.centered_clipping(x, m).point),
    ]
    for eager, traced in cases:
        host = np.asarray(eager(jnp.asarray(x), mask))
        xla = np.asarray(jax.jit(traced)(jnp.asarray(x), jnp.asarray(mask)))
        np.testing.assert_allclose(host, xla, rtol=1e-6, atol=1e-6)
        assert np.isfinite(host).all()
    kept = x[mask].astype(np.float64)
    np.testing.assert_allclose(np.asarray(b.closest_to_median_mean(jnp.asarray(x), mask, 5)),
                               ref_closest(kept, 5), rtol=1e-6, atol=1e-6)


def ref_closest(v, beta):
    out = np.empty(v.shape[1])
    for c in range(v.shape[1]):
        col = v[:, c]
        out[c] = col[np.argsort(np.abs(col - np.median(col)), kind="stable")[:beta]].mean()
    return out
