"""Client updates as pytrees: one flattening, one unflattening, one masked mean.

Every consumer (``select``'s aggregate, the jit aggregator, the FL loop, CQSA) sees a
round as an ``(n, d)`` matrix of flattened updates; these helpers go from a pytree whose
leaves share the leading client axis ``n`` to that matrix and back.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import kernels

__all__ = ["Layout", "compute_dtype", "flatten_clients", "layout", "masked_mean", "unflatten"]


class Layout(NamedTuple):
    """How to split a flat ``(d,)`` vector back into one client's leaves."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]  # per leaf, without the client axis
    dtypes: tuple[np.dtype, ...]  # per leaf, restored on the way back


def _leaf_dtype(leaf) -> np.dtype:
    return jax.dtypes.canonicalize_dtype(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype)


def compute_dtype(dtypes) -> np.dtype:
    """The arithmetic dtype for leaves of ``dtypes``: their common float type, at least
    float32 (float16 sums of a few thousand values overflow)."""
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def layout(updates: Any) -> Layout:
    """The :class:`Layout` of a pytree of client updates (leading client axis on every leaf)."""
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    if not leaves:
        raise ValueError("updates is empty: a pytree with no array leaves")
    n = jnp.shape(leaves[0])[0] if jnp.ndim(leaves[0]) else None
    for leaf in leaves:
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
            raise ValueError("every leaf of the updates needs the same leading client axis; got leaf shapes "
                             f"{[tuple(jnp.shape(leaf)) for leaf in leaves]}")
    return Layout(treedef, tuple(tuple(jnp.shape(leaf)[1:]) for leaf in leaves),
                  tuple(_leaf_dtype(leaf) for leaf in leaves))


def flatten_clients(updates: Any, dtype: Any = None) -> tuple[jax.Array, Layout]:
    """``(x, layout)``: the ``(n, d)`` matrix of the flattened leaves, concatenated in
    pytree order, in ``dtype`` (default :func:`compute_dtype` of the leaves). Traceable."""
    spec = layout(updates)
    dtype = compute_dtype(spec.dtypes) if dtype is None else dtype
    if not jnp.issubdtype(jnp.result_type(*spec.dtypes), jnp.floating):
        raise TypeError(f"updates must hold floating-point values, got dtype {jnp.result_type(*spec.dtypes)}")
    leaves = jax.tree_util.tree_leaves(updates)
    n = jnp.shape(leaves[0])[0]
    x = jnp.concatenate([jnp.reshape(jnp.asarray(leaf), (n, -1)).astype(dtype) for leaf in leaves], axis=1)
    return x, spec


def unflatten(flat: jax.Array, spec: Layout) -> Any:
    """Split a flat ``(d,)`` aggregate into one client's leaves, each in its own dtype."""
    out, start = [], 0
    for shape, dtype in zip(spec.shapes, spec.dtypes):
        size = int(np.prod(shape, dtype=np.int64))
        out.append(jnp.reshape(flat[start:start + size], shape).astype(dtype))
        start += size
    return jax.tree_util.tree_unflatten(spec.treedef, out)


def masked_mean(x: Any, mask: Any) -> jax.Array:
    """Mean of the rows of ``x`` where ``mask`` is True, summed in at least float32;
    unselected rows are excluded with ``where`` (a NaN in a rejected row cannot leak).
    A mask selecting nothing gives zeros (callers that must refuse that check first).
    Traceable; NumPy inputs are read in row blocks, never copied whole."""
    count = jnp.maximum(jnp.sum(jnp.asarray(mask)), 1)
    total = kernels.masked_row_sum(x, mask)
    return total / count.astype(total.dtype)
