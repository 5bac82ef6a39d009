"""The MultiSignal ensemble's decision rules (paper IV-E): the routing gate and agreement voting.

Pure functions over small per-client arrays; the distance and QUBO stages that feed them
live in :mod:`qkrum.selection`.

Routing gate: one reading of the thresholds
-------------------------------------------
The paper's text compares the cosine gap ``Δ_C`` with ``τ_E`` in three of its four
conditions and with ``τ_C`` in one, which leaves ``Δ_E ≤ τ_E, τ_E < Δ_C ≤ τ_C`` to the
final ``else`` (evasion) of Algorithm 1. We read each threshold as belonging to its own
gap: the Euclidean signal is *clear* when ``Δ_E > τ_E`` and the cosine signal is clear
when ``Δ_C > τ_C``, giving a 2 × 2 partition with no overlap and no hole:

============  ===============  ===============  ===========================================
regime        ``Δ_E > τ_E``    ``Δ_C > τ_C``    selection
============  ===============  ===============  ===========================================
outlier       yes              yes              MultiKrum on Euclidean Krum scores
magnitude     yes              no               MultiKrum on Euclidean Krum scores
clustered     no               yes              MultiKrum on cosine Krum scores
evasion       no               no               suspicion QUBO + agreement voting
============  ===============  ===============  ===========================================

Every round the paper routes to MultiKrum is routed to MultiKrum here and every round it
calls evasion is evasion here; the only difference in *labels* is a round with
``Δ_E > τ_E`` and ``τ_E < Δ_C ≤ τ_C``, which the text calls outlier and we call magnitude
(both use Euclidean MultiKrum). In the clustered regime we rank by the cosine Krum scores,
the signal that separates there (Algorithm 1 uses Euclidean MultiKrum in all three
classical regimes, but the paper reports never producing a clustered round, and with
``Δ_E ≤ τ_E`` the Euclidean boundary is by definition not a clear one).

Agreement voting
----------------
In the evasion regime both MultiKrum (``S_c``) and the suspicion QUBO (``S_q``) have run.
Each client gets the cosine Krum score normalised to ``[0, 1]`` over the valid clients
(lower = more trusted) plus an adjustment by category:

=================  ===========================  ===============
category           condition                    default weight
=================  ===========================  ===============
agreed-accept      in ``S_c`` and ``S_q``       −2.0 (bonus)
QUBO-only          in ``S_q`` only              0.0
classical-only     in ``S_c`` only              +0.5
agreed-reject      in neither                   +2.0
=================  ===========================  ===============

and the ``m`` lowest blended scores are selected. The normalised score spans a range of
1, so with these weights an agreed-accept client always ranks strictly first and an
agreed-reject client strictly last (what both detectors agree on is final); QUBO-only and classical-only
clients compete on their cosine scores with the QUBO's side ahead by half the normalised
range (the paper: "classical is given a low confidence" in this regime, and it calls the
vote "QUBO-primary"). A QUBO-only client is replaced only by a classical-only client whose
normalised cosine score is more than 0.5 lower. Ties go to the lower client index.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qkrum._validation import check_real

__all__ = ["REGIMES", "VoteWeights", "agreement_vote", "check_threshold", "route", "vote_categories"]

#: Regime names, in the order of the table above.
REGIMES = ("outlier", "magnitude", "clustered", "evasion")


class VoteWeights(NamedTuple):
    """Adjustments added to the normalised cosine Krum score by vote category (lower wins)."""

    agreed_accept: float = -2.0
    qubo_only: float = 0.0
    classical_only: float = 0.5
    agreed_reject: float = 2.0


def check_threshold(name: str, value) -> float:
    """A gap threshold: a finite number ``>= 0`` (gaps are normalised by a std, so ``>= 0``)."""
    return check_real(name, value, low=0.0)


def route(delta_e: float, delta_c: float, tau_e: float = 0.2, tau_c: float = 0.5) -> str:
    """The regime of a round from its Euclidean and cosine Krum-score gaps (Eq. 13).

    A NaN gap (no finite scores to compare) counts as not clear.
    """
    euclid_clear = bool(delta_e > tau_e)
    cosine_clear = bool(delta_c > tau_c)
    if euclid_clear:
        return "outlier" if cosine_clear else "magnitude"
    return "clustered" if cosine_clear else "evasion"


def vote_categories(classical: np.ndarray, qubo: np.ndarray) -> np.ndarray:
    """Per client, 0 agreed-accept, 1 QUBO-only, 2 classical-only, 3 agreed-reject."""
    classical = np.asarray(classical, dtype=bool)
    qubo = np.asarray(qubo, dtype=bool)
    return np.where(classical & qubo, 0, np.where(qubo, 1, np.where(classical, 2, 3)))


def agreement_vote(classical: np.ndarray, qubo: np.ndarray, cosine_scores: np.ndarray, m: int,
                   valid: np.ndarray | None = None, weights: VoteWeights = VoteWeights()) -> np.ndarray:
    """Select ``m`` clients by the blended rank of the module docs; returns a bool mask.

    Invalid clients (and clients whose cosine score is not finite) are never selected.
    """
    weights = VoteWeights(*weights)
    for name, value in weights._asdict().items():
        if not np.isfinite(value):
            raise ValueError(f"weights.{name} must be finite, got {value}")
    scores = np.asarray(cosine_scores, dtype=np.float64)
    n = scores.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, dtype=bool)
    usable = valid & np.isfinite(scores)
    if not usable.any():
        return np.zeros(n, dtype=bool)
    lo, hi = scores[usable].min(), scores[usable].max()
    normalised = (scores - lo) / (hi - lo) if hi > lo else np.zeros(n)
    blended = normalised + np.asarray(weights)[vote_categories(classical, qubo)]
    blended = np.where(usable, blended, np.inf)
    order = np.argsort(blended, kind="stable")
    selected = np.zeros(n, dtype=bool)
    selected[order[: min(m, int(usable.sum()))]] = True
    return selected
