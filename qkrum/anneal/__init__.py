"""Simulated annealing for QUBOs, exact ground states, and adapters to any dimod sampler.

* :class:`SimulatedAnnealingSampler`: qkrum's annealer (C++ via ``qkrum._core``, or the
  NumPy fallback), a ``dimod.Sampler`` with dwave-samplers' keyword names.
* :class:`ExchangeTabuSampler`: tabu search over the states with exactly ``m`` ones (C++ or
  NumPy), the fast solver for client selection; convergence-driven restarts.
* :class:`ExactSolver` / :func:`exact_ground_state`: exhaustive ground states (all ``2^n``
  states, or all ``C(n, m)`` subsets), the ground truth for small problems.
* :func:`sample_problem`: solve a :class:`qkrum.qubo.SelectionProblem` with any dimod
  sampler (:func:`resolve_sampler`), including D-Wave's ``LeapHybridSampler``, ``LeapHybridCQMSampler``
  (the constraint ``Σx = m`` as a constraint, :func:`cqm_from_problem`) and QPU composites
  (:func:`leap_hybrid_sampler`, :func:`leap_hybrid_cqm_sampler`, :func:`qpu_sampler`); :func:`solve_qubo` does the
  same for a NumPy QUBO. A sampler that keeps ``Σx = m`` declares ``"cardinality"`` in its
  ``parameters`` (:func:`keeps_cardinality`). A sampler's failure is a
  :class:`SamplerError` (the class :func:`qkrum.select` raises).
"""

from qkrum.anneal.adapter import (
    MissingCredentialsError,
    QUBOSolution,
    SAMPLER_NAMES,
    SamplerError,
    bqm_from_problem,
    bqm_from_qubo,
    cqm_from_problem,
    get_sampler,
    is_cqm_sampler,
    keeps_cardinality,
    leap_hybrid_cqm_sampler,
    leap_hybrid_sampler,
    qpu_sampler,
    resolve_sampler,
    sample_problem,
    solve_qubo,
)
from qkrum.anneal.exact import ExactSolver, exact_ground_state
from qkrum.anneal.sampler import SimulatedAnnealingSampler
from qkrum.anneal.tabu import ExchangeTabuSampler
from qkrum.anneal.schedule import default_beta_range, make_beta_schedule

__all__ = [
    "ExactSolver",
    "ExchangeTabuSampler",
    "MissingCredentialsError",
    "QUBOSolution",
    "SAMPLER_NAMES",
    "SamplerError",
    "SimulatedAnnealingSampler",
    "bqm_from_problem",
    "bqm_from_qubo",
    "cqm_from_problem",
    "default_beta_range",
    "exact_ground_state",
    "get_sampler",
    "is_cqm_sampler",
    "keeps_cardinality",
    "leap_hybrid_cqm_sampler",
    "leap_hybrid_sampler",
    "make_beta_schedule",
    "qpu_sampler",
    "resolve_sampler",
    "sample_problem",
    "solve_qubo",
]
