"""Tables from simulate.py's JSON-lines files:

    python report.py results/flower/*.jsonl --byzantine 2

For every attack (one file per attack, any strategies in it): the final test accuracy of each
strategy, the worst over attacks (ByzFL's criterion), and for qkrum in how many rounds the
rejected partitions were exactly the Byzantine ones (``0 .. byzantine-1``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="simulate.py --out files")
    parser.add_argument("--byzantine", type=int, default=2, help="partitions 0 .. byzantine-1 were Byzantine")
    return parser


def main(argv: list[str] | None = None) -> str:
    args = build_parser().parse_args(argv)
    final: dict[tuple[str, str], float] = {}
    exact: dict[str, tuple[int, int]] = {}
    strategies: list[str] = []
    attacks: list[str] = []
    for path in args.runs:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for row in rows:
            key = (row["attack"], row["strategy"])
            if row["strategy"] not in strategies:
                strategies.append(row["strategy"])
            if row["attack"] not in attacks:
                attacks.append(row["attack"])
            final[key] = row["test_accuracy"]  # rows come in round order: the last one stays
            if "rejected_partitions" in row and row["attack"] != "none":
                hit, total = exact.get(row["attack"], (0, 0))
                exact[row["attack"]] = (hit + (row["rejected_partitions"] == list(range(args.byzantine))), total + 1)
    lines = ["| attack | " + " | ".join(strategies) + " | qkrum: rounds rejecting exactly the Byzantine |",
             "|---" * (len(strategies) + 2) + "|"]
    for attack in attacks:
        cells = [f"{100 * final[(attack, s)]:.1f}" if (attack, s) in final else "–" for s in strategies]
        hit = f"{exact[attack][0]}/{exact[attack][1]}" if attack in exact else "–"
        lines.append(f"| {attack} | " + " | ".join(cells) + f" | {hit} |")
    worst = []
    for s in strategies:
        values = [final[(a, s)] for a in attacks if (a, s) in final and a != "none"]
        worst.append(f"**{100 * min(values):.1f}**" if values else "–")
    lines.append("| worst over attacks | " + " | ".join(worst) + " | |")
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
