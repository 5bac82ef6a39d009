"""qkrum: Byzantine-robust client selection for federated learning.

The server receives ``n`` client updates per round, ``f`` of them possibly Byzantine,
and :func:`select` decides which ``m = n − f`` to aggregate. See the README for the
methods and their sources.
"""

from qkrum import attacks, kernels, metrics, synthetic
from qkrum._native import IMPLEMENTATION, build_info
from qkrum._validation import as_client_matrix
from qkrum.selection import METHODS, Selection, aggregate, select

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATION",
    "METHODS",
    "Selection",
    "aggregate",
    "as_client_matrix",
    "attacks",
    "build_info",
    "kernels",
    "metrics",
    "select",
    "synthetic",
    "__version__",
]
