"""qkrum sweep: config expansion, resume after a kill (every cell exactly once), retries,
the lock, added cells, and the same results on the local pool and on Ray."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qkrum.fl.simulation import read_run
from qkrum.sweep import SweepLockedError, expand, load_cells, load_config, parse_config, run_sweep
from qkrum.sweep.config import cell_id

FIXED = """
[sweep]
name = "tiny"
[fixed]
dataset = "digits"
clients = 6
byzantine = 1
rounds = {rounds}
local-epochs = 1
"""


def write_config(tmp_path, grid: str, rounds: int = 2, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(FIXED.format(rounds=rounds) + grid)
    return path


def done_lines(sweep_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (sweep_dir / "cells.jsonl").read_text().splitlines() if line.strip()]
    return [row for row in lines if row["status"] == "done"]


TIMING = ("train_seconds", "attack_seconds", "select_seconds", "eval_seconds")


def result_rows(sweep_dir: Path, cell: str) -> list[dict]:
    _, rows = read_run(sweep_dir / "cells" / f"{cell}.jsonl")
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


# --- the config -----------------------------------------------------------------------------

def test_cells_are_the_union_of_grid_products(tmp_path):
    config = parse_config({
        "fixed": {"dataset": "digits", "rounds": 2},
        "grid": [{"clients": [6], "byzantine": [1], "attack": ["gaussian", "alie"]},
                 {"clients": [10], "byzantine": [2, 3], "attack": ["alie"]},
                 {"clients": [6], "byzantine": [1], "attack": ["alie"]}],  # a duplicate of a cell above
    })
    cells = expand(config)
    assert [(c.params["clients"], c.params["byzantine"], c.params["attack"]) for c in cells] == [
        (6, 1, "gaussian"), (6, 1, "alie"), (10, 2, "alie"), (10, 3, "alie")]
    assert cells[0].grid == {"clients": 6, "byzantine": 1, "attack": "gaussian"}
    assert len({c.id for c in cells}) == 4
    # Where the data lies is not part of a cell's identity; what it runs is.
    assert cell_id({"seed": 0, "data_dir": "/a"}) == cell_id({"seed": 0, "data_dir": "/b"}) != cell_id({"seed": 1})


@pytest.mark.parametrize("text,match", [
    ('[fixed]\nbogus = 1\n', r"\[fixed\]: unknown option 'bogus'; valid options: dataset"),
    ('[grid]\nattack = "alie"\n', "attack must be a non-empty list of values"),
    ('[grid]\nattack = []\n', "attack must be a non-empty list"),
    ('[fixed]\nattack = "alie"\n[grid]\nattack = ["alie"]\n', "attack is both fixed and an axis"),
    ('[grid]\nattack = ["nope"]\n', "unknown attack='nope'"),
    ('[grid]\nmethod = ["nnm"]\n', "pre-aggregators .* need a rule after them"),
    ('[grid]\nmethod = ["qubo"]\nmethod_options = [{num_reads = 0}]\n', "num_reads must be >= 1"),
    ('[extra]\nx = 1\n', r"unknown table\(s\) \['extra'\]"),
    ('[fixed\n', "is not valid TOML"),
])
def test_bad_configs_name_the_file_and_the_key(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as exc:
        expand(load_config(path))
    assert "bad.toml" in str(exc.value)


def test_a_foreign_sweep_json_is_refused(tmp_path):
    path = write_config(tmp_path, '[grid]\nattack = ["gaussian"]\n')
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sweep.json").write_text('{"something": "else"}')
    with pytest.raises(ValueError, match="sweep.json is not a qkrum sweep file"):
        run_sweep(path, tmp_path / "out", progress=False)


# --- running, resuming, retrying ------------------------------------------------------------

def test_killed_sweep_resumes_with_every_cell_exactly_once(tmp_path):
    path = write_config(tmp_path, '[grid]\nattack = ["gaussian", "sign_flip"]\nmethod = ["multikrum", "median"]\n',
                        rounds=3)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qkrum", "sweep", str(path), "--out", str(out), "--no-progress"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill it once the first cell is recorded, the second under way
        if (out / "cells.jsonl").exists() and done_lines(out):
            break
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it was killed: {proc.stderr.read().decode()}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {row["cell"] for row in done_lines(out)}
    assert 1 <= len(first) < 4

    result = run_sweep(path, out, progress=False)
    assert result.skipped == len(first) and result.done == 4 - len(first) and result.failed == 0
    lines = done_lines(out)
    assert sorted(row["cell"] for row in lines) == sorted(c.id for c in expand(load_config(path)))  # once each
    for row in lines:
        assert row["summary"]["rounds"] == 3 and len(read_run(out / row["file"])[1]) == 3
    # A rerun of a finished sweep runs nothing and writes nothing.
    before = (out / "cells.jsonl").read_text()
    assert run_sweep(path, out, progress=False).skipped == 4
    assert (out / "cells.jsonl").read_text() == before


def test_a_failing_cell_is_retried_recorded_and_the_sweep_goes_on(tmp_path):
    # Bulyan needs n >= 4f + 3 = 7 clients; with 6 the cell fails every time.
    path = write_config(tmp_path, '[grid]\nattack = ["gaussian"]\nmethod = ["bulyan", "multikrum"]\n')
    out = tmp_path / "out"
    result = run_sweep(path, out, retries=1, progress=False)
    assert (result.done, result.failed) == (1, 1)
    cells = load_cells(out)
    failed = [c for c in cells.values() if c["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["attempts"] == 2 and failed[0]["grid"]["method"] == "bulyan"
    assert "bulyan needs n >= 4f + 3" in failed[0]["error"]
    # A rerun tries the failed cell again (and only it).
    result = run_sweep(path, out, progress=False)
    assert (result.skipped, result.done, result.failed) == (1, 0, 1)


def test_a_second_sweep_on_the_same_directory_is_refused(tmp_path):
    path = write_config(tmp_path, '[grid]\nattack = ["gaussian"]\n')
    out = tmp_path / "out"
    out.mkdir()
    with open(out / "sweep.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SweepLockedError, match="another sweep is writing"):
            run_sweep(path, out, progress=False)


def test_a_changed_config_only_adds_cells(tmp_path, capsys):
    out = tmp_path / "out"
    small = write_config(tmp_path, '[grid]\nattack = ["gaussian"]\nmethod = ["multikrum"]\n', name="a.toml")
    assert run_sweep(small, out, progress=False).done == 1
    bigger = write_config(tmp_path, '[grid]\nattack = ["gaussian"]\nmethod = ["multikrum", "mean"]\n', name="b.toml")
    result = run_sweep(bigger, out, progress=False)
    assert (result.added, result.skipped, result.done) == (1, 1, 1)
    assert "the config adds 1 cells" in capsys.readouterr().err
    registry = json.loads((out / "sweep.json").read_text())
    assert len(registry["cells"]) == 2 and len(done_lines(out)) == 2


def test_ray_backend_gives_the_local_results(tmp_path):
    pytest.importorskip("ray")
    path = write_config(tmp_path, '[grid]\nattack = ["sign_flip"]\nmethod = ["multikrum", "nnm,trimmed_mean"]\n')
    local, ray_dir = tmp_path / "local", tmp_path / "ray"
    assert run_sweep(path, local, workers=1, progress=False).done == 2
    assert run_sweep(path, ray_dir, backend="ray", workers=2, progress=False).done == 2
    for cell in load_cells(local):
        assert result_rows(local, cell) == result_rows(ray_dir, cell)
        a, b = load_cells(local)[cell]["summary"], load_cells(ray_dir)[cell]["summary"]
        assert {k: v for k, v in a.items() if k != "select_seconds"} == {
            k: v for k, v in b.items() if k != "select_seconds"}


# --- the paper's configs ----------------------------------------------------------------------

PAPER = Path(__file__).resolve().parents[1] / "benchmarks" / "paper"


@pytest.mark.parametrize("name,cells,table", [
    ("table3_mnist", 13 * 5 * 3, "table_III_mnist"), ("table4_cifar10", 13 * 5 * 3, "table_IV_cifar10"),
    ("table5_fashion_mnist", 13 * 5 * 3, "table_V_fashion_mnist"), ("table3_mnist_quick", 13 * 5 * 3, "table_III_mnist"),
    ("table5_fashion_mnist_quick", 13 * 5 * 3, "table_V_fashion_mnist"),
    ("table7_mnist100", 7 * 3 * 3, "table_VII_mnist_100_accuracy"),
    ("table7_mnist100_quick", 7 * 3, "table_VII_mnist_100_accuracy"),
    ("table8_mnist100_quick", 7 * 3, "table_VIII_mnist_100_f1"), ("table8_mnist100", 7 * 3 * 3,
                                                                    "table_VIII_mnist_100_f1"),
])
def test_paper_configs_expand_and_name_their_table(name, cells, table):
    config = load_config(PAPER / f"{name}.toml")
    assert len(expand(config)) == cells and config.paper["table"] == table
    # Every paper column is one of the sweep's methods, every paper attack one of its attacks.
    methods = {v for grid in config.grids for v in grid["method"]}
    assert set(config.paper["methods"].values()) <= methods
    attacks = {v for grid in config.grids for v in grid["attack"]}
    assert set(config.paper["numbers"]) <= attacks


def test_figure_cells_are_cells_of_the_full_tables():
    """Figures 1-2 / 5-6 run 30-round ALIE and sparse-LIE cells; they are the same cells
    (same ids) as Tables III and V's, so their files can seed a run of the full tables."""
    figures = {cell.id for cell in expand(load_config(PAPER / "figures_alie_sparse_lie.toml"))}
    tables = {cell.id for name in ("table3_mnist", "table5_fashion_mnist")
              for cell in expand(load_config(PAPER / f"{name}.toml"))}
    assert len(figures) == 2 * 2 * 5 * 3 and figures <= tables


def test_the_cifar10_config_runs_on_generated_files(tmp_path):
    # No CIFAR-10 copy exists offline: generated batches in the canonical binary layout, the
    # shipped config with its grid cut to one cell and its rounds to one.
    import tomllib

    import numpy as np

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, 40).astype(np.uint8)
        pixels = rng.integers(0, 256, (40, 3072), dtype=np.uint8)
        (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    data = tomllib.loads((PAPER / "table4_cifar10.toml").read_text())
    data["fixed"].update(rounds=1, clients=6, byzantine=1, data_dir=str(tmp_path / "data"))
    data["grid"] = {"attack": ["alie"], "method": ["multikrum"], "seed": [0]}
    config = parse_config(data, path=PAPER / "table4_cifar10.toml")
    out = tmp_path / "out"
    result = run_sweep(config, out, progress=False)
    assert (result.done, result.failed) == (1, 0), load_cells(out)
    (row,) = load_cells(out).values()
    run_config, rows = read_run(out / row["file"])
    assert run_config["dataset"] == "cifar10" and run_config["model"] == "cnn" and len(rows) == 1


def test_a_cell_without_a_method_names_the_default():
    """A config that leaves the server rule to simulate's default records that default in
    each cell, so a later change of the default makes new cells instead of resuming old ones."""
    import qkrum

    def cells(**grid):
        return expand(parse_config({"fixed": {"rounds": 1}, "grid": {"attack": ["gaussian"], **grid}}))

    implicit, explicit, other = cells(), cells(method=[qkrum.rules.DEFAULT]), cells(method=["multikrum"])
    assert implicit[0].params["method"] == qkrum.rules.DEFAULT
    assert implicit[0].id == explicit[0].id != other[0].id
