"""Detection accuracy and F1 of every selection method on every attack (paper Tables III, VII).

    python -m benchmarks.attack_table                       # n = 15, f = 3, 30 rounds, all attacks
    python -m benchmarks.attack_table --clients 100 --byzantine 20 --rounds 5 \\
        --attack clustered sign_flip alie sparse_lie gaussian scaling --json results/attacks100.jsonl
    python -m benchmarks.report results/attacks.jsonl --plot results/attacks.png

Each round draws fresh honest updates (:mod:`qkrum.synthetic`, the MNIST MLP's size by
default; no download), replaces ``f`` of them by the attack, and runs every method on the
same round. Metrics are the paper's (Table II), averaged over rounds as the paper does.
Label flip is a data-poisoning attack and needs real training: it is not in the synthetic
registry and comes with the FL simulation.

Methods compared (``--methods`` picks a subset):

* ``multikrum``: paper VI-B (projection k = 1000, squared Euclidean, n − f − 2 neighbours);
* ``qubo-paper``: the paper's QUBO as published: cosine distance, Eq. 8 (the cut) with
  ``λ = 10 · max D`` (Eqs. 10–11), the penalised QUBO annealed with 1000 reads;
* ``qubo-intra``: the within-subset objective, cardinality kept by the annealer;
* ``multisignal-paper`` / ``multisignal-intra``: the ensemble with each objective (the
  cut of Eq. 8 or the within-subset sum), the cardinality kept by the annealer;
* ``cascade``: Cascaded Dual-QUBO (intra objective).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

import qkrum
from qkrum import attacks, metrics
from qkrum.synthetic import honest_updates

from benchmarks.harness import ResultsLog, environment

METHODS = {  # table column -> (qkrum.select method, options)
    "multikrum": ("multikrum", {}),
    "qubo-paper": ("qubo-paper", {}),
    "qubo-intra": ("qubo", {"objective": "intra"}),
    # The cut objective with the cardinality kept by the annealer (not the "multisignal-paper"
    # preset, whose λ = 10·max D lets |S| drift and relies on repair).
    "multisignal-paper": ("multisignal", {"objective": "paper"}),
    "multisignal-intra": ("multisignal", {"objective": "intra"}),
    "cascade": ("cascade", {}),
}
DETECTION_KEYS = ("accuracy", "f1", "tp", "fp", "tn", "fn", "rejection_rate", "retention_rate")


def make_round(seed: int, round_index: int, attack: str, n: int, f: int, d: int):
    """Honest updates with the first ``f`` rows replaced by the attack; (x, is_byzantine)."""
    key = jax.random.fold_in(jax.random.key(seed), round_index)
    k_honest, k_attack = jax.random.split(key)
    honest = honest_updates(k_honest, n - f, d)
    byz = attacks.apply(attack, k_attack, honest, f)
    return np.concatenate([np.asarray(byz), np.asarray(honest)]), np.arange(n) < f


def run_attack(attack: str, methods: list[str], n: int, f: int, d: int, rounds: int, seed: int,
               project: int) -> dict:
    per_round: dict[str, list[dict]] = {name: [] for name in methods}
    for r in range(rounds):
        x, is_byz = make_round(seed, r, attack, n, f, d)
        for name in methods:
            method, opts = METHODS[name]
            t0 = time.perf_counter()
            sel = qkrum.select(x, f, method=method, project=project, seed=seed + r, **opts)
            det = metrics.detection(sel.selected, is_byz)
            per_round[name].append({
                **{k: det[k] for k in DETECTION_KEYS}, "seconds": time.perf_counter() - t0,
                "regime": sel.info.get("regime", sel.info.get("route")),
                "selected_count": int(sel.selected.sum()),
            })
    summary = {}
    for name, rows in per_round.items():
        regimes = [row["regime"] for row in rows if row["regime"]]
        summary[name] = {
            # Rounds where a metric is undefined (NaN) are left out of its mean.
            **{k: float(np.nanmean([row[k] for row in rows])) if any(np.isfinite(row[k]) for row in rows)
               else float("nan") for k in DETECTION_KEYS},
            "seconds_median": float(np.median([row["seconds"] for row in rows])),
            "regimes": {g: regimes.count(g) for g in sorted(set(regimes))},
        }
    return {"benchmark": "attack_table", "attack": attack, "n": n, "f": f, "d": d, "rounds": rounds,
            "seed": seed, "project": project, "methods": methods, "summary": summary, "per_round": per_round,
            "environment": environment()}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attack_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=15, metavar="N", help="clients per round (default: 15)")
    p.add_argument("--byzantine", type=int, default=3, metavar="F", help="Byzantine clients (default: 3)")
    p.add_argument("--dim", type=int, default=159_010, metavar="D", help="update dimension (default: 159,010)")
    p.add_argument("--rounds", type=int, default=30, help="rounds per attack (default: 30, as the paper)")
    p.add_argument("--attack", nargs="+", default=list(attacks.TABLE_I), choices=sorted(attacks.AGNOSTIC),
                   metavar="NAME", help="attacks (default: all)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="NAME",
                   help=f"methods (default: all of {', '.join(METHODS)})")
    p.add_argument("--project", type=int, default=1000, metavar="K", help="projection width (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", default=None,
                   help="append one JSON line per finished attack; rerunning skips finished attacks")
    args = p.parse_args(argv)
    if args.clients - args.byzantine - 2 < 1 or args.byzantine < 1:
        p.error(f"need 1 <= --byzantine and --clients - --byzantine - 2 >= 1, got --clients {args.clients} "
                f"--byzantine {args.byzantine}")
    if args.rounds < 1 or args.dim < 1 or args.project < 1:
        p.error("--rounds, --dim and --project must be >= 1")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from tqdm import tqdm

    from benchmarks.report import attack_tables

    log = ResultsLog(args.json, key_fields=("attack", "n", "f", "d", "rounds", "seed", "project", "methods"))
    cells = []
    for attack in tqdm(args.attack, desc="attacks", unit="attack", file=sys.stderr):
        key = {"attack": attack, "n": args.clients, "f": args.byzantine, "d": args.dim, "rounds": args.rounds,
               "seed": args.seed, "project": args.project, "methods": args.methods}
        cells.append(log.cell(key, lambda: run_attack(attack, args.methods, args.clients, args.byzantine, args.dim,
                                                      args.rounds, args.seed, args.project)))
    print(attack_tables(cells))
    return cells


if __name__ == "__main__":
    main()
