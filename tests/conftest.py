import contextlib

import jax
import numpy as np
import pytest
from hypothesis import settings

from qkrum import _native

settings.register_profile("qkrum", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("qkrum")


@contextlib.contextmanager
def x64():
    """Run a block with JAX in 64-bit mode, restoring the previous mode afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


#: The implementations of qkrum's kernels this install has: the C++ extension, if built,
#: and the NumPy fallback.
IMPLEMENTATIONS = ["native", "python"] if _native.core is not None else ["python"]


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request, monkeypatch):
    """Run a test against one implementation of the kernels (the fallback by patching
    ``qkrum._native.core`` away, which both ``impl()`` and ``name()`` read)."""
    if request.param == "python":
        monkeypatch.setattr(_native, "core", None)
    assert _native.name() == request.param
    return request.param


# --- independent NumPy references (direct differences, float64; no Gram trick) ----------

def ref_sq_euclidean(x):
    x = np.asarray(x, np.float64)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def ref_cosine(x, eps=1e-8):
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1)
    d = 1 - (x @ x.T) / (np.outer(norms, norms) + eps)
    np.fill_diagonal(d, 0)
    return d


def ref_krum(d, f):
    d = np.asarray(d, np.float64)
    n = d.shape[0]
    k = n - f - 2
    return np.array([np.sort(np.delete(d[i], i))[:k].sum() for i in range(n)])


def ref_gap(scores, m):
    s = np.sort(np.asarray(scores, np.float64))
    return (s[m] - s[m - 1]) / s.std()


def load_example(script):
    """Import an example script by path, its folder first on sys.path as when it runs
    (``python examples/flower/simulate.py`` imports the app package beside it)."""
    import importlib.util
    import sys

    folder = str(script.parent)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(f"_example_{script.parent.name}_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(folder)
