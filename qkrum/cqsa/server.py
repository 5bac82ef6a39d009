"""CQSA as the server step of the FL simulation (:func:`qkrum.fl.simulate`).

:func:`cqsa_server` returns an aggregator ``(updates (n, d), f, key) -> (aggregate, info)``
that runs one :func:`qkrum.cqsa.cqsa_aggregate` round (or global QSA: one cluster of all
clients) per FL round. ``info["selected"]`` is the clients whose update reached the
aggregate, so the simulation's per-client detection metrics apply unchanged;
``info["round_metrics"]`` adds the cluster-level ones of
:func:`qkrum.cqsa.cluster_detection` (cluster TPR/FPR, honest clients dropped with a
flagged cluster) once the simulation knows who was Byzantine.

The three configurations the CQSA experiments compare [design]:

* ``cqsa_server(cluster_size=k, screen="rule")``: CQSA with cluster-level screening (the
  rule of :mod:`qkrum.cqsa.screening`; or a :func:`qkrum.select` method name, ours);
* ``cqsa_server(cluster_size=k, screen=None)``: CQSA without screening;
* ``cqsa_server(global_qsa=True)``: global QSA, one GHZ state of all clients.

Defaults [ours]: ``clip = 0.05`` per coordinate and ``shots = 1024`` per basis. Measured
on the first round of 15 MNIST clients (MLP, two local epochs at learning rate 0.01):
update coordinates have RMS 3.4e-3 and 99th percentile 0.014, so honest updates are
rarely clipped while Gaussian-noise attackers (std 1) are; the readout noise of a
3-client cluster sum is then about ``k·B / (π·√S·V) ≈ 1.5e-3`` per coordinate. On the
8×8 digits MLP (RMS 5e-4) the same noise is as large as the signal: choose a smaller
``clip`` or more shots there.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from qkrum.cqsa.aggregate import cluster_detection, cqsa_aggregate, qsa_aggregate

__all__ = ["DEFAULT_CLIP", "DEFAULT_SHOTS", "cqsa_server"]

DEFAULT_CLIP = 0.05
DEFAULT_SHOTS = 1024


def cqsa_server(*, cluster_size: int = 3, lam: float = 0.0, shots: int | None = DEFAULT_SHOTS,
                clip: float = DEFAULT_CLIP, screen: Any = "rule", global_qsa: bool = False,
                **options: Any):
    """A CQSA (or global QSA) server step for :func:`qkrum.fl.simulate` (module docs).

    ``options`` go to :func:`qkrum.cqsa.cqsa_aggregate` (``noise``, ``surrogate``,
    ``balanced``, ``headroom``, ``cos_threshold``, ``kappa``, ``screen_options``). Every
    argument is checked here, on a small dummy round, before any training.
    """
    if global_qsa and screen is not None:
        raise ValueError(f"global QSA has a single cluster, so nothing to screen: pass screen=None, got "
                         f"screen={screen!r}")
    if global_qsa and options.keys() - {"noise", "surrogate", "headroom"}:
        raise TypeError(f"global QSA takes noise, surrogate and headroom, got {sorted(options)}")

    def run(updates, f, key):
        if global_qsa:
            return qsa_aggregate(updates, clip=clip, lam=lam, shots=shots, seed=key, **options)
        return cqsa_aggregate(updates, cluster_size=cluster_size, clip=clip, lam=lam, shots=shots, seed=key,
                              screen=screen, f=f if screen not in (None, "rule") else None, **options)

    # Bad settings (cluster size, λ, shots, clip, screen, options) fail now, not mid-run.
    dummy_n = max(int(cluster_size) if isinstance(cluster_size, (int, np.integer)) else 1, 4)
    run(np.zeros((dummy_n, 4), np.float32), 0, jax.random.key(0))

    def aggregate(updates, f, key):
        result = run(updates, f, key)
        info = result.info
        return result.aggregate, {
            "selected": result.client_kept,
            "regime": None,
            "round_metrics": lambda is_byzantine: _round_metrics(result, is_byzantine),
            "extra": {"num_clusters": info["num_clusters"], "flagged_clusters": int(result.flagged_clusters.sum()),
                      "clipped_clients": result.clipped_count, "wrapped": info["wrapped"],
                      "decode_rmse": info["decode_rmse"]},
        }

    aggregate.name = "qsa" if global_qsa else "cqsa"
    aggregate.config = {"aggregator": aggregate.name, "cluster_size": None if global_qsa else cluster_size,
                        "lam": lam, "shots": shots, "clip": clip, "screen": screen if screen is None or isinstance(screen, str) else str(screen), **options}
    return aggregate


def _round_metrics(result, is_byzantine) -> dict:
    det = cluster_detection(result, is_byzantine)
    cluster = det["cluster"]
    return {"cluster_tpr": cluster["rejection_rate"],
            "cluster_fpr": 1.0 - cluster["retention_rate"],  # NaN (written as null) without honest clusters
            "honest_dropped": det["honest_dropped"],
            "honest_dropped_with_attacker": det["honest_dropped_with_attacker"],
            "byzantine_kept": det["byzantine_kept"]}
