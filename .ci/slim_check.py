"""Checks a core-only install (``pip install .``, no extras) in the venv that runs it.

.ci/run runs it in a second venv, .venv-slim, before the test suite:

    python3 -m venv .venv-slim && .venv-slim/bin/pip install -q . && .venv-slim/bin/python .ci/slim_check.py

What it checks: qkrum imports from site-packages (not the source tree); ``qkrum.select``
runs MultiKrum, the QUBO selection, MultiSignal and the trimmed mean, and a jitted
``qkrum.aggregator`` round runs; qkrum.anneal, qkrum.qubo, qkrum.attacks and qkrum.cqsa
import; none of the extras' packages (flax, scikit-learn, matplotlib, tqdm, rich) was
installed; the FL simulator, qkrum.flower and the CLI's ``simulate`` and ``plot`` fail with an ImportError
(an exit status 2) that names the extra to install, while ``qkrum --help`` works. Then it
prints how many packages the install holds and their size. Not a pytest file (pytest
collects only tests/).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ABSENT = ("flax", "sklearn", "matplotlib", "tqdm", "rich", "flwr")


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"slim_check: FAILED: {message}")


def check_import_error(call, extra: str, what: str) -> None:
    try:
        call()
    except ImportError as exc:
        check(f"qkrum[{extra}]" in str(exc), f"{what} raised an ImportError without qkrum[{extra}]: {exc}")
        return
    check(False, f"{what} ran without the {extra} extra installed")


def main() -> None:
    purelib, platlib = (Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib"))
    for name in ABSENT:
        check(importlib.util.find_spec(name) is None, f"{name} is installed by the core install")

    import jax
    import jax.numpy as jnp
    import numpy as np

    import qkrum

    where = Path(qkrum.__file__).resolve()
    check(purelib in where.parents or platlib in where.parents,
          f"qkrum was imported from {where}, not from the install in {purelib}")
    for module in ("qkrum.anneal", "qkrum.qubo", "qkrum.attacks", "qkrum.cqsa", "qkrum.aggregator"):
        importlib.import_module(module)

    rng = np.random.default_rng(0)
    updates = rng.standard_normal((15, 100)).astype(np.float32)
    updates[12:] += 10.0  # three far-off clients, which MultiKrum and MultiSignal reject
    for method in ("multikrum", "qubo", "multisignal", "trimmed_mean"):
        sel = qkrum.select(updates, f=3, method=method)
        check(sel.selected.shape == (15,) and sel.selected.dtype == bool, f"{method}: selected {sel.selected!r}")
        agg = np.asarray(sel.aggregate(updates))
        check(agg.shape == (100,) and np.isfinite(agg).all(), f"{method}: aggregate of shape {agg.shape}")
        # (The QUBO's cosine objective sees three parallel outliers as a tight group, and the
        # trimmed mean is coordinate-wise, keeping every client: only the shapes are checked.)
        if method in ("multikrum", "multisignal"):
            check(sel.rejected.tolist() == [12, 13, 14], f"{method} rejected {sel.rejected.tolist()}")

    # A chain (pre-aggregation, then a rule) through select and the jit aggregator: same aggregate.
    chained = qkrum.select(updates, f=3, method="nnm,trimmed_mean", seed=7)
    check(np.abs(np.asarray(chained.aggregate(updates)) - updates[:12].mean(0)).max() < 1.0,
          "nnm,trimmed_mean is pulled toward the three far-off clients")
    agg = qkrum.aggregator(3, method="nnm,trimmed_mean", num_clients=15)
    key = jax.random.key(3)
    mean, _ = jax.jit(agg.update)(jnp.asarray(updates), agg.init(), key=key)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    want = np.asarray(qkrum.select(updates, f=3, method="nnm,trimmed_mean", seed=seed).aggregate(updates))
    check(np.allclose(np.asarray(mean), want, atol=1e-6), "the jit aggregator's chain differs from select's")

    agg = qkrum.aggregator(3)
    params = {"w": jnp.zeros(100)}
    state = agg.init(params)
    mean, state = jax.jit(agg.update)({"w": jnp.asarray(updates)}, state)
    check(bool(jnp.all(jnp.isfinite(mean["w"]))) and int(state.count) == 1, "aggregator(3).update under jit")

    # The FL simulator imports (the CLI reads its constants), but running it names the extra.
    import qkrum.fl

    check_import_error(lambda: qkrum.fl.simulate("digits", rounds=1, progress=False), "fl", "qkrum.fl.simulate")
    check_import_error(lambda: qkrum.fl.model_for("mnist"), "fl", "qkrum.fl.model_for")
    check_import_error(lambda: qkrum.fl.plot_runs([], "unused.png"), "plot", "qkrum.fl.plot_runs")
    # The Flower strategy names its extra too.
    check_import_error(lambda: importlib.import_module("qkrum.flower"), "flower", "import qkrum.flower")

    script = Path(sys.executable).with_name("qkrum")
    check(script.exists(), f"the qkrum console script is missing beside {sys.executable}")
    with tempfile.TemporaryDirectory() as tmp:
        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(script), *args], cwd=tmp, capture_output=True, text=True, timeout=300)

        for args in ((["--help"]), ["simulate", "--help"], ["plot", "--help"]):
            proc = cli(*args)
            check(proc.returncode == 0 and "usage:" in proc.stdout, f"qkrum {' '.join(args)}: {proc.stderr}")
        proc = cli("simulate", "--rounds", "1", "--no-progress")
        check(proc.returncode == 2 and "pip install 'qkrum[fl]'" in proc.stderr,
              f"qkrum simulate exited {proc.returncode}: {proc.stderr}")
        proc = cli("plot", "run.jsonl", "--out", "fig.png")
        check(proc.returncode == 2 and "pip install 'qkrum[plot]'" in proc.stderr,
              f"qkrum plot exited {proc.returncode}: {proc.stderr}")

    names = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    roots = {purelib, platlib}
    size = sum(p.stat().st_size for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"slim_check: OK ({qkrum.IMPLEMENTATION} implementation): {len(names)} installed packages "
          f"(pip and setuptools included), {size / 2**20:.0f} MiB in {', '.join(map(str, sorted(roots)))}")
    print("slim_check: packages: " + ", ".join(sorted(names)))


if __name__ == "__main__":
    main()
