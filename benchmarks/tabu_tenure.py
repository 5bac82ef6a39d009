"""How the tabu tenure decides how often a restart reaches the best energy.

    python -m benchmarks.tabu_tenure                              # n = 500, 2000; 3 seeds
    python -m benchmarks.tabu_tenure --clients 500 --tenures 5 10 20 --json results/tenure.jsonl

Random selection instances (i.i.d. uniform distances, as ``benchmarks.annealer
--time-to-target``'s ``random``), m = n/2 and 0.8 n. For each seed and tenure,
``--restarts`` restarts of qkrum's exchange tabu search run with ``confirm=0`` and the
default stall. Each row counts how many restarts ended at the lowest energy that any
tenure found on that instance, with the wall time. The default tenure
(``qkrum.anneal.tabu.DEFAULT_TENURE``) was chosen from this table.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.harness import ResultsLog, environment, format_table


def instance(n: int, seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).random((n, n))
    D = np.triu(A, 1)
    return D + D.T


def run_cell(n: int, fraction: float, seed: int, tenures: list[int], restarts: int) -> dict:
    from qkrum.anneal import ExchangeTabuSampler

    D, m = instance(n, seed), int(fraction * n)
    runs = []
    for tenure in tenures:
        t0 = time.perf_counter()
        ss = ExchangeTabuSampler().sample_dense(np.zeros(n), D, cardinality=m, num_reads=restarts, confirm=0,
                                                tenure=tenure, seed=seed)
        runs.append((tenure, ss.record.energy, time.perf_counter() - t0))
    best = min(float(e.min()) for _, e, _ in runs)
    tol = 1e-9 * max(1.0, abs(best))
    rows = [{"tenure": t, "hits": int(np.sum(e <= best + tol)), "restarts": restarts, "best_energy": float(e.min()),
             "wall_s": wall} for t, e, wall in runs]
    return {"n": n, "m": m, "fraction": fraction, "seed": seed, "tenures": tenures, "restarts": restarts,
            "best": best, "rows": rows, "environment": environment()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.tabu_tenure", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[500, 2000], metavar="N")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.8], metavar="M/N")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tenures", type=int, nargs="+", default=[3, 5, 10, 15, 20, 50])
    p.add_argument("--restarts", type=int, default=32)
    p.add_argument("--json", metavar="PATH", default=None)
    args = p.parse_args(argv)
    if min(args.clients) < 4 or not all(0 < f < 1 for f in args.fractions) or min(args.tenures) < 0:
        p.error("--clients must be >= 4, --fractions in (0, 1), --tenures >= 0")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from tqdm import tqdm

    log = ResultsLog(args.json, key_fields=("n", "fraction", "seed", "tenures", "restarts"))
    grid = [(n, fr, s) for n in args.clients for fr in args.fractions for s in args.seeds]
    cells = []
    for n, fraction, seed in tqdm(grid, desc="instances", unit="cell", file=sys.stderr):
        key = {"n": n, "fraction": fraction, "seed": seed, "tenures": args.tenures, "restarts": args.restarts}
        cell = log.cell(key, lambda: run_cell(n, fraction, seed, args.tenures, args.restarts))
        print(f"\n== n={n} m={cell['m']} seed={seed}: restarts (of {args.restarts}) at the best energy "
              f"{cell['best']:.6f} ==")
        print(format_table(cell["rows"], [("tenure", "tenure"), ("hits", "hits"), ("best energy", "best_energy"),
                                          ("wall s", "wall_s")]))
        cells.append(cell)
    return cells


if __name__ == "__main__":
    main()
