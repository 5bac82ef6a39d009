"""Detection metrics (the paper's Table II) and the cost of an aggregate.

Byzantine clients are the positive class and a *rejected* client is a positive
prediction ("flagged"). A ratio whose denominator is zero (e.g. the rejection rate when
no client is Byzantine) is ``nan``: it is undefined, not perfect, and averaging over
rounds should use ``np.nanmean``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["aggregate_error", "detection"]


def _as_mask(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D mask over clients, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.integer) or not np.isin(arr, (0, 1)).all():
            raise TypeError(f"{name} must be boolean (or 0/1 integers), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def detection(selected: Any, is_byzantine: Any) -> dict:
    """Confusion counts and Table II metrics for one round.

    Args:
        selected: bool ``(n,)``, True for the clients the server aggregated.
        is_byzantine: bool ``(n,)``, True for the clients that were Byzantine.

    Returns a dict with ``tp``, ``fp``, ``tn``, ``fn`` (ints) and ``accuracy`` =
    (TP+TN)/n, ``f1`` = 2TP/(2TP+FP+FN), ``rejection_rate`` = TP/f and
    ``retention_rate`` = TN/(n−f) (floats, ``nan`` when undefined).
    """
    sel = _as_mask("selected", selected)
    byz = _as_mask("is_byzantine", is_byzantine)
    if sel.shape != byz.shape:
        raise ValueError(
            f"selected and is_byzantine must have the same length, got {sel.shape[0]} and {byz.shape[0]}"
        )
    if sel.size == 0:
        raise ValueError("selected is empty: detection metrics need at least one client")
    flagged = ~sel
    tp = int(np.sum(flagged & byz))
    fp = int(np.sum(flagged & ~byz))
    tn = int(np.sum(sel & ~byz))
    fn = int(np.sum(sel & byz))
    n, f = sel.size, int(byz.sum())
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": (tp + tn) / n,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "rejection_rate": _ratio(tp, f),
        "retention_rate": _ratio(tn, n - f),
    }


def aggregate_error(aggregate: Any, reference: Any) -> dict:
    """How far an aggregate lies from a reference, usually the mean of the honest updates.

    This is what an attack that cannot be detected still costs: a mimic-style update
    that is selected shifts the mean by its deviation divided by the number selected.
    Both arguments are arrays or pytrees of the same structure (flattened in
    ``jax.tree_util`` order). Returns ``l2`` = ‖a − r‖, ``relative`` = ‖a − r‖/‖r‖
    (``inf`` if ‖r‖ = 0 < ‖a − r‖, 0 if both are 0) and ``cosine`` similarity of a and r
    (``nan`` when either is the zero vector).
    """
    a_leaves, a_def = jax.tree_util.tree_flatten(aggregate)
    r_leaves, r_def = jax.tree_util.tree_flatten(reference)
    if a_def != r_def:
        raise ValueError(f"aggregate and reference must have the same structure, got {a_def} and {r_def}")
    a = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in a_leaves])
    r = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in r_leaves])
    if a.shape != r.shape:
        raise ValueError(f"aggregate has {a.size} values but reference has {r.size}")
    err = float(np.linalg.norm(a - r))
    ref_norm = float(np.linalg.norm(r))
    a_norm = float(np.linalg.norm(a))
    if ref_norm > 0:
        relative = err / ref_norm
    else:
        relative = 0.0 if err == 0 else float("inf")
    cosine = float(a @ r / (a_norm * ref_norm)) if a_norm > 0 and ref_norm > 0 else float("nan")
    return {"l2": err, "relative": relative, "cosine": cosine}

