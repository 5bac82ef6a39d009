"""Optional dependencies: import one, or say which extra of qkrum installs it.

The core install (``pip install qkrum``) is jax, numpy, dimod and optax: enough for
:func:`qkrum.select`, :func:`qkrum.aggregator`, :mod:`qkrum.anneal`, :mod:`qkrum.qubo`,
:mod:`qkrum.attacks` and :mod:`qkrum.cqsa`. Everything else (the FL simulator's flax and
scikit-learn, matplotlib for plots, tensorflow-datasets, D-Wave's samplers) is imported
through :func:`require` where it is used, so a missing one is an :class:`ImportError` that
names the extra to install, not a bare ``No module named ...``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, what: str, *, package: str | None = None) -> ModuleType:
    """``importlib.import_module(module)``, or an :class:`ImportError` naming the extra.

    Args:
        module: the module to import, e.g. ``"flax.linen"`` or ``"sklearn.datasets"``.
        extra: the extra of qkrum that installs it, e.g. ``"fl"`` (or ``"fl,plot"``).
        what: the feature that needs it, e.g. ``"qkrum simulate"``; starts the message.
        package: the distribution's name when it differs from the module's top-level
            name (``"scikit-learn"`` for ``sklearn``); only for the message.

    Raises:
        ImportError: ``"{what} needs {package}, which is not installed; install it with:
            pip install 'qkrum[{extra}]'"`` (a :class:`ModuleNotFoundError` when the module
            itself is missing), chained from the original error. When the module is
            installed but does not import (a dependency of it is missing, or a version
            mismatch), the message says so and quotes the original error instead.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.partition(".")[0]
        hint = f"install it with: pip install 'qkrum[{extra}]'"
        missing = getattr(exc, "name", None)
        if isinstance(exc, ModuleNotFoundError) and missing and (
                module == missing or module.startswith(missing + ".")):
            raise ModuleNotFoundError(f"{what} needs {name}, which is not installed; {hint}",
                                      name=module) from exc
        raise ImportError(f"{what} needs {name}, which is installed but does not import ({exc}); "
                          f"{hint}", name=module) from exc
