"""The literature's attacks (IPM, min-max, min-sum, mimic), the adaptive ones (line searches
against a defence, MultiSignal's gate) and changing attackers (mixed, switching): each
checked on its defining property against an independent NumPy reference."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qkrum
from qkrum import attacks
from qkrum.attacks import (DIRECTIONS, aggregate_error, line_search, min_max_gamma, min_sum_gamma, perturbation)

KEY = jax.random.key(3)
_rng = np.random.default_rng(11)
# Heterogeneous honest rows: per-coordinate location and scale, a few clients further out.
H64 = _rng.normal(0.3, 1.0, 40) + _rng.uniform(0.5, 2.0, 40) * _rng.normal(size=(12, 40))
H64[:2] *= 1.8
H = jnp.asarray(H64, jnp.float32)
MU = H64.mean(axis=0)


def _f64(x):
    return np.asarray(x, np.float64)


# ----------------------------------------------------------------------------- literature

def test_ipm_is_minus_epsilon_times_the_honest_mean():
    out = _f64(attacks.apply("ipm", KEY, H, 3, epsilon=0.5))
    np.testing.assert_allclose(out, np.broadcast_to(-0.5 * MU, (3, 40)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_f64(attacks.ipm(KEY, H, 2)), np.broadcast_to(-0.1 * MU, (2, 40)), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="epsilon"):
        attacks.ipm(KEY, H, 2, epsilon=-1.0)


def _pairwise(x):
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def _feasible(kind, x, row):
    d = np.sqrt(((x - row) ** 2).sum(-1))
    if kind == "min_max":
        return d.max() <= _pairwise(x).max()
    return (d ** 2).sum() <= (_pairwise(x) ** 2).sum(1).max()


def _bisection(kind, x, p, gamma, tau=1e-12):
    """Shejwalkar & Houmansadr's Algorithm 1 (halving steps from gamma_init), in float64.
    Its steps add up to gamma_init / 2, so it searches (gamma_init / 2, 3 gamma_init / 2)."""
    mu = x.mean(axis=0)
    step, succ = gamma / 2, 0.0
    for _ in range(200):
        if abs(succ - gamma) <= tau:
            break
        if _feasible(kind, x, mu + gamma * p):
            succ = gamma
            gamma += step / 2
        else:
            gamma -= step / 2
        step /= 2
    return succ


@pytest.mark.parametrize("kind", ["min_max", "min_sum"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_min_max_min_sum_gamma_is_the_largest_feasible_one(kind, direction):
    p = perturbation(H64, direction)
    gamma = (min_max_gamma if kind == "min_max" else min_sum_gamma)(H64, p)
    assert gamma > 0
    assert _feasible(kind, H64, MU + gamma * (1 - 1e-9) * p)
    assert not _feasible(kind, H64, MU + gamma * (1 + 1e-6) * p)
    assert gamma == pytest.approx(_bisection(kind, H64, p, gamma=1.5 * gamma), rel=1e-8)
    rows = _f64(attacks.apply(kind, KEY, H, 4, direction=direction))
    np.testing.assert_allclose(rows, np.broadcast_to(MU + gamma * p, (4, 40)), rtol=1e-5, atol=1e-5)


def test_min_max_directions_are_the_papers():
    np.testing.assert_allclose(perturbation(H64, "unit"), -MU / np.linalg.norm(MU))
    np.testing.assert_allclose(perturbation(H64, "std"), -H64.std(axis=0))
    np.testing.assert_array_equal(perturbation(H64, "sign"), -np.sign(MU))
    with pytest.raises(ValueError, match="direction"):
        attacks.min_max(KEY, H, 2, direction="cosine")


def test_min_max_with_no_spread_returns_the_mean():
    same = np.tile(H64[:1], (5, 1))
    p = perturbation(same, "std")  # zero up to rounding (1e-16), so gamma itself is meaningless
    assert min_max_gamma(same, p) * np.linalg.norm(p) < 1e-6
    assert min_max_gamma(same, np.zeros(40)) == 0.0
    np.testing.assert_allclose(_f64(attacks.min_sum(KEY, jnp.asarray(same), 2)), np.tile(H64[:1], (2, 1)),
                               rtol=1e-6)


def test_mimic_copies_the_row_furthest_along_the_top_principal_direction():
    centred = H64 - MU
    z = np.linalg.svd(centred, full_matrices=False)[2][0]  # top right singular vector = top PC
    expected = int(np.argmax(np.abs(centred @ z)))
    assert attacks.mimic_target(H64) == expected
    np.testing.assert_array_equal(_f64(attacks.mimic(KEY, H, 3)), np.tile(_f64(H[expected]), (3, 1)))
    np.testing.assert_array_equal(_f64(attacks.mimic(KEY, H, 2, target=5)), np.tile(_f64(H[5]), (2, 1)))
    with pytest.raises(ValueError, match="target"):
        attacks.mimic(KEY, H, 2, target=12)


# ----------------------------------------------------------------------------- line search

def test_line_search_is_never_worse_than_a_grid_point_and_refines_a_peak():
    def bumpy(v):
        return math.sin(3 * v) + 0.1 * v
    found = line_search(bumpy, 0.0, 10.0, points=16, refine=8)
    grid = np.linspace(0.0, 10.0, 16)
    assert found.objective >= max(bumpy(v) for v in grid)
    assert len(found.evaluated) == 16 + 8
    smooth = line_search(lambda v: -(v - 3.3) ** 2, 0.0, 10.0, points=11, refine=20)
    assert smooth.value == pytest.approx(3.3, abs=1e-3)
    # Non-finite objectives never win.
    assert line_search(lambda v: math.nan if v > 1 else v, 0.0, 4.0, points=5, refine=0).value == 1.0


def _error_against(rule, byz):
    x = jnp.concatenate([H, jnp.asarray(byz, H.dtype)])
    sel = qkrum.select(x, byz.shape[0], method=rule)
    return aggregate_error(sel.aggregate(x), H)


@pytest.mark.parametrize("defence", ["multikrum", "median"])
def test_optimal_lie_beats_every_grid_point_and_baruchs_z(defence):
    f = 3
    best = attacks.apply("optimal_lie", KEY, H, f, defence=defence, points=6, refine=4)
    ours = _error_against(defence, best)
    for z in np.linspace(0.0, 10.0, 6):
        assert ours >= _error_against(defence, attacks.lie(KEY, H, f, z_max=float(z))) - 1e-9
    assert ours >= _error_against(defence, attacks.lie(KEY, H, f)) - 1e-9


def test_optimal_ipm_against_the_mean_takes_the_largest_epsilon():
    # Against the plain mean the error is (f / n) (1 + eps) ||mu||: the search must end at eps = 10.
    f, n = 3, 15
    rows = attacks.optimal_ipm(KEY, H, f, defence="mean", points=5, refine=3)
    np.testing.assert_allclose(_f64(rows), np.broadcast_to(-10.0 * MU, (f, 40)), rtol=1e-5, atol=1e-5)
    agg = np.concatenate([H64, _f64(rows)]).mean(axis=0)
    assert aggregate_error(agg, H) == pytest.approx(f / n * 11.0 * np.linalg.norm(MU), rel=1e-5)


def test_a_callable_defence_is_used_as_given():
    calls = []

    def defence(byz):
        calls.append(np.asarray(byz))
        return jnp.mean(jnp.concatenate([H, byz]), axis=0), {"regime": None}
    rows = attacks.optimal(KEY, H, 2, defence=defence, attack="scaling", parameter="factor", low=-2.0, high=2.0,
                           points=5, refine=0, options={"noise_std": 0.0})
    assert len(calls) == 5
    np.testing.assert_allclose(_f64(rows), np.broadcast_to(-2.0 * MU, (2, 40)), rtol=1e-5, atol=1e-5)


def test_adaptive_attacks_need_a_defence():
    for name in attacks.ADAPTIVE:
        with pytest.raises(TypeError, match="defence="):
            attacks.apply(name, KEY, H, 2)
    with pytest.raises(ValueError, match="non-adaptive"):
        attacks.optimal(KEY, H, 2, defence="mean", attack="optimal_lie")


def test_gate_aware_is_at_least_optimal_lie_and_lands_in_the_regime_it_aims_at():
    f = 3
    kwargs = dict(points=6, refine=3)
    lie_rows = attacks.optimal_lie(KEY, H, f, defence="multisignal", **kwargs)
    choice, rows = attacks.gate_aware_search(H, f, defence="multisignal", **kwargs)
    assert choice.error >= _error_against("multisignal", lie_rows) - 1e-9
    assert choice.error == pytest.approx(_error_against("multisignal", rows), rel=1e-9)
    reached = {}
    for regime in ("magnitude", "evasion"):
        aimed, rows = attacks.gate_aware_search(H, f, defence="multisignal", regime=regime, **kwargs)
        if math.isfinite(aimed.error):
            x = jnp.concatenate([H, rows])
            assert qkrum.select(x, f, method="multisignal").info["regime"] == regime
            reached[regime] = aimed.error
            assert aimed.error <= choice.error + 1e-9  # the unconstrained search saw these candidates too
    assert reached, "the gate search reached none of the regimes it aimed at"


# ----------------------------------------------------------------------------- changing attackers

def test_mixed_splits_the_attackers_into_groups_each_with_its_own_attack():
    own = jnp.asarray(_rng.normal(size=(7, 40)), jnp.float32)
    out = attacks.mixed(KEY, H, 7, attacks=["ipm(epsilon=2)", "alie", ("gaussian", {"std": 0.5}), "quiet"], own=own)
    assert out.shape == (7, 40)
    # np.array_split(range(7), 4): sizes 2, 2, 2, 1.
    np.testing.assert_allclose(_f64(out[:2]), np.broadcast_to(-2.0 * MU, (2, 40)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[2:4], attacks.alie(jax.random.fold_in(KEY, 1), H, 2))
    np.testing.assert_array_equal(out[4:6], attacks.gaussian(jax.random.fold_in(KEY, 2), H, 2, std=0.5))
    np.testing.assert_array_equal(out[6:], own[6:])
    with pytest.raises(ValueError, match="at most one adaptive"):
        attacks.mixed(KEY, H, 4, attacks=["optimal_lie", "optimal_ipm"], defence="mean")
    with pytest.raises(ValueError, match="unknown attack"):
        attacks.mixed(KEY, H, 4, attacks=["alie", "nope"])


def test_an_adaptive_member_of_a_mixed_population_sees_the_other_groups():
    seen = []

    def defence(byz):
        seen.append(np.asarray(byz))
        return jnp.mean(jnp.concatenate([H, byz]), axis=0)
    out = attacks.mixed(KEY, H, 4, attacks=["ipm(epsilon=1)", "optimal_lie(points=3, refine=0)"], defence=defence)
    assert len(seen) == 3 and all(s.shape == (4, 40) for s in seen)
    for s in seen:  # the IPM group is in place while the LIE group searches
        np.testing.assert_array_equal(s[:2], np.asarray(out[:2]))


def test_switching_follows_its_schedule_by_round():
    schedule = ["ipm(epsilon=1)", "quiet", "alie"]
    for t in range(7):
        out = attacks.switching(KEY, H, 2, schedule=schedule, period=2, round=t)
        name, options = attacks.schedule.parse_member(schedule[(t // 2) % 3])
        if name == "quiet":
            picks = jax.random.randint(KEY, (2,), 0, H.shape[0])
            np.testing.assert_array_equal(out, H[picks])
        else:
            np.testing.assert_array_equal(out, attacks.apply(name, KEY, H, 2, **options))


def test_attack_specs_resolve_and_context_is_declared():
    from qkrum.fl.simulation import resolve_attack

    assert resolve_attack("ipm(epsilon=0.5)") == ("ipm", {"epsilon": 0.5})
    assert resolve_attack("ipm(epsilon=0.5)", {"epsilon": 2.0}) == ("ipm", {"epsilon": 2.0})
    with pytest.raises(ValueError, match="unknown attack"):
        resolve_attack("nope(x=1)")
    assert attacks.context_parameters("optimal_lie") == {"defence"}
    assert attacks.context_parameters("switching") == {"defence", "round", "own"}
    assert attacks.context_parameters("alie") == frozenset()
    assert set(attacks.ADAPTIVE) | set(attacks.AGNOSTIC) == set(attacks.ATTACKS)


def test_the_loop_gives_the_attack_the_server_at_the_byzantine_positions():
    from qkrum.fl.simulation import _attack_context, selection_aggregator

    server = selection_aggregator("multikrum")
    x = jnp.asarray(_rng.normal(size=(8, 40)), jnp.float32)
    byz_idx = np.array([1, 5])
    key = jax.random.key(9)
    ctx = _attack_context("switching", {}, aggregator=server, updates=x, byz_idx=byz_idx, f=2, key=key, round=4)
    assert ctx["round"] == 4
    np.testing.assert_array_equal(ctx["own"], x[byz_idx])
    crafted = jnp.full((2, 40), 50.0)
    agg, info = ctx["defence"](crafted)
    expected, _ = server(x.at[byz_idx].set(crafted), 2, key)
    np.testing.assert_array_equal(agg, expected)
    assert not info["selected"][byz_idx].any()  # the far rows at their real positions are rejected
    assert _attack_context("optimal_lie", {"defence": "mean"}, aggregator=server, updates=x, byz_idx=byz_idx, f=2,
                           key=key, round=1) == {}


def test_simulate_refuses_an_adaptive_attack_on_a_server_it_cannot_run():
    from qkrum.fl import simulate

    def custom(updates, f, key):
        return jnp.mean(updates, axis=0), {}
    with pytest.raises(TypeError, match="custom aggregator"):
        simulate("digits", clients=6, byzantine=1, attack="optimal_lie", aggregator=custom, rounds=1)


def test_sign_flip_own_negates_each_attackers_own_update():
    own = jnp.asarray(_rng.normal(size=(3, 40)), jnp.float32)
    np.testing.assert_allclose(_f64(attacks.sign_flip_own(KEY, H, 3, own=own, scale=2.0)), -2.0 * _f64(own),
                               rtol=1e-6)
    with pytest.raises(TypeError, match="own="):
        attacks.sign_flip_own(KEY, H, 3)
    with pytest.raises(ValueError, match="shape"):
        attacks.sign_flip_own(KEY, H, 2, own=own)
