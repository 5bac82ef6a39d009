"""qkrum's defences inside a Flower federation (the ``flower`` extra: ``pip install 'qkrum[flower]'``).

:class:`QkrumStrategy` is Flower's message-API ``FedAvg`` (``flwr.serverapp.strategy``) with
the aggregation step replaced by a qkrum rule, and every round it says who was rejected and
why. Flower's own ``MultiKrum``/``Krum``/``Bulyan`` strategies return only the aggregate.

How a round is aggregated (:meth:`QkrumStrategy.aggregate_train`):

1. Each reply with content is checked against Flower's reply contract *per reply*: exactly
   one ``ArrayRecord`` with the keys and shapes of the global arrays sent in that round's
   ``configure_train``, and exactly one ``MetricRecord`` whose ``weighted_by_key`` (default
   ``"num-examples"``) is a finite number > 0. A reply that breaks it is rejected with the
   reason, where ``FedAvg`` raises for the whole round (``InconsistentMessageReplies``), so
   one malformed reply cannot stop training.
2. The rule sees *updates*, reply arrays minus the global arrays of the round, as rows
   mapped to ``msg.metadata.src_node_id``. (Euclidean distances are the same on weights and
   updates; cosines are not, and MultiSignal's cosine gap needs updates.)
3. :func:`qkrum.select` chooses, with ``m = n − f`` for the ``n`` usable replies. Replies with
   NaN/Inf arrays are rejected before it and not counted in ``n`` (like a reply without
   content: counted, they would leave room for one more attacker among the selected);
   ``norm_guard`` drops outsized ones, as everywhere in qkrum.
4. The rule's aggregate of the updates (for the default :data:`qkrum.rules.DEFAULT`, the mean
   of the selected clients' nearest-neighbour-mixed updates) is added to the global arrays.
   With ``weighted=True`` that mean is weighted by the clients' reported example counts,
   each capped at ``max_weight`` times the round's median count: the counts are the
   clients' own claim, and an uncapped weight lets one selected attacker that claims 10⁹
   examples carry the aggregate alone (``max_weight=None`` is Flower's FedAvg weighting).
5. The returned ``MetricRecord`` holds FedAvg's averaged train metrics of the *selected*
   replies plus the selection under ``qkrum-`` keys, which no averaging touches:
   ``qkrum-nodes`` (every node id that sent content, in row order), ``qkrum-scores``
   (aligned with it; lower = more trusted, ``inf`` for invalid replies), ``qkrum-selected``,
   ``qkrum-rejected``, ``qkrum-failed`` (node ids) and ``qkrum-regime`` (MultiSignal's
   regime as an index into :data:`qkrum.ensemble.REGIMES`, -1 for rules without one).

The averaged train metrics use only the keys every selected reply has. Evaluation replies
(:meth:`QkrumStrategy.aggregate_evaluate`) are filtered the same way before FedAvg's average:
one reply that breaks the contract is left out instead of failing the round.

:attr:`QkrumStrategy.history` keeps one dict per aggregated (or skipped) round.

:func:`selection_rule` makes a qkrum rule usable as Flower's ``Bulyan(selection_rule=...)``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._optional import require
from qkrum._validation import check_int
from qkrum.ensemble import REGIMES
from qkrum.rules import DEFAULT, Rule, as_rule
from qkrum.selection import PAPER_PROJECTION, check_norm_guard, pre_key, select

_flwr_app = require("flwr.app", "flower", "qkrum.flower")
_flwr_common = require("flwr.common", "flower", "qkrum.flower")
_flwr_strategy = require("flwr.serverapp.strategy", "flower", "qkrum.flower")

__all__ = ["QkrumStrategy", "selection_rule"]


def _log(level: int, message: str, *args: Any) -> None:
    _flwr_common.log(level, message, *args)  # Flower's logger: the lines appear with Flower's own


class _Malformed(ValueError):
    """A reply that breaks the reply contract; its message is the rejection reason."""


def _reference(arrays: Any) -> list[tuple[str, np.ndarray, np.dtype]]:
    """The global arrays of a round as ``(key, float64 array, sent dtype)``, in record order."""
    out = []
    for key, arr in arrays.items():
        value = arr.numpy()
        out.append((key, np.asarray(value, dtype=np.float64), value.dtype))
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _parse_reply(content: Any, reference: list, weight_key: str) -> tuple[np.ndarray, float]:
    """A reply's flat float32 update (its arrays minus the reference) and its reported
    weight, or :class:`_Malformed` naming what is wrong."""
    records = list(content.array_records.values())
    if len(records) != 1:
        raise _Malformed(f"expected exactly one ArrayRecord, got {len(records)}")
    record = records[0]
    keys = list(record.keys())
    expected = [key for key, _, _ in reference]
    if keys != expected:
        raise _Malformed(f"ArrayRecord keys {keys} differ from the global arrays' {expected}")
    metrics = _only_metrics(content)
    if metrics is None:
        raise _Malformed(f"expected exactly one MetricRecord, got {len(content.metric_records)}")
    weight = _number(metrics.get(weight_key))
    if weight is None or not math.isfinite(weight) or weight <= 0:
        raise _Malformed(f"MetricRecord[{weight_key!r}] must be a finite number > 0, got {metrics.get(weight_key)!r}")
    parts = []
    for key, ref, _ in reference:
        try:
            value = record[key].numpy()
        except Exception as exc:  # a payload Flower cannot decode into an array
            raise _Malformed(f"array {key!r} does not decode: {exc}") from None
        if value.shape != ref.shape:
            raise _Malformed(f"array {key!r} has shape {value.shape}, the global array {ref.shape}")
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise _Malformed(f"array {key!r} has dtype {value.dtype}, not a real number type")
        with np.errstate(over="ignore", invalid="ignore"):
            # float64 difference, float32 row: a value past float32's range becomes inf
            # and qkrum.select marks the reply invalid.
            parts.append((value.astype(np.float64) - ref).astype(np.float32).ravel())
    return np.concatenate(parts) if parts else np.zeros(0, np.float32), weight


def _metric_view(contents: list) -> list:
    """Each content's one MetricRecord reduced to the keys every content has, as RecordDicts
    holding only it: FedAvg's metric average sums whatever keys it finds and divides by the
    total weight, so a key only some clients send would come out scaled down."""
    records = [_only_metrics(c) for c in contents]  # parsed replies: exactly one each
    common = set.intersection(*(set(r.keys()) for r in records)) if records else set()
    return [_flwr_app.RecordDict({"metrics": _flwr_app.MetricRecord({k: v for k, v in r.items() if k in common})})
            for r in records]


def _round_seed(seed: int, server_round: int) -> int:
    return int(np.random.SeedSequence([seed, server_round]).generate_state(1)[0])


def _capped_weights(weights: np.ndarray, valid: np.ndarray, max_weight: float | None) -> np.ndarray:
    if max_weight is None or not valid.any():
        return weights
    return np.minimum(weights, max_weight * float(np.median(weights[valid])))


def _weighted_combine(weights: np.ndarray) -> Callable:
    w = jnp.asarray(weights, jnp.float32)

    def combine(rows: jax.Array, mask: jax.Array) -> jax.Array:
        wm = jnp.where(mask, w, 0.0)
        # where, not a product with 0: a NaN in an unselected row must not reach the sum.
        total = jnp.sum(jnp.where(mask[:, None], rows * wm[:, None], 0.0), axis=0)
        return total / jnp.sum(wm)

    return combine


def _selects_clients(rule: Rule) -> bool:
    """Whether the rule's aggregate is a mean over selected rows that are the clients (no
    robust statistic, no bucketing): what per-client weights and Bulyan's hook need."""
    return rule.selects and all(p.keeps_rows for p in rule.pre)


def _only_metrics(content: Any) -> Any:
    """A content's MetricRecord when it has exactly one, else None."""
    records = list(content.metric_records.values())
    return records[0] if len(records) == 1 else None


def _check_rule(method: Any, weighted: bool) -> Rule:
    rule = as_rule(method, {})
    if weighted and not _selects_clients(rule):
        what = ("aggregates with a robust statistic" if not rule.selects
                else "pre-aggregates clients into fewer rows (buckets)")
        raise ValueError(f"method={rule.spec!r} {what}, which has no per-client weights; pass weighted=False")
    return rule


class QkrumStrategy(_flwr_strategy.FedAvg):
    """Flower's ``FedAvg`` whose aggregation is a qkrum rule, with the rejected clients
    reported every round (see the module docs for the round, step by step).

    Args:
        f: the number of Byzantine clients to tolerate per round, ``>= 0``. A round with
            ``f`` or fewer usable replies is skipped (the global arrays stay, a warning is
            logged and the history says why): there is no robust answer then.
        method: a qkrum rule: a name in :data:`qkrum.METHODS`, a chain spec such as
            ``"nnm,trimmed_mean"``, or a :class:`qkrum.Rule` (:func:`qkrum.rule` with
            options, :func:`qkrum.chain`). Default :data:`qkrum.rules.DEFAULT`.
        weighted: weight the mean of the selected clients by their reported
            ``weighted_by_key`` (FedAvg's weighting, capped by ``max_weight``). Only for
            rules whose aggregate is a mean over clients; a robust statistic (median,
            trimmed mean, ...) or bucketing needs ``weighted=False`` (ValueError otherwise).
        max_weight: cap on a client's weight as a multiple of the round's median reported
            weight (``> 0``; ``None``: uncapped, as in FedAvg). Default 1.0: no client
            weighs more than the median client, so a claimed example count cannot buy
            influence.
        m: how many clients to select (default ``n − f`` for the round's ``n`` replies);
            a round with fewer than ``m`` usable replies is skipped.
        project, norm_guard: as for :func:`qkrum.select`.
        seed: the rules' random choices (QUBO annealing, bucketing) in round ``r`` draw
            from ``(seed, r)``; same seed, same selections.
        **fedavg_options: ``FedAvg``'s options (``fraction_train``, ``min_train_nodes``,
            ``weighted_by_key``, ``train_metrics_aggr_fn``, ...).

    Attributes:
        history: one dict per round: ``round``, ``selected``, ``rejected``, ``failed``
            (node ids; sorted), ``reasons`` (rejected node id → why), ``scores`` (node id →
            score), ``regime``, ``info`` (:attr:`qkrum.Selection.info` with row indices
            turned into node ids), or ``skipped`` with the reason.
    """

    def __init__(self, f: int, method: Any = DEFAULT, *, weighted: bool = True, max_weight: float | None = 1.0,
                 m: int | None = None, project: int | None = PAPER_PROJECTION, norm_guard: Any = "auto",
                 seed: int = 0, **fedavg_options: Any) -> None:
        super().__init__(**fedavg_options)
        self.f = check_int("f", f, minimum=0)
        if not isinstance(weighted, bool):
            raise TypeError(f"weighted must be a bool, got weighted={weighted!r}")
        self.weighted = weighted
        self.rule = _check_rule(method, weighted)
        if max_weight is not None:
            value = _number(max_weight)
            if value is None or not math.isfinite(value) or value <= 0:
                raise ValueError(f"max_weight must be a finite number > 0 or None, got max_weight={max_weight!r}")
            max_weight = value
        self.max_weight = max_weight
        self.m = None if m is None else check_int("m", m, minimum=1)
        self.project = None if project is None else check_int("project", project, minimum=1)
        check_norm_guard(norm_guard, self.rule.name)
        self.norm_guard = norm_guard
        self.seed = check_int("seed", seed)
        self.history: list[dict] = []
        self._sent: dict[int, list] = {}

    def summary(self) -> None:
        _log(logging.INFO, "\t├──> qkrum: method=%s, f=%d, weighted=%s (max_weight=%s)", self.rule.spec, self.f,
             self.weighted, self.max_weight)
        super().summary()

    def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
        """FedAvg's ``configure_train``, keeping the global arrays sent in this round
        (the reference the replies' updates are taken against)."""
        messages = super().configure_train(server_round, arrays, config, grid)
        self._sent = {server_round: _reference(arrays)}
        return messages

    def _skip(self, server_round: int, reason: str, entry: dict) -> tuple[None, None]:
        _log(logging.WARNING, "qkrum: round %d not aggregated: %s", server_round, reason)
        self.history.append({**entry, "skipped": reason})
        return None, None

    def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
        """Select with the qkrum rule, aggregate the selected updates onto the global
        arrays, and report the selection (see the module docs)."""
        replies = list(replies)
        reference = self._sent.pop(server_round, None)
        if reference is None:
            raise RuntimeError(f"aggregate_train(server_round={server_round}) without configure_train for that "
                               "round: the strategy needs the global arrays it sent to compute updates")
        failed = sorted(int(msg.metadata.src_node_id) for msg in replies if msg.has_error())
        nodes: list[int] = []
        rows: list[np.ndarray] = []
        weights: list[float] = []
        contents: list[Any] = []
        reasons: dict[int, str] = {}
        for msg in replies:
            if msg.has_error():
                continue
            node = int(msg.metadata.src_node_id)
            try:
                row, weight = _parse_reply(msg.content, reference, self.weighted_by_key)
            except _Malformed as exc:
                reasons[node] = f"malformed reply: {exc}"
                continue
            if not np.isfinite(row).all():
                # Not counted among the n the rule sees, as a reply without content: with it
                # counted, m = n - f would make room for one more attacker.
                reasons[node] = "non-finite arrays (NaN or Inf, or beyond float32's range)"
                continue
            nodes.append(node)
            rows.append(row)
            weights.append(weight)
            contents.append(msg.content)
        entry = {"round": server_round, "selected": [], "rejected": sorted(reasons), "failed": failed,
                 "reasons": dict(reasons), "scores": {}, "regime": None, "info": {}}
        n = len(rows)
        if n <= self.f:
            return self._skip(server_round, f"{n} usable replies for f={self.f} Byzantine clients", entry)
        if self.m is not None and self.m > n:
            return self._skip(server_round, f"{n} usable replies but m={self.m} clients are to be selected", entry)

        updates = np.stack(rows)
        rule_seed = _round_seed(self.seed, server_round)
        selection = select(updates, self.f, method=self.rule, m=self.m, seed=rule_seed, project=self.project,
                           norm_guard=self.norm_guard)
        if self.weighted:
            ctx = selection.round
            w = _capped_weights(np.asarray(weights), ctx.valid, self.max_weight)
            aggregate = self.rule.aggregate_rows(jnp.asarray(updates), jnp.asarray(ctx.valid),
                                                 jnp.asarray(ctx.row_selected), ctx.f,
                                                 pre_key(jax.random.key(ctx.seed)), _weighted_combine(w),
                                                 ctx.row_valid)
        else:
            aggregate = selection.aggregate(updates)
        aggregate = np.asarray(aggregate, np.float64)
        if not np.isfinite(aggregate).all():  # every path above excludes invalid rows; a guard, not a fallback
            raise FloatingPointError(f"round {server_round}: the aggregate of the selected updates is not finite")

        new_arrays, offset = {}, 0
        for key, ref, dtype in reference:
            value = ref + aggregate[offset:offset + ref.size].reshape(ref.shape)
            offset += ref.size
            new_arrays[key] = _flwr_app.Array(np.asarray(value, dtype=dtype))
        arrays = _flwr_app.ArrayRecord(new_arrays)

        selected_rows = np.flatnonzero(selection.selected)
        selected = sorted(nodes[i] for i in selected_rows)
        invalid = set(selection.info.get("nonfinite", []))
        outsized = set(selection.info.get("outsized", []))
        for i, node in enumerate(nodes):
            if selection.selected[i]:
                continue
            reasons[node] = ("non-finite or unrepresentable arrays" if i in invalid
                             else "outsized update (norm_guard)" if i in outsized
                             else f"not selected by {self.rule.spec}")
        regime = selection.info.get("regime")
        scores = [float(s) for s in np.asarray(selection.scores, np.float64)]
        info = {key: value for key, value in selection.info.items() if key not in ("nonfinite", "outsized")}
        info["nonfinite"] = sorted(nodes[i] for i in invalid)
        info["outsized"] = sorted(nodes[i] for i in outsized)
        entry.update(selected=selected, rejected=sorted(reasons), reasons=reasons,
                     scores=dict(zip(nodes, scores)), regime=regime, info=info)

        chosen = _metric_view([contents[i] for i in selected_rows])
        try:
            metrics = self.train_metrics_aggr_fn(chosen, self.weighted_by_key)
        except (TypeError, ValueError, KeyError) as exc:  # clients' metrics are theirs to break; the model is not
            _log(logging.WARNING, "qkrum: round %d: train metrics not aggregated (%s)", server_round, exc)
            entry["metrics_error"] = str(exc)
            metrics = _flwr_app.MetricRecord()
        metrics = metrics if metrics is not None else _flwr_app.MetricRecord()
        metrics["qkrum-nodes"] = list(nodes)
        metrics["qkrum-scores"] = scores
        metrics["qkrum-selected"] = selected
        metrics["qkrum-rejected"] = entry["rejected"]
        metrics["qkrum-failed"] = failed
        metrics["qkrum-regime"] = REGIMES.index(regime) if regime in REGIMES else -1
        self.history.append(entry)
        _log(logging.INFO, "qkrum: round %d: %d selected, rejected %s", server_round, len(selected), entry["rejected"])
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Any]) -> Any:
        """FedAvg's ``aggregate_evaluate`` over the replies that keep the reply contract (one
        MetricRecord with a finite ``weighted_by_key`` > 0) and carry the most common set of
        metric keys; FedAvg itself raises for the whole round on one inconsistent reply."""
        failures, usable = [], []
        for msg in replies:
            if msg.has_error():
                failures.append(msg)  # FedAvg counts and logs them
                continue
            record = _only_metrics(msg.content)
            weight = _number(record.get(self.weighted_by_key)) if record is not None else None
            if weight is not None and math.isfinite(weight) and weight > 0:
                usable.append((msg, frozenset(record.keys())))
        keysets = [keys for _, keys in usable]
        common = max(set(keysets), key=lambda k: (keysets.count(k), sorted(k))) if keysets else None
        usable = failures + [msg for msg, keys in usable if keys == common]
        return super().aggregate_evaluate(server_round, usable)


def selection_rule(method: Any = "multikrum", *, project: int | None = None, seed: int = 0) -> Callable:
    """A qkrum selecting rule as Flower's ``Bulyan(selection_rule=...)``:
    ``rule(contents, num_malicious_nodes, num_nodes_to_select) -> selected contents``.

    Flower hands it the replies' *weights*, not updates: Euclidean rules (MultiKrum, the
    QUBO selection, Krum) select the same on either; rules with a cosine signal
    (MultiSignal's gate) do not, and need :class:`QkrumStrategy`. ``method`` must select
    (a robust statistic has no selection to hand on); ``project`` defaults to the full
    weights (None). Contents come back in their input order.
    """
    rule = as_rule(method, {})
    if not _selects_clients(rule):
        raise ValueError(f"selection_rule needs a rule that selects clients; method={rule.spec!r} does not")
    project = None if project is None else check_int("project", project, minimum=1)
    seed = check_int("seed", seed)

    def choose(contents: list, num_malicious_nodes: int, num_nodes_to_select: int) -> list:
        if not contents:
            return []
        key = next(iter(contents[0].array_records))
        x = np.stack([np.concatenate([a.ravel() for a in c[key].to_numpy_ndarrays()]) for c in contents])
        sel = select(x, num_malicious_nodes, method=rule, m=num_nodes_to_select, project=project, seed=seed)
        return [contents[i] for i in sel.indices]

    choose.rule = rule
    return choose
