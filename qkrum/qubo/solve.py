"""Choose m of n clients by solving a selection QUBO over a distance matrix (paper IV-C).

:func:`solve_selection` is the shared solver step of every QUBO-based method: it builds
the :class:`~qkrum.qubo.SelectionProblem` (:func:`~qkrum.qubo.selection_problem`), solves
it with any dimod sampler through :func:`qkrum.anneal.adapter.sample_problem`, repairs the
cardinality if the sampler's answer has ``|S| ≠ m``, and, for small ``n``, certifies the
answer against an exhaustive search.

How the cardinality is kept
---------------------------
* A sampler that keeps ``|S| = m`` in every state declares ``"cardinality"`` in its
  ``parameters`` (:func:`qkrum.anneal.adapter.keeps_cardinality`); qkrum's tabu search,
  annealer and exact solver do (exchange moves). The default, ``sampler=None``, is the
  tabu search (:class:`qkrum.anneal.ExchangeTabuSampler`): on random and attacked
  selection instances at n = 100-2,000 it reached the best energy any solver found sooner
  than dwave-samplers' Tabu and than qkrum's annealer with 1000 reads
  (``python -m benchmarks.annealer --time-to-target``). ``num_reads`` is then its
  restart limit; it stops once two restarts agree on the best energy, after a floor of
  ``ceil(8192 / n)`` restarts. With ``lam=None``
  (the default) such a sampler gets the objective alone and ``cardinality=m``, with no
  penalty: nothing has to be climbed and ``|S| = m`` holds by construction.
* Other samplers (dwave-samplers, Leap hybrid, QPUs) get the penalised QUBO: ``lam=None``
  is the provable bound of :mod:`qkrum.qubo.formulation`, so their optimum has ``|S| = m``.
* Samplers of constrained models (``sample_cqm``: D-Wave's ``LeapHybridCQMSampler``,
  ``sampler="leap-hybrid-cqm"``) get the objective with the equality constraint
  ``Σx = m`` (:func:`qkrum.anneal.adapter.cqm_from_problem`), no penalty; their best
  feasible sample is taken, and ``lam`` must be None.
* An explicit ``lam`` (e.g. ``"paper"``, the paper's ``10 · max D``) always builds the
  penalised QUBO and solves it as given, also with qkrum's annealer, as the paper does.

Repair (IV-C): when the sample has more than ``m`` clients, the one with the largest sum of
distances to the current selection is dropped, repeatedly; with fewer, the unselected one
with the smallest sum is added. Every repair step is counted in the result
(``repaired``) and announced by a :class:`CardinalityRepairWarning`: a repaired selection
is the repair's choice, not the sampler's.

Errors: option errors are ``ValueError``/``TypeError``, raised before any sampler runs
(qkrum's own samplers check theirs before annealing, too); anything a sampler raises is a
:class:`qkrum.errors.SamplerError`, made in one place
(:func:`qkrum.anneal.adapter.sampler_failure`) and passed on here as is.
"""

from __future__ import annotations

import time
import warnings
from math import comb
from typing import Any, NamedTuple

import numpy as np

from qkrum._validation import check_int
from qkrum.errors import CardinalityRepairWarning
from qkrum.qubo.formulation import objective_value
from qkrum.qubo.problem import SelectionProblem, selection_problem

__all__ = ["CERTIFY_MAX_SUBSETS", "DEFAULT_READS", "DEFAULT_SWEEPS", "CardinalityRepairWarning",
           "SelectionSolution", "exhaustive_optimum", "repair", "solve_selection"]

#: Largest C(n, m) certified by exhaustive search when ``certify=None``.
CERTIFY_MAX_SUBSETS = 200_000

#: Reads for an annealer (qkrum's or dwave-samplers') when ``num_reads=None``.
DEFAULT_READS = 1000

#: Sweeps per read for the selection QUBO. The sampler default (1000, as neal's) is ten
#: times what the cardinality-keeping annealer needs here: on ALIE rounds at n = 500 the
#: fraction of 100 reads reaching the best state found was 0.01/0.19/0.48/1.0 at
#: 50/100/200/1000 sweeps, so 1000 reads of 100 sweeps miss it with probability ~0.81^1000.
DEFAULT_SWEEPS = 100


class SelectionSolution(NamedTuple):
    selected: np.ndarray  # bool (n,), exactly m True
    sample: np.ndarray  # the sampler's best sample before repair (int8, (n,))
    qubo_energy: float  # its energy under the QUBO that was solved
    objective: float  # the objective of the final selection (no penalty)
    repaired: int  # clients added or removed by the repair step
    certified: bool | None  # final objective equals the exhaustive optimum; None: not checked
    optimum: float | None  # the exhaustive optimum, when checked
    sampler: str
    timing: dict
    # "native" or "python" for qkrum's own samplers (the kernel that ran; their random
    # streams differ), None for other samplers.
    implementation: str | None = None


def repair(D: np.ndarray, selected: np.ndarray, m: int) -> tuple[np.ndarray, int]:
    """Add or drop clients by their distance sums to the current selection until ``|S| = m``."""
    selected = np.asarray(selected, dtype=bool).copy()
    steps = 0
    while selected.sum() > m:
        sums = D[:, selected].sum(axis=1)
        sums[~selected] = -np.inf
        selected[int(np.argmax(sums))] = False
        steps += 1
    while selected.sum() < m:
        sums = D[:, selected].sum(axis=1)
        sums[selected] = np.inf
        selected[int(np.argmin(sums))] = True
        steps += 1
    return selected, steps


def exhaustive_optimum(problem: SelectionProblem) -> float:
    """The lowest energy over all ``C(n, m)`` subsets of size ``m = problem.m``: the
    optimum of the objective, since a penalty vanishes at ``|S| = m``."""
    from qkrum.anneal import exact_ground_state

    if problem.m is None:
        raise ValueError("the problem does not say which subset size m to search")
    Q, offset = problem.qubo()
    return exact_ground_state(Q, offset, cardinality=problem.m).energy


def solve_selection(D: Any, m: int, *, objective: str = "intra", lam: Any = None, sampler: Any = None,
                    seed: int = 0, num_reads: int | None = None, num_sweeps: int | None = None,
                    certify: bool | None = None, sampler_params: dict | None = None,
                    pair_penalty: Any = None) -> SelectionSolution:
    """Select ``m`` clients from the distance matrix ``D`` (see the module docs).

    Args:
        D: ``(n, n)`` finite, symmetric, non-negative distances (drop invalid clients first).
        m: clients to select.
        objective: ``"intra"`` or ``"paper"`` (:func:`qkrum.qubo.selection_qubo`).
        lam: ``None`` (provable penalty, or none with a cardinality-keeping sampler),
            ``"paper"`` or a number.
        sampler: ``None`` (qkrum's exchange tabu search,
            :class:`~qkrum.anneal.ExchangeTabuSampler`, with ``lam=None``; qkrum's annealer
            with an explicit ``lam``), a name (``qkrum.anneal.SAMPLER_NAMES``) or a dimod
            sampler instance.
        seed, num_reads, num_sweeps: passed to samplers that take them (qkrum's,
            dwave-samplers'); ``num_reads=None`` is :data:`DEFAULT_READS` reads for an
            annealer and :data:`~qkrum.anneal.tabu.DEFAULT_MAX_RESTARTS` restarts for the
            tabu search; ``num_sweeps=None`` means :data:`DEFAULT_SWEEPS` in cardinality
            mode and the sampler's own default otherwise.
        pair_penalty: the suspicion penalty of Eq. 15 (:func:`qkrum.qubo.suspicion_penalty`),
            or None. Repair then ranks clients by ``D + P``.
        certify: compare with the exhaustive optimum over all ``C(n, m)`` subsets; ``None``
            does so when there are at most :data:`CERTIFY_MAX_SUBSETS` of them.
        sampler_params: further keyword arguments for ``sampler.sample``.
    """
    from qkrum.anneal import ExchangeTabuSampler, SimulatedAnnealingSampler
    from qkrum.anneal.tabu import DEFAULT_MAX_RESTARTS
    from qkrum.anneal.adapter import is_cqm_sampler, keeps_cardinality, resolve_sampler, sample_problem

    D = np.asarray(D, dtype=np.float64)
    # Checked here, before any sampler runs: a bad count is the caller's error, while what
    # a sampler raises is a SamplerError. None leaves a count to the sampler's default.
    num_reads = None if num_reads is None else check_int("num_reads", num_reads, minimum=1)
    num_sweeps = None if num_sweeps is None else check_int("num_sweeps", num_sweeps, minimum=0)
    seed = None if seed is None else check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    params = dict(sampler_params or {})
    t0 = time.perf_counter()
    if sampler is None:
        # The default: exchange tabu search when the problem can keep |S| = m, qkrum's
        # annealer for an explicit penalty (single flips climb it, as in the paper).
        sampler = ExchangeTabuSampler() if lam is None else SimulatedAnnealingSampler()
    sampler = resolve_sampler(sampler)
    constrained = is_cqm_sampler(sampler)
    if constrained and lam is not None:
        raise ValueError(f"lam={lam!r} is a penalty weight, but sampler {type(sampler).__name__} solves constrained "
                         "models: it gets the objective with the constraint sum(x) == m; pass lam=None")
    cardinality_mode = constrained or (lam is None and keeps_cardinality(sampler))
    problem = selection_problem(D, m, objective=objective, lam=lam, pair_penalty=pair_penalty,
                                keep_cardinality=cardinality_mode)
    n, m = problem.n, problem.m
    t1 = time.perf_counter()
    accepted = getattr(sampler, "parameters", None) or {}
    if num_reads is None:
        num_reads = DEFAULT_MAX_RESTARTS if isinstance(sampler, ExchangeTabuSampler) else DEFAULT_READS
    if num_sweeps is None and cardinality_mode:
        num_sweeps = DEFAULT_SWEEPS
    for name, value in (("num_reads", num_reads), ("seed", seed), ("num_sweeps", num_sweeps)):
        if value is None:
            continue
        if name in accepted:  # annealers take these; exact solvers and Leap do not
            params.setdefault(name, value)
    # A SamplerError (made once, in the adapter) reaches the caller as is.
    solution = sample_problem(problem, sampler, **params)  # a CQM sampler gets the constrained model
    t2 = time.perf_counter()
    pairs = D if pair_penalty is None else D + pair_penalty
    selected, steps = repair(pairs, solution.sample.astype(bool), m)
    if steps:
        k = int(solution.sample.sum())
        change = f"dropped the {steps} farthest" if k > m else f"added the {steps} closest"
        why = ("lam=None is the penalty that provably enforces |S| = m, so the sampler did not reach a "
               "low-energy state (give it more reads or sweeps)" if lam is None else
               f"lam={lam!r} may be too weak to enforce |S| = m (lam=None is the provable penalty), "
               "or the sampler did not reach a low-energy state")
        warnings.warn(
            f"the {solution.sampler} sampler's best answer selects {k} of n={n} clients, not m={m}; the "
            f"repair step (paper IV-C) {change} by distance sums, so the selection is the repair's, "
            f"not the sampler's. {why}", CardinalityRepairWarning, stacklevel=2)
    value = objective_value(D, selected, objective, pair_penalty)
    t3 = time.perf_counter()
    if certify is None:
        certify = comb(n, m) <= CERTIFY_MAX_SUBSETS
    certified = optimum = None
    if certify:
        objective_only = problem if cardinality_mode else selection_problem(
            D, m, objective=objective, pair_penalty=pair_penalty, keep_cardinality=True)
        optimum = exhaustive_optimum(objective_only)
        certified = bool(value <= optimum + 1e-9 * max(1.0, abs(optimum)))
    t4 = time.perf_counter()
    timing = {"qubo_build": t1 - t0, "solve": t2 - t1, "repair": t3 - t2, "certify": t4 - t3,
              "sampler": solution.timing}
    return SelectionSolution(selected, solution.sample, solution.energy, value, steps, certified, optimum,
                             solution.sampler, timing, solution.implementation)
