"""Input checks shared by every public entry point.

Every error names the offending parameter and its value, so that a caller who passes
bad input from deep inside a training loop can see at once what was wrong.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_client_matrix",
    "as_key",
    "check_byzantine_count",
    "check_float_dtype",
    "check_int",
    "check_krum_neighbours",
    "check_num_selected",
    "check_options",
    "check_probability",
    "check_real",
]


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        # NumPy/JAX integer scalars are accepted; floats are not, even 3.0, because a float
        # count almost always means a caller computed it by division and forgot to round.
        if not (hasattr(value, "dtype") and np.issubdtype(np.asarray(value).dtype, np.integer)
                and np.ndim(value) == 0):
            raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {name}={value}")
    return value


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a finite float within the given bounds, or raise naming ``name``.

    Python and NumPy/JAX real scalars are accepted; bools and strings are not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if not (hasattr(value, "dtype") and np.ndim(value) == 0
                and (np.issubdtype(np.asarray(value).dtype, np.floating)
                     or np.issubdtype(np.asarray(value).dtype, np.integer))):
            raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    ok = np.isfinite(value)
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        if low is not None and high is not None:
            span = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            span = f"be a finite number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            span = f"be a finite number {'<' if high_open else '<='} {high:g}"
        else:
            span = "be a finite number"
        raise ValueError(f"{name} must {span}, got {name}={value}")
    return value


def check_options(owner: str, options: dict, allowed) -> None:
    """Raise ``TypeError`` naming the unknown keys of ``options`` and the valid ones."""
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    if not allowed:
        raise TypeError(f"{owner} takes no options, got {unknown}")
    raise TypeError(f"{owner} got unknown option(s) {unknown}; valid options: {', '.join(allowed)}")


def check_probability(name: str, value: Any, *, open_low: bool = False, open_high: bool = False) -> float:
    """Return ``value`` as a float in [0, 1] (optionally open at either end)."""
    return check_real(name, value, low=0.0, high=1.0, low_open=open_low, high_open=open_high)


def check_float_dtype(name: str, dtype: Any) -> np.dtype:
    """Return ``dtype`` as a NumPy float dtype usable by JAX, or raise.

    float64 needs ``jax.config.update("jax_enable_x64", True)``; without it JAX would
    silently compute in float32, which is exactly the kind of quiet downgrade a caller
    who asked for float64 does not want.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be a floating dtype, got {dtype!r}") from None
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"{name} must be a floating dtype (float32 or float64), got {name}={dt}")
    if dt == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{name}=float64 was requested but JAX runs in 32-bit mode; call "
            "jax.config.update('jax_enable_x64', True) (or set JAX_ENABLE_X64=1) first"
        )
    return dt


def _leaf_name(path) -> str:
    return "updates" + "".join(str(p) for p in path) if path else "updates"


def as_client_matrix(updates: Any, *, dtype: Any = None, name: str = "updates", host: bool = False) -> jax.Array:
    """Stack client updates into one ``(n, d)`` JAX array.

    ``updates`` is an ``(n, d)`` array, an ``(n, ...)`` array (trailing axes are
    flattened), or any pytree whose leaves all share the leading client axis ``n``.
    Leaves are flattened and concatenated in ``jax.tree_util`` order, so the same pytree
    structure always maps to the same coordinates.

    The result has ``dtype`` if given, else float32 (float64 inputs are computed in
    float32 unless the caller asks for float64). Integer or boolean updates are
    rejected: a model update is a real vector, and silently casting integers hides bugs.
    A NumPy input already 64-byte aligned is wrapped without a copy on CPU. With
    ``host=True`` (for callers whose kernels read NumPy in row blocks, as
    :func:`qkrum.select` does) a single C-contiguous NumPy leaf of the target dtype that
    JAX cannot alias (NumPy aligns to 16 bytes, JAX needs 64) is returned as a 2-D NumPy
    view instead of being copied whole.
    """
    leaves_with_path = jax.tree_util.tree_flatten_with_path(updates)[0]
    if not leaves_with_path:
        raise ValueError(f"{name} is empty: got a pytree with no array leaves ({updates!r})")
    target = check_float_dtype("dtype", dtype) if dtype is not None else np.dtype(np.float32)
    if host and len(leaves_with_path) == 1:
        leaf = leaves_with_path[0][1]
        if (isinstance(leaf, np.ndarray) and leaf.dtype == target and leaf.flags.c_contiguous
                and leaf.ndim >= 2 and leaf.shape[0] >= 1 and leaf.size > 0 and leaf.ctypes.data % 64
                and jax.default_backend() == "cpu"):
            return leaf.reshape(leaf.shape[0], -1)

    mats = []
    n_clients = None
    for path, leaf in leaves_with_path:
        leaf_name = _leaf_name(path) if len(leaves_with_path) > 1 else name
        if not hasattr(leaf, "dtype") or not hasattr(leaf, "shape"):
            leaf = np.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):  # jnp's check knows bfloat16
            raise TypeError(
                f"{leaf_name} must hold floating-point values, got dtype {leaf.dtype}; "
                "cast explicitly if the integers really are update values"
            )
        if leaf.ndim < 1 or (leaf.ndim < 2 and len(leaves_with_path) == 1):
            raise ValueError(
                f"{leaf_name} must have a leading client axis and at least one coordinate, "
                f"i.e. shape (n, d) or (n, ...); got shape {tuple(leaf.shape)}"
            )
        n = leaf.shape[0]
        if n < 1:
            raise ValueError(f"{leaf_name} must contain at least one client, got shape {tuple(leaf.shape)}")
        if n_clients is None:
            n_clients = n
        elif n != n_clients:
            raise ValueError(
                f"all leaves of {name} must share the leading client axis; "
                f"{leaf_name} has {n} clients but earlier leaves have {n_clients}"
            )
        if isinstance(leaf, np.ndarray) and leaf.dtype == target and leaf.flags.c_contiguous:
            # Zero-copy on CPU when the buffer is suitably aligned; a plain copy otherwise.
            leaf = jax.device_put(leaf, may_alias=True)
        mats.append(jnp.reshape(jnp.asarray(leaf, dtype=target), (n, -1)))

    x = mats[0] if len(mats) == 1 else jnp.concatenate(mats, axis=1)
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one coordinate per client, got shape {x.shape}")
    return x


def as_key(key: Any, name: str = "key", *, seeds: bool = False) -> jax.Array:
    """Return ``key`` as a typed scalar PRNG key: a ``jax.random.key``, a legacy
    ``jax.random.PRNGKey`` (uint32 key data), or, with ``seeds=True``, an int seed ``>= 0``."""
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"{name} must be a single PRNG key, got a batch of keys with shape {shape}")
        return key
    # The legacy layout depends on the default PRNG implementation (threefry: uint32[2]).
    legacy_shape = jax.random.key_data(jax.random.key(0)).shape
    if dtype is not None and np.dtype(dtype) == np.uint32 and tuple(shape) == legacy_shape:
        return jax.random.wrap_key_data(key)
    if seeds and (dtype is None or (np.ndim(key) == 0 and jnp.issubdtype(dtype, jnp.integer))):
        return jax.random.key(check_int(name, key, minimum=0))
    raise TypeError(
        f"{name} must be a JAX PRNG key, i.e. jax.random.key(seed) or jax.random.PRNGKey(seed) "
        f"(uint32{list(legacy_shape)}){', or an int seed' if seeds else ''}, got {name}={key!r}"
    )


def check_byzantine_count(f: Any, n: int) -> int:
    """``f`` must be an integer with 0 <= f < n (at least one client must be honest)."""
    f = check_int("f", f, minimum=0)
    if f >= n:
        raise ValueError(f"f must be smaller than the number of clients n={n}, got f={f}")
    return f


def check_num_selected(m: Any, n: int, f: int) -> int:
    """``m`` defaults to ``n - f`` and must lie in 1..n."""
    if m is None:
        return n - f
    return check_int("m", m, minimum=1, maximum=n)


def check_krum_neighbours(n: int, f: int) -> int:
    """Krum scores use the ``n - f - 2`` nearest neighbours; that must be at least one."""
    k = n - f - 2
    if k < 1:
        raise ValueError(
            f"Krum scoring needs n - f - 2 >= 1 nearest neighbours, got n={n}, f={f} "
            f"(n - f - 2 = {k}); use fewer Byzantine clients f or more clients n"
        )
    return k
