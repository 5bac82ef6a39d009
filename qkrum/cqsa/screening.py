"""Cluster-level Byzantine screening: which cluster aggregates the server leaves out.

The server of CQSA sees only the cluster sums, never a client's update, so it can only
flag whole clusters: an attacker cannot be isolated inside its cluster, and the honest
clients that shared a cluster with it are dropped too [paper: detection is at cluster
level, by cosine similarity and Euclidean distance between cluster aggregates].

Two screens, both on the cluster means ``a_c = A_c / |c|`` (a ``(C, d)`` matrix):

``screen_rule`` -- the design notes' rule [design; the thresholds are ours]
    Robust reference ``r`` = the coordinate-wise median of the cluster means. For each
    cluster, the cosine similarity to ``r`` (``a.r / (|a| |r| + 1e-8)``, the ``eps`` of
    Eq. 5 in :mod:`qkrum.kernels`) and the Euclidean distance ``|a - r|`` (direct
    differences: a distance to one reference, where the Gram form of the pairwise
    kernels would lose precision by cancellation). A cluster is flagged when

    * its cosine is below ``cos_threshold`` (default ``0.0``: its mean points away from
      the reference, the signature of sign-flip and inner-product attacks; scale-free), or
    * its distance exceeds ``median + kappa * MAD`` over the clusters' distances, with
      the MAD scaled by 1.4826 so that ``kappa`` counts standard deviations under
      normality (default ``kappa = 3``: magnitude outliers such as scaling or Gaussian
      attacks).

    When the cluster sizes are given, the distance test uses ``sqrt(|c|) * distance``: an
    honest cluster mean's spread around the reference shrinks like ``1/sqrt(|c|)``, so
    without this a smaller remainder cluster would stand out for its size alone. With
    equal sizes the flags are the same either way.

    Strict inequalities: a reference equal to zero (cosine 0) or equal distances (MAD 0)
    flag nothing. At least half of the clusters lie at or below the median distance, so
    only the cosine test can flag every cluster (with a high ``cos_threshold``).

``screen_select`` -- qkrum's selectors on the cluster means [ours, not the paper's]
    ``qkrum.select(cluster_means, f_clusters, method=...)`` with MultiKrum, QUBO, the
    cascade or MultiSignal; the clusters it does not select are flagged.
    ``f_clusters`` (:func:`cluster_byzantine_bound`) is the number of clusters that can
    hold a Byzantine client when ``f`` clients are Byzantine -- at most ``f``, and at most
    every cluster -- capped at ``C - 3``, the largest value for which Krum scoring
    (``C - f - 2 >= 1`` neighbours, used by multikrum, cascade and multisignal) is
    defined. With ``f_clusters = 0`` (``f = 0`` or ``C <= 3``) nothing can be flagged and
    ``select`` is not called.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._validation import check_int

__all__ = ["DEFAULT_COS_THRESHOLD", "DEFAULT_KAPPA", "MAD_SCALE", "cluster_byzantine_bound", "screen_rule",
           "check_screening_rule", "screen_select"]

#: Default cosine threshold of :func:`screen_rule` [ours].
DEFAULT_COS_THRESHOLD = 0.0
#: Default number of (MAD-estimated) standard deviations above the median distance [ours].
DEFAULT_KAPPA = 3.0
#: ``1 / Phi^-1(3/4)``: makes the MAD a consistent estimate of a normal standard deviation.
MAD_SCALE = 1.4826


def _check_real(name: str, value: Any, lo: float, hi: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {name}={value}")
    return value


def check_rule_params(cos_threshold: Any, kappa: Any) -> tuple[float, float]:
    return (_check_real("cos_threshold", cos_threshold, -1.0, 1.0),
            _check_real("kappa", kappa, 0.0, math.inf))


@jax.jit
def _rule_scores(means: jax.Array) -> tuple[jax.Array, jax.Array]:
    ref = jnp.median(means, axis=0)
    norms = jnp.linalg.norm(means, axis=1)
    cosine = (means @ ref) / (norms * jnp.linalg.norm(ref) + 1e-8)
    distance = jnp.linalg.norm(means - ref[None, :], axis=1)
    return cosine, distance


def screen_rule(cluster_means: Any, *, sizes: Any = None, cos_threshold: Any = DEFAULT_COS_THRESHOLD,
                kappa: Any = DEFAULT_KAPPA) -> tuple[np.ndarray, dict]:
    """Flag clusters by cosine and distance to the coordinate-wise median (module docs).

    ``cluster_means`` is ``(C, d)`` and finite; ``sizes`` (``(C,)`` member counts, optional)
    standardises the distances. Returns the flagged mask ``(C,)`` and an info dict with
    each cluster's ``cosine``, ``distance`` and the ``score`` the distance test compares
    (``sqrt(size) * distance``, or the distance), the ``distance_threshold`` on that score,
    and the parameters.
    """
    cos_threshold, kappa = check_rule_params(cos_threshold, kappa)
    means = jnp.asarray(cluster_means)
    if means.ndim != 2 or means.shape[0] < 1:
        raise ValueError(f"cluster_means must be a (C, d) matrix with C >= 1, got shape {tuple(means.shape)}")
    cosine, distance = (np.asarray(a, np.float64) for a in _rule_scores(means))
    score = distance
    if sizes is not None:
        sizes = np.asarray(sizes)
        if sizes.shape != (means.shape[0],) or not np.issubdtype(sizes.dtype, np.integer) or (sizes < 1).any():
            raise ValueError(f"sizes must be {means.shape[0]} positive integers (one per cluster), got {sizes!r}")
        score = np.sqrt(sizes) * distance
    med = float(np.median(score))
    mad = MAD_SCALE * float(np.median(np.abs(score - med)))
    threshold = med + kappa * mad
    flagged = (cosine < cos_threshold) | (score > threshold)
    return flagged, {"cosine": cosine, "distance": distance, "score": score, "distance_threshold": threshold,
                     "cos_threshold": cos_threshold, "kappa": kappa}


def cluster_byzantine_bound(f: Any, num_clusters: Any) -> int:
    """``f_clusters = min(f, C - 3)`` (0 when ``C <= 3``): see the module docs."""
    f = check_int("f", f, minimum=0)
    num_clusters = check_int("num_clusters", num_clusters, minimum=1)
    return max(0, min(f, num_clusters - 3))


def check_screening_rule(method: Any, options: dict | None = None):
    """The :class:`qkrum.Rule` a screen runs: a name, chain spec or rule that selects (its
    aggregate is the mean of the selected clusters), validated with its ``options``."""
    from qkrum.rules import as_rule

    try:
        rule = as_rule(method, options)
    except ValueError as exc:
        if isinstance(method, str) and str(exc).startswith("unknown method="):
            raise ValueError(f"unknown screening method={method!r}; valid: 'rule' or {str(exc).split('; ', 1)[1]}") from None
        raise
    if not rule.selects:
        raise ValueError(f"method {rule.spec!r} aggregates with a robust statistic rather than selecting clients; "
                         "CQSA screening needs a selecting method (multikrum, qubo, cascade, multisignal)")
    return rule


def screen_select(cluster_means: Any, f: Any, method: Any, *, seed: Any = 0,
                  options: dict | None = None) -> tuple[np.ndarray, dict]:
    """Flag the clusters that ``qkrum.select(cluster_means, f_clusters, method=method)``
    leaves out, ``f_clusters = cluster_byzantine_bound(f, C)``.

    ``options`` are passed to :func:`qkrum.select` (``project``, ``m``, and the method's
    own options). ``method`` is a name, a chain spec or a :class:`qkrum.Rule`. A rule
    that aggregates by a robust statistic instead of selecting is rejected: a flagged set
    is needed.
    """
    from qkrum.rules import as_rule
    from qkrum.selection import select

    options = dict(options or {})
    select_args = {k: options.pop(k) for k in ("project", "m", "norm_guard", "dtype") if k in options}
    rule = check_screening_rule(method, options)
    means = np.asarray(cluster_means)
    num_clusters = means.shape[0]
    f_clusters = cluster_byzantine_bound(f, num_clusters)
    info: dict[str, Any] = {"method": method if isinstance(method, str) else rule.spec, "f": int(f),
                            "f_clusters": f_clusters}
    if f_clusters == 0:
        info["skipped"] = (f"f_clusters = min(f={int(f)}, C - 3 = {num_clusters - 3}) is 0: no cluster "
                           "can be flagged")
        return np.zeros(num_clusters, dtype=bool), info
    sel = select(means, f_clusters, method=rule, seed=check_int("seed", seed, minimum=0), **select_args)
    info["selection"] = {"scores": sel.scores, "m": sel.info["m"],
                         **{k: v for k, v in sel.info.items() if k not in ("n", "f", "m", "timings")}}
    return ~np.asarray(sel.selected, dtype=bool), info
