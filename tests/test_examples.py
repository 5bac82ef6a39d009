"""The runnable examples: examples/jax_loop.py and the Flower app in examples/flower."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import load_example as load

ROOT = Path(__file__).resolve().parent.parent


def test_jax_loop_rejects_the_attackers_and_learns_where_fedavg_does_not(capsys):
    loop = load(ROOT / "examples" / "jax_loop.py")
    defended = loop.main(["--rounds", "3", "--attack", "gaussian"])
    plain = loop.main(["--rounds", "3", "--attack", "gaussian", "--method", "mean"])
    assert [r["rejected"] for r in defended] == [[0, 1, 2]] * 3  # clients 0..2 are the attackers
    assert [r["rejected"] for r in plain] == [[]] * 3
    assert defended[-1]["test_accuracy"] > 0.75 > plain[-1]["test_accuracy"] + 0.2
    assert '"round": 3' in capsys.readouterr().out


def test_flower_example_rejects_the_byzantine_partitions(monkeypatch, tmp_path):
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    simulate = load(ROOT / "examples" / "flower" / "simulate.py")
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "flower"))  # the ClientApp's package, for Ray's workers
    out = tmp_path / "rounds.jsonl"
    rows = simulate.main(["--dataset", "digits", "--nodes", "6", "--rounds", "2", "--byzantine", "1",
                          "--attack", "gaussian", "--strategy", "qkrum", "fedavg", "--out", str(out)])
    qkrum_rows = [r for r in rows if r["strategy"] == "qkrum" and r["round"] > 0]
    assert [r["rejected_partitions"] for r in qkrum_rows] == [[0], [0]]
    assert not any("failures" in r for r in rows)
    assert len(out.read_text().splitlines()) == len(rows) == 6  # rounds 0..2 of each strategy
    final = {r["strategy"]: r["test_accuracy"] for r in rows if r["round"] == 2}
    assert final["qkrum"] > final["fedavg"]


def test_flower_example_settings_fail_early_and_name_the_setting():
    sys.path.insert(0, str(ROOT / "examples" / "flower"))
    try:
        from qkrum_flower_example import task
    finally:
        sys.path.remove(str(ROOT / "examples" / "flower"))
    with pytest.raises(ValueError, match="no-such-setting"):
        task.settings({"no-such-setting": 1})
    with pytest.raises(ValueError, match="strategy"):
        task.settings({"strategy": "krum"})
    with pytest.raises(ValueError, match="nope"):
        task.settings({"attack": "nope"})
    assert task.settings({"attack": "ipm(epsilon=0.5)"})["attack"] == "ipm(epsilon=0.5)"
