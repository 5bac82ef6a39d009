"""Adaptive attacks: an adversary that knows the defence and tunes its updates against it.

A *defence* is what the server does with a round. Attacks here take it as ``defence=``:

* a rule (name, chain spec such as ``"nnm,trimmed_mean"``, or :class:`qkrum.Rule`): the
  attacker evaluates ``qkrum.select(x, f, method=defence, seed=seed).aggregate(x)`` on
  ``x`` = the honest rows followed by the Byzantine ones (the rule's defaults, so its
  projection too);
* a callable ``defence(byzantine) -> aggregate`` or ``-> (aggregate, info)``: the caller
  places the ``(f, d)`` Byzantine rows in the round and runs its server. This is what
  :func:`qkrum.fl.simulate` passes (the real Byzantine positions, the round's server key):
  the fully informed attacker of the adaptive-attack literature.

The objective is the aggregate's distance to the honest mean, ``||agg - mu||`` (ByzFL's
``Optimal_*`` attacks maximise the same). The search is deterministic: a grid of
``points`` values over ``[low, high]`` (both ends included), then ``refine`` more
evaluations, golden-section steps in the grid cells on either side of the best point; the best value *evaluated* wins,
so the result is never worse than any grid point (ties: the first evaluated).

==============  ===================================================  ===================
name            what is searched                                     reference
==============  ===================================================  ===================
optimal         any registered attack's scalar ``parameter`` over    ByzFL's line
                ``[low, high]``                                      maximisation
optimal_lie     LIE's ``z`` in ``mu - z sigma``, ``z`` in [0, 10]    ``Optimal_ALIE``
optimal_ipm     IPM's ``epsilon`` in ``-epsilon mu``, in [0, 10]     ``Optimal_IPM``
gate_aware      MultiSignal's gate (below)                           ours
==============  ===================================================  ===================

``gate_aware`` reads the gate of a routing defence (MultiSignal, whose ``info`` names the
round's ``regime``): ``k`` of the ``f`` attackers are decoys at ``mu + D sigma``, which move
the Euclidean and cosine Krum-score gaps across ``tau_E`` / ``tau_C``, and the other
``f - k`` are LIE rows ``mu - z sigma`` with ``z`` line-searched. Every ``(k, D)`` in
``decoys`` × ``decoy_z`` is searched; with ``regime=`` only rounds the defence routes to
that regime count (the attacker aims at the method that regime runs), otherwise any. With
``k = 0`` the search is ``optimal_lie``'s, so ``gate_aware`` is never weaker than it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._validation import check_int
from qkrum.attacks.table1 import _check_range, _empty, _honest_matrix, _prepare
from qkrum.ensemble import REGIMES

__all__ = ["LineSearch", "as_defence", "aggregate_error", "gate_aware", "gate_aware_search", "line_search",
           "optimal", "optimal_ipm", "optimal_lie"]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0

Evaluate = Callable[[jax.Array], tuple[np.ndarray, dict]]


class LineSearch(NamedTuple):
    """A line search's outcome: the best ``value`` of the parameter, its ``objective``, and
    every ``(value, objective)`` evaluated, in order."""

    value: float
    objective: float
    evaluated: tuple[tuple[float, float], ...]


def line_search(objective: Callable[[float], float], low: float, high: float, *, points: int = 16,
                refine: int = 8) -> LineSearch:
    """Maximise ``objective`` over ``[low, high]``: a grid of ``points``, then ``refine``
    golden-section evaluations around the best grid point (module docstring)."""
    points = check_int("points", points, minimum=1)
    refine = check_int("refine", refine, minimum=0)
    evaluated: list[tuple[float, float]] = []

    def ev(v: float) -> float:
        out = float(objective(float(v)))
        evaluated.append((float(v), out if math.isfinite(out) else -math.inf))
        return evaluated[-1][1]

    grid = np.linspace(low, high, points) if points > 1 else np.array([low])
    values = [ev(v) for v in grid]
    b = int(np.argmax(values))
    if refine and points > 1:
        a, c = grid[max(b - 1, 0)], grid[min(b + 1, points - 1)]
        x1, x2 = c - _GOLDEN * (c - a), a + _GOLDEN * (c - a)
        f1 = ev(x1)
        f2 = ev(x2) if refine > 1 else -math.inf
        for _ in range(refine - 2):
            if f1 >= f2:
                c, x2, f2 = x2, x1, f1
                x1 = c - _GOLDEN * (c - a)
                f1 = ev(x1)
            else:
                a, x1, f1 = x1, x2, f2
                x2 = a + _GOLDEN * (c - a)
                f2 = ev(x2)
    best = max(range(len(evaluated)), key=lambda i: (evaluated[i][1], -i))
    return LineSearch(evaluated[best][0], evaluated[best][1], tuple(evaluated))


def as_defence(defence: Any, honest: jax.Array, f: int, *, seed: int = 0) -> Evaluate:
    """``defence`` (module docstring) as ``byzantine (f, d) -> (aggregate (d,), info)``."""
    from qkrum.rules.base import PreAggregator, Rule, as_rule
    from qkrum.selection import select

    if defence is None:
        raise TypeError("this attack needs defence=: a rule name, a chain spec, a qkrum.Rule, or a callable "
                        "byzantine -> aggregate; qkrum.fl.simulate passes the server's own defence")
    if callable(defence) and not isinstance(defence, (Rule, PreAggregator)):
        def call(byz: jax.Array) -> tuple[np.ndarray, dict]:
            out = defence(byz)
            agg, info = out if isinstance(out, tuple) else (out, {})
            return np.asarray(jax.device_get(agg), np.float64).reshape(-1), dict(info or {})
        return call
    rule = as_rule(defence)

    def run(byz: jax.Array) -> tuple[np.ndarray, dict]:
        x = jnp.concatenate([honest, jnp.asarray(byz, honest.dtype)])
        sel = select(x, f, method=rule, seed=seed)
        return np.asarray(jax.device_get(sel.aggregate(x)), np.float64), dict(sel.info)
    return run


def _honest_mean(x: jax.Array) -> np.ndarray:
    return np.asarray(jax.device_get(x), np.float64).mean(axis=0)


def _distance(aggregate: Any, mu: np.ndarray) -> float:
    """The objective: ``||aggregate - mu||`` in float64, ``inf`` for a non-finite aggregate."""
    agg = np.asarray(jax.device_get(aggregate), np.float64).reshape(-1)
    return float(np.linalg.norm(agg - mu)) if np.all(np.isfinite(agg)) else math.inf


def aggregate_error(aggregate: Any, honest: Any) -> float:
    """``||aggregate - mu||``, ``mu`` the honest mean (float64; ``inf`` if not finite)."""
    return _distance(aggregate, _honest_mean(_honest_matrix(honest)))


def _base_attack(name: str):
    from qkrum.attacks import ATTACKS

    if name not in ATTACKS or name in _ADAPTIVE:
        raise ValueError(f"attack must be a non-adaptive registered attack, got attack={name!r}")
    return ATTACKS[name]


def optimal(key: Any, honest: Any, f: int, *, defence: Any = None, attack: str = "lie",
            parameter: str = "z_max", low: float = 0.0, high: float = 10.0, points: int = 16,
            refine: int = 8, options: dict | None = None, seed: int = 0) -> jax.Array:
    """``attack`` (with ``options``) at the ``parameter`` value in ``[low, high]`` that
    maximises ``||defence(x) - mu||`` (module docstring)."""
    key, x, f = _prepare(key, honest, f)
    base = _base_attack(attack)
    low, high = _check_range("(low, high)", (low, high))
    options = dict(options or {})
    if f == 0:
        return _empty(x)
    evaluate = as_defence(defence, x, f, seed=seed)
    mu = _honest_mean(x)

    def craft(v: float) -> jax.Array:
        return base(key, x, f, **options, **{parameter: v})

    def objective(v: float) -> float:
        return _distance(evaluate(craft(v))[0], mu)

    return craft(line_search(objective, low, high, points=points, refine=refine).value)


def optimal_lie(key: Any, honest: Any, f: int, *, defence: Any = None, z_range: tuple[float, float] = (0.0, 10.0),
                points: int = 16, refine: int = 8, seed: int = 0) -> jax.Array:
    """LIE (``mu - z sigma``) with ``z`` in ``z_range`` chosen against ``defence``."""
    low, high = _check_range("z_range", z_range)
    return optimal(key, honest, f, defence=defence, attack="lie", parameter="z_max", low=low, high=high,
                   points=points, refine=refine, seed=seed)


def optimal_ipm(key: Any, honest: Any, f: int, *, defence: Any = None,
                epsilon_range: tuple[float, float] = (0.0, 10.0), points: int = 16, refine: int = 8,
                seed: int = 0) -> jax.Array:
    """IPM (``-epsilon mu``) with ``epsilon`` in ``epsilon_range`` chosen against ``defence``."""
    low, high = _check_range("epsilon_range", epsilon_range, minimum=0.0)
    return optimal(key, honest, f, defence=defence, attack="ipm", parameter="epsilon", low=low, high=high,
                   points=points, refine=refine, seed=seed)


class GateSearch(NamedTuple):
    """``gate_aware``'s choice: ``decoys`` (k), ``decoy_z`` (D), ``z``, the round's
    ``regime`` and ``error`` (``-inf``: no candidate reached the asked regime)."""

    decoys: int
    decoy_z: float
    z: float
    regime: str | None
    error: float


def _gate_rows(x: jax.Array, f: int, k: int, decoy_z: float, z: float) -> jax.Array:
    mu = jnp.mean(x, axis=0)
    sigma = jnp.std(x, axis=0)
    rows = [jnp.broadcast_to(mu + decoy_z * sigma, (k, x.shape[1])),
            jnp.broadcast_to(mu - z * sigma, (f - k, x.shape[1]))]
    return jnp.concatenate(rows).astype(x.dtype)


def gate_aware_search(honest: Any, f: int, *, defence: Any = None, regime: str | None = None,
                      decoys: Sequence[int] | None = None, decoy_z: Sequence[float] = (3.0, 10.0),
                      z_range: tuple[float, float] = (0.0, 10.0), points: int = 8, refine: int = 4,
                      seed: int = 0) -> tuple[GateSearch, jax.Array]:
    """The search behind :func:`gate_aware`: its choice and the crafted ``(f, d)`` rows."""
    x = _honest_matrix(honest)
    f = check_int("f", f, minimum=1)
    if regime is not None and regime not in REGIMES:
        raise ValueError(f"regime must be None or one of {REGIMES}, got regime={regime!r}")
    ks = sorted({0, 1, f // 2, f - 1} if decoys is None else {check_int("decoys", k, minimum=0, maximum=f - 1)
                                                                for k in decoys})
    zs = [float(v) for v in decoy_z]
    low, high = _check_range("z_range", z_range)
    evaluate = as_defence(defence, x, f, seed=seed)
    mu = _honest_mean(x)
    best = GateSearch(0, 0.0, low, None, -math.inf)
    for k in ks:
        for dz in (zs if k else zs[:1]):
            seen: dict[float, str | None] = {}

            def objective(z: float) -> float:
                agg, info = evaluate(_gate_rows(x, f, k, dz, z))
                seen[z] = info.get("regime")
                if regime is not None and seen[z] != regime:
                    return -math.inf
                return _distance(agg, mu)

            found = line_search(objective, low, high, points=points, refine=refine)
            if found.objective > best.error:
                best = GateSearch(k, dz if k else 0.0, found.value, seen.get(found.value), found.objective)
    return best, _gate_rows(x, f, best.decoys, best.decoy_z, best.z)


def gate_aware(key: Any, honest: Any, f: int, *, defence: Any = None, regime: str | None = None,
               decoys: Sequence[int] | None = None, decoy_z: Sequence[float] = (3.0, 10.0),
               z_range: tuple[float, float] = (0.0, 10.0), points: int = 8, refine: int = 4,
               seed: int = 0) -> jax.Array:
    """Decoys that move a routing defence's gate plus line-searched LIE rows (module
    docstring). ``decoys=None`` tries ``k`` in ``{0, 1, f // 2, f - 1}``."""
    key, x, f = _prepare(key, honest, f)
    if f == 0:
        return _empty(x)
    return gate_aware_search(x, f, defence=defence, regime=regime, decoys=decoys, decoy_z=decoy_z,
                             z_range=z_range, points=points, refine=refine, seed=seed)[1]


#: The attacks of this module (each needs ``defence=``).
_ADAPTIVE = ("optimal", "optimal_lie", "optimal_ipm", "gate_aware")
