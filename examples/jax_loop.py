"""A JAX federated training loop with qkrum as the server's aggregation step.

    python examples/jax_loop.py --rounds 10 --attack gaussian

The README's optax loop ("In a JAX training loop") with real clients: an MLP in plain JAX,
``n`` clients each running a few local SGD steps on their shard of a dataset (vmapped, one
jitted call per round), ``f`` of them replaced by a qkrum attack, and the server step
``qkrum.aggregator`` → ``optax`` jitted around the host selection. Each round prints the
test accuracy and which clients the server rejected; ``--method mean`` is plain FedAvg for
comparison. The offline ``digits`` dataset is the default (``--dataset mnist`` reads
``$QKRUM_DATA_DIR``). Needs ``pip install 'qkrum[fl]'`` (scikit-learn for digits).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import qkrum
from qkrum import attacks
from qkrum.fl import load_dataset, partition


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help="digits (offline), mnist or fashion-mnist")
    parser.add_argument("--clients", type=int, default=15)
    parser.add_argument("--byzantine", type=int, default=3, help="clients 0 .. byzantine-1 are Byzantine")
    parser.add_argument("--attack", default="sign_flip", help="a qkrum attack (qkrum.attacks.ATTACKS)")
    parser.add_argument("--method", default=qkrum.rules.DEFAULT, help="the server's qkrum rule ('mean': FedAvg)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.1, help="clients' SGD learning rate")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def init_mlp(key, sizes):
    params = []
    for k, (a, b) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        params.append({"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)})
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(mlp(params, x), y).mean()


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    ds = load_dataset(args.dataset)
    x_train = jnp.asarray(ds.train_images.reshape(len(ds.train_images), -1))
    y_train = jnp.asarray(ds.train_labels)
    x_test = jnp.asarray(ds.test_images.reshape(len(ds.test_images), -1))
    y_test = jnp.asarray(ds.test_labels)
    n, f = args.clients, args.byzantine
    parts = partition(ds.train_labels, n, scheme="iid", seed=args.seed)
    size = min(len(p) for p in parts)  # equal shards, so the clients stack into one array
    shards = jnp.asarray(np.stack([p[:size] for p in parts]))
    batch = min(32, size)

    params = init_mlp(jax.random.key(args.seed), [x_train.shape[1], 64, ds.num_classes])
    local = optax.sgd(args.lr)

    def client_update(params, idx, key):  # local SGD from the global params; returns W' - W
        def step(p, k):
            b = jax.random.choice(k, idx, (batch,), replace=False)
            grads = jax.grad(loss_fn)(p, x_train[b], y_train[b])
            return optax.apply_updates(p, local.update(grads, local.init(p))[0]), None

        new, _ = jax.lax.scan(step, params, jax.random.split(key, args.local_steps))
        return jax.tree.map(jnp.subtract, new, params)

    train_round = jax.jit(jax.vmap(client_update, in_axes=(None, 0, 0)))

    agg = qkrum.aggregator(f=f, method=args.method, num_clients=n)
    server = optax.sgd(learning_rate=1.0)  # W_{t+1} = W_t + aggregate

    @jax.jit
    def server_step(params, client_updates, agg_state, opt_state):
        mean_update, agg_state = agg.update(client_updates, agg_state)
        step, opt_state = server.update(jax.tree.map(jnp.negative, mean_update), opt_state, params)
        return optax.apply_updates(params, step), agg_state, opt_state

    accuracy = jax.jit(lambda p: jnp.mean(jnp.argmax(mlp(p, x_test), -1) == y_test))
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    agg_state, opt_state = agg.init(params), server.init(params)
    rows = []
    for t in range(args.rounds):
        key = jax.random.fold_in(jax.random.key(args.seed), t)
        updates = train_round(params, shards, jax.random.split(key, n))
        if f and args.attack != "none":
            honest = jax.vmap(lambda u: jax.flatten_util.ravel_pytree(u)[0])(updates)[f:]
            byz = attacks.apply(args.attack, jax.random.fold_in(key, 1), honest, f)
            updates = jax.vmap(unravel)(jnp.concatenate([byz, honest]))
        params, agg_state, opt_state = server_step(params, updates, agg_state, opt_state)
        row = {"round": t + 1, "test_accuracy": round(float(accuracy(params)), 4),
               "rejected": np.flatnonzero(~np.asarray(agg_state.selected)).tolist()}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
