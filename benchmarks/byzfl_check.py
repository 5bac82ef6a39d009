"""An outside check: ByzFL's own adaptive attacks (``Optimal_ALittleIsEnough``,
``Optimal_InnerProductManipulation``, unmodified) against qkrum's defences, on the real client
updates of :mod:`benchmarks.robustness`.

    pip download byzfl==0.0.11 --no-deps -d /tmp/byzfl && unzip -q /tmp/byzfl/*.whl -d /tmp/byzfl/src
    python -m benchmarks.byzfl_check --byzfl-src /tmp/byzfl/src --dataset mnist --clients 15 --byzantine 3

ByzFL is not a qkrum dependency (it pulls torch). Its attacks run on NumPy arrays without
torch, but its modules import torch at the top: when torch is missing, a stub module satisfies
those imports (the NumPy code path never calls it), and the package's ``__init__`` (which
imports its torch training framework) is bypassed. ByzFL gets each defence as its ``agg``
(honest rows first, its ``f`` identical Byzantine rows last) and no pre-aggregator; the metric
is the relative error ``||agg - mu_h|| / ||mu_h||``, the mean over rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types

import numpy as np

import qkrum

from benchmarks.robustness import honest_rounds

#: label -> qkrum.select keyword arguments.
DEFENCES = {"screened_multikrum_nnm (default)": {}, "multikrum_nnm": {"method": "multikrum_nnm"},
            "multikrum (k=1000)": {"method": "multikrum"},
            "multikrum (full)": {"method": "multikrum", "project": None},
            "nnm+trimmed_mean": {"method": "nnm,trimmed_mean"}, "centered_clipping": {"method": "centered_clipping"}}


def load_byzfl_attacks(src: str | None):
    """ByzFL's attack module, from an unpacked wheel at ``src`` or the installed package."""
    if importlib.util.find_spec("torch") is None:
        torch = types.ModuleType("torch")
        torch.Tensor = type("Tensor", (), {})
        for name in ("linalg", "nn", "nn.functional"):
            sys.modules["torch." + name] = types.ModuleType("torch." + name)
        torch.linalg = sys.modules["torch.linalg"]
        sys.modules["torch"] = torch
    if src is not None:
        pkg = types.ModuleType("byzfl")
        pkg.__path__ = [f"{src}/byzfl"]
        sys.modules["byzfl"] = pkg
    from byzfl.attacks import attacks

    return attacks


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.byzfl_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--byzfl-src", default=None, help="an unpacked byzfl wheel (default: the installed byzfl)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--clients", type=int, default=15)
    p.add_argument("--byzantine", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    attacks = load_byzfl_attacks(args.byzfl_src)
    n, f = args.clients, args.byzantine
    rounds = honest_rounds(args.dataset, n, warmup=args.warmup, rounds=args.rounds, seed=args.seed)
    byz_idx = np.sort(np.random.default_rng(args.seed).choice(n, f, replace=False))
    kinds = {"Optimal_ALIE": attacks.Optimal_ALittleIsEnough, "Optimal_IPM": attacks.Optimal_InnerProductManipulation}
    print(f"{args.dataset}, n = {n}, f = {f}: relative error under ByzFL's attacks\n")
    print("| defence | " + " | ".join(kinds) + " | worst |\n|---|" + "---|" * (len(kinds) + 1))
    table = {}
    for label, kw in DEFENCES.items():
        def agg(v, kw=kw):
            v = np.asarray(v, np.float32)
            return np.asarray(qkrum.select(v, f, **kw).aggregate(v), np.float64)

        errors = []
        for attack in kinds.values():
            per_round = []
            for x in rounds:
                honest = np.asarray(x, np.float64)[~np.isin(np.arange(n), byz_idx)]
                mu = honest.mean(axis=0)
                byz = attack(agg=agg, pre_agg_list=[], f=f)(honest)
                per_round.append(np.linalg.norm(agg(np.concatenate([honest, np.tile(byz, (f, 1))])) - mu)
                                 / np.linalg.norm(mu))
            errors.append(float(np.mean(per_round)))
        table[label] = errors
        print(f"| {label} | " + " | ".join(f"{e:.3f}" for e in errors) + f" | {max(errors):.3f} |", flush=True)
    return table


if __name__ == "__main__":
    main()
