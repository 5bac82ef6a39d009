"""The ClientApp: partition ``partition-id`` trains the paper's MLP on its shard, or, for
``partition-id < byzantine``, sends the configured attack's update instead."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from qkrum_flower_example import task


def make(overrides: dict | None = None) -> ClientApp:
    """A ClientApp with the settings ``overrides`` on top of the run config."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        cfg = task.settings({**dict(context.run_config), **(overrides or {})})
        pid = int(context.node_config["partition-id"])
        parts = int(context.node_config["num-partitions"])
        server_round = int(msg.content["config"]["server-round"])
        (weights,) = msg.content["arrays"].to_numpy_ndarrays()
        if pid < int(cfg["byzantine"]):
            update, size = task.byzantine_update(cfg, weights, pid, parts, server_round)
        else:
            update, size = task.local_update(cfg, weights, pid, parts, server_round)
        reply = ArrayRecord([np.asarray(weights + update, np.float32)])
        metrics = MetricRecord({"num-examples": size})
        # Who this node is, for the example's printout only (the strategy never reads it).
        node = ConfigRecord({"partition-id": pid})
        return Message(content=RecordDict({"arrays": reply, "metrics": metrics, "node": node}), reply_to=msg)

    return app


#: What ``flwr run`` loads (``[tool.flwr.app.components]``).
app = make()
