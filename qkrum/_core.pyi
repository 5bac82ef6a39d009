"""Private native extension; use qkrum.anneal instead."""

from typing import Final

import numpy as np
import numpy.typing as npt

#: Largest n for which ``exact_dense`` searches all 2^n states (``kMaxExhaustiveVariables``
#: in csrc/anneal.hpp, the single definition of this limit).
MAX_EXHAUSTIVE_VARIABLES: Final[int]

def build_info() -> dict[str, object]:
    """Compiler, language standard and hardware threads the extension was built with."""

def anneal_dense(
    J: npt.NDArray[np.float64],
    h: npt.NDArray[np.float64],
    num_reads: int,
    beta_schedule: npt.NDArray[np.float64],
    seed: int,
    order: str,
    cardinality: int,
    num_threads: int,
    initial_states: npt.NDArray[np.int8] | None,
    swap_moves: bool = False,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], int]:
    """Simulated annealing on a dense QUBO; returns (samples, energies, flip_attempts)."""

def anneal_csr(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int64],
    data: npt.NDArray[np.float64],
    h: npt.NDArray[np.float64],
    num_reads: int,
    beta_schedule: npt.NDArray[np.float64],
    seed: int,
    order: str,
    cardinality: int,
    num_threads: int,
    initial_states: npt.NDArray[np.int8] | None,
    swap_moves: bool = False,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], int]:
    """Simulated annealing on a CSR QUBO (both triangles, sorted rows)."""

def exact_dense(
    J: npt.NDArray[np.float64], h: npt.NDArray[np.float64], cardinality: int, max_states: int
) -> tuple[float, npt.NDArray[np.int8], int, int]:
    """Exhaustive ground states: (energy, states, num_ground, num_states_searched)."""

def tabu_dense(
    J: npt.NDArray[np.float64],
    h: npt.NDArray[np.float64],
    cardinality: int,
    num_reads: int,
    confirm: int,
    min_restarts: int,
    stall: int,
    max_iterations: int,
    tenure: int,
    timeout: float,
    seed: int,
    num_threads: int,
    initial_states: npt.NDArray[np.int8] | None,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], npt.NDArray[np.int64], bool, bool]:
    """Exchange tabu search over the states with `cardinality` ones (csrc/tabu.hpp);
    returns (samples, energies, iterations, confirmed, timed_out), one row per restart."""

def read_seed(seed: int, read: int) -> int:
    """The generator seed of read `read` in a run with seed `seed`."""
