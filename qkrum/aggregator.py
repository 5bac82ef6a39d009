"""An optax-style robust aggregator, so qkrum drops into any JAX training loop.

``agg = qkrum.aggregator(f, method="multisignal")`` returns a NamedTuple of two pure
functions, ``agg.init(params) -> state`` and
``agg.update(client_updates, state, params=None, *, key=None) -> (aggregate, state)``,
where ``client_updates`` is a pytree whose leaves carry a leading client axis ``n`` and
``aggregate`` has the structure of one client's update. Both work under ``jax.jit``.

How it runs under ``jit``: the selection (distances, Krum scores, the annealer) is a host
computation, called through :func:`jax.pure_callback` with a fixed-shape result, the
``(n,)`` boolean mask of :attr:`qkrum.Selection.selected`. Everything else (flattening,
the masked mean, the baselines' robust statistics) is traced JAX. Rejected rows are
removed with ``where``, so a NaN sent by a Byzantine client cannot reach the aggregate.

The aggregate is the mean of the selected updates (Eq. 12, without ``η``). A client
update is ``G_i = W_i' − W_t``, a step *along* the descent direction, so with an optax
server optimiser pass its negation as the "gradient"::

    server = optax.sgd(learning_rate=eta)
    agg = qkrum.aggregator(f=3, method="multisignal")
    agg_state, opt_state = agg.init(params), server.init(params)

    @jax.jit
    def server_step(params, client_updates, agg_state, opt_state):
        mean_update, agg_state = agg.update(client_updates, agg_state)
        step, opt_state = server.update(jax.tree.map(jnp.negative, mean_update), opt_state, params)
        return optax.apply_updates(params, step), agg_state, opt_state

which is ``W_{t+1} = W_t + η · mean_{i∈S} G_i``.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import _pytree, kernels
from qkrum._validation import check_byzantine_count, check_int
from qkrum.ensemble import REGIMES
from qkrum.rules import DEFAULT, as_rule
from qkrum.selection import PAPER_PROJECTION, check_norm_guard, pre_key, select

__all__ = ["Aggregator", "AggregatorState", "aggregator"]


class AggregatorState(NamedTuple):
    """``key``: PRNG key for the next round's random choices; ``count``: rounds done;
    ``selected``: the last round's selection mask (``None`` unless the aggregator was
    built with ``num_clients``: the state keeps the structure ``init`` gave it, so it can
    be carried through ``lax.scan``); ``num_valid``: the last round's clients that were
    neither non-finite nor outsized (:func:`qkrum.select`); ``shortfall``: how many fewer
    valid clients than ``m`` there were (0 when enough), the round then aggregated every
    valid one; ``regime``: the last round's MultiSignal regime as an index into
    :data:`qkrum.ensemble.REGIMES` (``-1`` for rules without one)."""

    key: jax.Array
    count: jax.Array
    selected: jax.Array | None
    num_valid: jax.Array | None = None
    shortfall: jax.Array | None = None
    regime: jax.Array | None = None


class Aggregator(NamedTuple):
    init: Any
    update: Any


def aggregator(f: int, *, method: Any = DEFAULT, m: int | None = None, num_clients: int | None = None,
               project: int | None = PAPER_PROJECTION, seed: int = 0, norm_guard: Any = "auto",
               **options: Any) -> Aggregator:
    """A robust aggregator that selects with :func:`qkrum.select` every round.

    Args:
        f: Byzantine clients to tolerate per round.
        method: a name, a chain spec (``"nnm,trimmed_mean"``) or a :class:`qkrum.Rule`;
            with ``m``, ``project``, ``norm_guard`` and ``**options`` as for
            :func:`qkrum.select`, all checked here, once.
        num_clients: clients per round, if fixed; then ``state.selected`` has a fixed
            shape from ``init`` on (needed to carry the state through ``lax.scan``).
        seed: seeds the state's PRNG key; each round splits it (or uses ``key=``).

    The aggregate is the rule's (:meth:`qkrum.Rule.aggregate_rows`, the formula behind
    :meth:`qkrum.Selection.aggregate`): the host decides the selection, the
    pre-aggregation and the statistic are traced.
    """
    rule = as_rule(method, options)
    f = check_int("f", f, minimum=0)
    seed = check_int("seed", seed)
    check_norm_guard(norm_guard, rule.name)
    if num_clients is not None:
        num_clients = check_int("num_clients", num_clients, minimum=1)
        check_byzantine_count(f, num_clients)
    if m is not None:
        m = check_int("m", m, minimum=1, maximum=None if num_clients is None else rule.rows(num_clients))
    if project is not None:
        project = check_int("project", project, minimum=1)

    def init(params: Any = None) -> AggregatorState:
        del params  # the state does not depend on the model
        selected = None if num_clients is None else jnp.zeros((num_clients,), bool)
        zero = jnp.zeros((), jnp.int32)
        return AggregatorState(jax.random.key(seed), zero, selected, zero, zero, zero - 1)

    def host_select(x, round_seed):
        x = np.asarray(x)
        n = x.shape[0]
        rows = rule.rows(n)
        want = (rows - f) if m is None else m
        if not np.asarray(kernels.valid_clients(x)).any():
            # Nothing can be aggregated: no step (a zero update), reported as num_valid 0.
            return (np.zeros(n, bool), np.zeros(rows, bool), np.zeros(rows, bool), np.zeros(n, bool), np.int32(0),
                    np.int32(want), np.int32(-1))
        with warnings.catch_warnings():
            # The shortfall is reported in the state; a warning per traced round is noise.
            warnings.simplefilter("ignore", RuntimeWarning)
            selection = select(x, f, method=rule, m=m, seed=int(round_seed), project=project,
                               norm_guard=norm_guard)
        num_valid = n - len(selection.info["nonfinite"]) - len(selection.info["outsized"])
        regime = selection.info.get("regime")
        ctx = selection.round
        row_valid = np.ones(rows, bool) if ctx.row_valid is None else ctx.row_valid
        return (ctx.valid, ctx.row_selected, row_valid, np.asarray(selection.selected, dtype=bool),
                np.int32(num_valid), np.int32(max(want - num_valid, 0)),
                np.int32(REGIMES.index(regime) if regime in REGIMES else -1))

    @jax.custom_jvp
    def traced_select(x, round_seed):
        n = x.shape[0]
        shapes = (jax.ShapeDtypeStruct((n,), jnp.bool_), jax.ShapeDtypeStruct((rule.rows(n),), jnp.bool_),
                  jax.ShapeDtypeStruct((rule.rows(n),), jnp.bool_), jax.ShapeDtypeStruct((n,), jnp.bool_), jax.ShapeDtypeStruct((), jnp.int32),
                  jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
        # vmap over rounds calls the host selection once per round.
        return jax.pure_callback(host_select, shapes, x, round_seed, vmap_method="sequential")

    @traced_select.defjvp
    def _no_derivative(primals, tangents):
        # The selection is a discrete host computation: piecewise constant, so JAX's own
        # error (callbacks have no JVP) would be the only alternative. Say what to do.
        raise TypeError(
            "qkrum.aggregator's update cannot be differentiated with respect to client_updates: the "
            "selection is a discrete host computation. Apply jax.lax.stop_gradient to client_updates "
            "(the aggregate is then differentiable in nothing else), or differentiate the local "
            "training rather than the server step")

    def update(client_updates: Any, state: AggregatorState, params: Any = None, *,
               key: jax.Array | None = None) -> tuple[Any, AggregatorState]:
        del params  # accepted for optax's signature; selection looks only at the updates
        x, spec = _pytree.flatten_clients(client_updates)
        n = x.shape[0]
        if num_clients is not None and n != num_clients:
            raise ValueError(f"client_updates has {n} clients but the aggregator was built with "
                             f"num_clients={num_clients}")
        next_key = state.key
        if key is None:
            next_key, key = jax.random.split(state.key)
        round_seed = jax.random.randint(key, (), 0, 2**31 - 1)
        if isinstance(x, jax.core.Tracer) or isinstance(round_seed, jax.core.Tracer):
            outputs = traced_select(x, round_seed)
        else:
            # Called eagerly (the FL loop, a loop without jit): run the host step directly, so
            # that its errors (bad f for n, a SamplerError) arrive as they are, not wrapped
            # in a JaxRuntimeError by the callback machinery.
            outputs = tuple(jnp.asarray(v) for v in host_select(x, round_seed))
        valid, row_selected, row_valid, selected, num_valid, shortfall, regime = outputs
        flat = rule.aggregate_rows(x, valid, row_selected, f, pre_key(jax.random.key(round_seed)), row_valid=row_valid)
        # Only a round without a single valid client selects nothing: then no step.
        flat = jnp.where(jnp.any(row_selected), flat, 0).astype(x.dtype)
        keep_mask = selected if state.selected is not None else None
        new_state = AggregatorState(next_key, state.count + 1, keep_mask, num_valid, shortfall, regime)
        return _pytree.unflatten(flat, spec), new_state

    return Aggregator(init, update)
