"""Resuming a run file: the model sidecar belongs to its run, unreadable sidecars are clear
errors, one writer per file, finished runs are returned untouched (without loading data),
and files follow the umask. Runs use the offline "digits" data, 8 clients, 1 local step."""

import os
import pickle
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import qkrum.fl.data
import qkrum.fl.simulation as sim
from qkrum.fl.simulation import RunLockedError, simulate

KW = dict(clients=8, byzantine=2, attack="alie", method="multikrum", local_steps=1, progress=False)


def _forbid(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was called for a run that is already complete")
    return fail


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 3-round run in S.jsonl and a 1-round run of another seed in S.json, same folder."""
    folder = tmp_path_factory.mktemp("runs")
    jsonl = simulate("digits", rounds=3, seed=1, out=folder / "S.jsonl", **KW)
    json_ = simulate("digits", rounds=1, seed=2, out=folder / "S.json", **KW)
    return folder, jsonl, json_


def _copy(folder, tmp_path, *names):
    for name in names:
        shutil.copy2(folder / name, tmp_path / name)
    return tmp_path


def test_each_file_has_its_own_sidecar_and_a_finished_run_is_left_untouched(finished, tmp_path, monkeypatch):
    folder, history, _ = finished
    assert sorted(p.name for p in folder.iterdir()) == ["S.json", "S.json.npz", "S.jsonl", "S.jsonl.npz"]
    tmp = _copy(folder, tmp_path, "S.jsonl", "S.jsonl.npz")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp / "S.jsonl", tmp / "S.jsonl.npz")}
    # Complete: decided before any data is loaded, anything trained or the file rewritten.
    monkeypatch.setattr(qkrum.fl.data, "load_dataset", _forbid("load_dataset"))
    monkeypatch.setattr(sim, "local_trainer", _forbid("local_trainer"))
    monkeypatch.setattr(sim, "_rewrite", _forbid("_rewrite"))
    t0 = time.perf_counter()
    for rounds in (3, 2):
        again = simulate("digits", rounds=rounds, seed=1, out=tmp / "S.jsonl", **KW)
        assert again.trained == 0 and again.rounds == history.rounds and again.config == history.config
        np.testing.assert_array_equal(again.byzantine, history.byzantine)
        jax.tree_util.tree_map(np.testing.assert_array_equal, again.params, history.params)
    assert time.perf_counter() - t0 < 2.0
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert sorted(p.name for p in tmp.iterdir()) == ["S.jsonl", "S.jsonl.npz"]  # the lock file is gone
    # Another config is refused just as early.
    with pytest.raises(ValueError, match="different config .*seed: 1 in the file, 3 now"):
        simulate("digits", rounds=3, seed=3, out=tmp / "S.jsonl", **KW)


def test_sidecar_of_another_run_is_refused(finished, tmp_path):
    folder, _, _ = finished
    tmp = _copy(folder, tmp_path, "S.jsonl", "S.json.npz")
    os.replace(tmp / "S.json.npz", tmp / "S.jsonl.npz")  # seed 2's model beside seed 1's rounds
    before = (tmp / "S.jsonl").read_bytes()
    for rounds in (3, 4):
        with pytest.raises(ValueError) as exc:
            simulate("digits", rounds=rounds, seed=1, out=tmp / "S.jsonl", **KW)
        message = str(exc.value)
        assert "belongs to another run" in message and "config sha256" in message
        assert str(tmp / "S.jsonl.npz") in message and str(tmp / "S.jsonl") + "'" in message
        assert "remove" in message
    assert (tmp / "S.jsonl").read_bytes() == before


def test_sidecar_round_past_the_file_is_refused(finished, tmp_path):
    folder, _, _ = finished
    tmp = _copy(folder, tmp_path, "S.jsonl", "S.jsonl.npz")
    lines = (tmp / "S.jsonl").read_text().splitlines(keepends=True)
    (tmp / "S.jsonl").write_text("".join(lines[:3]))  # rounds 1, 2; the model is at round 3
    with pytest.raises(ValueError, match=r"lacks some of rounds 1\.\.3 that its model file .*S\.jsonl\.npz"):
        simulate("digits", rounds=3, seed=1, out=tmp / "S.jsonl", **KW)


def _truncated(raw):
    return raw[: len(raw) // 2]


@pytest.mark.parametrize("damage", [
    pytest.param(lambda raw: b"", id="empty"),
    pytest.param(_truncated, id="truncated"),
    pytest.param(lambda raw: b"not a model file at all\n" * 10, id="garbage"),
    pytest.param(lambda raw: pickle.dumps({"round": 3}), id="pickle"),
    pytest.param(lambda raw: b"\x93NUMPY" + raw[6:60], id="bad-npy"),
])
def test_unreadable_sidecar_is_a_clear_error(finished, tmp_path, damage):
    folder, _, _ = finished
    tmp = _copy(folder, tmp_path, "S.jsonl", "S.jsonl.npz")
    sidecar = tmp / "S.jsonl.npz"
    sidecar.write_bytes(damage(sidecar.read_bytes()))
    for rounds in (3, 4):
        with pytest.raises(ValueError) as exc:
            simulate("digits", rounds=rounds, seed=1, out=tmp / "S.jsonl", **KW)
        message = str(exc.value)
        assert f"model file {str(sidecar)!r}" in message and "cannot be read" in message
        assert f"remove {str(sidecar)!r} and {str(tmp / 'S.jsonl')!r} to start the run again" in message


def test_sidecar_of_an_older_format_and_object_arrays_are_refused(finished, tmp_path):
    folder, _, _ = finished
    tmp = _copy(folder, tmp_path, "S.jsonl", "S.jsonl.npz")
    with np.load(tmp / "S.jsonl.npz") as z:
        params = z["params"]
    with open(tmp / "S.jsonl.npz", "wb") as fh:  # what qkrum wrote before: no config hash
        np.savez(fh, round=np.int64(3), params=params)
    with pytest.raises(ValueError, match="cannot be read: it has no byzantine, config_sha256 entry"):
        simulate("digits", rounds=4, seed=1, out=tmp / "S.jsonl", **KW)
    with open(tmp / "S.jsonl.npz", "wb") as fh:  # would need pickle: never loaded
        np.savez(fh, round=np.int64(3), params=np.array([{"a": 1}], dtype=object), byzantine=np.array([1, 2]),
                 config_sha256=np.array("0" * 64))
    with pytest.raises(ValueError, match="S.jsonl.npz' of out=.* cannot be read: .*allow_pickle=False"):
        simulate("digits", rounds=4, seed=1, out=tmp / "S.jsonl", **KW)


def test_second_writer_is_refused_at_once(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run.jsonl"
    # flock conflicts between two open file descriptions even within one process.
    with open(tmp_path / "run.jsonl.lock", "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t0 = time.perf_counter()
        with pytest.raises(RunLockedError) as exc:
            simulate("digits", rounds=1, out=out, **KW)
        assert time.perf_counter() - t0 < 2.0
        assert f"out={str(out)!r} is being written by another process" in str(exc.value)
        assert not out.exists()


def test_second_process_on_the_same_out_exits_with_a_message(tmp_path, capsys):
    from qkrum.cli import main

    out = tmp_path / "run.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(out) + ".lock"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit) as exc:
            main(["simulate", "--clients", "8", "--byzantine", "2", "--rounds", "1", "--local-steps", "1",
                  "--no-progress", "--out", str(out)])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"--out {out} is being written by another process" in err and "choose another --out" in err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: the same command now runs, and leaves no lock file behind.
    assert main(["simulate", "--clients", "8", "--byzantine", "2", "--rounds", "1", "--local-steps", "1",
                 "--no-progress", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.jsonl", "run.jsonl.npz"]


def test_output_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "run.jsonl"
        simulate("digits", rounds=1, out=out, **KW)
        assert oct(out.stat().st_mode & 0o777) == oct(0o640)
        assert oct((tmp_path / "run.jsonl.npz").stat().st_mode & 0o777) == oct(0o640)
        # A mode set on purpose survives the atomic rewrites of a resumed run.
        out.chmod(0o644)
        simulate("digits", rounds=2, out=out, **KW)
        assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    finally:
        os.umask(old)
