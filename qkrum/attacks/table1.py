"""The gradient-space Byzantine attacks of the paper's Table I (section V).

Every attack is an omniscient adversary: it sees the honest updates of the round,
``honest`` of shape ``(n_h, d)``, and crafts ``f`` Byzantine updates of shape ``(f, d)``.
``mu`` and ``sigma`` are the coordinate-wise mean and *population* standard deviation
(``ddof=0``) of all honest rows given; with a single honest row ``sigma`` is 0. Non-finite
honest values are the caller's problem: they propagate into ``mu`` and ``sigma`` unchanged.

Signature of every attack::

    attack(key, honest, f, **params) -> jax.Array  # shape (f, d), dtype of honest

or, by registry name, :func:`qkrum.attacks.apply`. The paper's thirteenth attack, Label
Flip, poisons training data rather than gradients and is not here.

=============  =====================================================  ===========================
name           Byzantine update G~ (per Byzantine client unless        defaults
               stated otherwise)                                       (P = paper, O = our choice)
=============  =====================================================  ===========================
gaussian       N(0, std^2 I)                                           std=1.0 (O)
sign_flip      -scale * mu, identical rows                             scale=1.0 (P: -mu)
scaling        factor * mu + N(0, noise_std^2 I)                       factor=10.0 (O),
                                                                       noise_std=0.1 (P)
targeted       mu_j + z sigma_j w.p. fraction per coordinate, else     z=5.0 (P), fraction=0.1 (P)
               mu_j
clustered      mu + 2 beta sigma + N(0, (spread sigma)^2) per coord    beta=None -> f (O reading),
                                                                       spread=0.1 (O)
same_value     mu + z sigma, identical rows                            z=3.0 (P)
lie            mu - z_max sigma, identical rows                        z_max=None -> Baruch et al.
                                                                       (O); the paper sweeps
                                                                       LIE_Z_MAX_VALUES (P)
blatant_lie    mu + s z sigma + N(0, eta^2 I), s = +-1 fair coin,      z_range=(1.75, 3.25) (P),
               z ~ U(z_range), eta ~ U(eta_range) * mean(sigma)        eta_range=(0.1, 0.4) (P)
alie           w.p. fraction per coordinate: mu_j + s_j z_j sigma_j,   fraction=0.2 (P),
               z_j ~ U(z_range), s_j = -1 w.p. negative_prob else +1;  z_range=(3, 8) (P),
               else mu_j                                               negative_prob=0.7 (P)
sparse_lie     mu_j - z_j sigma_j on the top-fraction coordinates by   fraction=0.05 (P),
               honest variance, z_j ~ U(z_range); else mu_j            z_range=(5, 15) (P)
shuffle        random permutation of the coordinates of a uniformly   (none)
               chosen honest row
stealthy       mu + N(0, noise_std^2 I)                                noise_std=0.05 (P)
=============  =====================================================  ===========================

Choices made where the paper is silent:

* ``gaussian``: the paper's alpha has no value; ``std=1.0`` is an absolute scale, not
  relative to the honest updates.
* ``scaling``: the paper's alpha has no value; ``factor=10.0``.
* ``clustered``: the table's note "beta Byzantine clients" is read as beta = f, so the
  offset is ``2 f sigma`` and grows with the number of attackers. A jitter of
  ``spread * sigma`` per coordinate makes the Byzantine updates a tight cluster instead of
  one repeated point; ``spread=0`` gives identical rows.
* ``lie`` with ``z_max=None`` uses Baruch et al. (2019), "A little is enough", with
  ``n = n_h + f``: ``s = floor(n/2 + 1) - f`` and ``z_max = Phi^-1((n - s) / n)``.
  When the attackers already hold a majority, ``s <= 0`` and the formula gives +inf; we
  clip ``s`` to at least 1 (the attacker still "needs" one supporter), i.e.
  ``(n - s)/n <= (n - 1)/n``, which keeps ``z_max`` finite. For ``f >= 1`` the formula
  never falls below ``(n - s)/n = 1/2``, so no lower clip is needed.
* ``sparse_lie`` attacks ``max(1, round(fraction * d))`` coordinates (nearest integer,
  at least one, so even ``fraction=0`` changes the single highest-variance coordinate);
  variance ties go to the lower index.
* ``targeted`` and ``alie`` draw their coordinate masks independently per Byzantine
  client, so different Byzantine clients change different coordinates.

Randomness: Byzantine client ``i`` draws from ``jax.random.fold_in(key, i)``, so each
client has its own stream and the first rows do not change when ``f`` grows. Rows that
the table defines as identical (``sign_flip``, ``same_value``, ``lie``) ignore ``key``.
The same key always gives the same output.

Keys may be typed (``jax.random.key(seed)``) or legacy ``jax.random.PRNGKey(seed)``
``uint32`` arrays; the same seed gives the same output either way.

Everything is traceable: ``f`` and the (Python-number) parameters are static, so
``jax.jit(lambda k, h: apply("alie", k, h, 3))`` works; the attack kernels themselves are
jitted with ``f`` static. Parameters are validated on the host, so they must be concrete
numbers, not tracers; their values are passed to the kernels as arguments, so changing
them does not recompile.

Output dtype: that of ``honest`` when all its leaves share one floating dtype (float64
only when JAX runs with x64 enabled; otherwise float32, as in ``as_client_matrix``),
float32 for mixed-dtype pytrees.
"""

from __future__ import annotations

import math
import numbers
import statistics
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._validation import as_client_matrix, as_key, check_int, check_probability
from qkrum.kernels import coordinate_moments

__all__ = [
    "LIE_Z_MAX_VALUES",
    "alie",
    "baruch_z_max",
    "blatant_lie",
    "clustered",
    "gaussian",
    "lie",
    "same_value",
    "scaling",
    "shuffle",
    "sign_flip",
    "sparse_lie",
    "stealthy",
    "targeted",
]

#: The z_max values the paper sweeps for the Lie attack (Table I).
LIE_Z_MAX_VALUES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)


# --------------------------------------------------------------------------- validation

def _check_key(key: Any) -> jax.Array:
    """Return ``key`` as a typed scalar PRNG key, accepting legacy uint32 keys too."""
    return as_key(key, "key")


def _honest_matrix(honest: Any) -> jax.Array:
    """``as_client_matrix`` that keeps the caller's float dtype rather than forcing float32."""
    dtypes = set()
    for leaf in jax.tree_util.tree_leaves(honest):
        dt = getattr(leaf, "dtype", None)
        dtypes.add(np.dtype(dt) if dt is not None else None)
        shape = getattr(leaf, "shape", None)
        # Checked here because reshaping a 0-row leaf to (0, -1) fails inside
        # as_client_matrix with an unhelpful ZeroDivisionError.
        if shape is not None and len(shape) >= 1 and shape[0] == 0:
            raise ValueError(
                f"honest must contain at least one honest client, got shape {tuple(shape)}"
            )
    dtype = None
    if len(dtypes) == 1:
        (dt,) = dtypes
        # float64 without x64 is left to as_client_matrix, which computes in float32 as
        # documented there, instead of raising about a dtype the caller never asked for.
        if dt is not None and np.issubdtype(dt, np.floating) and (
            dt != np.float64 or jax.config.jax_enable_x64
        ):
            dtype = dt
    return as_client_matrix(honest, dtype=dtype, name="honest")


def _check_real(name: str, value: Any, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if not (hasattr(value, "dtype") and np.ndim(value) == 0
                and np.issubdtype(np.asarray(value).dtype, np.number)):
            raise TypeError(f"{name} must be a real number, got {name}={value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")
    return value


def _check_range(name: str, value: Any, *, minimum: float | None = None) -> tuple[float, float]:
    try:
        low, high = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair of numbers, got {name}={value!r}") from None
    low = _check_real(f"{name}[0]", low, minimum=minimum)
    high = _check_real(f"{name}[1]", high, minimum=minimum)
    if low > high:
        raise ValueError(f"{name} must be ordered as (low, high) with low <= high, got {name}={value!r}")
    return low, high


def _prepare(key: Any, honest: Any, f: Any) -> tuple[jax.Array, jax.Array, int]:
    return _check_key(key), _honest_matrix(honest), check_int("f", f, minimum=0)


def _empty(x: jax.Array) -> jax.Array:
    return jnp.zeros((0, x.shape[1]), dtype=x.dtype)


# --------------------------------------------------------------------------- kernels

def _moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Every honest row counts, finite or not: the documented "caller's problem" contract.
    mean, var = coordinate_moments(x, jnp.ones(x.shape[0], bool))
    return mean, jnp.sqrt(var)


def _client_keys(key: jax.Array, f: int) -> jax.Array:
    # fold_in(key, i) rather than split(key, f): client i's stream must not depend on f.
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(f, dtype=jnp.uint32))


def _per_client(key: jax.Array, f: int, one: Callable[[jax.Array], jax.Array]) -> jax.Array:
    return jax.vmap(one)(_client_keys(key, f))


def _identical(row: jax.Array, f: int) -> jax.Array:
    return jnp.broadcast_to(row, (f, row.shape[0]))


@partial(jax.jit, static_argnames=("f",))
def _gaussian(key, x, f, std):
    d = x.shape[1]
    return _per_client(key, f, lambda k: std * jax.random.normal(k, (d,), x.dtype)).astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _sign_flip(x, f, scale):
    mu, _ = _moments(x)
    return _identical(-scale * mu, f).astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _scaling(key, x, f, factor, noise_std):
    mu, _ = _moments(x)
    d = x.shape[1]
    out = _per_client(key, f, lambda k: factor * mu + noise_std * jax.random.normal(k, (d,), x.dtype))
    return out.astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _targeted(key, x, f, z, fraction):
    mu, sigma = _moments(x)
    d = x.shape[1]
    shifted = mu + z * sigma

    def one(k):
        # jnp.where, not mu + mask * shift, so untouched coordinates are exactly mu.
        return jnp.where(jax.random.bernoulli(k, fraction, (d,)), shifted, mu)

    return _per_client(key, f, one).astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _clustered(key, x, f, beta, spread):
    mu, sigma = _moments(x)
    d = x.shape[1]
    centre = mu + 2.0 * beta * sigma
    out = _per_client(key, f, lambda k: centre + spread * sigma * jax.random.normal(k, (d,), x.dtype))
    return out.astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _shifted_identical(x, f, z):
    mu, sigma = _moments(x)
    return _identical(mu + z * sigma, f).astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _blatant_lie(key, x, f, z_low, z_high, eta_low, eta_high):
    mu, sigma = _moments(x)
    d = x.shape[1]
    mean_sigma = jnp.mean(sigma)

    def one(k):
        k_sign, k_z, k_eta, k_noise = jax.random.split(k, 4)
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5), 1.0, -1.0).astype(x.dtype)
        z = jax.random.uniform(k_z, (), x.dtype, z_low, z_high)
        eta = jax.random.uniform(k_eta, (), x.dtype, eta_low, eta_high) * mean_sigma
        return mu + sign * z * sigma + eta * jax.random.normal(k_noise, (d,), x.dtype)

    return _per_client(key, f, one).astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _alie(key, x, f, fraction, z_low, z_high, negative_prob):
    mu, sigma = _moments(x)
    d = x.shape[1]

    def one(k):
        k_mask, k_z, k_sign = jax.random.split(k, 3)
        mask = jax.random.bernoulli(k_mask, fraction, (d,))
        z = jax.random.uniform(k_z, (d,), x.dtype, z_low, z_high)
        sign = jnp.where(jax.random.bernoulli(k_sign, negative_prob, (d,)), -1.0, 1.0).astype(x.dtype)
        return jnp.where(mask, mu + sign * z * sigma, mu)

    return _per_client(key, f, one).astype(x.dtype)


@partial(jax.jit, static_argnames=("f", "k_top"))
def _sparse_lie(key, x, f, k_top, z_low, z_high):
    mu, sigma = _moments(x)
    # top_k documents that ties go to the lower index, which is the order we promise.
    _, idx = jax.lax.top_k(sigma * sigma, k_top)
    mu_top, sigma_top = mu[idx], sigma[idx]

    def one(k):
        z = jax.random.uniform(k, (k_top,), x.dtype, z_low, z_high)
        return mu.at[idx].set(mu_top - z * sigma_top)

    return _per_client(key, f, one).astype(x.dtype)


@partial(jax.jit, static_argnames=("f",))
def _shuffle(key, x, f):
    n_h = x.shape[0]

    def one(k):
        k_row, k_perm = jax.random.split(k)
        row = x[jax.random.randint(k_row, (), 0, n_h)]
        return jax.random.permutation(k_perm, row)

    return _per_client(key, f, one).astype(x.dtype)


# --------------------------------------------------------------------------- public attacks

def gaussian(key: Any, honest: Any, f: int, *, std: float = 1.0) -> jax.Array:
    """``N(0, std^2 I)`` per Byzantine client; ``std`` is absolute (the paper gives no alpha)."""
    key, x, f = _prepare(key, honest, f)
    std = _check_real("std", std, minimum=0.0)
    return _empty(x) if f == 0 else _gaussian(key, x, f, std)


def sign_flip(key: Any, honest: Any, f: int, *, scale: float = 1.0) -> jax.Array:
    """``-scale * mu`` for every Byzantine client (``key`` is checked but unused)."""
    key, x, f = _prepare(key, honest, f)
    scale = _check_real("scale", scale)
    return _empty(x) if f == 0 else _sign_flip(x, f, scale)


def scaling(key: Any, honest: Any, f: int, *, factor: float = 10.0, noise_std: float = 0.1) -> jax.Array:
    """``factor * mu + N(0, noise_std^2 I)``; ``factor=10`` is our choice (the paper gives no alpha)."""
    key, x, f = _prepare(key, honest, f)
    factor = _check_real("factor", factor)
    noise_std = _check_real("noise_std", noise_std, minimum=0.0)
    return _empty(x) if f == 0 else _scaling(key, x, f, factor, noise_std)


def targeted(key: Any, honest: Any, f: int, *, z: float = 5.0, fraction: float = 0.1) -> jax.Array:
    """``mu_j + z sigma_j`` on a random ``fraction`` of coordinates (drawn per client), else ``mu_j``."""
    key, x, f = _prepare(key, honest, f)
    z = _check_real("z", z)
    fraction = check_probability("fraction", fraction)
    return _empty(x) if f == 0 else _targeted(key, x, f, z, fraction)


def clustered(key: Any, honest: Any, f: int, *, beta: float | None = None, spread: float = 0.1) -> jax.Array:
    """``mu + 2 beta sigma`` plus per-client jitter ``N(0, (spread sigma)^2)``; ``beta=None`` means f."""
    key, x, f = _prepare(key, honest, f)
    beta = float(f) if beta is None else _check_real("beta", beta)
    spread = _check_real("spread", spread, minimum=0.0)
    return _empty(x) if f == 0 else _clustered(key, x, f, beta, spread)


def same_value(key: Any, honest: Any, f: int, *, z: float = 3.0) -> jax.Array:
    """``mu + z sigma`` for every Byzantine client (``key`` is checked but unused)."""
    key, x, f = _prepare(key, honest, f)
    z = _check_real("z", z)
    return _empty(x) if f == 0 else _shifted_identical(x, f, z)


def baruch_z_max(n: int, f: int) -> float:
    """Baruch et al.'s ``z_max = Phi^-1((n - s)/n)``, ``s = floor(n/2 + 1) - f``, with ``s`` clipped to >= 1.

    ``n`` is the total number of clients (honest plus Byzantine). The clip keeps the value
    finite when the attackers hold a majority (see the module docstring).
    """
    n = check_int("n", n, minimum=2)
    f = check_int("f", f, minimum=0, maximum=n - 1)
    s = max(n // 2 + 1 - f, 1)
    return statistics.NormalDist().inv_cdf((n - s) / n)


def lie(key: Any, honest: Any, f: int, *, z_max: float | None = None) -> jax.Array:
    """``mu - z_max sigma`` for every Byzantine client; ``z_max=None`` uses :func:`baruch_z_max`."""
    key, x, f = _prepare(key, honest, f)
    if f == 0:
        return _empty(x)
    z_max = baruch_z_max(x.shape[0] + f, f) if z_max is None else _check_real("z_max", z_max)
    return _shifted_identical(x, f, -z_max)


def blatant_lie(
    key: Any,
    honest: Any,
    f: int,
    *,
    z_range: tuple[float, float] = (1.75, 3.25),
    eta_range: tuple[float, float] = (0.1, 0.4),
) -> jax.Array:
    """``mu + s z sigma + N(0, eta^2 I)``, with ``s``, ``z`` and ``eta / mean(sigma)`` drawn per client."""
    key, x, f = _prepare(key, honest, f)
    z_low, z_high = _check_range("z_range", z_range)
    eta_low, eta_high = _check_range("eta_range", eta_range, minimum=0.0)
    return _empty(x) if f == 0 else _blatant_lie(key, x, f, z_low, z_high, eta_low, eta_high)


def alie(
    key: Any,
    honest: Any,
    f: int,
    *,
    fraction: float = 0.2,
    z_range: tuple[float, float] = (3.0, 8.0),
    negative_prob: float = 0.7,
) -> jax.Array:
    """Advanced LIE: a random ``fraction`` of coordinates moved by ``+-z_j sigma_j``, mostly negative."""
    key, x, f = _prepare(key, honest, f)
    fraction = check_probability("fraction", fraction)
    z_low, z_high = _check_range("z_range", z_range)
    negative_prob = check_probability("negative_prob", negative_prob)
    return _empty(x) if f == 0 else _alie(key, x, f, fraction, z_low, z_high, negative_prob)


def sparse_lie(
    key: Any,
    honest: Any,
    f: int,
    *,
    fraction: float = 0.05,
    z_range: tuple[float, float] = (5.0, 15.0),
) -> jax.Array:
    """``mu_j - z_j sigma_j`` on the ``max(1, round(fraction d))`` highest-variance coordinates."""
    key, x, f = _prepare(key, honest, f)
    fraction = check_probability("fraction", fraction)
    z_low, z_high = _check_range("z_range", z_range)
    d = x.shape[1]
    k_top = min(d, max(1, round(fraction * d)))
    return _empty(x) if f == 0 else _sparse_lie(key, x, f, k_top, z_low, z_high)


def shuffle(key: Any, honest: Any, f: int) -> jax.Array:
    """Each Byzantine client permutes the coordinates of its own uniformly chosen honest row."""
    key, x, f = _prepare(key, honest, f)
    return _empty(x) if f == 0 else _shuffle(key, x, f)


def stealthy(key: Any, honest: Any, f: int, *, noise_std: float = 0.05) -> jax.Array:
    """``mu + N(0, noise_std^2 I)`` per Byzantine client."""
    key, x, f = _prepare(key, honest, f)
    noise_std = _check_real("noise_std", noise_std, minimum=0.0)
    return _empty(x) if f == 0 else _scaling(key, x, f, 1.0, noise_std)
