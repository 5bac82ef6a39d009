"""One round's inputs, shared by the stages of a rule, with every distance computed once.

The ensembles need several views of the same updates (Euclidean on the full updates,
cosine on the projection, the QUBO's dual distance); :class:`Round` computes each at
most once and records the seconds per stage for :class:`qkrum.Selection`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import kernels
from qkrum._validation import check_krum_neighbours

__all__ = ["Round"]


def _block(x):
    return jax.block_until_ready(x)


class Round:
    """One round's inputs, shared by the stages of a method, with each distance matrix
    computed at most once (the ensembles need several views of the same updates).

    Attributes: ``full`` (n, d) updates; ``x`` the projected updates (``full`` when no
    projection); ``valid`` (JAX bool) and ``valid_np``; ``f``, ``m``; ``key``;
    ``timings``, the per-stage seconds that :class:`Selection` reports.
    """

    def __init__(self, full, valid, f, m, key, timings, project: int | None = None):
        self.full, self.valid = full, valid
        self.valid_np = np.asarray(valid)
        self.f, self.m, self.key, self.timings = f, m, key, timings
        self.project = project if project is not None and project < full.shape[1] else None
        self._cache: dict[str, Any] = {}

    def without(self, excluded: np.ndarray) -> "Round":
        """The same round with the ``excluded`` clients made invalid (same ``f``, ``m``,
        key and timings). The full updates' Gram matrix does not depend on validity and is
        shared; the projection does (its variances are over the valid clients) and is not."""
        rest = Round(self.full, self.valid & jnp.asarray(~np.asarray(excluded, bool)), self.f, self.m, self.key,
                     self.timings, self.project)
        if "gram_full" in self._cache:
            rest._cache["gram_full"] = self._cache["gram_full"]
        return rest

    @property
    def n(self) -> int:
        return self.full.shape[0]

    @property
    def x(self):
        """The projected updates (IV-A), computed on first use: methods that work on the
        full updates only (the classical baselines) never pay for the projection."""
        if self.project is None:
            return self.full
        return self.cached("projected", "projection",
                           lambda: kernels.project_topk_variance(self.full, self.project, self.valid))

    def timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, blocking on its result, and add the seconds to ``timings[stage]``."""
        t0 = time.perf_counter()
        out = _block(fn())
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0
        return out

    def cached(self, name: str, stage: str, fn: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = self.timed(stage, fn)
        return self._cache[name]

    def gram(self, *, full: bool = False):
        """The Gram matrix of the projected (or full) updates: every distance derives from it."""
        if full or self.project is None:
            return self.cached("gram_full", "distances_full", lambda: kernels.gram(self.full))
        return self.cached("gram", "distances", lambda: kernels.gram(self.x))

    def sq_euclidean(self, *, full: bool = False):
        """Squared Euclidean distances on the projected (or, with ``full``, the full) updates."""
        name = "sq_euclid_full" if full or self.project is None else "sq_euclid"
        stage = "distances_full" if name == "sq_euclid_full" else "distances"
        g = self.gram(full=full)
        return self.cached(name, stage, lambda: kernels.sq_euclidean_from_gram(g, self.valid))

    def cosine(self):
        """Cosine distances (Eq. 5) on the projected updates."""
        g = self.gram()
        return self.cached("cosine", "distances", lambda: kernels.cosine_from_gram(g, 1e-8, self.valid))

    def euclidean_hat(self):
        """Euclidean distances normalised to [0, 1] (Eq. 7) on the projected updates."""
        sq = self.sq_euclidean()
        return self.cached("euclid_hat", "distances", lambda: kernels.normalized_euclidean(jnp.sqrt(sq)))

    def distance(self, kind: str, alpha: float = 0.5) -> np.ndarray:
        """The QUBO's distance matrix on the projected updates, as float64 NumPy."""
        if kind == "cosine":
            D = self.cosine()
        elif kind == "euclidean":
            D = self.euclidean_hat()
        else:
            # Eq. 14 from the two matrices already computed, not a third pass over x.
            e, c = self.euclidean_hat(), self.cosine()
            D = self.cached(f"dual{alpha}", "distances", lambda: kernels.dual_blend(e, c, alpha))
        return np.asarray(D, dtype=np.float64)

    def krum(self, metric: str):
        """Krum scores (Eq. 2) with ``n − f − 2`` neighbours under ``metric``:
        ``"euclidean_full"`` (full updates), ``"euclidean"`` or ``"cosine"`` (projected)."""
        check_krum_neighbours(self.n, self.f)
        D = {"euclidean_full": lambda: self.sq_euclidean(full=True), "euclidean": self.sq_euclidean,
             "cosine": self.cosine}[metric]()
        n_valid = int(self.valid_np.sum())
        if n_valid == 1:  # no neighbour to score against: the one valid client is the best
            return self.cached(f"krum_{metric}", "scores", lambda: jnp.where(self.valid, 0.0, jnp.inf))
        # With fewer than n − f − 1 valid clients every valid score would sum an infinite
        # distance, all would tie at +inf and the selection would follow the client index.
        # Count only the valid neighbours then: n − f_eff − 2 = n_valid − 1.
        f_eff = max(self.f, self.n - n_valid - 1)
        return self.cached(f"krum_{metric}", "scores", lambda: kernels.krum_scores(D, f_eff))

    def gap(self, scores) -> float:
        """Eq. 13's normalised gap at ``m`` (``inf`` when ``m`` reaches every client)."""
        if self.m >= self.n:
            return float("inf")
        return float(self.timed("scores", lambda: kernels.krum_gap(scores, self.m)))

    def multikrum(self, scores) -> np.ndarray:
        return np.asarray(self.timed("selection", lambda: kernels.multikrum_select(scores, self.m, self.valid)))

    def seed(self) -> int:
        return int(jax.random.randint(self.key, (), 0, 2**31 - 1))


