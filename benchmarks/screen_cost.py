"""What the default's direction screen costs: seconds of ``qkrum.select`` + ``aggregate`` for
``screened_multikrum_nnm`` (the default) against ``multikrum_nnm`` (the rule behind it), timed
interleaved in one process on the same real round, with and without attackers to screen.

    python -m benchmarks.screen_cost --dataset mnist --clients 15 100 --json results/screen_cost.jsonl
    python -m benchmarks.screen_cost --dataset digits --clients 10 --repeats 2      # a smoke run

The round: the honest updates of round ``warmup + 1`` of clean FedAvg
(:func:`benchmarks.robustness.honest_rounds`), ``f = 20 %`` of the slots replaced by an
attack: ``lie`` (nothing to screen: the screen's overhead alone) and ``sign_flip`` (``f``
clients screened: MultiKrum's scores are computed again without them). Medians of
``--repeats`` paired timings after a warm-up (:func:`benchmarks.harness.measure_pair`).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import qkrum
from qkrum import attacks

from benchmarks.harness import ResultsLog, environment, format_table, measure_pair
from benchmarks.robustness import honest_rounds


def time_round(x: np.ndarray, f: int, *, repeats: int) -> dict:
    def run(method):
        def call():
            sel = qkrum.select(x, f, method=method)
            return jax.block_until_ready(sel.aggregate(x))
        return call

    ours, theirs, ratio = measure_pair(run("screened_multikrum_nnm"), run("multikrum_nnm"), repeats=repeats)
    screened = len(qkrum.select(x, f).info["screened"])
    return {"screened_s": ours["median_s"], "multikrum_nnm_s": theirs["median_s"], "ratio_median": ratio["median"],
            "ratio_q1": ratio["q1"], "ratio_q3": ratio["q3"], "screened": screened}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.screen_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", help="dataset (default: mnist; QKRUM_DATA_DIR)")
    p.add_argument("--data-dir", default=None, help="dataset directory (default: QKRUM_DATA_DIR)")
    p.add_argument("--clients", type=int, nargs="+", default=[15, 100], help="clients per round (default: 15 100)")
    p.add_argument("--warmup", type=int, default=2, help="clean FedAvg rounds before the timed one (default: 2)")
    p.add_argument("--repeats", type=int, default=7, help="paired timings (default: 7)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="append rows here (resumable)")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    log = ResultsLog(args.json, ("dataset", "n", "f", "attack", "seed", "repeats"))
    env, rows = environment(), []
    for n in args.clients:
        f = max(1, n // 5)
        honest_all = honest_rounds(args.dataset, n, warmup=args.warmup, rounds=1, seed=args.seed,
                                   data_dir=args.data_dir)[0]
        slots = np.sort(np.random.default_rng(args.seed).choice(n, f, replace=False))
        honest = jnp.asarray(np.delete(honest_all, slots, axis=0))
        for attack in ("lie", "sign_flip"):
            x = honest_all.copy()
            x[slots] = np.asarray(attacks.apply(attack, jax.random.key(args.seed), honest, f))
            key = {"dataset": args.dataset, "n": n, "f": f, "attack": attack, "seed": args.seed,
                   "repeats": args.repeats}
            rows.append(log.cell(key, lambda: {**key, **time_round(x, f, repeats=args.repeats), "environment": env}))
    print(format_table(rows, [("n", "n"), ("f", "f"), ("attack", "attack"), ("screened", "screened"),
                              ("screened_multikrum_nnm s", "screened_s"), ("multikrum_nnm s", "multikrum_nnm_s"),
                              ("ratio (median)", "ratio_median"), ("q1", "ratio_q1"), ("q3", "ratio_q3")]))
    return rows


if __name__ == "__main__":
    main()
