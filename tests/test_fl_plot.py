"""``qkrum plot``: every detection metric has a panel, identical runs stay visible, and
the y axes fit the data. Synthetic runs, so nothing is trained."""

import numpy as np
import pytest

from qkrum.fl.plot import PANELS, _figure, plot_runs
from qkrum.fl.simulation import History

CONFIG = {"dataset": "digits", "clients": 15, "byzantine": 3, "attack": "alie", "server": "mean"}


def _run(test_accuracy, *, f1=0.0, rejection=0.0, server="mean", attack="alie"):
    rows = [{"round": t, "test_accuracy": acc, "accuracy": 0.8, "f1": f1, "rejection_rate": rejection,
             "retention_rate": 1.0} for t, acc in enumerate(test_accuracy, 1)]
    return History({**CONFIG, "server": server, "attack": attack}, rows, np.array([1, 4, 7]))


def _lines(ax):
    return [line for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")]


def test_every_metric_has_a_panel_with_each_run():
    a = _run([0.85, 0.87, 0.9], f1=1.0, rejection=1.0, server="multikrum")
    b = _run([0.86, 0.88, 0.89])  # selects everyone: detection accuracy 0.8, F1 0, rejection 0
    fig, axes = _figure([a, b], labels=["MultiKrum", "mean"])
    assert list(axes) == [key for key, _, _ in PANELS]
    assert {"f1", "rejection_rate", "retention_rate", "accuracy", "test_accuracy"} <= set(axes)
    for key, ylabel, _ in PANELS:
        ax = axes[key]
        assert ax.get_ylabel() == ylabel and ax.figure is fig
        lines = _lines(ax)
        assert [line.get_label() for line in lines] == ["MultiKrum", "mean"]
        for line, run in zip(lines, (a, b)):
            np.testing.assert_array_equal(line.get_ydata(), run.column(key))
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(_lines(axes["f1"])[1].get_ydata(), [0, 0, 0])  # "0.8 detection" is no detection


def test_identical_runs_do_not_hide_each_other():
    runs = [_run([0.5, 0.6, 0.7]) for _ in range(3)]
    _, axes = _figure(runs)
    for ax in axes.values():
        styles = [(line.get_linestyle(), line.get_marker()) for line in _lines(ax)]
        assert len(styles) == 3
        assert len({s for s, _ in styles}) == 3 and len({m for _, m in styles}) == 3


def test_y_axis_fits_the_data_with_a_margin():
    _, axes = _figure([_run([0.85, 0.87, 0.9]), _run([0.86, 0.88, 0.89])])
    lo, hi = axes["test_accuracy"].get_ylim()
    assert 0.8 < lo < 0.85 and 0.9 < hi < 0.95
    lo, hi = axes["accuracy"].get_ylim()  # a flat 0.8: a small margin around it
    assert 0.75 <= lo < 0.8 < hi <= 0.85
    lo, hi = axes["retention_rate"].get_ylim()  # 1.0: clipped just above 1
    assert 0.95 <= lo < 1.0 < hi <= 1.02


def test_undefined_metrics_are_said_so():
    run = _run([0.5, 0.6], rejection=None)
    for row in run.rounds:
        row["f1"] = None
    _, axes = _figure([run])
    texts = [t.get_text() for t in axes["rejection_rate"].texts]
    assert texts and "undefined in every round" in texts[0] and "no Byzantine client" in texts[0]
    assert axes["rejection_rate"].get_ylim() == pytest.approx((-0.02, 1.02))


def test_plot_runs_writes_a_png(tmp_path):
    out = plot_runs([_run([0.5, 0.6]), _run([0.5, 0.6])], tmp_path / "sub" / "fig.png", title="t")
    assert out == tmp_path / "sub" / "fig.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="labels has 1 entries for 2 runs"):
        plot_runs([_run([0.5]), _run([0.5])], tmp_path / "x.png", labels=["one"])
