"""Robust statistics over an ``(n, d)`` matrix of client updates and an ``(n,)`` mask.

Pure JAX with fixed shapes: the ``mask`` may be a tracer, so every statistic works under
``jax.jit``. The sorts (median, trimmed mean, Bulyan's coordinate step) take a NumPy path
on eager CPU calls, as :mod:`qkrum.kernels` does for its selections (XLA's CPU sort along
the client axis is an order of magnitude slower); traced calls use XLA, with the same
values. The rules built on them, with their options and sources, are in
:mod:`qkrum.rules.classical`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import kernels

__all__ = [
    "ClippedCenter",
    "GeometricMedian",
    "bulyan_order",
    "centered_clipping",
    "closest_to_median_mean",
    "coordinate_median",
    "distance_to",
    "geometric_median",
    "trimmed_mean",
]

def _on_host(x, mask) -> bool:
    # The kernels' rule: eager calls on concrete CPU arrays take the NumPy path, traced
    # calls (jit, vmap) and accelerators the XLA one.
    return (kernels.is_cpu_concrete(x) and kernels.is_cpu_concrete(mask)
            and np.dtype(x.dtype) in (np.float32, np.float64))


def _kept_rows(x, mask) -> np.ndarray:
    return np.asarray(x)[np.asarray(mask, dtype=bool)]


def _sorted_masked(x: jax.Array, mask: jax.Array) -> jax.Array:
    # Masked rows (rejected, possibly NaN) become +inf so they sort after every kept
    # value; the first sum(mask) rows of each column are then exactly the kept values.
    return jnp.sort(jnp.where(mask[:, None], x, jnp.inf), axis=0)


@jax.jit
def _coordinate_median_xla(x, mask):
    s = _sorted_masked(x, mask)
    count = jnp.sum(mask)
    lo = jnp.maximum(count - 1, 0) // 2
    hi = count // 2
    return (s[lo] + s[hi]) / 2


def coordinate_median(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Median of every coordinate over the rows where ``mask`` is True (the mean of the
    two middle values for an even count). ``mask`` must select at least one row.

    Like :mod:`qkrum.kernels`, an eager call on CPU arrays uses NumPy (XLA's CPU sort
    along the client axis is an order of magnitude slower than ``np.median``); traced
    calls sort in XLA. Both give the same values.
    """
    if _on_host(x, mask):
        return jnp.asarray(np.median(_kept_rows(x, mask), axis=0))
    return _coordinate_median_xla(x, mask)


@jax.jit
def _trimmed_mean_xla(x, mask, beta):
    s = _sorted_masked(x, mask)
    count = jnp.sum(mask)
    # Under jit the mask is only known at run time: with too few selected rows, trim as
    # select() does ((count − 1) // 2 at most) instead of averaging nothing.
    beta = jnp.minimum(beta, jnp.maximum(count - 1, 0) // 2)
    rank = jnp.arange(x.shape[0])[:, None]
    keep = (rank >= beta) & (rank < count - beta)
    kept = jnp.maximum(count - 2 * beta, 1).astype(x.dtype)
    return jnp.sum(jnp.where(keep, s, 0), axis=0) / kept


def trimmed_mean(x: jax.Array, mask: jax.Array, beta: jax.Array | int) -> jax.Array:
    """Coordinate-wise trimmed mean over the masked rows: per coordinate, drop the
    ``beta`` largest and ``beta`` smallest values and average the remaining
    ``sum(mask) − 2·beta`` (which must be positive; callers check it). NumPy on eager
    CPU calls, XLA when traced (see :func:`coordinate_median`)."""
    if _on_host(x, mask) and isinstance(beta, (int, np.integer)):
        rows = _kept_rows(x, mask)
        return jnp.asarray(np.sort(rows, axis=0)[beta:rows.shape[0] - beta].mean(axis=0, dtype=rows.dtype))
    return _trimmed_mean_xla(x, mask, beta)


class GeometricMedian(NamedTuple):
    """The smoothed-Weiszfeld estimate ``point``, the Weiszfeld steps taken, the
    objective ``Σ_i ‖x_i − point‖`` over the masked rows, and whether the relative
    objective change fell to ``tol`` (``False``: stopped by ``max_iter``)."""

    point: jax.Array
    iterations: jax.Array
    objective: jax.Array
    converged: jax.Array


@jax.jit
def geometric_median(x: jax.Array, mask: jax.Array, max_iter: int = 100, tol: float = 1e-6,
                     eps: float = 1e-6) -> GeometricMedian:
    """Geometric median of the masked rows by RFA's smoothed Weiszfeld iteration
    (Pillutla et al.): ``z ← Σ_i w_i x_i / Σ_i w_i`` with ``w_i = 1 / max(eps, ‖z − x_i‖)``,
    from the mean of the masked rows, until a step moves ``z`` by at most ``tol`` times
    the median distance ``median_i ‖x_i − z‖`` or ``max_iter`` steps are done.
    ``lax.while_loop``: jit-able, deterministic, not reverse-differentiable."""
    safe = jnp.where(mask[:, None], x, 0)

    def distances(z):
        return jnp.where(mask, jnp.linalg.norm(safe - z, axis=1), 0)

    def settled(moved, dist):
        # The step is compared with the median distance, a scale no single client can
        # inflate: the objective Σ‖x_i − z‖ of RFA's rule is dominated by one far client
        # (1e12× the others'), so a relative change of 1e-6 in it let the iteration stop
        # while z was still hundreds of honest norms away. Written so that a NaN reads
        # as "not settled".
        return moved <= tol * jnp.nanmedian(jnp.where(mask, dist, jnp.nan))

    def cond(state):
        i, _, dist, moved = state
        return (i < max_iter) & ~settled(moved, dist)

    def step(state):
        i, z, dist, _ = state
        w = jnp.where(mask, 1 / jnp.maximum(dist, eps), 0)
        new = jnp.sum(w[:, None] * safe, axis=0) / jnp.sum(w)
        return i + 1, new, distances(new), jnp.linalg.norm(new - z)

    z0 = kernels.coordinate_moments(x, mask)[0]
    init = (jnp.zeros((), jnp.int32), z0, distances(z0), jnp.asarray(jnp.inf, x.dtype))
    i, z, dist, moved = jax.lax.while_loop(cond, step, init)
    return GeometricMedian(z, i, jnp.sum(dist), settled(moved, dist))


@jax.jit
def _closest_to_median_mean_xla(x, mask, beta):
    med = _coordinate_median_xla(x, mask)
    safe = jnp.where(mask[:, None], x, 0)
    gap = jnp.where(mask[:, None], jnp.abs(safe - med), jnp.inf)
    order = jnp.argsort(gap, axis=0, stable=True)
    closest = jnp.take_along_axis(safe, order, axis=0)
    keep = jnp.arange(x.shape[0])[:, None] < beta
    return jnp.sum(jnp.where(keep, closest, 0), axis=0) / jnp.maximum(beta, 1).astype(x.dtype)


def closest_to_median_mean(x: jax.Array, mask: jax.Array, beta: jax.Array | int) -> jax.Array:
    """Bulyan's coordinate step: per coordinate, the mean of the ``beta`` masked values
    closest to the masked values' median (ties to the lower row index). NumPy on eager
    CPU calls, XLA when traced (see :func:`coordinate_median`)."""
    if _on_host(x, mask) and isinstance(beta, (int, np.integer)):
        rows = _kept_rows(x, mask)
        gap = np.abs(rows - np.median(rows, axis=0))
        order = np.argsort(gap, axis=0, kind="stable")[:beta]
        return jnp.asarray(np.take_along_axis(rows, order, axis=0).mean(axis=0, dtype=rows.dtype))
    return _closest_to_median_mean_xla(x, mask, beta)


class ClippedCenter(NamedTuple):
    """Centered clipping's result ``point`` and the radius ``tau`` it used."""

    point: jax.Array
    tau: jax.Array


def centered_clipping(x: jax.Array, mask: jax.Array, center: jax.Array | None = None,
                      tau: float | jax.Array | None = None, iterations: int = 1) -> ClippedCenter:
    """Centered clipping (Karimireddy, He, Jaggi 2021) over the masked rows:
    ``v ← v + (1/|mask|) Σ_i clip_τ(x_i − v)``, ``iterations`` times, with
    ``clip_τ(u) = u · min(1, τ/‖u‖)``. ``center`` (default: the coordinate-wise median)
    is the starting ``v``; ``tau`` (default: the median of ``‖x_i − v_0‖``) the radius."""
    if _on_host(x, mask):
        # Only the default center and radius need a sort: take them from the host median.
        if center is None:
            center = coordinate_median(x, mask)
        if tau is None:
            start = distance_to(x, jnp.asarray(mask, dtype=bool), jnp.asarray(center, x.dtype))
            tau = coordinate_median(start[:, None], mask)[0]
    return _centered_clipping(x, mask, center, tau, iterations=int(iterations))


def _cc_impl(x, mask, center, tau, iterations):
    safe = jnp.where(mask[:, None], x, 0)
    count = jnp.maximum(jnp.sum(mask), 1).astype(x.dtype)
    v = _coordinate_median_xla(x, mask) if center is None else jnp.asarray(center, x.dtype)
    if tau is None:
        start = jnp.linalg.norm(safe - v, axis=1)
        tau = _coordinate_median_xla(start[:, None], mask)[0]
    tau = jnp.asarray(tau, x.dtype)

    def step(_, v):
        diff = jnp.where(mask[:, None], safe - v, 0)
        norm = jnp.linalg.norm(diff, axis=1)
        scale = jnp.where(norm > tau, tau / jnp.where(norm > 0, norm, 1), 1)
        return v + jnp.sum(diff * scale[:, None], axis=0) / count

    return ClippedCenter(jax.lax.fori_loop(0, iterations, step, v), tau)


_centered_clipping = jax.jit(_cc_impl, static_argnames="iterations")


@jax.jit
def distance_to(x: jax.Array, valid: jax.Array, point: jax.Array) -> jax.Array:
    d = jnp.linalg.norm(jnp.where(valid[:, None], x, 0) - point, axis=1)
    return jnp.where(valid, d, jnp.inf)


def bulyan_order(sq_dists: np.ndarray, f: int, theta: int) -> tuple[np.ndarray, np.ndarray]:
    """Bulyan's selection (host NumPy): ``theta`` picks, each the client with the lowest
    Krum score (:func:`qkrum.kernels.krum_scores`) recomputed on the clients not yet
    picked, with ``max(|R| − f − 2, 1)`` neighbours; ties to the lowest index.

    ``sq_dists`` is the ``(n, n)`` squared-distance matrix of the clients to choose from.
    Returns the picked indices in pick order and the Krum scores of the first pick
    (zeros when ``n ≤ 2``: with one or two clients no Krum score separates them).
    """
    n = sq_dists.shape[0]
    remaining = np.arange(n)
    order = np.empty(theta, dtype=np.int64)
    first = np.zeros(n)
    for t in range(theta):
        r = remaining.size
        if r <= 2:
            pick = 0  # equal scores: one or two clients, one shared distance
        else:
            sub = sq_dists[np.ix_(remaining, remaining)]
            scores = np.asarray(kernels.krum_scores(sub, min(f, r - 3)), dtype=np.float64)
            if t == 0:
                first = scores
            pick = int(np.argmin(scores))
        order[t] = remaining[pick]
        remaining = np.delete(remaining, pick)
    return order, first
