"""The ServerApp: FedAvg's loop with qkrum's strategy (or Flower's own MultiKrum, or plain
FedAvg, for comparison); the global model is evaluated on the test split every round and
the rejected node ids are printed."""

from __future__ import annotations

import json
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, MultiKrum

from qkrum.flower import QkrumStrategy
from qkrum_flower_example import task


def strategy_for(cfg: dict, num_nodes: int):
    common = dict(fraction_evaluate=0.0, min_train_nodes=num_nodes, min_available_nodes=num_nodes)
    if cfg["strategy"] == "qkrum":
        cap = float(cfg["max-weight"])
        return QkrumStrategy(int(cfg["f"]), method=cfg["method"], seed=int(cfg["seed"]),
                             max_weight=cap if cap > 0 else None, **common)
    if cfg["strategy"] == "flower-multikrum":
        f = int(cfg["f"])
        return MultiKrum(num_malicious_nodes=f, num_nodes_to_select=num_nodes - f, **common)
    if cfg["strategy"] == "fedavg":
        return FedAvg(**common)
    raise ValueError(f"strategy must be 'qkrum', 'flower-multikrum' or 'fedavg', got strategy={cfg['strategy']!r}")


def make(overrides: dict | None = None, results: list | None = None, out: Path | None = None) -> ServerApp:
    """A ServerApp with the settings ``overrides``; each round's record (test accuracy,
    and for qkrum the selection) is printed as a JSON line, appended to ``results`` and,
    with ``out``, to that file (flushed as each round ends)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = task.settings({**dict(context.run_config), **(overrides or {})})
        num_nodes = len(list(grid.get_node_ids()))
        strategy = strategy_for(cfg, num_nodes)
        partition_of: dict[int, int] = {}  # node id -> partition id, from the replies' "node" record
        failures: dict[int, list[str]] = {}  # round -> the failed replies' reasons
        aggregate_train = strategy.aggregate_train

        def recording_aggregate_train(server_round, replies):
            replies = list(replies)
            for msg in replies:
                if msg.has_error():
                    failures.setdefault(server_round, []).append(msg.error.reason)
                else:
                    partition_of[msg.metadata.src_node_id] = int(msg.content["node"]["partition-id"])
            return aggregate_train(server_round, replies)

        strategy.aggregate_train = recording_aggregate_train

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            (weights,) = arrays.to_numpy_ndarrays()
            acc, loss = task.test_accuracy(cfg, weights)
            row = {"strategy": cfg["strategy"], "attack": cfg["attack"], "round": server_round,
                   "test_accuracy": round(acc, 4)}
            if failures.get(server_round):  # a ClientApp that raised: its reason, once
                row["failures"] = len(failures[server_round])
                row["failure"] = failures[server_round][0][-300:]
            if isinstance(strategy, QkrumStrategy) and strategy.history and server_round > 0:
                last = strategy.history[-1]
                row.update(rejected=last["rejected"],
                           rejected_partitions=sorted(partition_of.get(node, -1) for node in last["rejected"]))
            print(json.dumps(row), flush=True)
            if results is not None:
                results.append(row)
            if out is not None:
                with open(out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
            return MetricRecord({"accuracy": acc, "loss": loss})

        strategy.start(grid=grid, initial_arrays=ArrayRecord([task.initial_params(cfg)]),
                       num_rounds=int(cfg["num-server-rounds"]), train_config=ConfigRecord(),
                       evaluate_fn=evaluate)

    return app


#: What ``flwr run`` loads (``[tool.flwr.app.components]``).
app = make()
