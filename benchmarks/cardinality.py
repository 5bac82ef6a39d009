"""The annealer in cardinality mode on the QUBO that MultiSignal solves, two β ranges side by side.

    python -m benchmarks.cardinality                            # n = 100 and 500, f = 20 %
    python -m benchmarks.cardinality --clients 500 --json results/cardinality.jsonl

This is the solve step of ``qkrum.select(method="multisignal")`` in its evasion regime:
synthetic honest updates with ``f = 20 %`` replaced by ALIE, the 1000 highest-variance
coordinates, the dual distance (Eq. 14), the suspicion penalty (Eq. 15), the ``"intra"``
objective without a penalty, and qkrum's annealer keeping ``|S| = m`` with exchange moves
(1000 reads, :data:`qkrum.qubo.DEFAULT_SWEEPS` sweeps).

Rows, timed interleaved (``harness.measure_pair``, median of ``--repeats``):

* ``typical-exchange hot end`` — the default: ``β_hot = ln 2 / σ_ΔE``
  (:func:`qkrum.anneal.schedule.exchange_energy_scale`);
* ``worst-case hot end`` — ``β_hot`` from the largest conceivable field, as for single
  flips (the default before the exchange scale was introduced).

Both share the cold end. ``p`` is the fraction of reads at the best known energy (the
lowest found by either row or by a reference run with 10× the sweeps).
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import attacks, kernels
from qkrum.anneal import SimulatedAnnealingSampler, bqm_from_qubo
from qkrum.anneal.adapter import qubo_vectors
from qkrum.anneal.sampler import qubo_arrays
from qkrum.anneal.schedule import default_beta_range
from qkrum.qubo import selection_qubo, suspicion_penalty
from qkrum.qubo import DEFAULT_SWEEPS
from qkrum.synthetic import honest_updates

from benchmarks.harness import ResultsLog, environment, format_table, measure_pair


def suspicion_instance(n: int, f: int, seed: int, d: int = 20_000, k: int = 1000):
    """The cardinality-mode QUBO of MultiSignal's evasion route for one synthetic ALIE round."""
    k_h, k_a, k_p = jax.random.split(jax.random.key(seed), 3)
    honest = honest_updates(k_h, n - f, d)
    x = jnp.concatenate([honest, attacks.apply("alie", k_a, honest, f)])[jax.random.permutation(k_p, n)]
    D = np.asarray(kernels.dual_distance(kernels.project_topk_variance(x, k)), dtype=np.float64)
    P, _ = suspicion_penalty(D)
    return selection_qubo(D, n - f, objective="intra", lam=0, pair_penalty=P)


def run_cell(n: int, f: int, reads: int, sweeps: int, seed: int, repeats: int) -> dict:
    Q, offset = suspicion_instance(n, f, seed)
    bqm = bqm_from_qubo(Q, offset)
    lin, (r, c, q) = qubo_vectors(Q)
    arrays = qubo_arrays(lin, r, c, q, offset)
    worst = default_beta_range(arrays.h, arrays.row_abs_sums, arrays.pairs, swaps=True)
    sampler = SimulatedAnnealingSampler()
    params = dict(cardinality=n - f, num_reads=reads, num_sweeps=sweeps, seed=seed)
    out = {}

    def run(label, **extra):
        def go():
            out[label] = sampler.sample(bqm, **params, **extra)
        return go

    ours, theirs, paired = measure_pair(run("typical"), run("worst", beta_range=worst), repeats=repeats)
    reference = sampler.sample(bqm, **{**params, "num_reads": max(reads // 10, 10), "num_sweeps": 10 * sweeps,
                                       "seed": seed + 1})
    best_known = min(float(ss.record.energy.min()) for ss in (out["typical"], out["worst"], reference))
    tol = 1e-9 * max(1.0, abs(best_known))
    rows = []
    for label, name, timing in (("typical-exchange hot end (default)", "typical", ours),
                                ("worst-case hot end", "worst", theirs)):
        energies = out[name].record.energy
        rows.append({"run": label, "beta": [float(f"{b:.4g}") for b in out[name].info["beta_range"]],
                     "wall_s": timing["median_s"], "best_energy": float(energies.min()),
                     "p_success": float(np.mean(energies <= best_known + tol))})
    return {"benchmark": "cardinality", "n": n, "f": f, "num_reads": reads, "num_sweeps": sweeps, "seed": seed,
            "repeats": repeats, "best_known": best_known, "rows": rows, "paired_ratio": paired,
            "environment": environment()}


def print_cell(cell: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"\n== n={cell['n']}  m={cell['n'] - cell['f']}  reads={cell['num_reads']}  sweeps={cell['num_sweeps']}  "
          f"best known={cell['best_known']:.6f} ==", file=out)
    print(format_table(cell["rows"], [("run", "run"), ("beta (hot, cold)", "beta"), ("wall s", "wall_s"),
                                      ("best energy", "best_energy"), ("p", "p_success")]), file=out)
    pr = cell["paired_ratio"]
    print(f"  wall time default / worst-case hot end (paired, median of {cell['repeats']}): "
          f"{pr['median']:.2f} (IQR {pr['q1']:.2f}-{pr['q3']:.2f})", file=out)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cardinality", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[100, 500], metavar="N")
    p.add_argument("--reads", type=int, default=1000)
    p.add_argument("--sweeps", type=int, default=DEFAULT_SWEEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", metavar="PATH", default=None)
    args = p.parse_args(argv)
    if min(args.clients) < 5 or args.reads < 1 or args.sweeps < 1 or args.repeats < 1:
        p.error("--clients must be >= 5 and --reads, --sweeps, --repeats >= 1")
    from tqdm import tqdm

    log = ResultsLog(args.json, key_fields=("benchmark", "n", "num_reads", "num_sweeps", "seed", "repeats"))
    cells = []
    for n in tqdm(args.clients, desc="instances", unit="cell", file=sys.stderr):
        key = {"benchmark": "cardinality", "n": n, "num_reads": args.reads, "num_sweeps": args.sweeps,
               "seed": args.seed, "repeats": args.repeats}
        cell = log.cell(key, lambda: run_cell(n, n // 5, args.reads, args.sweeps, args.seed, args.repeats))
        print_cell(cell)
        cells.append(cell)
    return cells


if __name__ == "__main__":
    main()
