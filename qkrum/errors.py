"""Exception and warning classes shared by several qkrum modules.

They live here, in a module without imports, so that the solver layer
(:mod:`qkrum.anneal`, :mod:`qkrum.qubo`) raises the same class that
:func:`qkrum.select` documents, without importing :mod:`qkrum.selection` (and JAX).
"""

from __future__ import annotations

__all__ = ["CardinalityRepairWarning", "SamplerError"]


class SamplerError(RuntimeError):
    """A QUBO sampler failed (it raised, could not be created, or answered with something
    that is not a solution); the round has no trustworthy QUBO selection.

    The message names the sampler by its type and says what it raised, including the
    root cause of a chained exception; the original exception is ``__cause__``.
    """


class CardinalityRepairWarning(UserWarning):
    """The sampler's answer did not select exactly ``m`` clients, so the repair step
    (paper IV-C) added or dropped clients by their distance sums."""
