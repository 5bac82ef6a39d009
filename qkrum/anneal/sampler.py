"""qkrum's simulated annealer as a ``dimod.Sampler``.

Keyword names follow dwave-samplers' ``SimulatedAnnealingSampler`` so the two are drop-in
replacements for each other; qkrum adds ``cardinality`` (swap moves that keep exactly
``m`` variables at 1: the mode qkrum's client selection uses, because every state then
satisfies the constraint and the penalty never has to be climbed) and ``num_threads``.
Every argument is validated here; the annealing itself runs in C++ (``qkrum._core``) or,
without the extension (or with ``QKRUM_IMPLEMENTATION=python``), in the NumPy fallback
:mod:`qkrum.anneal._python`.

The two implementations have the same interface, semantics and errors and sample the same
distribution, but they do not draw the same random stream: the same ``seed`` gives the
same samples from one implementation (whatever the number of threads), not the same
samples from both. A long anneal reaches the same ground state either way; a short one
(few sweeps or reads) can end in different states, and so a QUBO selection with the same
seed can differ between a machine with the extension and one without. ``info
["implementation"]`` of every sample set (and ``Selection.info["implementation"]``) says
which one ran.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import dimod
import numpy as np

from qkrum import _native
from qkrum._validation import check_int
from qkrum.anneal.schedule import BETA_SCHEDULE_TYPES, default_beta_range, exchange_energy_scale, make_beta_schedule

__all__ = ["QuboArrays", "SimulatedAnnealingSampler", "looks_cardinality_penalised", "qubo_arrays"]

DEFAULT_NUM_SWEEPS = 1000
# Above this density the couplings are stored dense (the selection QUBOs are fully dense).
_DENSE_FILL = 0.25


class QuboArrays(NamedTuple):
    """A binary quadratic model as arrays: energy ``h·x + Σ_{i<j} J_ij x_i x_j + offset``."""

    h: np.ndarray  # (n,)
    J: np.ndarray | None  # dense symmetric (n, n), zero diagonal, or None
    csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (indptr, indices, data), both triangles
    pairs: np.ndarray  # the nonzero couplings, each pair once
    row_abs_sums: np.ndarray  # Σ_j |J_ij|
    offset: float

    @property
    def n(self) -> int:
        return self.h.shape[0]


def model_vectors(linear: np.ndarray, irow: np.ndarray, icol: np.ndarray, qdata: np.ndarray, offset: float,
                  labels=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dimod-style model vectors as float64/int64 arrays, checked finite (every qkrum sampler's
    check: an error names the variable or pair)."""
    h = np.ascontiguousarray(linear, dtype=np.float64)
    n = h.shape[0]
    irow = np.asarray(irow, dtype=np.int64)
    icol = np.asarray(icol, dtype=np.int64)
    qdata = np.asarray(qdata, dtype=np.float64)
    labels = list(range(n)) if labels is None else labels
    if not np.all(np.isfinite(h)):
        i = int(np.flatnonzero(~np.isfinite(h))[0])
        raise ValueError(f"the QUBO must be finite, got linear bias {h[i]} on variable {labels[i]!r}")
    if not np.all(np.isfinite(qdata)):
        k = int(np.flatnonzero(~np.isfinite(qdata))[0])
        raise ValueError(
            f"the QUBO must be finite, got quadratic bias {qdata[k]} on ({labels[irow[k]]!r}, {labels[icol[k]]!r})")
    if not np.isfinite(offset):
        raise ValueError(f"the QUBO must be finite, got offset={offset}")
    return h, irow, icol, qdata


def dense_couplings(n: int, irow: np.ndarray, icol: np.ndarray, qdata: np.ndarray, *,
                    unique: bool = False) -> np.ndarray:
    """The symmetric ``(n, n)`` coupling matrix (zero diagonal) of the pairs ``(irow, icol)``.
    Repeated pairs are summed; ``unique=True`` promises that none repeats (a BQM's
    ``to_numpy_vectors``) and writes them directly, five times faster."""
    if unique:
        J = np.zeros(n * n)
        np.put(J, irow * n + icol, qdata)
        np.put(J, icol * n + irow, qdata)
        return J.reshape(n, n)
    # bincount sums repeated pairs as np.add.at would, ten times faster.
    J = np.bincount(irow * n + icol, weights=qdata, minlength=n * n).reshape(n, n)
    return J + J.T


def qubo_arrays(linear: np.ndarray, irow: np.ndarray, icol: np.ndarray, qdata: np.ndarray,
                offset: float, labels=None) -> QuboArrays:
    """Validate and pack a binary model given as dimod-style numpy vectors."""
    h, irow, icol, qdata = model_vectors(linear, irow, icol, qdata, offset, labels)
    n = h.shape[0]
    row_abs = np.bincount(irow, weights=np.abs(qdata), minlength=n) + np.bincount(icol, weights=np.abs(qdata), minlength=n)
    J = csr = None
    if n and qdata.size >= _DENSE_FILL * n * (n - 1) / 2:
        J = dense_couplings(n, irow, icol, qdata)
    else:
        rows = np.concatenate([irow, icol])
        cols = np.concatenate([icol, irow])
        vals = np.concatenate([qdata, qdata])
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
        csr = (indptr, np.ascontiguousarray(cols), np.ascontiguousarray(vals))
    return QuboArrays(h, J, csr, qdata, row_abs, float(offset))


def looks_cardinality_penalised(arrays: QuboArrays) -> bool:
    """Whether a model carries the signature of a cardinality penalty ``λ(Σx − m)²``.

    That penalty adds ``+2λ`` to every pair, so the couplings of a penalised dense model
    share a positive offset much larger than their spread (the selection QUBOs:
    ``J_ij = 2λ − 2D_ij``). Sparse models, and couplings of mixed sign, say no.
    """
    n, pairs = arrays.n, arrays.pairs
    if n < 3 or pairs.size < _DENSE_FILL * n * (n - 1) / 2:
        return False
    mean = float(pairs.mean())
    return mean > 0 and mean > 3.0 * float(pairs.std())


def _optional_int(name, value, minimum):
    return None if value is None else check_int(name, value, minimum=minimum)


class SimulatedAnnealingSampler(dimod.Sampler, dimod.Initialized):
    """Simulated annealing for binary quadratic models (see the module docs).

    Examples:
        >>> import dimod
        >>> from qkrum.anneal import SimulatedAnnealingSampler
        >>> bqm = dimod.BinaryQuadraticModel({"a": -1, "b": 1}, {("a", "b"): 2}, 0, "BINARY")
        >>> SimulatedAnnealingSampler().sample(bqm, num_reads=10, seed=1).first.sample
        {'a': 1, 'b': 0}
    """

    # dimod declares these abstract; instances fill in their own copies below.
    parameters = None
    properties = None

    def __init__(self) -> None:
        self.parameters = {
            "beta_range": [],
            "num_reads": [],
            "num_sweeps": [],
            "num_sweeps_per_beta": [],
            "beta_schedule_type": ["beta_schedule_options"],
            "beta_schedule": [],
            "seed": [],
            "initial_states": [],
            "initial_states_generator": [],
            "randomize_order": [],
            "proposal_acceptance_criteria": [],
            "cardinality": [],
            "swap_moves": [],
            "num_threads": [],
        }
        self.properties = {
            "beta_schedule_options": BETA_SCHEDULE_TYPES,
            "implementation": _native.name(),
        }

    def sample(self, bqm: dimod.BinaryQuadraticModel, *, beta_range=None, num_reads=None, num_sweeps=None,
               num_sweeps_per_beta=1, beta_schedule_type="geometric", beta_schedule=None, seed=None,
               initial_states=None, initial_states_generator="random", randomize_order=False,
               proposal_acceptance_criteria="Metropolis", cardinality=None, swap_moves=None,
               num_threads=None, **kwargs) -> dimod.SampleSet:
        """Anneal ``bqm``; returns a ``SampleSet`` in ``bqm``'s vartype with energies
        including the offset and ``info`` holding ``beta_range``, ``timing`` (ns),
        ``flip_attempts`` and ``implementation``.

        Args:
            beta_range: ``(β_hot, β_cold)``; default from the problem, see
                :mod:`qkrum.anneal.schedule`.
            num_reads: independent anneals (default 1, or the number of initial states).
            num_sweeps: sweeps per read (default 1000); a sweep is ``n`` move attempts.
            num_sweeps_per_beta: sweeps at each β.
            beta_schedule_type: ``"geometric"``, ``"linear"`` or ``"custom"``.
            beta_schedule: the β values for ``"custom"``.
            seed: integer seed; the same seed gives the same samples, whatever the
                number of threads, from one implementation (native and Python draw
                different random streams; see the module docs).
            initial_states, initial_states_generator: as in dimod's ``Initialized``.
            randomize_order: visit variables in random order (default: sequential).
            proposal_acceptance_criteria: only ``"Metropolis"``.
            cardinality: if given, an integer ``m``: every state keeps exactly ``m``
                variables at 1 (BINARY; for SPIN, ``m`` spins at +1) and moves are swaps.
            swap_moves: each sweep adds ``n`` exchange attempts (one variable 1 → 0, another
                0 → 1) to the ``n`` single flips. For QUBOs with a cardinality penalty this
                moves between solutions of equal cardinality without climbing the penalty,
                while single flips can still change the cardinality. ``None`` (default):
                on when the model looks penalised (:func:`looks_cardinality_penalised`),
                off otherwise, which is dwave-samplers' move set. ``info["swap_moves"]``
                says which was used; ``flip_attempts`` counts both kinds of move.
            num_threads: threads for the reads (default: all cores).
        """
        t_start = time.perf_counter_ns()
        if kwargs:
            raise TypeError(f"unknown parameter(s) {sorted(kwargs)}; valid parameters: {sorted(self.parameters)}")
        num_reads = _optional_int("num_reads", num_reads, 1)
        num_sweeps = _optional_int("num_sweeps", num_sweeps, 0)
        num_sweeps_per_beta = check_int("num_sweeps_per_beta", num_sweeps_per_beta, minimum=1)
        num_threads = _optional_int("num_threads", num_threads, 1)
        if beta_schedule_type not in BETA_SCHEDULE_TYPES:
            raise ValueError(f"beta_schedule_type must be one of {BETA_SCHEDULE_TYPES}, got {beta_schedule_type!r}")
        if proposal_acceptance_criteria != "Metropolis":
            raise ValueError("proposal_acceptance_criteria must be 'Metropolis' (the only one implemented), "
                             f"got {proposal_acceptance_criteria!r}")
        for flag_name, flag in (("randomize_order", randomize_order), ("swap_moves", swap_moves)):
            if flag_name == "swap_moves" and flag is None:
                continue
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{flag_name} must be a bool, got {flag_name}={flag!r}")
        if seed is not None:
            seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)

        original_vartype = bqm.vartype
        binary = bqm if bqm.vartype is dimod.BINARY else bqm.change_vartype(dimod.BINARY, inplace=False)
        variables = list(binary.variables)
        n = len(variables)
        if cardinality is not None:
            cardinality = check_int("cardinality", cardinality, minimum=0)
            if cardinality > n:
                raise ValueError(f"cardinality must be <= the number of variables n={n}, got cardinality={cardinality}")

        if initial_states is not None:
            parsed = self.parse_initial_states(binary, num_reads=num_reads, initial_states=initial_states,
                                               initial_states_generator=initial_states_generator, seed=seed)
            num_reads = parsed.num_reads
            init = np.ascontiguousarray(
                parsed.initial_states.record.sample[:, [parsed.initial_states.variables.index(v) for v in variables]],
                dtype=np.int8) if n else None
        else:
            if initial_states_generator not in ("random", "none", "tile"):
                raise ValueError("initial_states_generator must be 'random', 'none' or 'tile', "
                                 f"got {initial_states_generator!r}")
            init = None
        num_reads = 1 if num_reads is None else num_reads
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")

        ldata, (irow, icol, qdata), offset = binary.to_numpy_vectors(variable_order=variables)
        arrays = qubo_arrays(ldata, irow, icol, qdata, offset, labels=variables)
        schedule, beta_range = self._schedule(arrays, beta_range, num_sweeps, num_sweeps_per_beta,
                                              beta_schedule_type, beta_schedule, cardinality)
        if swap_moves is None:
            swap_moves = cardinality is None and looks_cardinality_penalised(arrays)
        if init is not None and cardinality is not None:
            counts = init.sum(axis=1)
            bad = np.flatnonzero(counts != cardinality)
            if bad.size:
                raise ValueError(f"initial_states row {int(bad[0])} has {int(counts[bad[0]])} ones but "
                                 f"cardinality={cardinality}")
        t_sample = time.perf_counter_ns()
        if n == 0:
            samples = np.zeros((num_reads, 0), np.int8)
            energies = np.zeros(num_reads)
            attempts = 0
        else:
            samples, energies, attempts = run_arrays(arrays, schedule, num_reads=num_reads, seed=seed,
                                                     randomize_order=bool(randomize_order),
                                                     cardinality=cardinality, swap_moves=bool(swap_moves),
                                                     num_threads=num_threads, initial_states=init)
        t_post = time.perf_counter_ns()
        sampleset = dimod.SampleSet.from_samples(
            (samples, variables), vartype=dimod.BINARY, energy=energies + arrays.offset,
            info={"beta_range": list(beta_range), "beta_schedule_type": beta_schedule_type,
                  "flip_attempts": int(attempts), "implementation": _native.name(),
                  "cardinality": cardinality, "swap_moves": bool(swap_moves), "seed": seed})
        if original_vartype is not dimod.BINARY:
            sampleset.change_vartype(original_vartype, inplace=True)
        sampleset.info["timing"] = {
            "preprocessing_ns": t_sample - t_start,
            "sampling_ns": t_post - t_sample,
            "postprocessing_ns": time.perf_counter_ns() - t_post,
        }
        return sampleset

    @staticmethod
    def _schedule(arrays, beta_range, num_sweeps, num_sweeps_per_beta, schedule_type, beta_schedule, cardinality):
        if schedule_type == "custom":
            if beta_schedule is None:
                raise ValueError("beta_schedule must be given when beta_schedule_type='custom'")
            betas = np.asarray(beta_schedule, dtype=np.float64)
            if betas.ndim != 1 or not np.all(np.isfinite(betas)) or np.any(betas < 0):
                raise ValueError("beta_schedule must be a 1-D sequence of finite values >= 0, "
                                 f"got beta_schedule={beta_schedule!r}")
            if num_sweeps is not None and num_sweeps != betas.size * num_sweeps_per_beta:
                raise ValueError(f"num_sweeps={num_sweeps} must equal len(beta_schedule) * num_sweeps_per_beta "
                                 f"= {betas.size * num_sweeps_per_beta} for beta_schedule_type='custom' (or be None)")
            rng = (float(betas[0]), float(betas[-1])) if betas.size else (0.0, 0.0)
            return make_beta_schedule(None, 0, "custom", num_sweeps_per_beta, betas), rng
        if beta_schedule is not None:
            raise ValueError(f"beta_schedule must be None unless beta_schedule_type='custom' (got {schedule_type!r})")
        num_sweeps = DEFAULT_NUM_SWEEPS if num_sweeps is None else num_sweeps
        if num_sweeps % num_sweeps_per_beta:
            raise ValueError(f"num_sweeps={num_sweeps} must be divisible by num_sweeps_per_beta={num_sweeps_per_beta}")
        if beta_range is None:
            scale = None
            if cardinality is not None and num_sweeps > 0:
                scale = exchange_energy_scale(arrays.h, cardinality, J=arrays.J, csr=arrays.csr)
            beta_range = default_beta_range(arrays.h, arrays.row_abs_sums, arrays.pairs,
                                            swaps=cardinality is not None, exchange_scale=scale)
        else:
            try:
                lo, hi = (float(b) for b in beta_range)
            except (TypeError, ValueError):
                raise ValueError(f"beta_range must be a pair (beta_min, beta_max), got beta_range={beta_range!r}") from None
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi < 0:
                raise ValueError(f"beta_range must hold finite values >= 0, got beta_range={beta_range!r}")
            if lo > hi:
                raise ValueError(f"beta_range must satisfy beta_min <= beta_max, got beta_range={beta_range!r}")
            if schedule_type == "geometric" and lo == 0:
                raise ValueError(f"beta_range must be > 0 for a geometric schedule, got beta_range={beta_range!r}")
            beta_range = (lo, hi)
        if num_sweeps == 0:
            return np.zeros(0), beta_range
        return make_beta_schedule(beta_range, num_sweeps, schedule_type, num_sweeps_per_beta), beta_range


def run_arrays(arrays: QuboArrays, schedule: np.ndarray, *, num_reads: int, seed: int, randomize_order: bool = False,
               cardinality: int | None = None, swap_moves: bool = False, num_threads: int | None = None,
               initial_states: np.ndarray | None = None):
    """Run the annealing kernel on packed arrays: ``(samples, energies without offset, attempts)``."""
    impl = _native.impl()
    common = dict(num_reads=num_reads, beta_schedule=np.ascontiguousarray(schedule, dtype=np.float64),
                  seed=int(seed), order="random" if randomize_order else "sequential",
                  cardinality=-1 if cardinality is None else int(cardinality),
                  num_threads=0 if num_threads is None else int(num_threads), initial_states=initial_states,
                  swap_moves=swap_moves)
    _native.check_anneal_arguments(arrays.h, arrays.J, arrays.csr, **common)
    if arrays.J is not None:
        return impl.anneal_dense(arrays.J, arrays.h, **common)
    indptr, indices, data = arrays.csr
    return impl.anneal_csr(indptr, indices, data, arrays.h, **common)
