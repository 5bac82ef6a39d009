"""The ``qkrum`` command line: simulate, resume, plot, and clear errors."""

import json
import subprocess
import sys

import pytest

from qkrum.cli import _flag_text, _key_value, main


def run(rounds=2):
    return ["simulate", "--dataset", "digits", "--clients", "6", "--byzantine", "1", "--rounds", str(rounds),
            "--lr", "0.1", "--batch-size", "16", "--local-epochs", "1", "--no-progress"]


RUN = run()


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_simulate_writes_rounds_and_plot_overlays_runs(tmp_path, capsys):
    a, b = tmp_path / "mk.jsonl", tmp_path / "mean.jsonl"
    assert main(RUN + ["--attack", "alie", "--method", "multikrum", "--project", "none", "--out", str(a)]) == 0
    assert "2 rounds in" in capsys.readouterr().out
    assert main(RUN + ["--attack", "alie", "--method", "mean", "--out", str(b)]) == 0
    header, *rows = _rows(a)
    assert header["config"]["server"] == "multikrum" and header["config"]["project"] is None
    assert header["config"]["local"]["learning_rate"] == 0.1 and header["config"]["local"]["batch_size"] == 16
    assert [r["round"] for r in rows] == [1, 2] and all(0 <= r["accuracy"] <= 1 for r in rows)
    # Same command, more rounds: the run resumes from round 2.
    assert main(run(3) + ["--attack", "alie", "--method", "multikrum", "--project", "none", "--out", str(a)]) == 0
    assert [r["round"] for r in _rows(a)[1:]] == [1, 2, 3] and _rows(a)[1:3] == rows

    png = tmp_path / "figs" / "fig.png"
    assert main(["plot", str(a), str(b), "--out", str(png), "--label", "MultiKrum", "--label", "mean"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_options_are_parsed_as_json_when_they_can_be(tmp_path):
    assert _key_value("num_reads=200") == ("num_reads", 200)
    assert _key_value("z-range=[3, 8]") == ("z_range", [3, 8])
    assert _key_value("sampler=native") == ("sampler", "native")
    out = tmp_path / "run.jsonl"
    main(RUN + ["--attack", "sign_flip", "--attack-option", "scale=5", "--method", "multisignal", "--option",
                "num_reads=20", "--out", str(out)])
    config = _rows(out)[0]["config"]
    assert config["attack_options"] == {"scale": 5} and config["method_options"] == {"num_reads": 20}


@pytest.mark.parametrize("argv, match", [
    (["--attack", "nope"], "unknown --attack nope; valid attacks: none, label_flip"),
    (["--method", "nope"], "unknown --method nope; valid methods"),
    (["--byzantine", "6"], "--byzantine must be smaller than --clients 6 (at least one client must be honest), "
                           "got --byzantine 6"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got --lr -1.0"),
    (["--local-epochs", "0"], "--local-epochs must be >= 1"),
    (["--server-lr", "0"], "--server-lr must be a finite number > 0, got --server-lr 0.0"),
    (["--dataset", "mnist", "--source", "sklearn"], "--source sklearn only serves the 'digits' dataset, "
                                                    "got --dataset mnist"),
    (["--option", "oops"], "expected KEY=VALUE"),
    (["--project", "0"], "--project must be >= 1"),
    (["--dataset", "svhn"], "invalid choice: 'svhn'"),
])
def test_bad_arguments_exit_with_a_message(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main(RUN + argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_errors_name_the_flags_not_the_python_parameters(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QKRUM_DATA_DIR", raising=False)
    with pytest.raises(SystemExit):
        main(RUN + ["--dataset", "mnist"])
    err = capsys.readouterr().err
    assert "pass --data-dir DIR or set $QKRUM_DATA_DIR" in err and "pass --source tfds --download (needs" in err
    assert "data_dir" not in err and "download=True" not in err and "source=" not in err
    with pytest.raises(SystemExit):
        main(RUN + ["--dataset", "mnist", "--download", "--data-dir", str(tmp_path)])
    assert "--download downloads through tensorflow-datasets: pass --source tfds as well" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(RUN + ["--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere")])
    assert f"data directory {str(tmp_path / 'nowhere')!r} (from --data-dir) does not exist" in capsys.readouterr().err


def test_flag_text_translates_in_one_place():
    assert _flag_text("pass source='tfds', download=True (needs tfds)") == "pass --source tfds --download (needs tfds)"
    assert _flag_text("got shards_per_client=0; batch_size must be") == \
        "got --shards-per-client 0; --batch-size must be"
    assert _flag_text("out='my runs/a.jsonl' exists") == "--out 'my runs/a.jsonl' exists"
    # Flags, $VARIABLES, dotted config keys and plain words are left alone.
    text = "--project must be >= 1; set $QKRUM_DATA_DIR; local.batch_size: 16 in the file; the source of clients"
    assert _flag_text(text) == text


def test_complete_run_and_undefined_metrics(tmp_path, capsys):
    out = tmp_path / "clean.jsonl"
    argv = run(1) + ["--attack", "none", "--method", "mean", "--local-steps", "1", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("1 rounds in ") and "F1 n/a" in text and "nan" not in text
    before = out.read_bytes()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"already complete: 1 rounds in {out}: final test accuracy") and "F1 n/a" in text
    assert " in 0." not in text and out.read_bytes() == before


def test_plot_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["plot", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.png")])
    assert "does not exist" in capsys.readouterr().err


def test_python_dash_m_qkrum_runs():
    done = subprocess.run([sys.executable, "-m", "qkrum", "simulate", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "--byzantine" in done.stdout and "--local-epochs" in done.stdout
