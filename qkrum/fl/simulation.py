"""The federated-learning simulation: rounds of local training, Byzantine clients and a
robust server, with per-round results written as JSON lines (resumable).

One round ``t`` (the paper's Algorithm 1 around :func:`qkrum.select`):

1. every client trains locally from ``W_t`` (:mod:`qkrum.fl.training`: all clients in one
   vmapped XLA call) and sends ``G_i = W_i' − W_t``;
2. the Byzantine clients replace theirs: ``label_flip`` clients trained on
   ``(y + 1) mod C`` in step 1 (data poisoning); for every other attack the ``f``
   Byzantine updates are crafted from the round's honest updates by
   :func:`qkrum.attacks.apply` (the paper's omniscient adversary, section V);
3. the server aggregates the ``(n, d)`` updates with a pluggable *aggregator*
   ``aggregator(updates, f, key) -> (aggregate (d,), info)`` (default
   :func:`selection_aggregator`: :func:`qkrum.select` with any method in
   :data:`qkrum.METHODS`, then :meth:`qkrum.Selection.aggregate`, so baselines whose
   aggregate is not a mean work too) and sets ``W_{t+1} = W_t + η · aggregate``;
4. the new model is evaluated on the test set, and the round's row is written.

Choices where the paper is silent (ours):

* Byzantine clients: ``f`` client indices drawn uniformly without replacement once per
  run from the seed, and fixed for every round (persistent attackers). Random rather than
  the first ``f`` so that no index-order tie-breaking in a selection method can favour or
  penalise them. The server never sees them; they are used only for the metrics.
* ``attack="none"``: no client is Byzantine, but the server still tolerates
  ``f = byzantine`` (so MultiKrum still drops ``f`` clients: the price of robustness with
  no attacker); detection metrics then have ``f = 0`` (rejection rate null).
* Randomness: ``seed`` gives the partition (``partition(..., seed=seed)``), the Byzantine
  indices, the initial model and, for round ``t``, ``fold_in(key, t)`` split into the
  local-training, attack and server keys. Rounds do not depend on earlier rounds' keys,
  so a resumed run equals an uninterrupted one.
* Server step size ``η`` (``server_lr``) defaults to 1.0: plain FedAvg of the selected
  updates (Algorithm 1, line 17).
* Local-training defaults depend on the dataset (:data:`DATASET_DEFAULTS`; explicit
  arguments always win and the resolved values are written into the config). MNIST,
  Fashion-MNIST and CIFAR-10 use the paper's local SGD (lr 0.01, weight decay 1e-4,
  clipping at 1.0) with our 2 epochs of batch 32. ``digits`` is not in the paper: its
  1,438 training images give a client about 96, so with those settings a client takes
  about 6 steps of lr 0.01 per round and FedAvg is still at chance (0.12) after 5
  rounds; with lr 0.1, batch 16 and 5 epochs it passes 0.85 by round 3 and an
  unscreened attack visibly hurts the plain mean.

Output (``out=PATH``): the first line is ``{"config": {...}}``; then one line per round
with ``round``, ``test_accuracy``, ``test_loss``, every key of
:func:`qkrum.metrics.detection` (``tp``, ``fp``, ``tn``, ``fn``, ``accuracy``, ``f1``,
``rejection_rate``, ``retention_rate``), ``regime`` (MultiSignal's, else null),
``selected`` (indices), ``train_loss`` (mean local loss of the honest clients),
``train_seconds`` (round 1's includes compiling the round), ``attack_seconds``,
``select_seconds`` (selection and aggregation) and ``eval_seconds``.
Undefined metrics (NaN) are written as null. Files follow the umask (as ``open`` does).

Resuming. After each round the server model goes to the sidecar ``PATH.npz`` (the whole
file name plus ``.npz``, e.g. ``run.jsonl.npz``, so ``run.jsonl`` and ``run.json`` never
share one), written atomically after the round's line, together with the round, the
Byzantine indices and the SHA-256 of the run's config (``json.dumps(config,
sort_keys=True)``). A run that stops resumes from the model's round when started again
with the same config: the sidecar must carry the results file's config hash (a model of
another run, another seed say, is an error naming both files), it is read without
pickle, and an unreadable one (truncated, empty, not ours) is an error naming it and
saying how to start again; lines past the model's round are redone. ``rounds`` is not
part of the config, so a finished run can be extended. A file that already holds the
rounds asked for is returned as it is and never rewritten; that is decided before any
data is loaded or anything compiled (for a named dataset, the client sizes, the only
data-dependent field of the config, follow from the partition settings, and the
sidecar's hash ties the file to them), and :attr:`History.trained` is then 0. A file
holding another config is an error, never overwritten.

One writer per file: for the whole run ``simulate`` holds an exclusive, non-blocking
``fcntl.flock`` on ``PATH.lock`` (removed when the run ends), so a second process on the
same ``out`` fails at once with :class:`RunLockedError` instead of interleaving its rounds
with the first's. (Where ``fcntl`` is missing, on Windows, there is no lock.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import qkrum
from qkrum import attacks, metrics
from qkrum._validation import check_int
from qkrum.ensemble import REGIMES
from qkrum.rules import DEFAULT, as_rule
from qkrum.selection import PAPER_PROJECTION, ByzantineMajorityWarning
from qkrum.fl.models import model_for
from qkrum.fl.training import LocalConfig, evaluator, local_trainer, pad_clients

__all__ = ["ATTACK_NAMES", "Aggregator", "DATASET_DEFAULTS", "History", "PAPER_DEFAULTS", "ROUND_KEYS",
           "RunLockedError", "available_methods", "defaults_for", "read_run", "selection_aggregator", "simulate"]

#: ``aggregator(updates (n, d), f, key) -> (aggregate (d,), info)``. ``info`` may hold
#: ``"selected"`` (bool ``(n,)``: the clients aggregated, for the detection metrics),
#: ``"regime"``, JSON-able entries under ``"extra"`` (written with the round) and
#: ``"round_metrics"``, a function of the Byzantine mask returning more entries for
#: ``"extra"`` (the aggregator never learns who is Byzantine). An aggregator's
#: ``config`` attribute, if any, is part of the run's config (resume checks it).
Aggregator = Callable[[jax.Array, int, jax.Array], tuple[jax.Array, dict]]

#: ``"none"``, the data-poisoning ``"label_flip"`` and every gradient attack of
#: :data:`qkrum.attacks.ATTACKS`.
ATTACK_NAMES: tuple[str, ...] = ("none", "label_flip", *sorted(attacks.ATTACKS))

#: Keys of every round row, in the order they are written.
ROUND_KEYS: tuple[str, ...] = ("round", "test_accuracy", "test_loss", "tp", "fp", "tn", "fn", "accuracy", "f1",
                               "rejection_rate", "retention_rate", "regime", "selected", "train_loss",
                               "train_seconds", "attack_seconds", "select_seconds", "eval_seconds")


#: The paper's local SGD (VI-B: learning rate, weight decay, clipping) with our 2 epochs of
#: batch 32, and the server step size ``η`` of plain FedAvg.
PAPER_DEFAULTS: dict[str, float | int] = {"lr": 0.01, "weight_decay": 1e-4, "clip_norm": 1.0, "local_epochs": 2,
                                           "batch_size": 32, "server_lr": 1.0}

#: Defaults of :func:`simulate`'s training arguments per dataset name (a dataset not listed,
#: e.g. a custom ``data``, gets :data:`PAPER_DEFAULTS`). ``digits`` (not in the paper, ~96
#: images per client for 15 clients) trains more per round; see the module docs. Measured
#: with 15 clients, f = 3, Dirichlet 0.5, seed 0: clean FedAvg 0.85 at round 2 (0.93 at
#: round 10); Gaussian noise (f = 3) leaves the plain mean at 0.61 after 10 rounds,
#: MultiKrum at 0.91.
DATASET_DEFAULTS: dict[str, dict[str, float | int]] = {
    "digits": {**PAPER_DEFAULTS, "lr": 0.1, "batch_size": 16, "local_epochs": 5},
    "mnist": dict(PAPER_DEFAULTS),
    "fashion-mnist": dict(PAPER_DEFAULTS),
    "cifar10": dict(PAPER_DEFAULTS),
}


def defaults_for(dataset: str) -> dict[str, float | int]:
    """The training defaults of ``dataset`` (:data:`DATASET_DEFAULTS`, else the paper's)."""
    return dict(DATASET_DEFAULTS.get(dataset, PAPER_DEFAULTS))


class RunLockedError(RuntimeError):
    """Another process is writing the same ``out`` file (it holds ``out``'s lock file)."""


def _method_text(method: Any) -> str:
    # A name or chain spec is recorded as given (resume files compare it); a Rule by its spec.
    return method if isinstance(method, str) else as_rule(method).spec


def available_methods() -> dict:
    """:data:`qkrum.METHODS`, with the classical baselines registered when installed."""
    try:
        importlib.import_module("qkrum.baselines")
    except ModuleNotFoundError:
        pass
    return qkrum.METHODS


def resolve_attack(attack: Any, attack_options: dict | None = None) -> tuple[str, dict]:
    """``attack`` (a name in :data:`ATTACK_NAMES` or a spec such as ``"ipm(epsilon=0.5)"``)
    and ``attack_options`` as ``(name, options)``; the options win over the spec's."""
    options = dict(attack_options or {})
    if isinstance(attack, str) and attack in ("none", "label_flip"):
        if options:
            raise TypeError(f"attack {attack!r} takes no options, got {sorted(options)}")
        return attack, options
    if isinstance(attack, str) and "(" in attack:
        try:
            name, given = attacks.parse_attack(attack)
        except ValueError as exc:
            raise ValueError(f"{exc}; valid attacks: {', '.join(ATTACK_NAMES)}") from None
        return name, {**given, **options}
    if not isinstance(attack, str) or attack not in ATTACK_NAMES:
        raise ValueError(f"unknown attack={attack!r}; valid attacks: {', '.join(ATTACK_NAMES)}")
    return attack, options


def _attack_context(name: str, options: dict, *, aggregator: Aggregator, updates: jax.Array, byz_idx: np.ndarray,
                    f: int, key: jax.Array, round: int) -> dict:
    """What attack ``name`` takes from the loop (:data:`qkrum.attacks.CONTEXT`) and the
    user did not set: the server's defence on this round, the round, the attackers' own updates."""
    wanted = attacks.context_parameters(name) - set(options)
    context: dict[str, Any] = {}
    if "defence" in wanted:
        context["defence"] = lambda byz: aggregator(updates.at[byz_idx].set(byz), f, key)
    if "round" in wanted:
        context["round"] = round
    if "own" in wanted:
        context["own"] = updates[byz_idx]
    return context


def selection_aggregator(method: Any = DEFAULT, *, m: int | None = None,
                         project: int | None = PAPER_PROJECTION, **options: Any) -> Aggregator:
    """The server step of :func:`qkrum.aggregator` (the same code as a JAX training loop's):
    the rule selects on the host, its aggregate is computed from the selection.

    ``method`` (a name, a chain spec such as ``"nnm,multikrum"`` or a :class:`qkrum.Rule`),
    ``m``, ``project`` and ``**options`` as for :func:`qkrum.select`, validated here; the
    round's ``key`` is the aggregator's ``key``. Returns ``info`` with ``selected`` (the
    aggregated clients) and ``regime`` (MultiSignal's, or None).
    """
    rule = as_rule(method, options)
    built: dict[tuple[int, int], tuple[Any, Any]] = {}

    def aggregate(updates: jax.Array, f: int, key: jax.Array) -> tuple[jax.Array, dict]:
        n = int(updates.shape[0])
        if (n, f) not in built:  # one aggregator per round shape, as a training loop builds it
            agg = qkrum.aggregator(f, method=rule, m=m, num_clients=n, project=project)
            built[(n, f)] = (agg, agg.init())
        agg, state = built[(n, f)]
        mean, state = agg.update(updates, state, key=key)
        regime = int(state.regime)
        return mean, {"selected": np.asarray(state.selected), "regime": REGIMES[regime] if regime >= 0 else None}

    aggregate.rule = rule
    aggregate.name = rule.spec
    return aggregate


@dataclasses.dataclass
class History:
    """A run: its ``config``, one dict per finished round (``rounds``, keys
    :data:`ROUND_KEYS`), the Byzantine client indices (sorted; known to the metrics
    only), ``params``, the server model after the last round (a pytree), and
    ``trained``, the rounds this call trained (0 when ``out`` already held them all)."""

    config: dict
    rounds: list[dict]
    byzantine: np.ndarray
    params: Any = None
    trained: int = 0

    def __len__(self) -> int:
        return len(self.rounds)

    def column(self, key: str) -> np.ndarray:
        """One key over the rounds as a float array (null → NaN)."""
        return np.array([np.nan if r.get(key) is None else r[key] for r in self.rounds], dtype=float)


# ----------------------------------------------------------------------------- JSON lines

def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/Inf become null (strict JSON, and 'undefined' is what they mean)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):
        return _jsonable(value._asdict())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray) or hasattr(value, "__array__") and np.ndim(value) > 0:
        return _jsonable(np.asarray(value).tolist())
    if hasattr(value, "dtype") and np.ndim(value) == 0:  # NumPy/JAX scalars
        value = np.asarray(value).item()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    # An object (a sampler, say): its type, not its repr, whose address changes every run.
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _sidecar(path: Path) -> Path:
    """The model file of ``path``: its whole name plus ``.npz`` (``run.jsonl.npz``)."""
    return path.with_name(path.name + ".npz")


def _lockfile(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON lines of an append-only results file (a run, a sweep's ``cells.jsonl``);
    a torn last line (a write cut off by a kill) is skipped, any other bad line is an error."""
    path = Path(path)
    lines = path.read_text().splitlines()
    out = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if line_no == len(lines):
                continue  # cut off by an interruption: that round (or attempt) is redone
            raise ValueError(f"{path}: line {line_no} is not valid JSON") from None
    return out


def read_run(path: str | os.PathLike) -> tuple[dict | None, list[dict]]:
    """A run file's config and its round rows (sorted by round, the last copy of each);
    a torn last line (an interrupted write) is skipped."""
    config, rows = None, {}
    for row in read_jsonl(path):
        if "config" in row and config is None:
            config = row["config"]
        elif "round" in row:
            rows[int(row["round"])] = row
    return config, [rows[r] for r in sorted(rows)]


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def _config_diff(old: dict, new: dict) -> list[str]:
    old, new = _flat(old), _flat(new)
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} in the file, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]


def _check_same(path: Path, old: dict, config: dict, exclude: tuple[str, ...] = ()) -> None:
    diff = _config_diff({k: v for k, v in old.items() if k not in exclude}, config)
    if diff:
        raise ValueError(f"out={str(path)!r} holds a run with a different config ({'; '.join(diff)}); "
                         "use another --out to start a new run, or the same settings to resume this one")


class _Saved(NamedTuple):
    """A sidecar's contents."""

    round: int
    params: np.ndarray  # (d,) float32
    byzantine: np.ndarray  # sorted indices
    config_sha256: str


_SIDECAR_KEYS = ("round", "params", "byzantine", "config_sha256")


def _load_sidecar(sidecar: Path, path: Path) -> _Saved:
    """The sidecar of ``path``, read without pickle; anything wrong is a ValueError naming it."""
    try:
        z = np.load(sidecar, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ValueError("it holds a single array, not an .npz archive")
        try:
            missing = [k for k in _SIDECAR_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"it has no {', '.join(missing)} entry")
            done, flat, byz, digest = (z[k] for k in _SIDECAR_KEYS)
        finally:
            z.close()
        if done.shape != () or done.dtype.kind not in "iu" or int(done) < 1:
            raise ValueError(f"its round is {done!r}, not an integer >= 1")
        if flat.ndim != 1 or flat.dtype.kind != "f":
            raise ValueError(f"its params are {flat.dtype} of shape {flat.shape}, not a flat float vector")
        if byz.ndim != 1 or (byz.size and byz.dtype.kind not in "iu"):
            raise ValueError(f"its byzantine entry is {byz.dtype} of shape {byz.shape}, not indices")
        if digest.shape != () or digest.dtype.kind != "U":
            raise ValueError("its config_sha256 entry is not a string")
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, NumPy's pickle refusal, ours
        raise ValueError(f"model file {str(sidecar)!r} of out={str(path)!r} cannot be read: {exc} (truncated, "
                         f"corrupt or not written by this qkrum); remove {str(sidecar)!r} and {str(path)!r} to "
                         "start the run again") from exc
    return _Saved(int(done), flat.astype(np.float32, copy=False), np.sort(byz.astype(np.int64)), str(digest))


def _read_state(path: Path, config: dict,
                exclude: tuple[str, ...]) -> tuple[dict, list[dict], _Saved | None] | None:
    """``path``'s config, its rounds confirmed by the sidecar and the sidecar, after checking
    them against ``config`` (which lacks the keys in ``exclude``); None for a new run."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    old, rows = read_run(path)
    if old is None:
        raise ValueError(f"out={str(path)!r} exists but is not a qkrum simulation file (no config line); "
                         "choose another --out or remove it")
    _check_same(path, old, config, exclude)
    sidecar = _sidecar(path)
    if not sidecar.exists():
        if rows:
            legacy = path.with_suffix(".npz")
            hint = (f" ({str(legacy)!r}, a model file of an older qkrum, cannot be checked against this run)"
                    if legacy.exists() and legacy != sidecar else "")
            raise ValueError(f"out={str(path)!r} has {len(rows)} finished rounds but its model file "
                             f"{str(sidecar)!r} is missing{hint}, so the run cannot resume; remove {str(path)!r} "
                             "to start again")
        return old, [], None
    saved = _load_sidecar(sidecar, path)
    want = _config_hash(old)
    if saved.config_sha256 != want:
        raise ValueError(f"model file {str(sidecar)!r} belongs to another run than out={str(path)!r} (config "
                         f"sha256 {saved.config_sha256[:12]}… in the model file, {want[:12]}… in the results file); "
                         f"put back this run's model file, or remove {str(sidecar)!r} and {str(path)!r} to "
                         "start the run again")
    # The line of a round is written before its model: a line past the model's round
    # belongs to a round that is redone.
    done = saved.round
    rows = [r for r in rows if r["round"] <= done]
    if [r["round"] for r in rows] != list(range(1, done + 1)):
        raise ValueError(f"out={str(path)!r} lacks some of rounds 1..{done} that its model file {str(sidecar)!r} "
                         f"has; remove {str(path)!r} and {str(sidecar)!r} to start again")
    return old, rows, saved


def _unflatten(model: Any, flat: np.ndarray, sidecar: Path) -> Any:
    """The model's pytree from a flat vector in ``ravel_pytree`` order, without running
    ``model.init`` (its shapes come from ``jax.eval_shape``; nothing is compiled)."""
    leaves, treedef = jax.tree_util.tree_flatten(jax.eval_shape(lambda: model.init(jax.random.key(0))))
    sizes = [math.prod(leaf.shape) for leaf in leaves]
    if flat.shape != (sum(sizes),):
        raise ValueError(f"model file {str(sidecar)!r} holds {flat.shape[0]} parameters, the model has {sum(sizes)}")
    pieces, at = [], 0
    for leaf, size in zip(leaves, sizes):
        pieces.append(jnp.asarray(flat[at:at + size].reshape(leaf.shape), leaf.dtype))
        at += size
    return jax.tree_util.tree_unflatten(treedef, pieces)


@contextlib.contextmanager
def _exclusive(path: Path | None):
    """Hold an exclusive ``flock`` on ``path``'s lock file for the block; refuse at once
    (:class:`RunLockedError`) when another process holds it. The lock file is removed at
    the end; a process that opened it just before must then retry on a fresh one."""
    try:
        import fcntl
    except ModuleNotFoundError:  # not POSIX
        fcntl = None
    if path is None or fcntl is None:
        yield
        return
    lock = _lockfile(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"out={str(path)!r} is being written by another process, which holds its lock "
                                 f"file {str(lock)!r}; wait for that run to end, or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            mine = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:  # removed by the holder that just finished
            mine = False
        if mine:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)


def _rewrite(path: Path, config: dict, rows: list[dict]) -> None:
    header = {"config": config, "qkrum": qkrum.__version__}
    _atomic_write(path, lambda fh: fh.write("".join(json.dumps(r) + "\n" for r in [header, *rows])), mode="w")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable, mode: str = "wb") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # mkstemp creates 0600: keep the file's mode, or give a new one the umask's
        perms = path.stat().st_mode & 0o777
    except FileNotFoundError:
        perms = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            os.chmod(tmp, perms)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _append(path: Path, row: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------- simulate

def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}")
    return float(value)


def _progress(iterable, *, total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:  # tqdm is optional for the library
        return iterable
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit="round", file=sys.stderr)


def simulate(
    dataset: str = "digits",
    *,
    clients: int = 15,
    byzantine: int = 3,
    attack: str = "none",
    method: Any = DEFAULT,
    rounds: int = 30,
    seed: int = 0,
    partition: str = "dirichlet",
    alpha: float = 0.5,
    shards_per_client: int = 2,
    local_epochs: int | None = None,
    local_steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    clip_norm: float | None = None,
    server_lr: float | None = None,
    project: int | None = PAPER_PROJECTION,
    method_options: dict | None = None,
    attack_options: dict | None = None,
    aggregator: Aggregator | None = None,
    data: Any = None,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    download: bool = False,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    lanes: int | None = None,
) -> History:
    """Run a federated-learning simulation; see the module docs for the round.

    Args:
        dataset: a name in :data:`qkrum.fl.DATASETS` (``"digits"`` needs no download).
        clients, byzantine: ``n`` clients, ``f`` of them Byzantine (``0 <= f < n``).
        attack: a name in :data:`ATTACK_NAMES`; ``attack_options`` are its parameters.
        method: a rule: a name (:func:`available_methods`), a chain spec such as
            ``"nnm,multikrum"``, or a :class:`qkrum.Rule`; with ``method_options`` (the
            final rule's options) and ``project`` (projection width; None = full updates).
            Ignored when ``aggregator`` is given (a custom server step, e.g. CQSA).
        rounds, seed: number of rounds; the seed of every random choice.
        partition, alpha, shards_per_client: the client split (:func:`qkrum.fl.partition`).
        local_epochs, local_steps, batch_size, lr, weight_decay, clip_norm: local training
            (:class:`qkrum.fl.training.LocalConfig`); ``server_lr``: ``η``. None (the
            default; ``local_steps``: off) takes the dataset's value from
            :data:`DATASET_DEFAULTS`.
        data: a :class:`qkrum.fl.Dataset` to use instead of loading ``dataset``
            (``data_dir``, ``source``, ``download`` are passed to :func:`qkrum.fl.load_dataset`).
        out: JSON-lines file for the rounds (resumable, locked while the run writes it;
            see the module docs).
        progress: show a tqdm progress bar (if tqdm is installed).
        lanes: packing of the vmapped local training (:func:`qkrum.fl.training.schedule`).

    Every argument is checked, the data loaded and partitioned, and the attack and the
    built-in server step tried on a dummy ``(n, 8)`` round before any training, so bad
    input (names, options, ``n − f − 2 < 1`` for Krum, an empty client) fails at once. A
    custom ``aggregator`` is only called in the rounds (it may keep state). An ``out``
    that already holds ``rounds`` rounds of this config is returned before any of that.

    Raises:
        ValueError, TypeError: bad input, or an ``out`` (or its model file) that does not
            belong to this run or cannot be read.
        RunLockedError: another process is writing ``out``.
    """
    # --- arguments, cheapest first ---
    from qkrum.fl.data import DATASETS, load_dataset
    from qkrum.fl.models import input_shape_for
    from qkrum.fl.partition import PARTITIONS
    from qkrum._optional import require
    from qkrum.fl.partition import partition as split

    require("flax.linen", "fl", "qkrum.fl.simulate", package="flax")  # before any data is loaded

    if data is None and (not isinstance(dataset, str) or dataset not in DATASETS):
        raise ValueError(f"unknown dataset={dataset!r}; valid datasets: {', '.join(DATASETS)}")
    name = dataset if data is None else getattr(data, "name", dataset)
    n = check_int("clients", clients, minimum=1)
    f = check_int("byzantine", byzantine, minimum=0)
    if f >= n:
        raise ValueError(f"byzantine must be smaller than clients={n} (at least one client must be honest), "
                         f"got byzantine={f}")
    attack, attack_options = resolve_attack(attack, attack_options)
    method_options = dict(method_options or {})
    builtin = aggregator is None
    if attack in attacks.ADAPTIVE and not builtin:
        raise TypeError(f"attack {attack!r} tunes itself against the server, which it can only run for the "
                        f"built-in aggregator (method=...), not a custom aggregator={aggregator!r}")
    if builtin:
        aggregator = selection_aggregator(method, project=project, **method_options)
        server_name = _method_text(method)
    else:
        if not callable(aggregator):
            raise TypeError(f"aggregator must be callable (updates, f, key) -> (aggregate, info), got {aggregator!r}")
        server_name = getattr(aggregator, "name", None) or getattr(aggregator, "__name__", type(aggregator).__name__)
    rounds = check_int("rounds", rounds, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if not isinstance(partition, str) or partition not in PARTITIONS:
        raise ValueError(f"unknown partition={partition!r}; valid partitions: {', '.join(PARTITIONS)}")
    given = dict(lr=lr, weight_decay=weight_decay, clip_norm=clip_norm, local_epochs=local_epochs,
                 batch_size=batch_size, server_lr=server_lr)
    chosen = {k: (v if given[k] is None else given[k]) for k, v in defaults_for(name).items()}
    config_local = LocalConfig(chosen["lr"], chosen["weight_decay"], chosen["clip_norm"], chosen["local_epochs"],
                               local_steps, chosen["batch_size"]).checked()
    server_lr = _check_positive("server_lr", chosen["server_lr"])
    if project is not None:
        project = check_int("project", project, minimum=1)

    def make_config(model, client_sizes) -> dict:
        return _jsonable({
            "dataset": name, "clients": n, "byzantine": f, "attack": attack, "attack_options": attack_options,
            "server": server_name, "method_options": method_options if builtin else None,
            "server_config": None if builtin else getattr(aggregator, "config", None),
            "project": project, "seed": seed, "partition": partition, "alpha": float(alpha),
            "shards_per_client": shards_per_client, "local": config_local._asdict(), "server_lr": server_lr,
            "model": model.name, "input_shape": list(model.input_shape), "num_classes": model.num_classes,
            **({} if client_sizes is None else {"client_sizes": client_sizes.tolist()}),
        })

    def prepare(data):  # partition (raises for an empty client) and model: cheap, no compiling
        parts = split(np.asarray(data.train_labels), n, scheme=partition, alpha=alpha,
                      shards_per_client=shards_per_client, seed=seed)
        client_data = pad_clients(parts, len(data.train_labels))
        model = model_for(tuple(np.shape(data.train_images)[1:]), int(data.num_classes))
        return client_data, model, make_config(model, client_data.sizes)

    # --- the config as far as it is known without loading data: a named dataset's client
    # sizes are a function of the partition settings, so they are compared only later ---
    if data is None:
        config, exclude = make_config(model_for(input_shape_for(name), 10), None), ("client_sizes",)
    else:
        client_data, model, config = prepare(data)
        exclude = ()

    path = Path(out) if out is not None else None
    with _exclusive(path):
        state = _read_state(path, config, exclude) if path is not None else None
        if state is not None and len(state[1]) >= rounds:  # complete: returned untouched
            old, rows, saved = state
            model = model_for(tuple(old["input_shape"]), int(old["num_classes"]))
            return History(old, rows, saved.byzantine, _unflatten(model, saved.params, _sidecar(path)), trained=0)

        # --- data, partition, model ---
        if data is None:
            data = load_dataset(dataset, data_dir=data_dir, source=source, download=download)
            client_data, model, config = prepare(data)
            if state is not None:
                _check_same(path, state[0], config)

        key = jax.random.key(seed)
        k_byz, k_init, k_rounds = jax.random.split(key, 3)
        byz_idx = np.sort(np.asarray(jax.random.choice(k_byz, n, (f,), replace=False))) if f else np.zeros(0, int)
        is_byz = np.zeros(n, bool)
        if attack != "none":
            is_byz[byz_idx] = True
        flips = is_byz if attack == "label_flip" else np.zeros(n, bool)
        craft = attack not in ("none", "label_flip") and f > 0

        # --- resume, and try the attack and the server step on a small dummy round ---
        done_rows: list[dict] = []
        saved = state[2] if state is not None else None
        if saved is not None:
            done_rows = state[1]
            if not np.array_equal(saved.byzantine, byz_idx):
                raise ValueError(f"model file {str(_sidecar(path))!r} names Byzantine clients "
                                 f"{saved.byzantine.tolist()}, seed={seed} now draws {byz_idx.tolist()} (another "
                                 f"JAX version?); remove {str(_sidecar(path))!r} and {str(path)!r} to start again")
            params = _unflatten(model, saved.params, _sidecar(path))
        else:
            params = model.init(k_init)
        dummy = jax.random.normal(jax.random.key(0), (n, 8), jnp.float32)
        if craft:
            # Checks the attack's options; an adaptive attack searches against a constant
            # stand-in here, not the server (which runs on the dummy round just below).
            def stand_in(updates, f_, key):
                return jnp.zeros(dummy.shape[1]), {}
            attacks.apply(attack, jax.random.key(0), dummy[: n - f], f, **attack_options, **_attack_context(
                attack, attack_options, aggregator=stand_in, updates=dummy, byz_idx=byz_idx, f=f,
                key=jax.random.key(0), round=1))
        if builtin:  # a custom aggregator may keep state: it is not called outside the rounds
            aggregator(dummy, f, jax.random.key(0))

        history = History(config, list(done_rows), byz_idx, params)
        chash = _config_hash(config)
        if path is not None:
            _rewrite(path, config, done_rows)  # drops a torn line or rounds past the saved model

        # --- rounds ---
        trainer = local_trainer(model, data.train_images, data.train_labels, client_data, config_local, lanes=lanes)
        evaluate = evaluator(model, data.test_images, data.test_labels)
        w = trainer.ravel(params)
        honest = ~is_byz
        start = len(done_rows)
        bar = _progress(range(start + 1, rounds + 1), total=rounds, initial=start,
                        desc=f"{name} {attack} {server_name}", enabled=progress)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ByzantineMajorityWarning)  # said once by the dummy round
            for t in bar:
                k_train, k_attack, k_server = jax.random.split(jax.random.fold_in(k_rounds, t), 3)
                t0 = time.perf_counter()
                updates, losses = jax.block_until_ready(trainer.train_round(trainer.unravel(w), k_train, flips))
                t1 = time.perf_counter()
                if craft:
                    context = _attack_context(attack, attack_options, aggregator=aggregator, updates=updates,
                                              byz_idx=byz_idx, f=f, key=k_server, round=t)
                    crafted = attacks.apply(attack, k_attack, updates[honest], f, **attack_options, **context)
                    updates = jax.block_until_ready(updates.at[byz_idx].set(crafted))
                t2 = time.perf_counter()
                agg, info = aggregator(updates, f, k_server)
                agg = jax.block_until_ready(jnp.asarray(agg, jnp.float32))
                t3 = time.perf_counter()
                w = w + server_lr * agg
                params = trainer.unravel(w)
                test_acc, test_loss = evaluate(params)
                t4 = time.perf_counter()

                selected = info.get("selected")
                det = (metrics.detection(selected, is_byz) if selected is not None
                       else dict.fromkeys(("tp", "fp", "tn", "fn", "accuracy", "f1", "rejection_rate",
                                           "retention_rate")))
                extra = dict(info.get("extra") or {})
                if callable(info.get("round_metrics")):
                    extra.update(info["round_metrics"](is_byz))
                row = _jsonable({
                    "round": t, "test_accuracy": test_acc, "test_loss": test_loss, **det,
                    "regime": info.get("regime"),
                    "selected": None if selected is None else np.flatnonzero(np.asarray(selected)).tolist(),
                    "train_loss": float(np.mean(np.asarray(losses)[honest])),
                    "train_seconds": t1 - t0, "attack_seconds": t2 - t1, "select_seconds": t3 - t2,
                    "eval_seconds": t4 - t3, **({"extra": extra} if extra else {}),
                })
                history.rounds.append(row)
                history.params = params
                history.trained += 1
                if path is not None:
                    _append(path, row)
                    flat = np.asarray(w, np.float32)
                    _atomic_write(_sidecar(path), lambda fh: np.savez(
                        fh, round=np.int64(t), params=flat, byzantine=byz_idx.astype(np.int64),
                        config_sha256=np.array(chash)))
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(acc=f"{test_acc:.3f}", det=f"{det['accuracy']:.2f}"
                                    if det["accuracy"] is not None else "-")
    return history
