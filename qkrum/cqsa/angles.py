"""The one angle reduction of the CQSA code: phases to the circle ``(-pi, pi]``."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["wrap_angle"]


def wrap_angle(angle: Any) -> Any:
    """Reduce angles to ``(-pi, pi]`` (``-pi`` is the same angle as ``pi`` and becomes it).

    JAX arrays (and tracers) stay JAX, anything else is computed in NumPy, so the readout
    of one cluster, the surrogate's draws and the error statistics share one formula.
    """
    xp = jnp if isinstance(angle, jax.Array) else np
    angle = xp.asarray(angle)
    return angle - (2.0 * math.pi) * xp.ceil((angle - math.pi) / (2.0 * math.pi))
