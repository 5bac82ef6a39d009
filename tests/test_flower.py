"""qkrum.flower: QkrumStrategy against NumPy references on real Flower messages, and one
in-process Flower federation (run_simulation) with Byzantine, NaN and failing nodes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import Bulyan, FedAvg
from flwr.serverapp.strategy.multikrum import select_multikrum
from flwr.supercore.task_identity import TaskIdentity

import qkrum
from qkrum.flower import QkrumStrategy, selection_rule

SHAPES = {"w": (4, 3), "b": (3,)}
D = 15


def arrays_of(flat: np.ndarray) -> ArrayRecord:
    out, offset = {}, 0
    for key, shape in SHAPES.items():
        size = int(np.prod(shape))
        out[key] = Array(np.asarray(flat[offset:offset + size].reshape(shape), np.float32))
        offset += size
    return ArrayRecord(out)


def flat_of(record: ArrayRecord) -> np.ndarray:
    return np.concatenate([record[k].numpy().ravel() for k in SHAPES]).astype(np.float64)


def _metadata(node: int) -> Metadata:
    return Metadata(run_id=1, message_id="", src_node_id=node, dst_node_id=0, reply_to_message_id="m",
                    group_id="", created_at=time.time(), ttl=60.0, message_type="train")


def reply(node: int, flat: np.ndarray | None = None, weight=10, *, content: RecordDict | None = None) -> Message:
    if content is None:
        content = RecordDict({"arrays": arrays_of(flat), "metrics": MetricRecord({"num-examples": weight,
                                                                                  "loss": float(node)})})
    return Message(content=content, metadata=_metadata(node))


def failure(node: int) -> Message:
    return Message(error=Error(code=1, reason="client crashed"), metadata=_metadata(node))


class Grid:
    """The part of a Flower Grid that FedAvg.configure_train uses."""

    def __init__(self, nodes):
        self.nodes = list(nodes)

    def get_node_ids(self):
        return self.nodes


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    # configure_train builds Messages, which read the running task's identity.
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 0)


def start_round(strategy, global_flat, nodes, server_round=1):
    strategy.configure_train(server_round, arrays_of(global_flat), ConfigRecord(), Grid(nodes))


def honest_updates(count, rng, spread=0.05):
    return np.ones(D) * 0.1 + spread * rng.standard_normal((count, D))


NODES = [2**63 + 17 * i for i in range(10)]  # Flower's node ids are uint64, most above int64's range


def test_byzantine_rejected_and_global_is_honest_mean():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(D)
    honest = honest_updates(8, rng)
    byz = 5.0 * rng.standard_normal((2, D))  # far from the honest, within the norm guard
    updates = np.concatenate([byz, honest])
    strategy = QkrumStrategy(2)
    start_round(strategy, g, NODES)
    arrays, metrics = strategy.aggregate_train(1, [reply(n, g + u) for n, u in zip(NODES, updates)])
    # default rule: MultiKrum keeps the 8 honest clients, whose 8 nearest neighbours are the
    # 8 honest clients, so every mixed row is their mean.
    np.testing.assert_allclose(flat_of(arrays), g + honest.mean(0), atol=1e-5)
    assert strategy.history[-1]["rejected"] == sorted(NODES[:2])
    assert strategy.history[-1]["selected"] == sorted(NODES[2:])
    assert all("not selected" in strategy.history[-1]["reasons"][n] for n in NODES[:2])
    assert metrics["qkrum-rejected"] == sorted(NODES[:2])
    assert metrics["qkrum-nodes"] == NODES
    assert len(metrics["qkrum-scores"]) == 10 and metrics["qkrum-regime"] == -1
    # the train metrics are FedAvg's weighted average over the selected replies only
    assert metrics["loss"] == pytest.approx(np.mean([float(n) for n in NODES[2:]]))
    assert arrays["w"].numpy().dtype == np.float32 and arrays["w"].numpy().shape == SHAPES["w"]


def test_nan_reply_rejected_and_not_counted():
    rng = np.random.default_rng(1)
    g = rng.standard_normal(D)
    updates = honest_updates(10, rng)
    updates[0] = 50.0  # one attacker
    bad = g + updates[3]
    bad[5] = np.nan
    replies = [reply(n, g + u) for n, u in zip(NODES, updates)]
    replies[3] = reply(NODES[3], bad)
    strategy = QkrumStrategy(1, method="multikrum")
    start_round(strategy, g, NODES)
    arrays, _ = strategy.aggregate_train(1, replies)
    entry = strategy.history[-1]
    assert entry["rejected"] == sorted([NODES[0], NODES[3]])
    assert "non-finite" in entry["reasons"][NODES[3]]
    keep = [i for i in range(10) if i not in (0, 3)]
    assert entry["selected"] == sorted(NODES[i] for i in keep)  # 9 finite replies, m = 9 - f
    np.testing.assert_allclose(flat_of(arrays), g + updates[keep].mean(0), atol=1e-5)


def test_malformed_replies_rejected_with_reasons_where_fedavg_raises():
    rng = np.random.default_rng(2)
    g = rng.standard_normal(D)
    updates = honest_updates(10, rng)
    replies = [reply(n, g + u) for n, u in zip(NODES, updates)]
    good = lambda i: replies[i].content["arrays"]  # noqa: E731
    wrong_key = ArrayRecord({"w": good(0)["w"], "c": good(0)["b"]})
    wrong_shape = ArrayRecord({"w": Array(np.zeros((3, 4), np.float32)), "b": good(1)["b"]})
    cases = {
        0: RecordDict({"arrays": wrong_key, "metrics": MetricRecord({"num-examples": 5})}),
        1: RecordDict({"arrays": wrong_shape, "metrics": MetricRecord({"num-examples": 5})}),
        2: RecordDict({"arrays": good(2), "metrics": MetricRecord({"loss": 1.0})}),
        3: RecordDict({"arrays": good(3), "metrics": MetricRecord({"num-examples": float("nan")})}),
        4: RecordDict({"arrays": good(4), "metrics": MetricRecord({"num-examples": -3})}),
        5: RecordDict({"a": good(5), "b": good(5), "metrics": MetricRecord({"num-examples": 5})}),
    }
    for i, content in cases.items():
        replies[i] = reply(NODES[i], content=content)
    with pytest.raises(Exception, match="keys|MetricRecord|ArrayRecord"):
        FedAvg().aggregate_train(1, replies)  # Flower's FedAvg gives up on the whole round
    strategy = QkrumStrategy(1, method="multikrum")
    start_round(strategy, g, NODES)
    arrays, _ = strategy.aggregate_train(1, replies)
    reasons = strategy.history[-1]["reasons"]
    assert "keys" in reasons[NODES[0]] and "shape" in reasons[NODES[1]]
    assert "num-examples" in reasons[NODES[2]] and "num-examples" in reasons[NODES[3]]
    assert "> 0" in reasons[NODES[4]] and "exactly one ArrayRecord" in reasons[NODES[5]]
    # the 4 well-formed replies: m = 4 - 1, MultiKrum drops the one farthest from the others
    sel = qkrum.select(updates[6:], 1, method="multikrum")
    assert strategy.history[-1]["selected"] == sorted(NODES[6 + i] for i in sel.indices)
    np.testing.assert_allclose(flat_of(arrays), g + updates[6:][sel.selected].mean(0), atol=1e-5)


def test_evaluate_keeps_the_consistent_replies_where_fedavg_raises():
    def evaluate_reply(node, metrics):
        return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), metadata=_metadata(node))

    replies = [evaluate_reply(n, {"num-examples": 10, "accuracy": 0.5 + 0.01 * i}) for i, n in enumerate(NODES[:6])]
    replies += [evaluate_reply(NODES[6], {"num-examples": 10, "accuracy": 1.0, "extra": 3.0}),
                evaluate_reply(NODES[7], {"accuracy": 1.0}), failure(NODES[8])]
    with pytest.raises(Exception, match="keys|MetricRecord"):
        FedAvg().aggregate_evaluate(1, replies)
    metrics = QkrumStrategy(1).aggregate_evaluate(1, replies)
    assert metrics["accuracy"] == pytest.approx(np.mean([0.5 + 0.01 * i for i in range(6)]))


def test_train_metrics_average_only_the_keys_every_selected_reply_has():
    rng = np.random.default_rng(9)
    g = rng.standard_normal(D)
    updates = honest_updates(6, rng)
    replies = []
    for i, (n, u) in enumerate(zip(NODES, updates)):
        metrics = {"num-examples": 10, "loss": 1.0}
        if i == 0:
            metrics["bonus"] = 6.0  # one client's extra key would come out as 1.0 in FedAvg's average
        replies.append(reply(n, content=RecordDict({"arrays": arrays_of(g + u), "metrics": MetricRecord(metrics)})))
    strategy = QkrumStrategy(0, method="multikrum")
    start_round(strategy, g, NODES[:6])
    _, metrics = strategy.aggregate_train(1, replies)
    assert metrics["loss"] == pytest.approx(1.0) and "bonus" not in metrics


def test_failures_reported_and_round_still_aggregates():
    rng = np.random.default_rng(3)
    g = rng.standard_normal(D)
    updates = honest_updates(10, rng)
    replies = [reply(n, g + u) if i not in (4, 7) else failure(n) for i, (n, u) in enumerate(zip(NODES, updates))]
    strategy = QkrumStrategy(1, method="multikrum", project=None)
    start_round(strategy, g, NODES)
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert metrics["qkrum-failed"] == sorted([NODES[4], NODES[7]])
    ok = [i for i in range(10) if i not in (4, 7)]
    sel = qkrum.select(updates[ok], 1, method="multikrum", project=None)
    np.testing.assert_allclose(flat_of(arrays), g + updates[ok][sel.selected].mean(0), atol=1e-5)


def test_weighted_mean_with_capped_counts_matches_numpy():
    rng = np.random.default_rng(4)
    g = rng.standard_normal(D)
    updates = honest_updates(9, rng)
    counts = np.array([10, 20, 30, 40, 50, 60, 70, 80, 10**9])  # the last claims a billion examples
    replies = [reply(n, g + u, weight=int(c)) for n, u, c in zip(NODES, updates, counts)]
    for max_weight, cap in ((1.0, 1.0 * np.median(counts)), (3.0, 3.0 * np.median(counts)), (None, np.inf)):
        strategy = QkrumStrategy(0, method="multikrum", max_weight=max_weight)
        start_round(strategy, g, NODES[:9])
        arrays, _ = strategy.aggregate_train(1, replies)
        w = np.minimum(counts, cap).astype(np.float64)
        np.testing.assert_allclose(flat_of(arrays), g + (w[:, None] * updates).sum(0) / w.sum(), atol=1e-5)
    # uncapped, the claimant's share is ~1: the global moves onto its update
    np.testing.assert_allclose(flat_of(arrays), g + updates[-1], atol=1e-4)


def test_multikrum_nnm_weighted_over_mixed_rows_matches_numpy():
    rng = np.random.default_rng(5)
    g = rng.standard_normal(D)
    updates = honest_updates(9, rng, spread=0.5)
    counts = np.arange(1, 10) * 7
    replies = [reply(n, g + u, weight=int(c)) for n, u, c in zip(NODES, updates, counts)]
    strategy = QkrumStrategy(2, method="multikrum_nnm", max_weight=None)
    start_round(strategy, g, NODES[:9])
    arrays, _ = strategy.aggregate_train(1, replies)
    # reference: MultiKrum on the full updates selects; NNM mixes each client with its n - f
    # nearest (itself included); the weighted mean of the selected mixed rows
    sq = ((updates[:, None] - updates[None]) ** 2).sum(-1)
    scores = np.sort(sq, axis=1)[:, 1:9 - 2 - 1].sum(1)
    selected = np.argsort(scores, kind="stable")[:7]
    mixed = np.stack([updates[np.argsort(sq[i], kind="stable")[:7]].mean(0) for i in range(9)])
    w = counts[selected].astype(np.float64)
    expected = g + (w[:, None] * mixed[selected]).sum(0) / w.sum()
    np.testing.assert_allclose(flat_of(arrays), expected, atol=1e-5)
    assert strategy.history[-1]["selected"] == sorted(NODES[i] for i in selected)


def test_default_rule_screens_before_weighting():
    """The default's screened clients are nobody's neighbour in the weighted mix either."""
    rng = np.random.default_rng(7)
    g = rng.standard_normal(D)
    updates = honest_updates(9, rng, spread=0.02)
    updates[:2] = -updates[2:].mean(axis=0) + 0.01 * rng.standard_normal((2, D))  # flipped, near each other
    counts = np.array([10**6, 10**6, *range(20, 27)])
    replies = [reply(n, g + u, weight=int(c)) for n, u, c in zip(NODES, updates, counts)]
    strategy = QkrumStrategy(2, max_weight=None)
    start_round(strategy, g, NODES[:9])
    arrays, _ = strategy.aggregate_train(1, replies)
    assert strategy.history[-1]["rejected"] == sorted(NODES[:2])
    assert strategy.history[-1]["info"]["screened"] == [0, 1]
    honest = updates[2:]  # 7 clients left, f = 2: MultiKrum keeps all 7, each mixed over all 7
    w = counts[2:].astype(np.float64)
    expected = g + (w[:, None] * np.tile(honest.mean(axis=0), (7, 1))).sum(0) / w.sum()
    np.testing.assert_allclose(flat_of(arrays), expected, atol=1e-5)


def test_statistic_rule_unweighted_is_the_coordinate_median():
    rng = np.random.default_rng(6)
    g = rng.standard_normal(D)
    updates = rng.standard_normal((9, D))
    strategy = QkrumStrategy(2, method="median", weighted=False)
    start_round(strategy, g, NODES[:9])
    arrays, _ = strategy.aggregate_train(1, [reply(n, g + u) for n, u in zip(NODES, updates)])
    np.testing.assert_allclose(flat_of(arrays), g + np.median(updates, axis=0), atol=1e-5)


def test_too_few_replies_skip_the_round():
    g = np.zeros(D)
    strategy = QkrumStrategy(2, method="multikrum")
    start_round(strategy, g, NODES[:2])
    assert strategy.aggregate_train(1, [reply(n, g + 1.0) for n in NODES[:2]]) == (None, None)
    assert "2 usable replies for f=2" in strategy.history[-1]["skipped"]


def test_same_seed_same_selection_with_the_annealer():
    rng = np.random.default_rng(7)
    g = rng.standard_normal(D)
    updates = np.concatenate([3 + rng.standard_normal((3, D)), honest_updates(9, rng, spread=0.5)])
    nodes = [1000 + i for i in range(12)]
    runs = []
    for _ in range(2):
        strategy = QkrumStrategy(3, method=qkrum.rule("qubo", distance="euclidean"), seed=11, project=None)
        start_round(strategy, g, nodes)
        arrays, _ = strategy.aggregate_train(1, [reply(n, g + u) for n, u in zip(nodes, updates)])
        runs.append((strategy.history[-1]["selected"], flat_of(arrays)))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    assert set(runs[0][0]).isdisjoint(nodes[:3])


@pytest.mark.parametrize("kwargs, match", [
    (dict(f=-1), "f"),
    (dict(f=1.5), "f"),
    (dict(f=1, method="median"), "weighted=False"),
    (dict(f=1, method="bucketing,multikrum"), "weighted=False"),
    (dict(f=1, max_weight=0), "max_weight"),
    (dict(f=1, max_weight=float("nan")), "max_weight"),
    (dict(f=1, weighted="yes"), "weighted"),
    (dict(f=1, method="no-such-rule"), "no-such-rule"),
    (dict(f=1, m=0), "m"),
])
def test_bad_options_fail_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        QkrumStrategy(**kwargs)


def test_aggregate_without_configure_train_is_an_error():
    with pytest.raises(RuntimeError, match="configure_train"):
        QkrumStrategy(1).aggregate_train(3, [])


def test_selection_rule_selects_as_flowers_multikrum_in_bulyan():
    rng = np.random.default_rng(8)
    contents = [reply(n, rng.standard_normal(D) + (5 if i < 2 else 0)).content for i, n in enumerate(NODES)]
    rule = selection_rule("multikrum")
    for f, m in ((2, 6), (1, 8), (3, 4)):
        ours = rule(contents, f, m)
        theirs = select_multikrum(contents, num_malicious_nodes=f, num_nodes_to_select=m)
        assert {id(c) for c in ours} == {id(c) for c in theirs}
    strategy = Bulyan(num_malicious_nodes=1, selection_rule=rule)  # Bulyan needs n >= 4f + 3
    replies = [Message(content=c, metadata=_metadata(n)) for c, n in zip(contents, NODES)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert np.isfinite(flat_of(arrays)).all()
    with pytest.raises(ValueError, match="selects"):
        selection_rule("trimmed_mean")


# --- one Flower federation, in process ---------------------------------------------------

ROUNDS, NUM_NODES = 3, 10


def _update(partition: int, server_round: int) -> np.ndarray:
    rng = np.random.default_rng([partition, server_round])
    if partition < 2:  # Byzantine: huge noise every round
        return 1e4 * rng.standard_normal(D)
    return 0.1 * np.ones(D) + 0.05 * rng.standard_normal(D)


def _client_app():
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg, context):
        pid = int(context.node_config["partition-id"])
        server_round = int(msg.content["config"]["server-round"])
        if pid == 3 and server_round == 3:
            raise RuntimeError("node 3 fails in round 3")
        weights = flat_of(msg.content["arrays"])
        new = weights + _update(pid, server_round)
        if pid == 2 and server_round == 2:
            new[0] = np.nan
        content = RecordDict({"arrays": arrays_of(new), "metrics": MetricRecord({"num-examples": 10 + pid}),
                              "node": ConfigRecord({"partition-id": pid})})
        return Message(content=content, reply_to=msg)

    return app


def test_flower_federation_rejects_exactly_the_byzantine_nodes(monkeypatch):
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    out: dict = {}

    class Recording(QkrumStrategy):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            partition_of = out.setdefault("partition_of", {})
            for msg in replies:
                if not msg.has_error():
                    partition_of[msg.metadata.src_node_id] = int(msg.content["node"]["partition-id"])
            return super().aggregate_train(server_round, replies)

    server = ServerApp()

    @server.main()
    def main(grid, context):
        strategy = Recording(2, fraction_evaluate=0.0, min_train_nodes=NUM_NODES, min_available_nodes=NUM_NODES)
        out["strategy"] = strategy
        out["result"] = strategy.start(grid=grid, initial_arrays=arrays_of(np.zeros(D)), num_rounds=ROUNDS)

    run_simulation(server_app=server, client_app=_client_app(), num_supernodes=NUM_NODES,
                   backend_config={"client_resources": {"num_cpus": 1}})
    strategy = out["strategy"]
    node_of = {p: node for node, p in out["partition_of"].items()}
    assert len(strategy.history) == ROUNDS
    expected = np.zeros(D)
    for entry in strategy.history:
        r = entry["round"]
        nan_node = {node_of[2]} if r == 2 else set()
        assert set(entry["rejected"]) == {node_of[0], node_of[1]} | nan_node, r
        assert entry["failed"] == ([node_of[3]] if r == 3 else []), r
        honest = [p for p in range(2, NUM_NODES) if not (r == 2 and p == 2) and not (r == 3 and p == 3)]
        assert set(entry["selected"]) == {node_of[p] for p in honest}, r
        expected = expected + np.mean([_update(p, r) for p in honest], axis=0)
    np.testing.assert_allclose(flat_of(out["result"].arrays), expected, atol=1e-5)
