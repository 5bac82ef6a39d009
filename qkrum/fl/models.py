"""The paper's client models (VI-A) as flax.linen modules with pure parameter pytrees.

=========================  ==========================================================  ==========
dataset                    model                                                       parameters
=========================  ==========================================================  ==========
mnist, fashion-mnist       MLP 784 → 200 → 10, ReLU (paper: "≈159K")                    159,010
cifar10                    CNN: conv 3→4, 3×3, SAME, ReLU, max-pool 2×2;                 17,154
                           conv 4→8, 3×3, SAME, ReLU, max-pool 2×2; FC 512 → 32, ReLU;
                           FC 32 → 10 (paper: "≈17K")
digits (scikit-learn 8×8)  the MLP with input 64: 64 → 200 → 10 (ours, offline default)  15,010
=========================  ==========================================================  ==========

The layer sizes are the paper's; what it leaves open is ours: ReLU after each convolution
and after the hidden FC layer (the paper names ReLU only for the MLP), 2×2 max-pooling
with stride 2 and VALID padding (so 32 → 16 → 8, and 8·8·8 = 512 features, as the paper's
FC input), biases on every layer, and flax's default initialisers (LeCun-normal kernels,
zero biases).

:func:`model_for` returns a :class:`Model`: pure ``init(key) -> params`` and
``apply(params, images) -> logits`` functions over plain dict pytrees, so parameters of
many clients stack along a leading axis and ``jax.vmap`` maps training over them.

flax (the ``fl`` extra) is imported when the first model is built, not with this module, so
that ``qkrum.fl`` and the ``qkrum`` CLI import with qkrum's core install alone; :class:`MLP`
and :class:`CNN` are defined on first access.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._optional import require
from qkrum._validation import check_int
from qkrum.fl.data import IMAGE_SHAPES

__all__ = ["CNN", "MLP", "MODEL_FOR_DATASET", "Model", "input_shape_for", "model_for", "num_params"]


def _flax_nn():
    """``flax.linen``, imported on first use: this module (and with it ``qkrum.fl`` and the
    ``qkrum`` CLI, which reads its constants) imports without the ``fl`` extra; building a
    model needs it."""
    return require("flax.linen", "fl", "the FL simulator's models (qkrum.fl.models)")


@functools.lru_cache(maxsize=None)
def _module_classes() -> dict[str, type]:
    """:class:`MLP` and :class:`CNN`, defined once flax is imported."""
    nn = _flax_nn()

    class MLP(nn.Module):
        """Flatten → Dense(hidden) → ReLU → Dense(num_classes)."""

        hidden: int = 200
        num_classes: int = 10

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = jnp.reshape(x, (x.shape[0], -1))
            x = nn.relu(nn.Dense(self.hidden)(x))
            return nn.Dense(self.num_classes)(x)

    class CNN(nn.Module):
        """The paper's compact CIFAR-10 CNN: two 3×3 SAME convolutions (``channels``), each
        followed by ReLU and 2×2 max-pooling, then Dense(hidden) → ReLU → Dense(num_classes)."""

        channels: tuple[int, ...] = (4, 8)
        hidden: int = 32
        num_classes: int = 10

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            for c in self.channels:
                x = nn.Conv(c, (3, 3), padding="SAME")(x)
                x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2), padding="VALID")
            x = jnp.reshape(x, (x.shape[0], -1))
            x = nn.relu(nn.Dense(self.hidden)(x))
            return nn.Dense(self.num_classes)(x)

    for cls in (MLP, CNN):
        cls.__qualname__ = cls.__name__  # as if defined at module level (repr, pickle by reference)
    return {"MLP": MLP, "CNN": CNN}


def __getattr__(name: str):
    # MLP and CNN subclass flax.linen.Module, so they exist once flax is imported.
    if name in ("MLP", "CNN"):
        return _module_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Model(NamedTuple):
    """A model as two pure functions plus what it was built for.

    ``init(key) -> params`` (a dict pytree); ``apply(params, images) -> logits`` with
    ``images`` of shape ``(batch, *input_shape)`` float32.
    """

    name: str
    module: Any  # the flax.linen.Module (MLP or CNN)
    input_shape: tuple[int, int, int]
    num_classes: int
    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]


#: The architecture per dataset name ("mlp" or "cnn").
MODEL_FOR_DATASET = {"digits": "mlp", "mnist": "mlp", "fashion-mnist": "mlp", "cifar10": "cnn"}


def input_shape_for(dataset: str) -> tuple[int, int, int]:
    """``(H, W, C)`` of a dataset's images."""
    if dataset not in IMAGE_SHAPES:
        raise ValueError(f"unknown dataset={dataset!r}; valid datasets: {', '.join(IMAGE_SHAPES)}")
    return IMAGE_SHAPES[dataset]


def model_for(dataset_or_shape: str | tuple[int, ...], num_classes: int = 10) -> Model:
    """The paper's model for a dataset name, or for an image shape ``(H, W, C)``.

    A name picks by :data:`MODEL_FOR_DATASET`. A shape picks the CNN for three-channel
    (colour) images, whose sides must be divisible by 4 (two 2×2 poolings), and the MLP
    with input ``H·W·C`` otherwise. Equal requests return the same :class:`Model`, so
    jitted functions that take its ``apply`` as a static argument compile once.
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if isinstance(dataset_or_shape, str):
        shape = input_shape_for(dataset_or_shape)
        kind = MODEL_FOR_DATASET[dataset_or_shape]
    else:
        try:
            shape = tuple(check_int("input shape entry", s, minimum=1) for s in dataset_or_shape)
        except TypeError:
            raise TypeError("dataset_or_shape must be a dataset name or an (H, W, C) shape, "
                            f"got {dataset_or_shape!r}") from None
        if len(shape) != 3:
            raise ValueError(f"an input shape must be (H, W, C), got dataset_or_shape={dataset_or_shape!r}")
        kind = "cnn" if shape[2] == 3 else "mlp"
        if kind == "cnn" and (shape[0] % 4 or shape[1] % 4):
            raise ValueError(f"the CNN pools twice by 2, so H and W must be divisible by 4, got shape {shape}")
    return _build(kind, shape, num_classes)


@functools.lru_cache(maxsize=None)
def _build(kind: str, shape: tuple[int, int, int], num_classes: int) -> Model:
    classes = _module_classes()
    module = classes["CNN"](num_classes=num_classes) if kind == "cnn" else classes["MLP"](num_classes=num_classes)
    dummy = jnp.zeros((1, *shape), jnp.float32)

    def init(key: jax.Array) -> Any:
        return module.init(key, dummy)["params"]

    def apply(params: Any, images: jax.Array) -> jax.Array:
        return module.apply({"params": params}, images)

    return Model(kind, module, shape, num_classes, init, apply)


def num_params(params: Any) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)))
