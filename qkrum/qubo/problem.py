"""The selection problem as it goes to a sampler: one typed, immutable form.

A :class:`SelectionProblem` is a binary quadratic model over the variables ``0..n-1``,
``E(x) = h·x + Σ_{i<j} J_ij x_i x_j + offset`` with ``J`` dense, symmetric and zero on the
diagonal, plus how the cardinality ``|S| = m`` is to be kept:

* ``cardinality=m``: the solver keeps exactly ``m`` variables at 1 (qkrum's annealer and
  exact solver, or any sampler that declares ``"cardinality"`` in its ``parameters``);
  ``J``/``h`` hold the objective alone and ``penalty`` is 0.
* ``cardinality=None``: the penalty ``penalty · (Σx − m)²`` is inside ``J``/``h``/``offset``
  (``penalty`` 0 when there is none, e.g. ``lam=0``). ``penalty=None`` means unknown: a
  QUBO given as a matrix (:func:`problem_from_qubo`), whose penalty, if any, qkrum did not
  build.

:func:`selection_problem` builds one from a distance matrix with the coefficients of
:mod:`qkrum.qubo.formulation`; :func:`qkrum.anneal.adapter.sample_problem` converts it to a
``dimod.BinaryQuadraticModel`` once and runs a sampler on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from qkrum.qubo.formulation import (
    _check_distances,
    _check_m,
    _check_objective,
    _check_pair_penalty,
    _coefficients,
    _weight,
)

__all__ = ["SelectionProblem", "problem_from_qubo", "selection_problem"]


def _frozen(a: np.ndarray) -> np.ndarray:
    if (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.flags.c_contiguous and not a.flags.writeable
            and a.base is None):
        return a  # already read-only and owning its memory (selection_problem's own J): no (n, n) copy
    a = np.array(a, dtype=np.float64, order="C")  # a copy: the caller's array stays writable and ours unchanged
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SelectionProblem:
    """``E(x) = h·x + Σ_{i<j} J_ij x_i x_j + offset`` and how ``|S| = m`` is kept (module docs).

    Attributes:
        J: ``(n, n)`` float64, symmetric, zero diagonal (read-only).
        h: ``(n,)`` float64 (read-only).
        offset: the constant term.
        cardinality: the ``m`` the solver must keep, or None when the penalty is in ``J``/``h``.
        penalty: the ``λ`` of the penalty inside ``J``/``h`` (0 when none), None when unknown.
        m: the selection size (``cardinality``, or the size the penalty enforces), None when unknown.
    """

    J: np.ndarray
    h: np.ndarray
    offset: float
    cardinality: int | None = None
    penalty: float | None = 0.0
    m: int | None = None

    def __post_init__(self) -> None:
        J, h = _frozen(self.J), _frozen(self.h)
        if h.ndim != 1 or h.shape[0] < 1:
            raise ValueError(f"h must be a vector of at least one linear term, got shape {h.shape}")
        n = h.shape[0]
        if J.shape != (n, n):
            raise ValueError(f"J must have shape ({n}, {n}) to match h, got shape {J.shape}")
        if not (np.all(np.isfinite(J)) and np.all(np.isfinite(h))):
            raise ValueError("J and h must be finite")
        if np.any(np.diag(J) != 0):
            raise ValueError("J must have a zero diagonal (linear terms go in h)")
        if not np.array_equal(J, J.T):
            raise ValueError("J must be symmetric")
        offset = float(self.offset)
        if not np.isfinite(offset):
            raise ValueError(f"offset must be finite, got offset={offset}")
        for name in ("cardinality", "m"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or not 0 <= value <= n):
                raise ValueError(f"{name} must be an integer in 0..n={n} or None, got {name}={value!r}")
        cardinality = None if self.cardinality is None else int(self.cardinality)
        m = None if self.m is None else int(self.m)
        if cardinality is not None and m is not None and m != cardinality:
            raise ValueError(f"m={m} must equal cardinality={cardinality} when the solver keeps it")
        penalty = self.penalty
        if penalty is not None:
            penalty = float(penalty)
            if not (np.isfinite(penalty) and penalty >= 0):
                raise ValueError(f"penalty must be a finite number >= 0 or None, got penalty={penalty}")
            if cardinality is not None and penalty != 0:
                raise ValueError("a problem whose solver keeps the cardinality carries no penalty, "
                                 f"got penalty={penalty}")
        for name, value in (("J", J), ("h", h), ("offset", offset), ("cardinality", cardinality),
                            ("penalty", penalty), ("m", cardinality if m is None else m)):
            object.__setattr__(self, name, value)

    @property
    def n(self) -> int:
        return self.h.shape[0]

    def qubo(self) -> tuple[np.ndarray, float]:
        """The same model as an upper-triangular matrix ``Q`` (``Q_ii = h_i``, ``Q_ij = J_ij``
        for ``i < j``) and the offset."""
        Q = np.triu(self.J, k=1)
        Q[np.diag_indices(self.n)] = self.h
        return Q, self.offset

    def energy(self, x: Any) -> float | np.ndarray:
        """Energies of one state ``(n,)`` or a batch ``(k, n)``, offset and penalty included."""
        x = np.asarray(x, dtype=np.float64)
        e = x @ self.h + 0.5 * np.einsum("...i,ij,...j->...", x, self.J, x) + self.offset
        return float(e) if x.ndim == 1 else e

    def penalty_energy(self, x: Any) -> float | np.ndarray:
        """``penalty · (Σx − m)²``: the part of :meth:`energy` that is not the objective."""
        if self.penalty is None or self.m is None:
            raise ValueError("the penalty of this problem is unknown (built from a matrix)")
        k = np.asarray(x, dtype=np.float64).sum(axis=-1)
        e = self.penalty * (k - self.m) ** 2
        return float(e) if np.ndim(e) == 0 else e


def selection_problem(D: Any, m: int, *, objective: str = "intra", lam: Any = None, pair_penalty: Any = None,
                      keep_cardinality: bool = False) -> SelectionProblem:
    """The selection problem over the distances ``D`` (:mod:`qkrum.qubo.formulation`).

    ``keep_cardinality=True``: the objective alone with ``cardinality=m``, for a solver that
    keeps ``|S| = m`` (``lam`` must then be None). Otherwise the penalty ``λ(Σx − m)²`` with
    ``λ`` from ``lam`` (None: the provable bound; ``"paper"``: ``10 · max D``; a number).
    """
    D = _check_distances(D)
    P = _check_pair_penalty(pair_penalty, D.shape[0])
    objective = _check_objective(objective)
    m = _check_m(m, D.shape[0])
    if keep_cardinality:
        if lam is not None:
            raise ValueError(f"lam={lam!r} is a penalty weight, but the solver keeps the cardinality: pass lam=None")
        lam = 0.0
    else:
        lam = _weight(D, m, objective, lam, P)
    h, J, offset = _coefficients(D, m, objective, lam, P)
    J.setflags(write=False)  # fresh and ours: the problem takes it without a copy
    return SelectionProblem(J, h, offset, cardinality=m if keep_cardinality else None, penalty=lam, m=m)


def problem_from_qubo(Q: Any, offset: float = 0.0, *, cardinality: int | None = None) -> SelectionProblem:
    """A problem from a square QUBO matrix, upper-triangular or full (the coefficient of
    ``x_i x_j``, ``i < j``, is ``Q_ij + Q_ji``). Its penalty is unknown (``penalty=None``)."""
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"Q must be a square matrix, got shape {Q.shape}")
    if not np.all(np.isfinite(Q)):
        i, j = np.argwhere(~np.isfinite(Q))[0]
        raise ValueError(f"Q must be finite, got Q[{i}, {j}]={Q[i, j]}")
    if Q.shape[0] < 1:
        raise ValueError("Q must have at least one variable, got shape (0, 0)")
    if not np.isfinite(offset):
        raise ValueError(f"offset must be finite, got offset={offset}")
    upper = np.triu(Q, 1) + np.tril(Q, -1).T
    return SelectionProblem(upper + upper.T, np.diag(Q), offset, cardinality=cardinality, penalty=None)
