import jax.numpy as jnp
import numpy as np
import pytest

from qkrum._validation import as_client_matrix, check_int, check_probability


def test_as_client_matrix_shapes_and_dtypes():
    assert as_client_matrix(np.ones((3, 2, 2), np.float64)).shape == (3, 4)
    assert as_client_matrix(np.ones((3, 2), np.float64)).dtype == jnp.float32
    assert as_client_matrix(jnp.ones((3, 2), jnp.bfloat16)).dtype == jnp.float32
    tree = {"a": np.ones((2, 3), np.float32), "b": [np.zeros((2,), np.float32)]}
    np.testing.assert_array_equal(np.asarray(as_client_matrix(tree)), [[1, 1, 1, 0], [1, 1, 1, 0]])


def test_as_client_matrix_zero_copy_for_aligned_numpy():
    buf = np.empty(64 * 1024 + 64, np.uint8)
    off = (-buf.ctypes.data) % 64
    x = buf[off:off + 64 * 1024].view(np.float32).reshape(64, 256)
    x[...] = 1.5
    y = as_client_matrix(x)
    assert np.shares_memory(np.asarray(y), x)


def test_check_helpers():
    assert check_int("k", np.int64(3), minimum=1) == 3
    with pytest.raises(TypeError, match="k must be an integer"):
        check_int("k", True)
    with pytest.raises(ValueError, match="k must be <= 2, got k=3"):
        check_int("k", 3, maximum=2)
    assert check_probability("p", 1) == 1.0
    with pytest.raises(ValueError, match=r"p must lie in \(0, 1\], got p=0.0"):
        check_probability("p", 0.0, open_low=True)
    with pytest.raises(TypeError, match="real number"):
        check_probability("p", "x")
