"""qkrum: Byzantine-robust client selection for federated learning.

The server receives ``n`` client updates per round, ``f`` of them possibly Byzantine,
and :func:`select` decides which ``m = n − f`` to aggregate. See the README for the
methods and their sources.
"""

import importlib

from qkrum import attacks, ensemble, kernels, metrics, qubo, rules, synthetic
from qkrum._native import IMPLEMENTATION, build_info
from qkrum._validation import as_client_matrix
from qkrum.aggregator import Aggregator, AggregatorState, aggregator
from qkrum.errors import CardinalityRepairWarning
from qkrum.rules import PreAggregator, Rule, chain, preaggregator, rule
from qkrum.selection import METHODS, NORM_GUARD, ByzantineMajorityWarning, SamplerError, Selection, aggregate, select
from qkrum import baselines  # noqa: E402  (the classical statistics under their historical name)

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATION",
    "Aggregator",
    "AggregatorState",
    "ByzantineMajorityWarning",
    "CardinalityRepairWarning",
    "anneal",
    "METHODS",
    "NORM_GUARD",
    "PreAggregator",
    "Rule",
    "SamplerError",
    "Selection",
    "aggregate",
    "aggregator",
    "ensemble",
    "as_client_matrix",
    "attacks",
    "baselines",
    "chain",
    "cqsa",
    "fl",
    "build_info",
    "kernels",
    "metrics",
    "preaggregator",
    "qubo",
    "rule",
    "rules",
    "select",
    "synthetic",
    "__version__",
]


def __getattr__(name: str):
    # qkrum.anneal pulls in dimod, qkrum.fl flax (the fl extra); load them on first use rather
    # than on `import qkrum`.
    if name in ("anneal", "cqsa", "fl"):
        return importlib.import_module(f"qkrum.{name}")
    raise AttributeError(f"module 'qkrum' has no attribute {name!r}")
