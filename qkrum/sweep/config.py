"""A sweep's configuration (TOML) and the cells it expands to.

::

    [sweep]
    name = "table-iii-mnist"
    [sweep.paper]                      # optional: the paper table this sweep reproduces
    tables = "paper_tables.json"       # relative to this file
    table = "table_III_mnist"
    methods = { classical = "multikrum", qubo = "qubo-paper" }

    [fixed]                            # qkrum.fl.simulate options, long names, - or _
    dataset = "mnist"
    clients = 15
    byzantine = 3
    rounds = 30

    [grid]                             # the axes: every list is one; cells = their product
    attack = ["alie", "sparse_lie"]
    method = ["multikrum", "nnm,trimmed_mean"]
    seed = [0, 1, 2]

``[[grid]]`` (a list of tables) gives the union of several products, e.g. a different
``byzantine`` per ``clients``. A cell's identity is a hash of all its simulate options
(``data_dir`` and ``lanes`` excepted: where the data lies and how training is batched do
not change a result), so the same cell never runs with different settings.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from qkrum.rules import DEFAULT

__all__ = ["Cell", "SweepConfig", "cell_id", "expand", "load_config", "parse_config", "simulate_options"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Options that say where or how fast, not what: left out of a cell's identity.
NOT_IDENTITY = frozenset({"data_dir", "lanes"})
#: simulate arguments a sweep sets itself or that cannot be written in TOML.
NOT_CONFIGURABLE = frozenset({"out", "progress", "data", "aggregator"})


class Cell(NamedTuple):
    """One run of the sweep: its id, every :func:`qkrum.fl.simulate` keyword, the grid values."""

    id: str
    params: dict
    grid: dict


class SweepConfig(NamedTuple):
    name: str
    fixed: dict
    grids: list[dict]
    paper: dict | None
    path: Path | None


def simulate_options() -> tuple[str, ...]:
    """The keyword arguments of :func:`qkrum.fl.simulate` a config may set."""
    from qkrum.fl.simulation import simulate

    names = [p.name for p in inspect.signature(simulate).parameters.values()]
    return tuple(n for n in names if n not in NOT_CONFIGURABLE)


def _normalise(table: dict, where: str, allowed: tuple[str, ...]) -> dict:
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in allowed:
            raise ValueError(f"{where}: unknown option {key!r}; valid options: {', '.join(allowed)}")
        if name in out:
            raise ValueError(f"{where}: option {key!r} given twice")
        out[name] = value
    return out


def _load_paper(paper: dict, base: Path | None, where: str) -> dict:
    unknown = sorted(set(paper) - {"tables", "table", "methods", "metric"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in [sweep.paper]; valid: tables, table, methods, metric")
    for key in ("tables", "table", "methods"):
        if key not in paper:
            raise ValueError(f"{where}: [sweep.paper] needs {key!r}")
    path = Path(paper["tables"])
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        tables = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: [sweep.paper] tables={str(path)!r} cannot be read: {exc}") from None
    if paper["table"] not in tables:
        raise ValueError(f"{where}: table={paper['table']!r} is not in {path}; it has {', '.join(sorted(tables))}")
    if not isinstance(paper["methods"], dict) or not paper["methods"]:
        raise ValueError(f"{where}: [sweep.paper] methods must map the paper's columns to method values")
    return {"table": paper["table"], "methods": dict(paper["methods"]), "metric": paper.get("metric"),
            "numbers": tables[paper["table"]]}


def parse_config(data: dict, *, path: Path | None = None) -> SweepConfig:
    """A :class:`SweepConfig` from parsed TOML (``path`` for messages and relative paths)."""
    where = str(path) if path is not None else "sweep config"
    unknown = sorted(set(data) - {"sweep", "fixed", "grid"})
    if unknown:
        raise ValueError(f"{where}: unknown table(s) {unknown}; valid: [sweep], [fixed], [grid] or [[grid]]")
    allowed = simulate_options()
    meta = dict(data.get("sweep", {}))
    paper = meta.pop("paper", None)
    name = meta.pop("name", path.stem if path is not None else "sweep")
    if meta:
        raise ValueError(f"{where}: unknown key(s) {sorted(meta)} in [sweep]; valid: name, paper")
    fixed = _normalise(data.get("fixed", {}), f"{where} [fixed]", allowed)
    grids_raw = data.get("grid", [{}])
    grids_raw = [grids_raw] if isinstance(grids_raw, dict) else list(grids_raw)
    grids = []
    for i, grid in enumerate(grids_raw):
        label = f"{where} [grid]" if len(grids_raw) == 1 else f"{where} [[grid]] #{i + 1}"
        grid = _normalise(grid, label, allowed)
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{label}: {key} must be a non-empty list of values (an axis), got {values!r}")
            if key in fixed:
                raise ValueError(f"{label}: {key} is both fixed and an axis")
        grids.append(grid)
    return SweepConfig(str(name), fixed, grids,
                       None if paper is None else _load_paper(paper, path.parent if path else None, where), path)


def load_config(path: str | Path) -> SweepConfig:
    """Read and check a sweep's TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"sweep config {str(path)!r} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"sweep config {str(path)!r} is not valid TOML: {exc}") from None
    return parse_config(data, path=path)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def cell_id(params: dict) -> str:
    """16 hex digits of the SHA-256 of the cell's settings (:data:`NOT_IDENTITY` left out)."""
    identity = {k: v for k, v in params.items() if k not in NOT_IDENTITY}
    return hashlib.sha256(_canonical(identity).encode()).hexdigest()[:16]


def _check_cell(params: dict, where: str) -> None:
    # What can be checked without training: names of the dataset, attack and method.
    from qkrum.fl.data import DATASETS
    from qkrum.fl.simulation import resolve_attack
    from qkrum.rules import as_rule

    dataset = params.get("dataset", "digits")
    if dataset not in DATASETS:
        raise ValueError(f"{where}: unknown dataset={dataset!r}; valid datasets: {', '.join(DATASETS)}")
    try:
        resolve_attack(params.get("attack", "none"), params.get("attack_options"))
        as_rule(params["method"], params.get("method_options"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def expand(config: SweepConfig) -> list[Cell]:
    """The cells: the product of each grid's axes with the fixed options, the union over
    grids in order, each cell once."""
    cells: dict[str, Cell] = {}
    where = str(config.path) if config.path is not None else "sweep config"
    for grid in config.grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            axes = dict(zip(keys, values))
            # The server rule is always part of a cell's identity: a config that leaves it
            # to simulate's default names that default, so a later change of the default
            # gives new cells rather than resuming old ones under another rule.
            params = {"method": DEFAULT, **config.fixed, **axes}
            _check_cell(params, f"{where}: cell {_canonical(axes)}")
            cid = cell_id(params)
            cells.setdefault(cid, Cell(cid, params, axes))
    return list(cells.values())
