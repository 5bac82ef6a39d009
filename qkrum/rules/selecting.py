"""The selecting rules: MultiKrum, QUBO selection, the Cascaded Dual-QUBO, MultiSignal.

Each factory validates its hyperparameters and returns a :class:`qkrum.rules.Rule` whose
aggregate is the mean of the selected clients (Eq. 12). The decision rules of the
MultiSignal ensemble (the routing gate, agreement voting) are in :mod:`qkrum.ensemble`;
the QUBO and its solver in :mod:`qkrum.qubo`.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from qkrum import kernels
from qkrum._validation import check_int, check_probability, check_real
from qkrum.ensemble import VoteWeights, agreement_vote, check_threshold, route, vote_categories
from qkrum.rules.base import MethodResult, Rule, factory_of
from qkrum.rules.round import Round

__all__ = ["DISTANCES", "OBJECTIVES", "PAPER_QUBO", "alignment", "cascade", "cascade_paper", "flag_misaligned", "multikrum",
           "multikrum_nnm", "multisignal", "multisignal_paper", "qubo", "qubo_paper", "screened_multikrum_nnm"]

DISTANCES = ("cosine", "euclidean", "dual")
OBJECTIVES = ("intra", "paper")

#: The paper's QUBO as published: Eq. 8 (the cut) with ``λ = 10 · max D`` (Eqs. 10–11),
#: solved as a penalised QUBO. See :mod:`qkrum.qubo` for why it is not the default.
PAPER_QUBO = {"objective": "paper", "lam": "paper"}


# ---------------------------------------------------------------------------------------
# MultiKrum
# ---------------------------------------------------------------------------------------

def _run_multikrum(rnd: Round) -> MethodResult:
    scores = rnd.krum("euclidean")
    return MethodResult(rnd.multikrum(scores), scores, {})


@factory_of("multikrum")
def multikrum() -> Rule:
    """MultiKrum (Eqs. 2–3) as the paper runs it (VI-B): squared Euclidean distances on the
    projected updates, ``n − f − 2`` neighbours, the ``m`` lowest scores. No options."""
    return Rule("multikrum", (), run=_run_multikrum)


def _run_multikrum_full(rnd: Round) -> MethodResult:
    scores = rnd.krum("euclidean_full")
    return MethodResult(rnd.multikrum(scores), scores, {})


@factory_of("multikrum_nnm")
def multikrum_nnm() -> Rule:
    """qkrum's default defence: MultiKrum selects on the full updates; the aggregate is
    the mean of the selected clients' nearest-neighbour-mixed updates.

    * **Selection**: MultiKrum (Eqs. 2–3) with squared Euclidean distances on the *full*
      updates (never a projection: a projection drops the low-variance coordinates, and
      noise placed there passes unseen), ``n − f − 2`` neighbours, the ``m`` (default
      ``n − f``) lowest scores. ``selected`` is that set: it is what MultiKrum on the full
      updates rejects, so detection is MultiKrum's.
    * **Aggregate**: each valid update ``x_i`` is replaced by the mean of its ``n − f``
      nearest valid updates (NNM, Allouah et al., AISTATS 2023: :func:`qkrum.rules.nnm`),
      and the aggregate is the mean of those mixed rows over the *selected* clients.

    Why this order, and not ``"nnm,multikrum"`` (mixing before the selection): the
    selection on mixed rows loses detection (mixing pulls every attacker towards the
    honest ones), while the mean of the selected clients' *own* updates is what an
    attacker who knows the defence exploits: in-distribution rows (LIE with a tuned
    ``z``, IPM, min-sum) get every attacker selected and the most distant honest clients
    dropped. Averaging the selected clients' mixed rows spreads both effects over
    ``n − f`` neighbours. ``docs/robustness.md`` has the measurements (the whole suite,
    adaptive attacks aimed at this rule included): the best worst case of the rules that
    select, with MultiKrum's detection; below the best classical anchor on MNIST at
    n = 15, behind centered clipping at n = 100 and on Fashion-MNIST.

    A rejected client can still enter the aggregate through the mixed row of a selected
    neighbour, when it is among that neighbour's ``n − f`` nearest (that is what NNM
    does); a client far from everyone (a detected attacker) is nobody's neighbour.
    No options; ``project`` does not apply."""
    from qkrum.rules.preaggregators import nnm

    return Rule("multikrum_nnm", (), run=_run_multikrum_full, uses_projection=False, mix=(nnm(),))


# ---------------------------------------------------------------------------------------
# The direction screen in front of multikrum_nnm
# ---------------------------------------------------------------------------------------

def alignment(x: Any, reference: Any, valid: Any, sq_norms: Any = None) -> np.ndarray:
    """Cosine of each valid row of ``x`` with ``reference``, as float64 NumPy: ``NaN``
    for an invalid row, a zero row or a zero ``reference`` (no direction to compare).
    ``sq_norms``: the rows' squared norms if known (a Gram diagonal), else computed."""
    host = np.asarray(x)
    ref = np.asarray(reference, dtype=host.dtype)
    valid = np.asarray(valid, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        dots = (host @ ref).astype(np.float64)  # one matrix-vector product; a NaN row stays its own
    if sq_norms is None:
        sq_norms = kernels.row_sq_norms(host)
    norms = np.sqrt(np.asarray(sq_norms, dtype=np.float64))
    ref_norm = float(np.linalg.norm(ref.astype(np.float64)))
    ok = valid & (norms > 0) & np.isfinite(dots) & (ref_norm > 0)
    out = np.full(host.shape[0], np.nan)
    out[ok] = dots[ok] / (norms[ok] * ref_norm)
    return out


def flag_misaligned(cosines: Any, f: int, kappa: float = 0.25) -> np.ndarray:
    """The clients the direction screen removes: of the rows whose cosine is strictly below
    ``kappa × max(median, 0)`` (the median over the comparable rows; ``NaN``: not
    comparable, never flagged), the ``f`` most negative (ties: lower index). Returns an
    ``(n,)`` bool mask with at most ``f`` True."""
    c = np.asarray(cosines, dtype=np.float64)
    comparable = c[np.isfinite(c)]
    threshold = kappa * max(float(np.median(comparable)), 0.0) if comparable.size else 0.0
    below = np.flatnonzero(c < threshold)  # NaN compares False
    order = below[np.argsort(c[below], kind="stable")][:f]
    flagged = np.zeros(c.shape[0], dtype=bool)
    flagged[order] = True
    return flagged


def _run_screened(rnd: Round, *, kappa: float) -> MethodResult:
    from qkrum._pytree import masked_mean
    from qkrum.rules.preaggregation import nearest_neighbor_mixing

    scores = rnd.krum("euclidean_full")
    first = rnd.multikrum(scores)
    # The reference direction is multikrum_nnm's own aggregate of the round.
    reference = rnd.timed("screen", lambda: masked_mean(nearest_neighbor_mixing(rnd.full, rnd.valid, rnd.f),
                                                        jnp.asarray(first)))
    # The squared norms are the diagonal of the Gram matrix MultiKrum's distances came from.
    sq_norms = np.diagonal(np.asarray(rnd.gram(full=True)))
    cosines = rnd.timed("screen", lambda: alignment(rnd.full, reference, rnd.valid_np, sq_norms))
    # Never below m clients: invalid clients already used part of the budget of f.
    budget = max(0, min(rnd.f, int(rnd.valid_np.sum()) - rnd.m))
    flagged = flag_misaligned(cosines, budget, kappa)
    info = {"alignment": cosines, "screened": np.flatnonzero(flagged).tolist(), "kappa": kappa}
    if not flagged.any():
        return MethodResult(first, scores, info)
    # The screened clients leave the round as invalid clients do; MultiKrum runs again on
    # the others with the same f and m, so f − |screened| attackers remain to be rejected
    # from n − |screened| clients (the same n − f − 2 neighbours, the same n − f selected).
    rest = rnd.without(flagged)
    rest_scores = rest.krum("euclidean_full")
    return MethodResult(rest.multikrum(rest_scores), rest_scores, info, excluded=flagged)


@factory_of("screened_multikrum_nnm")
def screened_multikrum_nnm(*, kappa: float = 0.25) -> Rule:
    """:func:`multikrum_nnm` behind a direction screen: qkrum's default defence.

    1. **Reference**: ``r``, the round's :func:`multikrum_nnm` aggregate (MultiKrum on the
       full updates selects; the mean of the selected clients' NNM-mixed updates).
    2. **Screen**: every valid client's cosine with ``r`` (``info["alignment"]``). The
       clients below ``kappa`` (in ``[0, 1)``, default 0.25) times the median cosine, at
       most ``f`` of them (and never so many that fewer than ``m`` valid clients are left), the lowest first, leave the round as invalid clients do: never
       selected, nobody's neighbour in the mixing (``info["screened"]``). ``kappa = 0``
       screens only the updates that point away from ``r``.
    3. **Rule**: :func:`multikrum_nnm` on the others, with the same ``f`` and ``m`` (so
       ``f − |screened|`` attackers are left to reject among ``n − |screened|`` clients).

    Why: every honest update carries the common descent direction, so its cosine with a
    robust aggregate is a sizeable fraction of the typical one (on the MNIST and
    Fashion-MNIST rounds of ``docs/robustness.md``, at least 0.42 × the median); an
    update that opposes ``r`` or is orthogonal to it is not such a step, and MultiKrum
    does not see direction. Identical sign-flipped rows have small Krum scores (they are
    close to each other), so MultiKrum keeps them and drops honest clients instead
    (detection 60 % at n = 100, f = 20); IPM rows ``−ε μ`` sit inside the honest cloud;
    a coordinate-shuffled honest row keeps its norm but loses its direction (cosine
    ≤ 0.17 × the median). The screen removes them. It does not touch the
    in-distribution attacks that set the worst case (LIE with a tuned ``z``, min-sum,
    mimic): they point with the honest mean and pass, exactly as they pass
    :func:`multikrum_nnm`. A zero update (the limit of IPM as ``ε → 0``) has no
    direction and is not screened. ``docs/robustness.md`` has the measurements. No
    ``project``."""
    kappa = check_real("kappa", kappa, low=0.0, high=1.0, high_open=True)
    from qkrum.rules.preaggregators import nnm

    run = functools.partial(_run_screened, kappa=kappa)
    return Rule("screened_multikrum_nnm", (), run=run, uses_projection=False, mix=(nnm(),))


# ---------------------------------------------------------------------------------------
# The QUBO stage shared by every QUBO-based rule
# ---------------------------------------------------------------------------------------

def _check_sampler(sampler: Any) -> Any:
    if sampler is None:
        return None
    if isinstance(sampler, str):
        from qkrum.anneal.adapter import SAMPLER_NAMES

        if sampler not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler={sampler!r}; valid names: {', '.join(SAMPLER_NAMES)}")
        return sampler
    if isinstance(sampler, type):
        raise TypeError(f"sampler must be a dimod sampler instance or a name, got the class {sampler.__name__}; "
                        f"pass {sampler.__name__}()")
    if not callable(getattr(sampler, "sample", None)) and not callable(getattr(sampler, "sample_cqm", None)):
        raise TypeError(f"sampler must be a dimod sampler (an object with a sample or sample_cqm method) or a name, "
                        f"got an object of type {type(sampler).__name__}")
    return sampler


def _solver_options(*, objective: str = "intra", lam: Any = None, sampler: Any = None, num_reads: Any = None,
                    num_sweeps: Any = None, certify: Any = None, sampler_params: Any = None) -> dict:
    """The QUBO solver options, validated (:func:`qkrum.qubo.solve_selection`)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got objective={objective!r}")
    if isinstance(lam, str):
        if lam != "paper":
            raise ValueError(f"lam must be None, 'paper' or a number >= 0, got lam={lam!r}")
    elif lam is not None:
        lam = check_real("lam", lam, low=0.0)
    if certify is not None and not isinstance(certify, (bool, np.bool_)):
        raise TypeError(f"certify must be None, True or False, got certify={certify!r}")
    if sampler_params is not None and not isinstance(sampler_params, dict):
        raise TypeError(f"sampler_params must be a dict of keyword arguments for sampler.sample, "
                        f"got sampler_params={sampler_params!r}")
    return {"objective": objective, "lam": lam, "sampler": _check_sampler(sampler),
            "num_reads": None if num_reads is None else check_int("num_reads", num_reads, minimum=1),
            "num_sweeps": None if num_sweeps is None else check_int("num_sweeps", num_sweeps, minimum=0),
            "certify": None if certify is None else bool(certify),
            "sampler_params": None if sampler_params is None else dict(sampler_params)}


def _solve_qubo(rnd: Round, D: np.ndarray, solver: dict, *, suspicion: bool = False, percentile: float = 10.0,
                suspicion_weight: float = 10.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Solve the selection QUBO on the valid clients only; returns the mask, per-client
    scores (distance sums to the selection; ``inf`` for invalid clients) and info."""
    from qkrum.qubo import solve_selection, suspicion_penalty

    idx = np.flatnonzero(rnd.valid_np)
    D_valid = D if idx.size == rnd.n else D[np.ix_(idx, idx)]  # no (n, n) copy when all are valid
    info: dict[str, Any] = {}
    P = None
    if suspicion:
        P, tau_s = suspicion_penalty(D_valid, percentile=percentile, weight=suspicion_weight)
        info["suspicion_threshold"] = tau_s
    m = min(rnd.m, idx.size)
    # Options were validated when the rule was built; whatever a sampler raises (or
    # answers that cannot be a solution) is a SamplerError naming the sampler.
    solution = solve_selection(D_valid, m, seed=rnd.seed(), pair_penalty=P, **solver)
    for stage in ("qubo_build", "solve", "repair", "certify"):
        rnd.timings[stage] = rnd.timings.get(stage, 0.0) + solution.timing[stage]
    selected = np.zeros(rnd.n, dtype=bool)
    selected[idx[solution.selected]] = True
    scores = np.full(rnd.n, np.inf)
    pairs = D_valid if P is None else D_valid + P
    scores[idx] = pairs[:, solution.selected].sum(axis=1)
    info.update(objective=solver["objective"], lam=solver["lam"], sampler=solution.sampler,
                qubo_energy=solution.qubo_energy, objective_value=solution.objective, repaired=solution.repaired,
                certified=solution.certified, exact_optimum=solution.optimum,
                sampler_timing=solution.timing["sampler"], implementation=solution.implementation)
    return selected, scores, info


def _check_suspicion(percentile: Any, suspicion_weight: Any) -> tuple[float, float]:
    return (check_real("percentile", percentile, low=0.0, high=100.0),
            check_real("suspicion_weight", suspicion_weight, low=0.0))


# ---------------------------------------------------------------------------------------
# QUBO selection
# ---------------------------------------------------------------------------------------

def _run_qubo(rnd: Round, *, distance: str, alpha: float, suspicion: bool, percentile: float,
              suspicion_weight: float, solver: dict) -> MethodResult:
    D = rnd.distance(distance, alpha)
    selected, scores, info = _solve_qubo(rnd, D, solver, suspicion=suspicion, percentile=percentile,
                                         suspicion_weight=suspicion_weight)
    return MethodResult(jnp.asarray(selected), jnp.asarray(scores), {"distance": distance, **info})


@factory_of("qubo")
def qubo(*, distance: str = "cosine", alpha: float = 0.5, suspicion: bool = False, percentile: float = 10.0,
         suspicion_weight: float = 10.0, objective: str = "intra", lam: Any = None, sampler: Any = None,
         num_reads: int | None = None, num_sweeps: int | None = None, certify: bool | None = None,
         sampler_params: dict | None = None) -> Rule:
    """QUBO selection (IV-B/C): the ``m`` mutually closest clients by a selection QUBO.

    Args:
        distance: ``"cosine"`` (Eq. 5), ``"euclidean"`` (normalised, Eq. 7) or ``"dual"``
            (Eq. 14 with ``alpha`` in [0, 1]), on the projected updates.
        suspicion: add Eq. 15's pair penalty (``percentile`` in [0, 100],
            ``suspicion_weight >= 0``).
        objective: ``"intra"`` (the within-subset distance, default) or ``"paper"`` (the
            cut, Eq. 8); ``lam``: the cardinality penalty (None: provable, or none with a
            sampler that keeps ``|S| = m``; ``"paper"``: ``10 · max D``; a number ``>= 0``).
        sampler: None (qkrum's annealer), a name (``qkrum.anneal.SAMPLER_NAMES``) or a
            dimod sampler; ``num_reads``, ``num_sweeps``, ``sampler_params`` go to it
            (``num_reads=None``: 64 restarts at most for the default tabu search, 1000 reads
            for an annealer);
            ``certify``: compare with the exhaustive optimum (None: when small).

    Non-finite clients are left out of the QUBO. Scores: each client's distance sum to
    the selected clients.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got distance={distance!r}")
    percentile, suspicion_weight = _check_suspicion(percentile, suspicion_weight)
    if not isinstance(suspicion, (bool, np.bool_)):
        raise TypeError(f"suspicion must be True or False, got suspicion={suspicion!r}")
    solver = _solver_options(objective=objective, lam=lam, sampler=sampler, num_reads=num_reads,
                             num_sweeps=num_sweeps, certify=certify, sampler_params=sampler_params)
    run = functools.partial(_run_qubo, distance=distance, alpha=check_probability("alpha", alpha),
                            suspicion=bool(suspicion), percentile=percentile, suspicion_weight=suspicion_weight,
                            solver=solver)
    return Rule("qubo", (), run=run)


# ---------------------------------------------------------------------------------------
# Cascaded Dual-QUBO
# ---------------------------------------------------------------------------------------

def _run_cascade(rnd: Round, *, tau: float, alpha: float, solver: dict) -> MethodResult:
    scores_e = rnd.krum("euclidean_full")
    gap = rnd.gap(scores_e)
    classical = rnd.multikrum(scores_e)
    info: dict[str, Any] = {"gap_euclidean": gap, "tau": tau, "subsets": {"multikrum": np.flatnonzero(classical)}}
    if gap > tau:
        return MethodResult(jnp.asarray(classical), scores_e, {"route": "multikrum", **info})
    selected, scores, qinfo = _solve_qubo(rnd, rnd.distance("dual", alpha), solver)
    info["subsets"]["qubo"] = np.flatnonzero(selected)
    return MethodResult(jnp.asarray(selected), jnp.asarray(scores), {"route": "qubo", **info, **qinfo})


@factory_of("cascade")
def cascade(*, tau: float = 0.2, alpha: float = 0.5, objective: str = "intra", lam: Any = None,
            sampler: Any = None, num_reads: int | None = None, num_sweeps: int | None = None,
            certify: bool | None = None, sampler_params: dict | None = None) -> Rule:
    """Cascaded Dual-QUBO (IV-D): Euclidean Krum gap Δ on the full updates above ``tau``
    (a finite number ``>= 0``) → MultiKrum on those scores; otherwise the dual-distance
    QUBO (Eq. 14, ``alpha``) on the projected updates. The paper gives no value for ``τ``;
    the default is MultiSignal's ``τ_E = 0.2``, the same gap on the same scores. Solver
    options as for :func:`qubo`."""
    solver = _solver_options(objective=objective, lam=lam, sampler=sampler, num_reads=num_reads,
                             num_sweeps=num_sweeps, certify=certify, sampler_params=sampler_params)
    run = functools.partial(_run_cascade, tau=check_threshold("tau", tau), alpha=check_probability("alpha", alpha),
                            solver=solver)
    return Rule("cascade", (), run=run)


# ---------------------------------------------------------------------------------------
# MultiSignal
# ---------------------------------------------------------------------------------------

def _run_multisignal(rnd: Round, *, tau_e: float, tau_c: float, alpha: float, percentile: float,
                     suspicion_weight: float, weights: VoteWeights, paranoid: bool, solver: dict) -> MethodResult:
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
    qubo_sel, _, qinfo = _solve_qubo(rnd, rnd.distance("dual", alpha), solver, suspicion=True,
                                     percentile=percentile, suspicion_weight=suspicion_weight)
    subsets["qubo"] = np.flatnonzero(qubo_sel)
    info.update(qinfo)
    if paranoid:
        return MethodResult(jnp.asarray(classical & qubo_sel), scores_e, info)
    t0 = time.perf_counter()
    selected = agreement_vote(classical, qubo_sel, np.asarray(scores_c), rnd.m, rnd.valid_np, weights)
    categories = vote_categories(classical, qubo_sel)
    rnd.timings["vote"] = time.perf_counter() - t0
    info.update(vote_weights=weights._asdict(),
                vote_counts={name: int(np.sum((categories == i) & rnd.valid_np)) for i, name in
                             enumerate(("agreed_accept", "qubo_only", "classical_only", "agreed_reject"))})
    return MethodResult(jnp.asarray(selected), scores_c, info)


def _check_vote_weights(vote_weights: Any) -> VoteWeights:
    try:
        weights = VoteWeights(*vote_weights)
    except TypeError:
        raise TypeError(f"vote_weights must be a VoteWeights or a tuple of 4 numbers, got {vote_weights!r}") from None
    return VoteWeights(*(check_real(f"vote_weights.{k}", v) for k, v in weights._asdict().items()))


@factory_of("multisignal")
def multisignal(*, tau_e: float = 0.2, tau_c: float = 0.5, alpha: float = 0.5, percentile: float = 10.0,
                suspicion_weight: float = 10.0, vote_weights: VoteWeights | tuple = VoteWeights(),
                paranoid: bool = False, objective: str = "intra", lam: Any = None, sampler: Any = None,
                num_reads: int | None = None, num_sweeps: int | None = None, certify: bool | None = None,
                sampler_params: dict | None = None) -> Rule:
    """The MultiSignal ensemble (IV-E, Algorithm 1; decision rules in :mod:`qkrum.ensemble`).

    Stage 1, routing gate: ``Δ_E`` from Euclidean Krum scores on the full updates,
    ``Δ_C`` from cosine Krum scores on the projected updates (Eq. 13), thresholds
    ``tau_e``, ``tau_c``. Outlier/magnitude rounds select by Euclidean MultiKrum,
    clustered rounds by cosine MultiKrum. Stage 2 (evasion only): the suspicion-penalised
    QUBO (Eq. 15: dual distance with ``alpha``, ``percentile``, ``suspicion_weight``).
    Stage 3: agreement voting with ``vote_weights``. Solver options as for :func:`qubo`.

    ``paranoid=True`` (paper VIII-C, for mixed attack populations that can confuse the
    gate): the QUBO runs in every regime and the selection is the intersection of
    MultiKrum's and the QUBO's, i.e. every client either rejects is flagged. The result
    then has at most ``m`` clients, usually fewer.
    """
    percentile, suspicion_weight = _check_suspicion(percentile, suspicion_weight)
    if not isinstance(paranoid, (bool, np.bool_)):
        raise TypeError(f"paranoid must be True or False, got paranoid={paranoid!r}")
    solver = _solver_options(objective=objective, lam=lam, sampler=sampler, num_reads=num_reads,
                             num_sweeps=num_sweeps, certify=certify, sampler_params=sampler_params)
    run = functools.partial(_run_multisignal, tau_e=check_threshold("tau_e", tau_e),
                            tau_c=check_threshold("tau_c", tau_c), alpha=check_probability("alpha", alpha),
                            percentile=percentile, suspicion_weight=suspicion_weight,
                            weights=_check_vote_weights(vote_weights), paranoid=bool(paranoid), solver=solver)
    return Rule("multisignal", (), run=run)


# ---------------------------------------------------------------------------------------
# The paper's QUBO as published
# ---------------------------------------------------------------------------------------

def _paper_preset(name: str, base):
    def preset(**options: Any) -> Rule:
        return base(**{**PAPER_QUBO, **options})

    preset.__name__ = name.replace("-", "_")
    preset.__doc__ = (f"``{base.__name__!r}`` with the paper's QUBO as published ({PAPER_QUBO}); the "
                      f"paper-reproduction path. Options as for :func:`{base.__name__}`.")
    preset.__signature__ = __import__("inspect").signature(base)
    return factory_of(name)(preset)


qubo_paper = _paper_preset("qubo-paper", qubo)
cascade_paper = _paper_preset("cascade-paper", cascade)
multisignal_paper = _paper_preset("multisignal-paper", multisignal)
