"""Solve a NumPy QUBO with any dimod sampler.

:func:`solve_qubo` converts the matrix to a ``dimod.BinaryQuadraticModel`` with vectorised
NumPy (no Python loop over the ``n²`` entries), runs the sampler, checks what came back
(every variable present, values in {0, 1}, energies recomputed from the model) and
returns the lowest-energy sample with its timing.

Samplers by name (:func:`get_sampler`): ``"qkrum"`` (default, :class:`SimulatedAnnealingSampler`),
``"exact"`` (:class:`ExactSolver`), ``"dimod-exact"`` (``dimod.ExactSolver``),
``"dwave-sa"`` (dwave-samplers' ``SimulatedAnnealingSampler``), ``"leap-hybrid"``
(D-Wave's ``LeapHybridSampler``; pass ``time_limit=`` to :func:`solve_qubo`) and ``"qpu"``
(``EmbeddingComposite(DWaveSampler())``). The two cloud samplers need ``pip install
"qkrum[dwave]"`` and a Leap API token; without one they raise
:class:`MissingCredentialsError` saying how to configure it, before any network call, and
never fall back to a local solver.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import dimod
import numpy as np

from qkrum.anneal.exact import ExactSolver
from qkrum.anneal.sampler import SimulatedAnnealingSampler

__all__ = [
    "MissingCredentialsError",
    "QUBOSolution",
    "SAMPLER_NAMES",
    "bqm_from_qubo",
    "get_sampler",
    "leap_hybrid_sampler",
    "qpu_sampler",
    "qubo_vectors",
    "solve_qubo",
]

SAMPLER_NAMES = ("qkrum", "exact", "dimod-exact", "dwave-sa", "leap-hybrid", "qpu")


class MissingCredentialsError(RuntimeError):
    """A D-Wave cloud sampler was requested but no Leap API token is configured."""


class QUBOSolution(NamedTuple):
    sample: np.ndarray  # (n,) int8, the lowest-energy sample
    energy: float  # its energy, offset included, recomputed from the QUBO
    sampler: str  # the sampler's class name
    timing: dict  # "wall_s" plus whatever the sampler put in info["timing"]
    sampleset: dimod.SampleSet


def qubo_vectors(Q: Any) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(linear, (irow, icol, quadratic))`` of a square QUBO matrix.

    ``Q`` may be upper-triangular (as :func:`qkrum.qubo.selection_qubo` returns) or full:
    the coefficient of ``x_i x_j`` (``i < j``) is ``Q_ij + Q_ji``.
    """
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"Q must be a square matrix, got shape {Q.shape}")
    if not np.all(np.isfinite(Q)):
        i, j = np.argwhere(~np.isfinite(Q))[0]
        raise ValueError(f"Q must be finite, got Q[{i}, {j}]={Q[i, j]}")
    pair = np.triu(Q, 1) + np.tril(Q, -1).T
    irow, icol = np.nonzero(pair)
    return np.diag(Q).copy(), (irow.astype(np.int64), icol.astype(np.int64), pair[irow, icol])


def bqm_from_qubo(Q: Any, offset: float = 0.0) -> dimod.BinaryQuadraticModel:
    """A BINARY ``dimod.BinaryQuadraticModel`` over variables ``0..n-1``."""
    linear, quadratic = qubo_vectors(Q)
    if not np.isfinite(offset):
        raise ValueError(f"offset must be finite, got offset={offset}")
    return dimod.BinaryQuadraticModel.from_numpy_vectors(linear, quadratic, float(offset), dimod.BINARY)


def _require_credentials(config_file=None, profile=None) -> None:
    try:
        from dwave.cloud.config import get_configfile_paths, load_config
        from dwave.cloud.config.exceptions import ConfigFileError
    except ImportError:
        raise ImportError('D-Wave cloud samplers need dwave-system: pip install "qkrum[dwave]"') from None
    try:
        config = load_config(config_file=config_file, profile=profile)  # env and files, no network
    except ConfigFileError as exc:
        raise MissingCredentialsError(
            f"the D-Wave configuration could not be read ({exc}); fix or remove that file, or "
            "`export DWAVE_API_TOKEN=<token from your Leap dashboard>`") from exc
    if not config.get("token"):
        paths = ", ".join(get_configfile_paths(only_existing=False)) or "(none)"
        raise MissingCredentialsError(
            "no D-Wave Leap API token is configured. Either export it in the environment, "
            "`export DWAVE_API_TOKEN=<token from your Leap dashboard>`, or run `dwave config create` "
            f"to write a dwave.conf (searched: {paths}; select a file or profile with "
            "config_file=/profile=). qkrum does not fall back to a local solver when a cloud "
            "solver was requested."
        )


def leap_hybrid_sampler(*, config_file: str | None = None, profile: str | None = None, **kwargs: Any):
    """D-Wave's ``LeapHybridSampler`` (``time_limit`` goes to :func:`solve_qubo`)."""
    _require_credentials(config_file, profile)
    from dwave.system import LeapHybridSampler

    return LeapHybridSampler(config_file=config_file, profile=profile, **kwargs)


def qpu_sampler(*, config_file: str | None = None, profile: str | None = None, **kwargs: Any):
    """``EmbeddingComposite(DWaveSampler())`` on a D-Wave QPU."""
    _require_credentials(config_file, profile)
    from dwave.system import DWaveSampler, EmbeddingComposite

    return EmbeddingComposite(DWaveSampler(config_file=config_file, profile=profile, **kwargs))


def get_sampler(name: str, **kwargs: Any):
    """A sampler by name (see the module docs); ``kwargs`` go to its constructor."""
    if name == "qkrum":
        return SimulatedAnnealingSampler(**kwargs)
    if name == "exact":
        return ExactSolver(**kwargs)
    if name == "dimod-exact":
        return dimod.ExactSolver(**kwargs)
    if name == "dwave-sa":
        try:
            from dwave.samplers import SimulatedAnnealingSampler as DWaveSA
        except ImportError:
            raise ImportError('sampler "dwave-sa" needs dwave-samplers: pip install dwave-samplers') from None
        return DWaveSA(**kwargs)
    if name == "leap-hybrid":
        return leap_hybrid_sampler(**kwargs)
    if name == "qpu":
        return qpu_sampler(**kwargs)
    raise ValueError(f"unknown sampler={name!r}; valid names: {', '.join(SAMPLER_NAMES)}")


def keeps_cardinality(sampler) -> bool:
    """Whether ``sampler`` can keep exactly m variables at 1 in every state (qkrum's own)."""
    return isinstance(sampler, (SimulatedAnnealingSampler, ExactSolver))


def solve_qubo(Q: Any, offset: float = 0.0, *, sampler: Any = None, cardinality: int | None = None,
               **params: Any) -> QUBOSolution:
    """Lowest-energy sample of the QUBO ``x·diag(Q) + Σ_{i<j} (Q_ij + Q_ji) x_i x_j + offset``.

    Args:
        Q: square matrix (upper-triangular or full), finite.
        sampler: a dimod sampler instance, a name from :data:`SAMPLER_NAMES`, or None for
            qkrum's annealer.
        cardinality: keep exactly this many variables at 1 (qkrum's annealer and exact
            solver only; other samplers need the constraint as a penalty inside ``Q``).
        **params: passed to ``sampler.sample`` (``num_reads``, ``seed``, ``time_limit``, ...).
    """
    bqm = bqm_from_qubo(Q, offset)
    n = bqm.num_variables
    if n < 1:
        raise ValueError("Q must have at least one variable, got shape (0, 0)")
    if sampler is None:
        sampler = SimulatedAnnealingSampler()
    elif isinstance(sampler, str):
        sampler = get_sampler(sampler)
    if not callable(getattr(sampler, "sample", None)):
        raise TypeError(f"sampler must be a dimod sampler or one of {SAMPLER_NAMES}, got {sampler!r}")
    sampler_name = type(sampler).__name__
    if cardinality is not None:
        if not keeps_cardinality(sampler):
            raise ValueError(
                f"sampler {sampler_name} cannot keep cardinality={cardinality}; build Q with the "
                "penalty (qkrum.qubo.selection_qubo(..., lam=None)) and pass cardinality=None")
        params["cardinality"] = cardinality

    t0 = time.perf_counter()
    try:
        sampleset = sampler.sample(bqm, **params)
    except (TypeError, ValueError):
        raise
    except Exception as exc:
        raise RuntimeError(f"sampler {sampler_name} failed: {type(exc).__name__}: {exc}") from exc
    wall = time.perf_counter() - t0

    sampleset = _checked(sampleset, bqm, sampler_name)
    record = sampleset.record
    energies = bqm.energies((record.sample, sampleset.variables))
    best = int(np.argmin(energies))
    order = [sampleset.variables.index(v) for v in range(n)]
    sample = np.asarray(record.sample[best, order], dtype=np.int8)
    timing = {"wall_s": wall, **dict(sampleset.info.get("timing", {}))}
    return QUBOSolution(sample, float(energies[best]), sampler_name, timing, sampleset)


def _checked(sampleset: Any, bqm: dimod.BinaryQuadraticModel, sampler_name: str) -> dimod.SampleSet:
    """Refuse a sampler's answer that cannot be a solution of ``bqm``."""
    if not isinstance(sampleset, dimod.SampleSet):
        raise RuntimeError(f"sampler {sampler_name} returned {type(sampleset).__name__}, not a dimod.SampleSet")
    if len(sampleset) == 0:
        raise RuntimeError(f"sampler {sampler_name} returned no samples")
    if set(sampleset.variables) != set(bqm.variables):
        missing = sorted(set(bqm.variables) - set(sampleset.variables))[:5]
        raise RuntimeError(f"sampler {sampler_name} returned samples over the wrong variables (missing {missing})")
    if sampleset.vartype is dimod.SPIN:
        sampleset = sampleset.change_vartype(dimod.BINARY, inplace=False)
    elif sampleset.vartype is not dimod.BINARY:
        raise RuntimeError(f"sampler {sampler_name} returned {sampleset.vartype.name} samples with values "
                           "outside {0, 1} for a BINARY problem")
    values = sampleset.record.sample
    if not np.isin(values, (0, 1)).all():
        raise RuntimeError(f"sampler {sampler_name} returned values outside {{0, 1}} for a BINARY problem")
    return sampleset
