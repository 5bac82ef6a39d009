"""Attacks of the robust-FL literature beyond the paper's Table I, for a defence-agnostic
omniscient adversary (the same contract as :mod:`qkrum.attacks.table1`)::

    attack(key, honest, f, **params) -> jax.Array  # shape (f, d), dtype of honest

``mu`` and ``sigma`` are the coordinate-wise mean and population standard deviation of
the honest rows, as in Table I.

=========  ====================================================  ==============================
name       Byzantine update (identical rows)                      reference, defaults
=========  ====================================================  ==============================
ipm        ``-epsilon * mu``                                      Xie et al., UAI 2020
                                                                  ("inner product manipulation");
                                                                  ``epsilon=0.1``, their setting
                                                                  against Krum
min_max    ``mu + gamma p``, ``gamma`` the largest value with     Shejwalkar & Houmansadr,
           ``max_i ||m - x_i|| <= max_{i,j} ||x_i - x_j||``       NDSS 2021 (AGR-agnostic);
                                                                  ``direction="std"``
min_sum    ``mu + gamma p``, ``gamma`` the largest value with     the same paper;
           ``sum_i ||m - x_i||^2 <= max_i sum_j ||x_i - x_j||^2``  ``direction="std"``
mimic      a copy of one honest row, by default the one that      Karimireddy et al., ICLR 2022
           maximises heterogeneity (below)                        ("bucketing"); ``target=None``
=========  ====================================================  ==============================

``sign_flip_own`` (``-scale * G_i``, each Byzantine client negating its *own* honestly
trained update ``G_i``: the "reverse gradient" reading of sign flipping, unlike Table I's
identical ``-mu`` rows) needs those updates as ``own`` (``(f, d)``), which
:func:`qkrum.fl.simulate` passes; it is not defined without them.

Perturbation directions ``p`` of min-max / min-sum (the paper's three): ``"unit"``
``-mu / ||mu||``, ``"std"`` ``-sigma``, ``"sign"`` ``-sign(mu)``.

``gamma`` in closed form. The paper finds ``gamma`` by bisection; both feasible sets are
intervals ``[0, gamma*]`` (each constraint is a convex quadratic in ``gamma`` that holds
at 0, since ``mu`` lies in the honest rows' convex hull), so we compute ``gamma*``
exactly instead: with ``a_i = mu - x_i``, ``b_i = a_i . p``, ``P = ||p||^2``,

* min-max: ``gamma* = min_i (-b_i + sqrt(b_i^2 - P (||a_i||^2 - c^2))) / P``,
  ``c = max_{i,j} ||x_i - x_j||``;
* min-sum: ``gamma* = (-B + sqrt(B^2 - n_h P (A - c))) / (n_h P)``, ``A = sum_i ||a_i||^2``,
  ``B = sum_i b_i`` (0 up to rounding), ``c = max_i sum_j ||x_i - x_j||^2``.

This is the limit the bisection converges to (tested against one), computed in float64 on
the host. A zero direction (``sigma = 0``, ``mu = 0``) gives ``gamma = 0``: the rows are ``mu``.

``mimic`` with ``target=None``: the honest row with the largest ``|<z, x_i - mu>|``, ``z``
the top principal direction of the honest rows (the top eigenvector of their covariance;
computed from the ``n_h x n_h`` centred Gram matrix in float64). Karimireddy et al. follow
``z`` online over rounds; per round this is its value on the round's honest updates. An
integer ``target`` copies that honest row. Ties go to the lower index.

Randomness: none of these draws; ``key`` is checked and unused.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._validation import check_int
from qkrum.attacks.table1 import _check_real, _empty, _identical, _prepare, _sign_flip

__all__ = ["DIRECTIONS", "ipm", "mimic", "mimic_target", "min_max", "min_max_gamma", "min_sum",
           "min_sum_gamma", "perturbation", "sign_flip_own"]

#: min-max / min-sum perturbation directions (Shejwalkar & Houmansadr 2021).
DIRECTIONS = ("unit", "std", "sign")


def ipm(key: Any, honest: Any, f: int, *, epsilon: float = 0.1) -> jax.Array:
    """Inner-product manipulation: ``-epsilon * mu`` for every Byzantine client."""
    key, x, f = _prepare(key, honest, f)
    epsilon = _check_real("epsilon", epsilon, minimum=0.0)
    return _empty(x) if f == 0 else _sign_flip(x, f, epsilon)


def sign_flip_own(key: Any, honest: Any, f: int, *, scale: float = 1.0, own: Any = None) -> jax.Array:
    """``-scale * G_i``: each Byzantine client sends its own update ``own[i]`` negated."""
    key, x, f = _prepare(key, honest, f)
    scale = _check_real("scale", scale)
    if own is None:
        raise TypeError("sign_flip_own needs own=: the Byzantine clients' own updates, shape (f, d); "
                        "qkrum.fl.simulate passes them")
    rows = jnp.asarray(own, x.dtype)
    if rows.shape != (f, x.shape[1]):
        raise ValueError(f"own must have shape (f, d) = ({f}, {x.shape[1]}), got {tuple(rows.shape)}")
    return (-scale * rows).astype(x.dtype)


def _host(x: jax.Array) -> np.ndarray:
    return np.asarray(jax.device_get(x), np.float64)


def perturbation(honest: Any, direction: str = "std") -> np.ndarray:
    """The perturbation direction ``p`` (float64, shape ``(d,)``) of min-max / min-sum."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got direction={direction!r}")
    x = _host(honest)
    mu = x.mean(axis=0)
    if direction == "unit":
        norm = np.linalg.norm(mu)
        return -mu / norm if norm > 0 else np.zeros_like(mu)
    if direction == "std":
        return -x.std(axis=0)
    return -np.sign(mu)


def _gram_distances(x: np.ndarray) -> np.ndarray:
    # Squared distances in float64 on the host (not kernels.pairwise_sq_euclidean, float32):
    # gamma is the edge of a feasible set, and float32 rounding would move it.
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(d2, 0.0)
    return np.maximum(d2, 0.0)


def _largest_root(a: np.ndarray | float, b: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
    """The larger root of ``a g^2 + 2 b g + c = 0`` (``a > 0``, ``c <= 0``): the end of ``{g >= 0}``."""
    disc = np.maximum(np.square(b) - a * c, 0.0)
    return (-b + np.sqrt(disc)) / a


def _offsets(honest: Any, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray] | None:
    """``x``, ``a = mu - x``, ``P = ||p||^2`` and ``b = a . p`` (float64), or None for ``p = 0``."""
    x = _host(honest)
    p = np.asarray(p, np.float64)
    P = float(p @ p)
    if P == 0.0:
        return None
    a = x.mean(axis=0) - x
    return x, a, P, a @ p


def min_max_gamma(honest: Any, p: np.ndarray) -> float:
    """min-max's largest ``gamma`` for direction ``p`` (module docstring; float64)."""
    parts = _offsets(honest, p)
    if parts is None:
        return 0.0
    x, a, P, b = parts
    c2 = float(_gram_distances(x).max())
    roots = _largest_root(P, b, np.minimum(np.einsum("ij,ij->i", a, a) - c2, 0.0))
    return float(max(roots.min(), 0.0))


def min_sum_gamma(honest: Any, p: np.ndarray) -> float:
    """min-sum's largest ``gamma`` for direction ``p`` (module docstring; float64)."""
    parts = _offsets(honest, p)
    if parts is None:
        return 0.0
    x, a, P, b = parts
    c = float(_gram_distances(x).sum(axis=1).max())
    root = _largest_root(x.shape[0] * P, float(b.sum()), min(float(np.einsum("ij,ij->", a, a)) - c, 0.0))
    return float(max(root, 0.0))


def _optimised(honest: Any, f: int, key: Any, direction: str, gamma_of) -> jax.Array:
    key, x, f = _prepare(key, honest, f)
    if f == 0:
        return _empty(x)
    p = perturbation(x, direction)
    gamma = gamma_of(x, p)
    row = _host(x).mean(axis=0) + gamma * p
    return _identical(jnp.asarray(row, x.dtype), f)


def min_max(key: Any, honest: Any, f: int, *, direction: str = "std") -> jax.Array:
    """``mu + gamma p`` with the largest ``gamma`` keeping every distance to an honest
    update within the largest honest pairwise distance."""
    return _optimised(honest, f, key, direction, min_max_gamma)


def min_sum(key: Any, honest: Any, f: int, *, direction: str = "std") -> jax.Array:
    """``mu + gamma p`` with the largest ``gamma`` keeping the sum of squared distances to
    the honest updates within the largest honest one."""
    return _optimised(honest, f, key, direction, min_sum_gamma)


def mimic_target(honest: Any) -> int:
    """The honest row ``mimic`` copies by default: the largest ``|<z, x_i - mu>|`` for the
    top principal direction ``z`` (lowest index on ties)."""
    x = _host(honest)
    if x.shape[0] == 1:
        return 0
    centred = x - x.mean(axis=0)
    _, vectors = np.linalg.eigh(centred @ centred.T)
    # Projections onto z are sqrt(lambda_max) * u_i for the top Gram eigenvector u, so
    # |u_i| ranks the rows; rounding ties are resolved to the lower index.
    u = np.abs(vectors[:, -1])
    return int(np.flatnonzero(u >= u.max() * (1 - 1e-12))[0])


def mimic(key: Any, honest: Any, f: int, *, target: int | None = None) -> jax.Array:
    """Every Byzantine client sends a copy of honest row ``target`` (default
    :func:`mimic_target`): an update nothing can tell from an honest one, which
    over-weights one client's data in the aggregate."""
    key, x, f = _prepare(key, honest, f)
    if target is None:
        index = mimic_target(x)
    else:
        index = check_int("target", target, minimum=0, maximum=x.shape[0] - 1)
    return _empty(x) if f == 0 else _identical(x[index], f)
