// qkrum::anneal — simulated annealing for QUBOs, pure C++17 (no Python headers).
//
// A QUBO over x ∈ {0,1}^n has energy E(x) = Σ_i h_i x_i + Σ_{i<j} J_ij x_i x_j, with J
// symmetric and zero on the diagonal, given dense (row-major n×n) or as CSR holding both
// (i, j) and (j, i). Each read keeps the local fields f_i = h_i + Σ_j J_ij x_j, so a flip
// attempt costs O(1) (ΔE = ±f_i) and an accepted flip O(degree) (one row of J).
//
// Moves:
//  * single-flip Metropolis, variables visited in order 0..n-1 ("sequential") or drawn
//    uniformly ("random"), n attempts per sweep;
//  * cardinality-preserving swaps (cardinality = m ≥ 0): every state has exactly m ones;
//    a move exchanges a selected i and an unselected j, ΔE = f_j − J_ij − f_i, n attempts
//    per sweep. Constraint penalties are then constant and never have to be climbed.
//  * both (swap_moves): each sweep is n single-flip attempts followed by n exchange
//    attempts at the same β. For QUBOs with a cardinality penalty whose optimum may still
//    lie off |S| = m, single flips change |S| while exchanges move along it without
//    climbing the penalty. Both moves satisfy detailed balance.
//
// Reads are independent; read r draws from its own generator seeded by (seed, r), so the
// result does not depend on how many threads run the reads. Memory per read is O(n).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace qkrum {
namespace anneal {

// Row access to the couplings; Dense and Csr are the two implementations.
struct Dense {
  const double* J = nullptr;  // n×n row-major, symmetric, zero diagonal
  std::int64_t n = 0;
};

struct Csr {
  const std::int64_t* indptr = nullptr;  // n + 1
  const std::int64_t* indices = nullptr;  // nnz, both triangles
  const double* data = nullptr;           // nnz
  std::int64_t n = 0;
};

enum class Order { Sequential, Random };

struct Options {
  std::int64_t num_reads = 1;
  std::vector<double> beta_schedule;  // one entry per sweep
  std::uint64_t seed = 0;
  Order order = Order::Sequential;
  std::int64_t cardinality = -1;  // ≥ 0: swap moves keeping exactly this many ones
  bool swap_moves = false;        // single flips and exchanges (ignored with cardinality)
  int num_threads = 0;            // ≤ 0: all hardware threads
  // Optional num_reads×n initial states (0/1), row-major; nullptr draws them at random
  // (uniformly, or a uniform m-subset in cardinality mode).
  const std::int8_t* initial_states = nullptr;
};

struct Result {
  std::vector<std::int8_t> samples;  // num_reads×n, row-major
  std::vector<double> energies;      // num_reads (without any constant offset)
  std::uint64_t flip_attempts = 0;   // moves proposed over all reads
};

Result anneal_dense(const Dense& q, const double* h, const Options& opt);
Result anneal_csr(const Csr& q, const double* h, const Options& opt);

// Energy of one state (used by tests and by the exact solver's callers).
double energy_dense(const Dense& q, const double* h, const std::int8_t* x);

// The largest n for which exact_dense searches all 2^n states (2^30 states take about
// half a minute natively; the guard is against accidental hours-long runs). The single
// source of this limit: Python reads it as qkrum._core.MAX_EXHAUSTIVE_VARIABLES, and
// qkrum.anneal.exact also bounds the C(n, m) subsets of the cardinality search by 2^it.
constexpr std::int64_t kMaxExhaustiveVariables = 30;

// Exhaustive ground state of a dense QUBO: all 2^n states (Gray code, O(n) per state;
// n <= kMaxExhaustiveVariables), or all C(n, m) subsets when cardinality = m ≥ 0. Returns
// the lowest energy, up to
// `max_states` states attaining it (within a relative tolerance of 1e-9) and how many
// states attain it.
struct ExactResult {
  double energy = 0.0;
  std::vector<std::int8_t> states;  // k×n
  std::int64_t num_ground = 0;
  std::int64_t num_states_searched = 0;
};

ExactResult exact_dense(const Dense& q, const double* h, std::int64_t cardinality,
                        std::int64_t max_states);

// Seed mixing shared with the Python fallback's documentation: read r of a run with seed s
// starts its generator from splitmix64(s ^ (r * 0x9E3779B97F4A7C15)).
std::uint64_t read_seed(std::uint64_t seed, std::uint64_t read);

}  // namespace anneal
}  // namespace qkrum
