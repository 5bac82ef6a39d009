"""What the ServerApp and the ClientApp share: the run's settings, the data, the paper's
MLP and its local training (qkrum.fl's, the same as ``qkrum simulate``), and the Byzantine
clients' attack.

Settings come from ``[tool.flwr.app.config]`` in pyproject.toml (``flwr run``,
overridable with ``--run-config``), or from :func:`settings` called with overrides
(``simulate.py``, which builds the apps with :func:`qkrum_flower_example.client_app.make`
and :func:`qkrum_flower_example.server_app.make`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from qkrum import attacks
from qkrum.fl import LocalConfig, load_dataset, local_trainer, model_for, partition
from qkrum.fl.simulation import defaults_for
from qkrum.fl.training import evaluator

#: Every setting and its default (the keys of ``[tool.flwr.app.config]``).
DEFAULTS: dict[str, Any] = {
    "num-server-rounds": 5,
    "dataset": "mnist",  # "mnist" / "fashion-mnist" need $QKRUM_DATA_DIR; "digits" ships with scikit-learn
    "partition": "dirichlet",
    "alpha": 0.5,
    "local-epochs": 1,
    "byzantine": 2,  # partitions 0 .. byzantine-1 are Byzantine (the server is not told which)
    "attack": "sign_flip",  # any qkrum attack name, "label_flip" or "none"
    "strategy": "qkrum",  # "qkrum", "flower-multikrum" (Flower's own MultiKrum) or "fedavg"
    "method": "multikrum_nnm",  # the qkrum rule of strategy "qkrum"
    "max-weight": 1.0,  # QkrumStrategy's cap on a reported example count, x the median (0: uncapped)
    "f": 2,  # Byzantine clients the server tolerates
    "seed": 0,
}


STRATEGIES = ("qkrum", "flower-multikrum", "fedavg")


def settings(overrides: dict | None = None) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with ``overrides`` (a run config), checked: an unknown key,
    strategy or attack is an error naming it (raised in the ServerApp before round 1)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **overrides}
    if cfg["strategy"] not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got strategy={cfg['strategy']!r}")
    if cfg["attack"] not in ("none", "label_flip"):
        name, _ = attacks.parse_attack(cfg["attack"])
        if name not in attacks.ATTACKS:
            raise ValueError(f"unknown attack={cfg['attack']!r}; valid: none, label_flip, {', '.join(attacks.ATTACKS)}")
    return cfg


@functools.lru_cache(maxsize=4)
def data(name: str):
    return load_dataset(name)


def model(name: str):
    return model_for(name)


def initial_params(cfg: dict) -> np.ndarray:
    """The global model's first parameters, flat float32 (one array in the ArrayRecord)."""
    params = model(cfg["dataset"]).init(jax.random.key(int(cfg["seed"])))
    return np.asarray(ravel_pytree(params)[0], np.float32)


@functools.lru_cache(maxsize=8)
def trainer_for(dataset: str, num_partitions: int, scheme: str, alpha: float, epochs: int, seed: int):
    """qkrum.fl's jitted local training of every partition (built once per process)."""
    ds = data(dataset)
    parts = partition(ds.train_labels, num_partitions, scheme=scheme, alpha=alpha, seed=seed)
    # qkrum simulate's local SGD for the dataset (the paper's for MNIST; a larger step for
    # the tiny digits shards), with the app's number of local epochs.
    d = defaults_for(dataset)
    local = LocalConfig(learning_rate=d["lr"], weight_decay=d["weight_decay"], clip_norm=d["clip_norm"],
                        batch_size=d["batch_size"], local_epochs=epochs)
    return local_trainer(model(dataset), ds.train_images, ds.train_labels, parts, local)


def local_update(cfg: dict, flat_params: np.ndarray, partition_id: int, num_partitions: int, server_round: int,
                 flip: bool = False) -> tuple[np.ndarray, int]:
    """Partition ``partition_id``'s honest update ``W' − W`` (flat) and its number of examples."""
    trainer = trainer_for(cfg["dataset"], num_partitions, cfg["partition"], float(cfg["alpha"]),
                          int(cfg["local-epochs"]), int(cfg["seed"]))
    params = trainer.unravel(jnp.asarray(flat_params))
    key = jax.random.fold_in(jax.random.key(int(cfg["seed"])), server_round)
    flips = np.zeros(num_partitions, bool)
    flips[partition_id] = flip
    update, _ = trainer.train_client(params, partition_id, key, flips)
    return np.asarray(update, np.float32), int(trainer.sizes[partition_id])


def byzantine_update(cfg: dict, flat_params: np.ndarray, partition_id: int, num_partitions: int,
                     server_round: int) -> tuple[np.ndarray, int]:
    """Byzantine partition ``partition_id``'s update, crafted by the configured attack.

    The attackers are omniscient, the threat model of ALIE, IPM, min-max and of qkrum's own
    simulator: each Byzantine node computes every honest partition's update itself (the
    same training, keys and data as the honest nodes, so the same updates) and hands them
    to ``qkrum.attacks.apply``; all Byzantine nodes draw the same key, so they agree on the
    ``byzantine`` crafted rows, and this one sends its row. Adaptive attacks also get the
    server's rule, run on the crafted rows beside the honest ones (white box)."""
    b = int(cfg["byzantine"])
    name = cfg["attack"]
    if name == "label_flip":
        return local_update(cfg, flat_params, partition_id, num_partitions, server_round, flip=True)
    own, size = local_update(cfg, flat_params, partition_id, num_partitions, server_round)
    if name == "none":
        return own, size
    honest = jnp.asarray(np.stack([local_update(cfg, flat_params, j, num_partitions, server_round)[0]
                                   for j in range(b, num_partitions)]))
    name, options = attacks.parse_attack(name)
    wanted = attacks.context_parameters(name) - set(options)
    if "own" in wanted:  # the colluders' own honest updates (this partition's is computed above)
        options["own"] = jnp.asarray(np.stack([
            own if j == partition_id else local_update(cfg, flat_params, j, num_partitions, server_round)[0]
            for j in range(b)]))
    if "round" in wanted:
        options["round"] = server_round
    if "defence" in wanted:
        options["defence"] = server_defence(cfg, honest)
    key = jax.random.fold_in(jax.random.key(int(cfg["seed"]) + 1), server_round)
    crafted = attacks.apply(name, key, honest, b, **options)
    return np.asarray(crafted[partition_id], np.float32), size


def server_defence(cfg: dict, honest: jax.Array):
    """``defence(byz) -> (aggregate, info)``: the server's rule on the crafted rows followed
    by the honest ones (what the adaptive attacks search against)."""
    import qkrum
    from qkrum.selection import PAPER_PROJECTION

    if cfg["strategy"] == "qkrum":
        rule, project = qkrum.rule(cfg["method"]), PAPER_PROJECTION  # QkrumStrategy's defaults
    elif cfg["strategy"] == "flower-multikrum":
        rule, project = qkrum.rule("multikrum"), None  # Flower's MultiKrum: full weights, m = n - f
    else:
        rule, project = qkrum.rule("mean"), None

    def defence(byz):
        x = jnp.concatenate([jnp.asarray(byz), honest])
        sel = qkrum.select(x, int(cfg["f"]), method=rule, project=project)
        return jnp.asarray(sel.aggregate(x)), {"selected": sel.selected}

    return defence


def test_accuracy(cfg: dict, flat_params: np.ndarray) -> tuple[float, float]:
    """(accuracy, loss) of flat parameters on the dataset's test split."""
    evaluate, unravel = _evaluator(cfg["dataset"])
    acc, loss = evaluate(unravel(jnp.asarray(flat_params)))
    return float(acc), float(loss)


@functools.lru_cache(maxsize=4)
def _evaluator(name: str):
    ds, m = data(name), model(name)
    _, unravel = ravel_pytree(m.init(jax.random.key(0)))
    return evaluator(m, ds.test_images, ds.test_labels), unravel
