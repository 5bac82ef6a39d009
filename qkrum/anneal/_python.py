"""Pure-NumPy fallback for the compiled annealer ``qkrum._core``.

Used when the extension is not built or ``QKRUM_IMPLEMENTATION=python`` is set. It exposes
the same five functions as ``qkrum._core`` (see ``csrc/anneal.hpp`` and ``qkrum/_core.pyi``)
with the same signatures, return types and semantics:

* ``anneal_dense(J, h, num_reads, beta_schedule, seed, order, cardinality, num_threads,
  initial_states) -> (samples int8 (num_reads, n), energies float64 (num_reads,), flip_attempts)``
* ``anneal_csr(indptr, indices, data, h, ...)`` -> the same, for a CSR coupling matrix;
* ``exact_dense(J, h, cardinality, max_states) -> (energy, states, num_ground, num_searched)``;
* ``read_seed(seed, read)``: the per-read seed mixing of the C++ code;
* ``tabu_dense(J, h, cardinality, num_reads, confirm, min_restarts, stall, max_iterations, tenure, timeout,
  seed, num_threads, initial_states)``: the exchange tabu search of ``csrc/tabu.hpp``, which
  here evaluates all ``m(n − m)`` exchanges per iteration and runs its restarts one after
  another (same semantics, not the same random starts).

Arguments are checked once, before either implementation runs, by
:func:`qkrum._native.check_anneal_arguments` and :func:`qkrum._native.check_exact_arguments`
(the callers, ``qkrum.anneal.sampler.run_arrays`` and ``qkrum.anneal.exact``, call them);
this module trusts its arguments and only computes. Its one check is the C++'s own
defence: ``exact_dense`` refuses a search over ``2^n`` states for
``n > qkrum._native.MAX_EXHAUSTIVE_VARIABLES`` (the limit defined once in C++).

The QUBO energy is ``E(x) = h·x + Σ_{i<j} J_ij x_i x_j`` (J symmetric, zero diagonal), and
every read keeps its local fields ``f = h + x J`` so that a flip of ``x_i`` changes the
energy by ``±f_i``; Metropolis accepts a move with ``ΔE ≤ 0`` always and otherwise with
probability ``exp(−β ΔE)``.

How it differs from the C++
---------------------------
* **Single-threaded, vectorised across reads.** ``num_threads`` is accepted and ignored.
  All reads advance in lock step: the Python loop runs over sweeps and move attempts, and
  every NumPy operation inside it acts on all ``num_reads`` reads at once.

  - Single flips, ``order="sequential"``: states and fields are held transposed
    (``(n, num_reads)``). Variables are visited in blocks of ``_BLOCK`` (32): inside a block
    the field of variable ``i`` is its field at the block start plus the contributions of
    the flips already accepted in the block (a small ``(k,) @ (k, num_reads)`` product); at
    the end of the block all the fields are updated by one matrix product
    ``J[block]ᵀ @ S`` (``S`` holds the ±1/0 flip of every read at every variable of the
    block). This turns the rank-one updates of the C++ into BLAS calls.
  - Single flips, ``order="random"``: every read draws its own variable at every step
    (fancy indexing); only the reads whose move was accepted have their field rows updated.
  - Swaps (``cardinality = m ≥ 0``): every read keeps the positions of its selected and
    unselected variables in two index arrays ``(num_reads, m)`` and ``(num_reads, n − m)``,
    draws one position in each per step, and the accepted reads update their fields by
    ``J[j] − J[i]`` and exchange the two entries, as the C++ does.

  Metropolis is applied as ``β ΔE ≤ T`` with ``T`` a standard exponential variate (the same
  acceptance probability as ``u < exp(−β ΔE)`` for uniform ``u``), drawn in blocks.
* **Random numbers.** One ``np.random.default_rng(seed)`` drives all reads, so the output is
  fully determined by the arguments (the same seed gives the same samples) but is *not*
  the C++ random stream, and read ``r`` is not independent of ``num_reads`` as it is in the
  C++ (where read ``r`` uses its own generator seeded by ``read_seed(seed, r)``). The
  distribution of the samples is the same.
* **CSR.** ``anneal_csr`` densifies ``J`` when ``n ≤ _DENSIFY_MAX_N`` (2000: at most 32 MB),
  summing duplicate entries as the C++ row walk does; above that it works on the CSR rows
  directly (fields by ``bincount``, accepted moves by gathering each accepted read's row,
  ``J_ij`` by binary search on the sorted ``(row, column)`` keys). For the row walk the CSR
  is canonicalised first (sorted, duplicates summed); the C++ instead takes the first of
  duplicated entries when it looks up a single ``J_ij`` in swap moves. This only matters
  for a direct call: :func:`qkrum._native.check_anneal_arguments` requires sorted rows
  holding each column once.
* **Exact solver.** ``exact_dense`` enumerates in vectorised chunks instead of a Gray code:
  all ``2^n`` states (as ``2^14`` low-bit states times batches of high-bit states, energies
  by matrix products) or all ``C(n, m)`` subsets in lexicographic order
  (``itertools.combinations`` in chunks). Two passes: the first finds the minimum, the
  second counts and collects the states within ``1e-9·max(1, |E_min|)`` of it (the C++
  applies the same relative tolerance against its running minimum). Ground states come
  in enumeration order (increasing binary index ``Σ_i x_i 2^i`` for the full search; the
  C++ Gray code order differs). Practical up to n ≈ 22 (2^n states) or a few million
  subsets.
"""

from __future__ import annotations

import collections
import itertools
import math
from typing import Any, Callable, Iterator

import numpy as np

from qkrum._native import MAX_EXHAUSTIVE_VARIABLES

__all__ = ["anneal_csr", "anneal_dense", "exact_dense", "read_seed", "tabu_dense"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

# Variables per block in sequential sweeps (see the module docs).
_BLOCK = 32
# anneal_csr densifies J up to this many variables.
_DENSIFY_MAX_N = 2000
# About this many random numbers (or matrix entries) are handled per NumPy call.
_CHUNK = 1 << 20
# exact_dense: number of low bits enumerated as one block of states.
_LOW_BITS = 14
# exact_dense: subsets per chunk in cardinality mode.
_SUBSET_CHUNK = 1 << 14


# --- seeds -----------------------------------------------------------------------------

def _splitmix64(state: int) -> int:
    z = (state + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def read_seed(seed: int, read: int) -> int:
    """The generator seed of read ``read`` in a run with seed ``seed`` (as in the C++):
    ``splitmix64(seed ^ (read · 0x9E3779B97F4A7C15 mod 2^64))``."""
    return _splitmix64((int(seed) ^ ((int(read) * _GOLDEN) & _MASK64)) & _MASK64)


def _f64(x: Any) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


# --- coupling back ends ----------------------------------------------------------------

class _DenseCouplings:
    """Row access to a dense ``J`` (n×n, C order)."""

    def __init__(self, J: np.ndarray):
        self.J = J
        self.n = J.shape[0]

    def fields(self, h: np.ndarray, X: np.ndarray) -> np.ndarray:
        """``h + X J`` for boolean states ``X`` (R, n)."""
        return X.astype(np.float64) @ self.J + h

    def block(self, b0: int, b1: int) -> np.ndarray:
        return self.J[b0:b1, b0:b1]

    def add_block_rows_t(self, FT: np.ndarray, b0: int, b1: int, S: np.ndarray) -> None:
        """``FT += J[b0:b1]ᵀ S`` (FT is (n, R), S is (b1 − b0, R))."""
        FT += self.J[b0:b1].T @ S

    def add_rows(self, F: np.ndarray, reads: np.ndarray, rows: np.ndarray, signs: np.ndarray) -> None:
        """``F[reads[t]] += signs[t] · J[rows[t]]`` (distinct reads)."""
        F[reads] += signs[:, None] * self.J[rows]

    def swap_rows(self, F: np.ndarray, reads: np.ndarray, removed: np.ndarray, added: np.ndarray) -> None:
        F[reads] += self.J[added] - self.J[removed]

    def coupling(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.J[a, b]


class _CsrCouplings:
    """Row access to a canonical CSR ``J`` (rows sorted, duplicates summed)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, data: np.ndarray, n: int):
        self.n = n
        key = rows * n + cols
        order = np.argsort(key, kind="stable")
        key = key[order]
        data = data[order]
        if key.size:
            uniq, start = np.unique(key, return_index=True)
            data = np.add.reduceat(data, start)
        else:
            uniq = key
        self.key = uniq
        self.rows = uniq // n
        self.cols = uniq % n
        self.data = data
        self.indptr = np.searchsorted(self.rows, np.arange(n + 1))
        self.deg = np.diff(self.indptr)

    def fields(self, h: np.ndarray, X: np.ndarray) -> np.ndarray:
        R, n = X.shape
        F = np.empty((R, n))
        nnz = self.data.size
        c = max(1, _CHUNK // max(nnz, 1))
        for r0 in range(0, R, c):
            Xc = X[r0:r0 + c]
            k = Xc.shape[0]
            w = Xc[:, self.rows] * self.data  # f_col += J[row, col] x_row
            keys = (np.arange(k)[:, None] * n + self.cols).ravel()
            F[r0:r0 + k] = np.bincount(keys, w.ravel(), minlength=k * n).reshape(k, n)
        F += h
        return F

    def block(self, b0: int, b1: int) -> np.ndarray:
        p0, p1 = self.indptr[b0], self.indptr[b1]
        r, c, d = self.rows[p0:p1], self.cols[p0:p1], self.data[p0:p1]
        inside = (c >= b0) & (c < b1)
        M = np.zeros((b1 - b0, b1 - b0))
        M[r[inside] - b0, c[inside] - b0] = d[inside]
        return M

    def add_block_rows_t(self, FT: np.ndarray, b0: int, b1: int, S: np.ndarray) -> None:
        for k, j in enumerate(range(b0, b1)):
            p0, p1 = self.indptr[j], self.indptr[j + 1]
            if p0 == p1 or not S[k].any():
                continue
            FT[self.cols[p0:p1]] += self.data[p0:p1, None] * S[k]

    def add_rows(self, F: np.ndarray, reads: np.ndarray, rows: np.ndarray, signs: np.ndarray) -> None:
        lengths = self.deg[rows]
        total = int(lengths.sum())
        if total == 0:
            return
        starts = self.indptr[rows]
        offsets = np.cumsum(lengths) - lengths
        pos = np.arange(total) + np.repeat(starts - offsets, lengths)
        # Reads are distinct and a canonical row has distinct columns: no repeated targets.
        F[np.repeat(reads, lengths), self.cols[pos]] += np.repeat(signs, lengths) * self.data[pos]

    def swap_rows(self, F: np.ndarray, reads: np.ndarray, removed: np.ndarray, added: np.ndarray) -> None:
        ones = np.ones(reads.size)
        self.add_rows(F, reads, added, ones)
        self.add_rows(F, reads, removed, -ones)

    def coupling(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.key.size == 0:
            return np.zeros(a.shape)
        q = a * self.n + b
        pos = np.minimum(np.searchsorted(self.key, q), self.key.size - 1)
        return np.where(self.key[pos] == q, self.data[pos], 0.0)


# --- the annealing loops -----------------------------------------------------------------

def _thresholds(rng: np.random.Generator, beta: float, shape: tuple[int, int]) -> np.ndarray:
    """Accept a move iff ``ΔE ≤ T``: ``T = Exp(1) / β`` (``+∞`` at β = 0)."""
    if beta == 0.0:
        return np.full(shape, np.inf)
    t = rng.standard_exponential(shape)
    t /= beta
    return t


def _flips_sequential(q, h: np.ndarray, X: np.ndarray, beta: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    R, n = X.shape
    FT = np.ascontiguousarray(q.fields(h, X).T)  # (n, R) fields
    SG = np.ascontiguousarray(np.where(X.T, -1.0, 1.0))  # (n, R): 1 − 2x, the sign of ΔE = ±f
    blocks = [(b0, min(n, b0 + _BLOCK)) for b0 in range(0, n, _BLOCK)]
    # JbT[k, j] = J[b0 + j, b0 + k]: the in-block couplings seen by variable b0 + k.
    block_t = [np.ascontiguousarray(q.block(b0, b1).T) for b0, b1 in blocks]
    S = np.empty((_BLOCK, R))  # flip of every read at each variable of the block: +1, −1 or 0
    f = np.empty(R)
    d = np.empty(R)
    acc = np.empty(R, dtype=bool)
    for b in beta.tolist():
        for (b0, b1), JbT in zip(blocks, block_t):
            T = _thresholds(rng, b, (b1 - b0, R))
            for k in range(b1 - b0):
                i = b0 + k
                sg = SG[i]
                if k:
                    np.matmul(JbT[k, :k], S[:k], out=f)
                    f += FT[i]
                    np.multiply(sg, f, out=d)
                else:
                    np.multiply(sg, FT[i], out=d)
                np.less_equal(d, T[k], out=acc)
                s = S[k]
                np.multiply(sg, acc, out=s)  # 0 → 1 (sg = +1) adds row i, 1 → 0 subtracts it
                sg -= s
                sg -= s
            q.add_block_rows_t(FT, b0, b1, S[:b1 - b0])
    return np.ascontiguousarray((SG < 0).T)


def _flips_random(q, h: np.ndarray, X: np.ndarray, beta: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    R, n = X.shape
    F = q.fields(h, X)
    SG = np.where(X, -1.0, 1.0)
    Ff, SGf = F.reshape(-1), SG.reshape(-1)
    base = np.arange(R) * n
    steps = max(1, min(n, _CHUNK // R))
    for b in beta.tolist():
        for c0 in range(0, n, steps):
            c = min(steps, n - c0)
            I = rng.integers(0, n, size=(c, R))
            T = _thresholds(rng, b, (c, R))
            for k in range(c):
                idx = I[k]
                flat = base + idx
                sg = SGf[flat]
                a = np.flatnonzero(sg * Ff[flat] <= T[k])
                if a.size:
                    sa = sg[a]
                    q.add_rows(F, a, idx[a], sa)
                    SGf[flat[a]] = -sa
    return SG < 0


def _swaps(q, h: np.ndarray, X: np.ndarray, m: int, beta: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    R, n = X.shape
    F = q.fields(h, X)
    Ff = F.reshape(-1)
    pos = np.argsort(~X, axis=1, kind="stable")  # selected variables first
    IN = np.ascontiguousarray(pos[:, :m])
    OUT = np.ascontiguousarray(pos[:, m:])
    INf, OUTf = IN.reshape(-1), OUT.reshape(-1)
    ar = np.arange(R)
    base_in, base_out, base = ar * m, ar * (n - m), ar * n
    steps = max(1, min(n, _CHUNK // (3 * R)))
    for b in beta.tolist():
        for c0 in range(0, n, steps):
            c = min(steps, n - c0)
            A = rng.integers(0, m, size=(c, R))
            B = rng.integers(0, n - m, size=(c, R))
            T = _thresholds(rng, b, (c, R))
            for k in range(c):
                ia = base_in + A[k]
                ib = base_out + B[k]
                a = INf[ia]
                bb = OUTf[ib]
                delta = Ff[base + bb] - q.coupling(a, bb) - Ff[base + a]
                r = np.flatnonzero(delta <= T[k])
                if r.size:
                    ar_, br_ = a[r], bb[r]
                    q.swap_rows(F, r, ar_, br_)
                    INf[ia[r]] = br_
                    OUTf[ib[r]] = ar_
    Xn = np.zeros((R, n), dtype=bool)
    Xn[ar[:, None], IN] = True
    return Xn


def _exchange_sweep(q, h: np.ndarray, X: np.ndarray, b: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """n exchange attempts per read at one β, with |S| free to differ between reads
    (the second half of a ``swap_moves`` sweep). Returns the states and attempts made."""
    R, n = X.shape
    X = X.copy()
    F = q.fields(h, X)
    movable = X.any(axis=1) & (~X).any(axis=1)  # reads with both a 1 and a 0, as the C++
    T = _thresholds(rng, b, (n, R))
    ar = np.arange(R)
    for k in range(n):
        U = rng.random((R, n))
        a = np.argmax(np.where(X, U, -1.0), axis=1)  # uniform selected variable
        bb = np.argmax(np.where(X, -1.0, U), axis=1)  # uniform unselected variable
        delta = F[ar, bb] - q.coupling(a, bb) - F[ar, a]
        r = np.flatnonzero(movable & (delta <= T[k]))
        if r.size:
            q.swap_rows(F, r, a[r], bb[r])
            X[r, a[r]] = False
            X[r, bb[r]] = True
    return X, int(movable.sum()) * n


def _run(q, h: np.ndarray, num_reads: int, beta_schedule: Any, seed: int, order: str, m: int,
         initial_states: Any, swap_moves: bool):
    n = q.n
    beta = _f64(beta_schedule).ravel()
    rng = np.random.default_rng(int(seed))
    R = int(num_reads)
    m = int(m)
    if initial_states is not None:
        X = np.asarray(initial_states) != 0
    elif m < 0:
        X = rng.random((R, n)) < 0.5
    else:
        X = np.zeros((R, n), dtype=bool)
        chosen = np.argsort(rng.random((R, n)), axis=1)[:, :m]  # uniform m-subsets
        X[np.arange(R)[:, None], chosen] = True
    attempts = 0
    with np.errstate(all="ignore"):
        if beta.size:
            if m < 0 and swap_moves:
                run = _flips_sequential if order == "sequential" else _flips_random
                for b in beta.tolist():
                    X = run(q, h, X, np.array([b]), rng)
                    X, made = _exchange_sweep(q, h, X, b, rng)
                    attempts += R * n + made
            elif m < 0:
                run = _flips_sequential if order == "sequential" else _flips_random
                X = run(q, h, X, beta, rng)
                attempts = R * beta.size * n
            elif 0 < m < n:
                X = _swaps(q, h, X, m, beta, rng)
                attempts = R * beta.size * n
        # Energies from freshly computed fields, as the C++: E = Σ_i x_i (h_i + f_i) / 2.
        F = q.fields(h, X)
        energies = 0.5 * np.where(X, h + F, 0.0).sum(axis=1)
    return X.astype(np.int8), energies, int(attempts)


def anneal_dense(J: Any, h: Any, num_reads: int, beta_schedule: Any, seed: int, order: str,
                 cardinality: int, num_threads: int,
                 initial_states: Any = None, swap_moves: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Simulated annealing on a dense QUBO; returns ``(samples, energies, flip_attempts)``.

    Same contract as ``qkrum._core.anneal_dense`` (see the module docs for the
    differences: single-threaded, ``num_threads`` ignored, a different random stream).
    """
    return _run(_DenseCouplings(_f64(J)), _f64(h), num_reads, beta_schedule, seed, order, cardinality,
                initial_states, bool(swap_moves))


def anneal_csr(indptr: Any, indices: Any, data: Any, h: Any, num_reads: int, beta_schedule: Any,
               seed: int, order: str, cardinality: int, num_threads: int,
               initial_states: Any = None, swap_moves: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Simulated annealing on a CSR QUBO (both triangles, sorted rows).

    Same contract as ``qkrum._core.anneal_csr``; ``J`` is densified for
    ``n ≤ _DENSIFY_MAX_N`` and walked row by row above (see the module docs).
    """
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
    data = _f64(data).reshape(-1)
    h = _f64(h)
    n = h.shape[0]
    # A valid CSR (qkrum._native.check_anneal_arguments): row i holds the entries
    # indptr[i] .. indptr[i + 1] − 1.
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    cols, vals = indices, data
    if n <= _DENSIFY_MAX_N:
        J = np.zeros((n, n))
        np.add.at(J, (rows, cols), vals)
        q = _DenseCouplings(J)
    else:
        q = _CsrCouplings(rows, cols, vals, n)
    return _run(q, h, num_reads, beta_schedule, seed, order, cardinality, initial_states, bool(swap_moves))


# --- exhaustive search -------------------------------------------------------------------

def _bit_rows(values: np.ndarray, nbits: int) -> np.ndarray:
    return ((values[:, None] >> np.arange(nbits, dtype=np.int64)) & 1).astype(np.int8)


def _quadratic(B: np.ndarray, J: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``h·x + ½ xᵀJx`` for every row ``x`` of ``B`` (float)."""
    return B @ h + 0.5 * np.einsum("ij,ij->i", B @ J, B)


_Chunk = tuple[int, np.ndarray, Callable[[np.ndarray], np.ndarray]]


def _full_chunks(J: np.ndarray, h: np.ndarray, wanted=None) -> Iterator[_Chunk]:
    """All 2^n states in increasing binary order, as (chunk id, energies, states_of)."""
    n = J.shape[0]
    k = min(n, _LOW_BITS)
    hn = n - k
    low = _bit_rows(np.arange(1 << k, dtype=np.int64), k).astype(np.float64)
    e_low = _quadratic(low, J[:k, :k], h[:k])
    if hn:
        cross = 0.5 * (J[:k, k:] + J[k:, :k].T)  # the coupling of a low and a high bit
        Jhh, hh = J[k:, k:], h[k:]
    batch = max(1, _CHUNK >> k)
    num_chunks = -(-(1 << hn) // batch)
    ids = range(num_chunks) if wanted is None else wanted
    for ci in ids:
        h0 = ci * batch
        h1 = min(1 << hn, h0 + batch)
        if hn:
            H = _bit_rows(np.arange(h0, h1, dtype=np.int64), hn).astype(np.float64)
            E = (e_low[:, None] + low @ (cross @ H.T)) + _quadratic(H, Jhh, hh)[None, :]
            E = E.T.ravel()  # high-bit major: flat position p is state h0·2^k + p
        else:
            E = e_low
        first = h0 << k

        def states_of(p: np.ndarray, first: int = first) -> np.ndarray:
            return _bit_rows(first + p.astype(np.int64), n)

        yield ci, E, states_of


def _subset_chunks(J: np.ndarray, h: np.ndarray, m: int, wanted=None) -> Iterator[_Chunk]:
    """All C(n, m) subsets in lexicographic order, as (chunk id, energies, states_of)."""
    n = J.shape[0]
    if m == 0:
        B = np.zeros((1, n))
        yield 0, _quadratic(B, J, h), lambda p: B[p].astype(np.int8)
        return
    combos = itertools.combinations(range(n), m)
    wanted = None if wanted is None else set(wanted)
    for ci in itertools.count():
        if wanted is not None and ci not in wanted:
            if not collections.deque(itertools.islice(combos, _SUBSET_CHUNK), maxlen=1):
                return
            continue
        idx = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, _SUBSET_CHUNK)),
                          dtype=np.int64)
        if idx.size == 0:
            return
        idx = idx.reshape(-1, m)
        B = np.zeros((idx.shape[0], n))
        B[np.arange(idx.shape[0])[:, None], idx] = 1.0
        yield ci, _quadratic(B, J, h), lambda p, B=B: B[p].astype(np.int8)


def exact_dense(J: Any, h: Any, cardinality: int,
                max_states: int) -> tuple[float, np.ndarray, int, int]:
    """Exhaustive ground states: ``(energy, states, num_ground, num_states_searched)``.

    Same contract as ``qkrum._core.exact_dense``: all ``2^n`` states, or all ``C(n, m)``
    subsets when ``cardinality = m ≥ 0``; the states within ``1e-9·max(1, |E_min|)`` of
    the minimum are ground states; up to ``max_states`` of them are returned (in
    enumeration order) and ``energy`` is recomputed from the first. Practical up to
    n ≈ 22 (see the module docs).
    """
    J = _f64(J)
    h = _f64(h)
    cardinality, max_states = int(cardinality), int(max_states)
    n = J.shape[0]
    if cardinality < 0 and n > MAX_EXHAUSTIVE_VARIABLES:  # the C++'s own guard, the same limit
        raise ValueError(f"exhaustive search over 2^n states is limited to n <= {MAX_EXHAUSTIVE_VARIABLES}, "
                         f"got n={n}")

    if cardinality < 0:
        def chunks(wanted=None):
            return _full_chunks(J, h, wanted)
        searched = 1 << n
    else:
        def chunks(wanted=None):
            return _subset_chunks(J, h, cardinality, wanted)
        searched = math.comb(n, cardinality)

    with np.errstate(all="ignore"):
        # Pass 1: the minimum, and the minimum of every chunk.
        chunk_min = {}
        for ci, E, _ in chunks():
            chunk_min[ci] = float(E.min())
        e_min = min(chunk_min.values())
        tol = 1e-9 * max(1.0, abs(e_min))
        # Pass 2: count and collect the ground states, visiting only chunks that hold some.
        wanted = [ci for ci, e in chunk_min.items() if e <= e_min + tol]
        num_ground = 0
        kept: list[np.ndarray] = []
        num_kept = 0
        for _, E, states_of in chunks(wanted):
            ground = np.flatnonzero(np.abs(E - e_min) <= tol)
            num_ground += ground.size
            if num_kept < max_states and ground.size:
                take = ground[:max_states - num_kept]
                kept.append(states_of(take))
                num_kept += take.size
        states = np.concatenate(kept) if kept else np.zeros((0, n), dtype=np.int8)
        energy = e_min
        if states.shape[0]:
            # As the C++: the reported energy is that of the first state, from its fields.
            x = states[0].astype(bool)
            f = _DenseCouplings(J).fields(h, x[None, :])[0]
            energy = float(0.5 * np.where(x, h + f, 0.0).sum())
    return energy, np.ascontiguousarray(states, dtype=np.int8), int(num_ground), int(searched)


# --- tabu search over m-subsets ----------------------------------------------------------

def _tolerance(energy: float) -> float:
    return 1e-9 * max(1.0, abs(energy))


def _best_exchange(J: np.ndarray, f: np.ndarray, x: np.ndarray, allowed_out: np.ndarray,
                   allowed_in: np.ndarray, aspire: float) -> tuple[int, int, float]:
    """The lowest-ΔE admissible exchange (a leaves, b joins), ΔE = f_b − f_a − J_ab, by
    evaluating all m(n − m) pairs; (-1, -1, inf) if none is admissible."""
    ins, outs = np.flatnonzero(x), np.flatnonzero(~x)
    delta = f[outs][None, :] - f[ins][:, None] - J[np.ix_(ins, outs)]
    ok = (allowed_out[ins][:, None] & allowed_in[outs][None, :]) | (delta < aspire)
    if not ok.any():
        return -1, -1, math.inf
    masked = np.where(ok, delta, np.inf)
    k = int(np.argmin(masked))
    i, j = divmod(k, outs.size)
    return int(ins[i]), int(outs[j]), float(masked[i, j])


def _subset_energy(J: np.ndarray, h: np.ndarray, x: np.ndarray) -> float:
    xf = x.astype(np.float64)
    return float(h @ xf + 0.5 * xf @ J @ xf)


def tabu_dense(J: Any, h: Any, cardinality: int, num_reads: int, confirm: int, min_restarts: int, stall: int,
               max_iterations: int, tenure: int, timeout: float, seed: int, num_threads: int,
               initial_states: Any = None):
    """Tabu search over the states with ``cardinality`` ones (see ``csrc/tabu.hpp``):
    ``(samples int8 (restarts, n), energies (restarts,), iterations int64 (restarts,),
    confirmed, timed_out)``. Restarts run one after another; restart ``r`` draws its
    random start from ``np.random.default_rng([r, seed])``."""
    import time

    J = _f64(J)
    h = _f64(h)
    n, m = h.shape[0], int(cardinality)
    tenure = max(0, min(int(tenure), min(m, n - m) - 1))
    init = None if initial_states is None else np.asarray(initial_states) != 0
    deadline = time.perf_counter() + timeout if timeout > 0 else None
    samples, energies, iterations = [], [], []
    confirmed = timed_out = False
    never = -(2**62)
    for r in range(num_reads):
        if r and deadline is not None and time.perf_counter() >= deadline:  # restart 0 always runs
            timed_out = True
            break
        if init is not None and r < init.shape[0]:
            x = init[r].copy()
        else:
            x = np.zeros(n, dtype=bool)
            x[np.random.default_rng([r, int(seed)]).permutation(n)[:m]] = True
        f = h + J[x].sum(axis=0)
        energy = _subset_energy(J, h, x)
        best, best_x = energy, x.copy()
        left_at = np.full(n, never, dtype=np.int64)
        joined_at = np.full(n, never, dtype=np.int64)
        it = last_gain = 0
        if 0 < m < n:
            while it < max_iterations and it - last_gain < stall:
                if deadline is not None and time.perf_counter() >= deadline:
                    timed_out = True
                    break
                a, b, delta = _best_exchange(J, f, x, it - joined_at > tenure, it - left_at > tenure,
                                             best - _tolerance(best) - energy)
                if a < 0:
                    break
                x[a], x[b] = False, True
                f += J[b] - J[a]
                energy += delta
                left_at[a] = joined_at[b] = it
                it += 1
                if energy < best - _tolerance(best):
                    best, best_x, last_gain = energy, x.copy(), it
            x = best_x.copy()  # polish: steepest descent to a local minimum
            f = h + J[x].sum(axis=0)
            everyone = np.ones(n, dtype=bool)
            while True:
                a, b, delta = _best_exchange(J, f, x, everyone, everyone, -math.inf)
                energy = _subset_energy(J, h, x)
                if a < 0 or not delta < -_tolerance(energy):
                    break
                x[a], x[b] = False, True
                f += J[b] - J[a]
                it += 1
        samples.append(x.astype(np.int8))
        energies.append(_subset_energy(J, h, x))
        iterations.append(it)
        if confirm > 0 and len(energies) >= min_restarts:
            low = min(energies)
            if sum(e <= low + _tolerance(low) for e in energies) >= confirm:
                confirmed = True
                break
    return (np.array(samples, dtype=np.int8).reshape(len(samples), n), np.array(energies, dtype=np.float64),
            np.array(iterations, dtype=np.int64), confirmed, timed_out)
