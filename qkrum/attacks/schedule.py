"""Attackers that change: mixed populations (the ``f`` Byzantine clients use different
attacks in one round) and time-varying ones (switching attack, or going quiet, by round).

Members are attack specs, parsed as rule specs are: ``"ipm(epsilon=0.5)"``, ``"alie"``,
``"optimal_lie"``; ``"quiet"`` is a Byzantine client that behaves honestly. Context that
the loop gives an attack (``defence``, ``round``, ``own``; see :mod:`qkrum.attacks`) is
passed on to the members that take it.

* ``mixed(attacks=(...))``: the ``f`` attackers are split into ``len(attacks)`` contiguous
  groups, sizes as ``numpy.array_split`` (the first groups one larger); group ``j`` draws
  from ``fold_in(key, j)``. An adaptive member searches with the other groups' rows in
  place (so at most one member may be adaptive: two would each need the other's choice).
* ``switching(schedule=(...), period=1)``: round ``t`` uses
  ``schedule[(t // period) % len(schedule)]`` (``round`` is the FL loop's 1-based round).
* ``"quiet"`` rows are the attackers' own honestly trained updates (``own``, which
  :func:`qkrum.fl.simulate` passes); without ``own`` they are copies of uniformly drawn
  honest rows.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._validation import check_int
from qkrum.attacks.adaptive import as_defence
from qkrum.attacks.table1 import _empty, _prepare

__all__ = ["QUIET", "mixed", "parse_member", "switching"]

#: The member name of a Byzantine client that behaves honestly this round.
QUIET = "quiet"


def parse_member(spec: Any) -> tuple[str, dict]:
    """``"ipm(epsilon=0.5)"`` → ``("ipm", {"epsilon": 0.5})``; a ``(name, options)`` pair
    is accepted as is. The name must be registered (or ``"quiet"``)."""
    from qkrum.attacks import ATTACKS, parse_attack

    if spec == QUIET:
        return QUIET, {}
    name, options = parse_attack(spec)
    if name in _COMPOSITE:
        raise ValueError(f"attack member {name!r} cannot be nested; valid members: {QUIET!r} and "
                         f"{', '.join(sorted(set(ATTACKS) - set(_COMPOSITE)))}")
    return name, options


def _members(name: str, specs: Any) -> list[tuple[str, dict]]:
    if isinstance(specs, str) or not isinstance(specs, Sequence) or len(specs) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of attack specs, got {name}={specs!r}")
    return [parse_member(s) for s in specs]


def _quiet(key: jax.Array, x: jax.Array, count: int, own: Any, start: int) -> jax.Array:
    if own is not None:
        rows = jnp.asarray(own, x.dtype)
        if rows.ndim != 2 or rows.shape[1] != x.shape[1] or rows.shape[0] < start + count:
            raise ValueError(f"own must hold the attackers' own updates, shape (f, {x.shape[1]}), "
                             f"got {tuple(rows.shape)}")
        return rows[start:start + count]
    picks = jax.random.randint(key, (count,), 0, x.shape[0])
    return x[picks]


def _run_member(member: tuple[str, dict], key: jax.Array, x: jax.Array, count: int, context: dict,
                start: int) -> jax.Array:
    from qkrum.attacks import ATTACKS, context_parameters

    name, options = member
    if name == QUIET:
        return _quiet(key, x, count, context.get("own"), start)
    wanted = {k: v for k, v in context.items() if k in context_parameters(name) and k not in options}
    return ATTACKS[name](key, x, count, **options, **wanted)


def _is_adaptive(member: tuple[str, dict]) -> bool:
    from qkrum.attacks import ADAPTIVE

    return member[0] in ADAPTIVE


def mixed(key: Any, honest: Any, f: int, *, attacks: Sequence[Any] = ("alie", "ipm", "gaussian"),
          defence: Any = None, round: int = 0, own: Any = None) -> jax.Array:
    """The ``f`` attackers split into groups, one attack each (module docstring)."""
    key, x, f = _prepare(key, honest, f)
    members = _members("attacks", attacks)
    if sum(_is_adaptive(m) for m in members) > 1:
        raise ValueError(f"at most one adaptive attack in a mixed population, got attacks={list(attacks)!r}")
    if f == 0:
        return _empty(x)
    sizes = [len(a) for a in np.array_split(np.arange(f), len(members))]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    rows: list[jax.Array | None] = [None] * len(members)
    context = {"round": round, "own": own}
    order = sorted(range(len(members)), key=lambda j: _is_adaptive(members[j]))  # adaptive last
    for j in order:
        if sizes[j] == 0:
            rows[j] = _empty(x)
            continue
        ctx = dict(context)
        if _is_adaptive(members[j]) and defence is not None:
            full = as_defence(defence, x, f)
            before, after = rows[:j], rows[j + 1:]  # the other groups, crafted already
            ctx["defence"] = lambda group, before=before, after=after: full(
                jnp.concatenate([*before, group, *after]))
        rows[j] = _run_member(members[j], jax.random.fold_in(key, j), x, sizes[j], ctx, int(starts[j]))
    return jnp.concatenate(rows).astype(x.dtype)


def switching(key: Any, honest: Any, f: int, *, schedule: Sequence[Any] = ("alie", QUIET), period: int = 1,
              defence: Any = None, round: int = 0, own: Any = None) -> jax.Array:
    """This round's attack from ``schedule`` (module docstring); ``"quiet"`` rounds behave honestly."""
    key, x, f = _prepare(key, honest, f)
    members = _members("schedule", schedule)
    period = check_int("period", period, minimum=1)
    round = check_int("round", round, minimum=0)
    if f == 0:
        return _empty(x)
    member = members[(round // period) % len(members)]
    return _run_member(member, key, x, f, {"defence": defence, "round": round, "own": own}, 0)


#: Attacks of this module: not members of one another.
_COMPOSITE = ("mixed", "switching")
