"""Tables and plots from a benchmark's JSON-lines results.

    python -m benchmarks.report results/scaling.jsonl --plot results/scaling.png
    python -m benchmarks.report results/attacks.jsonl --plot results/attacks.png

The kind of results (scaling or attack table) is read from the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.harness import format_table

GROWTH_STAGES = ("projection", "gram floor", "distances+krum", "distances+krum (jit)", "select (full d)")


def load(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut off by an interrupted run
    return rows


def growth_table(cells: list[dict], stages=GROWTH_STAGES) -> str:
    """Median seconds per stage (qkrum, NumPy for the floor) against n."""
    rows = []
    for cell in sorted(cells, key=lambda c: (c["attack"], c["n"])):
        row = {"n": cell["n"], "attack": cell["attack"], "d": cell["d"]}
        for s in cell["stages"]:
            if s["stage"] in stages:
                row[s["stage"]] = s.get("qkrum_s", s.get("numpy_s"))
        rows.append(row)
    return format_table(rows, [("n", "n"), ("attack", "attack"), ("d", "d")]
                        + [(s + (" (numpy)" if s == "gram floor" else ""), s) for s in stages])


def plot_growth(cells: list[dict], path: str | Path, stages=GROWTH_STAGES) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    by_attack = sorted({c["attack"] for c in cells})
    attack = by_attack[0]
    chosen = sorted((c for c in cells if c["attack"] == attack), key=lambda c: c["n"])
    ns = [c["n"] for c in chosen]
    for stage in stages:
        ys = []
        for c in chosen:
            s = next((s for s in c["stages"] if s["stage"] == stage), None)
            ys.append(None if s is None else s.get("qkrum_s", s.get("numpy_s")))
        style = "--" if stage == "gram floor" else "-"
        ax.plot(ns, ys, style, marker="o", label=stage + (" (NumPy SYRK)" if stage == "gram floor" else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients n")
    ax.set_ylabel("median seconds")
    d = chosen[0]["d"] if chosen else 0
    ax.set_title(f"qkrum MultiKrum stages, d = {d:,}, attack = {attack}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def attack_tables(cells: list[dict]) -> str:
    """Detection accuracy and F1 (%) per attack and method, with the average row."""
    if not cells:
        return "(no attack results)"
    methods = cells[0]["methods"]
    head = cells[0]
    out = [f"n={head['n']}  f={head['f']}  d={head['d']:,}  rounds={head['rounds']}  k={head['project']}  "
           f"seed={head['seed']}"]
    for metric, title in (("accuracy", "Detection accuracy (%)"), ("f1", "F1 score (%)")):
        rows = []
        for cell in cells:
            row = {"attack": cell["attack"]}
            row.update({m: 100 * cell["summary"][m][metric] for m in methods})
            rows.append(row)
        rows.append({"attack": "average", **{m: float(np.nanmean([r[m] for r in rows])) for m in methods}})
        out += ["", title, format_table(rows, [("attack", "attack")] + [(m, m) for m in methods])]
    regimes = [{"attack": c["attack"], **{m: ", ".join(f"{k} {v}" for k, v in c["summary"][m]["regimes"].items())
                                          for m in methods if c["summary"][m]["regimes"]}} for c in cells]
    routed = [m for m in methods if any(c["summary"][m]["regimes"] for c in cells)]
    if routed:
        out += ["", "Regimes / routes (rounds)", format_table(regimes, [("attack", "attack")] + [(m, m) for m in routed])]
    return "\n".join(out)


def plot_attacks(cells: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = cells[0]["methods"]
    attacks = [c["attack"] for c in cells]
    fig, axes = plt.subplots(2, 1, figsize=(max(6.4, 0.9 * len(attacks) + 2), 6.4), sharex=True)
    width = 0.8 / len(methods)
    xs = np.arange(len(attacks))
    for ax, metric, label in zip(axes, ("accuracy", "f1"), ("detection accuracy (%)", "F1 (%)")):
        for i, m in enumerate(methods):
            ax.bar(xs + (i - (len(methods) - 1) / 2) * width, [100 * c["summary"][m][metric] for c in cells],
                   width, label=m)
        ax.set_ylabel(label)
        ax.set_ylim(0, 105)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_xticks(xs, attacks, rotation=30, ha="right")
    axes[0].legend(fontsize=7, ncol=3)
    head = cells[0]
    axes[0].set_title(f"n = {head['n']}, f = {head['f']}, {head['rounds']} rounds, d = {head['d']:,}")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="JSON-lines file written by a benchmark's --json")
    p.add_argument("--plot", metavar="PNG", help="write a time-vs-n plot here")
    args = p.parse_args(argv)
    cells = load(args.results)
    if not cells:
        raise SystemExit(f"no results in {args.results}")
    if cells[0].get("benchmark") == "attack_table":
        print(attack_tables(cells))
        if args.plot:
            plot_attacks(cells, args.plot)
            print(f"wrote {args.plot}")
        return
    print("Median seconds per stage (qkrum's; the gram floor is NumPy's bare X @ X.T; lower is better):")
    print(growth_table(cells))
    print(verdict_lines(cells))
    if args.plot:
        plot_growth(cells, args.plot)
        print(f"wrote {args.plot}")


def verdict_lines(cells: list[dict]) -> str:
    """Each scaling cell's PASS/FAIL lines (:func:`benchmarks.scaling.targets`)."""
    from benchmarks.scaling import targets

    out = []
    for cell in sorted(cells, key=lambda c: (c["attack"], c["n"])):
        out += ["", f"Verdicts, n={cell['n']} attack={cell['attack']} d={cell['d']:,}:"]
        out += ["  " + v.line() for v in targets(cell)]
    return "\n".join(out)


if __name__ == "__main__":
    main()
