"""The classical robust-aggregation rules: mean, median, trimmed mean, geometric median,
Krum, Bulyan, centered clipping.

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
Each rule's aggregate is ``rule.combine(f) -> combine(x, mask)``, the statistic of
:mod:`qkrum.rules.statistics` with the rule's options and the caller's ``f`` (for
``trimmed_mean``'s default ``beta = f``), traceable with a traced ``mask``; that is what
:func:`qkrum.aggregator` traces after its host selection. ``bulyan``'s combine needs no
``f`` (``β = 2θ − n_v`` from the mask and the finite rows). Bulyan's recursive picks are
a host computation (NumPy over the ``n × n`` distances, ``O(θ · n²)``), like every
selection step.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import kernels
from qkrum._validation import check_int, check_real
from qkrum.rules.base import Combine, MethodResult, Rule, factory_of
from qkrum.rules.round import Round
from qkrum.rules import statistics as stats

__all__ = ["bulyan", "centered_clipping", "geometric_median", "krum", "mean", "median", "trimmed_mean"]


def _bulyan_combine(x: jax.Array, mask: jax.Array) -> jax.Array:
    # θ = n_v − 2 f_v and β = θ − 2 f_v give β = 2θ − n_v: no f needed. Validity in
    # float32, as select() (default dtype) decided it on the host.
    theta = jnp.sum(mask)
    n_valid = jnp.sum(kernels.valid_clients(x.astype(jnp.float32)))
    return stats.closest_to_median_mean(x, mask, jnp.clip(2 * theta - n_valid, 1, theta))



# ---------------------------------------------------------------------------------------
# Option checks (at construction)
# ---------------------------------------------------------------------------------------

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


def _check_center_width(center: jax.Array | None, d: int) -> None:
    if center is not None and center.shape != (d,):
        raise ValueError(f"center must have the size of one client's update, d={d} values once "
                         f"flattened, got {center.shape[0]} values")


def _around(rnd: Round, point: jax.Array, info: dict, combine: Combine | None = None) -> MethodResult:
    """Every valid client contributes; scores are distances to the aggregate."""
    scores = rnd.timed("scores", lambda: stats.distance_to(rnd.full, rnd.valid, point))
    return MethodResult(rnd.valid, scores, info, combine)


def _classical(name: str, run, statistic=None) -> Rule:
    # The classical statistics work on the full updates: select()'s projection is unused.
    return Rule(name, (), run=run, statistic=statistic, uses_projection=False)


# ---------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------

def _run_mean(rnd: Round) -> MethodResult:
    point = rnd.timed("aggregate", lambda: kernels.coordinate_moments(rnd.full, rnd.valid)[0])
    return _around(rnd, point, {})


@factory_of("mean")
def mean() -> Rule:
    """Plain mean of the valid clients (FedAvg with equal weights; McMahan et al. 2017).
    No options. Selected: every valid client. Scores: distance to the mean."""
    return _classical("mean", _run_mean)


def _run_median(rnd: Round) -> MethodResult:
    point = rnd.timed("aggregate", lambda: stats.coordinate_median(rnd.full, rnd.valid))
    return _around(rnd, point, {})


@factory_of("median")
def median() -> Rule:
    """Coordinate-wise median of the valid clients (Yin et al. 2018). No options.
    Scores: each client's distance to the median."""
    return _classical("median", _run_median, lambda f: stats.coordinate_median)


def _run_trimmed_mean(rnd: Round, *, beta: int | None) -> MethodResult:
    given = beta is not None
    beta = rnd.f if beta is None else beta
    n_valid = int(rnd.valid_np.sum())
    if 2 * beta >= rnd.n:
        source = "" if given else f" (the default, f={rnd.f})"
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
    combine = functools.partial(stats.trimmed_mean, beta=beta)
    point = rnd.timed("aggregate", lambda: combine(rnd.full, rnd.valid))
    return _around(rnd, point, {"beta": beta, "kept": n_valid - 2 * beta}, combine)


@factory_of("trimmed_mean")
def trimmed_mean(*, beta: int | None = None) -> Rule:
    """Coordinate-wise trimmed mean of the valid clients (Yin et al. 2018): drop the
    ``beta`` (default ``f``) largest and smallest values per coordinate. Needs
    ``2·beta <`` the number of clients. Scores: distance to the aggregate."""
    beta = None if beta is None else check_int("beta", beta, minimum=0)
    run = functools.partial(_run_trimmed_mean, beta=beta)
    return _classical("trimmed_mean", run,
                      lambda f: functools.partial(stats.trimmed_mean, beta=check_int("f", f, minimum=0)
                                                  if beta is None else beta))


def _run_geometric_median(rnd: Round, **opts) -> MethodResult:
    gm = rnd.timed("aggregate", lambda: stats.geometric_median(rnd.full, rnd.valid, **opts))
    info = {"iterations": int(gm.iterations), "objective": float(gm.objective),
            "converged": bool(gm.converged), **opts}
    return _around(rnd, gm.point, info)


@factory_of("geometric_median")
def geometric_median(*, max_iter: int = 100, tol: float = 1e-6, eps: float = 1e-6) -> Rule:
    """Geometric median of the valid clients by RFA's smoothed Weiszfeld (Pillutla et al.).
    ``max_iter >= 1``; ``tol >= 0`` (stop when a step moves the estimate by at most
    ``tol`` times the median distance to it); ``eps > 0`` (RFA's smoothing ``ν``).
    Info: Weiszfeld ``iterations``, ``objective``, ``converged``."""
    opts = {"max_iter": check_int("max_iter", max_iter, minimum=1), "tol": check_real("tol", tol, low=0.0),
            "eps": check_real("eps", eps, low=0.0, low_open=True)}
    return _classical("geometric_median", functools.partial(_run_geometric_median, **opts),
                      lambda f: lambda x, mask: stats.geometric_median(x, mask, **opts).point)


def _run_krum(rnd: Round) -> MethodResult:
    scores = rnd.krum("euclidean_full")
    selected = rnd.timed("selection", lambda: kernels.multikrum_select(scores, 1, rnd.valid))
    return MethodResult(selected, scores, {"neighbours": rnd.n - rnd.f - 2})


@factory_of("krum")
def krum() -> Rule:
    """Krum (Blanchard et al. 2017): the single client with the lowest Krum score on the
    full updates (squared Euclidean, ``n − f − 2`` neighbours; ties to the lowest index).
    No options; ``m`` is ignored. Scores: the Krum scores."""
    return Rule("krum", (), run=_run_krum, uses_projection=False)


def _run_bulyan(rnd: Round) -> MethodResult:
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
    order, first = rnd.timed("selection", lambda: stats.bulyan_order(sq, f_eff, theta))
    selected = np.zeros(n, dtype=bool)
    selected[idx[order]] = True
    scores = np.full(n, np.inf)
    scores[idx] = first
    combine = functools.partial(stats.closest_to_median_mean, beta=beta)
    info = {"theta": theta, "beta": beta, "f_effective": f_eff, "order": idx[order].tolist()}
    return MethodResult(jnp.asarray(selected), jnp.asarray(scores), info, combine)


@factory_of("bulyan")
def bulyan() -> Rule:
    """Bulyan over Krum (El Mhamdi et al. 2018) on the valid clients: ``θ = n_v − 2f``
    picks by Krum recomputed on the clients left, then per coordinate the mean of the
    ``β = θ − 2f`` picked values closest to their median. Needs ``n ≥ 4f + 3``. No
    options. Scores: Krum scores of the first pick. Info: ``theta``, ``beta``,
    ``f_effective`` (see the module docs) and ``order`` (client indices in pick order)."""
    return _classical("bulyan", _run_bulyan, lambda f: _bulyan_combine)


def _run_centered_clipping(rnd: Round, *, tau, iterations, center) -> MethodResult:
    _check_center_width(center, rnd.full.shape[1])
    out = rnd.timed("aggregate", lambda: stats.centered_clipping(rnd.full, rnd.valid, center, tau, iterations))
    info = {"tau": float(out.tau), "iterations": iterations, "center": "median" if center is None else "given"}
    return _around(rnd, out.point, info)


@factory_of("centered_clipping")
def centered_clipping(*, tau: float | None = None, iterations: int = 1, center: Any = None) -> Rule:
    """Centered clipping (Karimireddy, He, Jaggi 2021) over the valid clients. ``tau > 0``
    (default: the median distance to the center), ``iterations >= 1`` (default 1),
    ``center`` (default: the coordinate-wise median; an ``(d,)`` array or a pytree like
    one update, e.g. the previous round's aggregate). Scores: distance to the result.
    Info: the ``tau`` used, ``iterations``, ``center`` ("median" or "given")."""
    opts = {"tau": None if tau is None else check_real("tau", tau, low=0.0, low_open=True),
            "iterations": check_int("iterations", iterations, minimum=1),
            "center": None if center is None else _flat_center(center)}

    def statistic(f: int) -> Combine:
        def combine(x, mask):
            _check_center_width(opts["center"], x.shape[1])
            return stats.centered_clipping(x, mask, opts["center"], opts["tau"], opts["iterations"]).point

        return combine

    return _classical("centered_clipping", functools.partial(_run_centered_clipping, **opts), statistic)
