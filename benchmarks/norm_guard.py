"""Does qkrum's magnitude guard (``select(norm_guard=...)``) ever take a decision away from
the methods on the paper's attacks? Real client updates, every attack, guard on and off.

    QKRUM_DATA_DIR=../shared/datasets python -m benchmarks.norm_guard --dataset mnist
    python -m benchmarks.norm_guard --dataset digits --rounds 1          # offline smoke run

One federated round as :func:`qkrum.fl.simulate` trains it (the paper's MLP, ``--clients``
clients split Dirichlet(0.5), the simulation's local training) from the initial model and
after ``--warmup`` FedAvg rounds; the ``f`` Byzantine updates of every attack of
:data:`qkrum.attacks.TABLE_I` replace ``f`` of them, plus the hostile cases the guard is
for (one client 1e9× and 1e12× the honest median norm). For each case and method the table
shows the largest Byzantine norm over the honest median, the clients the guard flagged, and
the detection F1 with the default guard and with ``norm_guard=None``.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import qkrum
from qkrum import attacks, metrics

from benchmarks.harness import format_table

METHODS = ("multikrum", "qubo", "multisignal", "qubo-paper", "krum", "geometric_median")
HUGE = {"huge_1e9": 1e9, "huge_1e12": 1e12}


def honest_round(dataset: str, clients: int, f: int, warmup: int, seed: int):
    """Honest updates of ``clients − f`` clients after ``warmup`` FedAvg rounds."""
    from qkrum.fl.simulation import simulate

    history = simulate(dataset, clients=clients - f, byzantine=0, method="mean", rounds=max(warmup, 1),
                       seed=seed, progress=False) if warmup else None
    from qkrum.fl.data import load_dataset
    from qkrum.fl.models import model_for
    from qkrum.fl.partition import partition
    from qkrum.fl.training import LocalConfig, local_trainer, pad_clients

    data = load_dataset(dataset)
    parts = partition(np.asarray(data.train_labels), clients - f, scheme="dirichlet", alpha=0.5, seed=seed)
    client_data = pad_clients(parts, len(data.train_labels))
    model = model_for(tuple(np.shape(data.train_images)[1:]), int(data.num_classes))
    trainer = local_trainer(model, data.train_images, data.train_labels, client_data, LocalConfig())
    params = history.params if history is not None else model.init(jax.random.key(seed))
    updates, _ = trainer.train_round(params, jax.random.key(seed + 7))
    return np.asarray(updates, np.float32)


def crafted(case: str, honest: np.ndarray, f: int, seed: int) -> np.ndarray:
    if case in HUGE:
        unit = np.median(np.linalg.norm(honest, axis=1))
        direction = honest.mean(0) / np.linalg.norm(honest.mean(0))
        byz = np.array(attacks.apply("alie", jax.random.key(seed), jnp.asarray(honest), f))
        byz[0] = HUGE[case] * unit * direction
        return byz
    return np.asarray(attacks.apply(case, jax.random.key(seed), jnp.asarray(honest), f))


def run(dataset: str, clients: int, f: int, warmups: list[int], seed: int) -> list[dict]:
    rows = []
    for warmup in warmups:
        honest = honest_round(dataset, clients, f, warmup, seed)
        unit = np.median(np.linalg.norm(honest, axis=1))
        for case in [*sorted(attacks.TABLE_I), *HUGE]:
            byz = crafted(case, honest, f, seed + 1)
            x = np.concatenate([honest, byz]).astype(np.float32)
            is_byz = np.arange(clients) >= clients - f
            ratio = float(np.linalg.norm(byz, axis=1).max() / unit)
            for method in METHODS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    on = qkrum.select(x, f, method=method, seed=seed)
                    off = qkrum.select(x, f, method=method, seed=seed, norm_guard=None)
                f1 = [metrics.detection(s.selected, is_byz)["f1"] for s in (on, off)]
                err = [float(np.linalg.norm(np.asarray(s.aggregate(x)) - honest.mean(0)) / unit) for s in (on, off)]
                rows.append({"warmup": warmup, "attack": case, "method": method, "byz_norm_ratio": ratio,
                             "outsized": on.info["outsized"], "f1_guard": f1[0], "f1_off": f1[1],
                             "err_guard": err[0], "err_off": err[1]})
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.norm_guard", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", help="dataset (default: mnist, from QKRUM_DATA_DIR)")
    p.add_argument("--clients", type=int, default=15, help="clients n (default: 15)")
    p.add_argument("--byzantine", type=int, default=3, help="Byzantine clients f (default: 3)")
    p.add_argument("--warmup", type=int, nargs="+", default=[0, 5], metavar="R",
                   help="FedAvg rounds before the measured one (default: 0 5)")
    p.add_argument("--rounds", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    warmups = [0] if args.rounds == 1 else args.warmup
    rows = run(args.dataset, args.clients, args.byzantine, warmups, args.seed)
    for r in rows:
        r["outsized_s"] = str(r["outsized"])
    print(format_table(rows, [("warmup", "warmup"), ("attack", "attack"), ("method", "method"),
                              ("byz/honest norm", "byz_norm_ratio"), ("outsized", "outsized_s"),
                              ("F1 guard", "f1_guard"), ("F1 off", "f1_off"), ("err guard", "err_guard"),
                              ("err off", "err_off")]))
    changed = [r for r in rows if r["attack"] not in HUGE and r["outsized"]]
    print(f"\nLegend: byz/honest norm = largest Byzantine norm over the honest median; outsized = clients the "
          f"guard (norm_guard={qkrum.NORM_GUARD:g}) flagged; err = |aggregate - honest mean| in honest median "
          f"norms (lower is better).\nVERDICT: the guard flagged a client in {len(changed)} of "
          f"{sum(r['attack'] not in HUGE for r in rows)} paper-attack cells "
          f"({'it never takes a decision from the methods' if not changed else 'see the rows above'}); worst "
          f"error with one 1e12x client: guard {max(r['err_guard'] for r in rows if r['attack'] == 'huge_1e12'):.3g}, "
          f"off {max(r['err_off'] for r in rows if r['attack'] == 'huge_1e12'):.3g}.")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
