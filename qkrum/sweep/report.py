"""The report of a sweep: the paper's tables (detection accuracy and F1 per attack × method,
Tables III–VIII), the final test accuracy, the worst case over attacks, the comparison
with the paper's numbers, and figures.

``write_report(DIR, OUT)`` reads a sweep directory (``sweep.json``, ``cells.jsonl``,
``cells/<id>.jsonl``; see :mod:`qkrum.sweep.runner`) and writes into ``OUT``:

* ``detection.md`` / ``.csv``: per attack (rows) and method (columns), the detection
  accuracy ``(TP + TN) / n`` and F1 as ``acc (F1)``;
* ``test_accuracy.md`` / ``.csv``: the final test accuracy, same layout;
* ``worst_case.md`` / ``.csv``: per method, the lowest final test accuracy and the lowest
  detection accuracy over the attacks, and the attack where each happens (ByzFL's
  criterion);
* ``paper_comparison.md`` / ``.csv`` when ``sweep.json`` names a paper table: ours, the
  paper's and the difference (ours − paper), per attack and paper column, with the average
  over the attacks both have as a last row;
* ``failed.md`` when a cell failed: its grid values, attempts and error;
* figures (the ``plot`` extra, matplotlib; without it the tables are written and the
  figures skipped with a warning): ``heatmap_attack_method.png`` (detection accuracy),
  ``heatmap_test_accuracy.png`` (final test accuracy, when the cells have it),
  ``heatmap_f_alpha_<method>.png`` when the grid varies ``byzantine`` and ``alpha``, and
  ``rounds_<dataset>_<attack>.png`` (the paper's Figures 1–6) for ``alie`` and
  ``sparse_lie`` (every attack when the sweep has at most 4);
* ``report.md``: a summary and links to all of the above.

How the numbers are made (the paper's, Table II, where it says; ours otherwise):

* A cell's detection accuracy and F1 are the means over its rounds (rounds where they are
  undefined, null in the run file, e.g. with no Byzantine client, are left out; a cell
  with none has no value); its test accuracy is the last round's. They come from the
  cell's run file (:func:`qkrum.fl.simulation.read_run`, which skips a torn last line);
  the ``summary`` of ``cells.jsonl`` is used only when the run file is missing or empty.
* Only the last line of a cell in ``cells.jsonl`` counts, and only ``done`` cells enter
  the tables and figures.
* Cells that differ only in ``seed`` are replicates: a table entry is their mean ± the
  standard deviation (ddof = 0, shown from 2 seeds on) and the number of seeds. Every
  other grid axis than attack, method and seed (dataset, clients, byzantine, alpha, ...)
  splits the cells into groups (:func:`group_cells`), one table per group.
* Numbers are percent; the Markdown shows one decimal, the CSV four.
* The worst case leaves out ``attack = "none"`` (no attacker) when there are other
  attacks; ties name every attack that reaches the minimum.
* A grid axis value is read from the cell's ``grid`` (so a sweep can name variants of a
  method there, as the paper's ``methods`` mapping refers to), else from its ``params``,
  else :func:`qkrum.fl.simulate`'s default.
"""

from __future__ import annotations

import csv
import functools
import inspect
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from qkrum._optional import require
from qkrum.sweep.runner import load_cells

__all__ = ["ENTRY_AXES", "ROUND_FIGURE_ATTACKS", "axis_value", "cell_results", "group_axes", "group_cells",
           "load_sweep", "summarize", "write_report"]

#: The axes of one table entry: rows, columns and the replicates averaged over.
ENTRY_AXES = ("attack", "method", "seed")
#: Attacks that always get a round-by-round figure (the paper's hardest); every attack
#: does when the sweep has at most :data:`_ALL_ROUND_FIGURES` of them.
ROUND_FIGURE_ATTACKS = ("alie", "sparse_lie")
_ALL_ROUND_FIGURES = 4
#: Paper metric names -> our value names.
_PAPER_METRICS = {"accuracy": "detection_accuracy", "detection_accuracy": "detection_accuracy", "f1": "f1",
                  "test_accuracy": "final_test_accuracy", "final_test_accuracy": "final_test_accuracy"}
_METRIC_TITLES = {"detection_accuracy": "Detection accuracy", "f1": "F1",
                  "final_test_accuracy": "Final test accuracy"}
_PAPER_AVERAGE_KEYS = ("average", "Average", "mean")
_NEEDS_MATPLOTLIB = "qkrum report's figures"
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


# ----------------------------------------------------------------------------- reading

def load_sweep(sweep_dir: str | Path) -> dict:
    """``DIR/sweep.json`` (``{"version", "name", "cells", "paper"}``); a directory without
    one gets a stand-in named after it, with no cells listed and no paper."""
    path = Path(sweep_dir) / "sweep.json"
    if not path.exists():
        return {"version": 1, "name": Path(sweep_dir).name, "cells": {}, "paper": None}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


@functools.lru_cache(maxsize=1)
def _simulate_defaults() -> dict:
    """:func:`qkrum.fl.simulate`'s keyword defaults (for values a cell's params leave out)."""
    from qkrum.fl.simulation import simulate

    return {name: p.default for name, p in inspect.signature(simulate).parameters.items()
            if p.default is not inspect.Parameter.empty}


def axis_value(cell: dict, axis: str, defaults: dict | None = None) -> Any:
    """The cell's value on ``axis``: its ``grid`` value, else its ``params`` value, else
    ``defaults`` (:func:`qkrum.fl.simulate`'s when None)."""
    if axis in (cell.get("grid") or {}):
        return cell["grid"][axis]
    if axis in (cell.get("params") or {}):
        return cell["params"][axis]
    return (_simulate_defaults() if defaults is None else defaults).get(axis)


def _mean_of(values: Iterable[Any]) -> float:
    """The mean of the finite values (None and NaN left out); NaN when there is none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else math.nan


def _percent(value: Any) -> float:
    """A fraction as percent; NaN for None or NaN."""
    return math.nan if value is None or not math.isfinite(float(value)) else 100.0 * float(value)


def cell_results(sweep_dir: str | Path, cell: dict) -> dict:
    """One done cell's values in percent: ``detection_accuracy`` and ``f1`` (means over
    rounds, NaN when undefined in every round), ``final_test_accuracy`` (the last round's),
    ``rounds`` (how many), ``per_round`` (``[(round, detection accuracy), ...]``) and
    ``source`` (``"file"``, or ``"summary"`` when the run file is missing or empty)."""
    from qkrum.fl.simulation import read_run

    path = Path(sweep_dir) / (cell.get("file") or f"cells/{cell['cell']}.jsonl")
    rows = read_run(path)[1] if path.is_file() else []
    if rows:
        return {"detection_accuracy": _percent(_mean_of(r.get("accuracy") for r in rows)),
                "f1": _percent(_mean_of(r.get("f1") for r in rows)),
                "final_test_accuracy": _percent(rows[-1].get("test_accuracy")), "rounds": len(rows),
                "per_round": [(int(r["round"]), _percent(r.get("accuracy"))) for r in rows], "source": "file"}
    summary = cell.get("summary") or {}
    return {"detection_accuracy": _percent(summary.get("detection_accuracy")), "f1": _percent(summary.get("f1")),
            "final_test_accuracy": _percent(summary.get("final_test_accuracy")),
            "rounds": int(summary.get("rounds") or 0), "per_round": [], "source": "summary"}


# ----------------------------------------------------------------------------- grouping

def _key(value: Any) -> str:
    """A hashable, order-independent stand-in for an axis value (dicts and lists too)."""
    return json.dumps(value, sort_keys=True, default=str)


def _label(value: Any) -> str:
    """An axis value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else _key(value)


def group_axes(cells: Sequence[dict]) -> list[str]:
    """The grid axes that split the cells into groups: every key of a cell's ``grid`` other
    than :data:`ENTRY_AXES`, in order of first appearance."""
    axes: dict[str, None] = {}
    for cell in cells:
        for axis in cell.get("grid") or {}:
            if axis not in ENTRY_AXES:
                axes.setdefault(axis, None)
    return list(axes)


def group_cells(entries: Sequence[dict], axes: Sequence[str], defaults: dict | None = None
                ) -> list[tuple[dict, dict[tuple[str, str], list[dict]]]]:
    """The one place cells are grouped: ``[(group, {(attack, method): [entry, ...]}), ...]``.

    ``group`` maps each of ``axes`` to the entries' value on it; the entries of one
    ``(attack, method)`` differ only in ``seed`` (the replicates of one table entry).
    Groups, and entries within a group, are in order of first appearance. An entry is a
    dict with the cell's record under ``"cell"`` (anything else rides along).
    """
    defaults = _simulate_defaults() if defaults is None else defaults
    groups: dict[str, tuple[dict, dict[tuple[str, str], list[dict]]]] = {}
    for entry in entries:
        cell = entry["cell"]
        group = {axis: axis_value(cell, axis, defaults) for axis in axes}
        slot = groups.setdefault(_key([group[a] for a in axes]), (group, {}))[1]
        attack, method = (_label(axis_value(cell, a, defaults)) for a in ("attack", "method"))
        slot.setdefault((attack, method), []).append(entry)
    return list(groups.values())


def _ordered(pairs: Iterable[tuple[str, str]], index: int) -> list[str]:
    """The distinct ``pair[index]`` values in order of first appearance."""
    return list(dict.fromkeys(p[index] for p in pairs))


def summarize(values: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, std, count)`` of the finite ``values`` (std with ddof = 0; NaN for both when
    there is none)."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std(ddof=0)), int(finite.size)


def _stats(entries: Sequence[dict], value: str) -> tuple[float, float, int]:
    """:func:`summarize` of one value over table-entry replicates."""
    return summarize(e["results"][value] for e in entries)


def _group_title(group: dict, entries: Iterable[dict], defaults: dict, skip: Sequence[str] = ()) -> str:
    """``"dataset=mnist, clients=15, byzantine=3"``: the group's axes, and the dataset and
    ``n``/``f`` when they are not axes but the same for the whole group (``skip`` left out)."""
    parts = [f"{axis}={_label(value)}" for axis, value in group.items()]
    entries = list(entries)
    for axis in ("dataset", "clients", "byzantine"):
        if axis not in group and axis not in skip:
            values = {_key(axis_value(e["cell"], axis, defaults)) for e in entries}
            if len(values) == 1:
                parts.append(f"{axis}={_label(axis_value(entries[0]['cell'], axis, defaults))}")
    return ", ".join(parts) or "all cells"


# ----------------------------------------------------------------------------- formatting

def _fmt(mean: float, std: float, count: int) -> str:
    """``mean ± std`` (one decimal; the std from 2 seeds on), or '–' without a value."""
    if count == 0 or not math.isfinite(mean):
        return "–"
    return f"{mean:.1f} ± {std:.1f}" if count >= 2 else f"{mean:.1f}"


def _csv_number(value: float) -> str:
    """A CSV number (four decimals), empty for NaN."""
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (``|`` in cells escaped)."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV file with ``header``; returns its path."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _seed_note(counts: Iterable[int]) -> tuple[str, bool]:
    """A caption for the seed counts of a table, and whether entries must show their own."""
    counts = sorted({c for c in counts if c > 0})
    if not counts:
        return "no values", False
    if len(counts) == 1:
        return f"mean ± std over {counts[0]} seed{'s' if counts[0] > 1 else ''}", False
    return f"mean ± std over {counts[0]}–{counts[-1]} seeds (n = seeds per entry)", True


# ----------------------------------------------------------------------------- tables

def _entry_table(groups, defaults, values: Sequence[str], title: str, intro: str, out: Path, stem: str
                 ) -> dict[str, Path]:
    """``stem.md``/``stem.csv``: attack × method tables of ``values`` (one per group); the
    Markdown entry is the first value and the others in parentheses."""
    axes = list(groups[0][0]) if groups else []
    header = [*axes, "attack", "method", "seeds"] + [f"{v}_{s}" for v in values for s in ("mean", "std")]
    csv_rows, md = [], [f"# {title}", "", intro, ""]
    for group, slots in groups:
        attacks, methods = _ordered(slots, 0), _ordered(slots, 1)
        stats = {pair: [_stats(entries, v) for v in values] for pair, entries in slots.items()}
        note, per_entry = _seed_note(len(entries) for entries in slots.values())
        md += [f"## {_group_title(group, (e for es in slots.values() for e in es), defaults)}", "", f"{note}.", ""]
        table = []
        for attack in attacks:
            row = [attack]
            for method in methods:
                if (attack, method) not in stats:
                    row.append("–")
                    continue
                first, *rest = stats[(attack, method)]
                text = _fmt(*first) + "".join(f" ({_fmt(*s)})" for s in rest)
                row.append(text + (f" [n={len(slots[(attack, method)])}]" if per_entry else ""))
                csv_rows.append([*(_label(group[a]) for a in axes), attack, method, len(slots[(attack, method)]),
                                 *(_csv_number(x) for mean, std, n in stats[(attack, method)]
                                   for x in (mean, std if n >= 2 else math.nan))])
            table.append(row)
        md += [_md_table(["attack", *methods], table), ""]
    (out / f"{stem}.md").write_text("\n".join(md))
    return {f"{stem}.md": out / f"{stem}.md", f"{stem}.csv": _write_csv(out / f"{stem}.csv", header, csv_rows)}


def _worst(slots, method: str, value: str) -> tuple[float, float, int, list[str], int]:
    """The lowest seed mean of ``value`` over the attacks (``"none"`` left out when there are
    others): ``(mean, std, seeds, [attacks reaching it], attacks considered)``."""
    attacks = [a for a, m in slots if m == method]
    if any(a != "none" for a in attacks):
        attacks = [a for a in attacks if a != "none"]
    scored = [(a, *_stats(slots[(a, method)], value)) for a in attacks]
    scored = [s for s in scored if s[3] > 0]
    if not scored:
        return math.nan, math.nan, 0, [], 0
    low = min(s[1] for s in scored)
    worst = [s for s in scored if s[1] <= low + 1e-9]
    return low, worst[0][2], worst[0][3], [s[0] for s in worst], len(scored)


def _worst_case_table(groups, defaults, out: Path) -> dict[str, Path]:
    """``worst_case.md``/``.csv``: per group and method, the worst case over attacks."""
    axes = list(groups[0][0]) if groups else []
    header = [*axes, "method", "attacks", "worst_test_accuracy", "worst_test_accuracy_attack",
              "worst_detection_accuracy", "worst_detection_accuracy_attack"]
    csv_rows, md = [], ["# Worst case over attacks", "",
                        "Per method, the lowest final test accuracy and the lowest detection accuracy (%) over "
                        "the attacks (mean over seeds ± std), and the attack where it happens (ByzFL's criterion; "
                        "`none` is left out).", ""]
    for group, slots in groups:
        md += [f"## {_group_title(group, (e for es in slots.values() for e in es), defaults)}", ""]
        table = []
        for method in _ordered(slots, 1):
            test = _worst(slots, method, "final_test_accuracy")
            det = _worst(slots, method, "detection_accuracy")
            table.append([method, *(f"{_fmt(*w[:3])} ({', '.join(w[3])})" if w[3] else "–" for w in (test, det))])
            csv_rows.append([*(_label(group[a]) for a in axes), method, max(test[4], det[4]),
                             _csv_number(test[0]), ";".join(test[3]), _csv_number(det[0]), ";".join(det[3])])
        md += [_md_table(["method", "lowest final test accuracy (attack)", "lowest detection accuracy (attack)"],
                         table), ""]
    (out / "worst_case.md").write_text("\n".join(md))
    return {"worst_case.md": out / "worst_case.md",
            "worst_case.csv": _write_csv(out / "worst_case.csv", header, csv_rows)}


def _paper_numbers(paper: dict) -> tuple[dict[str, dict[str, dict[str, float]]], list[str], dict]:
    """The paper's table as ``{attack: {column: {our value name: number}}}``, its metrics
    (our value names, in order) and its published averages (``{column: {value: number}}``,
    from an ``average`` row if the table has one).

    An entry is a dict of metrics (Tables III–V) or one number (Tables VII/VIII), whose
    metric is ``paper["metric"]``, else the one key of ``paper["metrics"]``, else the one
    the table's name says (``..._f1`` / ``..._accuracy``). ``paper["metrics"]`` may map the
    paper's metric names to ours (a None value keeps the name)."""
    hints = paper.get("metrics") or {}
    single = paper.get("metric") or (next(iter(hints)) if len(hints) == 1 else None)
    if single is None:
        table = str(paper.get("table") or "").lower()
        single = "f1" if table.endswith("f1") else "accuracy"

    def ours(name: str) -> str | None:
        mapped = hints.get(name) or name
        return _PAPER_METRICS.get(mapped)

    numbers, averages, metrics = {}, {}, {}
    for attack, columns in (paper.get("numbers") or {}).items():
        if not isinstance(columns, dict):
            continue
        parsed = {}
        for column, entry in columns.items():
            entry = entry if isinstance(entry, dict) else {single: entry}
            parsed[column] = {}
            for name, number in entry.items():
                if ours(name) is None or not isinstance(number, (int, float)):
                    continue
                if hints and name not in hints and name != single:
                    continue  # the metrics are named, and this one is not among them
                parsed[column][ours(name)] = float(number)
                metrics.setdefault(ours(name), None)
        (averages if attack in _PAPER_AVERAGE_KEYS else numbers)[attack] = parsed
    return numbers, list(metrics), next(iter(averages.values()), {})


def _paper_table(groups, defaults, paper: dict, out: Path) -> dict[str, Path]:
    """``paper_comparison.md``/``.csv``: ours (mean over seeds), the paper's and ours −
    paper per attack and paper column, one table per metric and group, and the averages
    over the attacks both have."""
    numbers, metrics, published = _paper_numbers(paper)
    columns = list(paper.get("methods") or {})
    axes = list(groups[0][0]) if groups else []
    header = [*axes, "attack", "column", "method", "metric", "seeds", "ours", "paper", "difference"]
    mapping = ", ".join(f"{c} = {paper['methods'][c]}" for c in columns)
    csv_rows, md = [], [f"# Comparison with the paper ({paper.get('table')})", "",
                        f"Ours (mean over seeds), the paper's and the difference ours − paper, in % "
                        f"(percentage points). Columns: {mapping}.", ""]
    for group, slots in groups:
        ours_attacks = _ordered(slots, 0)
        attacks = [a for a in ours_attacks if a in numbers]  # the sweep's order (sweep.json sorts the paper's)
        missing = [a for a in numbers if a not in ours_attacks]
        md += [f"## {_group_title(group, (e for es in slots.values() for e in es), defaults)}", ""]
        if missing:
            md += [f"Not in this sweep: {', '.join(missing)} ({len(attacks)} of the paper's {len(numbers)} "
                   "attacks compared; the averages are over those).", ""]
        for metric in metrics:
            table, sums = [], {c: ([], []) for c in columns}
            for attack in attacks:
                row = [attack]
                for column in columns:
                    method = _label(paper["methods"][column])
                    mean, _, n = _stats(slots.get((attack, method), []), metric)
                    theirs = numbers[attack].get(column, {}).get(metric, math.nan)
                    diff = mean - theirs
                    if math.isfinite(diff):
                        sums[column][0].append(mean)
                        sums[column][1].append(theirs)
                    row += [_fmt(mean, 0, min(n, 1)), _fmt(theirs, 0, 1 if math.isfinite(theirs) else 0),
                            f"{diff:+.1f}" if math.isfinite(diff) else "–"]
                    csv_rows.append([*(_label(group[a]) for a in axes), attack, column, method, metric, n,
                                     _csv_number(mean), _csv_number(theirs), _csv_number(diff)])
                table.append(row)
            average = [f"average ({len(attacks)})"]
            for column in columns:
                mine, theirs = (float(np.mean(s)) if s else math.nan for s in sums[column])
                average += [_fmt(mine, 0, 1), _fmt(theirs, 0, 1),
                            f"{mine - theirs:+.1f}" if math.isfinite(mine - theirs) else "–"]
                csv_rows.append([*(_label(group[a]) for a in axes), "average", column, _label(paper["methods"][column]),
                                 metric, len(sums[column][0]), _csv_number(mine), _csv_number(theirs),
                                 _csv_number(mine - theirs)])
            table.append(average)
            md += [f"### {_METRIC_TITLES[metric]} (%)", "",
                   _md_table(["attack", *(f"{c} {w}" for c in columns for w in ("ours", "paper", "Δ"))], table), ""]
            if missing:
                full = {c: [numbers[a][c][metric] for a in numbers if metric in numbers[a].get(c, {})]
                        for c in columns}
                md += [f"The paper's average over all its attacks: " + ", ".join(
                    f"{c} {np.mean(v):.1f} ({len(v)})" for c, v in full.items() if v) + ".", ""]
            if published:
                md += ["Published averages: " + ", ".join(
                    f"{c} {published[c][metric]:.2f}" for c in columns if metric in published.get(c, {})) + ".", ""]
    (out / "paper_comparison.md").write_text("\n".join(md))
    return {"paper_comparison.md": out / "paper_comparison.md",
            "paper_comparison.csv": _write_csv(out / "paper_comparison.csv", header, csv_rows)}


def _failed_page(failed: Sequence[dict], out: Path) -> dict[str, Path]:
    """``failed.md``: every failed cell (its last attempt) with its grid values and error."""
    md = ["# Failed cells", "", f"{len(failed)} cell(s) whose last attempt failed; they are in no table.", ""]
    for cell in failed:
        md += [f"## {cell['cell']}", "", f"grid: `{_key(cell.get('grid') or {})}`, attempts: {cell.get('attempts')}",
               "", "```", str(cell.get("error") or "(no error recorded)").rstrip(), "```", ""]
    (out / "failed.md").write_text("\n".join(md))
    return {"failed.md": out / "failed.md"}


# ----------------------------------------------------------------------------- figures

def _sort_key(value: Any) -> tuple:
    """Numbers by value first, then anything else by its text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, float(value), "") if number else (1, 0.0, _label(value))


def _slug(text: str) -> str:
    """``text`` made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _figure(panels: int, width: float = 5.0, height: float = 4.0):
    """A matplotlib Figure on an Agg canvas with ``panels`` axes (row-major, at most 3 a
    row) and the axes as a flat list (extra ones hidden)."""
    require("matplotlib", "plot", _NEEDS_MATPLOTLIB)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(panels, 3)
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).flat)
    for ax in axes[panels:]:
        ax.axis("off")
    return fig, axes[:panels]


def _save(fig, path: Path) -> Path:
    """Save ``fig`` as PNG at ``path``; returns it."""
    fig.savefig(path, format="png", dpi=110)
    return path


def _heatmap(ax, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str, xlabel: str,
             ylabel: str, vmin: float = 0.0, vmax: float = 100.0):
    """Annotated heatmap of ``matrix`` (percent, NaN shown as '–') on ``ax``."""
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
    dark = vmin + 0.6 * (vmax - vmin)  # annotate in white on the dark end of the map
    ax.set_facecolor("0.85")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.1f}" if math.isfinite(value) else "–", ha="center", va="center", fontsize=8,
                color="black" if not math.isfinite(value) or value >= dark else "white")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return image


def _attack_method_heatmap(groups, defaults, out: Path, value: str = "detection_accuracy") -> dict[str, Path]:
    """An attack × method heatmap of ``value``'s mean, a panel per group:
    ``heatmap_attack_method.png`` (detection accuracy) or ``heatmap_test_accuracy.png``
    (final test accuracy, coloured over the range of its values so that a few points show)."""
    fig, axes = _figure(len(groups), max(5.5, 2.5 + 1.1 * max(len(_ordered(s, 1)) for _, s in groups)),
                        max(3.5, 1.8 + 0.45 * max(len(_ordered(s, 0)) for _, s in groups)))
    title = _METRIC_TITLES[value]
    matrices = []
    for group, slots in groups:
        attacks, methods = _ordered(slots, 0), _ordered(slots, 1)
        matrices.append((group, slots, attacks, methods,
                         np.array([[_stats(slots.get((a, m), []), value)[0] for m in methods] for a in attacks])))
    finite = np.concatenate([m[-1][np.isfinite(m[-1])] for m in matrices]) if matrices else np.array([])
    vmin, vmax = (0.0, 100.0) if value == "detection_accuracy" or not finite.size else \
        (float(np.floor(finite.min())), float(np.ceil(finite.max())) + (finite.min() == finite.max()))
    for ax, (group, slots, attacks, methods, matrix) in zip(axes, matrices):
        image = _heatmap(ax, matrix, attacks, methods, f"{title} (%)\n{_group_title(group, _entries(slots), defaults)}",
                         "method", "attack", vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=axes, label=f"{title.lower()} (%)", shrink=0.8)
    name = "heatmap_attack_method.png" if value == "detection_accuracy" else "heatmap_test_accuracy.png"
    return {name: _save(fig, out / name)}


def _entries(slots) -> list[dict]:
    """Every entry of a group's slots."""
    return [e for entries in slots.values() for e in entries]


def _f_alpha_heatmaps(entries, axes_all, defaults, out: Path) -> dict[str, Path]:
    """``heatmap_f_alpha_<method>.png``: mean detection accuracy over ``byzantine`` (f, rows)
    × ``alpha`` (columns), one file per method, a panel per attack (and per value of the
    other group axes)."""
    rest = [a for a in axes_all if a not in ("byzantine", "alpha")]
    written = {}
    by_method: dict[str, list[dict]] = {}
    for entry in entries:
        by_method.setdefault(_label(axis_value(entry["cell"], "method", defaults)), []).append(entry)
    for method, mine in by_method.items():
        panels = []
        for group, slots in group_cells(mine, rest, defaults):
            for attack in _ordered(slots, 0):
                panels.append((group, attack, slots[(attack, method)]))
        fig, axes = _figure(len(panels), 4.5, 3.8)
        for ax, (group, attack, cells) in zip(axes, panels):
            fs = sorted({axis_value(e["cell"], "byzantine", defaults) for e in cells}, key=_sort_key)
            alphas = sorted({axis_value(e["cell"], "alpha", defaults) for e in cells}, key=_sort_key)
            matrix = np.array([[_stats([e for e in cells if axis_value(e["cell"], "byzantine", defaults) == f
                                        and axis_value(e["cell"], "alpha", defaults) == al],
                                       "detection_accuracy")[0] for al in alphas] for f in fs])
            where = _group_title(group, cells, defaults) if rest else ""
            image = _heatmap(ax, matrix, [str(f) for f in fs], [str(a) for a in alphas],
                             f"{method} · {attack}" + (f"\n{where}" if where else ""), "Dirichlet α", "f (Byzantine)")
        fig.colorbar(image, ax=axes, label="detection accuracy (%)", shrink=0.8)
        fig.suptitle(f"Detection accuracy (%) over f × α: {method}")
        name = f"heatmap_f_alpha_{_slug(method)}.png"
        written[name] = _save(fig, out / name)
    return written


def _line_style(i: int, count: int) -> dict:
    """Line style and marker by position (they read in grayscale); earlier lines wider with
    larger hollow markers, so that identical curves drawn later leave them visible (as
    :mod:`qkrum.fl.plot` does)."""
    size = (count - 1 - i) % 3
    return {"linestyle": _LINESTYLES[i % len(_LINESTYLES)], "marker": _MARKERS[i % len(_MARKERS)],
            "linewidth": 1.2 + 0.9 * size, "markersize": 3.5 + 2.5 * size,
            "markerfacecolor": "none" if size else None}


def _round_band(cells: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rounds and the mean, min and max over the cells' per-round detection accuracy."""
    by_round: dict[int, list[float]] = {}
    for entry in cells:
        for r, value in entry["results"]["per_round"]:
            if math.isfinite(value):
                by_round.setdefault(r, []).append(value)
    rounds = np.array(sorted(by_round), dtype=int)
    values = [np.array(by_round[r]) for r in rounds]
    return (rounds, np.array([v.mean() for v in values]), np.array([v.min() for v in values]),
            np.array([v.max() for v in values]))


def _round_figures(entries, axes_all, defaults, out: Path) -> dict[str, Path]:
    """``rounds_<dataset>_<attack>.png`` (the paper's Figures 1–6): detection accuracy per
    round, a line per method (mean over seeds, min–max band), a panel per value of the
    other group axes."""
    from matplotlib.ticker import MaxNLocator

    attacks = list(dict.fromkeys(_label(axis_value(e["cell"], "attack", defaults)) for e in entries))
    chosen = attacks if len(attacks) <= _ALL_ROUND_FIGURES else [a for a in attacks if a in ROUND_FIGURE_ATTACKS]
    rest = [a for a in axes_all if a != "dataset"]
    written = {}
    datasets = list(dict.fromkeys(_label(axis_value(e["cell"], "dataset", defaults)) for e in entries))
    for dataset in datasets:
        for attack in chosen:
            mine = [e for e in entries if _label(axis_value(e["cell"], "dataset", defaults)) == dataset
                    and _label(axis_value(e["cell"], "attack", defaults)) == attack]
            if not mine:
                continue
            groups = group_cells(mine, rest, defaults)
            fig, axes = _figure(len(groups), 6.0, 4.2)
            for ax, (group, slots) in zip(axes, groups):
                methods = _ordered(slots, 1)
                for i, method in enumerate(methods):
                    rounds, mean, low, high = _round_band(slots[(attack, method)])
                    if rounds.size == 0:
                        continue
                    seeds = len(slots[(attack, method)])
                    line, = ax.plot(rounds, mean, **_line_style(i, len(methods)),
                                    label=f"{method} ({seeds} seed{'s' if seeds > 1 else ''})")
                    if seeds > 1:
                        ax.fill_between(rounds, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
                where = _group_title(group, _entries(slots), defaults, skip=("dataset",))
                ax.set(title=f"{attack}" + (f" · {where}" if where != "all cells" else ""), xlabel="round",
                       ylabel="detection accuracy (TP+TN)/n (%)")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(alpha=0.3)
                ax.legend(fontsize="small", title="mean over seeds, band: min–max", title_fontsize="small")
            fig.suptitle(f"{dataset}: detection accuracy per round")
            name = f"rounds_{_slug(dataset)}_{_slug(attack)}.png"
            written[name] = _save(fig, out / name)
    return written


def _figures(entries, groups, axes_all, defaults, out: Path) -> dict[str, Path]:
    """Every figure, or none (with a warning) when matplotlib is missing."""
    try:
        require("matplotlib", "plot", _NEEDS_MATPLOTLIB)
    except ImportError as exc:
        warnings.warn(f"{exc}; the report's tables are written, its figures skipped", stacklevel=3)
        return {}
    written = _attack_method_heatmap(groups, defaults, out)
    if any(math.isfinite(e["results"].get("final_test_accuracy", math.nan)) for e in entries):
        written.update(_attack_method_heatmap(groups, defaults, out, "final_test_accuracy"))
    if "byzantine" in axes_all and "alpha" in axes_all:
        written.update(_f_alpha_heatmaps(entries, axes_all, defaults, out))
    written.update(_round_figures(entries, axes_all, defaults, out))
    return written


# ----------------------------------------------------------------------------- the report

def _range_text(values: Sequence[Any]) -> str:
    """'3' or '3–30': the range of the values, or 'none'."""
    values = sorted(set(values))
    if not values:
        return "none"
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def _last_line(text: Any) -> str:
    """The last line of an error text (a traceback's message)."""
    lines = str(text or "").strip().splitlines()
    return lines[-1] if lines else "(no error recorded)"


def _index(sweep: dict, cells: Sequence[dict], entries: Sequence[dict], failed: Sequence[dict],
           written: dict[str, Path], defaults: dict, out: Path) -> dict[str, Path]:
    """``report.md``: a summary paragraph and links to every file written."""
    listed = {c["cell"] for c in cells}
    registered = set(sweep.get("cells") or {}) | listed
    pending = len(registered - listed)
    seeds = sorted({axis_value(e["cell"], "seed", defaults) for e in entries}, key=_sort_key)
    summary = (f"{len(registered)} cells: {len(entries)} done, {len(failed)} failed"
               + (f", {pending} not run yet" if pending else "")
               + f". Rounds per done cell: {_range_text([e['results']['rounds'] for e in entries])}; "
               f"seeds: {len(seeds)} ({', '.join(map(str, seeds)) or 'none'}). Detection accuracy and F1 are "
               "means over rounds, test accuracy the last round's; entries are mean ± std over seeds, in %.")
    if sweep.get("paper"):
        summary += f" Compared with the paper's {sweep['paper'].get('table')}."
    md = [f"# Sweep report: {sweep.get('name')}", "", summary, ""]
    titles = {"detection": "Detection accuracy and F1", "test_accuracy": "Final test accuracy",
              "worst_case": "Worst case over attacks", "paper_comparison": "Comparison with the paper",
              "failed": "Failed cells"}
    md += ["## Tables", ""]
    for stem, title in titles.items():
        links = [f"[{name}]({name})" for name in (f"{stem}.md", f"{stem}.csv") if name in written]
        if links:
            md.append(f"- {title}: {', '.join(links)}")
    figures = [name for name in written if name.endswith(".png")]
    md += ["", "## Figures", ""] + ([f"- [{name}]({name})" for name in figures] or ["(none)"])
    if failed:
        md += ["", "## Failed cells", ""] + [
            f"- `{c['cell']}` `{_key(c.get('grid') or {})}`: {_last_line(c.get('error'))} (see [failed.md](failed.md))"
            for c in failed]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return {"report.md": out / "report.md"}


def write_report(sweep_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write the report of the sweep in ``sweep_dir`` into ``out_dir`` (created if needed);
    returns ``{file name: path}`` of every file written (see the module docs)."""
    sweep_dir, out = Path(sweep_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweep, cells = load_sweep(sweep_dir), list(load_cells(sweep_dir).values())
    defaults = _simulate_defaults()
    done = [c for c in cells if c.get("status") == "done"]
    failed = [c for c in cells if c.get("status") != "done"]
    entries = [{"cell": c, "results": cell_results(sweep_dir, c)} for c in done]
    axes = group_axes(cells)
    groups = group_cells(entries, axes, defaults)
    written: dict[str, Path] = {}
    written.update(_entry_table(groups, defaults, ("detection_accuracy", "f1"), "Detection accuracy (F1)",
                                "Detection accuracy (TP + TN) / n and, in parentheses, F1, in %: per cell the "
                                "mean over rounds, then mean ± std over seeds.", out, "detection"))
    written.update(_entry_table(groups, defaults, ("final_test_accuracy",), "Final test accuracy",
                                "Test accuracy of the global model after the last round, in %.", out,
                                "test_accuracy"))
    written.update(_worst_case_table(groups, defaults, out))
    if sweep.get("paper"):
        written.update(_paper_table(groups, defaults, sweep["paper"], out))
    if failed:
        written.update(_failed_page(failed, out))
    if entries:
        written.update(_figures(entries, groups, axes, defaults, out))
    written.update(_index(sweep, cells, entries, failed, written, defaults, out))
    return written
