"""The annealing kernels: the compiled ``qkrum._core`` or the NumPy fallback.

Both expose ``anneal_dense``, ``anneal_csr``, ``exact_dense`` and ``read_seed`` with the
same signatures, semantics and errors (see ``csrc/anneal.hpp``), and sample the same
distribution, but from different random streams: for one seed they give different
samples. :func:`name` says which one runs; qkrum's samplers record it in
``info["implementation"]``. Both functions read the module global ``core`` (set from
:mod:`qkrum._native`, ``None`` when the extension is missing or
``QKRUM_IMPLEMENTATION=python``), so the two can never disagree.
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
    """``"native"`` or ``"python"``: the implementation :func:`impl` returns."""
    return "native" if core is not None else "python"
