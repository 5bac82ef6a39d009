"""Which implementation runs: the compiled ``qkrum._core`` or the NumPy fallback.

``QKRUM_IMPLEMENTATION=python`` forces the pure-Python paths even when the extension is
built. ``QKRUM_REQUIRE_NATIVE=1`` turns a missing or broken extension into an import
error instead of a silent fallback (CI sets it, so a failed build cannot pass unnoticed).

The two implementations (``qkrum._core`` and :mod:`qkrum.anneal._python`) expose
``anneal_dense``, ``anneal_csr``, ``exact_dense``, ``tabu_dense`` and ``read_seed`` with the same
signatures and semantics (see ``csrc/anneal.hpp``) and sample the same distribution, but
from different random streams: for one seed they give different samples. :func:`impl`
returns the active one and :func:`name` says which it is; qkrum's samplers record it in
``info["implementation"]``. Both read the module global ``core`` (``None`` when the
extension is missing or Python is forced; tests monkeypatch it to run the fallback), so
they can never disagree. :data:`IMPLEMENTATION` is the choice made at import.

Arguments are checked once, here, before either implementation runs
(:func:`check_anneal_arguments`, :func:`check_exact_arguments`,
:func:`check_tabu_arguments`); the fallback then only
computes, and the C++ re-checks only what it relies on. Every error names the parameter
and its value.
"""

from __future__ import annotations

import importlib
import math
import os
from types import ModuleType
from typing import Any

import numpy as np

from qkrum._validation import check_int

__all__ = [
    "IMPLEMENTATION",
    "MAX_EXHAUSTIVE_VARIABLES",
    "build_info",
    "check_anneal_arguments",
    "check_exact_arguments",
    "check_tabu_arguments",
    "core",
    "impl",
    "name",
]

_forced = os.environ.get("QKRUM_IMPLEMENTATION", "").strip().lower()
if _forced not in ("", "native", "python"):
    raise ImportError(
        f"QKRUM_IMPLEMENTATION must be 'native' or 'python' (or unset), got {_forced!r}"
    )

_built = None
_import_error: Exception | None = None
try:
    # Imported even when Python is forced, so that QKRUM_REQUIRE_NATIVE still checks the build.
    from qkrum import _core as _built  # type: ignore[no-redef]
except ImportError as exc:  # extension not built (no compiler) or broken
    _import_error = exc

if _built is None and (_forced == "native" or os.environ.get("QKRUM_REQUIRE_NATIVE") == "1"):
    raise ImportError(
        "qkrum's native extension qkrum._core is required (QKRUM_IMPLEMENTATION=native or "
        f"QKRUM_REQUIRE_NATIVE=1) but could not be imported: {_import_error}"
    )

core = None if _forced == "python" else _built
IMPLEMENTATION = "native" if core is not None else "python"

# The limit is defined once, as kMaxExhaustiveVariables in csrc/anneal.hpp, and read from
# the extension. An install without a C++ compiler has no extension to read it from and
# uses this copy, which tests/test_native.py checks against the header.
_MAX_EXHAUSTIVE_VARIABLES_WITHOUT_CORE = 30
#: Largest n for an exhaustive search over all 2^n states, and the log2 of the largest
#: number of subsets a cardinality-constrained search visits (a guard against accidental
#: hours-long runs: 2^30 states take about half a minute natively).
MAX_EXHAUSTIVE_VARIABLES: int = int(
    _built.MAX_EXHAUSTIVE_VARIABLES if _built is not None else _MAX_EXHAUSTIVE_VARIABLES_WITHOUT_CORE
)


def build_info() -> dict:
    """How the extension was built, or ``{"implementation": "python"}`` without it."""
    if core is None:
        return {"implementation": "python"}
    return {"implementation": "native", **core.build_info()}


def impl() -> ModuleType:
    """The active implementation module: ``qkrum._core`` or :mod:`qkrum.anneal._python`."""
    if core is not None:
        return core
    return importlib.import_module("qkrum.anneal._python")


def name() -> str:
    """``"native"`` or ``"python"``: the implementation :func:`impl` returns."""
    return "native" if core is not None else "python"


# --- argument checks shared by both implementations ------------------------------------

_UINT64_MAX = 2**64 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT32_MAX = 2**31 - 1


def _int_array(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr


def _check_vector_h(h: Any) -> int:
    h = np.asarray(h)
    if h.ndim != 1:
        raise ValueError(f"h must have shape (n,), got h.shape={h.shape}")
    n = h.shape[0]
    if n < 1:
        raise ValueError(f"the QUBO must have at least one variable, got n={n}")
    return n


def _check_dense_J(J: Any, n: int) -> None:
    shape = np.shape(J)
    if shape != (n, n):
        raise ValueError(f"J must have shape (n, n) = ({n}, {n}) for n = len(h), got J.shape={shape}")


def _check_csr(csr: Any, n: int) -> None:
    try:
        indptr, indices, data = csr
    except (TypeError, ValueError):
        raise TypeError(f"csr must be a triple (indptr, indices, data), got csr={csr!r}") from None
    indptr = _int_array("indptr", indptr)
    indices = _int_array("indices", indices)
    data = np.asarray(data)
    if indptr.shape != (n + 1,):
        raise ValueError(f"indptr must have shape (n + 1,) = ({n + 1},), got indptr.shape={indptr.shape}")
    if indices.ndim != 1 or data.shape != indices.shape:
        raise ValueError("indices and data must be 1-D of the same length, got "
                         f"indices.shape={indices.shape}, data.shape={data.shape}")
    nnz = indices.shape[0]
    if indptr[0] != 0 or indptr[n] != nnz:
        raise ValueError(f"indptr must start at 0 and end at nnz={nnz}, got indptr[0]={int(indptr[0])}, "
                         f"indptr[{n}]={int(indptr[n])}")
    step = np.diff(indptr)
    if np.any(step < 0):
        i = int(np.flatnonzero(step < 0)[0])
        raise ValueError(f"indptr must be non-decreasing, got indptr[{i}]={int(indptr[i])} > "
                         f"indptr[{i + 1}]={int(indptr[i + 1])}")
    if nnz:
        outside = (indices < 0) | (indices >= n)
        if outside.any():
            p = int(np.flatnonzero(outside)[0])
            raise ValueError(f"indices must lie in [0, n={n}), got indices[{p}]={int(indices[p])}")
        # The C++ finds J_ij by binary search in row i, so each row must be sorted and hold
        # every column once.
        row_start = np.zeros(nnz + 1, dtype=bool)
        row_start[indptr] = True
        unsorted = ~row_start[1:nnz] & (np.diff(indices) <= 0)
        if unsorted.any():
            p = int(np.flatnonzero(unsorted)[0])
            row = int(np.searchsorted(indptr, p, side="right")) - 1
            raise ValueError(f"the column indices of each CSR row must be strictly increasing, got "
                             f"indices[{p}]={int(indices[p])}, indices[{p + 1}]={int(indices[p + 1])} in row {row}")


def _check_initial_values(init: np.ndarray, cardinality: int) -> None:
    """Initial states hold integers 0/1 and, for ``cardinality >= 0``, that many ones per row."""
    if init.dtype.kind not in "biu":
        raise TypeError(f"initial_states must hold integers 0/1, got dtype {init.dtype}")
    bad = (init != 0) & (init != 1)
    if bad.any():
        r, i = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"initial_states must hold 0/1 values, got initial_states[{r}, {i}]={init[r, i]}")
    if cardinality >= 0:
        ones = np.count_nonzero(init, axis=1)
        wrong = np.flatnonzero(ones != cardinality)
        if wrong.size:
            r = int(wrong[0])
            raise ValueError(f"initial_states row {r} has {int(ones[r])} ones but cardinality={cardinality}")


def check_anneal_arguments(h: Any, J: Any = None, csr: Any = None, *, num_reads: Any, beta_schedule: Any,
                           seed: Any, order: Any, cardinality: Any, num_threads: Any, initial_states: Any,
                           swap_moves: Any = False) -> None:
    """Check the arguments of ``anneal_dense`` (``J`` given) or ``anneal_csr`` (``csr =
    (indptr, indices, data)`` given), in the kernels' conventions: ``cardinality < 0`` means
    single flips, ``num_threads = 0`` all hardware threads. Raises ``TypeError`` or
    ``ValueError`` naming the parameter and its value; returns ``None``."""
    n = _check_vector_h(h)
    if (J is None) == (csr is None):
        raise TypeError("exactly one of J (dense couplings) and csr (indptr, indices, data) must be given")
    if J is not None:
        _check_dense_J(J, n)
    else:
        _check_csr(csr, n)
    num_reads = check_int("num_reads", num_reads, minimum=1, maximum=_INT64_MAX)
    beta = np.asarray(beta_schedule)
    if beta.ndim != 1 or (beta.size and beta.dtype.kind not in "iuf"):
        raise ValueError(f"beta_schedule must be a 1-D array of numbers, got shape {beta.shape} "
                         f"and dtype {beta.dtype}")
    beta = beta.astype(np.float64, copy=False)
    bad = ~(np.isfinite(beta) & (beta >= 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"beta_schedule must hold finite values >= 0, got beta_schedule[{k}]={float(beta[k])}")
    check_int("seed", seed, minimum=0, maximum=_UINT64_MAX)
    if not isinstance(order, str):
        raise TypeError(f"order must be a str, 'sequential' or 'random', got order={order!r}")
    if order not in ("sequential", "random"):
        raise ValueError(f"order must be 'sequential' or 'random', got order={order!r}")
    cardinality = check_int("cardinality", cardinality, minimum=_INT64_MIN, maximum=_INT64_MAX)
    if cardinality > n:
        raise ValueError(f"cardinality must be <= n={n}, got cardinality={cardinality}")
    check_int("num_threads", num_threads, minimum=0, maximum=_INT32_MAX)
    if not isinstance(swap_moves, (bool, np.bool_)):
        raise TypeError(f"swap_moves must be a bool, got swap_moves={swap_moves!r}")
    if initial_states is not None:
        init = np.asarray(initial_states)
        if init.shape != (num_reads, n):
            raise ValueError(f"initial_states must have shape (num_reads, n) = ({num_reads}, {n}), "
                             f"got initial_states.shape={init.shape}")
        _check_initial_values(init, cardinality)


def check_exact_arguments(h: Any, J: Any = None, *, cardinality: Any, max_states: Any) -> None:
    """Check the arguments of ``exact_dense`` (``h`` ``(n,)``; ``J`` ``(n, n)``, checked if
    given, so that a sparse model can be checked before it is densified): ``cardinality``
    is ``None`` (all ``2^n`` states, ``n <=`` :data:`MAX_EXHAUSTIVE_VARIABLES`) or an
    integer ``m`` in ``0..n`` (the ``C(n, m)`` subsets, at most
    ``2^MAX_EXHAUSTIVE_VARIABLES`` of them); ``max_states >= 0`` bounds the ground states
    returned. The kernels take ``cardinality = -1`` for ``None``."""
    n = _check_vector_h(h)
    if J is not None:
        _check_dense_J(J, n)
    check_int("max_states", max_states, minimum=0, maximum=_INT64_MAX)
    limit = MAX_EXHAUSTIVE_VARIABLES
    if cardinality is None:
        if n > limit:
            raise ValueError(f"exhaustive search over 2^n states is limited to n <= {limit}, got n={n}; "
                             "pass cardinality=m to search only the C(n, m) subsets")
        return
    if (isinstance(cardinality, (bool, np.bool_)) or not isinstance(cardinality, (int, np.integer))
            or not 0 <= cardinality <= n):
        raise ValueError(f"cardinality must be an integer in 0..n={n}, got cardinality={cardinality!r}")
    subsets = math.comb(n, int(cardinality))
    if subsets > 2**limit:
        raise ValueError(f"C(n={n}, m={cardinality}) = {subsets:,} subsets is too many for an exhaustive "
                         f"search (limit 2^{limit} = {2**limit:,}), got cardinality={cardinality}")


def check_tabu_arguments(h: Any, J: Any, *, cardinality: Any, num_reads: Any, confirm: Any, min_restarts: Any,
                         stall: Any,
                         max_iterations: Any, tenure: Any, timeout: Any, seed: Any, num_threads: Any,
                         initial_states: Any) -> None:
    """Check the arguments of ``tabu_dense`` (``csrc/tabu.hpp``): ``cardinality`` in ``0..n``,
    ``num_reads >= 1`` restarts at most, ``confirm >= 0`` (0: run them all), ``min_restarts >= 1``
    before the confirm rule may stop, ``stall >= 1``,
    ``max_iterations >= 0``, ``tenure >= 0``, ``timeout`` seconds (``<= 0``: none) and up to
    ``num_reads`` initial states of ``cardinality`` ones. Raises ``TypeError`` or
    ``ValueError`` naming the parameter and its value."""
    n = _check_vector_h(h)
    _check_dense_J(J, n)
    check_int("cardinality", cardinality, minimum=0, maximum=n)
    num_reads = check_int("num_reads", num_reads, minimum=1, maximum=_INT64_MAX)
    check_int("confirm", confirm, minimum=0, maximum=_INT64_MAX)
    check_int("min_restarts", min_restarts, minimum=1, maximum=_INT64_MAX)
    check_int("stall", stall, minimum=1, maximum=_INT64_MAX)
    check_int("max_iterations", max_iterations, minimum=0, maximum=_INT64_MAX)
    check_int("tenure", tenure, minimum=0, maximum=_INT64_MAX)
    if isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(timeout)):
        raise ValueError(f"timeout must be a finite number of seconds (<= 0: none), got timeout={timeout!r}")
    check_int("seed", seed, minimum=0, maximum=_UINT64_MAX)
    check_int("num_threads", num_threads, minimum=0, maximum=_INT32_MAX)
    if initial_states is not None:
        init = np.asarray(initial_states)
        if init.ndim != 2 or init.shape[1] != n or not 1 <= init.shape[0] <= num_reads:
            raise ValueError(f"initial_states must have shape (k, n) with 1 <= k <= num_reads={num_reads} and "
                             f"n={n}, got initial_states.shape={init.shape}")
        _check_initial_values(init, cardinality)
