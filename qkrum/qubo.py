"""The selection QUBOs: the one source of their coefficients.

Client selection picks ``m`` of ``n`` clients, ``x_i = 1`` for a selected client, from a
distance matrix ``D`` (symmetric, zero diagonal, ``D ≥ 0``). A QUBO here is an upper-
triangular matrix ``Q`` with energy ``E(x) = Σ_i Q_ii x_i + Σ_{i<j} Q_ij x_i x_j + offset``.

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["OBJECTIVES", "penalty_bound", "qubo_energy", "selection_qubo"]

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
    if not np.allclose(D, D.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(D).max()))):
        raise ValueError("D must be symmetric")
    return D


def penalty_bound(D: Any, m: int, objective: str = "intra") -> float:
    """The bound ``B`` of the module docs: any ``λ > B`` enforces ``|S| = m``."""
    D = _check_distances(D)
    objective = _check_objective(objective)
    off = D - np.diag(np.diag(D))
    if objective == "paper":
        return float(off.sum(axis=1).max())
    if m <= 1:
        return 0.0
    top = -np.sort(-off, axis=1)[:, : m - 1]
    return float(top.sum(axis=1).max())


def _check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got objective={objective!r}")
    return objective


def selection_qubo(D: Any, m: int, *, objective: str = "intra", lam: Any = None) -> tuple[np.ndarray, float]:
    """Build the selection QUBO: an upper-triangular ``(n, n)`` matrix and the offset.

    Args:
        D: ``(n, n)`` distance matrix (symmetric, zero diagonal, finite, ``≥ 0``).
        m: clients to select, ``1 ≤ m ≤ n``.
        objective: ``"paper"`` (Eqs. 8–11, the cut) or ``"intra"`` (within-subset sum).
        lam: penalty weight ``λ`` of Eq. 9. ``None``: the provable bound of the module
            docs; ``"paper"``: the paper's ``10 · max D``; ``0``: no penalty (for the
            cardinality-preserving annealer); or a non-negative number.
    """
    D = _check_distances(D)
    objective = _check_objective(objective)
    n = D.shape[0]
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= n:
        raise ValueError(f"m must be an integer in 1..n={n}, got m={m!r}")
    m = int(m)
    if lam is None:
        # Strictly above the bound by a margin that survives rounding, also when B = 0
        # (intra with m = 1, where any λ > 0 works but 1e-308 would not in practice).
        bound = penalty_bound(D, m, objective)
        lam = bound * (1 + _MARGIN) + _MARGIN * max(float(D.max()), 1.0)
    elif isinstance(lam, str):
        if lam != "paper":
            raise ValueError(f"lam must be None, 'paper' or a number >= 0, got lam={lam!r}")
        lam = 10.0 * float(D.max())
    else:
        lam = float(lam)
        if not (np.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be None, 'paper' or a finite number >= 0, got lam={lam}")

    off = D - np.diag(np.diag(D))
    if objective == "paper":
        linear = off.sum(axis=1) + lam * (1 - 2 * m)
        quad = -2.0 * off + 2.0 * lam
    else:
        linear = np.full(n, lam * (1 - 2 * m))
        quad = off + 2.0 * lam
    Q = np.triu(quad, k=1)
    Q[np.diag_indices(n)] = linear
    return Q, float(lam * m * m)


def qubo_energy(Q: Any, x: Any, offset: float = 0.0) -> np.ndarray:
    """Energies of one state ``(n,)`` or a batch ``(k, n)`` under an upper-triangular QUBO."""
    Q = np.asarray(Q, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    upper = np.triu(Q, k=1)
    lin = np.diag(Q)
    if x.ndim == 1:
        return float(x @ lin + x @ upper @ x + offset)
    return x @ lin + np.einsum("ki,ij,kj->k", x, upper, x) + offset
