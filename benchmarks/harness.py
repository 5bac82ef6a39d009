"""Shared benchmark machinery: timing, peak memory, resumable JSON-lines results, tables.

Timing is the median wall time of ``repeats`` calls after ``warmup`` calls (the warm-up
absorbs JIT compilation and first-touch page faults). The machine is shared and noisy,
so only medians are compared, and only between implementations measured in the same run.

Peak memory is resident memory (RSS, Linux ``/proc/self``), so it counts every allocation
of the process: NumPy's, JAX/XLA's buffers and compilation, the native extension's.
:func:`run_in_subprocess` runs a measurement in a fresh interpreter, so that memory freed
by earlier work and kept by the allocator cannot hide the allocations being measured.
Tables are at most :data:`MAX_TABLE_WIDTH` characters wide (wider ones are split).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = [
    "MAX_TABLE_WIDTH",
    "PeakMemory",
    "ResultsLog",
    "environment",
    "format_legend",
    "format_table",
    "measure",
    "measure_pair",
    "paired_stats",
    "release_free_memory",
    "run_in_subprocess",
]

MAX_TABLE_WIDTH = 120


def measure(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> dict:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    ``fn`` must block until its work is done (``jax.block_until_ready``). Returns the
    median, minimum and all times in seconds, and the peak memory of the timed calls.
    """
    for _ in range(warmup):
        fn()
    times = []
    with PeakMemory() as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
        "peak_extra_bytes": mem.peak_extra_bytes,
    }


def measure_pair(ours: Callable[[], Any], theirs: Callable[[], Any], *, repeats: int,
                 warmup: int = 1) -> tuple[dict, dict, dict]:
    """Time two implementations of the same stage interleaved (ours, theirs, ours, ...),
    so that drift in the machine's load affects both alike.

    Returns each one's :func:`measure`-style dict (peak memory from one extra call of
    each) and the paired ratios ``ours_i / theirs_i``: their median and interquartile
    spread say whether a difference is larger than the run-to-run noise.
    """
    for _ in range(warmup):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        for fn, sink in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - t0)
    results = []
    for fn, times in ((ours, t_ours), (theirs, t_theirs)):
        with PeakMemory() as mem:
            fn()
        results.append({"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
                        "peak_extra_bytes": mem.peak_extra_bytes})
    return results[0], results[1], paired_stats([a / b for a, b in zip(t_ours, t_theirs)])


def paired_stats(ratios: list[float]) -> dict:
    """Median and quartiles of paired ratios ``ours_i / theirs_i``: ``{"median", "q1", "q3"}``.
    Verdicts judge the median; the quartiles only show the run-to-run noise."""
    ratios = sorted(ratios)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": q[0], "q3": q[2]}


def _status_bytes(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def release_free_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the kernel (glibc's
    ``malloc_trim``), so that the resident size counts only memory in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


class PeakMemory:
    """Peak resident memory added while the ``with`` block runs (Linux).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``) on entry and reads it
    on exit, so allocations made and freed inside the block are counted. ``peak_extra_bytes``
    is the high-water mark minus the resident size at entry (``None`` where unsupported).

    Memory that was freed before the block but kept resident by an allocator is counted in
    the resident size at entry, and reusing it inside the block goes unseen: with
    ``release=True`` the entry first calls :func:`release_free_memory`, which returns the
    C heap's free pages. For a measurement nothing earlier can distort, run it in a fresh
    process (:func:`run_in_subprocess`).
    """

    def __init__(self, release: bool = False):
        self.release = release

    def __enter__(self) -> "PeakMemory":
        self.peak_extra_bytes = None
        if self.release:
            release_free_memory()
        self._start = _status_bytes("VmRSS")
        self.start_bytes = self._start
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._supported = self._start is not None
        except OSError:
            self._supported = False
        return self

    def __exit__(self, *exc) -> None:
        if self._supported:
            peak = _status_bytes("VmHWM")
            if peak is not None:
                self.peak_extra_bytes = max(0, peak - self._start)


_RESULT_MARK = "@@benchmarks.harness result@@ "


def run_in_subprocess(target: str, kwargs: dict, *, timeout: float = 900) -> dict:
    """``module:function(**kwargs)`` in a fresh Python process; its JSON-able return value.

    The child starts with nothing resident but the interpreter and what it imports, so a
    peak-memory measurement made there sees every allocation of the work it measures.
    Raises ``RuntimeError`` with the child's stderr when it fails.
    """
    module, _, function = target.partition(":")
    code = (f"import json, sys\nfrom {module} import {function} as fn\n"
            f"print({_RESULT_MARK!r} + json.dumps(fn(**json.loads(sys.argv[1]))))")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True,
                          env=env, cwd=root, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{target} failed in a subprocess (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(_RESULT_MARK):])


class ResultsLog:
    """Append-only JSON-lines file; each line is one finished cell of a sweep.

    ``done(key)`` tells whether a cell with these key fields was already written, so an
    interrupted sweep restarted with the same arguments skips what it finished.
    """

    def __init__(self, path: str | os.PathLike | None, key_fields: Iterable[str]):
        self.path = Path(path) if path else None
        self.key_fields = tuple(key_fields)
        self._done: set[tuple] = set()
        self.rows: list[dict] = []
        if self.path and self.path.exists():
            for line_no, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    # A line cut off by an interruption; the cell will simply be redone.
                    print(f"warning: ignoring unreadable line {line_no} of {self.path}", file=sys.stderr)
                    continue
                self.rows.append(row)
                self._done.add(self._key(row))

    def _key(self, row: dict) -> tuple:
        return tuple(json.dumps(row.get(k), sort_keys=True) for k in self.key_fields)

    def done(self, key: dict) -> bool:
        return self._key(key) in self._done

    def find(self, key: dict) -> dict | None:
        """The finished row with these key fields, or None."""
        want = self._key(key)
        return next((row for row in self.rows if self._key(row) == want), None)

    def cell(self, key: dict, compute: Callable[[], dict]) -> dict:
        """The finished row for ``key``, or ``compute()``'s row, appended as it finishes."""
        row = self.find(key)
        if row is None:
            row = compute()
            self.append(row)
        return row

    def append(self, row: dict) -> None:
        self.rows.append(row)
        self._done.add(self._key(row))
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A run killed mid-write leaves a partial last line; start on a fresh one.
            needs_newline = self.path.exists() and self.path.stat().st_size > 0 and \
                self.path.read_bytes()[-1:] != b"\n"
            with self.path.open("a") as fh:
                fh.write(("\n" if needs_newline else "") + json.dumps(row, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())


def environment() -> dict:
    """What the numbers were measured on."""
    import jax
    import numpy as np

    import qkrum

    dev = jax.devices()[0]
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "qkrum": qkrum.__version__,
        "qkrum_implementation": qkrum.IMPLEMENTATION,
    }


def format_table(rows: list[dict], columns: list[tuple[str, str]], max_width: int = MAX_TABLE_WIDTH) -> str:
    """Plain-text table; ``columns`` is a list of (header, key) pairs.

    A table wider than ``max_width`` characters is split into several, one under the
    other, each repeating the first column; a cell is never cut.
    """
    cells = [[h for h, _ in columns]]
    for row in rows:
        cells.append([_fmt(row.get(k)) for _, k in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    groups, current = [], [0]
    for i in range(1, len(columns)):
        if sum(widths[j] + 2 for j in current) + widths[i] > max_width and len(current) > 1:
            groups.append(current)
            current = [0]
        current.append(i)
    groups.append(current)
    parts = []
    for group in groups:
        lines = ["  ".join(r[i].rjust(widths[i]) if i else r[i].ljust(widths[i]) for i in group) for r in cells]
        lines.insert(1, "  ".join("-" * widths[i] for i in group))
        parts.append("\n".join(line.rstrip() for line in lines))
    return "\n\n".join(parts)


def format_legend(entries: list[tuple[str, str]], width: int = MAX_TABLE_WIDTH) -> str:
    """``name: explanation`` lines, wrapped to ``width`` with a hanging indent."""
    pad = min(max(len(name) for name, _ in entries) + 5, 26)
    return "\n".join(textwrap.fill(text, width=width, initial_indent=f"  {name}: ".ljust(pad),
                                    subsequent_indent=" " * pad, break_on_hyphens=False)
                      for name, text in entries)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)
