"""Statistical surrogates of a cluster's phase readout, for model-sized updates.

Simulating the circuit of :mod:`qkrum.cqsa.ghz` once per coordinate of a model is far too
costly, and unnecessary: whatever the noise, the circuit's only output is the pair of
expectations ``<X> + i<Y> = V e^{i Phi}`` (the readout visibility ``V`` is
:func:`qkrum.cqsa.noise.readout_visibility_closed_form`; the tests check it against the
exact simulator), and the only randomness is the ``S`` shots per basis. So the estimate
``Phi_hat`` of a cluster sum can be drawn directly, for every coordinate and every
cluster at once, as a vectorised JAX computation. [design: all of this module]

Three models (``model=``):

``"readout"`` (default)
    The shot averages as Gaussians with the binomial moments,
    ``x ~ N(V cos Phi, (1 - V^2 cos^2 Phi)/S)``, ``y ~ N(V sin Phi, (1 - V^2 sin^2 Phi)/S)``
    (independent), then ``Phi_hat = atan2(y, x)``. The only approximation is the normal
    one to the binomial counts; the angle's non-linearity, its bias, the wrap-around near
    ``+-pi`` and the uniform angle at ``V -> 0`` (global QSA with many clients) all come
    out right. Two normal draws per coordinate.
``"phase"``
    The design notes' additive model ``Phi_hat = wrap(Phi + eps)``, with ``eps`` Gaussian.
    The notes give ``Var(eps) ~ 1/(S V^2)``; the delta method gives the exact first
    moments, which we use: mean ``-sin(4 Phi)/(4S)`` and variance
    ``(1 - V^2 sin^2(2 Phi)/2) / (S V^2)``. The notes' value is the largest variance, at
    ``Phi`` a multiple of ``pi/2``; at ``Phi = pi/4`` and ``V = 1`` the true variance is
    half of it. Valid while ``S V^2`` is large (the tests use ``S V^2 >= 50``); at
    ``V = 0`` the angle is uniform.
``"binomial"``
    The exact shot statistics: binomial counts as in
    :func:`qkrum.cqsa.ghz.sample_readout`. Equal in distribution to the exact circuit, but
    ``jax.random.binomial`` is about 100x slower than a normal draw on CPU (about 1 s per
    million coordinates), so it is meant for checks, not for training runs.

``shots=None`` is an ideal readout: ``Phi_hat = Phi`` exactly (no wrapping, so a sum that
sits exactly on ``+-pi`` decodes to itself), or ``0`` when ``V = 0``, which is what the
exact circuit gives at ``lam = 1``.

Calibration. :func:`exact_phase_errors` draws ``Phi_hat - Phi`` from the exact simulator
(``vmap``-ed circuit for a batch of random phase vectors, then binomial shots from each
one's exact expectations); :func:`surrogate_phase_errors` draws them from a surrogate for
the same phase vectors. ``tests/test_cqsa_surrogate.py`` compares the two at
``k = 2..5``, several ``lam`` and ``S``: means, variances and a two-sample KS test.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._validation import check_int, check_probability
from qkrum.cqsa.angles import wrap_angle
from qkrum.cqsa.ghz import sample_readout_unchecked, readout_expectations, sample_readout
from qkrum.cqsa.noise import check_noise_mode, readout_visibility_closed_form

__all__ = [
    "SURROGATES",
    "estimate_phase",
    "exact_phase_errors",
    "phase_error_moments",
    "random_cluster_phases",
    "surrogate_phase_errors",
    "wrap_angle",
]

#: The readout models of :func:`estimate_phase`; the first is the default.
SURROGATES = ("readout", "phase", "binomial")


def check_surrogate(model: Any) -> str:
    if model not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got surrogate={model!r}")
    return model


def check_shots(shots: Any) -> int | None:
    """``None`` (ideal readout) or an integer ``>= 1``."""
    return None if shots is None else check_int("shots", shots, minimum=1)


def phase_error_moments(phi: Any, visibility: Any, shots: int) -> tuple[jax.Array, jax.Array]:
    """Delta-method mean and variance of ``atan2(y, x) - Phi`` for ``S = shots``.

    ``Var = (1 - V^2 sin^2(2 Phi)/2) / (S V^2)``, ``mean = -sin(4 Phi)/(4 S)`` (the second
    order term; the two bases' variances differ unless ``Phi`` is a multiple of
    ``pi/4``). ``V = 0`` gives an infinite variance.
    """
    shots = check_int("shots", shots, minimum=1)
    return _moments(jnp.asarray(phi), jnp.asarray(visibility), shots)


def _moments(phi, v, shots):
    v2 = jnp.square(v)
    var = (1.0 - 0.5 * v2 * jnp.square(jnp.sin(2.0 * phi))) / (shots * v2)
    mean = -jnp.sin(4.0 * phi) / (4.0 * shots) * jnp.ones_like(v)
    return mean, var


@partial(jax.jit, static_argnames=("ideal", "model"))
def _estimate(key, phi, v, shots, ideal, model):
    """``shots`` is traced (one compilation for every shot count); ``ideal`` means no shots."""
    if ideal:
        return jnp.where(v > 0, phi, jnp.zeros_like(phi))
    shots = jnp.asarray(shots, phi.dtype)
    if model == "binomial":
        x, y = sample_readout_unchecked(key, v * jnp.exp(1j * phi), shots)
        return jnp.arctan2(y, x).astype(phi.dtype)
    if model == "readout":
        c, s = v * jnp.cos(phi), v * jnp.sin(phi)
        zx, zy = jax.random.normal(key, (2,) + phi.shape, phi.dtype)
        x = c + jnp.sqrt(jnp.maximum(1.0 - jnp.square(c), 0.0) / shots) * zx
        y = s + jnp.sqrt(jnp.maximum(1.0 - jnp.square(s), 0.0) / shots) * zy
        return jnp.arctan2(y, x)
    # "phase": additive Gaussian with the delta-method moments; uniform where V = 0.
    k_eps, k_unif = jax.random.split(key)
    v_safe = jnp.where(v > 0, v, 1.0)
    mean, var = _moments(phi, v_safe, shots)
    eps = mean + jnp.sqrt(var) * jax.random.normal(k_eps, phi.shape, phi.dtype)
    uniform = jax.random.uniform(k_unif, phi.shape, phi.dtype, -jnp.pi, jnp.pi)
    return jnp.where(v > 0, wrap_angle(jnp.asarray(phi + eps)), uniform)


def estimate_phase_unchecked(key, phi, v, shots, model):
    """:func:`estimate_phase` for callers that validated ``shots`` and ``model``."""
    return _estimate(key, phi, v, 1.0 if shots is None else float(shots), shots is None, model)


def estimate_phase(key: jax.Array, phi: Any, visibility: Any, shots: Any, *, model: str = "readout") -> jax.Array:
    """Draw the readout ``Phi_hat`` of true phases ``phi`` (any shape, e.g. clusters x
    coordinates) with visibility ``visibility`` (broadcastable to ``phi``, in [0, 1]) and
    ``shots`` shots per basis (``None``: ideal readout). Pure and jit-compiled; the same
    key gives the same draw."""
    model = check_surrogate(model)
    shots = check_shots(shots)
    phi = jnp.asarray(phi)
    if not jnp.issubdtype(phi.dtype, jnp.floating):
        raise TypeError(f"phi must be a floating array, got dtype {phi.dtype}")
    v = jnp.broadcast_to(jnp.asarray(visibility, phi.dtype), phi.shape)
    return estimate_phase_unchecked(key, phi, v, shots, model)


# ---------------------------------------------------------------------------------------
# Calibration against the exact simulator
# ---------------------------------------------------------------------------------------

def random_cluster_phases(k: Any, num: Any, *, seed: Any = 0) -> np.ndarray:
    """``(num, k)`` member phases as the encoder produces them from updates spread over
    the whole clipping range: each ``phi_j = alpha Delta_j`` with ``Delta_j`` uniform in
    ``[-B, B]`` and ``alpha = pi/(k B)``, i.e. uniform in ``[-pi/k, pi/k]``, so the sums
    cover ``[-pi, pi]``."""
    k = check_int("k", k, minimum=1)
    num = check_int("num", num, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    return np.random.default_rng(seed).uniform(-math.pi / k, math.pi / k, size=(num, k))


def _draws_per_vector(draws: Any) -> int:
    return check_int("draws", draws, minimum=1)


def exact_phase_errors(phases: Any, *, lam: Any, shots: Any, draws: Any = 1, noise: str = "state",
                       seed: Any = 0) -> np.ndarray:
    """``Phi_hat - Phi`` (wrapped to ``[-pi, pi]``) from the exact simulator.

    ``phases`` is ``(b, k)``; each phase vector's circuit runs once (a ``vmap``-ed batch),
    then ``draws`` independent shot records of ``shots`` shots per basis are drawn from
    its exact expectations. Returns ``(b, draws)``.
    """
    phases = np.asarray(phases, np.float64)
    shots = check_int("shots", shots, minimum=1)
    draws = _draws_per_vector(draws)
    seed = check_int("seed", seed, minimum=0)
    z = readout_expectations(phases, lam=lam, noise=noise)
    zz = jnp.broadcast_to(jnp.asarray(z)[:, None], (z.shape[0], draws))
    x, y = sample_readout(jax.random.key(seed), zz, shots)
    truth = phases.sum(axis=1)[:, None]
    return wrap_angle(np.arctan2(np.asarray(y, np.float64), np.asarray(x, np.float64)) - truth)


def surrogate_phase_errors(phases: Any, *, lam: Any, shots: Any, draws: Any = 1, noise: str = "state",
                           model: str = "readout", seed: Any = 0) -> np.ndarray:
    """``Phi_hat - Phi`` (wrapped) from a surrogate, with the closed-form readout
    visibility of a cluster of ``k = phases.shape[1]`` members; ``(b, draws)``."""
    phases = np.asarray(phases, np.float64)
    lam = check_probability("lam", lam)
    noise = check_noise_mode(noise)
    draws = _draws_per_vector(draws)
    seed = check_int("seed", seed, minimum=0)
    v = readout_visibility_closed_form(phases.shape[1], lam, noise=noise)
    truth = np.broadcast_to(phases.sum(axis=1)[:, None], (phases.shape[0], draws))
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    est = estimate_phase(jax.random.key(seed), jnp.asarray(truth, dtype), v, shots, model=model)
    return wrap_angle(np.asarray(est, np.float64) - truth)
