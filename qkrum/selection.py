"""``qkrum.select``: the one entry point that decides which client updates to trust.

A method is a function ``(rnd: Round, **options) -> MethodResult`` registered by name;
every method (MultiKrum, QUBO, cascade, MultiSignal, the classical baselines) shares the
input validation, non-finite handling, projection, distance cache and timing below.
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
    check_probability,
)
from qkrum.ensemble import VoteWeights, agreement_vote, check_threshold, route, vote_categories
from qkrum.errors import SamplerError  # defined there so that qkrum.anneal raises the same class

__all__ = ["METHODS", "NORM_GUARD", "PAPER_PROJECTION", "PAPER_QUBO", "ByzantineMajorityWarning", "MethodResult", "Round",
           "SamplerError", "Selection", "aggregate", "combine_pytree", "register_method", "select"]


class MethodResult(NamedTuple):
    """What a selection method returns to :func:`select`."""

    selected: jax.Array  # bool (n,)
    scores: jax.Array  # float (n,), lower = more trusted
    info: dict
    # For aggregators that are not a mean of the selected rows (median, ...): maps the
    # (n, d) matrix and the selection mask to the (d,) aggregate.
    combine: Callable[[jax.Array, jax.Array], jax.Array] | None = None


class ByzantineMajorityWarning(UserWarning):
    """``n < 2f + 3``: the guarantees of Krum-type selection do not hold."""


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
    combine: Callable[[jax.Array, jax.Array], jax.Array] | None = field(default=None, repr=False)

    @property
    def indices(self) -> np.ndarray:
        """Indices of the selected clients, ascending."""
        return np.flatnonzero(self.selected)

    @property
    def rejected(self) -> np.ndarray:
        """Indices of the rejected (flagged) clients, ascending."""
        return np.flatnonzero(~self.selected)

    def aggregate(self, updates: Any) -> Any:
        """The method's aggregate of ``updates``, with their structure: the mean of the
        selected clients (Eq. 12), or the robust statistic of a classical baseline."""
        if self.combine is None:
            return aggregate(updates, self.selected)
        return combine_pytree(updates, self.selected, self.combine)


def aggregate(updates: Any, selected: Any) -> Any:
    """Mean of the selected rows of every leaf of ``updates`` (Eq. 3 / Eq. 12).

    Unselected rows are excluded with ``where`` rather than multiplied by zero, so a NaN
    in a rejected update cannot leak into the mean. Raises if nothing is selected.
    """
    mask = np.asarray(selected, dtype=bool)
    if mask.ndim != 1:
        raise ValueError(f"selected must be a 1-D boolean mask, got shape {mask.shape}")
    count = int(mask.sum())
    if count == 0:
        raise ValueError("selected is empty: no client was selected, so there is nothing to aggregate")

    def leaf_mean(leaf):
        if not isinstance(leaf, (np.ndarray, jax.Array)):
            leaf = np.asarray(leaf)
        if leaf.shape[:1] != mask.shape:
            raise ValueError(
                f"updates has {leaf.shape[0] if leaf.ndim else 0} clients on a leaf but selected "
                f"has {mask.shape[0]}"
            )
        # Summed in at least float32 (a float16 sum of a few thousands overflows), then
        # returned in the leaf's dtype; NumPy leaves are read in row blocks, never copied.
        flat = leaf.reshape(leaf.shape[0], -1) if leaf.ndim != 2 else leaf
        total = kernels.masked_row_sum(flat, mask)
        return jnp.reshape(total / count, leaf.shape[1:]).astype(leaf.dtype)

    return jax.tree_util.tree_map(leaf_mean, updates)


def combine_pytree(updates: Any, selected: Any, combine: Callable) -> Any:
    """Apply a whole-vector aggregator ``combine((n, d), mask) -> (d,)`` to a pytree of
    updates: the leaves are flattened into one matrix (as :func:`select` sees them) and
    the result is split back into the leaves' shapes."""
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    mask = jnp.asarray(selected, dtype=bool)
    # The statistic runs in at least float32 (float16 sums overflow), the result goes back
    # to each leaf's dtype.
    dtypes = [jax.dtypes.canonicalize_dtype(getattr(l, "dtype", None) or np.asarray(l).dtype) for l in leaves]
    compute = jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)
    x = as_client_matrix(updates, dtype=compute)
    flat = combine(x, mask)
    out, start = [], 0
    for leaf in leaves:
        shape = jnp.shape(leaf)[1:]
        size = int(np.prod(shape, dtype=np.int64))
        out.append(jnp.reshape(flat[start:start + size], shape).astype(dtypes[len(out)]))
        start += size
    return jax.tree_util.tree_unflatten(treedef, out)


MethodFn = Callable[..., MethodResult]
METHODS: dict[str, MethodFn] = {}

#: The paper's projection width k (VI-B, VI-C): the default of :func:`select`.
PAPER_PROJECTION = 1000


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator adding a selection method to :data:`METHODS` under ``name``.

    A method is ``fn(rnd: Round, **options) -> MethodResult``.
    """

    def decorator(fn: MethodFn) -> MethodFn:
        METHODS[name] = fn
        return fn

    return decorator


def _block(x):
    return jax.block_until_ready(x)


class Round:
    """One round's inputs, shared by the stages of a method, with each distance matrix
    computed at most once (the ensembles need several views of the same updates).

    Attributes: ``full`` (n, d) updates; ``x`` the projected updates (``full`` when no
    projection); ``valid`` (JAX bool) and ``valid_np``; ``f``, ``m``; ``key``;
    ``timings``, the per-stage seconds that :class:`Selection` reports.
    """

    def __init__(self, full, valid, f, m, key, timings, project: int | None = None):
        self.full, self.valid = full, valid
        self.valid_np = np.asarray(valid)
        self.f, self.m, self.key, self.timings = f, m, key, timings
        self.project = project if project is not None and project < full.shape[1] else None
        self._cache: dict[str, Any] = {}

    @property
    def n(self) -> int:
        return self.full.shape[0]

    @property
    def x(self):
        """The projected updates (IV-A), computed on first use: methods that work on the
        full updates only (the classical baselines) never pay for the projection."""
        if self.project is None:
            return self.full
        return self.cached("projected", "projection",
                           lambda: kernels.project_topk_variance(self.full, self.project, self.valid))

    def timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, blocking on its result, and add the seconds to ``timings[stage]``."""
        t0 = time.perf_counter()
        out = _block(fn())
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0
        return out

    def cached(self, name: str, stage: str, fn: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = self.timed(stage, fn)
        return self._cache[name]

    def gram(self, *, full: bool = False):
        """The Gram matrix of the projected (or full) updates: every distance derives from it."""
        if full or self.project is None:
            return self.cached("gram_full", "distances_full", lambda: kernels.gram(self.full))
        return self.cached("gram", "distances", lambda: kernels.gram(self.x))

    def sq_euclidean(self, *, full: bool = False):
        """Squared Euclidean distances on the projected (or, with ``full``, the full) updates."""
        name = "sq_euclid_full" if full or self.project is None else "sq_euclid"
        stage = "distances_full" if name == "sq_euclid_full" else "distances"
        g = self.gram(full=full)
        return self.cached(name, stage, lambda: kernels._sq_euclidean_from_gram(g, self.valid))

    def cosine(self):
        """Cosine distances (Eq. 5) on the projected updates."""
        g = self.gram()
        return self.cached("cosine", "distances", lambda: kernels._cosine_from_gram(g, 1e-8, self.valid))

    def euclidean_hat(self):
        """Euclidean distances normalised to [0, 1] (Eq. 7) on the projected updates."""
        sq = self.sq_euclidean()
        return self.cached("euclid_hat", "distances", lambda: kernels.normalized_euclidean(jnp.sqrt(sq)))

    def distance(self, kind: str, alpha: float = 0.5) -> np.ndarray:
        """The QUBO's distance matrix on the projected updates, as float64 NumPy."""
        if kind == "cosine":
            D = self.cosine()
        elif kind == "euclidean":
            D = self.euclidean_hat()
        else:
            # Eq. 14 from the two matrices already computed, not a third pass over x.
            e, c = self.euclidean_hat(), self.cosine()
            D = self.cached(f"dual{alpha}", "distances", lambda: kernels.dual_blend(e, c, alpha))
        return np.asarray(D, dtype=np.float64)

    def krum(self, metric: str):
        """Krum scores (Eq. 2) with ``n − f − 2`` neighbours under ``metric``:
        ``"euclidean_full"`` (full updates), ``"euclidean"`` or ``"cosine"`` (projected)."""
        check_krum_neighbours(self.n, self.f)
        D = {"euclidean_full": lambda: self.sq_euclidean(full=True), "euclidean": self.sq_euclidean,
             "cosine": self.cosine}[metric]()
        n_valid = int(self.valid_np.sum())
        if n_valid == 1:  # no neighbour to score against: the one valid client is the best
            return self.cached(f"krum_{metric}", "scores", lambda: jnp.where(self.valid, 0.0, jnp.inf))
        # With fewer than n − f − 1 valid clients every valid score would sum an infinite
        # distance, all would tie at +inf and the selection would follow the client index.
        # Count only the valid neighbours then: n − f_eff − 2 = n_valid − 1.
        f_eff = max(self.f, self.n - n_valid - 1)
        return self.cached(f"krum_{metric}", "scores", lambda: kernels.krum_scores(D, f_eff))

    def gap(self, scores) -> float:
        """Eq. 13's normalised gap at ``m`` (``inf`` when ``m`` reaches every client)."""
        if self.m >= self.n:
            return float("inf")
        return float(self.timed("scores", lambda: kernels.krum_gap(scores, self.m)))

    def multikrum(self, scores) -> np.ndarray:
        return np.asarray(self.timed("selection", lambda: kernels.multikrum_select(scores, self.m, self.valid)))

    def seed(self) -> int:
        return int(jax.random.randint(self.key, (), 0, 2**31 - 1))


@register_method("multikrum")
def _multikrum(rnd: Round, **options) -> MethodResult:
    """MultiKrum (Eqs. 2-3) as the paper runs it (VI-B): squared Euclidean distances on the
    projected updates, ``n − f − 2`` neighbours, the ``m`` lowest scores."""
    if options:
        raise TypeError(f"method 'multikrum' takes no options, got {sorted(options)}")
    scores = rnd.krum("euclidean")
    return MethodResult(rnd.multikrum(scores), scores, {})


_DISTANCES = ("cosine", "euclidean", "dual")
_QUBO_OPTIONS = ("objective", "lam", "sampler", "num_reads", "num_sweeps", "certify", "sampler_params")


def _check_alpha(alpha) -> float:
    return check_probability("alpha", alpha)


def _solve_qubo(rnd: Round, D: np.ndarray, *, suspicion: bool = False, percentile: float = 10.0,
                suspicion_weight: float = 10.0, objective: str = "intra", lam: Any = None, sampler: Any = None,
                num_reads: int = 1000, num_sweeps: int | None = None, certify: bool | None = None,
                sampler_params: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The QUBO stage shared by every QUBO-based method: solve on the valid clients only.

    Returns the selection mask, per-client scores (distance sums to the selection; ``inf``
    for invalid clients) and the info entries of :class:`Selection`.
    """
    from qkrum.qubo import suspicion_penalty
    from qkrum.qubo_selection import solve_selection

    idx = np.flatnonzero(rnd.valid_np)
    D_valid = D[np.ix_(idx, idx)]
    info: dict[str, Any] = {}
    P = None
    if suspicion:
        P, tau_s = suspicion_penalty(D_valid, percentile=percentile, weight=suspicion_weight)
        info["suspicion_threshold"] = tau_s
    m = min(rnd.m, idx.size)
    # Nothing to convert here: bad options are ValueError/TypeError, raised before any
    # sampler runs, and whatever a sampler raises (or answers that cannot be a solution)
    # already is a SamplerError naming the sampler (qkrum.anneal.solve_qubo).
    solution = solve_selection(D_valid, m, objective=objective, lam=lam, sampler=sampler, seed=rnd.seed(),
                               num_reads=num_reads, num_sweeps=num_sweeps, certify=certify,
                               sampler_params=sampler_params, pair_penalty=P)
    for stage in ("qubo_build", "solve", "repair", "certify"):
        rnd.timings[stage] = rnd.timings.get(stage, 0.0) + solution.timing[stage]
    selected = np.zeros(rnd.n, dtype=bool)
    selected[idx[solution.selected]] = True
    scores = np.full(rnd.n, np.inf)
    pairs = D_valid if P is None else D_valid + P
    scores[idx] = pairs[:, solution.selected].sum(axis=1)
    info.update(objective=objective, lam=lam, sampler=solution.sampler, qubo_energy=solution.qubo_energy,
                objective_value=solution.objective, repaired=solution.repaired, certified=solution.certified,
                exact_optimum=solution.optimum, sampler_timing=solution.timing["sampler"],
                implementation=solution.implementation)
    return selected, scores, info


@register_method("qubo")
def _qubo(rnd: Round, *, distance: str = "cosine", alpha: float = 0.5, suspicion: bool = False,
          percentile: float = 10.0, suspicion_weight: float = 10.0, **qubo_options) -> MethodResult:
    """QUBO selection (IV-B/C): the ``m`` mutually closest clients by a selection QUBO.

    Options: ``distance`` ("cosine", Eq. 5; "euclidean", normalised Eq. 7; "dual", Eq. 14
    with ``alpha``), ``suspicion`` (add Eq. 15's pair penalty with ``percentile`` and
    ``suspicion_weight``), and the solver options ``objective`` ("intra" or "paper"),
    ``lam``, ``sampler``, ``num_reads``, ``num_sweeps``, ``certify``, ``sampler_params``
    (:func:`qkrum.qubo_selection.solve_selection`). Non-finite clients are left out of the
    QUBO. Scores are each client's distance sum to the selected clients.
    """
    _check_qubo_options("qubo", qubo_options)
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got distance={distance!r}")
    alpha = _check_alpha(alpha)
    D = rnd.distance(distance, alpha)
    selected, scores, info = _solve_qubo(rnd, D, suspicion=suspicion, percentile=percentile,
                                         suspicion_weight=suspicion_weight, **qubo_options)
    return MethodResult(jnp.asarray(selected), jnp.asarray(scores), {"distance": distance, **info})


def _check_qubo_options(method: str, options: dict) -> None:
    unknown = sorted(set(options) - set(_QUBO_OPTIONS))
    if unknown:
        raise TypeError(f"method {method!r} got unknown option(s) {unknown}; see help(qkrum.select) "
                        f"for its options; the QUBO solver options are {', '.join(_QUBO_OPTIONS)}")


@register_method("cascade")
def _cascade(rnd: Round, *, tau: float = 0.2, alpha: float = 0.5, **qubo_options) -> MethodResult:
    """Cascaded Dual-QUBO (IV-D): Euclidean Krum gap Δ on the full updates above ``tau`` →
    MultiKrum on those scores; otherwise the dual-distance QUBO (Eq. 14, ``alpha``) on the
    projected updates. The paper gives no value for ``τ``; the default is MultiSignal's
    ``τ_E = 0.2``, the same gap on the same scores."""
    _check_qubo_options("cascade", qubo_options)
    tau = check_threshold("tau", tau)
    alpha = _check_alpha(alpha)
    scores_e = rnd.krum("euclidean_full")
    gap = rnd.gap(scores_e)
    classical = rnd.multikrum(scores_e)
    info: dict[str, Any] = {"gap_euclidean": gap, "tau": tau, "subsets": {"multikrum": np.flatnonzero(classical)}}
    if gap > tau:
        return MethodResult(jnp.asarray(classical), scores_e, {"route": "multikrum", **info})
    selected, scores, qinfo = _solve_qubo(rnd, rnd.distance("dual", alpha), **qubo_options)
    info["subsets"]["qubo"] = np.flatnonzero(selected)
    return MethodResult(jnp.asarray(selected), jnp.asarray(scores), {"route": "qubo", **info, **qinfo})


@register_method("multisignal")
def _multisignal(rnd: Round, *, tau_e: float = 0.2, tau_c: float = 0.5, alpha: float = 0.5,
                 percentile: float = 10.0, suspicion_weight: float = 10.0,
                 vote_weights: VoteWeights | tuple = VoteWeights(), paranoid: bool = False,
                 **qubo_options) -> MethodResult:
    """The MultiSignal ensemble (IV-E, Algorithm 1; decision rules in :mod:`qkrum.ensemble`).

    Stage 1, routing gate: ``Δ_E`` from Euclidean Krum scores on the full updates,
    ``Δ_C`` from cosine Krum scores on the projected updates (Eq. 13), thresholds
    ``tau_e``, ``tau_c``. Outlier/magnitude rounds select by Euclidean MultiKrum,
    clustered rounds by cosine MultiKrum. Stage 2 (evasion only): the suspicion-penalised
    QUBO (Eq. 15: dual distance with ``alpha``, ``percentile``, ``suspicion_weight``).
    Stage 3: agreement voting with ``vote_weights``.

    ``paranoid=True`` (paper VIII-C, for mixed attack populations that can confuse the
    gate): the QUBO runs in every regime and the selection is the intersection of
    MultiKrum's and the QUBO's, i.e. every client either rejects is flagged. The result
    then has at most ``m`` clients, usually fewer.
    """
    _check_qubo_options("multisignal", qubo_options)
    tau_e = check_threshold("tau_e", tau_e)
    tau_c = check_threshold("tau_c", tau_c)
    alpha = _check_alpha(alpha)
    weights = VoteWeights(*vote_weights)
    scores_e = rnd.krum("euclidean_full")
    scores_c = rnd.krum("cosine")
    gap_e, gap_c = rnd.gap(scores_e), rnd.gap(scores_c)
    regime = route(gap_e, gap_c, tau_e, tau_c)
    classical = rnd.multikrum(scores_e)
    subsets: dict[str, np.ndarray] = {"multikrum": np.flatnonzero(classical)}
    info: dict[str, Any] = {"regime": regime, "gap_euclidean": gap_e, "gap_cosine": gap_c,
                            "tau_e": tau_e, "tau_c": tau_c, "paranoid": paranoid, "subsets": subsets}
    if regime in ("outlier", "magnitude") and not paranoid:
        return MethodResult(jnp.asarray(classical), scores_e, info)
    if regime == "clustered" and not paranoid:
        selected = rnd.multikrum(scores_c)
        subsets["multikrum_cosine"] = np.flatnonzero(selected)
        return MethodResult(jnp.asarray(selected), scores_c, info)
    qubo, _, qinfo = _solve_qubo(rnd, rnd.distance("dual", alpha), suspicion=True, percentile=percentile,
                                 suspicion_weight=suspicion_weight, **qubo_options)
    subsets["qubo"] = np.flatnonzero(qubo)
    info.update(qinfo)
    if paranoid:
        selected = classical & qubo
        return MethodResult(jnp.asarray(selected), scores_e, info)
    t0 = time.perf_counter()
    selected = agreement_vote(classical, qubo, np.asarray(scores_c), rnd.m, rnd.valid_np, weights)
    categories = vote_categories(classical, qubo)
    rnd.timings["vote"] = time.perf_counter() - t0
    info.update(vote_weights=weights._asdict(),
                vote_counts={name: int(np.sum((categories == i) & rnd.valid_np)) for i, name in
                             enumerate(("agreed_accept", "qubo_only", "classical_only", "agreed_reject"))})
    return MethodResult(jnp.asarray(selected), scores_c, info)


#: The paper's QUBO as published: Eq. 8 (the cut) with ``λ = 10 · max D`` (Eqs. 10–11),
#: solved as a penalised QUBO. See :mod:`qkrum.qubo` for why it is not the default.
PAPER_QUBO = {"objective": "paper", "lam": "paper"}


def _register_paper_preset(name: str, base: str) -> None:
    def method(rnd: Round, **options) -> MethodResult:
        return METHODS[base](rnd, **{**PAPER_QUBO, **options})

    method.__name__ = name.replace("-", "_")
    method.__doc__ = (f"``{base!r}`` with the paper's QUBO as published ({PAPER_QUBO}); the paper-"
                      f"reproduction path. Options as for ``{base!r}``.\n\n" + (METHODS[base].__doc__ or ""))
    register_method(name)(method)


for _base in ("qubo", "cascade", "multisignal"):
    _register_paper_preset(f"{_base}-paper", _base)


#: The default magnitude guard of :func:`select`: a client whose update norm exceeds this
#: many times the median norm of the valid clients is never selected. Far above the norm
#: spread of honest clients and of the paper's attacks (scaling ×10, Gaussian noise a few
#: hundred times an update's norm), which stay the methods' to detect; it stops the
#: clients that no distance-based rule should ever have to weigh (1e9× and beyond).
NORM_GUARD = 1000.0

#: Methods whose ``norm_guard="auto"`` is off: plain FedAvg is the unprotected reference.
_UNGUARDED = frozenset({"mean"})


def _check_norm_guard(norm_guard: Any, method: str) -> float | None:
    if isinstance(norm_guard, str):
        if norm_guard != "auto":
            raise ValueError(f"norm_guard must be a number > 1, None or 'auto', got norm_guard={norm_guard!r}")
        return None if method in _UNGUARDED else NORM_GUARD
    if norm_guard is None:
        return None
    if isinstance(norm_guard, bool) or not isinstance(norm_guard, (int, float, np.integer, np.floating)):
        raise TypeError(f"norm_guard must be a number > 1, None or 'auto', got {norm_guard!r}")
    value = float(norm_guard)
    if not (value > 1):  # also False for NaN; +inf is allowed and means "off"
        raise ValueError(f"norm_guard must be > 1 (a ratio to the median norm), got norm_guard={norm_guard}")
    return value


def select(
    updates: Any,
    f: int,
    *,
    method: str = "multikrum",
    m: int | None = None,
    seed: int = 0,
    project: int | None = PAPER_PROJECTION,
    dtype: Any = None,
    norm_guard: float | None | str = "auto",
    **options: Any,
) -> Selection:
    """Choose which client updates to aggregate this round.

    Args:
        updates: ``(n, d)`` array, ``(n, ...)`` array, or pytree whose leaves share the
            leading client axis ``n`` (NumPy or JAX).
        f: the number of Byzantine clients to tolerate, ``0 <= f < n``. With ``n < 2f + 3``
            a :class:`ByzantineMajorityWarning` says which guarantee is lost.
        method: a name in :data:`METHODS`: ``"multikrum"`` (Eqs. 2–3), ``"qubo"`` (IV-C),
            ``"cascade"`` (IV-D), ``"multisignal"`` (IV-E), the same three with the
            paper's QUBO as published (``"qubo-paper"``, ``"cascade-paper"``,
            ``"multisignal-paper"``: :data:`PAPER_QUBO`), or a classical baseline
            (``"mean"``, ``"median"``, ``"trimmed_mean"``, ``"geometric_median"``,
            ``"krum"``, ``"bulyan"``, ``"centered_clipping"``). Each method's options are
            in its docstring: ``help(qkrum.selection.METHODS["multisignal"])``.
        m: how many clients to select, ``1 <= m <= n``; default ``n − f``.
        seed: seed for methods with random choices (same seed, same selection).
        project: width ``k`` of the importance-weighted projection (paper IV-A): the
            ``k`` highest-variance coordinates; default 1000, the paper's. ``None`` uses
            all coordinates. Stages the paper runs on full updates (the Euclidean gap of
            the ensembles) ignore it.
        dtype: computation dtype, float32 (default) or float64 (needs
            ``jax_enable_x64``). Inputs of any float dtype (float16, bfloat16) are
            converted; sums and means are never accumulated in less than float32.
        norm_guard: the magnitude guard (see below): a ratio ``> 1``, ``None`` (off), or
            ``"auto"`` (default): :data:`NORM_GUARD` for every method but ``"mean"``,
            which stays plain FedAvg, the unprotected reference.
        **options: method-specific options.

    Clients whose update contains NaN/±Inf, or whose squared norm exceeds
    ``finfo.max / (4n)`` so that distances to them could overflow
    (:func:`qkrum.kernels.representable_bound`), are *invalid* (``info["nonfinite"]``).
    Clients whose norm exceeds ``norm_guard`` times the median norm of the valid clients
    are *outsized* (``info["outsized"]``). Neither is ever selected, aggregated, counted
    as anyone's neighbour or passed to a QUBO, so one client's norm cannot dominate the
    aggregate: a client that passes the guard moves a mean of ``m`` selected updates by
    at most ``norm_guard / m`` median norms. If fewer than ``m`` valid clients remain,
    all valid ones are selected (whatever their position) and a ``RuntimeWarning`` says
    so; if none remains, ``ValueError``. A QUBO sampler that raises (or answers with
    something that is not a solution) gives :class:`SamplerError`: no selection is returned
    rather than a guessed one. A sampler answer with ``|S| ≠ m`` is repaired by distance
    sums with a :class:`qkrum.errors.CardinalityRepairWarning` (``info["repaired"]`` counts
    the clients added or dropped); ``info["implementation"]`` says whether qkrum's annealer
    ran natively or in Python (``None`` for other samplers).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method={method!r}; valid methods: {', '.join(sorted(METHODS))}")
    seed = check_int("seed", seed)
    guard = _check_norm_guard(norm_guard, method)
    if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        # float16/bfloat16 are fine as inputs (converted), not for the arithmetic: their
        # sums of squares overflow near 256, their means' sums near 65,504.
        raise TypeError(f"dtype must be float32 or float64, got dtype={np.dtype(dtype)}")
    t_start = time.perf_counter()
    x = as_client_matrix(updates, dtype=dtype, host=True)
    n = x.shape[0]
    f = check_byzantine_count(f, n)
    m = check_num_selected(m, n, f)
    if project is not None:
        project = check_int("project", project, minimum=1)
    if n < 2 * f + 3 and f > 0:
        warnings.warn(
            f"f={f} Byzantine clients out of n={n}: robust selection needs n >= 2f + 3 (here "
            f"{2 * f + 3}). Krum's and Bulyan's resilience guarantees no longer hold"
            + (", and with f >= n/2 the attackers can be a majority that no agreement-based rule "
               "can tell from the honest clients" if 2 * f >= n else "")
            + "; the selection is computed but is not guaranteed to exclude them",
            ByzantineMajorityWarning,
            stacklevel=2,
        )

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sq_norms = kernels.row_sq_norms(x)
    representable = kernels._representable(sq_norms, n)
    outsized = (kernels.outsized_clients(sq_norms, representable, guard) if guard is not None
                else jnp.zeros(n, bool))
    valid = _block(representable & ~outsized)
    valid_np = np.asarray(valid)
    timings["validity"] = time.perf_counter() - t0
    n_valid = int(valid_np.sum())
    if n_valid == 0:
        raise ValueError(
            f"updates: all {n} client updates contain NaN or Inf or are too large to compare "
            f"(squared norm above {kernels.representable_bound(n, x.dtype):.3g} in {x.dtype}); "
            "there is nothing that can safely be aggregated"
        )

    rnd = Round(x, valid, f, m, jax.random.key(seed), timings, project=project)
    result = METHODS[method](rnd, **options)
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
        "k": rnd.project,  # None when no projection ran (project=None or k >= d)
        "nonfinite": np.flatnonzero(~np.asarray(representable)).tolist(),
        "outsized": np.flatnonzero(np.asarray(outsized)).tolist(),
        "norm_guard": guard,
        "timings": timings,
        **result.info,
    }
    return Selection(
        selected=selected,
        scores=np.asarray(result.scores),
        method=method,
        info=info,
        combine=result.combine,
    )
