"""``qkrum.select``: the one entry point that decides which client updates to trust.

A rule (:mod:`qkrum.rules`: MultiKrum, the QUBO rules, the ensembles, the classical
statistics, chains with pre-aggregators) is given by name or as a value; every rule
shares the input validation, non-finite handling, magnitude guard, projection, distance
cache and timings below, and :meth:`Selection.aggregate` computes its aggregate.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import _pytree, kernels
from qkrum._validation import as_client_matrix, check_byzantine_count, check_int, check_num_selected
from qkrum.errors import SamplerError  # defined there so that qkrum.anneal raises the same class
from qkrum.rules import DEFAULT, RULES, MethodResult, Round, Rule, as_rule
from qkrum.rules.selecting import PAPER_QUBO

__all__ = ["METHODS", "NORM_GUARD", "PAPER_PROJECTION", "PAPER_QUBO", "ByzantineMajorityWarning", "MethodResult",
           "Round", "RoundAggregation", "SamplerError", "Selection", "aggregate", "check_norm_guard", "combine_pytree", "pre_key",
           "select"]

#: The registered rules: name → factory (:func:`qkrum.rule` builds from it).
METHODS = RULES

#: The paper's projection width k (VI-B, VI-C): the default of :func:`select`.
PAPER_PROJECTION = 1000


class ByzantineMajorityWarning(UserWarning):
    """``n < 2f + 3``: the guarantees of Krum-type selection do not hold."""


def pre_key(key: jax.Array) -> jax.Array:
    """The key of a round's pre-aggregation steps (bucketing's permutation), derived from
    the round's key so that :func:`select` and :func:`qkrum.aggregator` draw the same."""
    return jax.random.fold_in(key, 1)


class RoundAggregation(NamedTuple):
    """What :meth:`Selection.aggregate` needs besides the updates: the valid clients, the
    rows the rule selected (after pre-aggregation), ``f``, the round's seed and the
    round's statistic (``None``: the rule's own)."""

    valid: np.ndarray
    row_selected: np.ndarray
    f: int
    seed: int
    combine: Callable | None = None
    # bool (rows,) of the rows the rule's mix step may use (None: every valid row): a
    # screen's excluded rows are not.
    row_valid: np.ndarray | None = None


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select` for one round.

    Attributes:
        selected: bool array ``(n,)``, True for the clients to aggregate.
        scores: float array ``(n,)``; the method's per-client score, lower = more trusted
            (for MultiKrum the Krum scores of Eq. 2; ``inf`` for non-finite updates).
        method: the final rule's registered name (``rule.spec`` is the full chain).
        info: details: ``n``, ``f``, ``m``, ``k`` (projection width or None), the indices
            of non-finite clients, and ``timings`` in seconds per stage plus ``total``.
        rule: the :class:`qkrum.Rule` that ran.
    """

    selected: np.ndarray
    scores: np.ndarray
    method: str
    info: dict = field(default_factory=dict)
    rule: Rule | None = field(default=None, repr=False, compare=False)
    round: RoundAggregation | None = field(default=None, repr=False, compare=False)

    @property
    def indices(self) -> np.ndarray:
        """Indices of the selected clients, ascending."""
        return np.flatnonzero(self.selected)

    @property
    def rejected(self) -> np.ndarray:
        """Indices of the rejected (flagged) clients, ascending."""
        return np.flatnonzero(~self.selected)

    @property
    def combine(self) -> Callable | None:
        """The round's statistic ``(x, mask) -> (d,)``, or ``None`` when the aggregate is
        the mean of the selected clients' own updates (no pre-aggregation, no mixing)."""
        if self.rule is None or self.rule.plain_mean:
            return None
        return (self.round.combine if self.round is not None and self.round.combine is not None
                else self.rule.combine(self.info.get("f", 0)))

    def aggregate(self, updates: Any) -> Any:
        """The rule's aggregate of ``updates``, with their structure: the mean of the
        selected clients (Eq. 12), the robust statistic of a classical rule, or, for a
        chain, the final rule's aggregate of the pre-aggregated updates."""
        if self.rule is None or self.round is None or self.rule.plain_mean:
            return aggregate(updates, self.selected)
        ctx = self.round
        if not self.rule.pre and not self.rule.mix:
            return combine_pytree(updates, self.selected, self.combine)
        x, spec = _pytree.flatten_clients(updates)
        if x.shape[0] != ctx.valid.shape[0]:
            raise ValueError(f"updates has {x.shape[0]} clients but the selection was made for "
                             f"{ctx.valid.shape[0]}")
        flat = self.rule.aggregate_rows(x, jnp.asarray(ctx.valid), jnp.asarray(ctx.row_selected), ctx.f,
                                        pre_key(jax.random.key(ctx.seed)), ctx.combine, ctx.row_valid)
        return _pytree.unflatten(flat, spec)


def aggregate(updates: Any, selected: Any) -> Any:
    """Mean of the selected rows of every leaf of ``updates`` (Eq. 3 / Eq. 12).

    Unselected rows are excluded with ``where`` rather than multiplied by zero, so a NaN
    in a rejected update cannot leak into the mean. Raises if nothing is selected.
    """
    mask = np.asarray(selected, dtype=bool)
    if mask.ndim != 1:
        raise ValueError(f"selected must be a 1-D boolean mask, got shape {mask.shape}")
    count = int(mask.sum())
    if count == 0:
        raise ValueError("selected is empty: no client was selected, so there is nothing to aggregate")

    def leaf_mean(leaf):
        if not isinstance(leaf, (np.ndarray, jax.Array)):
            leaf = np.asarray(leaf)
        if leaf.shape[:1] != mask.shape:
            raise ValueError(
                f"updates has {leaf.shape[0] if leaf.ndim else 0} clients on a leaf but selected "
                f"has {mask.shape[0]}"
            )
        # Summed in at least float32 (a float16 sum of a few thousands overflows), then
        # returned in the leaf's dtype; NumPy leaves are read in row blocks, never copied.
        flat = leaf.reshape(leaf.shape[0], -1) if leaf.ndim != 2 else leaf
        return jnp.reshape(_pytree.masked_mean(flat, mask), leaf.shape[1:]).astype(leaf.dtype)

    return jax.tree_util.tree_map(leaf_mean, updates)


def combine_pytree(updates: Any, selected: Any, combine: Callable) -> Any:
    """Apply a whole-vector aggregator ``combine((n, d), mask) -> (d,)`` to a pytree of
    updates: the leaves are flattened into one matrix (as :func:`select` sees them), the
    statistic runs in at least float32, and the result is split back into the leaves."""
    x, spec = _pytree.flatten_clients(updates)
    return _pytree.unflatten(combine(x, jnp.asarray(selected, dtype=bool)), spec)


def _block(x):
    return jax.block_until_ready(x)


#: The default magnitude guard of :func:`select`: a client whose update norm exceeds this
#: many times the median norm of the valid clients is never selected. Far above the norm
#: spread of honest clients and of the paper's attacks (scaling ×10, Gaussian noise a few
#: hundred times an update's norm), which stay the methods' to detect; it stops the
#: clients that no distance-based rule should ever have to weigh (1e9× and beyond).
NORM_GUARD = 1000.0

#: Methods whose ``norm_guard="auto"`` is off: plain FedAvg is the unprotected reference.
_UNGUARDED = frozenset({"mean"})


def check_norm_guard(norm_guard: Any, method: str) -> float | None:
    if isinstance(norm_guard, str):
        if norm_guard != "auto":
            raise ValueError(f"norm_guard must be a number > 1, None or 'auto', got norm_guard={norm_guard!r}")
        return None if method in _UNGUARDED else NORM_GUARD
    if norm_guard is None:
        return None
    if isinstance(norm_guard, bool) or not isinstance(norm_guard, (int, float, np.integer, np.floating)):
        raise TypeError(f"norm_guard must be a number > 1, None or 'auto', got {norm_guard!r}")
    value = float(norm_guard)
    if not (value > 1):  # also False for NaN; +inf is allowed and means "off"
        raise ValueError(f"norm_guard must be > 1 (a ratio to the median norm), got norm_guard={norm_guard}")
    return value


def select(
    updates: Any,
    f: int,
    *,
    method: Any = DEFAULT,
    m: int | None = None,
    seed: int = 0,
    project: int | None = PAPER_PROJECTION,
    dtype: Any = None,
    norm_guard: float | None | str = "auto",
    **options: Any,
) -> Selection:
    """Choose which client updates to aggregate this round.

    Args:
        updates: ``(n, d)`` array, ``(n, ...)`` array, or pytree whose leaves share the
            leading client axis ``n`` (NumPy or JAX).
        f: the number of Byzantine clients to tolerate, ``0 <= f < n``. With ``n < 2f + 3``
            a :class:`ByzantineMajorityWarning` says which guarantee is lost.
        method: a rule: a :class:`qkrum.Rule` (:func:`qkrum.rule`, :func:`qkrum.chain`), a
            chain spec such as ``"nnm,trimmed_mean"``, or a name in :data:`METHODS`:
            ``"multikrum"`` (Eqs. 2–3), ``"qubo"`` (IV-C),
            ``"cascade"`` (IV-D), ``"multisignal"`` (IV-E), the same three with the
            paper's QUBO as published (``"qubo-paper"``, ``"cascade-paper"``,
            ``"multisignal-paper"``: :data:`PAPER_QUBO`), or a classical baseline
            (``"mean"``, ``"median"``, ``"trimmed_mean"``, ``"geometric_median"``,
            ``"krum"``, ``"bulyan"``, ``"centered_clipping"``). Each rule's options are
            in its factory's docstring: ``help(qkrum.rules.multisignal)``.
        m: how many clients to select, ``1 <= m <= n``; default ``n − f``. After a
            pre-aggregation step that changes the rows (bucketing), ``m`` counts rows
            (buckets) and defaults to ``rows − f``.
        seed: seed for methods with random choices (same seed, same selection).
        project: width ``k`` of the importance-weighted projection (paper IV-A): the
            ``k`` highest-variance coordinates; default 1000, the paper's. ``None`` uses
            all coordinates. Stages the paper runs on full updates (the Euclidean gap of
            the ensembles) ignore it.
        dtype: computation dtype, float32 (default) or float64 (needs
            ``jax_enable_x64``). Inputs of any float dtype (float16, bfloat16) are
            converted; sums and means are never accumulated in less than float32.
        norm_guard: the magnitude guard (see below): a ratio ``> 1``, ``None`` (off), or
            ``"auto"`` (default): :data:`NORM_GUARD` for every method but ``"mean"``,
            which stays plain FedAvg, the unprotected reference.
        **options: the rule's options (validated before anything is computed).

    Clients whose update contains NaN/±Inf, or whose squared norm exceeds
    ``finfo.max / (4n)`` so that distances to them could overflow
    (:func:`qkrum.kernels.representable_bound`), are *invalid* (``info["nonfinite"]``).
    Clients whose norm exceeds ``norm_guard`` times the median norm of the valid clients
    are *outsized* (``info["outsized"]``). Neither is ever selected, aggregated, counted
    as anyone's neighbour or passed to a QUBO, so one client's norm cannot dominate the
    aggregate: a client that passes the guard moves a mean of ``m`` selected updates by
    at most ``norm_guard / m`` median norms. If fewer than ``m`` valid clients remain,
    all valid ones are selected (whatever their position) and a ``RuntimeWarning`` says
    so; if none remains, ``ValueError``. A QUBO sampler that raises (or answers with
    something that is not a solution) gives :class:`SamplerError`: no selection is returned
    rather than a guessed one. A sampler answer with ``|S| ≠ m`` is repaired by distance
    sums with a :class:`qkrum.errors.CardinalityRepairWarning` (``info["repaired"]`` counts
    the clients added or dropped); ``info["implementation"]`` says whether qkrum's annealer
    ran natively or in Python (``None`` for other samplers).
    """
    rule = as_rule(method, options)
    seed = check_int("seed", seed)
    guard = check_norm_guard(norm_guard, rule.name)
    if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        # float16/bfloat16 are fine as inputs (converted), not for the arithmetic: their
        # sums of squares overflow near 256, their means' sums near 65,504.
        raise TypeError(f"dtype must be float32 or float64, got dtype={np.dtype(dtype)}")
    t_start = time.perf_counter()
    x = as_client_matrix(updates, dtype=dtype, host=True)
    n = x.shape[0]
    f = check_byzantine_count(f, n)
    if not rule.pre or rule.rows(n) == n:
        m = check_num_selected(m, n, f)
    if project is not None:
        project = check_int("project", project, minimum=1)
    if n < 2 * f + 3 and f > 0:
        warnings.warn(
            f"f={f} Byzantine clients out of n={n}: robust selection needs n >= 2f + 3 (here "
            f"{2 * f + 3}). Krum's and Bulyan's resilience guarantees no longer hold"
            + (", and with f >= n/2 the attackers can be a majority that no agreement-based rule "
               "can tell from the honest clients" if 2 * f >= n else "")
            + "; the selection is computed but is not guaranteed to exclude them",
            ByzantineMajorityWarning,
            stacklevel=2,
        )

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sq_norms = kernels.row_sq_norms(x)
    representable = kernels.representable(sq_norms, n)
    outsized = (kernels.outsized_clients(sq_norms, representable, guard) if guard is not None
                else jnp.zeros(n, bool))
    valid = _block(representable & ~outsized)
    valid_np = np.asarray(valid)
    timings["validity"] = time.perf_counter() - t0
    n_valid = int(valid_np.sum())
    if n_valid == 0:
        raise ValueError(
            f"updates: all {n} client updates contain NaN or Inf or are too large to compare "
            f"(squared norm above {kernels.representable_bound(n, x.dtype):.3g} in {x.dtype}); "
            "there is nothing that can safely be aggregated"
        )

    key = jax.random.key(seed)
    rows, rows_valid, owner, m_rows = x, valid, None, m
    if rule.pre:
        t0 = time.perf_counter()
        out = rule.preaggregate(jnp.asarray(x), valid, f, pre_key(key))
        rows, rows_valid, owner = _block(out.x), _block(out.valid), out.owner
        timings["preaggregation"] = time.perf_counter() - t0
        n_rows = rows.shape[0]
        if n_rows != n:
            if f >= n_rows:
                raise ValueError(f"{rule.spec!r} leaves {n_rows} rows for the rule, so f={f} Byzantine "
                                 f"clients could fill them all; f must be smaller than {n_rows} (use smaller "
                                 "buckets or more clients)")
            m_rows = check_num_selected(m, n_rows, f)
    rnd = Round(rows, rows_valid, f, m_rows, key, timings, project=project)
    result = rule.run(rnd)
    row_valid = None
    if result.excluded is not None:
        row_valid = np.asarray(rows_valid) & ~np.asarray(result.excluded, dtype=bool)
    row_selected = np.asarray(result.selected, dtype=bool) & np.asarray(rows_valid if row_valid is None else row_valid)
    scores = np.asarray(result.scores)
    if owner is None:
        selected = row_selected & valid_np
    else:
        owner_np = np.asarray(owner)
        selected = row_selected[owner_np] & valid_np
        scores = np.where(valid_np, scores[owner_np], np.inf)
    rows_valid_count = int(np.asarray(rows_valid).sum())
    if rows_valid_count < m_rows:
        warnings.warn(
            f"only {n_valid} of n={n} client updates are finite but m={m_rows} were to be "
            f"selected; selecting the {int(selected.sum())} finite ones",
            RuntimeWarning,
            stacklevel=2,
        )
    timings["total"] = time.perf_counter() - t_start
    info = {
        "n": n,
        "f": f,
        "m": m_rows,
        "k": rnd.project,  # None when no projection ran (project=None or k >= d)
        "nonfinite": np.flatnonzero(~np.asarray(representable)).tolist(),
        "outsized": np.flatnonzero(np.asarray(outsized)).tolist(),
        "norm_guard": guard,
        "timings": timings,
        **({"preaggregation": [p.spec for p in rule.pre], "rows": int(rows.shape[0])} if rule.pre else {}),
        **({"mixing": [p.spec for p in rule.mix]} if rule.mix else {}),
        **result.info,
    }
    return Selection(
        selected=selected,
        scores=scores,
        method=rule.name,
        info=info,
        rule=rule,
        round=RoundAggregation(valid_np, row_selected, f, seed, result.combine, row_valid),
    )
