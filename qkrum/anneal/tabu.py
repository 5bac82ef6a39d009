"""qkrum's exchange tabu search as a ``dimod.Sampler``: the best ``m``-subset of a QUBO.

Client selection asks for the ``m`` of ``n`` variables that minimise a dense QUBO (the
``m`` mutually closest clients). :class:`ExchangeTabuSampler` searches only states with
exactly ``m`` ones: every move exchanges a selected variable for an unselected one, so no
cardinality penalty exists to be climbed, and each iteration makes the best allowed
exchange, found exactly with a bound that skips almost every pair (``csrc/tabu.hpp``).
It declares ``"cardinality"`` in its ``parameters``, so :func:`qkrum.qubo.solve_selection`
hands it the objective alone.

Restarts are convergence-driven: the search stops after the first restart at which
``confirm`` restarts have reached the lowest energy found so far (but not before
``min_restarts``, a floor that shrinks with n), or after ``num_reads`` restarts. Which
restarts are returned depends only on their results, so for a seed the
samples are the same whatever the number of threads. ``timeout`` bounds the wall time
instead, at the price of that determinism (which restarts finish then depends on timing).

Sampler name ``"qkrum-tabu"`` (:func:`qkrum.anneal.get_sampler`). The C++ kernel runs
restarts in parallel; the NumPy fallback (:mod:`qkrum.anneal._python`) runs the same
search one restart after another and draws different random starts.
"""

from __future__ import annotations

import os
import time
from typing import Any

import dimod
import numpy as np

from qkrum import _native
from qkrum._validation import check_int
from qkrum.anneal.sampler import dense_couplings, model_vectors

__all__ = ["DEFAULT_CONFIRM", "DEFAULT_MAX_RESTARTS", "DEFAULT_TENURE", "MIN_RESTARTS_WORK", "ExchangeTabuSampler",
           "default_min_restarts", "default_stall"]

#: Restarts at most when ``num_reads`` is not given.
DEFAULT_MAX_RESTARTS = 64
#: Restarts that must reach the best energy before the search stops.
DEFAULT_CONFIRM = 2
#: The default floor on restarts is this divided by n (at least 1, at most ``num_reads``):
#: 64 (the cap) for n <= 128, 16 at n = 500, 4 at n = 2,000. Two restarts can agree on a
#: wrong basin: on a real MNIST round at n = 15 with three identical min-sum attackers, 36
#: of 64 restarts ended with the attackers selected (objective 54.35 against the optimum
#: 53.07) and the first two did, so a confirm rule alone stopped there. Small problems get
#: many cheap restarts; at n = 2,000 the floor costs about what the confirm rule does.
MIN_RESTARTS_WORK = 8192


def default_min_restarts(n: int, num_reads: int) -> int:
    """``ceil(MIN_RESTARTS_WORK / n)``, clipped to ``[1, num_reads]``."""
    return max(1, min(int(num_reads), -(-MIN_RESTARTS_WORK // max(int(n), 1))))
#: Iterations a moved variable stays tabu. On random selection instances (n = 500 and
#: 2,000, m = n/2 and 0.8 n, 3 seeds) tenure 10 had the most restarts reaching the best
#: energy, 3 and 15-50 far fewer (``python -m benchmarks.tabu_tenure``, docs/solvers.md).
DEFAULT_TENURE = 10


def default_stall(n: int) -> int:
    """Iterations without a new best that end a restart: ``max(100, n)``."""
    return max(100, int(n))


class ExchangeTabuSampler(dimod.Sampler):
    """Tabu search over the states with exactly ``cardinality`` ones (see the module docs).

    Examples:
        >>> import dimod
        >>> from qkrum.anneal import ExchangeTabuSampler
        >>> bqm = dimod.BinaryQuadraticModel({}, {("a", "b"): 1.0, ("a", "c"): 3.0, ("b", "c"): 2.0}, 0, "BINARY")
        >>> ExchangeTabuSampler().sample(bqm, cardinality=2, seed=0).first.sample
        {'a': 1, 'b': 1, 'c': 0}
    """

    parameters = None
    properties = None

    def __init__(self) -> None:
        self.parameters = {
            "cardinality": [],
            "num_reads": [],
            "confirm": [],
            "min_restarts": [],
            "stall": [],
            "max_iterations": [],
            "tenure": [],
            "timeout": [],
            "seed": [],
            "initial_states": [],
            "num_threads": [],
        }
        self.properties = {"implementation": _native.name(), "moves": "exchange (one variable 1 -> 0, one 0 -> 1)"}

    def sample(self, bqm: dimod.BinaryQuadraticModel, *, cardinality=None, num_reads=None, confirm=DEFAULT_CONFIRM,
               min_restarts=None, stall=None, max_iterations=None, tenure=DEFAULT_TENURE, timeout=None,
               seed=None, initial_states=None, num_threads=None, **kwargs) -> dimod.SampleSet:
        """Search ``bqm`` over the states with ``cardinality`` ones. Returns one sample per
        restart run (its best state, polished to a local minimum of the exchanges), energies
        with the offset, and ``info`` with ``restarts``, ``confirmed``, ``timed_out``,
        ``iterations``, ``tenure``, ``stall``, ``seed``, ``implementation`` and ``timing`` (ns).

        Args:
            cardinality: ``m``, required: states keep exactly ``m`` variables at 1 (BINARY;
                for SPIN, ``m`` spins at +1).
            num_reads: restarts at most (default :data:`DEFAULT_MAX_RESTARTS`).
            confirm: stop once this many restarts reached the lowest energy found; 0 runs
                all ``num_reads``.
            min_restarts: the confirm rule stops no earlier than this many restarts
                (default :func:`default_min_restarts`: 64 for n <= 128, 4 at n = 2,000).
            stall: iterations without a new best that end a restart (default
                :func:`default_stall`).
            max_iterations: iterations of one restart at most (default ``100 * stall``).
            tenure: iterations a moved variable may not move back (capped at
                ``min(m, n − m) − 1`` so that a move is always allowed).
            timeout: milliseconds for the whole search, or None. The result then depends on
                timing.
            seed: integer seed; the same seed gives the same samples whatever the number of
                threads, from one implementation.
            initial_states: up to ``num_reads`` states (dimod samples-like over ``bqm``'s
                variables, ``cardinality`` ones each); restart ``r`` starts from state ``r``,
                the others from uniform random ``m``-subsets. A warm start (e.g. MultiKrum's
                selection) goes here.
            num_threads: threads for the restarts (default: all cores).
        """
        t_start = time.perf_counter_ns()
        if kwargs:
            raise TypeError(f"unknown parameter(s) {sorted(kwargs)}; valid parameters: {sorted(self.parameters)}")
        original_vartype = bqm.vartype
        binary = bqm if bqm.vartype is dimod.BINARY else bqm.change_vartype(dimod.BINARY, inplace=False)
        variables = list(binary.variables)
        n = len(variables)
        args = _options(n, cardinality, num_reads, confirm, min_restarts, stall, max_iterations, tenure, timeout,
                        seed, num_threads)
        if initial_states is not None:
            given = dimod.as_samples(initial_states)
            if sorted(map(repr, given[1])) != sorted(map(repr, variables)):
                raise ValueError("initial_states must label exactly the bqm's variables, got "
                                 f"{len(given[1])} labels for n={n} variables")
            order = [list(given[1]).index(v) for v in variables]
            init = np.ascontiguousarray(np.asarray(given[0])[:, order])
            if original_vartype is dimod.SPIN:
                init = (init > 0).astype(np.int8)
            args["initial_states"] = init.astype(np.int8) if init.dtype.kind in "biu" else init
        ldata, (irow, icol, qdata), offset = binary.to_numpy_vectors(variable_order=variables)
        h, irow, icol, qdata = model_vectors(ldata, irow, icol, qdata, offset, labels=variables)
        J = dense_couplings(n, irow, icol, qdata, unique=True)  # a BQM holds each pair once
        sampleset = _search(h, J, float(offset), variables, args, t_start)
        if original_vartype is not dimod.BINARY:
            sampleset.change_vartype(original_vartype, inplace=True)
        return sampleset

    def sample_dense(self, h, J, offset: float = 0.0, *, cardinality=None, num_reads=None, confirm=DEFAULT_CONFIRM,
                     min_restarts=None, stall=None, max_iterations=None, tenure=DEFAULT_TENURE,
                     timeout=None, seed=None, initial_states=None, num_threads=None, **kwargs) -> dimod.SampleSet:
        """:meth:`sample` on a model given as arrays, ``E(x) = h·x + Σ_{i<j} J_ij x_i x_j +
        offset`` over the variables ``0..n-1`` (``J`` dense ``(n, n)``, symmetric, zero on the
        diagonal; ``initial_states`` an ``(k, n)`` 0/1 array). No ``dimod`` model is built:
        :func:`qkrum.qubo.solve_selection` hands the selection problem over this way, which
        at n = 10,000 saves a model of 50 million couplings."""
        t_start = time.perf_counter_ns()
        if kwargs:
            raise TypeError(f"unknown parameter(s) {sorted(kwargs)}; valid parameters: {sorted(self.parameters)}")
        h = np.ascontiguousarray(h, dtype=np.float64)
        J = np.ascontiguousarray(J, dtype=np.float64)
        n = h.shape[0] if h.ndim == 1 else -1
        if h.ndim != 1 or J.shape != (n, n):
            raise ValueError(f"h must have shape (n,) and J shape (n, n), got h.shape={h.shape}, J.shape={J.shape}")
        h, _, _, _ = model_vectors(h, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), offset)
        if not np.all(np.isfinite(J)):
            i, j = (int(v) for v in np.argwhere(~np.isfinite(J))[0])
            raise ValueError(f"the QUBO must be finite, got J[{i}, {j}]={J[i, j]}")
        if np.any(np.diagonal(J) != 0) or not np.array_equal(J, J.T):
            raise ValueError("J must be symmetric with a zero diagonal (put linear terms in h)")
        args = _options(n, cardinality, num_reads, confirm, min_restarts, stall, max_iterations, tenure, timeout,
                        seed, num_threads)
        if initial_states is not None:
            args["initial_states"] = np.ascontiguousarray(np.atleast_2d(np.asarray(initial_states)))
        return _search(h, J, float(offset), list(range(n)), args, t_start)


def _options(n, cardinality, num_reads, confirm, min_restarts, stall, max_iterations, tenure, timeout, seed,
             num_threads) -> dict:
    """The kernel's arguments, every one validated (errors name the parameter)."""
    if cardinality is None:
        raise ValueError("cardinality must be given: ExchangeTabuSampler searches the states with exactly "
                         "cardinality=m variables at 1")
    cardinality = check_int("cardinality", cardinality, minimum=0)
    if cardinality > n:
        raise ValueError(f"cardinality must be <= the number of variables n={n}, got cardinality={cardinality}")
    stall = default_stall(n) if stall is None else check_int("stall", stall, minimum=1)
    if timeout is None:
        timeout_s = 0.0
    else:
        if isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, (int, float, np.integer, np.floating)) \
                or not np.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of milliseconds or None, got timeout={timeout!r}")
        timeout_s = float(timeout) / 1000.0
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    num_reads = DEFAULT_MAX_RESTARTS if num_reads is None else check_int("num_reads", num_reads, minimum=1)
    min_restarts = (default_min_restarts(n, num_reads) if min_restarts is None
                    else min(check_int("min_restarts", min_restarts, minimum=1), num_reads))
    return dict(
        cardinality=cardinality, num_reads=num_reads,
        confirm=check_int("confirm", confirm, minimum=0), min_restarts=min_restarts, stall=stall,
        max_iterations=100 * stall if max_iterations is None else check_int("max_iterations", max_iterations,
                                                                          minimum=0),
        tenure=check_int("tenure", tenure, minimum=0), timeout=timeout_s,
        seed=check_int("seed", seed, minimum=0, maximum=2**64 - 1),
        num_threads=0 if num_threads is None else check_int("num_threads", num_threads, minimum=1),
        initial_states=None)


def _search(h: np.ndarray, J: np.ndarray, offset: float, variables: list, args: dict,
            t_start: int) -> dimod.SampleSet:
    """Run the kernel on checked arrays; a BINARY sample set over ``variables``."""
    n = h.shape[0]
    if n == 0:
        samples, energies, iterations = np.zeros((1, 0), np.int8), np.zeros(1), np.zeros(1, np.int64)
        confirmed = timed_out = False
        t_sample = time.perf_counter_ns()
    else:
        _native.check_tabu_arguments(h, J, **args)
        t_sample = time.perf_counter_ns()
        samples, energies, iterations, confirmed, timed_out = _native.impl().tabu_dense(J, h, **args)
    energies = energies + offset
    t_post = time.perf_counter_ns()
    sampleset = dimod.SampleSet.from_samples(
        (samples, variables), vartype=dimod.BINARY, energy=energies,
        info={"restarts": int(samples.shape[0]), "confirmed": bool(confirmed), "timed_out": bool(timed_out),
              "iterations": [int(i) for i in iterations], "tenure": args["tenure"], "stall": args["stall"],
              "cardinality": args["cardinality"], "seed": args["seed"], "min_restarts": args["min_restarts"],
              "implementation": _native.name()})
    sampleset.info["timing"] = {"preprocessing_ns": t_sample - t_start, "sampling_ns": t_post - t_sample,
                                "postprocessing_ns": time.perf_counter_ns() - t_post}
    return sampleset
