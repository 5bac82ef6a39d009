"""The selection QUBOs' coefficients and objective, from one formula.

Client selection picks ``m`` of ``n`` clients, ``x_i = 1`` for a selected client, from a
distance matrix ``D`` (symmetric, zero diagonal, ``D ≥ 0``). The energy of a selection is
``E(x) = h·x + Σ_{i<j} J_ij x_i x_j + offset`` with ``J`` symmetric and zero on the
diagonal (:class:`qkrum.qubo.SelectionProblem`); the upper-triangular matrix ``Q`` of
:func:`selection_qubo` holds the same numbers, ``Q_ii = h_i`` and ``Q_ij = J_ij`` (``i < j``).

One formula
-----------
:func:`selection_coefficients` is the only place the coefficients are written:
``(h, J, offset)`` for an objective, a pair penalty and a penalty weight ``λ``.
:func:`objective_value` evaluates the same function at ``λ = 0``, and the penalty adds
exactly ``λ(Σx − m)²`` (``λ(1 − 2m)`` to every ``h_i``, ``2λ`` to every ``J_ij``, ``λm²``
to the offset), so the energy of any selection under a penalised QUBO minus
``λ(|S| − m)²`` is its objective value, by construction.

Objectives
----------
``objective="paper"`` is Eq. 8 verbatim, ``Σ_i (Σ_j D_ij) x_i − 2 Σ_{i<j} D_ij x_i x_j``.
Expanded over binary ``x`` it equals the *cut* ``Σ_{i∈S, j∉S} D_ij``: every pair inside
``S`` contributes ``D_ij + D_ij − 2 D_ij = 0`` and every pair across contributes ``D_ij``.
Minimising a cut at fixed ``|S| = m`` rejects the ``f`` clients that are *closest* to
everyone else, the opposite of the stated intent. With the penalty of Eq. 9 this gives
Eqs. 10–11: ``Q_ii = Σ_j D_ij + λ(1 − 2m)``, ``Q_ij = −2 D_ij + 2λ``, offset ``λ m²``.

``objective="intra"`` minimises the within-subset distance ``Σ_{i<j∈S} D_ij``, the
paper's stated intent ("the m clients whose projected gradients are mutually closest"):
``Q_ii = λ(1 − 2m)``, ``Q_ij = D_ij + 2λ``, offset ``λ m²``.

The penalty that provably enforces ``|S| = m``
------------------------------------------------
Let ``O`` be the objective and ``S`` a subset with ``|S| = m ± k``, ``k ≥ 1``. Moving one
client in or out changes ``O`` by at most a bound ``B``; ``k`` such moves reach a subset
``S'`` of size ``m`` with ``O(S') ≤ O(S) + kB``. If ``λ > B`` then
``O(S) + λk² ≥ O(S) + λk > O(S) + kB ≥ O(S')``, so every QUBO minimum has ``|S| = m``.

* intra: removing a client never increases ``O`` (``D ≥ 0``); adding ``j`` to a set of at
  most ``m − 1`` clients adds at most the sum of the ``m − 1`` largest entries of row
  ``j``, so ``B = max_j top_{m−1}(D_j·)`` (≤ ``(m − 1) max D``).
* paper (cut): adding or removing ``j`` changes the cut by at most its row sum, so
  ``B = max_j Σ_i D_ij`` (≈ ``(n − 1)·mean D``).

``lam=None`` uses ``B(1 + 10⁻⁶) + 10⁻⁶·max(max D, 1)``: strictly above the bound after rounding. The paper's literal setting
``λ = 10 max D`` (``lam="paper"``) is below ``B`` for the cut once ``n`` is large
(``B ≈ (n − 1)·mean D``): adding a client to ``S`` then changes the cut by about
``(n − 2|S|)·mean D``, far more than ``λ``, and the optimum leaves ``|S| = m``.
``lam=0`` gives the objective alone, for the cardinality-preserving annealer, whose
moves never leave ``|S| = m``.

The suspicion penalty (Eq. 15)
------------------------------
MultiSignal's QUBO adds ``P_ij = w_s · max(0, τ_s − D_ij)`` to the coefficient of every
pair, where ``τ_s`` is the ``p``-th percentile of the ``i < j`` entries of ``D`` (paper:
``p = 10``, ``w_s = 10``): selecting two suspiciously similar clients together costs
extra, which is what exposes ALIE-type attackers that sit on top of each other near the
honest mean. The paper writes Eq. 15 for its cut objective, ``Q_ij = −2 D_ij + P_ij``,
without restating the penalty of Eq. 9; we keep the penalty, so with ``lam`` the pair
coefficient is ``−2 D_ij + P_ij + 2λ`` (paper) or ``D_ij + P_ij + 2λ`` (intra). The
objective gains ``Σ_{i<j∈S} P_ij``, and ``P ≥ 0`` only adds to the cost of *adding* a
client, so the bounds become ``max_j top_{m−1}(D_j· + P_j·)`` (intra) and
``max_j (Σ_i D_ij + top_{m−1}(P_j·))`` (paper).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["OBJECTIVES", "objective_value", "penalty_bound", "penalty_weight", "qubo_energy", "selection_coefficients",
           "selection_qubo", "suspicion_penalty", "suspicion_qubo"]

OBJECTIVES = ("paper", "intra")

# Relative margin above the bound, so that the inequality is strict after rounding.
_MARGIN = 1e-6


def _check_distances(D: Any) -> np.ndarray:
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square (n, n) distance matrix, got shape {D.shape}")
    if D.shape[0] < 1:
        raise ValueError("D must describe at least one client, got shape (0, 0)")
    if not np.all(np.isfinite(D)):
        bad = np.argwhere(~np.isfinite(D))[0]
        raise ValueError(
            f"D must be finite, got D[{bad[0]}, {bad[1]}]={D[tuple(bad)]}; drop non-finite "
            "clients before building a QUBO"
        )
    if np.any(D < 0):
        bad = np.argwhere(D < 0)[0]
        raise ValueError(f"D must be non-negative, got D[{bad[0]}, {bad[1]}]={D[tuple(bad)]}")
    # Exact symmetry (what qkrum's kernels produce) is one cheap comparison; a matrix off by
    # rounding takes the tolerant check.
    if not np.array_equal(D, D.T) and not np.allclose(D, D.T, rtol=1e-10,
                                                      atol=1e-12 * max(1.0, float(np.abs(D).max()))):
        raise ValueError("D must be symmetric")
    return D


def _check_pair_penalty(P: Any, n: int) -> np.ndarray | None:
    if P is None:
        return None
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (n, n):
        raise ValueError(f"pair_penalty must have the shape of D, ({n}, {n}), got shape {P.shape}")
    if not np.all(np.isfinite(P)) or np.any(P < 0):
        raise ValueError("pair_penalty must be finite and non-negative")
    return P


def _check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got objective={objective!r}")
    return objective


def _check_m(m: Any, n: int) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= n:
        raise ValueError(f"m must be an integer in 1..n={n}, got m={m!r}")
    return int(m)


def _top_row_sums(A: np.ndarray, count: int) -> np.ndarray:
    """Per row, the sum of the ``count`` largest off-diagonal entries."""
    if count <= 0:
        return np.zeros(A.shape[0])
    off = A - np.diag(np.diag(A))
    return (-np.sort(-off, axis=1)[:, :count]).sum(axis=1)


def _bound(D: np.ndarray, m: int, objective: str, P: np.ndarray | None) -> float:
    off = D - np.diag(np.diag(D))
    if objective == "paper":
        rows = off.sum(axis=1)
        if P is not None:
            rows = rows + _top_row_sums(P, m - 1)
        return float(rows.max())
    return float(_top_row_sums(off if P is None else off + P, m - 1).max())


def penalty_bound(D: Any, m: int, objective: str = "intra", pair_penalty: Any = None) -> float:
    """The bound ``B`` of the module docs: any ``λ > B`` enforces ``|S| = m``."""
    D = _check_distances(D)
    objective = _check_objective(objective)
    return _bound(D, m, objective, _check_pair_penalty(pair_penalty, D.shape[0]))


def _weight(D: np.ndarray, m: int, objective: str, lam: Any, P: np.ndarray | None) -> float:
    if lam is None:
        # Strictly above the bound by a margin that survives rounding, also when B = 0
        # (intra with m = 1, where any λ > 0 works but 1e-308 would not in practice).
        return _bound(D, m, objective, P) * (1 + _MARGIN) + _MARGIN * max(float(D.max()), 1.0)
    if isinstance(lam, str):
        if lam != "paper":
            raise ValueError(f"lam must be None, 'paper' or a number >= 0, got lam={lam!r}")
        return 10.0 * float(D.max())
    lam = float(lam)
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be None, 'paper' or a finite number >= 0, got lam={lam}")
    return lam


def penalty_weight(D: Any, m: int, objective: str = "intra", lam: Any = None, pair_penalty: Any = None) -> float:
    """The penalty weight ``λ`` that ``lam`` stands for: ``None``, the provable bound of the
    module docs (:func:`penalty_bound` plus a margin); ``"paper"``, the paper's ``10 · max D``;
    a number ``≥ 0``, itself."""
    D = _check_distances(D)
    objective = _check_objective(objective)
    m = _check_m(m, D.shape[0])
    return _weight(D, m, objective, lam, _check_pair_penalty(pair_penalty, D.shape[0]))


def suspicion_penalty(D: Any, *, percentile: float = 10.0, weight: float = 10.0) -> tuple[np.ndarray, float]:
    """Eq. 15's pair penalty ``P_ij = weight · max(0, τ_s − D_ij)`` and its threshold ``τ_s``.

    ``τ_s`` is the ``percentile``-th percentile (linear interpolation) of the ``i < j``
    entries of ``D``. The diagonal of ``P`` is zero. Paper: ``percentile=10, weight=10``.
    """
    D = _check_distances(D)
    percentile = float(percentile)
    if not (np.isfinite(percentile) and 0.0 <= percentile <= 100.0):
        raise ValueError(f"percentile must lie in [0, 100], got percentile={percentile}")
    weight = float(weight)
    if not (np.isfinite(weight) and weight >= 0.0):
        raise ValueError(f"weight must be a finite number >= 0, got weight={weight}")
    n = D.shape[0]
    if n < 2:
        return np.zeros_like(D), 0.0
    # The i < j entries row by row (n slices: no index arrays of n² entries), and P in place.
    upper = np.concatenate([D[i, i + 1:] for i in range(n - 1)])
    tau = float(np.percentile(upper, percentile))
    P = np.subtract(tau, D)
    np.maximum(P, 0.0, out=P)
    P *= weight
    np.fill_diagonal(P, 0.0)
    return P, tau


def _coefficients(D: np.ndarray, m: int, objective: str, lam: float,
                  P: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """THE formula (validated arguments): ``(h, J, offset)`` of the objective plus
    ``λ(Σx − m)²``. ``J`` is symmetric with a zero diagonal, built from the upper
    triangles of ``D`` and ``P`` (which are symmetric up to rounding)."""
    n = D.shape[0]
    # The diagonal of D (zero for distances) never enters: J's is zeroed below, and the
    # cut's row sums leave it out. Each line is one pass over an (n, n) array.
    if objective == "paper":
        h = D.sum(axis=1) - np.diagonal(D) + lam * (1 - 2 * m)
        quad = D * -2.0
        quad += 2.0 * lam
    else:
        h = np.full(n, lam * (1 - 2 * m))
        quad = D + 2.0 * lam
    if P is not None:
        quad += P
    if np.array_equal(D, D.T) and (P is None or np.array_equal(P, P.T)):
        # Elementwise arithmetic keeps exact symmetry: quad already equals its upper
        # triangle mirrored, without the two (n, n) temporaries of building that.
        np.fill_diagonal(quad, 0.0)
        return h, quad, float(lam * m * m)
    upper = np.triu(quad, k=1)
    return h, upper + upper.T, float(lam * m * m)


def selection_coefficients(D: Any, m: int, *, objective: str = "intra", lam: Any = None,
                           pair_penalty: Any = None) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(h, J, offset, λ)``: the selection QUBO ``h·x + Σ_{i<j} J_ij x_i x_j + offset``
    (``J`` dense, symmetric, zero diagonal) and the penalty weight ``λ`` used.

    Arguments as :func:`selection_qubo`; ``lam=0`` gives the objective alone.
    """
    D = _check_distances(D)
    P = _check_pair_penalty(pair_penalty, D.shape[0])
    objective = _check_objective(objective)
    m = _check_m(m, D.shape[0])
    lam = _weight(D, m, objective, lam, P)
    h, J, offset = _coefficients(D, m, objective, lam, P)
    return h, J, offset, lam


def selection_qubo(D: Any, m: int, *, objective: str = "intra", lam: Any = None,
                   pair_penalty: Any = None) -> tuple[np.ndarray, float]:
    """Build the selection QUBO: an upper-triangular ``(n, n)`` matrix and the offset.

    Args:
        D: ``(n, n)`` distance matrix (symmetric, zero diagonal, finite, ``≥ 0``).
        m: clients to select, ``1 ≤ m ≤ n``.
        objective: ``"paper"`` (Eqs. 8–11, the cut) or ``"intra"`` (within-subset sum).
        lam: penalty weight ``λ`` of Eq. 9. ``None``: the provable bound of the module
            docs; ``"paper"``: the paper's ``10 · max D``; ``0``: no penalty (for the
            cardinality-preserving annealer); or a non-negative number.
        pair_penalty: optional ``(n, n)`` non-negative matrix added to every pair's
            coefficient (the suspicion penalty of Eq. 15, :func:`suspicion_penalty`).
    """
    h, J, offset, _ = selection_coefficients(D, m, objective=objective, lam=lam, pair_penalty=pair_penalty)
    Q = np.triu(J, k=1)
    Q[np.diag_indices(h.shape[0])] = h
    return Q, offset


def suspicion_qubo(D: Any, m: int, *, objective: str = "intra", lam: Any = None, percentile: float = 10.0,
                   weight: float = 10.0) -> tuple[np.ndarray, float]:
    """The suspicion-penalised selection QUBO (Eq. 15): :func:`selection_qubo` with the
    pair penalty of :func:`suspicion_penalty`."""
    P, _ = suspicion_penalty(D, percentile=percentile, weight=weight)
    return selection_qubo(D, m, objective=objective, lam=lam, pair_penalty=P)


def objective_value(D: Any, selected: Any, objective: str = "intra", pair_penalty: Any = None) -> float:
    """The selection objective without the cardinality penalty: the cut (``"paper"``) or the
    within-subset distance (``"intra"``) of the selection, plus ``Σ_{i<j∈S} P_ij`` for a
    pair penalty ``P`` (Eq. 15). It is the energy under the coefficients of
    :func:`selection_coefficients` at ``λ = 0``, the same formula the QUBOs come from."""
    D = _check_distances(D)
    P = _check_pair_penalty(pair_penalty, D.shape[0])
    objective = _check_objective(objective)
    selected = np.asarray(selected)
    if selected.shape != (D.shape[0],):
        raise ValueError(f"selected must have shape ({D.shape[0]},), got shape {selected.shape}")
    inside = np.flatnonzero(selected)
    if objective == "intra":
        # At λ = 0 the intra coefficients are h = 0 and J = D + P off the diagonal, so the
        # energy Σ_{i<j∈S} J_ij is half of x·(D + P)x less the diagonal: two matrix-vector
        # products instead of building J.
        x = np.zeros(D.shape[0])
        x[inside] = 1.0
        total = x @ (D @ x) - np.diagonal(D)[inside].sum()
        if P is not None:
            total += x @ (P @ x) - np.diagonal(P)[inside].sum()
        return float(0.5 * total)
    h, J, _ = _coefficients(D, 0, objective, 0.0, P)
    return float(h[inside].sum() + np.triu(J[np.ix_(inside, inside)], 1).sum())


def qubo_energy(Q: Any, x: Any, offset: float = 0.0) -> np.ndarray:
    """Energies of one state ``(n,)`` or a batch ``(k, n)`` under an upper-triangular QUBO."""
    Q = np.asarray(Q, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    upper = np.triu(Q, k=1)
    lin = np.diag(Q)
    if x.ndim == 1:
        return float(x @ lin + x @ upper @ x + offset)
    return x @ lin + np.einsum("ki,ij,kj->k", x, upper, x) + offset
