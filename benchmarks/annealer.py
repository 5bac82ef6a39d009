"""qkrum's annealer beside dwave-samplers on the paper's selection QUBOs, in the same run.

    python -m benchmarks.annealer                       # n = 15, 100, 500; f = 20 %
    python -m benchmarks.annealer --clients 100 --json results/annealer.jsonl
    python -m benchmarks.annealer --time-to-target --clients 100 500 2000 --json results/ttt.jsonl

``--time-to-target`` compares the solvers of the selection problem (choose ``m`` of ``n``
minimising the within-subset distance sum) by the wall time they need to reach a target
energy, documented at :func:`run_ttt_cell`. Without it, the annealers are compared read
for read, as follows.

Instances: honest synthetic updates (:mod:`qkrum.synthetic`) with ``f = 20 %`` of them
replaced by an attack (ALIE by default), projected to the 1000 highest-variance
coordinates, cosine distances (Eq. 5), and the QUBO of Eqs. 10–11 with the paper's
``λ = 10 · max D`` (``--objective intra`` adds the within-subset objective with the
provable penalty). Each sampler gets the same ``num_reads`` and ``num_sweeps``.

Rows: ``qkrum (defaults)`` (qkrum's β range; exchange moves on, as qkrum detects the
cardinality penalty) and ``dwave-sa (defaults)``; then, like for like, both with single
flips only and qkrum's β range, which separates the implementation's speed from the
schedule's and the move set's quality.

Columns: wall time; best energy; ``p`` = fraction of reads within 1e-9 (relative) of the
best known energy (exact for n ≤ 20: all 2^n states; otherwise the lowest energy any run
found, including a reference run of qkrum with 10× the sweeps); ``TTS99`` =
``t_read · ln(0.01) / ln(1 − p)`` with ``t_read`` = wall time / num_reads (reads run in
parallel where the sampler can), ``inf`` when no read succeeded; flip attempts per
second; ``|S|`` of the best sample; and ``swaps`` = the number of improving one-for-one
exchanges (one selected client out, one unselected in) left in the best sample.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import attacks, kernels
from qkrum.anneal import SimulatedAnnealingSampler, bqm_from_qubo, exact_ground_state
from qkrum.anneal.sampler import qubo_arrays
from qkrum.anneal.adapter import qubo_vectors
from qkrum.anneal.schedule import default_beta_range
from qkrum.qubo import selection_qubo
from qkrum.synthetic import honest_updates

from benchmarks.harness import ResultsLog, environment, format_table

DEFAULT_SWEEPS = {15: 100, 100: 1000, 500: 1000}
EXACT_MAX_N = 20


def selection_instance(n: int, f: int, attack: str, objective: str, seed: int, d: int = 20_000, k: int = 1000):
    """Distances of one round's updates and the selection QUBO built from them."""
    k_h, k_a, k_p = jax.random.split(jax.random.key(seed), 3)
    honest = honest_updates(k_h, n - f, d)
    byz = attacks.apply(attack, k_a, honest, f)
    x = jnp.concatenate([honest, byz])[jax.random.permutation(k_p, n)]
    D = np.asarray(kernels.pairwise_cosine_distance(kernels.project_topk_variance(x, k)), dtype=np.float64)
    lam = "paper" if objective == "paper" else None
    Q, offset = selection_qubo(D, n - f, objective=objective, lam=lam)
    return Q, offset


def improving_swaps(Q: np.ndarray, x: np.ndarray, tol: float) -> int:
    """Pairs (i selected, j not) whose exchange lowers the energy by more than ``tol``."""
    lin, (r, c, q) = qubo_vectors(Q)
    n = lin.shape[0]
    J = np.zeros((n, n))
    J[r, c] = q
    J = J + J.T
    x = x.astype(np.float64)
    field = lin + J @ x
    inside, outside = np.flatnonzero(x == 1), np.flatnonzero(x == 0)
    if not inside.size or not outside.size:
        return 0
    delta = field[outside][None, :] - J[np.ix_(inside, outside)] - field[inside][:, None]
    return int(np.sum(delta < -tol))


def dwave_default_range(bqm):
    from dwave.samplers.sa.sampler import _default_ising_beta_range

    spin = bqm.change_vartype("SPIN", inplace=False)
    return tuple(float(b) for b in _default_ising_beta_range(spin.linear, spin.quadratic))


def run_sampler(sampler, bqm, *, repeats, **params):
    """Samples and energies of one run, and the median wall time over up to ``repeats``
    identical runs after one untimed warm-up (same seed, same samples; runs over 20 s are
    timed once, and repeats stop once a row has used 60 s)."""
    t0 = time.perf_counter()
    sampler.sample(bqm, **params)  # warm-up: thread pools, caches, first-call imports
    if time.perf_counter() - t0 > 20:  # a long run is its own warm-up; time it once more only
        repeats = 1
    walls = []
    while True:
        t0 = time.perf_counter()
        ss = sampler.sample(bqm, **params)
        walls.append(time.perf_counter() - t0)
        if len(walls) >= repeats or sum(walls) > 60:
            break
    order = [ss.variables.index(v) for v in range(bqm.num_variables)]
    samples = ss.record.sample[:, order].astype(np.int8)
    energies = bqm.energies((samples, range(bqm.num_variables)))
    attempts = ss.info.get("flip_attempts")
    if attempts is None:  # dwave-samplers: one single-flip attempt per variable per sweep
        attempts = params["num_reads"] * params["num_sweeps"] * bqm.num_variables
    return samples, energies, float(np.median(walls)), len(walls), attempts, ss.info.get("swap_moves", False)


ROWS = (  # (label, sampler, beta range, extra parameters)
    ("qkrum (defaults)", "qkrum", "qkrum", {}),
    ("dwave-sa (defaults)", "dwave-sa", "dwave", {}),
    ("qkrum single-flip", "qkrum", "qkrum", {"swap_moves": False}),
    ("dwave-sa, qkrum range", "dwave-sa", "qkrum", {}),
)


def run_cell(n, f, attack, objective, num_reads, num_sweeps, seed, repeats) -> dict:
    from dwave.samplers import SimulatedAnnealingSampler as DWaveSA

    Q, offset = selection_instance(n, f, attack, objective, seed)
    bqm = bqm_from_qubo(Q, offset)
    lin, (r, c, q) = qubo_vectors(Q)
    arrays = qubo_arrays(lin, r, c, q, offset)
    ranges = {"qkrum": default_beta_range(arrays.h, arrays.row_abs_sums, arrays.pairs),
              "dwave": dwave_default_range(bqm)}
    samplers = {"qkrum": SimulatedAnnealingSampler(), "dwave-sa": DWaveSA()}
    rows, runs = [], []
    for label, sampler_name, range_name, extra in ROWS:
        samples, energies, wall, done, attempts, swaps_on = run_sampler(
            samplers[sampler_name], bqm, repeats=repeats, num_reads=num_reads, num_sweeps=num_sweeps,
            beta_range=ranges[range_name], seed=seed, **extra)
        runs.append((samples, energies))
        rows.append({"run": label, "sampler": sampler_name, "beta_range": range_name,
                     "beta": [float(f"{b:.4g}") for b in ranges[range_name]], "swap_moves": bool(swaps_on),
                     "wall_s": wall, "timed_runs": done, "attempts_per_s": attempts / wall})

    if n <= EXACT_MAX_N:
        best_known, certified = exact_ground_state(Q, offset).energy, True
    else:
        _, ref_energies, *_ = run_sampler(samplers["qkrum"], bqm, repeats=1, num_reads=max(num_reads // 10, 10),
                                          num_sweeps=10 * num_sweeps, seed=seed + 1)
        best_known = float(min(ref_energies.min(), *(e.min() for _, e in runs)))
        certified = False
    tol = 1e-9 * max(1.0, abs(best_known))
    for row, (samples, energies) in zip(rows, runs):
        best = int(np.argmin(energies))
        p = float(np.mean(energies <= best_known + tol))
        row.update(best_energy=float(energies[best]), p_success=p, tts99_s=_tts(row["wall_s"] / num_reads, p),
                   size=int(samples[best].sum()), swaps_left=improving_swaps(Q, samples[best], tol))
    return {"n": n, "f": f, "m": n - f, "attack": attack, "objective": objective, "num_reads": num_reads,
            "num_sweeps": num_sweeps, "seed": seed, "repeats": repeats, "best_known": best_known,
            "certified": certified, "rows": rows, "environment": environment()}


def _tts(t_read: float, p: float) -> float:
    if p <= 0:
        return math.inf
    if p >= 1:
        return t_read
    return t_read * math.log(0.01) / math.log(1 - p)


def print_cell(cell, out=None) -> None:
    out = out or sys.stdout
    print(f"\n== n={cell['n']}  f={cell['f']}  objective={cell['objective']}  attack={cell['attack']}  "
          f"reads={cell['num_reads']}  sweeps={cell['num_sweeps']}  best known={cell['best_known']:.6f} "
          f"({'exact' if cell['certified'] else 'best found by any run'}) ==", file=out)
    print(format_table(cell["rows"], [
        ("run", "run"), ("beta (hot, cold)", "beta"), ("swaps on", "swap_moves"), ("wall s", "wall_s"),
        ("best energy", "best_energy"), ("p", "p_success"), ("TTS99 s", "tts99_s"),
        ("attempts/s", "attempts_per_s"), ("|S|", "size"), ("swaps left", "swaps_left"),
    ]), file=out)
    for line in summary(cell):
        print("  " + line, file=out)


def summary(cell) -> list[str]:
    """The issue's targets on one cell."""
    rows = {r["run"]: r for r in cell["rows"]}
    ours, theirs = rows["qkrum (defaults)"], rows["dwave-sa (defaults)"]
    flips, same = rows["qkrum single-flip"], rows["dwave-sa, qkrum range"]
    tol = 1e-9 * abs(theirs["best_energy"])
    return [
        f"TTS99 dwave-sa / qkrum, each with its defaults: {_ratio(theirs['tts99_s'], ours['tts99_s'])}",
        f"TTS99 like for like (single flips, qkrum's range): {_ratio(same['tts99_s'], flips['tts99_s'])}; "
        f"attempts/s {flips['attempts_per_s'] / same['attempts_per_s']:.1f}x",
        f"best energy qkrum <= dwave-sa: {ours['best_energy'] <= theirs['best_energy'] + tol}; "
        f"improving swaps left: qkrum {ours['swaps_left']}, dwave-sa {theirs['swaps_left']}",
    ]


def _ratio(a, b) -> str:
    if math.isinf(a) and math.isinf(b):
        return "both inf (neither reached the best known energy)"
    if math.isinf(a):
        return "inf (dwave-sa never reached the best known energy)"
    if math.isinf(b):
        return "0 (qkrum never reached the best known energy)"
    return f"{a / b:.1f}x"


# --- time to target ---------------------------------------------------------------------

TTT_INSTANCES = ("random", "planted", "mnist")


def ttt_distances(kind: str, n: int, seed: int) -> tuple[np.ndarray, int]:
    """The distance matrix of a time-to-target instance and its ``m``.

    ``random``: i.i.d. uniform distances, ``m = 0.8 n``. ``planted``: one synthetic round
    (:mod:`qkrum.synthetic`, d = 20,000) with 20 % ALIE attackers, cosine distances on the
    1000 highest-variance coordinates, ``m = n − f``. ``mnist``: the same with real client
    updates, the second round of clean FedAvg of the paper's MNIST MLP over ``n − f``
    clients (:func:`benchmarks.robustness.honest_rounds`; needs ``QKRUM_DATA_DIR``).
    """
    if kind == "random":
        A = np.random.default_rng(seed).random((n, n))
        D = np.triu(A, 1)
        return D + D.T, int(0.8 * n)
    f = n // 5
    k_h, k_a, k_p = jax.random.split(jax.random.key(seed), 3)
    if kind == "mnist":
        from benchmarks.robustness import honest_rounds

        (real,) = honest_rounds("mnist", n - f, warmup=1, rounds=1, seed=seed)
        honest = jnp.asarray(real)
    else:
        honest = honest_updates(k_h, n - f, 20_000)
    x = jnp.concatenate([honest, attacks.apply("alie", k_a, honest, f)])[jax.random.permutation(k_p, n)]
    D = np.asarray(kernels.pairwise_cosine_distance(kernels.project_topk_variance(x, 1000)), dtype=np.float64)
    return D, n - f


def ttt_budgets(n: int, max_timeout_ms: int = 3000) -> list[tuple[str, dict]]:
    """(solver, parameters) runs of a cell, each solver's budgets in increasing order;
    dwave's Tabu gets timeouts up to ``max_timeout_ms``."""
    # One restart cut short (stall) is qkrum's smallest budget, a 1 ms timeout dwave's.
    runs = [("qkrum-tabu", {"num_reads": 1, "confirm": 0, "stall": s}) for s in (10, 30, 100)]
    runs += [("qkrum-tabu", {"num_reads": r, "confirm": 0}) for r in (1, 2, 4, 8, 16, 32)]
    runs += [("qkrum-tabu 1 thread", {"num_reads": r, "confirm": 0, "num_threads": 1}) for r in (1, 4, 16)]
    runs += [("qkrum-tabu (defaults)", {})]
    runs += [("dwave-tabu", {"num_reads": 1, "timeout": t}) for t in (1, 3, 10, 30, 100, 300, 1000, 3000)
             if t <= max_timeout_ms]
    runs += [("qkrum-sa", {"num_reads": r, "num_sweeps": 100}) for r in ((10, 100, 1000) if n <= 500 else (10, 100))]
    runs += [("dwave-sa", {"num_reads": 2, "num_sweeps": s}) for s in ((100, 1000, 10000) if n <= 500 else (100, 1000))]
    return runs


def _ttt_sampler(name: str):
    from dwave.samplers import SimulatedAnnealingSampler as DWaveSA
    from dwave.samplers import TabuSampler

    from qkrum.anneal import ExchangeTabuSampler

    return {"qkrum-tabu": ExchangeTabuSampler, "dwave-tabu": TabuSampler, "qkrum-sa": SimulatedAnnealingSampler,
            "dwave-sa": DWaveSA}[name.split(" ")[0]]()


def run_ttt_cell(kind: str, n: int, seed: int, repeats: int, max_timeout_ms: int = 3000) -> dict:
    """Time to target on one instance.

    Every solver runs at increasing budgets (restarts for qkrum's tabu search; dwave's
    ``TabuSampler`` a timeout; reads for the annealers), each timed as the median wall
    time of up to ``repeats`` runs with the same seed (runs over 2 s are timed once). The
    cardinality-keeping solvers (``qkrum-tabu``, ``qkrum-sa``) get the objective alone
    with ``cardinality=m``; dwave-samplers get the QUBO with the provable penalty, whose
    optimum has ``|S| = m``. Every best sample is scored on the penalised QUBO, so energies
    compare and a sample with ``|S| ≠ m`` can only score worse.

    The target is the lowest energy any run found, reference runs with 10× the largest
    budget included (qkrum's tabu search with 320 restarts, dwave's with 10× its largest
    timeout: 30 s by default).
    A solver's time to target is the wall time of its smallest budget that reached it
    (within 1e-9 relative), ``inf`` if none did.
    """
    from qkrum.anneal.adapter import bqm_from_problem
    from qkrum.qubo import selection_problem

    D, m = ttt_distances(kind, n, seed)
    penalised = bqm_from_problem(selection_problem(D, m))
    exact_m = bqm_from_problem(selection_problem(D, m, keep_cardinality=True))
    order = list(range(n))

    def score(sampleset) -> tuple[float, int]:
        samples = sampleset.record.sample[:, [sampleset.variables.index(v) for v in order]]
        energies = penalised.energies((samples, order))
        best = int(np.argmin(energies))
        return float(energies[best]), int(samples[best].sum())

    def timed(solver: str, params: dict, times: int) -> tuple[float, float, int, dict]:
        sampler = _ttt_sampler(solver)
        cardinal = solver.startswith("qkrum")
        bqm = exact_m if cardinal else penalised
        call = dict(params, seed=seed, **({"cardinality": m} if cardinal else {}))
        walls, ss = [], None
        for _ in range(times):
            t0 = time.perf_counter()
            ss = sampler.sample(bqm, **call)
            walls.append(time.perf_counter() - t0)
            if walls[-1] > 2:
                break
        energy, size = score(ss)
        info = {k: ss.info[k] for k in ("restarts", "confirmed") if k in ss.info}
        return float(np.median(walls)), energy, size, info

    rows = []
    budgets = ttt_budgets(n, max_timeout_ms)
    longest = max(p["timeout"] for s, p in budgets if s == "dwave-tabu")
    for solver, params in budgets:
        wall, energy, size, info = timed(solver, params, repeats)
        rows.append({"solver": solver, "params": params, "wall_s": wall, "best_energy": energy, "size": size, **info})
    references = [timed("qkrum-tabu", {"num_reads": 320, "confirm": 0}, 1),
                  timed("dwave-tabu", {"num_reads": 1, "timeout": 10 * longest}, 1)]
    target = min([r["best_energy"] for r in rows] + [e for _, e, _, _ in references])
    tol = 1e-9 * max(1.0, abs(target))
    for row in rows:
        row["gap"] = row["best_energy"] - target
        row["hit"] = bool(row["best_energy"] <= target + tol)
    ttt = {}
    for row in rows:
        if row["hit"] and row["solver"] != "qkrum-tabu (defaults)":
            ttt[row["solver"]] = min(ttt.get(row["solver"], math.inf), row["wall_s"])
    for solver, _ in budgets:
        ttt.setdefault(solver, math.inf)
    ttt.pop("qkrum-tabu (defaults)", None)
    return {"mode": "time-to-target", "instance": kind, "n": n, "m": m, "seed": seed, "repeats": repeats,
            "target": target, "reference_energies": {"qkrum-tabu x320": references[0][1],
                                                     f"dwave-tabu {10 * longest} ms": references[1][1]},
            "max_timeout_ms": max_timeout_ms,
            "time_to_target_s": ttt, "rows": rows, "environment": environment()}


def print_ttt_cell(cell, out=None) -> None:
    out = out or sys.stdout
    print(f"\n== time to target: {cell['instance']} n={cell['n']} m={cell['m']} seed={cell['seed']}  "
          f"target={cell['target']:.6f} ==", file=out)
    rows = [dict(r, budget=", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults",
                 energy=f"{r['best_energy']:.6f}", gap_text=f"{r['gap']:.3g}") for r in cell["rows"]]
    print(format_table(rows, [("solver", "solver"), ("budget", "budget"), ("wall s", "wall_s"),
                              ("best energy", "energy"), ("gap", "gap_text"), ("hit", "hit"), ("|S|", "size")]),
          file=out)
    ttt = cell["time_to_target_s"]
    print("  time to target: " + ", ".join(f"{k} {v:.3g} s" for k, v in ttt.items()), file=out)
    print(f"  dwave-tabu / qkrum-tabu: {ttt_ratio(ttt)}", file=out)


def ttt_summary(cells: list[dict]) -> str:
    """A markdown table of the cells' times to target (the README's)."""
    solvers = ["qkrum-tabu", "qkrum-tabu 1 thread", "dwave-tabu", "qkrum-sa", "dwave-sa"]
    lines = ["| instance | n | m | " + " | ".join(f"{s} s" for s in solvers) + " | dwave-tabu / qkrum-tabu |",
             "|---|---|---|" + "---|" * (len(solvers) + 1)]
    for c in cells:
        t = c["time_to_target_s"]
        cols = ["∞" if math.isinf(t[s]) else f"{t[s]:.3g}" for s in solvers]
        ratio = ttt_ratio(t)
        lines.append(f"| {c['instance']} | {c['n']} | {c['m']} | " + " | ".join(cols) + f" | {ratio} |")
    return "\n".join(lines)


def ttt_ratio(ttt: dict) -> str:
    """dwave-tabu's time to target over qkrum-tabu's, in words when one is infinite."""
    ours, theirs = ttt["qkrum-tabu"], ttt["dwave-tabu"]
    if math.isinf(ours):
        return "qkrum-tabu never reached the target" + ("" if math.isinf(theirs) else f" (dwave-tabu: {theirs:.3g} s)")
    if math.isinf(theirs):
        return f"inf: dwave-tabu never reached the target (qkrum-tabu: {ours:.3g} s)"
    return f"{theirs / ours:.1f}x"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.annealer", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[15, 100, 500], metavar="N")
    p.add_argument("--reads", type=int, default=1000)
    p.add_argument("--sweeps", type=int, default=None,
                   help=f"sweeps per read (default per n: {DEFAULT_SWEEPS}, else 1000)")
    p.add_argument("--attack", default="alie", choices=sorted(attacks.AGNOSTIC))
    p.add_argument("--objective", nargs="+", default=["paper"], choices=["paper", "intra"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row; median wall time (default 3)")
    p.add_argument("--json", metavar="PATH", default=None)
    p.add_argument("--time-to-target", action="store_true",
                   help="time to target of qkrum's tabu search, dwave-samplers' Tabu and SA, and qkrum's SA")
    p.add_argument("--instances", nargs="+", default=["random", "planted"], choices=TTT_INSTANCES,
                   help="--time-to-target instances (default: random planted; mnist needs QKRUM_DATA_DIR)")
    p.add_argument("--max-timeout", type=int, default=3000, metavar="MS",
                   help="--time-to-target: the largest timeout given to dwave's Tabu (default 3000 ms)")
    args = p.parse_args(argv)
    if min(args.clients) < 5:
        p.error("--clients must be >= 5")
    if args.reads < 1 or (args.sweeps is not None and args.sweeps < 1):
        p.error("--reads and --sweeps must be >= 1")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from tqdm import tqdm

    if args.time_to_target:
        log = ResultsLog(args.json, key_fields=("mode", "instance", "n", "seed", "repeats", "max_timeout_ms"))
        cells = []
        grid = [(kind, n) for n in args.clients for kind in args.instances]
        for kind, n in tqdm(grid, desc="instances", unit="cell", file=sys.stderr):
            key = {"mode": "time-to-target", "instance": kind, "n": n, "seed": args.seed, "repeats": args.repeats,
                   "max_timeout_ms": args.max_timeout}
            cell = log.cell(key, lambda: run_ttt_cell(kind, n, args.seed, args.repeats, args.max_timeout))
            print_ttt_cell(cell)
            cells.append(cell)
        print("\n" + ttt_summary(cells))
        return cells

    log = ResultsLog(args.json, key_fields=("n", "objective", "attack", "num_reads", "num_sweeps", "seed", "repeats"))
    cells = []
    grid = [(n, obj) for n in args.clients for obj in args.objective]
    for n, objective in tqdm(grid, desc="instances", unit="cell", file=sys.stderr):
        f = n // 5
        sweeps = args.sweeps or DEFAULT_SWEEPS.get(n, 1000)
        key = {"n": n, "objective": objective, "attack": args.attack, "num_reads": args.reads,
               "num_sweeps": sweeps, "seed": args.seed, "repeats": args.repeats}
        cell = log.cell(key, lambda: run_cell(n, f, args.attack, objective, args.reads, sweeps, args.seed,
                                              args.repeats))
        print_cell(cell)
        cells.append(cell)
    return cells


if __name__ == "__main__":
    main()
