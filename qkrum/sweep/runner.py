"""Run a sweep's cells on a process pool or on Ray, resumably.

The directory ``DIR`` holds

* ``sweep.json``: every cell ever added (id → params, grid values), the paper table if the
  config names one. A changed config only *adds* cells; earlier ones stay as they are.
* ``cells/<id>.jsonl``: each cell's run file (:func:`qkrum.fl.simulate`'s per-round resume).
* ``cells.jsonl``: one line per finished attempt, ``{"cell", "params", "grid", "status":
  "done" | "failed", "error", "attempts", "seconds", "file", "summary"}``; the last line of a
  cell is its state. Only this process writes it, under ``sweep.lock`` (a second sweep on the
  same ``DIR`` is refused), appending and syncing one line at a time.

A rerun skips done cells and resumes unfinished ones from their run files; a failing cell
is retried ``retries`` times, recorded with its error, and the sweep goes on. A cell's
result depends only on its parameters: the backend and the number of workers change only
when it runs.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

from qkrum.sweep.config import Cell, SweepConfig, expand, load_config

__all__ = ["BACKENDS", "SweepLockedError", "SweepResult", "cell_summary", "load_cells", "run_cell", "run_sweep"]

BACKENDS = ("local", "ray")


class SweepLockedError(RuntimeError):
    """Another process is running a sweep into the same directory."""


class SweepResult(NamedTuple):
    """Counts of a :func:`run_sweep` call: cells in the config, already done before it,
    done and failed by it, and how many it added to the directory."""

    total: int
    skipped: int
    done: int
    failed: int
    added: int


# ----------------------------------------------------------------------------- one cell

def _mean(values) -> float | None:
    finite = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(finite) / len(finite) if finite else None


def cell_summary(rows: list[dict]) -> dict:
    """What ``cells.jsonl`` records of a finished run: its rounds, the final test accuracy,
    the mean over rounds of detection accuracy and F1 (None without detection) and of the
    selection seconds."""
    return {"rounds": len(rows), "final_test_accuracy": rows[-1]["test_accuracy"] if rows else None,
            "detection_accuracy": _mean(r.get("accuracy") for r in rows), "f1": _mean(r.get("f1") for r in rows),
            "select_seconds": _mean(r.get("select_seconds") for r in rows)}


def run_cell(params: dict, path: str) -> dict:
    """Run (or resume) one cell into ``path``; returns its :func:`cell_summary`. Runs in a
    worker process: imports nothing heavy before it is called."""
    import warnings

    from qkrum.fl.simulation import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a worker has no one to tell; the cell file records the run
        history = simulate(**params, out=path, progress=False)
    return cell_summary(history.rounds)


# ----------------------------------------------------------------------------- directory state

def _append_line(path: Path, row: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))  # key order kept: the paper's attack order
    os.replace(tmp, path)


def load_cells(sweep_dir: str | Path) -> dict[str, dict]:
    """Cell id → the last line of that cell in ``DIR/cells.jsonl``, done or failed, in the
    order the cells first appear (a torn last line is skipped; no file, no cells)."""
    from qkrum.fl.simulation import read_jsonl

    path = Path(sweep_dir) / "cells.jsonl"
    if not path.exists():
        return {}
    last: dict[str, dict] = {}
    for i, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row, dict) or "cell" not in row:
            raise ValueError(f"{path}: record {i} is not a cell record (no 'cell' key)")
        last[row["cell"]] = row  # a cell keeps the place of its first line
    return last


def _lock(sweep_dir: Path):
    import fcntl

    fh = (sweep_dir / "sweep.lock").open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise SweepLockedError(f"another sweep is writing {sweep_dir} (it holds {sweep_dir / 'sweep.lock'}); "
                               "wait for it or use another --out") from None
    return fh


def _register(sweep_dir: Path, config: SweepConfig, cells: list[Cell], say: Callable[[str], None]) -> int:
    """Add the config's cells to ``sweep.json``; returns how many are new."""
    path = sweep_dir / "sweep.json"
    if path.exists():
        try:
            registry = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{path} is not valid JSON; it is not a sweep directory qkrum wrote") from None
        if registry.get("version") != 1 or not isinstance(registry.get("cells"), dict):
            raise ValueError(f"{path} is not a qkrum sweep file (no version 1 and cells)")
    else:
        registry = {"version": 1, "name": config.name, "cells": {}, "paper": None}
    known = registry["cells"]
    new = [c for c in cells if c.id not in known]
    if known and new:
        say(f"the config adds {len(new)} cells to {sweep_dir} ({len(known)} already there stay as they are)")
    missing = set(known) - {c.id for c in cells}
    if missing:
        say(f"{len(missing)} cells of {sweep_dir} are not in this config; they are kept, not rerun")
    for c in new:
        known[c.id] = {"params": c.params, "grid": c.grid}
    registry["name"] = config.name
    if config.paper is not None:
        registry["paper"] = config.paper
    _atomic_json(path, registry)
    return len(new)


# ----------------------------------------------------------------------------- backends

class _Local:
    """A pool of ``workers`` spawned processes (JAX and fork do not mix)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = self._new()

    def _new(self):
        return futures.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, params: dict, path: str):
        return self.pool.submit(run_cell, params, path)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = futures.wait(handles, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        return list(done)

    def result(self, handle) -> dict:
        try:
            return handle.result()
        except futures.process.BrokenProcessPool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new()  # a worker died (killed, out of memory): go on with a fresh pool
            raise

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Ray:
    """Ray core tasks, one CPU each: a local instance of ``workers`` CPUs, or a cluster."""

    def __init__(self, workers: int, address: str | None):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phones home
        from qkrum._optional import require

        self.ray = require("ray", "sweep", "qkrum sweep --backend ray")
        self.owned = not self.ray.is_initialized()
        if self.owned:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = workers
            else:
                kwargs["address"] = address
            self.ray.init(**kwargs)
        self.task = self.ray.remote(num_cpus=1, max_retries=0)(run_cell)

    def submit(self, params: dict, path: str):
        return self.task.remote(params, path)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return done

    def result(self, handle) -> dict:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, BaseException) else exc) from None

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


# ----------------------------------------------------------------------------- the sweep

def _rounds_done(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.startswith('{"round"'))
    except OSError:
        return 0


def run_sweep(config: str | Path | SweepConfig, out: str | Path, *, backend: str = "local", workers: int = 1,
              retries: int = 0, address: str | None = None, progress: bool = True) -> SweepResult:
    """Run every cell of ``config`` that ``out`` does not have done yet (module docs)."""
    from qkrum._validation import check_int

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend={backend!r}; valid backends: {', '.join(BACKENDS)}")
    workers = check_int("workers", workers, minimum=1)
    retries = check_int("retries", retries, minimum=0)
    if address is not None and backend != "ray":
        raise ValueError(f"address={address!r} is for backend='ray', got backend={backend!r}")
    config = config if isinstance(config, SweepConfig) else load_config(config)
    cells = expand(config)
    sweep_dir = Path(out)
    (sweep_dir / "cells").mkdir(parents=True, exist_ok=True)
    lock = _lock(sweep_dir)
    try:
        return _run(config, cells, sweep_dir, backend, workers, retries, address, progress)
    finally:
        lock.close()


class _Quiet:
    """The progress bar's interface, showing nothing (``progress=False``); messages still print."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=sys.stderr)

    def close(self) -> None:
        pass


def _bar(total: int, initial: int, desc: str, enabled: bool):
    if enabled:
        try:
            from tqdm import tqdm
        except ModuleNotFoundError:  # tqdm comes with the fl extra, which running a cell needs anyway
            pass
        else:
            return tqdm(total=total, initial=initial, desc=desc, unit="cell", file=sys.stderr)
    return _Quiet()


def _run(config, cells, sweep_dir, backend, workers, retries, address, progress) -> SweepResult:
    messages: list[str] = []
    added = _register(sweep_dir, config, cells, messages.append)
    state = load_cells(sweep_dir)
    todo = [c for c in cells if state.get(c.id, {}).get("status") != "done"]
    skipped = len(cells) - len(todo)
    bar = _bar(len(cells), skipped, f"sweep {config.name}", progress)
    for message in messages:
        bar.write(message)
    done = failed = 0
    if not todo:
        bar.close()
        return SweepResult(len(cells), skipped, 0, 0, added)
    runner = _Local(workers) if backend == "local" else _Ray(workers, address)
    attempts = {c.id: 0 for c in todo}
    queue = list(todo)
    running: dict[Any, tuple[Cell, float]] = {}
    results = sweep_dir / "cells.jsonl"
    try:
        while queue or running:
            while queue and len(running) < workers:
                cell = queue.pop(0)
                attempts[cell.id] += 1
                handle = runner.submit(cell.params, str(sweep_dir / "cells" / f"{cell.id}.jsonl"))
                running[handle] = (cell, time.perf_counter())
            for handle in runner.wait(list(running), timeout=1.0):
                cell, t0 = running.pop(handle)
                row = {"cell": cell.id, "params": cell.params, "grid": cell.grid, "attempts": attempts[cell.id],
                       "file": f"cells/{cell.id}.jsonl"}
                try:
                    summary = runner.result(handle)
                except Exception as exc:  # a cell's failure is recorded; the sweep goes on
                    if attempts[cell.id] <= retries:
                        queue.append(cell)
                        continue
                    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    row.update(status="failed", error=error, seconds=time.perf_counter() - t0, summary=None)
                    failed += 1
                else:
                    row.update(status="done", error=None, seconds=time.perf_counter() - t0, summary=summary)
                    done += 1
                _append_line(results, row)
                bar.update(1)
            if running or queue:
                rounds = ", ".join(f"{c.id[:6]} {_rounds_done(sweep_dir / 'cells' / f'{c.id}.jsonl')}/"
                                   f"{c.params.get('rounds', 30)}" for c, _ in running.values())
                bar.set_postfix_str(f"done {skipped + done}, failed {failed}, left {len(queue) + len(running)}"
                                    + (f"; running {rounds}" if rounds else ""), refresh=True)
    finally:
        runner.close()
        bar.close()
    return SweepResult(len(cells), skipped, done, failed, added)
