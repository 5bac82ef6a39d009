"""``qkrum.select``: the one entry point that decides which client updates to trust.

A method is a function ``(x, f, m, valid, key, timings, **options) -> MethodResult``
registered by name; every method (MultiKrum, QUBO, and later cascade and MultiSignal)
shares the input validation, non-finite handling, projection and timing below.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import kernels
from qkrum._validation import (
    as_client_matrix,
    check_byzantine_count,
    check_int,
    check_krum_neighbours,
    check_num_selected,
)

__all__ = ["METHODS", "MethodResult", "Selection", "aggregate", "register_method", "select"]


class MethodResult(NamedTuple):
    """What a selection method returns to :func:`select`."""

    selected: jax.Array  # bool (n,)
    scores: jax.Array  # float (n,), lower = more trusted
    info: dict


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select` for one round.

    Attributes:
        selected: bool array ``(n,)``, True for the clients to aggregate.
        scores: float array ``(n,)``; the method's per-client score, lower = more trusted
            (for MultiKrum the Krum scores of Eq. 2; ``inf`` for non-finite updates).
        method: the method's registered name.
        info: details: ``n``, ``f``, ``m``, ``k`` (projection width or None), the indices
            of non-finite clients, and ``timings`` in seconds per stage plus ``total``.
    """

    selected: np.ndarray
    scores: np.ndarray
    method: str
    info: dict = field(default_factory=dict)

    @property
    def indices(self) -> np.ndarray:
        """Indices of the selected clients, ascending."""
        return np.flatnonzero(self.selected)

    @property
    def rejected(self) -> np.ndarray:
        """Indices of the rejected (flagged) clients, ascending."""
        return np.flatnonzero(~self.selected)

    def aggregate(self, updates: Any) -> Any:
        """Mean of the selected clients' updates, with the structure of ``updates``."""
        return aggregate(updates, self.selected)


def aggregate(updates: Any, selected: Any) -> Any:
    """Mean of the selected rows of every leaf of ``updates`` (Eq. 3 / Eq. 12).

    Unselected rows are excluded with ``where`` rather than multiplied by zero, so a NaN
    in a rejected update cannot leak into the mean. Raises if nothing is selected.
    """
    mask = jnp.asarray(selected, dtype=bool)
    if mask.ndim != 1:
        raise ValueError(f"selected must be a 1-D boolean mask, got shape {mask.shape}")
    count = int(jnp.sum(mask))
    if count == 0:
        raise ValueError("selected is empty: no client was selected, so there is nothing to aggregate")

    def leaf_mean(leaf):
        leaf = jnp.asarray(leaf)
        if leaf.shape[:1] != mask.shape:
            raise ValueError(
                f"updates has {leaf.shape[0] if leaf.ndim else 0} clients on a leaf but selected "
                f"has {mask.shape[0]}"
            )
        keep = mask.reshape((-1,) + (1,) * (leaf.ndim - 1))
        return jnp.sum(jnp.where(keep, leaf, 0), axis=0) / count

    return jax.tree_util.tree_map(leaf_mean, updates)


MethodFn = Callable[..., MethodResult]
METHODS: dict[str, MethodFn] = {}


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator adding a selection method to :data:`METHODS` under ``name``."""

    def decorator(fn: MethodFn) -> MethodFn:
        METHODS[name] = fn
        return fn

    return decorator


def _block(x):
    return jax.block_until_ready(x)


@register_method("multikrum")
def _multikrum(x, f, m, valid, key, timings, **options) -> MethodResult:
    """MultiKrum (Eqs. 2-3): squared Euclidean distances, ``n − f − 2`` neighbours."""
    if options:
        raise TypeError(f"method 'multikrum' takes no options, got {sorted(options)}")
    check_krum_neighbours(x.shape[0], f)
    t0 = time.perf_counter()
    sq = _block(kernels.pairwise_sq_euclidean(x))
    t1 = time.perf_counter()
    scores = _block(kernels.krum_scores(sq, f))
    t2 = time.perf_counter()
    selected = _block(kernels.multikrum_select(scores, m, valid))
    t3 = time.perf_counter()
    timings.update(distances=t1 - t0, scores=t2 - t1, selection=t3 - t2)
    return MethodResult(selected, scores, {})


_DISTANCES = ("cosine", "euclidean", "dual")


@register_method("qubo")
def _qubo(x, f, m, valid, key, timings, *, distance="cosine", alpha=0.5, objective="intra", lam=None,
          sampler=None, num_reads=1000, certify=None, sampler_params=None, **options) -> MethodResult:
    """QUBO selection (IV-B/C): the ``m`` mutually closest clients by a selection QUBO.

    Options: ``distance`` ("cosine", Eq. 5; "euclidean", normalised Eq. 7; "dual", Eq. 14
    with ``alpha``), ``objective`` ("intra" or "paper"), ``lam``, ``sampler``,
    ``num_reads``, ``certify``, ``sampler_params`` (see :func:`qkrum.qubo_selection.solve_selection`).
    Non-finite clients are left out of the QUBO. Scores are each client's distance sum
    to the selected clients (``inf`` for non-finite ones).
    """
    from qkrum.qubo_selection import solve_selection

    if options:
        raise TypeError(f"method 'qubo' got unknown option(s) {sorted(options)}; valid: distance, alpha, "
                        "objective, lam, sampler, num_reads, certify, sampler_params")
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got distance={distance!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got alpha={alpha}")
    t0 = time.perf_counter()
    if distance == "cosine":
        D = kernels.pairwise_cosine_distance(x)
    elif distance == "euclidean":
        D = kernels.normalized_euclidean(kernels.pairwise_euclidean(x))
    else:
        D = kernels.dual_distance(x, alpha=alpha)
    D = np.asarray(_block(D), dtype=np.float64)
    idx = np.flatnonzero(np.asarray(valid))
    D_valid = D[np.ix_(idx, idx)]
    timings["distances"] = time.perf_counter() - t0
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    solution = solve_selection(D_valid, min(m, idx.size), objective=objective, lam=lam, sampler=sampler,
                               seed=seed, num_reads=num_reads, certify=certify, sampler_params=sampler_params)
    timings.update(qubo_build=solution.timing["qubo_build"], solve=solution.timing["solve"],
                   repair=solution.timing["repair"], certify=solution.timing["certify"])
    selected = np.zeros(x.shape[0], dtype=bool)
    selected[idx[solution.selected]] = True
    scores = np.full(x.shape[0], np.inf)
    scores[idx] = D_valid[:, solution.selected].sum(axis=1)
    info = {"distance": distance, "objective": objective, "lam": lam, "sampler": solution.sampler,
            "qubo_energy": solution.qubo_energy, "objective_value": solution.objective,
            "repaired": solution.repaired, "certified": solution.certified, "exact_optimum": solution.optimum,
            "sampler_timing": solution.timing["sampler"]}
    return MethodResult(jnp.asarray(selected), jnp.asarray(scores), info)


def select(
    updates: Any,
    f: int,
    *,
    method: str = "multikrum",
    m: int | None = None,
    seed: int = 0,
    project: int | None = None,
    dtype: Any = None,
    **options: Any,
) -> Selection:
    """Choose which client updates to aggregate this round.

    Args:
        updates: ``(n, d)`` array, ``(n, ...)`` array, or pytree whose leaves share the
            leading client axis ``n`` (NumPy or JAX).
        f: the number of Byzantine clients to tolerate, ``0 <= f < n``.
        method: a name in :data:`METHODS`: ``"multikrum"`` (Eqs. 2–3) or ``"qubo"``
            (IV-C; options in ``qkrum.selection._qubo``'s docs).
        m: how many clients to select, ``1 <= m <= n``; default ``n − f``.
        seed: seed for methods with random choices (same seed, same selection).
        project: run the method on the ``project`` highest-variance coordinates
            (paper IV-A; the paper's experiments use 1000). ``None`` uses all coordinates.
        dtype: computation dtype, float32 by default (float64 needs ``jax_enable_x64``).
        **options: method-specific options.

    Clients whose update contains NaN/±Inf (or whose squared norm overflows) are never
    selected and never count as anyone's neighbour (see :mod:`qkrum.kernels`). If fewer
    than ``m`` valid clients remain, all valid ones are selected and a ``RuntimeWarning``
    says so; if none remains, ``ValueError``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method={method!r}; valid methods: {', '.join(sorted(METHODS))}")
    seed = check_int("seed", seed)
    t_start = time.perf_counter()
    x = as_client_matrix(updates, dtype=dtype)
    n = x.shape[0]
    f = check_byzantine_count(f, n)
    m = check_num_selected(m, n, f)
    if project is not None:
        project = check_int("project", project, minimum=1)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    valid = _block(kernels.valid_clients(x))
    valid_np = np.asarray(valid)
    n_valid = int(valid_np.sum())
    if n_valid == 0:
        raise ValueError(
            f"updates: all {n} client updates contain NaN or Inf (or overflow float32); "
            "there is nothing that can safely be aggregated"
        )
    if project is not None:
        x = _block(kernels.project_topk_variance(x, project, valid))
    timings["projection"] = time.perf_counter() - t0

    key = jax.random.key(seed)
    result = METHODS[method](x, f, m, valid, key, timings, **options)
    selected = np.asarray(result.selected, dtype=bool) & valid_np
    if n_valid < m:
        warnings.warn(
            f"only {n_valid} of n={n} client updates are finite but m={m} were to be "
            f"selected; selecting the {int(selected.sum())} finite ones",
            RuntimeWarning,
            stacklevel=2,
        )
    timings["total"] = time.perf_counter() - t_start
    info = {
        "n": n,
        "f": f,
        "m": m,
        "k": project,
        "nonfinite": np.flatnonzero(~valid_np).tolist(),
        "timings": timings,
        **result.info,
    }
    return Selection(
        selected=selected,
        scores=np.asarray(result.scores),
        method=method,
        info=info,
    )
