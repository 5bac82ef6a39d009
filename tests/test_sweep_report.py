"""qkrum.sweep.report on hand-made sweep directories (no simulation is run)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from qkrum.sweep import report
from qkrum.sweep.report import write_report
from qkrum.sweep.runner import load_cells as load_cell_map


def load_cells(sweep_dir):
    return list(load_cell_map(sweep_dir).values())

FIXED = {"dataset": "mnist", "clients": 15, "byzantine": 3, "rounds": 3, "partition": "dirichlet", "alpha": 0.5}
ATTACKS = ("alie", "gaussian")
METHODS = ("multikrum", "qubo-paper")
SEEDS = (0, 1)

# Per-round (detection accuracy, F1, test accuracy) per (attack, method, seed): chosen so that
# multikrum is worst on alie in both test and detection accuracy, qubo-paper worst on gaussian
# in detection accuracy and on alie in test accuracy.
ROUNDS = {
    ("alie", "multikrum", 0): [(0.80, 0.40, 0.70), (0.82, 0.45, 0.72), (0.84, 0.50, 0.74)],
    ("alie", "multikrum", 1): [(0.78, 0.30, 0.69), (0.80, 0.35, 0.71), (0.86, 0.55, 0.73)],
    ("alie", "qubo-paper", 0): [(0.95, 0.90, 0.80), (0.93, 0.85, 0.81), (0.97, 0.95, 0.82)],
    ("alie", "qubo-paper", 1): [(0.91, 0.80, 0.79), (0.96, 0.90, 0.80), (0.94, 0.88, 0.83)],
    ("gaussian", "multikrum", 0): [(1.0, 1.0, 0.90), (1.0, 1.0, 0.91), (1.0, 1.0, 0.92)],
    ("gaussian", "multikrum", 1): [(1.0, 1.0, 0.89), (1.0, 1.0, 0.90), (1.0, 1.0, 0.93)],
    ("gaussian", "qubo-paper", 0): [(0.60, 0.0, 0.88), (0.62, 0.05, 0.89), (0.64, 0.10, 0.90)],
    ("gaussian", "qubo-paper", 1): [(0.66, 0.15, 0.87), (0.60, 0.0, 0.88), (0.58, 0.0, 0.91)],
}
PAPER = {"table": "table_III_mnist", "methods": {"classical": "multikrum", "qubo": "qubo-paper"},
         "metrics": {"accuracy": "accuracy", "f1": "f1"}, "metric": None,
         "numbers": {"gaussian": {"classical": {"accuracy": 100, "f1": 100}, "qubo": {"accuracy": 60, "f1": 0}},
                     "alie": {"classical": {"accuracy": 81.33, "f1": 53.33}, "qubo": {"accuracy": 95.11, "f1": 87.78}},
                     "lie": {"classical": {"accuracy": 72.44, "f1": 31.11}, "qubo": {"accuracy": 86.67, "f1": 66.67}}}}


def _round_row(r: int, acc, f1, test) -> dict:
    return {"round": r, "test_accuracy": test, "test_loss": 1.0 - test, "tp": 2, "fp": 1, "tn": 11, "fn": 1,
            "accuracy": acc, "f1": f1, "regime": None, "selected": [0, 1, 2], "select_seconds": 0.01}


class FakeSweep:
    """Writes a sweep directory in the runner's format."""

    def __init__(self, root, name="fake", paper=None):
        self.root = root
        self.registry = {"version": 1, "name": name, "cells": {}, "paper": paper}
        self.lines: list[dict] = []
        (root / "cells").mkdir(parents=True)

    def cell(self, grid: dict, rows=None, *, status="done", error=None, torn=False, fixed=FIXED) -> str:
        cid = "c" + "".join(f"{k}{v}" for k, v in grid.items()).replace(".", "p")
        params = {**fixed, **grid}
        self.registry["cells"][cid] = {"params": params, "grid": grid}
        file = f"cells/{cid}.jsonl"
        if rows is not None:
            text = json.dumps({"config": {**params, "server": params["method"]}, "qkrum": "0.1.0"}) + "\n"
            text += "".join(json.dumps(_round_row(r, *row)) + "\n" for r, row in enumerate(rows, 1))
            if torn:
                text += '{"round": %d, "test_accuracy": 0.1, "accur' % (len(rows) + 1)
            (self.root / file).write_text(text)
        # The summary is deliberately off: the report must read the run files.
        summary = None if status == "failed" else {"rounds": 99, "final_test_accuracy": 0.0,
                                                   "detection_accuracy": 0.0, "f1": 0.0, "select_seconds": 0.0}
        self.lines.append({"cell": cid, "params": params, "grid": grid, "status": status, "error": error,
                           "attempts": 1, "seconds": 1.0, "file": file, "summary": summary})
        return cid

    def write(self):
        (self.root / "sweep.json").write_text(json.dumps(self.registry))
        (self.root / "cells.jsonl").write_text("".join(json.dumps(line) + "\n" for line in self.lines))
        return self.root


@pytest.fixture
def sweep_dir(tmp_path):
    fake = FakeSweep(tmp_path / "sweep", paper=PAPER)
    for (attack, method, seed), rows in ROUNDS.items():
        grid = {"attack": attack, "method": method, "seed": seed}
        if (attack, method, seed) == ("alie", "qubo-paper", 1):  # failed first, then done: the done line counts
            fake.cell(grid, None, status="failed", error="RuntimeError: out of memory")
        fake.cell(grid, rows, torn=(attack, method, seed) == ("gaussian", "multikrum", 0))
    fake.cell({"attack": "sign_flip", "method": "multikrum", "seed": 0}, None, status="failed",
              error="Traceback (most recent call last):\nValueError: boom in sign_flip")
    return fake.write()


def _csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _expected(attack, method, column):
    per_cell = [np.mean([row[column] for row in ROUNDS[(attack, method, s)]]) * 100 for s in SEEDS]
    return np.mean(per_cell), np.std(per_cell, ddof=0)


def _final(attack, method):
    per_cell = [ROUNDS[(attack, method, s)][-1][2] * 100 for s in SEEDS]
    return np.mean(per_cell), np.std(per_cell, ddof=0)


def test_load_cells_keeps_the_last_line_per_cell(sweep_dir):
    cells = load_cells(sweep_dir)
    assert len(cells) == 9
    by_grid = {(c["grid"]["attack"], c["grid"]["method"], c["grid"]["seed"]): c for c in cells}
    assert by_grid[("alie", "qubo-paper", 1)]["status"] == "done"
    assert by_grid[("sign_flip", "multikrum", 0)]["status"] == "failed"
    with open(sweep_dir / "cells.jsonl", "a") as fh:  # a torn last line is skipped
        fh.write('{"cell": "x", "status"')
    assert len(load_cells(sweep_dir)) == 9


def test_report_tables_match_the_cell_files(sweep_dir, tmp_path):
    written = write_report(sweep_dir, tmp_path / "out")
    for name in ("detection.md", "detection.csv", "test_accuracy.md", "test_accuracy.csv", "worst_case.md",
                 "worst_case.csv", "paper_comparison.md", "paper_comparison.csv", "failed.md", "report.md",
                 "heatmap_attack_method.png", "heatmap_test_accuracy.png", "rounds_mnist_alie.png", "rounds_mnist_gaussian.png"):
        assert name in written and written[name].is_file() and written[name].stat().st_size > 0, name
    assert not any(name.startswith("heatmap_f_alpha") for name in written)

    detection = {(r["attack"], r["method"]): r for r in _csv(written["detection.csv"])}
    assert set(detection) == {(a, m) for a in ATTACKS for m in METHODS}  # the failed sign_flip cell is not in it
    for (attack, method), row in detection.items():
        assert row["seeds"] == "2"
        for column, index in (("detection_accuracy", 0), ("f1", 1)):
            mean, std = _expected(attack, method, index)
            assert float(row[f"{column}_mean"]) == pytest.approx(mean, abs=1e-4)
            assert float(row[f"{column}_std"]) == pytest.approx(std, abs=1e-4)
    # The torn last line of one cell is skipped (its 4th round would pull the mean down).
    assert float(detection[("gaussian", "multikrum")]["detection_accuracy_mean"]) == pytest.approx(100.0)

    tests = {(r["attack"], r["method"]): r for r in _csv(written["test_accuracy.csv"])}
    for (attack, method), row in tests.items():
        mean, std = _final(attack, method)
        assert float(row["final_test_accuracy_mean"]) == pytest.approx(mean, abs=1e-4)
        assert float(row["final_test_accuracy_std"]) == pytest.approx(std, abs=1e-4)

    md = written["detection.md"].read_text()
    mean, std = _expected("alie", "qubo-paper", 0)
    f1_mean, f1_std = _expected("alie", "qubo-paper", 1)
    assert f"{mean:.1f} ± {std:.1f} ({f1_mean:.1f} ± {f1_std:.1f})" in md
    assert "over 2 seeds" in md and "sign_flip" not in md
    assert "sign_flip" not in written["test_accuracy.md"].read_text()

    failed = written["failed.md"].read_text()
    assert "boom in sign_flip" in failed and "out of memory" not in failed  # superseded by its done line
    index = written["report.md"].read_text()
    assert "9 cells: 8 done, 1 failed" in index and "seeds: 2" in index
    for name in written:
        if name != "report.md":
            assert f"({name})" in index, name


def test_worst_case_names_the_attack(sweep_dir, tmp_path):
    written = write_report(sweep_dir, tmp_path / "out")
    worst = {r["method"]: r for r in _csv(written["worst_case.csv"])}
    assert worst["multikrum"]["worst_test_accuracy_attack"] == "alie"
    assert worst["multikrum"]["worst_detection_accuracy_attack"] == "alie"
    assert worst["qubo-paper"]["worst_test_accuracy_attack"] == "alie"
    assert worst["qubo-paper"]["worst_detection_accuracy_attack"] == "gaussian"
    assert float(worst["qubo-paper"]["worst_detection_accuracy"]) == pytest.approx(
        _expected("gaussian", "qubo-paper", 0)[0], abs=1e-4)
    assert float(worst["multikrum"]["worst_test_accuracy"]) == pytest.approx(_final("alie", "multikrum")[0], abs=1e-4)


def test_paper_comparison_is_ours_minus_paper(sweep_dir, tmp_path):
    written = write_report(sweep_dir, tmp_path / "out")
    rows = _csv(written["paper_comparison.csv"])
    by_key = {(r["attack"], r["column"], r["metric"]): r for r in rows}
    assert not any(r["attack"] == "lie" for r in rows)  # not in the sweep
    ours_by_metric = {"detection_accuracy": 0, "f1": 1}
    paper_names = {"detection_accuracy": "accuracy", "f1": "f1"}
    for attack in ATTACKS:
        for column, method in PAPER["methods"].items():
            for metric, index in ours_by_metric.items():
                row = by_key[(attack, column, metric)]
                ours = _expected(attack, method, index)[0]
                theirs = PAPER["numbers"][attack][column][paper_names[metric]]
                assert row["method"] == method
                assert float(row["ours"]) == pytest.approx(ours, abs=1e-4)
                assert float(row["paper"]) == pytest.approx(theirs)
                assert float(row["difference"]) == pytest.approx(ours - theirs, abs=1e-4)
    for column, method in PAPER["methods"].items():
        for metric, index in ours_by_metric.items():
            row = by_key[("average", column, metric)]
            ours = np.mean([_expected(a, method, index)[0] for a in ATTACKS])
            theirs = np.mean([PAPER["numbers"][a][column][paper_names[metric]] for a in ATTACKS])
            assert float(row["ours"]) == pytest.approx(ours, abs=1e-4)
            assert float(row["paper"]) == pytest.approx(theirs, abs=1e-4)
            assert float(row["difference"]) == pytest.approx(ours - theirs, abs=1e-4)
    md = written["paper_comparison.md"].read_text()
    assert "Not in this sweep: lie" in md and "average (2)" in md


def test_f_alpha_grid_gives_the_heatmap_and_single_metric_paper_tables(tmp_path):
    paper = {"table": "table_VII_mnist_100_accuracy", "methods": {"classical": "multikrum"}, "metric": None,
             "metrics": {"accuracy": None}, "numbers": {"alie": {"classical": 80.4}, "gaussian": {"classical": 100}}}
    fake = FakeSweep(tmp_path / "sweep", paper=paper)
    values = {}
    for f in (1, 3):
        for alpha in (0.1, 1.0):
            for attack in ("alie", "gaussian"):
                acc = 0.5 + 0.1 * f + alpha / 10 + (0.05 if attack == "gaussian" else 0)
                values[(f, alpha, attack)] = acc
                fake.cell({"byzantine": f, "alpha": alpha, "attack": attack, "method": "multikrum"},
                          [(acc, 0.5, 0.9)] * 3)
    written = write_report(fake.write(), tmp_path / "out")
    assert written["heatmap_f_alpha_multikrum.png"].stat().st_size > 0
    detection = _csv(written["detection.csv"])
    assert {(r["byzantine"], r["alpha"]) for r in detection} == {("1", "0.1"), ("1", "1.0"), ("3", "0.1"), ("3", "1.0")}
    for r in detection:
        assert float(r["detection_accuracy_mean"]) == pytest.approx(
            100 * values[(int(r["byzantine"]), float(r["alpha"]), r["attack"])], abs=1e-4)
        assert r["detection_accuracy_std"] == ""  # one seed: no std
    md = written["detection.md"].read_text()
    assert md.count("## byzantine=") == 4 and "over 1 seed." in md
    comparison = _csv(written["paper_comparison.csv"])
    assert {r["metric"] for r in comparison} == {"detection_accuracy"}
    row = next(r for r in comparison if r["attack"] == "alie" and r["byzantine"] == "3" and r["alpha"] == "0.1")
    assert float(row["paper"]) == 80.4
    assert float(row["difference"]) == pytest.approx(100 * values[(3, 0.1, "alie")] - 80.4, abs=1e-4)


def test_without_matplotlib_the_tables_are_written(sweep_dir, tmp_path, monkeypatch):
    real = report.require

    def require(module, *args, **kwargs):
        if module.startswith("matplotlib"):
            raise ModuleNotFoundError("qkrum report's figures needs matplotlib, which is not installed")
        return real(module, *args, **kwargs)

    monkeypatch.setattr(report, "require", require)
    with pytest.warns(UserWarning, match="figures skipped"):
        written = write_report(sweep_dir, tmp_path / "out")
    assert "detection.csv" in written and not any(name.endswith(".png") for name in written)
    assert not list((tmp_path / "out").glob("*.png"))


def test_an_empty_sweep_dir_gives_empty_tables(tmp_path):
    (tmp_path / "sweep").mkdir()
    written = write_report(tmp_path / "sweep", tmp_path / "out")
    assert _csv(written["detection.csv"]) == []
    assert "0 cells: 0 done, 0 failed" in written["report.md"].read_text()
