"""CQSA as the FL simulation's server step: qkrum.cqsa.cqsa_server, simulate and the CLI."""

import json

import jax
import numpy as np
import pytest

from qkrum.cli import main as cli
from qkrum.cqsa import cluster_detection, cqsa_aggregate, cqsa_server
from qkrum.fl import simulate

FAST = dict(clients=8, byzantine=2, rounds=2, local_epochs=1, progress=False)


def test_server_step_is_one_cqsa_round_with_its_detection(rng):
    x = rng.normal(scale=0.01, size=(9, 40)).astype(np.float32)
    x[:2] = -40 * x[2:].mean(0)  # clipped sign-flip attackers
    is_byz = np.arange(9) < 2
    server = cqsa_server(cluster_size=3, lam=0.02, shots=256, clip=0.05, screen="rule")
    agg, info = server(x, 2, jax.random.key(5))
    want = cqsa_aggregate(x, cluster_size=3, clip=0.05, lam=0.02, shots=256, seed=jax.random.key(5), screen="rule")
    np.testing.assert_array_equal(np.asarray(agg), np.asarray(want.aggregate))
    np.testing.assert_array_equal(info["selected"], want.client_kept)
    det = cluster_detection(want, is_byz)
    got = info["round_metrics"](is_byz)
    assert got["cluster_tpr"] == det["cluster"]["rejection_rate"]
    assert got["honest_dropped_with_attacker"] == det["honest_dropped_with_attacker"]
    assert info["extra"]["num_clusters"] == 3 and info["extra"]["clipped_clients"] >= 2


def test_ideal_unscreened_cqsa_equals_fedavg_in_the_simulation():
    # Noiseless readout, no screening, a clipping bound no update reaches: CQSA's aggregate
    # is the plain mean, so the run follows plain FedAvg up to float32 phase rounding.
    mean = simulate("digits", attack="none", method="mean", **FAST)
    quantum = simulate("digits", attack="none", aggregator=cqsa_server(cluster_size=3, shots=None, clip=1.0,
                                                                       screen=None), **FAST)
    flat = lambda h: np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(h.params)])
    np.testing.assert_allclose(flat(quantum), flat(mean), atol=2e-5)
    assert [r["selected"] for r in quantum.rounds] == [list(range(8))] * 2
    assert quantum.config["server"] == "cqsa" and quantum.config["server_config"]["cluster_size"] == 3


def test_screening_drops_the_clusters_of_scaled_sign_flippers(tmp_path):
    # An ideal readout: with 1024 shots the decoding noise (~1.5e-3 per coordinate at
    # B = 0.05) is as large as a digits MLP's update coordinates and screening is noise-bound.
    out = tmp_path / "cqsa.jsonl"
    history = simulate("digits", clients=12, byzantine=1, attack="sign_flip", attack_options={"scale": 10.0},
                       rounds=2, local_epochs=1, progress=False, out=out,
                       aggregator=cqsa_server(cluster_size=3, lam=0.01, shots=None, clip=0.05, screen="rule"))
    for row in history.rounds:
        assert row["extra"]["byzantine_kept"] == 0 and row["tp"] == 1
        assert row["extra"]["cluster_tpr"] == 1.0 and row["extra"]["flagged_clusters"] >= 1
        # Cluster-level detection drops the attacker's cluster-mates with it.
        assert row["extra"]["honest_dropped_with_attacker"] == 2
    # Resuming with another cluster size is refused: the server's settings are part of the config.
    with pytest.raises(ValueError, match="cluster_size"):
        simulate("digits", clients=12, byzantine=1, attack="sign_flip", attack_options={"scale": 10.0},
                 rounds=3, local_epochs=1, progress=False, out=out,
                 aggregator=cqsa_server(cluster_size=4, lam=0.01, shots=None, clip=0.05, screen="rule"))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(cluster_size=0), ValueError, "cluster_size"),
    (dict(lam=1.5), ValueError, "lam"),
    (dict(shots=0), ValueError, "shots"),
    (dict(clip=-1.0), ValueError, "clip"),
    (dict(screen="bogus"), ValueError, "screen"),
    (dict(global_qsa=True), ValueError, "nothing to screen"),
])
def test_bad_settings_fail_when_the_server_is_built(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cqsa_server(**kwargs)


def test_cli_runs_cqsa_and_global_qsa(tmp_path, capsys):
    base = ["simulate", "--dataset", "digits", "--clients", "8", "--byzantine", "2", "--rounds", "1",
            "--local-epochs", "1", "--attack", "gaussian", "--no-progress", "--noise", "0.01"]
    assert cli(base + ["--aggregator", "cqsa", "--cluster-size", "2", "--out", str(tmp_path / "c.jsonl")]) == 0
    assert cli(base + ["--aggregator", "qsa", "--out", str(tmp_path / "q.jsonl")]) == 0
    rows = {name: json.loads((tmp_path / f"{name}.jsonl").read_text().splitlines()[-1]) for name in ("c", "q")}
    assert rows["c"]["extra"]["num_clusters"] == 4 and rows["q"]["extra"]["num_clusters"] == 1
    header = json.loads((tmp_path / "q.jsonl").read_text().splitlines()[0])
    assert header["config"]["server"] == "qsa" and header["config"]["server_config"]["lam"] == 0.01
    with pytest.raises(SystemExit):
        cli(base + ["--aggregator", "cqsa", "--cluster-size", "0"])
    assert "--cluster-size" in capsys.readouterr().err
