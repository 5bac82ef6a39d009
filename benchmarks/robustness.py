"""Worst-case aggregate error of each defence over the whole attack suite, adaptive attacks
aimed at that very defence included, beside the classical anchors, on real client updates.

    python -m benchmarks.robustness --dataset mnist --clients 15 --byzantine 3 --json results/robustness.jsonl
    python -m benchmarks.robustness --dataset mnist --clients 100 --byzantine 20 --rounds 2 --points 8
    python -m benchmarks.robustness --dataset digits --clients 10 --byzantine 2 --rounds 1 \\
        --defence multikrum median --attack alie optimal_lie        # a smoke run

Client updates: ``--clients`` clients (Dirichlet 0.5 split of the dataset) train the paper's
model with the simulation's local SGD from the clean FedAvg model after ``--warmup``
rounds; rounds ``warmup + 1 .. warmup + rounds`` of that clean run give the honest
updates. ``--byzantine`` client slots (drawn once from ``--seed``) are replaced by each
attack, crafted from the honest rows; adaptive attacks (:data:`qkrum.attacks.ADAPTIVE`)
(and ``mixed``) get the defence under test as a callable that places their rows at those slots and runs
:func:`qkrum.select` on the round, so each one is aimed at the defence it is scored on; ``sign_flip_own`` negates the
slots' own honest updates.

Metric: the relative error ``||agg - mu_h|| / ||mu_h||`` of the defence's aggregate
(:meth:`qkrum.Selection.aggregate`) against the honest mean; plain averaging with no
attacker has 0. Each (defence, attack) is the mean over rounds; a defence's **worst case**
is the maximum over attacks (ByzFL's criterion). For rules that select, detection accuracy
is reported too (``qkrum.metrics.detection``).

Rows go to ``--json`` as they finish (resumable: a rerun skips finished rows), and the
tables (error per attack × defence, worst case, detection) are printed as Markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import qkrum
from qkrum import attacks, metrics
from qkrum.attacks import aggregate_error

from benchmarks.harness import ResultsLog, environment

#: Defences measured by default: qkrum's methods, then the classical anchors. Each is
#: ``label -> (method spec, qkrum.select keyword arguments)``.
DEFENCES: dict[str, tuple[str, dict]] = {
    # qkrum.select's default (qkrum.rules.DEFAULT): the direction screen, then
    # multikrum_nnm on the clients it keeps
    "screened_multikrum_nnm (default)": (qkrum.rules.DEFAULT, {}),
    # MultiKrum on the full updates selects, the aggregate is the mean of the selected
    # clients' NNM-mixed updates (the default before the screen)
    "multikrum_nnm": ("multikrum_nnm", {}),
    "multikrum (k=1000)": ("multikrum", {}),  # the paper's MultiKrum, on the k = 1000 projection
    "qubo": ("qubo", {}),
    "cascade": ("cascade", {}),
    "multisignal": ("multisignal", {}),
    "multikrum (full)": ("multikrum", {"project": None}),
    # pre-aggregation *before* the selection, for comparison with the default's order
    "nnm+multikrum (full)": ("nnm,multikrum", {"project": None}),
    "nnm+multisignal": ("nnm,multisignal", {}),
    "nnm+trimmed_mean": ("nnm,trimmed_mean", {}),
    "centered_clipping": ("centered_clipping", {}),
    "median": ("median", {}),
    "trimmed_mean": ("trimmed_mean", {}),
    "bulyan": ("bulyan", {}),
    "mean": ("mean", {}),
}

#: The classical anchors a defence's worst case is compared with.
ANCHORS = ("multikrum (full)", "nnm+trimmed_mean", "centered_clipping", "median", "trimmed_mean", "bulyan")

#: The suite: Table I, the literature's defence-agnostic attacks, the adaptive ones.
SUITE: tuple[str, ...] = (*attacks.TABLE_I, "sign_flip_own", "ipm", "min_max", "min_sum", "mimic", "mixed",
                          "optimal_lie", "optimal_ipm", "gate_aware")


def honest_rounds(dataset: str, clients: int, *, warmup: int, rounds: int, seed: int, data_dir=None) -> list[np.ndarray]:
    """The ``(clients, d)`` updates of rounds ``warmup + 1 .. warmup + rounds`` of clean FedAvg."""
    from benchmarks.fl_round import build

    _, _, _, trainer, params, key, _, _, _ = build(dataset, clients, data_dir=data_dir, seed=seed)
    w = trainer.ravel(params)
    out = []
    for t in range(1, warmup + rounds + 1):
        updates, _ = trainer.train_round(trainer.unravel(w), jax.random.fold_in(key, t))
        updates = np.asarray(jax.block_until_ready(updates), np.float32)
        if t > warmup:
            out.append(updates)
        w = w + jnp.mean(jnp.asarray(updates), axis=0)
    return out


def server(method: str, kwargs: dict, x: jax.Array, byz_idx: np.ndarray, f: int):
    """The defence as an attacker sees it: Byzantine rows -> (aggregate, info) of the round."""
    def run(byz):
        full = x.at[byz_idx].set(jnp.asarray(byz, x.dtype))
        sel = qkrum.select(full, f, method=method, **kwargs)
        return sel.aggregate(full), {**sel.info, "selected": sel.selected}
    return run


def run_cell(x: np.ndarray, byz_idx: np.ndarray, f: int, defence: str, attack: str, *, key: jax.Array,
             points: int, refine: int) -> dict:
    method, kwargs = DEFENCES[defence]
    x = jnp.asarray(x)
    is_byz = np.zeros(x.shape[0], bool)
    is_byz[byz_idx] = True
    honest = x[~is_byz]
    evaluate = server(method, kwargs, x, byz_idx, f)
    context = attacks.context_parameters(attack)
    options: dict[str, Any] = {"own": x[byz_idx]} if "own" in context else {}
    if "defence" in context:
        options["defence"] = evaluate
    if attack in attacks.ADAPTIVE:  # gate_aware searches several lines: half the budget each
        half = attack == "gate_aware"
        options.update(points=max(points // 2, 2) if half else points, refine=refine // 2 if half else refine)
    t0 = time.perf_counter()
    byz = attacks.apply(attack, key, honest, f, **options)
    t1 = time.perf_counter()
    agg, info = evaluate(byz)
    t2 = time.perf_counter()
    mu = np.asarray(honest, np.float64).mean(axis=0)
    rule = qkrum.rules.as_rule(method)
    det = metrics.detection(np.asarray(info["selected"]), is_byz) if rule.selects else None
    row = {"error": aggregate_error(agg, honest) / float(np.linalg.norm(mu)),
           "detection_accuracy": None if det is None else det["accuracy"],
           "regime": info.get("regime"), "attack_seconds": t1 - t0, "select_seconds": t2 - t1}
    if "alignment" in info:  # the direction screen: whom it removed, and its margins
        ratio = np.asarray(info["alignment"]) / np.nanmedian(info["alignment"])
        row.update(screened=[int(i) for i in info["screened"]],
                   honest_alignment_min=float(np.nanmin(ratio[~is_byz])) if np.isfinite(ratio[~is_byz]).any() else None,
                   byzantine_alignment_max=float(np.nanmax(ratio[is_byz])) if np.isfinite(ratio[is_byz]).any() else None)
    return row


def tables(rows: list[dict], defences: list[str], suite: list[str]) -> str:
    """Markdown: mean error per attack × defence, the worst case per defence, detection."""
    def mean_of(d, a, field):
        vals = [r[field] for r in rows if r["defence"] == d and r["attack"] == a and r[field] is not None]
        return float(np.mean(vals)) if vals else None

    out = ["| attack | " + " | ".join(defences) + " |", "|---|" + "---|" * len(defences)]
    worst = {d: (-1.0, "") for d in defences}
    for a in suite:
        cells = []
        for d in defences:
            e = mean_of(d, a, "error")
            cells.append("" if e is None else f"{e:.3f}")
            if e is not None and e > worst[d][0]:
                worst[d] = (e, a)
        out.append(f"| {a} | " + " | ".join(cells) + " |")
    out.append("| **worst case** | " + " | ".join(f"**{worst[d][0]:.3f}** ({worst[d][1]})" for d in defences) + " |")
    anchors = [worst[d][0] for d in defences if d in ANCHORS and worst[d][0] >= 0]
    if anchors:
        best = min(anchors)
        out.append("| ÷ best anchor | " + " | ".join(f"{worst[d][0] / best:.2f}" for d in defences) + " |")
    det = [d for d in defences if any(r["defence"] == d and r["detection_accuracy"] is not None for r in rows)]
    if det:
        out += ["", "Detection accuracy (%), Table I attacks:", "",
                "| attack | " + " | ".join(det) + " |", "|---|" + "---|" * len(det)]
        per_attack = {d: [] for d in det}
        for a in suite:
            if a not in attacks.TABLE_I:
                continue
            vals = [mean_of(d, a, "detection_accuracy") for d in det]
            for d, v in zip(det, vals):
                if v is not None:
                    per_attack[d].append(v)
            out.append(f"| {a} | " + " | ".join("" if v is None else f"{100 * v:.1f}" for v in vals) + " |")
        out.append("| **mean** | " + " | ".join(f"**{100 * np.mean(per_attack[d]):.1f}**" if per_attack[d] else ""
                                                for d in det) + " |")
    return "\n".join(out)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.robustness", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", help="dataset (default: mnist; QKRUM_DATA_DIR)")
    p.add_argument("--data-dir", default=None, help="dataset directory (default: QKRUM_DATA_DIR)")
    p.add_argument("--clients", type=int, default=15, help="clients per round (default: 15)")
    p.add_argument("--byzantine", type=int, default=3, help="Byzantine clients (default: 3)")
    p.add_argument("--warmup", type=int, default=2, help="clean FedAvg rounds before the measured ones (default: 2)")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the model and the slots (default: 0)")
    p.add_argument("--defence", nargs="+", default=list(DEFENCES), choices=list(DEFENCES), metavar="NAME",
                   help=f"defences (default: all): {', '.join(DEFENCES)}")
    p.add_argument("--attack", nargs="+", default=list(SUITE), choices=sorted(attacks.ATTACKS), metavar="NAME",
                   help="attacks (default: the suite)")
    p.add_argument("--points", type=int, default=12, help="line-search grid points of adaptive attacks (default: 12)")
    p.add_argument("--refine", type=int, default=6, help="line-search refinements (default: 6)")
    p.add_argument("--json", default=None, metavar="PATH", help="append rows here (resumable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from tqdm.auto import tqdm

    log = ResultsLog(args.json, ("dataset", "n", "f", "seed", "warmup", "round", "defence", "attack", "points",
                                 "refine"))
    n, f = args.clients, args.byzantine
    byz_idx = np.sort(np.random.default_rng(args.seed).choice(n, f, replace=False))
    rounds = honest_rounds(args.dataset, n, warmup=args.warmup, rounds=args.rounds, seed=args.seed,
                           data_dir=args.data_dir)
    env = environment()
    rows = []
    cells = [(r, d, a) for r in range(len(rounds)) for d in args.defence for a in args.attack]
    for r, d, a in tqdm(cells, desc="robustness", disable=args.no_progress, file=sys.stderr):
        key = {"dataset": args.dataset, "n": n, "f": f, "seed": args.seed, "warmup": args.warmup,
               "round": args.warmup + 1 + r, "defence": d, "attack": a, "points": args.points,
               "refine": args.refine}
        rows.append(log.cell(key, lambda: {**key, **run_cell(
            rounds[r], byz_idx, f, d, a, key=jax.random.fold_in(jax.random.key(args.seed), r),
            points=args.points, refine=args.refine), "environment": env}))
    print(f"{args.dataset}, n = {n}, f = {f}, rounds {args.warmup + 1}-{args.warmup + args.rounds}, "
          f"seed {args.seed}: relative aggregate error ||agg - mu_h|| / ||mu_h|| (mean over rounds)\n")
    print(tables(rows, args.defence, args.attack))
    return rows


if __name__ == "__main__":
    main()
