// qkrum::tabu — tabu search over the states with exactly m ones, pure C++17.
//
// Minimises E(x) = Σ_i h_i x_i + Σ_{i<j} J_ij x_i x_j (J dense, symmetric, zero diagonal)
// subject to Σ x = m, the client-selection problem: pick the m mutually closest of n
// clients. A move exchanges a selected a and an unselected b; with the local fields
// f_i = h_i + Σ_j J_ij x_j its change is ΔE = f_b − f_a − J_ab, and applying it costs one
// pass over f (f += J_b − J_a).
//
// Each iteration makes the best admissible exchange (steepest descent, or the least
// ascent at a local minimum). A client that left may not come back, and one that came in
// may not leave, for `tenure` iterations, unless the move reaches a state better than the
// restart's best (aspiration). The best move is found exactly without looking at all
// m(n − m) pairs: ΔE ≥ f_b − (f_a + max_j J_aj), so only clients whose bound can beat the
// best pair seen so far are paired (on selection QUBOs a few dozen of thousands).
//
// A restart ends after `stall` iterations without a new best, or at `max_iterations`;
// its best state is then polished by steepest descent to a local minimum (no exchange
// lowers its energy). Restart r starts from initial state r if given, else from a uniform
// m-subset drawn from its own generator seeded by anneal::read_seed(seed, r).
//
// Convergence-driven restarts: with `confirm` = k > 0 the search stops after the first
// restart r >= min_restarts - 1 at which k of the restarts 0..r have reached the lowest
// energy among them (within a relative 1e-9), and returns exactly restarts 0..r. The floor
// guards against k restarts agreeing on the same wrong basin (a tight group of identical
// attackers makes one that single exchanges cannot leave). Restarts run in parallel,
// but which ones are returned depends only on their results, so the output is the same
// for any number of threads. A `timeout` (seconds, ≤ 0: none) stops the search early and
// returns every restart started; only then can the result depend on timing.
#pragma once

#include <cstdint>
#include <vector>

#include "anneal.hpp"

namespace qkrum {
namespace tabu {

struct Options {
  std::int64_t cardinality = 0;     // m, 0 <= m <= n
  std::int64_t max_restarts = 1;    // restarts run at most
  std::int64_t confirm = 0;         // > 0: stop once this many restarts reached the best
  std::int64_t min_restarts = 1;    // ... and at least this many restarts ran
  std::int64_t stall = 1;           // iterations without a new best that end a restart
  std::int64_t max_iterations = 1;  // iterations of one restart at most
  std::int64_t tenure = 0;          // capped at min(m, n − m) − 1 so a move is always allowed
  double timeout_s = 0.0;           // <= 0: no time limit
  std::uint64_t seed = 0;
  int num_threads = 0;  // <= 0: all hardware threads
  // Optional num_initial×n starting states (0/1, m ones each), row-major; restart r <
  // num_initial starts from row r.
  const std::int8_t* initial_states = nullptr;
  std::int64_t num_initial = 0;
};

struct Result {
  std::vector<std::int8_t> samples;        // restarts×n, row-major: each restart's best state
  std::vector<double> energies;            // restarts
  std::vector<std::int64_t> iterations;    // restarts: exchanges made (search and polish)
  std::int64_t restarts = 0;
  bool confirmed = false;  // the confirm rule stopped the search
  bool timed_out = false;
};

Result tabu_dense(const anneal::Dense& q, const double* h, const Options& opt);

}  // namespace tabu
}  // namespace qkrum
