"""Solve a selection problem (or a NumPy QUBO) with any dimod sampler.

:func:`sample_problem` is the one way a problem reaches a BQM sampler: it takes a
:class:`qkrum.qubo.SelectionProblem`, converts it to a ``dimod.BinaryQuadraticModel``
exactly once (from NumPy vectors of the dense couplings, no Python loop over the ``n²``
entries), runs the sampler, checks what came back (every variable present, values in
{0, 1}, energies recomputed from the model) and returns the lowest-energy sample with its
timing. :func:`solve_qubo` does the same for a QUBO matrix.

Samplers: :func:`resolve_sampler` turns ``None`` (qkrum's
:class:`SimulatedAnnealingSampler`), a name (:func:`get_sampler`) or an instance into the
sampler that runs. Names: ``"qkrum"`` (default, :class:`SimulatedAnnealingSampler`),
``"qkrum-tabu"`` (:class:`ExchangeTabuSampler`), ``"exact"`` (:class:`ExactSolver`),
``"dimod-exact"`` (``dimod.ExactSolver``), ``"dwave-sa"`` (dwave-samplers'
``SimulatedAnnealingSampler``), ``"leap-hybrid"`` (D-Wave's ``LeapHybridSampler``; pass
``time_limit=`` to :func:`solve_qubo`), ``"leap-hybrid-cqm"`` (``LeapHybridCQMSampler``,
selection problems only) and ``"qpu"`` (``EmbeddingComposite(DWaveSampler())``). The cloud
samplers need ``pip install "qkrum[dwave]"`` and a Leap API token; without one they raise
:class:`MissingCredentialsError` saying how to configure it, before any network call, and
never fall back to a local solver.

Keeping the cardinality is a declared capability (:func:`keeps_cardinality`): a sampler
that keeps ``Σx = m`` in every state declares ``"cardinality"`` in its ``parameters`` (dimod's
way for a sampler to declare the keywords it accepts) and accepts
``sample(bqm, cardinality=m)``; a third-party sampler that does so gets the objective alone
(``problem.cardinality=m``) from :func:`qkrum.qubo.solve_selection`, every other sampler
the penalised problem. qkrum's :class:`SimulatedAnnealingSampler`,
:class:`ExchangeTabuSampler` and :class:`ExactSolver` declare it. qkrum's annealer is also
told ``swap_moves=`` from the problem (on when the problem carries a penalty), so it need
not guess from the couplings. The tabu search gets the problem's arrays directly, without
a ``dimod`` model. D-Wave's ``LeapHybridCQMSampler`` (``"leap-hybrid-cqm"``) gets a
constrained model instead (:func:`cqm_from_problem`, :func:`sample_problem_cqm`).

Failures are :class:`qkrum.errors.SamplerError` (a ``RuntimeError``, also raised by
:func:`qkrum.select`), made in one place, :func:`sampler_failure`: whatever a sampler raises
from ``sample`` (or a cloud sampler from its constructor, which contacts the API), and
answers that cannot be a solution. A SamplerError raised inside a sampler (a composite that
runs qkrum itself) passes through as is, never wrapped twice. The message names the sampler
by its type (``module.qualname``), says what it raised and, for a chained exception, its
root cause (a timeout is often a network error underneath), with a hint for network
errors; the original exception is chained. The exception: a ``ValueError`` or ``TypeError``
from qkrum's own samplers, which check every argument before they anneal, is a bad option
and reaches the caller as is.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import dimod
import numpy as np

from qkrum._optional import require
from qkrum.anneal.exact import ExactSolver
from qkrum.anneal.sampler import SimulatedAnnealingSampler
from qkrum.anneal.tabu import ExchangeTabuSampler
from qkrum.errors import SamplerError
from qkrum.qubo.problem import SelectionProblem, problem_from_qubo

__all__ = [
    "MissingCredentialsError",
    "QUBOSolution",
    "SAMPLER_NAMES",
    "SamplerError",
    "bqm_from_problem",
    "bqm_from_qubo",
    "cqm_from_problem",
    "get_sampler",
    "is_cqm_sampler",
    "keeps_cardinality",
    "leap_hybrid_cqm_sampler",
    "leap_hybrid_sampler",
    "qpu_sampler",
    "qubo_vectors",
    "resolve_sampler",
    "sample_problem",
    "sample_problem_cqm",
    "sampler_failure",
    "sampler_label",
    "solve_qubo",
]

SAMPLER_NAMES = ("qkrum", "qkrum-tabu", "exact", "dimod-exact", "dwave-sa", "leap-hybrid", "leap-hybrid-cqm", "qpu")


class MissingCredentialsError(SamplerError):
    """A D-Wave cloud sampler was requested but no Leap API token is configured (or the
    configuration cannot be read). A :class:`SamplerError`: the sampler cannot be used."""


class QUBOSolution(NamedTuple):
    sample: np.ndarray  # (n,) int8, the lowest-energy sample
    energy: float  # its energy, offset included, recomputed from the QUBO
    sampler: str  # the sampler's class name
    timing: dict  # "wall_s" plus whatever the sampler put in info["timing"]
    sampleset: dimod.SampleSet
    # "native" or "python": the kernel that ran, for qkrum's own samplers (their random
    # streams differ, so a short anneal may answer differently); None for other samplers.
    implementation: str | None = None


def sampler_label(sampler: Any) -> str:
    """A sampler named by its type, ``module.qualname``: its repr may be the default
    ``<... object at 0x...>``, which says nothing and changes from run to run."""
    cls = sampler if isinstance(sampler, type) else type(sampler)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):  # a chain can loop
        chain.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    return chain


def _exception_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def sampler_failure(sampler: Any, exc: BaseException, what: str = "failed") -> SamplerError:
    """The :class:`SamplerError` for ``exc`` raised by ``sampler`` (an instance or a class);
    raise it ``from exc``. An exception that already is a SamplerError is returned as is, so
    that no failure is wrapped twice."""
    if isinstance(exc, SamplerError):
        return exc
    chain = _exception_chain(exc)
    text = f"sampler {sampler_label(sampler)} {what}: {_exception_text(exc)}"
    if len(chain) > 1:
        # The outer exception often hides the cause: the Leap client reports an unreachable
        # API host as a RequestTimeout, and only the chain says the host could not be reached.
        text += f" (root cause: {_exception_text(chain[-1])})"
    if any(isinstance(e, OSError) for e in chain):  # requests' and the Leap client's errors are OSErrors
        text += (". An OSError in the chain means a network (or I/O) failure: check that this machine can "
                 "reach the sampler's service (connection, proxy, firewall). For D-Wave Leap, `dwave "
                 "solvers --list` checks the connection and the token without submitting a problem; an "
                 "unreachable API fails this way whatever the token, while a wrong token that reaches "
                 "the API is refused as an authentication error")
    return SamplerError(text)


def problem_vectors(problem: SelectionProblem) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(linear, (irow, icol, quadratic))``: the problem's ``h`` and its nonzero
    upper-triangular couplings, the vectors dimod and the kernels take."""
    irow, icol = np.nonzero(np.triu(problem.J, 1))
    return problem.h.copy(), (irow.astype(np.int64), icol.astype(np.int64), problem.J[irow, icol])


def qubo_vectors(Q: Any) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(linear, (irow, icol, quadratic))`` of a square QUBO matrix.

    ``Q`` may be upper-triangular (as :func:`qkrum.qubo.selection_qubo` returns) or full:
    the coefficient of ``x_i x_j`` (``i < j``) is ``Q_ij + Q_ji``.
    """
    return problem_vectors(problem_from_qubo(Q))


def bqm_from_problem(problem: SelectionProblem) -> dimod.BinaryQuadraticModel:
    """The problem as a BINARY ``dimod.BinaryQuadraticModel`` over variables ``0..n-1``,
    built from NumPy vectors (the nonzero upper-triangular couplings of ``J``)."""
    linear, quadratic = problem_vectors(problem)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(linear, quadratic, problem.offset, dimod.BINARY)


def bqm_from_qubo(Q: Any, offset: float = 0.0) -> dimod.BinaryQuadraticModel:
    """A BINARY ``dimod.BinaryQuadraticModel`` over variables ``0..n-1``."""
    return bqm_from_problem(problem_from_qubo(Q, offset))


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
            f"the D-Wave configuration could not be read ({exc}); fix or remove that file, regenerate "
            "it with `dwave config create`, or `export DWAVE_API_TOKEN=<token from your Leap dashboard>`"
        ) from exc
    except UnicodeDecodeError as exc:  # dwave-cloud-client lets it through without the file name
        raise MissingCredentialsError(
            f"{_undecodable_config_file(config_file, get_configfile_paths)} is not a text file "
            f"({exc.reason} at byte {exc.start}); regenerate it with "
            "`dwave config create`, or remove it and `export DWAVE_API_TOKEN=<token from your Leap "
            "dashboard>`") from exc
    if not config.get("token"):
        paths = ", ".join(get_configfile_paths(only_existing=False)) or "(none)"
        raise MissingCredentialsError(
            "no D-Wave Leap API token is configured. Either export it in the environment, "
            "`export DWAVE_API_TOKEN=<token from your Leap dashboard>`, or run `dwave config create` "
            f"to write a dwave.conf (searched: {paths}; select a file or profile with "
            "config_file=/profile=). qkrum does not fall back to a local solver when a cloud "
            "solver was requested."
        )


def _undecodable_config_file(config_file, get_configfile_paths) -> str:
    """Names the first of the files ``load_config`` reads (``config_file``, else
    ``$DWAVE_CONFIG_FILE``, else the standard paths) that is not text in the locale's
    encoding, or all of them when none fails here."""
    if config_file is None:
        config_file = os.getenv("DWAVE_CONFIG_FILE") or None
    if config_file:
        paths = [config_file] if isinstance(config_file, (str, os.PathLike)) else list(config_file)
    else:
        paths = get_configfile_paths()
    for path in paths:
        try:
            with open(os.path.expandvars(os.path.expanduser(path))) as f:  # as dwave-cloud-client opens it
                f.read()
        except UnicodeDecodeError:
            return f"the D-Wave configuration file {os.fspath(path)!r}"
        except OSError:
            continue
    return "one of the D-Wave configuration files " + ", ".join(repr(os.fspath(p)) for p in paths)


def _make_cloud_sampler(cls, *args: Any, **kwargs: Any):
    """``cls(*args, **kwargs)``; cloud samplers contact the API here (to pick a solver), so
    this is where an unreachable host or a refused token shows up."""
    try:
        return cls(*args, **kwargs)
    except Exception as exc:
        raise sampler_failure(cls, exc, "could not be created") from exc


def leap_hybrid_sampler(*, config_file: str | None = None, profile: str | None = None, **kwargs: Any):
    """D-Wave's ``LeapHybridSampler`` (``time_limit`` goes to :func:`solve_qubo`)."""
    _require_credentials(config_file, profile)
    LeapHybridSampler = require("dwave.system", "dwave", "the Leap hybrid sampler",
                                package="dwave-system").LeapHybridSampler
    return _make_cloud_sampler(LeapHybridSampler, config_file=config_file, profile=profile, **kwargs)


def leap_hybrid_cqm_sampler(*, config_file: str | None = None, profile: str | None = None, **kwargs: Any):
    """D-Wave's ``LeapHybridCQMSampler``: the selection as a constrained model, the
    objective with the constraint ``Σx = m`` instead of a penalty (:func:`cqm_from_problem`;
    ``time_limit`` goes to :func:`qkrum.qubo.solve_selection` as a sampler parameter)."""
    _require_credentials(config_file, profile)
    LeapHybridCQMSampler = require("dwave.system", "dwave", "the Leap hybrid CQM sampler",
                                   package="dwave-system").LeapHybridCQMSampler
    return _make_cloud_sampler(LeapHybridCQMSampler, config_file=config_file, profile=profile, **kwargs)


def qpu_sampler(*, config_file: str | None = None, profile: str | None = None, **kwargs: Any):
    """``EmbeddingComposite(DWaveSampler())`` on a D-Wave QPU."""
    _require_credentials(config_file, profile)
    system = require("dwave.system", "dwave", "the D-Wave QPU sampler", package="dwave-system")
    DWaveSampler, EmbeddingComposite = system.DWaveSampler, system.EmbeddingComposite

    return EmbeddingComposite(_make_cloud_sampler(DWaveSampler, config_file=config_file, profile=profile, **kwargs))


def get_sampler(name: str, **kwargs: Any):
    """A sampler by name (see the module docs); ``kwargs`` go to its constructor."""
    if name == "qkrum":
        return SimulatedAnnealingSampler(**kwargs)
    if name == "qkrum-tabu":
        return ExchangeTabuSampler(**kwargs)
    if name == "exact":
        return ExactSolver(**kwargs)
    if name == "dimod-exact":
        return dimod.ExactSolver(**kwargs)
    if name == "dwave-sa":
        try:
            from dwave.samplers import SimulatedAnnealingSampler as DWaveSA
        except ImportError:
            raise ImportError('sampler "dwave-sa" needs dwave-samplers, which is not installed; install it with: '
                              "pip install 'qkrum[bench]' (or pip install dwave-samplers)") from None
        return DWaveSA(**kwargs)
    if name == "leap-hybrid":
        return leap_hybrid_sampler(**kwargs)
    if name == "leap-hybrid-cqm":
        return leap_hybrid_cqm_sampler(**kwargs)
    if name == "qpu":
        return qpu_sampler(**kwargs)
    raise ValueError(f"unknown sampler={name!r}; valid names: {', '.join(SAMPLER_NAMES)}")


def resolve_sampler(sampler: Any = None):
    """The sampler that runs: ``None`` → qkrum's :class:`SimulatedAnnealingSampler`, a name →
    :func:`get_sampler`, an instance → itself. A class, or an object without a ``sample``
    method, is a ``TypeError``."""
    if sampler is None:
        return SimulatedAnnealingSampler()
    if isinstance(sampler, str):
        return get_sampler(sampler)
    if isinstance(sampler, type):  # its sample() would fail for want of self, reported as a sampler failure
        raise TypeError(f"sampler must be a sampler instance, got the class {sampler_label(sampler)}; "
                        f"pass {sampler.__name__}()")
    if not callable(getattr(sampler, "sample", None)) and not is_cqm_sampler(sampler):
        got = (repr(sampler) if isinstance(sampler, (int, float, complex, bytes))
               else f"an object of type {sampler_label(sampler)}, which has no sample method")
        raise TypeError(f"sampler must be a dimod sampler or one of {SAMPLER_NAMES}, got {got}")
    return sampler


def is_cqm_sampler(sampler: Any) -> bool:
    """Whether ``sampler`` solves constrained models (``sample_cqm``, as D-Wave's
    ``LeapHybridCQMSampler``) and not binary quadratic models: the selection then goes to
    it as :func:`cqm_from_problem`."""
    return callable(getattr(sampler, "sample_cqm", None)) and not callable(getattr(sampler, "sample", None))


def cqm_from_problem(problem: SelectionProblem) -> dimod.ConstrainedQuadraticModel:
    """The selection as a ``dimod.ConstrainedQuadraticModel``: the problem's objective (it
    must carry no penalty: ``selection_problem(D, m, keep_cardinality=True)``) subject to
    the one constraint ``Σ_i x_i == m``, labelled ``"cardinality"``."""
    if problem.cardinality is None:
        raise ValueError("a constrained model takes the objective alone with cardinality=m; build the problem "
                         "with qkrum.qubo.selection_problem(D, m, keep_cardinality=True)")
    cqm = dimod.ConstrainedQuadraticModel()
    cqm.set_objective(bqm_from_problem(problem))
    cqm.add_constraint_from_iterable([(i, 1.0) for i in range(problem.n)], "==", rhs=problem.cardinality,
                                     label="cardinality")
    return cqm


def _run_sampler(sampler: Any, method: Any, model: Any, params: dict, *, own: bool) -> tuple[Any, float]:
    """``method(model, **params)`` and its wall time; whatever it raises becomes the one
    :class:`SamplerError` (:func:`sampler_failure`), except a bad option of qkrum's own
    samplers (``own``), which check every argument before they run and report it as is."""
    t0 = time.perf_counter()
    try:
        sampleset = method(model, **params)
    except SamplerError:
        raise  # already made by sampler_failure (a composite running qkrum): never wrapped twice
    except Exception as exc:
        if own and isinstance(exc, (TypeError, ValueError)):
            raise
        raise sampler_failure(sampler, exc) from exc
    return sampleset, time.perf_counter() - t0


def sample_problem_cqm(problem: SelectionProblem, sampler: Any, **params: Any) -> QUBOSolution:
    """Lowest-energy *feasible* sample of the constrained model of ``problem``
    (:func:`cqm_from_problem`) from a CQM sampler (:func:`is_cqm_sampler`). Infeasible
    samples (``Σx ≠ m``) are dropped; an answer without a feasible one is a
    :class:`SamplerError`. Energies are recomputed from the objective."""
    label = sampler_label(sampler)
    cqm = cqm_from_problem(problem)
    bqm = bqm_from_problem(problem)
    sampleset, wall = _run_sampler(sampler, sampler.sample_cqm, cqm, params, own=False)
    sampleset = _checked(sampleset, bqm, label, constrained=True)
    order = [sampleset.variables.index(v) for v in range(problem.n)]
    samples = np.asarray(sampleset.record.sample[:, order], dtype=np.int8)
    feasible = samples.sum(axis=1) == problem.cardinality  # the constraint, checked here, not trusted
    if not feasible.any():
        raise SamplerError(f"sampler {label} returned no feasible sample: none has sum(x) == m="
                           f"{problem.cardinality} (sizes {sorted(set(samples.sum(axis=1).tolist()))[:5]})")
    energies = bqm.energies((samples, range(problem.n)))
    energies = np.where(feasible, energies, np.inf)
    best = int(np.argmin(energies))
    timing = {"wall_s": wall, **dict(sampleset.info.get("timing", {}))}
    return QUBOSolution(samples[best], float(energies[best]), type(sampler).__name__, timing, sampleset, None)


def keeps_cardinality(sampler: Any) -> bool:
    """Whether ``sampler`` keeps exactly ``m`` variables at 1 in every state when called as
    ``sample(bqm, cardinality=m)``: it declares ``"cardinality"`` in its ``parameters``
    (see the module docs)."""
    try:
        return "cardinality" in (getattr(sampler, "parameters", None) or {})
    except TypeError:  # parameters that are no container declare nothing
        return False


def _is_qkrum_sampler(sampler: Any) -> bool:
    """qkrum's own samplers: they check every argument before they run (so their
    ValueError/TypeError is a bad option) and say which kernel ran."""
    return isinstance(sampler, (SimulatedAnnealingSampler, ExchangeTabuSampler, ExactSolver))


def sample_problem(problem: SelectionProblem, sampler: Any = None, **params: Any) -> QUBOSolution:
    """Lowest-energy sample of ``problem`` from ``sampler`` (see the module docs).

    Args:
        problem: a :class:`qkrum.qubo.SelectionProblem`; with ``problem.cardinality=m`` the
            sampler must keep ``Σx = m`` (:func:`keeps_cardinality`) and is called with
            ``cardinality=m``.
        sampler: a dimod sampler instance, a name from :data:`SAMPLER_NAMES`, or None for
            qkrum's annealer (:func:`resolve_sampler`).
        **params: passed to ``sampler.sample`` (``num_reads``, ``seed``, ``time_limit``, ...).
            qkrum's annealer also gets ``cardinality`` and ``swap_moves`` from the problem
            unless they are given here (``swap_moves`` is left to the annealer when the
            problem's penalty is unknown, as for :func:`solve_qubo`).
    """
    if not isinstance(problem, SelectionProblem):
        raise TypeError(f"problem must be a qkrum.qubo.SelectionProblem, got {sampler_label(problem)}")
    sampler = resolve_sampler(sampler)
    if is_cqm_sampler(sampler):
        if problem.cardinality is None:
            raise ValueError(f"sampler {sampler_label(sampler)} solves constrained models (sample_cqm), not "
                             "this QUBO; qkrum.qubo.solve_selection hands it the selection with sum(x) == m")
        return sample_problem_cqm(problem, sampler, **params)
    if problem.cardinality is not None:
        if not keeps_cardinality(sampler):
            raise ValueError(
                f"sampler {sampler_label(sampler)} cannot keep cardinality={problem.cardinality}: it does not "
                "declare 'cardinality' in its parameters; give it the problem with the penalty instead "
                "(qkrum.qubo.selection_problem(D, m), or Q from qkrum.qubo.selection_qubo(..., lam=None) "
                "with cardinality=None)")
        params["cardinality"] = problem.cardinality
    if isinstance(sampler, SimulatedAnnealingSampler):
        params.setdefault("cardinality", None)
        if problem.penalty is not None:
            params.setdefault("swap_moves", params["cardinality"] is None and problem.penalty > 0)
    if isinstance(sampler, ExchangeTabuSampler) and problem.cardinality is not None:
        return _sample_dense(problem, sampler, params)
    bqm = bqm_from_problem(problem)
    own = _is_qkrum_sampler(sampler)

    sampleset, wall = _run_sampler(sampler, sampler.sample, bqm, params, own=own)

    sampleset = _checked(sampleset, bqm, sampler_label(sampler))
    record = sampleset.record
    energies = bqm.energies((record.sample, sampleset.variables))
    best = int(np.argmin(energies))
    order = [sampleset.variables.index(v) for v in range(problem.n)]
    sample = np.asarray(record.sample[best, order], dtype=np.int8)
    timing = {"wall_s": wall, **dict(sampleset.info.get("timing", {}))}
    implementation = None
    if own:  # the annealer says which kernel ran in its answer; the exact solver in its properties
        implementation = sampleset.info.get("implementation") or sampler.properties.get("implementation")
    return QUBOSolution(sample, float(energies[best]), type(sampler).__name__, timing, sampleset, implementation)


def _sample_dense(problem: SelectionProblem, sampler: ExchangeTabuSampler, params: dict) -> QUBOSolution:
    """qkrum's tabu search on the problem's arrays, without a dimod model: O(n²) floats less
    memory and conversion time. Its options are checked before it runs (a bad option is a
    ValueError/TypeError, as for :func:`sample_problem`)."""
    sampleset, wall = _run_sampler(sampler, sampler.sample_dense, problem.h,
                                   dict(params, J=problem.J, offset=problem.offset), own=True)
    energies = sampleset.record.energy
    best = int(np.argmin(energies))
    sample = np.asarray(sampleset.record.sample[best], dtype=np.int8)
    x = sample.astype(np.float64)
    energy = float(problem.h @ x + 0.5 * x @ (problem.J @ x) + problem.offset)  # recomputed, as for any sampler
    timing = {"wall_s": wall, **dict(sampleset.info.get("timing", {}))}
    return QUBOSolution(sample, energy, type(sampler).__name__, timing, sampleset, sampleset.info["implementation"])


def solve_qubo(Q: Any, offset: float = 0.0, *, sampler: Any = None, cardinality: int | None = None,
               **params: Any) -> QUBOSolution:
    """Lowest-energy sample of the QUBO ``x·diag(Q) + Σ_{i<j} (Q_ij + Q_ji) x_i x_j + offset``.

    Args:
        Q: square matrix (upper-triangular or full), finite.
        sampler: a dimod sampler instance, a name from :data:`SAMPLER_NAMES`, or None for
            qkrum's annealer.
        cardinality: keep exactly this many variables at 1 (samplers that declare
            ``"cardinality"``, as qkrum's annealer and exact solver do; other samplers need
            the constraint as a penalty inside ``Q``).
        **params: passed to ``sampler.sample`` (``num_reads``, ``seed``, ``time_limit``, ...).

    The matrix becomes a :class:`qkrum.qubo.SelectionProblem` whose penalty is unknown
    (:func:`qkrum.qubo.problem_from_qubo`), solved by :func:`sample_problem`.
    """
    return sample_problem(problem_from_qubo(Q, offset, cardinality=cardinality), sampler, **params)


def _some(labels: set) -> str:
    """Up to five variable labels, sorted where they can be, and how many more there are."""
    try:
        ordered = sorted(labels)
    except TypeError:  # labels of mixed types
        ordered = sorted(labels, key=repr)
    more = f" and {len(ordered) - 5} more" if len(ordered) > 5 else ""
    return f"{ordered[:5]}{more}"


def _checked(sampleset: Any, bqm: dimod.BinaryQuadraticModel, label: str, constrained: bool = False) -> dimod.SampleSet:
    """Refuse a sampler's answer that cannot be a solution of ``bqm`` (:class:`SamplerError`).
    ``constrained``: the answer of a CQM sampler, whose samples carry a mixed (INTEGER)
    vartype; their values must still be 0/1."""
    if not isinstance(sampleset, dimod.SampleSet):
        raise SamplerError(f"sampler {label} returned {sampler_label(sampleset)}, not a dimod.SampleSet")
    if len(sampleset) == 0:
        raise SamplerError(f"sampler {label} returned no samples")
    got, want = set(sampleset.variables), set(bqm.variables)
    if got != want:
        wrong = [f"{kind} {_some(labels)}" for kind, labels in (("missing", want - got), ("extra", got - want))
                 if labels]
        raise SamplerError(f"sampler {label} returned samples over the wrong variables "
                           f"({'; '.join(wrong)}; the problem's variables are 0..{len(want) - 1})")
    if sampleset.vartype is dimod.SPIN:
        sampleset = sampleset.change_vartype(dimod.BINARY, inplace=False)
    elif sampleset.vartype is not dimod.BINARY and not constrained:
        raise SamplerError(f"sampler {label} returned {sampleset.vartype.name} samples with values "
                           "outside {0, 1} for a BINARY problem")
    values = sampleset.record.sample
    if not np.isin(values, (0, 1)).all():
        raise SamplerError(f"sampler {label} returned values outside {{0, 1}} for a BINARY problem")
    return sampleset
