"""The ``qkrum`` command line: run a federated-learning simulation, plot runs, run sweeps.

    qkrum simulate --dataset mnist --clients 15 --byzantine 3 --attack alie \\
        --method multisignal --rounds 30 --seed 0 --data-dir DIR --out results/run.jsonl
    qkrum simulate --dataset mnist --aggregator cqsa --cluster-size 3 --noise 0.01 --screen rule ...
    qkrum plot results/multikrum.jsonl results/qubo.jsonl --out fig.png
    qkrum sweep benchmarks/paper/table3_mnist.toml --out results/table3 [--backend ray --workers 2]
    qkrum report results/table3 --out results/table3/report

(``python -m qkrum ...`` until the ``qkrum`` script is installed.) Method and attack
options are ``--option KEY=VALUE`` and ``--attack-option KEY=VALUE``, repeated; a VALUE
is read as JSON when it parses (``3``, ``0.5``, ``true``, ``[3, 8]``) and as a string
otherwise. Rerunning ``simulate`` with the same ``--out`` and settings resumes the run (or
says it is already complete); a second ``simulate`` on an ``--out`` being written is refused.
Training defaults (``--lr``, ``--batch-size``, ``--local-epochs``, ...) follow the dataset
(:data:`qkrum.fl.simulation.DATASET_DEFAULTS`). Errors of the library name its parameters
(``data_dir=``); :func:`_flag_text` rewrites them into the flags that set them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from typing import Sequence

__all__ = ["main"]


#: Parameter names in the library's error messages -> the flags that set them.
_FLAGS = {
    "dataset": "--dataset", "name": "--dataset", "data_dir": "--data-dir", "source": "--source",
    "download": "--download", "partition": "--partition", "alpha": "--alpha",
    "shards_per_client": "--shards-per-client", "clients": "--clients", "byzantine": "--byzantine",
    "attack": "--attack", "attack_options": "--attack-option", "method": "--method", "method_options": "--option",
    "project": "--project", "rounds": "--rounds", "seed": "--seed", "server_lr": "--server-lr",
    "local_epochs": "--local-epochs", "local_steps": "--local-steps", "batch_size": "--batch-size",
    "learning_rate": "--lr", "lr": "--lr", "weight_decay": "--weight-decay", "clip_norm": "--clip-norm",
    "cluster_size": "--cluster-size", "lam": "--noise", "shots": "--shots", "clip": "--clip", "screen": "--screen",
    "out": "--out", "labels": "--label",
}
_KEYS = "|".join(sorted(map(re.escape, _FLAGS), key=len, reverse=True))
_NOT_AFTER = r"(?<![\w.$'\-])"  # not inside a word, a flag, a $VARIABLE or a quoted name
_VALUE = r"('[^']*'|\"[^\"]*\"|[^\s,;:)\]]+)"


def _flag_value(value: str) -> str:
    # A quoted plain word needs no quotes on a command line: 'tfds' -> tfds.
    return value[1:-1] if re.fullmatch(r"'[\w.+/-]+'", value) else value


def _flag_text(message: str) -> str:
    """``message`` with the library's parameter names replaced by the CLI's flags:
    ``source='tfds', download=True`` -> ``--source tfds --download``, ``data_dir=...``
    -> ``--data-dir DIR``, ``got clients=4`` -> ``got --clients 4``, ``batch_size must``
    -> ``--batch-size must``. The one place where messages are translated."""
    message = re.sub(_NOT_AFTER + r"data_dir=\.\.\.", "--data-dir DIR", message)
    message = re.sub(_NOT_AFTER + rf"({_KEYS})=True\b", lambda m: _FLAGS[m[1]], message)
    message = re.sub(_NOT_AFTER + rf"({_KEYS})=False\b", lambda m: f"no {_FLAGS[m[1]]}", message)
    message = re.sub(_NOT_AFTER + rf"({_KEYS})=\.\.\.", lambda m: f"{_FLAGS[m[1]]} ...", message)
    message = re.sub(_NOT_AFTER + rf"({_KEYS})={_VALUE}", lambda m: f"{_FLAGS[m[1]]} {_flag_value(m[2])}", message)
    # "--source tfds, --download": one command line, no comma.
    message = re.sub(r"(--source \S+), (--download)", r"\1 \2", message)
    message = re.sub(_NOT_AFTER + rf"({_KEYS})(?= must\b)", lambda m: _FLAGS[m[1]], message)
    # Names with an underscore are never plain English: translate them wherever they stand.
    under = "|".join(k for k in _FLAGS if "_" in k)
    return re.sub(_NOT_AFTER + rf"({under})(?![\w=])", lambda m: _FLAGS[m[1]], message)


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _project(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--project must be >= 1 or 'none', got {value}")
    return value


def _shots(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'none', got {text!r}") from None


def _server(args):
    """The CQSA/QSA server step of ``--aggregator``, or None for ``qkrum.select``."""
    if args.aggregator == "select":
        return None
    from qkrum.cqsa.server import DEFAULT_CLIP, cqsa_server

    clip = DEFAULT_CLIP if args.clip is None else args.clip
    if args.aggregator == "qsa":
        return cqsa_server(global_qsa=True, screen=None, lam=args.noise, shots=args.shots, clip=clip)
    screen = None if args.screen.lower() == "none" else args.screen
    return cqsa_server(cluster_size=args.cluster_size, lam=args.noise, shots=args.shots, clip=clip, screen=screen)


def _parser() -> argparse.ArgumentParser:
    from qkrum.fl.data import DATASETS, SOURCES
    from qkrum.fl.partition import PARTITIONS
    from qkrum.fl.simulation import ATTACK_NAMES, DATASET_DEFAULTS, PAPER_DEFAULTS
    from qkrum.rules import DEFAULT

    def per_dataset(key: str) -> str:  # "digits 0.1, others 0.01"
        special = [f"{d} {v[key]}" for d, v in DATASET_DEFAULTS.items() if v[key] != PAPER_DEFAULTS[key]]
        return f"default: {', '.join(special + [f'others {PAPER_DEFAULTS[key]}'])}" if special else \
            f"default: {PAPER_DEFAULTS[key]}"

    parser = argparse.ArgumentParser(prog="qkrum", description="Byzantine-robust federated learning with qkrum.")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="run a federated-learning simulation",
                         description="Run a federated-learning simulation; one JSON line per round.")
    sim.set_defaults(parser=sim)
    g = sim.add_argument_group("data")
    g.add_argument("--dataset", default="digits", choices=DATASETS, help="dataset (default: digits, offline)")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder of canonical dataset files (default: $QKRUM_DATA_DIR)")
    g.add_argument("--source", default="auto", choices=SOURCES, help="where the data comes from (default: auto)")
    g.add_argument("--download", action="store_true", help="let tensorflow-datasets download (with --source tfds)")
    g.add_argument("--partition", default="dirichlet", choices=PARTITIONS, help="client split (default: dirichlet)")
    g.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (default: 0.5)")
    g.add_argument("--shards-per-client", type=int, default=2, help="shards per client (default: 2)")
    g = sim.add_argument_group("federation")
    g.add_argument("--clients", type=int, default=15, help="number of clients n (default: 15)")
    g.add_argument("--byzantine", type=int, default=3, help="Byzantine clients f (default: 3)")
    g.add_argument("--attack", default="none", metavar="NAME",
                   help=f"attack (default: none); one of {', '.join(ATTACK_NAMES)}")
    g.add_argument("--attack-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="attack parameter, e.g. --attack-option scale=10 (repeatable)")
    g.add_argument("--method", default=DEFAULT, metavar="RULE",
                   help=f"server rule of qkrum.select (default: {DEFAULT}; 'mean' is FedAvg): a name, or a chain of "
                        "pre-aggregators and a rule such as 'nnm,trimmed_mean' or 'bucketing(s=2),multikrum'")
    g.add_argument("--option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="option of the final rule, e.g. --option num_reads=200 (repeatable)")
    g.add_argument("--project", type=_project, default=1000, metavar="K",
                   help="projection width k for selection, or 'none' (default: 1000, the paper's)")
    g.add_argument("--rounds", type=int, default=30, help="rounds (default: 30)")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    g.add_argument("--server-lr", type=float, default=None, help=f"server step size eta ({per_dataset('server_lr')})")
    g = sim.add_argument_group("quantum secure aggregation (CQSA; replaces --method)")
    g.add_argument("--aggregator", default="select", choices=("select", "cqsa", "qsa"),
                   help="server step: 'select' (qkrum.select with --method, default), 'cqsa' (clustered "
                        "quantum secure aggregation) or 'qsa' (global QSA: one GHZ state of all clients)")
    g.add_argument("--cluster-size", type=int, default=3, help="CQSA cluster size k (default: 3)")
    g.add_argument("--noise", type=float, default=0.0, metavar="LAMBDA",
                   help="per-qubit depolarizing strength in [0, 1] (default: 0)")
    g.add_argument("--shots", type=_shots, default=1024, metavar="S",
                   help="shots per measurement basis, or 'none' for an ideal readout (default: 1024)")
    g.add_argument("--clip", type=float, default=None, metavar="B",
                   help="per-coordinate clipping bound of the phase encoding (default: 0.05)")
    g.add_argument("--screen", default="rule", metavar="RULE",
                   help="CQSA cluster screening: 'rule' (cosine/distance, default), 'none', or a qkrum.select "
                        "method run on the cluster means (multikrum, qubo, multisignal, ...)")
    g = sim.add_argument_group("local training")
    g.add_argument("--local-epochs", type=int, default=None,
                   help=f"passes over a client's data ({per_dataset('local_epochs')})")
    g.add_argument("--local-steps", type=int, default=None,
                   help="fixed local steps per client instead of epochs (default: off)")
    g.add_argument("--batch-size", type=int, default=None, help=f"mini-batch size ({per_dataset('batch_size')})")
    g.add_argument("--lr", type=float, default=None, help=f"local SGD learning rate ({per_dataset('lr')})")
    g.add_argument("--weight-decay", type=float, default=None, help=f"weight decay ({per_dataset('weight_decay')})")
    g.add_argument("--clip-norm", type=float, default=None,
                   help=f"gradient clipping global norm ({per_dataset('clip_norm')})")
    g = sim.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="PATH.jsonl",
                   help="JSON-lines results (resumable; model saved beside it as PATH.jsonl.npz, "
                        "PATH.jsonl.lock held while running)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    plot = sub.add_parser("plot", help="plot test accuracy and detection metrics per round",
                          description="Plot round-by-round test accuracy, detection accuracy, F1, rejection rate "
                                      "and retention rate of runs.")
    plot.set_defaults(parser=plot)
    plot.add_argument("runs", nargs="+", metavar="RUN.jsonl", help="run files (several overlay)")
    plot.add_argument("--out", required=True, metavar="FIG.png", help="PNG to write")
    plot.add_argument("--label", action="append", default=None, metavar="TEXT",
                      help="legend label per run, in order (default: method · attack · dataset)")
    plot.add_argument("--title", default=None, help="figure title")

    sweep = sub.add_parser("sweep", help="run a grid of simulations (resumable; process pool or Ray)",
                           description="Run every cell of a sweep config (TOML: [fixed] simulate options, [grid] "
                                       "or [[grid]] axes) that DIR does not have done yet. A rerun skips done "
                                       "cells and resumes unfinished ones; results in DIR/cells.jsonl.")
    sweep.set_defaults(parser=sweep)
    sweep.add_argument("config", metavar="CONFIG.toml", help="the sweep's configuration")
    sweep.add_argument("--out", required=True, metavar="DIR", help="sweep directory (created; reruns resume)")
    sweep.add_argument("--backend", default="local", choices=("local", "ray"),
                       help="local: a process pool of --workers (default); ray: Ray core tasks")
    sweep.add_argument("--address", default=None, metavar="ADDR",
                       help="Ray cluster: 'auto' or ray://host:port (default: a local Ray instance)")
    sweep.add_argument("--workers", type=int, default=1, metavar="N",
                       help="cells run at once (default: 1; each uses every core it gets)")
    sweep.add_argument("--retries", type=int, default=0, metavar="K", help="retries of a failing cell (default: 0)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")

    report = sub.add_parser("report", help="tables and figures of a sweep directory",
                            description="Markdown and CSV tables (detection accuracy and F1 per attack x method, "
                                        "test accuracy, worst cases, the paper's numbers when the config names "
                                        "its table) and figures of a sweep directory.")
    report.set_defaults(parser=report)
    report.add_argument("sweep_dir", metavar="DIR", help="a directory written by qkrum sweep")
    report.add_argument("--out", required=True, metavar="REPORT_DIR", help="where to write the report")
    return parser


def _mean_text(values) -> str:
    """The mean of the defined values to 3 decimals, or ``n/a`` when none is defined
    (F1 and the rates without an attacker)."""
    finite = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return f"{sum(finite) / len(finite):.3f}" if finite else "n/a"


def _simulate(args, parser) -> int:
    from qkrum._optional import require
    from qkrum.fl.simulation import RunLockedError, simulate

    try:  # the models are flax's: say which extra to install before any work starts
        require("flax.linen", "fl", "the FL simulation")
    except ImportError as exc:
        parser.error(str(exc))

    t0 = time.perf_counter()
    try:
        server = _server(args)
        history = simulate(
            args.dataset, clients=args.clients, byzantine=args.byzantine, attack=args.attack, method=args.method,
            rounds=args.rounds, seed=args.seed, partition=args.partition, alpha=args.alpha,
            shards_per_client=args.shards_per_client, local_epochs=args.local_epochs,
            local_steps=args.local_steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
            clip_norm=args.clip_norm, server_lr=args.server_lr, project=args.project,
            method_options=dict(args.option), attack_options=dict(args.attack_option), data_dir=args.data_dir,
            source=args.source, download=args.download, out=args.out, progress=not args.no_progress,
            aggregator=server,
        )
    except (ValueError, TypeError, OSError, ImportError, RunLockedError) as exc:
        parser.error(_flag_text(str(exc)))
    rows = history.rounds
    last = rows[-1]
    summary = (f"final test accuracy {last['test_accuracy']:.4f}; mean detection accuracy "
               f"{_mean_text([r['accuracy'] for r in rows])}, F1 {_mean_text([r['f1'] for r in rows])}")
    if history.trained == 0:
        print(f"already complete: {len(rows)} rounds in {args.out}: {summary}")
    else:
        print(f"{len(rows)} rounds in {time.perf_counter() - t0:.1f}s: {summary}"
              + (f"; results in {args.out}" if args.out else ""))
    return 0


def _plot(args, parser) -> int:
    from qkrum._optional import require
    from qkrum.fl.plot import plot_runs

    try:
        require("matplotlib", "plot", "qkrum plot")
    except ImportError as exc:
        parser.error(str(exc))

    try:
        out = plot_runs(args.runs, args.out, labels=args.label, title=args.title)
    except (ValueError, OSError) as exc:
        parser.error(_flag_text(str(exc)))
    print(f"wrote {out}")
    return 0


def _sweep(args, parser) -> int:
    from qkrum._optional import require
    from qkrum.sweep import SweepLockedError, run_sweep

    try:  # every cell is a simulation
        require("flax.linen", "fl", "qkrum sweep")
        result = run_sweep(args.config, args.out, backend=args.backend, workers=args.workers, retries=args.retries,
                           address=args.address, progress=not args.no_progress)
    except (ValueError, TypeError, OSError, ImportError, SweepLockedError) as exc:
        parser.error(str(exc))
    print(f"{args.out}: {result.total} cells, {result.skipped} already done, {result.done} done now, "
          f"{result.failed} failed" + (f" (see {args.out}/cells.jsonl)" if result.failed else ""))
    return 1 if result.failed else 0


def _report(args, parser) -> int:
    from qkrum.sweep import write_report

    try:
        files = write_report(args.sweep_dir, args.out)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    print(f"wrote {len(files)} files to {args.out}" + (f", start at {files['report.md']}" if "report.md" in files else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qkrum`` script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    return {"simulate": _simulate, "plot": _plot, "sweep": _sweep, "report": _report}[args.command](args, args.parser)


if __name__ == "__main__":
    sys.exit(main())
