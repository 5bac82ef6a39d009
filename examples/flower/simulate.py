"""Run the app in-process with Flower's ``run_simulation`` (no SuperLink, no network):

    python simulate.py --nodes 10 --rounds 5 --attack sign_flip --strategy qkrum flower-multikrum

Each strategy runs on the same federation, data split, attack and seed; the per-round JSON
lines (test accuracy; for qkrum the rejected node ids and their partitions) are printed and,
with ``--out``, appended to a new JSON-lines file as each round ends (an existing file is
never overwritten). Partitions ``0 .. byzantine-1`` are Byzantine.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_parser() -> argparse.ArgumentParser:
    from qkrum_flower_example import task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10, help="SuperNodes (one partition each)")
    parser.add_argument("--rounds", type=int, default=task.DEFAULTS["num-server-rounds"])
    parser.add_argument("--dataset", default=task.DEFAULTS["dataset"])
    parser.add_argument("--attack", default=task.DEFAULTS["attack"])
    parser.add_argument("--byzantine", type=int, default=task.DEFAULTS["byzantine"])
    parser.add_argument("--f", type=int, default=None, help="Byzantine clients tolerated (default: --byzantine)")
    parser.add_argument("--method", default=task.DEFAULTS["method"], help="qkrum rule of strategy qkrum")
    parser.add_argument("--strategy", nargs="+", default=["qkrum"],
                        choices=["qkrum", "flower-multikrum", "fedavg"])
    parser.add_argument("--max-weight", type=float, default=task.DEFAULTS["max-weight"],
                        help="QkrumStrategy's max_weight (0: uncapped, FedAvg's weighting)")
    parser.add_argument("--local-epochs", type=int, default=task.DEFAULTS["local-epochs"])
    parser.add_argument("--seed", type=int, default=task.DEFAULTS["seed"])
    parser.add_argument("--out", type=Path, default=None, help="JSON-lines file for the per-round records")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    from flwr.simulation import run_simulation

    from qkrum_flower_example import client_app, server_app

    args = build_parser().parse_args(argv)
    if args.out is not None:
        if args.out.exists():  # a finished run is never rewritten
            raise SystemExit(f"--out {args.out} exists; remove it or choose another file")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.touch()
    rows: list[dict] = []
    for strategy in args.strategy:
        overrides = {"num-server-rounds": args.rounds, "dataset": args.dataset, "attack": args.attack,
                     "byzantine": args.byzantine, "f": args.byzantine if args.f is None else args.f,
                     "method": args.method, "strategy": strategy, "max-weight": args.max_weight,
                     "local-epochs": args.local_epochs, "seed": args.seed}
        run_simulation(server_app=server_app.make(overrides, results=rows, out=args.out),
                       client_app=client_app.make(overrides), num_supernodes=args.nodes,
                       backend_config={"client_resources": {"num_cpus": 1}})
    return rows


if __name__ == "__main__":
    main()
