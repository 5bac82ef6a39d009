"""Byzantine attacks: pure functions ``attack(key, honest, f, **params) -> (f, d)``.

Every attack sees the round's honest updates ``honest`` ``(n_h, d)`` (or a pytree with a
leading client axis) and crafts ``f`` Byzantine updates in their dtype; ``key`` is a JAX
PRNG key (the same key always gives the same rows). By registry name:
``apply(name, key, honest, f, **params)``.

=====================  ===========================================================
module                 attacks
=====================  ===========================================================
:mod:`.table1`         the paper's Table I: gaussian, sign_flip, scaling, targeted,
                       clustered, same_value, lie, blatant_lie, alie, sparse_lie,
                       shuffle, stealthy (label flip is data poisoning, in
                       :mod:`qkrum.fl`)
:mod:`.literature`     ipm, min_max, min_sum, mimic, sign_flip_own (defence-agnostic)
:mod:`.adaptive`       optimal, optimal_lie, optimal_ipm, gate_aware (tuned against
                       the defence)
:mod:`.schedule`       mixed (several attacks in one round), switching (by round,
                       or going quiet)
=====================  ===========================================================

Context. Some attacks need more than the honest rows: keyword parameters named in
:data:`CONTEXT` are filled by the FL loop (:func:`qkrum.fl.simulate`) when the attack
declares them and the user did not set them:

* ``defence``: the server's defence, as a callable ``byzantine (f, d) -> (aggregate,
  info)`` that places the rows at the Byzantine clients' positions and runs the round's
  server step (:mod:`.adaptive`);
* ``round``: the 1-based round number (:func:`.schedule.switching`);
* ``own``: the Byzantine clients' own honestly trained updates ``(f, d)`` (the rows a
  ``"quiet"`` attacker sends, and what ``sign_flip_own`` negates).

:func:`context_parameters` says which an attack takes.
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Callable

import jax

from qkrum.attacks import adaptive as _adaptive
from qkrum.attacks.adaptive import (LineSearch, aggregate_error, as_defence, gate_aware, gate_aware_search,
                                    line_search, optimal, optimal_ipm, optimal_lie)
from qkrum.attacks.literature import (DIRECTIONS, ipm, mimic, mimic_target, min_max, min_max_gamma, min_sum,
                                      min_sum_gamma, perturbation, sign_flip_own)
from qkrum.attacks.schedule import QUIET, mixed, switching
from qkrum.attacks.table1 import (LIE_Z_MAX_VALUES, alie, baruch_z_max, blatant_lie, clustered, gaussian, lie,
                                  same_value, scaling, shuffle, sign_flip, sparse_lie, stealthy, targeted)

__all__ = [
    "ADAPTIVE", "AGNOSTIC", "ATTACKS", "CONTEXT", "DIRECTIONS", "LIE_Z_MAX_VALUES", "LineSearch", "QUIET", "TABLE_I",
    "aggregate_error", "alie", "apply", "as_defence", "baruch_z_max", "blatant_lie", "clustered",
    "context_parameters", "parse_attack", "gate_aware", "gate_aware_search", "gaussian", "ipm", "lie", "line_search", "mimic",
    "mimic_target", "min_max", "min_max_gamma", "min_sum", "min_sum_gamma", "mixed", "optimal", "optimal_ipm",
    "optimal_lie", "perturbation", "same_value", "scaling", "shuffle", "sign_flip", "sign_flip_own", "sparse_lie", "stealthy",
    "switching", "targeted",
]

#: The parameters an attack may take from the FL loop instead of from its user.
CONTEXT: tuple[str, ...] = ("defence", "round", "own")

ATTACKS: types.MappingProxyType[str, Callable[..., jax.Array]] = types.MappingProxyType({
    # Table I
    "gaussian": gaussian,
    "sign_flip": sign_flip,
    "scaling": scaling,
    "targeted": targeted,
    "clustered": clustered,
    "same_value": same_value,
    "lie": lie,
    "blatant_lie": blatant_lie,
    "alie": alie,
    "sparse_lie": sparse_lie,
    "shuffle": shuffle,
    "stealthy": stealthy,
    # the literature
    "ipm": ipm,
    "min_max": min_max,
    "min_sum": min_sum,
    "mimic": mimic,
    "sign_flip_own": sign_flip_own,
    # adaptive
    "optimal": optimal,
    "optimal_lie": optimal_lie,
    "optimal_ipm": optimal_ipm,
    "gate_aware": gate_aware,
    # changing attackers
    "mixed": mixed,
    "switching": switching,
})

#: The paper's Table I attacks (gradient space), in its order.
TABLE_I: tuple[str, ...] = ("gaussian", "sign_flip", "scaling", "targeted", "clustered", "same_value", "lie",
                            "blatant_lie", "alie", "sparse_lie", "shuffle", "stealthy")

_PARAMS: dict[str, tuple[str, ...]] = {
    name: tuple(
        p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    )
    for name, fn in ATTACKS.items()
}

#: Attacks tuned against the server's defence (:mod:`.adaptive`). ``mixed`` and ``switching``
#: take ``defence`` too, to hand it to such members.
ADAPTIVE: tuple[str, ...] = _adaptive._ADAPTIVE

#: Attacks that need no ``defence`` (every one but :data:`ADAPTIVE`).
AGNOSTIC: tuple[str, ...] = tuple(name for name in ATTACKS if name not in ADAPTIVE)


def context_parameters(name: str) -> frozenset[str]:
    """The :data:`CONTEXT` parameters attack ``name`` takes."""
    if name not in _PARAMS:
        raise ValueError(f"unknown attack name={name!r}; valid names are {sorted(ATTACKS)}")
    return frozenset(p for p in _PARAMS[name] if p in CONTEXT)


def parse_attack(spec: Any) -> tuple[str, dict]:
    """``"ipm(epsilon=0.5)"`` → ``("ipm", {"epsilon": 0.5})`` (a registered name, options
    as in rule specs); a ``(name, options)`` pair is accepted as is."""
    from qkrum.rules.base import parse_spec

    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        name, options = spec[0], dict(spec[1] or {})
    else:
        parts = parse_spec(spec, what="attack")
        if len(parts) != 1:
            raise ValueError(f"an attack spec names one attack, got attack={spec!r}")
        name, options = parts[0]
    if name not in ATTACKS:
        raise ValueError(f"unknown attack name={name!r} in attack={spec!r}")
    return name, options


def apply(name: str, key: Any, honest: Any, f: int, **params: Any) -> jax.Array:
    """Craft ``f`` Byzantine updates with the attack registered as ``name``; shape ``(f, d)``.

    ``honest`` is an ``(n_h, d)`` array or a pytree with a leading client axis (flattened
    as by ``as_client_matrix``); ``params`` override the attack's defaults.
    """
    if not isinstance(name, str) or name not in ATTACKS:
        raise ValueError(f"unknown attack name={name!r}; valid names are {sorted(ATTACKS)}")
    unknown = sorted(set(params) - set(_PARAMS[name]))
    if unknown:
        valid = ", ".join(_PARAMS[name]) if _PARAMS[name] else "none"
        raise TypeError(
            f"attack {name!r} got unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"valid parameters for {name!r}: {valid}"
        )
    return ATTACKS[name](key, honest, f, **params)
