"""The annealing kernels: the compiled ``qkrum._core`` or the NumPy fallback.

Both expose ``anneal_dense``, ``anneal_csr``, ``exact_dense`` and ``read_seed`` with the
same signatures, semantics and errors (see ``csrc/anneal.hpp``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from qkrum._native import core

__all__ = ["impl", "name"]


def impl() -> ModuleType:
    """The active implementation module."""
    if core is not None:
        return core
    return importlib.import_module("qkrum.anneal._python")


def name() -> str:
    return "native" if core is not None else "python"
