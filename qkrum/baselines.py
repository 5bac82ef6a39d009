"""Classical robust aggregation baselines, registered as :func:`qkrum.select` methods.

They exist for the comparison tables: the same entry point, input validation, non-finite
handling and timings as MultiKrum and the QUBO methods, so a table row differs only in
``method=``. Every baseline works on the **full** client updates (``Round.full``); the
importance-weighted projection (``project=``) is not used by any of them (pass
``project=None`` to skip computing it).

Each method, with what it aggregates, which clients it reports as ``selected`` and its
per-client ``scores`` (lower = more trusted; ``inf`` for non-finite clients):

* ``mean``: the plain mean (FedAvg with equal weights; McMahan et al., AISTATS 2017).
  Selected: every finite client. Scores: ``‖x_i − aggregate‖``.
* ``median``: the coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, ICML 2018).
  Selected: every finite client. Scores: ``‖x_i − aggregate‖``.
* ``trimmed_mean``: the coordinate-wise trimmed mean (Yin et al. 2018): per coordinate,
  drop the ``beta`` largest and ``beta`` smallest values and average the rest.
  Selected: every finite client. Scores: ``‖x_i − aggregate‖``.
* ``geometric_median``: ``argmin_z Σ_i ‖x_i − z‖`` by the smoothed Weiszfeld algorithm
  of RFA (Pillutla, Kakade, Harchaoui, IEEE TSP 2022, arXiv:1912.13445).
  Selected: every finite client. Scores: ``‖x_i − aggregate‖``.
* ``krum``: the one client with the lowest Krum score (Eq. 2; Blanchard, El Mhamdi,
  Guerraoui, Stainer, NeurIPS 2017). Selected: that client. Scores: the Krum scores.
* ``bulyan``: Bulyan over Krum (El Mhamdi, Guerraoui, Rouault, ICML 2018): pick
  ``θ = n − 2f`` clients one at a time, each by Krum recomputed on the clients not yet
  picked, then per coordinate average the ``β = θ − 2f`` picked values closest to the
  picked values' median. Selected: the ``θ`` picked clients. Scores: the Krum scores of
  the first pick.
* ``centered_clipping``: ``v ← v + mean_i clip_τ(x_i − v)``, ``L`` times, with
  ``clip_τ(u) = u · min(1, τ/‖u‖)`` (Karimireddy, He, Jaggi, ICML 2021).
  Selected: every finite client. Scores: ``‖x_i − aggregate‖``.

``select(..., m=...)`` is ignored by every baseline: each decides how many clients
contribute. The aggregate is ``Selection.aggregate(updates)``; for all but ``mean`` and
``krum`` it is not the mean of the selected rows, so the :class:`qkrum.selection.MethodResult`
carries a ``combine(x, mask) -> (d,)``.

Options
-------
* ``trimmed_mean``: ``beta`` (values dropped at each end of every coordinate; default
  ``f``: Yin et al. need the trimmed fraction to be at least the Byzantine fraction,
  and ``f`` is the smallest such count). ``2·beta`` must be smaller than ``n``; when
  invalid clients leave ``n_v ≤ 2·beta`` valid ones, ``beta`` is lowered to
  ``(n_v − 1) // 2`` with a ``RuntimeWarning`` (each invalid client is itself Byzantine,
  as for Bulyan below), so an attacker's NaN cannot make the round fail.
* ``geometric_median``: ``max_iter`` (default 100), ``tol`` (default 1e-6: stop when a
  step moves the estimate by at most ``tol`` times the median distance of the clients to
  it; the RFA authors' code compares the change of the objective ``Σ‖x_i − z‖`` instead,
  which one far client dominates, see below), ``eps`` (default 1e-6: RFA's smoothing
  ``ν``, the weights are
  ``1 / max(ν, ‖z − x_i‖)``; an absolute distance, small against real updates).
* ``centered_clipping``: ``tau`` (clipping radius), ``iterations`` (``L``, default 1),
  ``center`` (the starting point ``v``).
* ``mean``, ``median``, ``krum``, ``bulyan``: none.

Choices the sources leave open (ours)
-------------------------------------
* Non-finite clients (NaN/±Inf, see :mod:`qkrum.kernels`) are left out of every
  statistic, as if they had not been sent: the median, trimmed mean, geometric median
  and clipping run on the finite clients only, and masked rows enter no arithmetic
  (``where``, never ``0 · NaN``). ``krum`` reuses the library's Krum scores
  (:meth:`qkrum.selection.Round.krum`): ``n − f − 2`` neighbours counted over all ``n``
  clients, the non-finite ones at infinite distance (MultiKrum's convention).
* Median of an even number of values: the mean of the two middle ones (NumPy's).
* Geometric median: Weiszfeld starts from the mean of the finite clients, as the RFA
  authors' code does (not from the coordinate-wise median: that is often a data point, where the weight
  ``1/ν`` pins the iteration). Deterministic; the equal client weights ``α_i = 1`` are
  RFA's with equal data sizes. The stopping rule bounds the last step against the median
  distance, a scale one client cannot inflate: with the objective's relative change (the
  RFA code's rule) a single client 1e12× the others' norm dominates the objective, the
  iteration stopped after 7 steps, still ~600 honest norms away, while a float64 Weiszfeld
  moves 0.06. The step is not the distance to the minimiser: near a minimiser that is a
  data point Weiszfeld slows down (``tol=0`` runs all ``max_iter``).
* Bulyan runs on the ``n_v`` finite clients: ``θ = n_v − 2f``, ``β = θ − 2f``; it needs
  ``n ≥ 4f + 3`` (an error otherwise). If non-finite clients leave ``n_v < 4f + 3``,
  Bulyan tolerates ``f_v = min(f, ⌊(n_v − 3)/4⌋)`` among the finite ones and warns:
  a client that sends NaN is itself Byzantine in Bulyan's model (honest clients send
  gradients), so ``f_v ≥ f − (n − n_v)`` and the bound ``n_v ≥ 4f_v + 3`` holds; an
  attacker's NaN cannot make the round fail. The recursive Krum uses ``|R| − f − 2``
  neighbours on the remaining set ``R``, at least 1 (for ``f = 1`` the last pick has
  ``|R| = 3`` and would have none; with one neighbour the closest pair of the three
  ties, so for ``f = 1`` that pick depends on the client order). Ties go to the lowest
  client index, in the Krum picks and among equally close values in the coordinate
  step.
* Centered clipping: ``iterations=1`` by default, the default of the authors' released
  code (their analysis allows any ``L ≥ 1``). ``select`` is stateless, so the default
  ``center`` is the coordinate-wise median of the finite clients instead of the
  authors' previous-round aggregate (momentum); pass that as ``center=`` (an ``(d,)``
  array or a pytree shaped like one client's update, e.g. the last
  ``Selection.aggregate``). The paper gives no ``τ`` usable without tuning; the default
  ``tau=None`` is the median over the finite clients of ``‖x_i − v_0‖``, so at least
  half of them are not clipped in the first iteration. ``τ`` is fixed across the ``L``
  iterations.

Under ``jax.jit``
-----------------
The statistics (:func:`coordinate_median`, :func:`trimmed_mean`,
:func:`geometric_median`, :func:`closest_to_median_mean`, :func:`centered_clipping`)
are pure JAX with fixed shapes and a boolean ``mask`` that may be traced. Each
registered baseline whose aggregate is not a plain mean carries

* ``fn.make_combine(f, **options) -> combine(x, mask)``: the statistic with the
  caller's ``f`` and options, validated once; and
* ``fn.combine``: the statistic with the default options, for callers that know neither
  ``f`` nor the options. ``bulyan`` needs no ``f`` there (``β = 2θ − n_v`` from the mask
  and the finite rows); ``trimmed_mean``'s default ``beta = f`` cannot be recovered from
  ``(x, mask)``, so its ``combine`` raises and points to ``make_combine``.

The sorts (median, trimmed mean, Bulyan's coordinate step) take a NumPy path on eager
CPU calls, as :mod:`qkrum.kernels` does for its selections (XLA's CPU sort along the
client axis is an order of magnitude slower); traced calls use XLA, with the same
values. Bulyan's recursive picks are a host computation (NumPy over the ``n × n``
distances, ``O(θ · n²)``), like every selection step.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import kernels
from qkrum._validation import check_int
from qkrum.selection import MethodResult, Round, register_method

__all__ = [
    "ClippedCenter",
    "GeometricMedian",
    "bulyan_order",
    "centered_clipping",
    "closest_to_median_mean",
    "coordinate_median",
    "geometric_median",
    "trimmed_mean",
]

Combine = Callable[[jax.Array, jax.Array], jax.Array]


# ---------------------------------------------------------------------------------------
# Statistics over an (n, d) matrix and an (n,) mask: traceable JAX (the mask may be a
# tracer), with a NumPy fast path for the sorts on eager CPU calls
# ---------------------------------------------------------------------------------------

def _on_host(x, mask) -> bool:
    # The kernels' rule: eager calls on concrete CPU arrays take the NumPy path, traced
    # calls (jit, vmap) and accelerators the XLA one.
    return (kernels._is_cpu_concrete(x) and kernels._is_cpu_concrete(mask)
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
            start = _distance_to(x, jnp.asarray(mask, dtype=bool), jnp.asarray(center, x.dtype))
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
def _distance_to(x: jax.Array, valid: jax.Array, point: jax.Array) -> jax.Array:
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


def _bulyan_default_combine(x: jax.Array, mask: jax.Array) -> jax.Array:
    # θ = n_v − 2 f_v and β = θ − 2 f_v give β = 2θ − n_v: no f needed. Validity in
    # float32, as select() (default dtype) decided it on the host.
    theta = jnp.sum(mask)
    n_valid = jnp.sum(kernels.valid_clients(x.astype(jnp.float32)))
    return closest_to_median_mean(x, mask, jnp.clip(2 * theta - n_valid, 1, theta))


# ---------------------------------------------------------------------------------------
# Option checks
# ---------------------------------------------------------------------------------------

def _check_options(method: str, options: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    if not allowed:
        raise TypeError(f"method {method!r} takes no options, got {unknown}")
    raise TypeError(f"method {method!r} got unknown option(s) {unknown}; valid options: {', '.join(allowed)}")


def _check_real(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        if not (hasattr(value, "dtype") and np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number)):
            raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    ok = value > 0 if positive else value >= 0
    if not (np.isfinite(value) and ok):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {name}={value}")
    return value


def _trimmed_beta(f: int, options: dict) -> int:
    _check_options("trimmed_mean", options, ("beta",))
    beta = options.get("beta")
    return f if beta is None else check_int("beta", beta, minimum=0)


_GM_DEFAULTS = {"max_iter": 100, "tol": 1e-6, "eps": 1e-6}


def _gm_options(options: dict) -> dict:
    _check_options("geometric_median", options, tuple(_GM_DEFAULTS))
    opts = {**_GM_DEFAULTS, **options}
    return {"max_iter": check_int("max_iter", opts["max_iter"], minimum=1),
            "tol": _check_real("tol", opts["tol"], positive=False),
            "eps": _check_real("eps", opts["eps"], positive=True)}


def _flat_center(center: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(center)
    if not leaves:
        raise ValueError(f"center must be an array or a pytree of arrays, got {center!r}")
    try:
        flat = jnp.concatenate([jnp.ravel(jnp.asarray(leaf)) for leaf in leaves])
    except TypeError as exc:
        raise TypeError(f"center must hold real numbers: {exc}") from None
    if not jnp.issubdtype(flat.dtype, jnp.floating) and not jnp.issubdtype(flat.dtype, jnp.integer):
        raise TypeError(f"center must hold real numbers, got dtype {flat.dtype}")
    if not bool(jnp.all(jnp.isfinite(flat))):
        raise ValueError("center must be finite, got NaN or Inf in center")
    return flat


def _cc_options(options: dict) -> dict:
    _check_options("centered_clipping", options, ("tau", "iterations", "center"))
    tau = options.get("tau")
    center = options.get("center")
    return {"tau": None if tau is None else _check_real("tau", tau, positive=True),
            "iterations": check_int("iterations", options.get("iterations", 1), minimum=1),
            "center": None if center is None else _flat_center(center)}


def _check_center_width(center: jax.Array | None, d: int) -> None:
    if center is not None and center.shape != (d,):
        raise ValueError(f"center must have the size of one client's update, d={d} values once "
                         f"flattened, got {center.shape[0]} values")


# ---------------------------------------------------------------------------------------
# Combine factories (what qkrum.aggregator traces after its pure_callback)
# ---------------------------------------------------------------------------------------

def _median_make_combine(f: int, **options) -> Combine:
    _check_options("median", options, ())
    return coordinate_median


def _trimmed_make_combine(f: int, **options) -> Combine:
    beta = _trimmed_beta(check_int("f", f, minimum=0), options)
    return lambda x, mask: trimmed_mean(x, mask, beta)


def _trimmed_default_combine(x: jax.Array, mask: jax.Array) -> jax.Array:
    raise TypeError(
        "trimmed_mean's beta defaults to f, which combine(x, mask) does not receive; build the "
        "statistic with qkrum.selection.METHODS['trimmed_mean'].make_combine(f, **options)"
    )


def _gm_make_combine(f: int, **options) -> Combine:
    opts = _gm_options(options)
    return lambda x, mask: geometric_median(x, mask, **opts).point


def _bulyan_make_combine(f: int, **options) -> Combine:
    _check_options("bulyan", options, ())
    return _bulyan_default_combine


def _cc_make_combine(f: int, **options) -> Combine:
    opts = _cc_options(options)

    def combine(x, mask):
        _check_center_width(opts["center"], x.shape[1])
        return centered_clipping(x, mask, opts["center"], opts["tau"], opts["iterations"]).point

    return combine


# ---------------------------------------------------------------------------------------
# Registered methods
# ---------------------------------------------------------------------------------------

def _around(rnd: Round, point: jax.Array, info: dict, combine: Combine | None) -> MethodResult:
    """Every finite client contributes; scores are distances to the aggregate."""
    scores = rnd.timed("scores", lambda: _distance_to(rnd.full, rnd.valid, point))
    return MethodResult(rnd.valid, scores, info, combine)


@register_method("mean")
def _mean(rnd: Round, **options) -> MethodResult:
    """Plain mean of the finite clients (FedAvg with equal weights). No options.
    Scores: each client's distance to the mean."""
    _check_options("mean", options, ())
    point = rnd.timed("aggregate", lambda: kernels.coordinate_moments(rnd.full, rnd.valid)[0])
    return _around(rnd, point, {}, None)


@register_method("median")
def _median(rnd: Round, **options) -> MethodResult:
    """Coordinate-wise median of the finite clients (Yin et al. 2018). No options.
    Scores: each client's distance to the median."""
    combine = _median_make_combine(rnd.f, **options)
    point = rnd.timed("aggregate", lambda: combine(rnd.full, rnd.valid))
    return _around(rnd, point, {}, combine)


@register_method("trimmed_mean")
def _trimmed_mean(rnd: Round, **options) -> MethodResult:
    """Coordinate-wise trimmed mean of the finite clients (Yin et al. 2018): drop the
    ``beta`` (default ``f``) largest and smallest values per coordinate. Needs
    ``2·beta <`` the number of finite clients. Scores: distance to the aggregate."""
    beta = _trimmed_beta(rnd.f, options)
    n_valid = int(rnd.valid_np.sum())
    if 2 * beta >= rnd.n:
        source = "" if "beta" in options and options["beta"] is not None else f" (the default, f={rnd.f})"
        raise ValueError(f"trimmed_mean drops beta values at each end of every coordinate, so it needs "
                         f"2*beta < {rnd.n}, the number of clients; got beta={beta}{source}")
    if 2 * beta >= n_valid:
        # Like Bulyan: a client that sent an invalid update is itself one of the Byzantine,
        # so fewer values need trimming among the valid ones; an attacker's NaN must not
        # make the round fail.
        lowered = (n_valid - 1) // 2
        warnings.warn(f"trimmed_mean: only {n_valid} of n={rnd.n} client updates are valid, so beta={beta} "
                      f"would trim them all; trimming beta={lowered} (each invalid client is itself one of "
                      "the Byzantine)", RuntimeWarning, stacklevel=3)
        beta = lowered
        options = {**options, "beta": beta}
    combine = _trimmed_make_combine(rnd.f, **options)
    point = rnd.timed("aggregate", lambda: combine(rnd.full, rnd.valid))
    return _around(rnd, point, {"beta": beta, "kept": n_valid - 2 * beta}, combine)


@register_method("geometric_median")
def _geometric_median(rnd: Round, **options) -> MethodResult:
    """Geometric median of the finite clients by RFA's smoothed Weiszfeld (Pillutla et
    al.). Options ``max_iter`` (100), ``tol`` (1e-6), ``eps`` (1e-6); see the module
    docs. Info: Weiszfeld ``iterations``, ``objective``, ``converged``."""
    opts = _gm_options(options)
    gm = rnd.timed("aggregate", lambda: geometric_median(rnd.full, rnd.valid, **opts))
    info = {"iterations": int(gm.iterations), "objective": float(gm.objective),
            "converged": bool(gm.converged), **opts}
    return _around(rnd, gm.point, info, _gm_make_combine(rnd.f, **options))


@register_method("krum")
def _krum(rnd: Round, **options) -> MethodResult:
    """Krum (Blanchard et al. 2017): the single client with the lowest Krum score on the
    full updates (squared Euclidean, ``n − f − 2`` neighbours; ties to the lowest index).
    No options; ``m`` is ignored. Scores: the Krum scores."""
    _check_options("krum", options, ())
    scores = rnd.krum("euclidean_full")
    selected = rnd.timed("selection", lambda: kernels.multikrum_select(scores, 1, rnd.valid))
    return MethodResult(selected, scores, {"neighbours": rnd.n - rnd.f - 2})


@register_method("bulyan")
def _bulyan(rnd: Round, **options) -> MethodResult:
    """Bulyan over Krum (El Mhamdi et al. 2018) on the finite clients: ``θ = n_v − 2f``
    picks by Krum recomputed on the clients left, then per coordinate the mean of the
    ``β = θ − 2f`` picked values closest to their median. Needs ``n ≥ 4f + 3``. No
    options. Scores: Krum scores of the first pick. Info: ``theta``, ``beta``,
    ``f_effective`` (see the module docs) and ``order`` (client indices in pick order)."""
    _check_options("bulyan", options, ())
    n, f = rnd.n, rnd.f
    if n < 4 * f + 3:
        raise ValueError(f"bulyan needs n >= 4f + 3 clients, got n={n}, f={f} "
                         f"(4f + 3 = {4 * f + 3}); use fewer Byzantine clients f or more clients n")
    idx = np.flatnonzero(rnd.valid_np)
    n_valid = idx.size
    f_eff = f if n_valid >= 4 * f + 3 else max(min(f, (n_valid - 3) // 4), 0)
    if f_eff < f:
        warnings.warn(
            f"bulyan: only {n_valid} of n={n} client updates are valid, fewer than 4f + 3 = {4 * f + 3}; "
            f"tolerating f={f_eff} Byzantine clients among the finite ones (each non-finite client is "
            "itself one of the f)",
            RuntimeWarning,
            stacklevel=3,
        )
    theta = n_valid - 2 * f_eff
    beta = theta - 2 * f_eff
    sq = np.asarray(rnd.sq_euclidean(full=True))[np.ix_(idx, idx)]
    order, first = rnd.timed("selection", lambda: bulyan_order(sq, f_eff, theta))
    selected = np.zeros(n, dtype=bool)
    selected[idx[order]] = True
    scores = np.full(n, np.inf)
    scores[idx] = first

    def combine(x, mask):
        return closest_to_median_mean(x, mask, beta)

    info = {"theta": theta, "beta": beta, "f_effective": f_eff, "order": idx[order].tolist()}
    return MethodResult(jnp.asarray(selected), jnp.asarray(scores), info, combine)


@register_method("centered_clipping")
def _centered_clipping_method(rnd: Round, **options) -> MethodResult:
    """Centered clipping (Karimireddy, He, Jaggi 2021) over the finite clients. Options
    ``tau`` (default: median distance to the center), ``iterations`` (default 1),
    ``center`` (default: the coordinate-wise median; an ``(d,)`` array or a pytree like
    one update, e.g. the previous round's aggregate). Scores: distance to the result.
    Info: the ``tau`` used, ``iterations``, ``center`` ("median" or "given")."""
    opts = _cc_options(options)
    _check_center_width(opts["center"], rnd.full.shape[1])
    out = rnd.timed("aggregate", lambda: centered_clipping(rnd.full, rnd.valid, opts["center"], opts["tau"],
                                                           opts["iterations"]))
    info = {"tau": float(out.tau), "iterations": opts["iterations"],
            "center": "median" if opts["center"] is None else "given"}
    return _around(rnd, out.point, info, _cc_make_combine(rnd.f, **options))


_median.combine, _median.make_combine = coordinate_median, _median_make_combine
_trimmed_mean.combine, _trimmed_mean.make_combine = _trimmed_default_combine, _trimmed_make_combine
_geometric_median.combine = _gm_make_combine(0)
_geometric_median.make_combine = _gm_make_combine
_bulyan.combine, _bulyan.make_combine = _bulyan_default_combine, _bulyan_make_combine
_centered_clipping_method.combine = _cc_make_combine(0)
_centered_clipping_method.make_combine = _cc_make_combine
