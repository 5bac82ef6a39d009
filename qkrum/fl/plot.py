"""Round-by-round plots of simulation runs, as the paper's Figures 1–6.

:func:`plot_runs` draws, for one or more runs (JSON-lines files written by
:func:`qkrum.fl.simulation.simulate`, or :class:`~qkrum.fl.simulation.History` objects), one
panel per round metric (:data:`PANELS`): the test accuracy, the detection accuracy
``(TP + TN) / n`` (the paper's figures), and the F1, rejection rate ``TP / f`` and
retention rate ``TN / (n − f)`` of :func:`qkrum.metrics.detection`. Detection accuracy
alone misleads: a server that keeps every client scores ``(n − f) / n`` (0.8 for 15
clients and f = 3) without detecting anyone, where its F1 and rejection rate are 0.

Choices (ours):

* Every run has its own line style, marker and colour (cycled by position), and earlier
  runs are drawn wider with larger hollow markers, so that identical runs, e.g. two
  methods that select the same clients, stay visible on top of each other instead of
  hiding one another.
* Each panel's y axis fits the data (10 % of their range as a margin, at least 0.02,
  clipped to just outside ``[0, 1]``), so differences within 0.85..0.9 are visible; a
  panel without a defined value (rejection rate and F1 when no client is Byzantine)
  says so.
* Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), so
  it works headless.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qkrum._optional import require

__all__ = ["PANELS", "plot_runs", "run_label"]

#: ``(round key, y-axis label, panel title)``, in drawing order.
PANELS: tuple[tuple[str, str, str], ...] = (
    ("test_accuracy", "test accuracy", "Global model"),
    ("accuracy", "detection accuracy (TP+TN)/n", "Detection accuracy"),
    ("f1", "F1 = 2TP/(2TP+FP+FN)", "Detection F1"),
    ("rejection_rate", "rejection rate TP/f", "Attackers rejected"),
    ("retention_rate", "retention rate TN/(n−f)", "Honest clients kept"),
)

_NEEDS_MATPLOTLIB = "plotting runs (qkrum.fl.plot_runs, `qkrum plot`)"  # require()'s `what`
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _load(run: Any) -> tuple[dict, list[dict]]:
    from qkrum.fl.simulation import History, read_run

    if isinstance(run, History):
        return run.config, run.rounds
    path = Path(run)
    if not path.is_file():
        raise FileNotFoundError(f"run file {str(path)!r} does not exist")
    config, rows = read_run(path)
    if config is None:
        raise ValueError(f"{str(path)!r} is not a qkrum simulation file (no config line)")
    if not rows:
        raise ValueError(f"{str(path)!r} has no finished rounds to plot")
    return config, rows


def run_label(config: dict) -> str:
    """``"<server> · <attack>"`` (and the dataset), e.g. ``"multikrum · alie · mnist"``."""
    return f"{config.get('server')} · {config.get('attack')} · {config.get('dataset')}"


def _column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)


def _style(i: int, count: int) -> dict:
    rcParams = require("matplotlib", "plot", _NEEDS_MATPLOTLIB).rcParams

    colors = rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    size = (count - 1 - i) % 3  # earlier runs wider, so a later identical run drawn on top leaves them visible
    return {"linestyle": _LINESTYLES[i % len(_LINESTYLES)], "marker": _MARKERS[i % len(_MARKERS)],
            "color": colors[i % len(colors)], "linewidth": 1.2 + 0.9 * size, "markersize": 3.5 + 2.5 * size,
            "markerfacecolor": "none" if size else None}


def _fit(values: np.ndarray) -> tuple[float, float] | None:
    """y limits around the finite ``values`` (None when there is none)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    margin = max(0.1 * (hi - lo), 0.02)
    return max(lo - margin, -0.02), min(hi + margin, 1.02)


def _figure(runs: Sequence[Any], *, labels: Sequence[str] | None = None, title: str | None = None):
    """The :class:`matplotlib.figure.Figure` of :func:`plot_runs` (on an Agg canvas) and
    its axes by round key."""
    require("matplotlib", "plot", _NEEDS_MATPLOTLIB)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty: give at least one run file")
    loaded = [_load(r) for r in runs]
    if labels is not None and len(labels) != len(loaded):
        raise ValueError(f"labels has {len(labels)} entries for {len(loaded)} runs")
    labels = list(labels) if labels is not None else [run_label(c) for c, _ in loaded]

    fig = Figure(figsize=(14, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(2, 3)
    axes = dict(zip([key for key, _, _ in PANELS], grid.flat))
    legend_ax = grid.flat[len(PANELS)]
    for key, ylabel, panel_title in PANELS:
        ax = axes[key]
        columns = []
        for i, ((config, rows), label) in enumerate(zip(loaded, labels)):
            column = _column(rows, key)
            columns.append(column)
            ax.plot(_column(rows, "round"), column, label=label, **_style(i, len(loaded)))
        limits = _fit(np.concatenate(columns))
        if limits is None:
            ax.set_ylim(-0.02, 1.02)
            ax.text(0.5, 0.5, "undefined in every round\n(no Byzantine client)" if key == "rejection_rate"
                    else "undefined in every round", transform=ax.transAxes, ha="center", va="center",
                    color="0.4")
        else:
            ax.set_ylim(*limits)
        ax.set(xlabel="round", ylabel=ylabel, title=panel_title)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_ax.axis("off")
    handles, texts = axes["test_accuracy"].get_legend_handles_labels()
    legend_ax.legend(handles, texts, loc="center", fontsize="small", frameon=False)
    first = loaded[0][0]
    fig.suptitle(title or f"{first.get('dataset')}: n={first.get('clients')}, f={first.get('byzantine')}")
    return fig, axes


def plot_runs(runs: Sequence[Any], out: str | os.PathLike, *, labels: Sequence[str] | None = None,
              title: str | None = None) -> Path:
    """Draw ``runs`` into the PNG ``out`` (parent folders are created); returns its path."""
    fig, _ = _figure(runs, labels=labels, title=title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out
