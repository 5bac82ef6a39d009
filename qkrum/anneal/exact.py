"""Exhaustive ground states: the ground truth for small problems.

All ``2^n`` states are enumerated in Gray-code order (one flip, ``O(n)`` work, per state;
n = 25 takes about a second natively), or, with ``cardinality=m``, all ``C(n, m)``
subsets depth-first. Unlike ``dimod.ExactSolver``, which returns every state, this
returns only the ground states, so it scales to the sizes where it is still feasible.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import dimod
import numpy as np

from qkrum import _native
from qkrum.anneal.sampler import qubo_arrays

__all__ = ["ExactResult", "ExactSolver", "MAX_EXHAUSTIVE_VARIABLES", "exact_ground_state"]

#: Largest n for a search over all 2^n states, and the log2 of the most subsets a search
#: with ``cardinality`` visits (a guard against accidental hours-long runs). Defined once,
#: in C++ (``kMaxExhaustiveVariables``, csrc/anneal.hpp); see :mod:`qkrum._native`.
MAX_EXHAUSTIVE_VARIABLES = _native.MAX_EXHAUSTIVE_VARIABLES


class ExactResult(NamedTuple):
    energy: float  # including the offset
    states: np.ndarray  # (k, n) int8, k <= max_states ground states
    num_ground: int  # how many states attain the ground energy
    num_states_searched: int


def _dense(arrays):
    if arrays.J is not None:
        return arrays.J
    indptr, indices, data = arrays.csr
    n = arrays.n
    J = np.zeros((n, n))
    rows = np.repeat(np.arange(n), np.diff(indptr))
    J[rows, indices] = data
    return J


def _solve(arrays, cardinality, max_states) -> ExactResult:
    _native.check_exact_arguments(arrays.h, arrays.J, cardinality=cardinality, max_states=max_states)
    energy, states, num_ground, searched = _native.impl().exact_dense(
        _dense(arrays), arrays.h, -1 if cardinality is None else int(cardinality), int(max_states))
    return ExactResult(float(energy) + arrays.offset, np.asarray(states, np.int8), int(num_ground), int(searched))


def exact_ground_state(Q: Any, offset: float = 0.0, *, cardinality: int | None = None,
                       max_states: int = 16) -> ExactResult:
    """Ground states of a QUBO matrix (upper-triangular, or any square matrix whose
    ``Q_ij + Q_ji`` is the pair coefficient), optionally restricted to ``|x| = cardinality``."""
    from qkrum.anneal.adapter import qubo_vectors

    linear, (irow, icol, qdata) = qubo_vectors(Q)
    if linear.shape[0] < 1:
        raise ValueError("Q must have at least one variable, got shape (0, 0)")
    return _solve(qubo_arrays(linear, irow, icol, qdata, offset), cardinality, max_states)


class ExactSolver(dimod.Sampler):
    """Exhaustive ground-state sampler: returns the ground states (up to ``max_states``)
    of a BQM, with ``info["num_ground"]`` and ``info["num_states_searched"]``."""

    parameters = None
    properties = None

    def __init__(self) -> None:
        self.parameters = {"cardinality": [], "max_states": []}
        self.properties = {"max_num_variables": MAX_EXHAUSTIVE_VARIABLES, "implementation": _native.name()}

    def sample(self, bqm: dimod.BinaryQuadraticModel, *, cardinality: int | None = None,
               max_states: int = 16, **kwargs) -> dimod.SampleSet:
        if kwargs:
            raise TypeError(f"unknown parameter(s) {sorted(kwargs)}; valid parameters: {sorted(self.parameters)}")
        if isinstance(max_states, bool) or not isinstance(max_states, (int, np.integer)) or max_states < 1:
            raise ValueError(f"max_states must be an integer >= 1, got max_states={max_states!r}")
        t0 = time.perf_counter_ns()
        original_vartype = bqm.vartype
        binary = bqm if bqm.vartype is dimod.BINARY else bqm.change_vartype(dimod.BINARY, inplace=False)
        variables = list(binary.variables)
        if not variables:
            return dimod.SampleSet.from_samples(([], []), vartype=original_vartype, energy=[binary.offset],
                                                info={"num_ground": 1, "num_states_searched": 1})
        ldata, (irow, icol, qdata), offset = binary.to_numpy_vectors(variable_order=variables)
        result = _solve(qubo_arrays(ldata, irow, icol, qdata, offset, labels=variables), cardinality, max_states)
        sampleset = dimod.SampleSet.from_samples(
            (result.states, variables), vartype=dimod.BINARY, energy=np.full(len(result.states), result.energy),
            info={"num_ground": result.num_ground, "num_states_searched": result.num_states_searched,
                  "cardinality": cardinality})
        if original_vartype is not dimod.BINARY:
            sampleset.change_vartype(original_vartype, inplace=True)
        sampleset.info["timing"] = {"sampling_ns": time.perf_counter_ns() - t0}
        return sampleset
