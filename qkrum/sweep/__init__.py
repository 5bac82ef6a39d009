"""Sweeps: a grid of :func:`qkrum.fl.simulate` runs, resumable, on a process pool or Ray,
and the report that turns them into the paper's tables and figures.

* :func:`run_sweep` (``qkrum sweep CONFIG.toml --out DIR``): :mod:`qkrum.sweep.config`
  expands the TOML into cells, :mod:`qkrum.sweep.runner` runs the ones not done yet.
* :func:`write_report` (``qkrum report DIR --out REPORT_DIR``): :mod:`qkrum.sweep.report`.
"""

import importlib

from qkrum.sweep.config import Cell, SweepConfig, expand, load_config, parse_config
from qkrum.sweep.runner import BACKENDS, SweepLockedError, SweepResult, load_cells, run_sweep

__all__ = ["BACKENDS", "Cell", "SweepConfig", "SweepLockedError", "SweepResult", "expand", "load_cells", "load_config",
           "parse_config", "run_sweep", "write_report"]


def __getattr__(name: str):
    if name == "write_report":  # the report draws with matplotlib (the plot extra): loaded on use
        return importlib.import_module("qkrum.sweep.report").write_report
    raise AttributeError(f"module 'qkrum.sweep' has no attribute {name!r}")
