"""The default defence, ``screened_multikrum_nnm``: the direction screen in front of
``multikrum_nnm``, checked against a NumPy version of its definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qkrum
from qkrum.rules.selecting import alignment, flag_misaligned

from tests.test_rules import ref_multikrum_full, ref_nnm, round_updates


def ref_screened(x, valid, f, kappa=0.25):
    """The rule from its docstring: multikrum_nnm's aggregate as the reference, the f lowest
    cosines below kappa x their median screened, multikrum_nnm again on the others."""
    n = len(x)
    x64 = np.asarray(x, np.float64)
    first = ref_multikrum_full(x, valid, f, n - f)
    r = ref_nnm(x, valid, f)[first].mean(axis=0)
    cos = np.full(n, np.nan)
    for i in np.flatnonzero(valid):
        cos[i] = x64[i] @ r / (np.linalg.norm(x64[i]) * np.linalg.norm(r))
    threshold = kappa * max(np.median(cos[valid]), 0.0)
    below = [i for i in range(n) if cos[i] < threshold]
    flagged = np.zeros(n, bool)
    budget = max(0, min(f, int(valid.sum()) - (n - f)))  # invalid clients count against f
    flagged[sorted(below, key=lambda i: (cos[i], i))[:budget]] = True
    rest = valid & ~flagged
    selected = ref_multikrum_full(x, rest, f, n - f)
    return selected, ref_nnm(x, rest, f)[selected].mean(axis=0), flagged, cos


def test_default_is_the_screened_rule():
    assert qkrum.rules.DEFAULT == "screened_multikrum_nnm"
    assert qkrum.select(round_updates(), 3).rule == qkrum.rule("screened_multikrum_nnm")


@pytest.mark.parametrize("nan_row", [None, 7])
def test_matches_numpy_reference_when_attackers_point_away(nan_row):
    x = round_updates()  # the 3 attackers sit at -4, the honest clients at +1
    if nan_row is not None:
        x[nan_row] = np.nan
    valid = np.isfinite(x).all(axis=1)
    sel = qkrum.select(x, 3)
    want, agg, flagged, cos = ref_screened(x, valid, 3)
    if nan_row is None:
        assert flagged[:3].all() and flagged.sum() == 3
    else:  # the NaN client counts against f: two of the three are screened, never fewer than m left
        assert flagged.sum() == 2 and flagged[:3].sum() == 2 and sel.selected.sum() == 12
    assert sel.info["screened"] == list(np.flatnonzero(flagged))
    np.testing.assert_allclose(sel.info["alignment"], cos, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sel.selected, want)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), agg, rtol=1e-5, atol=1e-6)
    # The screened clients are nobody's neighbour: without them, the aggregate is the mean of
    # the honest clients' rows mixed over the honest clients only.
    if nan_row is None:
        np.testing.assert_allclose(agg, np.asarray(x[3:], np.float64).mean(axis=0), rtol=1e-5)


def test_equals_multikrum_nnm_when_nobody_points_away():
    rng = np.random.default_rng(1)
    x = (1.0 + 0.3 * rng.standard_normal((15, 40))).astype(np.float32)
    x[:3] = x[3:].mean(axis=0) - 0.5 * x[3:].std(axis=0)  # LIE: with the honest mean
    sel = qkrum.select(x, 3)
    plain = qkrum.select(x, 3, method="multikrum_nnm")
    assert sel.info["screened"] == [] and np.all(sel.info["alignment"] > 0)
    np.testing.assert_array_equal(sel.selected, plain.selected)
    np.testing.assert_array_equal(np.asarray(sel.aggregate(x)), np.asarray(plain.aggregate(x)))


def test_at_most_f_screened_the_most_negative_first():
    rng = np.random.default_rng(2)
    x = (1.0 + 0.3 * rng.standard_normal((15, 40))).astype(np.float32)
    for i, depth in enumerate([-0.5, -3.0, -1.0, -2.0, -0.2]):  # 5 rows point away, f = 3
        x[i] = depth + 0.3 * rng.standard_normal(40)  # the deeper, the more negative the cosine
    valid = np.ones(15, bool)
    sel = qkrum.select(x, 3)
    want, agg, flagged, cos = ref_screened(x, valid, 3)
    assert (cos[:5] < 0).all() and (cos[5:] > 0).all()
    assert sel.info["screened"] == [1, 2, 3] == list(np.flatnonzero(flagged))
    np.testing.assert_array_equal(sel.selected, want)
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), agg, rtol=1e-5, atol=1e-6)


def test_zero_rows_and_f_zero_screen_nobody():
    x = round_updates()
    x[:3] = 0.0  # no direction: IPM's limit as epsilon -> 0
    sel = qkrum.select(x, 3)
    assert sel.info["screened"] == [] and np.isnan(sel.info["alignment"][:3]).all()
    y = round_updates()
    assert qkrum.select(y, 0).info["screened"] == []
    assert qkrum.select(y, 0).selected.all()


def test_kappa_option():
    rng = np.random.default_rng(1)
    x = (1.0 + 0.3 * rng.standard_normal((15, 40))).astype(np.float32)
    x[0] = rng.permutation(x[0]) - 1.0  # mean-centred and shuffled: nearly orthogonal
    c = qkrum.select(x, 3).info["alignment"]
    ratio = c[0] / np.median(c)
    assert 0 < ratio < 0.25  # not negative: only the relative screen sees it
    assert qkrum.select(x, 3).info["screened"] == [0]
    assert qkrum.select(x, 3, method="screened_multikrum_nnm(kappa=0.0)").info["screened"] == []
    for bad, err in [(1.0, ValueError), (-0.1, ValueError), ("0", TypeError)]:
        with pytest.raises(err, match="kappa"):
            qkrum.rule("screened_multikrum_nnm", kappa=bad)


def test_identical_sign_flipped_rows_multikrum_keeps_the_screen_rejects():
    """At n = 40, f = 8, eight identical rows at -mu have small Krum scores (they are at
    distance 0 from each other): MultiKrum keeps them all and drops eight honest clients.
    The screen removes exactly them, and the aggregate is multikrum_nnm on the honest."""
    rng = np.random.default_rng(5)
    n, f, d = 40, 8, 200
    honest = (0.2 + rng.standard_normal((n - f, d))).astype(np.float32)
    x = np.concatenate([np.tile(-honest.mean(axis=0), (f, 1)), honest])
    plain = qkrum.select(x, f, method="multikrum_nnm")
    assert plain.selected[:f].all()
    sel = qkrum.select(x, f)
    assert sel.info["screened"] == list(range(f)) and np.array_equal(sel.rejected, np.arange(f))
    on_honest = qkrum.select(honest, 0, method="multikrum_nnm")
    np.testing.assert_allclose(np.asarray(sel.aggregate(x)), np.asarray(on_honest.aggregate(honest)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_the_aggregator_excludes_the_screened_clients_too(jit):
    x = round_updates()
    x[9] = np.nan
    key = jax.random.key(4)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    want = qkrum.select(x, 3, seed=seed)
    agg = qkrum.aggregator(3, num_clients=15)
    update = jax.jit(agg.update) if jit else agg.update
    got, state = update(jnp.asarray(x), agg.init(), key=key)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want.aggregate(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(state.selected), want.selected)
    assert len(want.info["screened"]) == 2 and set(want.info["screened"]) <= {0, 1, 2}  # the NaN row counts against f


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(-1, 1), st.just(float("nan")), st.sampled_from([-0.5, 0.0, 0.5])),
                min_size=1, max_size=12),
       st.integers(0, 12), st.sampled_from([0.0, 0.25, 0.9]))
def test_flag_misaligned_is_its_definition(cosines, f, kappa):
    c = np.array(cosines)
    f = min(f, len(c))
    flagged = flag_misaligned(c, f, kappa)
    finite = [v for v in cosines if v == v]
    threshold = kappa * max(sorted(finite)[len(finite) // 2] if len(finite) % 2 else
                            (sum(sorted(finite)[len(finite) // 2 - 1:len(finite) // 2 + 1]) / 2 if finite else 0.0), 0.0)
    below = [i for i in range(len(c)) if c[i] < threshold]  # NaN is never below
    want = sorted(below, key=lambda i: (c[i], i))[:f]
    assert list(np.flatnonzero(flagged)) == sorted(want)


def test_alignment_of_invalid_and_zero_rows_is_nan():
    x = np.array([[1.0, 0.0], [-2.0, 0.0], [0.0, 0.0], [np.nan, 1.0], [0.0, 3.0]], np.float32)
    valid = np.isfinite(x).all(axis=1)
    c = alignment(x, np.array([1.0, 0.0], np.float32), valid)
    np.testing.assert_allclose(c[[0, 1, 4]], [1.0, -1.0, 0.0])
    assert np.isnan(c[2]) and np.isnan(c[3])
    assert np.isnan(alignment(x, np.zeros(2, np.float32), valid)).all()
