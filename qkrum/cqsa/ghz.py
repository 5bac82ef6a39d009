"""Exact simulation of one CQSA cluster: GHZ phase aggregation with depolarizing noise.

What is the paper's and what is ours. CQSA (Nath & Kasyap, arXiv:2602.22269) encodes
client updates into the phase of a GHZ state shared by a small cluster, under
depolarizing noise [paper]. Only its abstract is available, so the circuit, the noise
placement and the readout below are our reconstruction from standard quantum mechanics
[design], following ``cqsa-design.md``:

1. prepare ``|GHZ_k> = (|0..0> + |1..1>)/sqrt(2)``: H on qubit 0, then the CNOT chain
   ``CNOT(0,1), CNOT(1,2), ..., CNOT(k-2,k-1)``;
2. member ``j`` applies ``diag(1, e^{i phi_j})`` to qubit ``j``; the state becomes
   ``(|0..0> + e^{i Phi}|1..1>)/sqrt(2)`` with ``Phi = sum_j phi_j``, while the reduced
   state of every proper subset of qubits stays ``(|0..0><0..0| + |1..1><1..1|)/2``
   whatever the phases (the privacy property; :func:`reduced_density_matrix` lets a test
   check it);
3. undo the CNOT chain (in reverse order) -- the Hadamard is *not* undone, so qubit 0 is
   left in ``(|0> + e^{i Phi}|1>)/sqrt(2)`` and the others in ``|0>``;
4. measure qubit 0 in the X and the Y basis, ``shots`` times each:
   ``<X> = V cos Phi``, ``<Y> = V sin Phi``, ``Phi_hat = atan2(<Y>, <X>)``.

Noise (``lam`` is the depolarizing strength of :mod:`qkrum.cqsa.noise`):

* ``noise="state"`` (the design notes' model, used by :func:`phase_sum`): the channel
  once on every qubit right after step 1. The depolarizing channel commutes with the
  phase gates, so "after preparation" and "after encoding" give the same state; the
  un-preparation and the readout are ideal. ``V = (1 - lam)^k``.
* ``noise="gate"``: the channel after every gate of steps 1-3 -- on qubit 0 after H, on
  both qubits after each CNOT, on qubit ``j`` after its phase gate. Idle qubits do not
  decohere and the readout (basis change plus measurement) is ideal.
  ``V = (1 - lam)^(4k - 2)`` [design; derived in :mod:`qkrum.cqsa.noise`].

Either way depolarizing noise shrinks ``<X> + i<Y>`` by the real factor ``V`` and leaves
its angle alone, so the exact-expectation estimate is unbiased for any ``lam < 1``; at
``lam = 1`` every trace of ``Phi`` is gone and the estimate is ``atan2(0, 0) = 0``.
Shots are the only randomness: the ``S`` outcomes of each basis are i.i.d. ``+-1`` with
mean ``<X>`` (resp. ``<Y>``), so the count of ``+1`` is binomial.

Numerics. The state is a JAX array: a ``(2^k,)`` state vector (used when ``lam == 0``)
or a ``(2^k, 2^k)`` density matrix, qubit 0 being the most significant bit of the basis
index. A one-qubit gate or channel works on a low-rank view of the state and a CNOT is a
basis permutation, so nothing of size ``2^k x 2^k`` other than the state itself is
built. The whole circuit is one ``jax.jit`` function per ``k`` and mode (eager dispatch
would compile every gate separately: seconds per new ``k``), and
:func:`readout_expectations` ``vmap``-s it over a batch of phase vectors for the
calibration of the statistical surrogate (:mod:`qkrum.cqsa.surrogate`). The complex dtype
is complex128 when JAX runs with x64 enabled and complex64 otherwise (about ``1e-7``
relative error, enough for shot-noise studies but not for the ``1e-10`` checks in the
tests); phase factors ``e^{i phi}`` are formed in float64 NumPy first so large phases are
reduced accurately.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum._validation import check_int, check_probability
from qkrum.cqsa.angles import wrap_angle
from qkrum.cqsa.noise import (
    check_noise_mode,
    depolarize_qubit,
    ghz_fidelity_closed_form,
    ghz_visibility_closed_form,
)

__all__ = [
    "MAX_DENSITY_QUBITS",
    "MAX_STATEVECTOR_QUBITS",
    "ClusterReadout",
    "cluster_state",
    "fidelity_to_ghz",
    "ghz_density_matrix",
    "ghz_fidelity",
    "ghz_statevector",
    "ghz_visibility",
    "measure_cluster",
    "phase_sum",
    "readout_expectations",
    "reduced_density_matrix",
    "sample_readout",
    "sample_readout_unchecked",
]

#: A density matrix of ``k`` qubits has ``4^k`` complex entries: 268 MB at k = 12 in
#: complex128, and each gate makes a few temporaries. Beyond this, use the closed forms.
MAX_DENSITY_QUBITS = 12
#: A state vector has ``2^k`` entries (16 MB at k = 20 in complex128).
MAX_STATEVECTOR_QUBITS = 20

_HADAMARD = np.array([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2.0)


def _complex_dtype() -> np.dtype:
    return np.dtype(np.complex128 if jax.config.jax_enable_x64 else np.complex64)


def _check_size(k: int, mixed: bool) -> None:
    if mixed and k > MAX_DENSITY_QUBITS:
        raise ValueError(
            f"k={k} qubits is too many for the exact density-matrix simulator (limit "
            f"k <= {MAX_DENSITY_QUBITS}): its 2^k x 2^k matrix holds 4^k = {4 ** k:,} complex "
            f"entries ({4 ** k * 16 / 1e9:.2g} GB in complex128) before any temporaries; "
            "use the closed forms (exact=False) for larger clusters"
        )
    if not mixed and k > MAX_STATEVECTOR_QUBITS:
        raise ValueError(
            f"k={k} qubits is too many for the state-vector simulator (limit "
            f"k <= {MAX_STATEVECTOR_QUBITS}): it holds 2^k = {2 ** k:,} complex amplitudes; "
            "a noiseless cluster returns sum(phases) mod 2*pi exactly, so use that directly"
        )


def _as_real_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception:  # e.g. ragged nested lists
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        # Complex phases would silently lose their imaginary part in e^{i phi}; a boolean
        # array is almost certainly a mask passed in the wrong place.
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_phases(phases: Any) -> np.ndarray:
    arr = np.atleast_1d(_as_real_array("phases", phases))
    if arr.ndim != 1:
        raise ValueError(f"phases must be 1-D (one phase per cluster member), got shape {arr.shape}")
    if arr.size < 1:
        raise ValueError("phases must hold at least one phase: the cluster size k=len(phases) must be >= 1, got k=0")
    if not np.isfinite(arr).all():
        raise ValueError(f"phases must be finite, got phases={arr.tolist()}")
    return arr


def _phase_factors(phases: np.ndarray) -> jax.Array:
    # float64 range reduction before the cast, so e^{i phi} stays accurate for large phi
    # even when the simulation runs in complex64.
    return jnp.asarray(np.exp(1j * np.remainder(phases, 2.0 * np.pi)), _complex_dtype())


def _split(q: int, k: int) -> tuple[int, int]:
    return 1 << q, 1 << (k - q - 1)


def _cnot_permutation(c: int, tgt: int, k: int) -> np.ndarray:
    idx = np.arange(1 << k)
    control = (idx >> (k - 1 - c)) & 1
    return idx ^ (control << (k - 1 - tgt))


class _Ops(NamedTuple):
    """The gates for one register layout; with ``gate_noise`` the channel follows each gate."""

    k: int
    mixed: bool
    gate_noise: bool
    lam: Any

    def after(self, t, *qubits):
        if self.gate_noise:
            for q in qubits:
                t = depolarize_qubit(t, q, self.k, self.lam)
        return jax.lax.optimization_barrier(t)

    def h(self, t, q):
        u = jnp.asarray(_HADAMARD, t.dtype)
        left, right = _split(q, self.k)
        if self.mixed:  # rho -> U rho U^dagger (H is real and symmetric)
            v = t.reshape(left, 2, right, left, 2, right)
            t = jnp.einsum("ab,xbyXcY,dc->xayXdY", u, v, u).reshape(t.shape)
        else:
            t = jnp.einsum("ab,xby->xay", u, t.reshape(left, 2, right)).reshape(t.shape)
        return self.after(t, q)

    def phase(self, t, q, factor):
        d = jnp.stack([jnp.ones((), t.dtype), factor.astype(t.dtype)])
        left, right = _split(q, self.k)
        if self.mixed:
            m = (d[:, None] * d.conj()[None, :]).reshape(1, 2, 1, 1, 2, 1)
            t = (t.reshape(left, 2, right, left, 2, right) * m).reshape(t.shape)
        else:
            t = (t.reshape(left, 2, right) * d.reshape(1, 2, 1)).reshape(t.shape)
        return self.after(t, q)

    def cnot(self, t, c, tgt):
        perm = jnp.asarray(_cnot_permutation(c, tgt, self.k))
        t = t[perm][:, perm] if self.mixed else t[perm]  # a real permutation: P rho P^T
        return self.after(t, c, tgt)


def _circuit(factors: jax.Array, lam: Any, mixed: bool, noise: str, stage: str) -> jax.Array:
    """Run the cluster circuit up to ``stage``: "prepared" (step 1), "encoded" (step 2)
    or "readout" (steps 3-4: returns the complex ``<X_0> + i<Y_0>``)."""
    k = factors.shape[-1]
    ops = _Ops(k, mixed, mixed and noise == "gate", lam)
    dim = 1 << k
    t = jnp.zeros((dim, dim) if mixed else (dim,), factors.dtype)
    t = t.at[(0, 0) if mixed else 0].set(1.0)
    t = ops.h(t, 0)
    for j in range(k - 1):
        t = ops.cnot(t, j, j + 1)
    if mixed and noise == "state":
        for q in range(k):
            t = depolarize_qubit(t, q, k, lam)
    if stage == "prepared":
        return t
    for j in range(k):
        t = ops.phase(t, j, factors[j])
    if stage == "encoded":
        return t
    for j in reversed(range(k - 1)):
        t = ops.cnot(t, j, j + 1)
    # <X> + i<Y> of qubit 0 is twice <1|rho_0|0>; the other qubits are traced out.
    rest = dim >> 1
    if mixed:
        r = t.reshape(2, rest, 2, rest)
        return 2.0 * jnp.trace(r[1, :, 0, :])
    psi = t.reshape(2, rest)
    return 2.0 * jnp.vdot(psi[0], psi[1])


_circuit_jit = jax.jit(_circuit, static_argnums=(2, 3, 4))


@partial(jax.jit, static_argnums=(2, 3))
def _readout_batch(factors: jax.Array, lam: Any, mixed: bool, noise: str) -> jax.Array:
    return jax.vmap(lambda f: _circuit(f, lam, mixed, noise, "readout"))(factors)


def _run(phases: np.ndarray, lam: float, noise: str, stage: str, *, mixed: bool | None = None) -> jax.Array:
    k = phases.size
    mixed = lam > 0.0 if mixed is None else mixed
    _check_size(k, mixed)
    return _circuit_jit(_phase_factors(phases), lam, mixed, noise, stage)


# ---------------------------------------------------------------------------------------
# States and fidelities
# ---------------------------------------------------------------------------------------

def ghz_statevector(k: Any) -> jax.Array:
    """The ideal ``|GHZ_k>`` as a ``(2^k,)`` vector, built by the circuit (not by hand)."""
    k = check_int("k", k, minimum=1)
    return _run(np.zeros(k), 0.0, "state", "prepared")


def ghz_density_matrix(k: Any, lam: Any = 0.0, *, noise: str = "state") -> jax.Array:
    """The ``(2^k, 2^k)`` density matrix of the GHZ state as the noisy circuit prepares it.

    ``noise="state"``: the channel once per qubit after preparation; ``noise="gate"``:
    after the Hadamard and after each CNOT of the preparation.
    """
    k = check_int("k", k, minimum=1)
    lam = check_probability("lam", lam)
    noise = check_noise_mode(noise)
    return _run(np.zeros(k), lam, noise, "prepared", mixed=True)


def fidelity_to_ghz(state: Any) -> float:
    """``<GHZ_k| rho |GHZ_k>`` (or ``|<GHZ_k|psi>|^2``) of a state of any ``k``.

    Only the corners of the matrix are read, so this costs nothing beyond the state.
    """
    arr, k, mixed = _check_state(state)
    if mixed:
        return float(0.5 * jnp.real(arr[0, 0] + arr[-1, -1] + 2.0 * arr[0, -1]))
    return float(0.5 * jnp.abs(arr[0] + arr[-1]) ** 2)


def ghz_fidelity(k: Any, lam: Any, *, exact: bool = True, noise: str = "state") -> float:
    """Fidelity with ``|GHZ_k>`` of the GHZ state prepared under depolarizing noise ``lam``.

    ``exact=True`` simulates the preparation circuit and the channel on the density
    matrix (``k <= MAX_DENSITY_QUBITS``); ``exact=False`` evaluates
    ``F = [(1 - lam/2)^k + (lam/2)^k + (1 - lam)^k] / 2`` for any ``k``. ``noise="gate"``
    (the channel after the H and every CNOT of the preparation) has no closed form here,
    so it needs ``exact=True``.
    """
    k = check_int("k", k, minimum=1)
    lam = check_probability("lam", lam)
    noise = check_noise_mode(noise)
    if not exact:
        if noise != "state":
            raise ValueError(
                f"ghz_fidelity has a closed form only for noise='state', got noise={noise!r} with "
                "exact=False; use exact=True (k <= MAX_DENSITY_QUBITS)"
            )
        return ghz_fidelity_closed_form(k, lam)
    return fidelity_to_ghz(ghz_density_matrix(k, lam, noise=noise))


def ghz_visibility(k: Any, lam: Any, *, exact: bool = True) -> float:
    """The visibility ``V``: twice ``|<0..0| rho |1..1>|`` after depolarizing ``lam`` per qubit.

    This coherence is the only part of the state that carries ``Phi``, and ``V`` is the
    factor by which the readout ``<X> + i<Y>`` shrinks. ``exact=True`` reads it off the
    simulated density matrix; ``exact=False`` is ``(1 - lam)^k``.
    """
    k = check_int("k", k, minimum=1)
    lam = check_probability("lam", lam)
    if not exact:
        return ghz_visibility_closed_form(k, lam)
    rho = ghz_density_matrix(k, lam, noise="state")
    return float(2.0 * jnp.abs(rho[0, -1]))


def cluster_state(phases: Any, *, lam: Any = 0.0, noise: str = "state") -> jax.Array:
    """The shared state after every member has applied its phase gate (step 2).

    This is what an eavesdropper, or a coalition of members pooling their qubits, could
    hold. A ``(2^k,)`` state vector when ``lam == 0``, else a ``(2^k, 2^k)`` density matrix.
    """
    phases = _check_phases(phases)
    lam = check_probability("lam", lam)
    noise = check_noise_mode(noise)
    return _run(phases, lam, noise, "encoded")


def _check_state(state: Any) -> tuple[jax.Array, int, bool]:
    arr = jnp.asarray(state)
    if arr.ndim == 1:
        dim, mixed = arr.shape[0], False
    elif arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
        dim, mixed = arr.shape[0], True
    else:
        raise ValueError(
            f"state must be a (2^k,) state vector or a (2^k, 2^k) density matrix, got shape {tuple(arr.shape)}"
        )
    k = dim.bit_length() - 1
    if dim < 2 or dim != 1 << k:
        raise ValueError(f"state must have dimension 2^k for some k >= 1, got shape {tuple(arr.shape)}")
    return arr, k, mixed


def reduced_density_matrix(state: Any, qubits: Any) -> jax.Array:
    """The reduced density matrix of ``qubits`` (a subset, in the order given).

    ``state`` is a ``(2^k,)`` state vector or a ``(2^k, 2^k)`` density matrix with qubit 0
    the most significant bit. The result is ``(2^m, 2^m)`` for ``m = len(qubits)``, its
    qubit 0 being ``qubits[0]``; for ``qubits=[]`` it is the ``1 x 1`` trace.
    """
    arr, k, mixed = _check_state(state)
    keep = [check_int("qubits", q, minimum=0, maximum=k - 1) for q in np.ravel(np.asarray(qubits, dtype=object))]
    if len(set(keep)) != len(keep):
        raise ValueError(f"qubits must not repeat a qubit, got qubits={keep}")
    m = len(keep)
    rest = [q for q in range(k) if q not in keep]
    if not mixed:
        psi = jnp.transpose(arr.reshape((2,) * k), keep + rest).reshape(1 << m, 1 << (k - m))
        return psi @ psi.conj().T
    # Integer-sublist einsum: a traced qubit shares its label between row and column.
    rows = list(range(k))
    cols = [k + q if q in keep else q for q in range(k)]
    out = keep + [k + q for q in keep]
    red = jnp.einsum(arr.reshape((2,) * (2 * k)), rows + cols, out)
    return red.reshape(1 << m, 1 << m)


# ---------------------------------------------------------------------------------------
# Readout
# ---------------------------------------------------------------------------------------

def readout_expectations(phases: Any, *, lam: Any = 0.0, noise: str = "state") -> np.ndarray:
    """The exact ``<X_0> + i<Y_0>`` at the end of the circuit, for one or many clusters.

    ``phases`` is ``(k,)`` or a batch ``(b, k)`` of phase vectors (all clusters of the
    same size); the result is a complex scalar array ``()`` or ``(b,)``. A batch runs as
    one ``vmap``-ed circuit. ``lam == 0`` uses the state vector, otherwise the density
    matrix (``k <= MAX_DENSITY_QUBITS``).
    """
    arr = _as_real_array("phases", phases)
    if arr.ndim not in (1, 2) or arr.shape[-1] < 1:
        raise ValueError(f"phases must have shape (k,) or (b, k) with k >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("phases must be finite")
    lam = check_probability("lam", lam)
    noise = check_noise_mode(noise)
    mixed = lam > 0.0
    _check_size(arr.shape[-1], mixed)
    factors = _phase_factors(arr)
    if arr.ndim == 1:
        return np.asarray(_circuit_jit(factors, lam, mixed, noise, "readout"), np.complex128)
    return np.asarray(_readout_batch(factors, lam, mixed, noise), np.complex128)


def sample_readout(key: jax.Array, expectation: Any, shots: int) -> tuple[jax.Array, jax.Array]:
    """Shot estimates ``(x, y)`` of ``<X>`` and ``<Y>`` from ``shots`` runs of each basis.

    ``expectation`` is the complex ``<X> + i<Y>`` (any shape). Each basis's count of
    ``+1`` outcomes is ``Binomial(shots, (1 + <.>)/2)`` and the estimate is
    ``2 * count / shots - 1``; the X and Y counts use the two halves of ``split(key)``.
    """
    shots = check_int("shots", shots, minimum=1)
    return sample_readout_unchecked(key, jnp.asarray(expectation), float(shots))


def sample_readout_unchecked(key: jax.Array, z: jax.Array, shots: Any) -> tuple[jax.Array, jax.Array]:
    """:func:`sample_readout` without the checks; ``shots`` may be traced."""
    kx, ky = jax.random.split(key)
    # Rounding can put <X> a hair outside [-1, 1]; clamp the probabilities.
    px = jnp.clip((1.0 + jnp.real(z)) / 2.0, 0.0, 1.0)
    py = jnp.clip((1.0 + jnp.imag(z)) / 2.0, 0.0, 1.0)
    x = 2.0 * jax.random.binomial(kx, shots, px) / shots - 1.0
    y = 2.0 * jax.random.binomial(ky, shots, py) / shots - 1.0
    return x, y


class ClusterReadout(NamedTuple):
    """One cluster's readout. ``x``/``y`` are the estimates from ``shots`` shots per basis
    (equal to ``exact_x``/``exact_y`` when ``shots is None``); ``phase`` is
    ``atan2(y, x)`` in (-pi, pi]."""

    phase: float
    x: float
    y: float
    exact_x: float
    exact_y: float
    shots: int | None

    @property
    def visibility(self) -> float:
        """``|<X> + i<Y>|`` of the exact expectations: the ``V`` that sets the shot noise."""
        return math.hypot(self.exact_x, self.exact_y)


def measure_cluster(
    phases: Any, *, lam: Any = 0.0, noise: str = "state", shots: Any = None, seed: Any = 0
) -> ClusterReadout:
    """Run the whole cluster circuit (steps 1-4) and read out qubit 0.

    With ``shots=S`` each basis is measured ``S`` times (``2S`` circuit runs in all), as
    in :func:`sample_readout` with ``jax.random.key(seed)``; the same seed always gives
    the same estimate.
    """
    phases = _check_phases(phases)
    lam = check_probability("lam", lam)
    noise = check_noise_mode(noise)
    if shots is not None:
        shots = check_int("shots", shots, minimum=1)
    seed = check_int("seed", seed, minimum=0)

    z = complex(_run(phases, lam, noise, "readout"))
    ex, ey = z.real, z.imag
    if shots is None:
        x, y = ex, ey
    else:
        xs, ys = sample_readout(jax.random.key(seed), z, shots)
        x, y = float(xs), float(ys)
    return ClusterReadout(float(wrap_angle(math.atan2(y, x))), x, y, ex, ey, shots)


def phase_sum(phases: Any, *, lam: float = 0.0, shots: int | None = None, seed: int = 0) -> float:
    """The cluster's estimate of ``Phi = sum(phases)`` (mod 2 pi), in (-pi, pi].

    The design notes' noise model: depolarizing ``lam`` on every qubit after the GHZ
    state is prepared (use :func:`measure_cluster` for gate-level noise or the raw
    expectations). ``shots=None`` returns the angle of the exact expectations, which
    equals ``Phi`` up to rounding whenever ``lam < 1`` (and is ``0`` at ``lam = 1``);
    ``shots=S`` adds shot noise of standard deviation at most ``1 / ((1 - lam)^k sqrt(S))``
    (see :mod:`qkrum.cqsa.surrogate` for the exact moments).
    """
    return measure_cluster(phases, lam=lam, noise="state", shots=shots, seed=seed).phase
