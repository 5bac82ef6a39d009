"""QUBO-based client selection: pick the ``m`` mutually closest clients from distances ``D``.

* :mod:`qkrum.qubo.formulation`: the coefficients and the objective, from one formula
  (the cut objective of Eq. 8 and the within-subset objective, the penalty
  ``λ(Σx − m)²`` and its provable bound, the suspicion penalty of Eq. 15).
* :mod:`qkrum.qubo.problem`: :class:`SelectionProblem`, the one typed, immutable form in
  which a problem goes to a sampler (dense symmetric ``J``, ``h``, ``offset``, and either
  the ``cardinality`` the solver keeps or the ``penalty`` inside ``J``/``h``).
* :mod:`qkrum.qubo.solve`: :func:`solve_selection` (problem → any dimod sampler through
  :func:`qkrum.anneal.adapter.sample_problem` → repair → certification).

Importing this package does not import dimod or :mod:`qkrum.anneal`; solving does.
"""

from qkrum.qubo.formulation import (
    OBJECTIVES,
    objective_value,
    penalty_bound,
    penalty_weight,
    qubo_energy,
    selection_coefficients,
    selection_qubo,
    suspicion_penalty,
    suspicion_qubo,
)
from qkrum.qubo.problem import SelectionProblem, problem_from_qubo, selection_problem
from qkrum.qubo.solve import (
    CERTIFY_MAX_SUBSETS,
    DEFAULT_SWEEPS,
    CardinalityRepairWarning,
    SelectionSolution,
    exhaustive_optimum,
    repair,
    solve_selection,
)

__all__ = [
    "CERTIFY_MAX_SUBSETS",
    "DEFAULT_SWEEPS",
    "OBJECTIVES",
    "CardinalityRepairWarning",
    "SelectionProblem",
    "SelectionSolution",
    "exhaustive_optimum",
    "objective_value",
    "penalty_bound",
    "penalty_weight",
    "problem_from_qubo",
    "qubo_energy",
    "repair",
    "selection_coefficients",
    "selection_problem",
    "selection_qubo",
    "solve_selection",
    "suspicion_penalty",
    "suspicion_qubo",
]
