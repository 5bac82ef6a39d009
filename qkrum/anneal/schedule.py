"""Inverse-temperature (β) ranges and schedules for simulated annealing.

Energies are those of the QUBO ``E(x) = h·x + Σ_{i<j} J_ij x_i x_j``; a single flip of
``x_i`` changes ``E`` by ``±f_i`` with the local field ``f_i = h_i + Σ_j J_ij x_j``.

qkrum's default range
---------------------
* Hot end (as dwave-samplers): every flip, even against the largest possible field
  ``max_i (|h_i| + Σ_j |J_ij|)``, is accepted with probability at least 1/2.
* Cold end: an excitation of the problem's *fine* energy scale ``δ`` is accepted with
  probability ``ε / n`` (ε = 0.01), so the final sweeps leave about ``ε`` excitations in
  total. dwave-samplers takes ``δ`` from the smallest coefficient. For QUBOs with a
  constraint penalty every coupling carries the penalty ``λ``, so the smallest coefficient
  is of order ``λ`` while the alternatives that matter differ by the *spread* of the
  coefficients (for the selection QUBO, ``Q_ij = 2λ − 2D_ij``: the spread is that of
  ``D``, independent of ``λ``). qkrum therefore takes ``δ`` as the smallest positive
  value among the smallest nonzero ``|J_ij|``, ``|h_i|`` and the standard deviations of
  the nonzero couplings and of the linear biases. For problems without a penalty this
  gives the same order of magnitude as dwave-samplers' rule.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["BETA_SCHEDULE_TYPES", "default_beta_range", "make_beta_schedule"]

BETA_SCHEDULE_TYPES = ("linear", "geometric", "custom")

EXCITATION_RATE = 0.01


def default_beta_range(h: np.ndarray, row_abs_sums: np.ndarray, coupling_values: np.ndarray,
                       *, swaps: bool = False) -> tuple[float, float]:
    """qkrum's default ``(β_hot, β_cold)`` (see the module docs).

    Args:
        h: linear biases ``(n,)``.
        row_abs_sums: ``Σ_j |J_ij|`` per variable ``(n,)``.
        coupling_values: the nonzero couplings, each pair once.
        swaps: the range is for cardinality-preserving swaps, whose energy change
            involves two fields, so the hot end is halved.
    """
    h = np.asarray(h, dtype=np.float64)
    n = h.shape[0]
    max_field = float(np.max(np.abs(h) + row_abs_sums)) if n else 0.0
    if swaps:
        max_field *= 2
    coupling_values = np.asarray(coupling_values, dtype=np.float64)
    nz_j = np.abs(coupling_values[coupling_values != 0])
    nz_h = np.abs(h[h != 0])
    candidates = []
    if nz_j.size:
        candidates.append(nz_j.min())
        if nz_j.size > 1:
            candidates.append(float(np.std(coupling_values[coupling_values != 0])))
    if nz_h.size:
        candidates.append(nz_h.min())
        if n > 1:
            candidates.append(float(np.std(h)))
    candidates = [c for c in candidates if c > 0 and math.isfinite(c)]
    if max_field == 0 or not candidates:
        # Every energy is equal: any range samples uniformly; keep one that is valid.
        return 0.1, 1.0
    hot = math.log(2.0) / max_field
    fine = min(candidates)
    cold = math.log(max(n, 1) / EXCITATION_RATE) / fine
    return hot, max(hot, cold)


def make_beta_schedule(beta_range: Sequence[float] | None, num_sweeps: int, schedule_type: str,
                       num_sweeps_per_beta: int = 1, beta_schedule: Sequence[float] | None = None) -> np.ndarray:
    """The per-sweep β values (length ``num_sweeps``), each repeated ``num_sweeps_per_beta``."""
    if schedule_type == "custom":
        betas = np.asarray(beta_schedule, dtype=np.float64)
    else:
        num_betas = num_sweeps // num_sweeps_per_beta
        lo, hi = beta_range
        if num_betas == 1:
            betas = np.array([hi], dtype=np.float64)
        elif schedule_type == "linear":
            betas = np.linspace(lo, hi, num_betas)
        else:
            betas = np.geomspace(lo, hi, num_betas)
    return np.repeat(betas, num_sweeps_per_beta)
