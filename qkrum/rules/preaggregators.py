"""Pre-aggregation steps as values: ``nnm``, ``bucketing``, ``clipping``, ``arc``.

Each factory validates its hyperparameters and returns a
:class:`qkrum.rules.PreAggregator`; :func:`qkrum.chain` puts them in front of a rule,
e.g. ``qkrum.chain("nnm", "trimmed_mean")``. The formulas, their sources and their
handling of invalid clients are in :mod:`qkrum.rules.preaggregation`.
"""

from __future__ import annotations

from qkrum._validation import check_int, check_real
from qkrum.rules import preaggregation as pa
from qkrum.rules.base import PreAggregator, PreResult, factory_of

__all__ = ["arc", "bucketing", "clipping", "nnm"]


def _nnm_step(x, valid, f, key):
    return PreResult(pa.nearest_neighbor_mixing(x, valid, f), valid)


@factory_of("nnm", kind="pre")
def nnm() -> PreAggregator:
    """Nearest-neighbour mixing (Allouah et al., AISTATS 2023): each valid update is
    replaced by the mean of its ``n − f`` nearest valid updates (itself included). No
    options; ``f`` is the round's."""
    return PreAggregator("nnm", (), step=_nnm_step)


@factory_of("bucketing", kind="pre")
def bucketing(*, s: int = 2) -> PreAggregator:
    """Bucketing (Karimireddy, He, Jaggi, ICLR 2022): the valid clients, in a random order
    drawn from the round's seed, are cut into buckets of ``s >= 1`` and each bucket is
    replaced by its mean. The rule after it sees ``ceil(n / s)`` rows and the round's
    ``f``; a client is selected when its bucket is."""
    s = check_int("s", s, minimum=1)

    def step(x, valid, f, key):
        return PreResult(*pa.bucketing(x, valid, s, key))

    return PreAggregator("bucketing", (), step=step, rows=lambda n: pa.num_buckets(n, s))


@factory_of("clipping", kind="pre")
def clipping(*, c: float = 1.0) -> PreAggregator:
    """Static norm clipping: each valid update scaled to norm at most ``c > 0``."""
    c = check_real("c", c, low=0.0, low_open=True)

    def step(x, valid, f, key):
        return PreResult(pa.static_clipping(x, valid, c), valid)

    return PreAggregator("clipping", (), step=step)


def _arc_step(x, valid, f, key):
    return PreResult(pa.adaptive_robust_clipping(x, valid, f), valid)


@factory_of("arc", kind="pre")
def arc() -> PreAggregator:
    """Adaptive robust clipping (Allouah et al., 2024): the ``⌊2 (f/n)(n − f)⌋`` largest
    valid updates are clipped to the norm of the next largest. No options."""
    return PreAggregator("arc", (), step=_arc_step)
