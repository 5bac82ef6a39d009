"""The simulation: learning, attacks, the server step, determinism, resumable output,
and bad input rejected before any training. Fast runs use the offline "digits" data."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

import qkrum.fl.simulation as sim
from qkrum.fl.simulation import ATTACK_NAMES, ROUND_KEYS, selection_aggregator, simulate

# Faster learning than the paper's settings so that a few rounds on 1,438 digits show it.
FAST = dict(clients=8, byzantine=2, lr=0.1, local_epochs=2, batch_size=16, progress=False)
TIMING = ("train_seconds", "attack_seconds", "select_seconds", "eval_seconds")


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


class Recorder:
    """A custom server step that records what it is given and aggregates by the mean."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def __call__(self, updates, f, key):
        self.calls.append((np.asarray(updates), f))
        return updates.mean(axis=0), {"selected": np.ones(updates.shape[0], bool)}


@pytest.fixture(scope="module")
def runs():
    """Four 4-round runs shared by the learning and attack tests."""
    scaled = {"scale": 10.0}
    return {
        "clean": simulate("digits", attack="none", method="mean", rounds=4, **FAST),
        "mean": simulate("digits", attack="sign_flip", attack_options=scaled, method="mean", rounds=4, **FAST),
        "multikrum": simulate("digits", attack="sign_flip", attack_options=scaled, method="multikrum", rounds=4,
                              **FAST),
    }


def test_mean_without_attack_learns(runs):
    h = runs["clean"]
    acc = h.column("test_accuracy")
    assert len(h) == 4 and acc[-1] > 0.6 and acc[-1] > acc[0]  # chance is 0.1
    for row in h.rounds:
        assert list(row) == list(ROUND_KEYS)
        # No attacker: every client is honest and "mean" aggregates them all.
        assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (0, 0, 8, 0)
        assert row["accuracy"] == 1.0 and row["rejection_rate"] is None and row["regime"] is None


def test_scaled_sign_flip_breaks_the_mean_and_multikrum_recovers(runs):
    clean, mean, mk = (runs[k].column("test_accuracy") for k in ("clean", "mean", "multikrum"))
    assert mean[-1] < 0.3 < 0.6 < mk[-1]
    assert mk[-1] >= clean[-1] - 0.1  # MultiKrum trains on 6 of the 8 clients
    for row in runs["multikrum"].rounds:
        assert row["accuracy"] == 1.0 and row["rejection_rate"] == 1.0 and row["tp"] == 2
        assert sorted(set(range(8)) - set(row["selected"])) == runs["multikrum"].byzantine.tolist()
    for row in runs["mean"].rounds:
        assert row["fn"] == 2 and row["accuracy"] == 0.75


def test_same_seed_same_history_other_seed_differs():
    a = simulate("digits", attack="alie", method="multikrum", rounds=2, seed=3, **FAST)
    b = simulate("digits", attack="alie", method="multikrum", rounds=2, seed=3, **FAST)
    c = simulate("digits", attack="alie", method="multikrum", rounds=2, seed=4, **FAST)
    assert _strip(a.rounds) == _strip(b.rounds) and a.config == b.config
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.params, b.params)
    np.testing.assert_array_equal(a.byzantine, b.byzantine)
    assert _strip(a.rounds) != _strip(c.rounds)
    assert a.byzantine.size == 2 and np.all(np.diff(a.byzantine) > 0) and a.byzantine.max() < 8


def test_server_step_is_w_plus_eta_times_the_aggregate():
    d = 15_010
    const = np.linspace(-1, 1, d).astype(np.float32)

    def zero(updates, f, key):
        return np.zeros(d, np.float32), {}

    def constant(updates, f, key):
        return const, {}

    kw = dict(FAST, rounds=1, server_lr=0.5, attack="none")
    h0, h1 = simulate("digits", aggregator=zero, **kw), simulate("digits", aggregator=constant, **kw)
    flat = lambda h: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(h.params)])
    np.testing.assert_allclose(flat(h1) - flat(h0), 0.5 * const, atol=1e-6)
    # A server step without a selection has no detection metrics.
    assert h0.rounds[0]["accuracy"] is None and h0.rounds[0]["selected"] is None
    assert h0.config["server"] == "zero" and h0.config["method_options"] is None


def test_byzantine_updates_are_crafted_from_the_honest_ones():
    rec = Recorder()
    h = simulate("digits", attack="sign_flip", attack_options={"scale": 2.0}, aggregator=rec, rounds=2, **FAST)
    byz = h.byzantine
    honest = np.setdiff1d(np.arange(8), byz)
    for updates, f in rec.calls:
        assert f == 2
        for i in byz:  # Table I: -scale · (mean of the honest updates)
            np.testing.assert_allclose(updates[i], -2.0 * updates[honest].mean(axis=0), rtol=1e-5, atol=1e-8)
    assert h.rounds[1]["tp"] == 0 and h.rounds[1]["fn"] == 2  # the recorder keeps everyone


def test_label_flip_poisons_only_the_byzantine_clients():
    clean, flip = Recorder(), Recorder()
    simulate("digits", attack="none", aggregator=clean, rounds=1, **FAST)
    h = simulate("digits", attack="label_flip", aggregator=flip, rounds=1, **FAST)
    (u_clean, _), (u_flip, _) = clean.calls[0], flip.calls[0]
    honest = np.setdiff1d(np.arange(8), h.byzantine)
    np.testing.assert_array_equal(u_flip[honest], u_clean[honest])
    for i in h.byzantine:
        assert not np.allclose(u_flip[i], u_clean[i])


def test_multisignal_reports_its_regime():
    h = simulate("digits", attack="gaussian", method="multisignal", rounds=1,
                 method_options={"num_reads": 20}, **FAST)
    assert h.rounds[0]["regime"] in ("outlier", "magnitude", "clustered", "evasion")
    assert h.config["method_options"] == {"num_reads": 20}


def test_results_file_resumes_where_it_stopped(tmp_path):
    kw = dict(attack="alie", method="multikrum", seed=1, **FAST)
    fresh = simulate("digits", rounds=3, out=tmp_path / "fresh.jsonl", **kw)
    path = tmp_path / "run.jsonl"
    simulate("digits", rounds=2, out=path, **kw)
    header = json.loads(path.read_text().splitlines()[0])
    assert header["config"]["attack"] == "alie" and "rounds" not in header["config"]
    # Interrupted while writing round 3's line: a torn line, the model still at round 2.
    with path.open("a") as fh:
        fh.write('{"round": 3, "test_accur')
    resumed = simulate("digits", rounds=3, out=path, **kw)
    assert _strip(resumed.rounds) == _strip(fresh.rounds)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r.get("round") for r in lines] == [None, 1, 2, 3]
    assert _strip(lines[1:]) == _strip(fresh.rounds)
    # Stopped after round 4's line but before its model was saved: round 4 is redone.
    shutil.copy(tmp_path / "run.jsonl.npz", tmp_path / "round3.npz")
    simulate("digits", rounds=4, out=path, **kw)
    four = [json.loads(line) for line in path.read_text().splitlines()][1:]
    os.replace(tmp_path / "round3.npz", tmp_path / "run.jsonl.npz")  # model back to round 3, line 4 stays
    again = simulate("digits", rounds=4, out=path, **kw)
    assert again.trained == 1 and _strip(again.rounds) == _strip(four) and len(path.read_text().splitlines()) == 5
    with np.load(tmp_path / "fresh.jsonl.npz") as z:
        assert z["round"] == 3 and z["params"].shape == (15_010,)
        np.testing.assert_array_equal(z["byzantine"], fresh.byzantine)
    # A finished run asked for no more rounds returns it without training.
    done = simulate("digits", rounds=2, out=path, **kw)
    assert len(done) == 4


def test_results_file_of_another_run_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "run.jsonl"
    simulate("digits", rounds=1, out=path, attack="alie", **FAST)
    monkeypatch.setattr(sim, "local_trainer", _no_training)
    with pytest.raises(ValueError, match="different config .*attack: 'alie' in the file, 'lie' now"):
        simulate("digits", rounds=2, out=path, attack="lie", **FAST)
    os.remove(tmp_path / "run.jsonl.npz")
    with pytest.raises(ValueError, match="model file .* is missing"):
        simulate("digits", rounds=2, out=path, attack="alie", **FAST)
    other = tmp_path / "other.jsonl"
    other.write_text('{"round": 1}\n')
    with pytest.raises(ValueError, match="not a qkrum simulation file"):
        simulate("digits", rounds=1, out=other, **FAST)


def _no_training(*args, **kwargs):
    raise AssertionError("training started although the input was bad")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dataset="svhn"), ValueError, "unknown dataset='svhn'; valid datasets: digits, mnist"),
    (dict(attack="nope"), ValueError, "unknown attack='nope'; valid attacks: none, label_flip, alie"),
    (dict(method="nope"), ValueError, "unknown method='nope'; valid methods: .*multikrum"),
    (dict(byzantine=8), ValueError, "byzantine must be smaller than clients=8"),
    (dict(byzantine=9), ValueError, "byzantine must be smaller than clients=8"),
    (dict(clients=400, alpha=0.01), ValueError, "min_size"),  # the partition leaves clients empty
    (dict(partition="random"), ValueError, "unknown partition='random'"),
    (dict(clients=4, byzantine=2), ValueError, "n - f - 2 >= 1"),  # no Krum neighbours
    (dict(method_options={"tau": 1}), TypeError, "takes no options"),
    (dict(attack="alie", attack_options={"zz": 1}), TypeError, "unknown parameter"),
    (dict(attack="label_flip", attack_options={"zz": 1}), TypeError, "takes no options"),
    (dict(lr=-1.0), ValueError, "learning_rate must be a finite number > 0"),
    (dict(server_lr=0.0), ValueError, "server_lr must be a finite number > 0"),
    (dict(rounds=0), ValueError, "rounds must be >= 1"),
])
def test_bad_input_fails_before_training(monkeypatch, kwargs, error, match):
    monkeypatch.setattr(sim, "local_trainer", _no_training)
    args = dict(FAST, rounds=2, method="multikrum")
    args.update(kwargs)
    dataset = args.pop("dataset", "digits")
    with pytest.raises(error, match=match):
        simulate(dataset, **args)


def test_names_and_aggregator_factory():
    assert ATTACK_NAMES[:2] == ("none", "label_flip") and "alie" in ATTACK_NAMES
    with pytest.raises(ValueError, match="unknown method='x'"):
        selection_aggregator("x")
    agg = selection_aggregator("multikrum", project=None)
    x = np.zeros((6, 5), np.float32)
    x[5] = 100.0  # an obvious outlier
    out, info = agg(jax.numpy.asarray(x), 1, jax.random.key(0))
    assert info["selected"].tolist() == [True] * 5 + [False] and np.allclose(out, 0)


def test_training_defaults_follow_the_dataset(tmp_path, monkeypatch):
    """None means the dataset's default (DATASET_DEFAULTS); an explicit value wins; the
    resolved values are the run's config. Stopped before training: the header is written."""
    monkeypatch.setattr(sim, "local_trainer", _no_training)
    assert sim.defaults_for("mnist") == sim.PAPER_DEFAULTS and sim.PAPER_DEFAULTS["lr"] == 0.01
    assert sim.defaults_for("digits")["lr"] == 0.1 and sim.defaults_for("my-data") == sim.PAPER_DEFAULTS
    for kwargs, want in [({}, dict(learning_rate=0.1, batch_size=16, local_epochs=5)),
                         (dict(lr=0.02, local_epochs=1), dict(learning_rate=0.02, batch_size=16, local_epochs=1))]:
        path = tmp_path / f"run{len(kwargs)}.jsonl"
        with pytest.raises(AssertionError, match="training started"):
            simulate("digits", clients=8, byzantine=2, rounds=1, progress=False, out=path, **kwargs)
        config = sim.read_run(path)[0]
        assert {k: config["local"][k] for k in want} == want
        assert config["local"]["weight_decay"] == 1e-4 and config["server_lr"] == 1.0


def test_digits_defaults_separate_the_mean_from_multikrum():
    """The offline default shows something: with default settings (15 clients, f = 3,
    Dirichlet 0.5), clean FedAvg passes 0.85 within 10 rounds, Gaussian-noise attackers
    keep the plain mean far below, and MultiKrum stays near the clean run (about 12 s)."""
    kw = dict(rounds=10, seed=0, progress=False)
    clean = simulate("digits", attack="none", method="mean", **kw).column("test_accuracy")
    mean = simulate("digits", attack="gaussian", method="mean", **kw).column("test_accuracy")
    mk = simulate("digits", attack="gaussian", method="multikrum", **kw)
    mk_acc = mk.column("test_accuracy")
    assert clean.max() >= 0.85 and clean[-1] >= 0.85
    assert mean[-1] < clean[-1] - 0.15 and mean.max() < 0.8
    assert mk_acc[-1] >= clean[-1] - 0.05 and mk_acc[-1] >= 0.85
    assert all(r["rejection_rate"] == 1.0 for r in mk.rounds)


@pytest.mark.slow
def test_mnist_fedavg_reaches_90_percent():
    """The paper's setting with plain FedAvg: MNIST, 15 clients, 30 rounds, no attack."""
    from qkrum.fl.data import default_data_dir

    if default_data_dir() is None:
        pytest.skip("needs QKRUM_DATA_DIR with mnist/")
    h = simulate("mnist", clients=15, byzantine=3, attack="none", method="mean", rounds=30, progress=False)
    assert h.column("test_accuracy")[-1] >= 0.90
