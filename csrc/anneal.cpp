#include "anneal.hpp"
#include "portable.hpp"
#include "rng.hpp"
#include "workers.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <locale>
#include <sstream>

namespace qkrum {
namespace anneal {
namespace {

using rng::Rng;
using rng::splitmix64;

// The uniform draw has 24 bits, so acceptance probabilities below 2^-25 cannot be resolved:
// reject outright once exp(-x) < 2^-25, i.e. x > 25 ln 2.
constexpr double kRejectAbove = 17.328679513998633;

// Brackets of exp(-x) on a grid of 1/64: lower[k] <= exp(-(k+1)/64) and upper[k] >= exp(-k/64),
// rounded outwards so that deciding from them is exact.
constexpr int kTableScale = 64;
constexpr int kTableSize = static_cast<int>(kRejectAbove * kTableScale) + 1;
struct ExpBrackets {
  float lower[kTableSize + 1], upper[kTableSize + 1];
  ExpBrackets() {
    for (int k = 0; k <= kTableSize; ++k) {
      const float hi = static_cast<float>(std::exp(-static_cast<double>(k) / kTableScale));
      const float lo = static_cast<float>(std::exp(-static_cast<double>(k + 1) / kTableScale));
      upper[k] = std::nextafter(hi, 2.0f);
      lower[k] = std::nextafter(lo, 0.0f);
    }
  }
};
const ExpBrackets kExp;

inline bool metropolis(double beta, double delta, Rng& rng) {
  if (delta <= 0.0) return true;
  const double x = beta * delta;
  if (x > kRejectAbove) return false;
  // Accept with probability exp(-x). For x in [k/64, (k+1)/64) the brackets decide all but
  // about 1.5 % of the draws without calling exp (measured 7-12 % faster overall). Single
  // precision is ample for an acceptance probability.
  const float u = static_cast<float>(rng.next() >> 40) * 0x1.0p-24f;
  const int k = static_cast<int>(x * kTableScale);
  if (u < kExp.lower[k]) return true;
  if (u >= kExp.upper[k]) return false;
  return u < std::exp(static_cast<float>(-x));
}

// Visit the nonzero couplings of row i.
template <class F>
inline void for_row(const Dense& q, std::int64_t i, F&& fn) {
  const double* row = q.J + i * q.n;
  for (std::int64_t j = 0; j < q.n; ++j) fn(j, row[j]);
}

// f += sign * row(i): the hot loop of every accepted move; written out so it vectorises.
inline void add_row(const Dense& q, std::int64_t i, double sign, double* QKRUM_RESTRICT f) {
  const double* QKRUM_RESTRICT row = q.J + i * q.n;
  const std::int64_t n = q.n;
  for (std::int64_t j = 0; j < n; ++j) f[j] += sign * row[j];
}

// f += row(b) − row(a): an accepted exchange, one pass over f instead of two.
inline void exchange_rows(const Dense& q, std::int64_t a, std::int64_t b, double* QKRUM_RESTRICT f) {
  const double* QKRUM_RESTRICT row_a = q.J + a * q.n;
  const double* QKRUM_RESTRICT row_b = q.J + b * q.n;
  const std::int64_t n = q.n;
  for (std::int64_t j = 0; j < n; ++j) f[j] += row_b[j] - row_a[j];
}

inline void add_row(const Csr& q, std::int64_t i, double sign, double* QKRUM_RESTRICT f) {
  for (std::int64_t p = q.indptr[i]; p < q.indptr[i + 1]; ++p) f[q.indices[p]] += sign * q.data[p];
}

template <class F>
inline void for_row(const Csr& q, std::int64_t i, F&& fn) {
  for (std::int64_t p = q.indptr[i]; p < q.indptr[i + 1]; ++p) fn(q.indices[p], q.data[p]);
}

inline void exchange_rows(const Csr& q, std::int64_t a, std::int64_t b, double* QKRUM_RESTRICT f) {
  add_row(q, a, -1.0, f);
  add_row(q, b, 1.0, f);
}

inline double coupling(const Dense& q, std::int64_t i, std::int64_t j) { return q.J[i * q.n + j]; }

inline double coupling(const Csr& q, std::int64_t i, std::int64_t j) {
  // Rows are sorted by the Python side, so a binary search finds J_ij.
  const std::int64_t* first = q.indices + q.indptr[i];
  const std::int64_t* last = q.indices + q.indptr[i + 1];
  const std::int64_t* it = std::lower_bound(first, last, j);
  return (it != last && *it == j) ? q.data[it - q.indices] : 0.0;
}

template <class Q>
void init_fields(const Q& q, const double* h, const std::int8_t* x, double* f) {
  const std::int64_t n = q.n;
  for (std::int64_t i = 0; i < n; ++i) f[i] = h[i];
  for (std::int64_t j = 0; j < n; ++j) {
    if (!x[j]) continue;
    // J is symmetric: add column j to every field by walking row j.
    for_row(q, j, [&](std::int64_t i, double v) { f[i] += v; });
  }
}

template <class Q>
double state_energy(const Q& q, const double* h, const std::int8_t* x, const double* f) {
  // Σ_i x_i f_i counts every coupling twice: E = Σ_i x_i (h_i + f_i) / 2.
  double e = 0.0;
  for (std::int64_t i = 0; i < q.n; ++i)
    if (x[i]) e += 0.5 * (h[i] + f[i]);
  (void)q;
  return e;
}

// Which variables are 1 and which 0, as two index lists with O(1) membership updates.
struct Members {
  std::vector<std::int64_t> in, out, pos;  // pos[i]: index of i in `in` or `out`
  void reset(const std::int8_t* x, std::int64_t n) {
    in.clear();
    out.clear();
    pos.assign(n, 0);
    for (std::int64_t i = 0; i < n; ++i) {
      auto& list = x[i] ? in : out;
      pos[i] = static_cast<std::int64_t>(list.size());
      list.push_back(i);
    }
  }
  void move(std::int64_t i, bool now_in) {  // i switched sides
    auto& from = now_in ? out : in;
    auto& to = now_in ? in : out;
    const std::int64_t last = from.back();
    from[pos[i]] = last;
    pos[last] = pos[i];
    from.pop_back();
    pos[i] = static_cast<std::int64_t>(to.size());
    to.push_back(i);
  }
};

// n exchange attempts at inverse temperature beta: a uniformly chosen selected a and
// unselected b trade places, ΔE = f_b − J_ab − f_a.
template <class Q>
std::uint64_t swap_sweep(const Q& q, double beta, std::int8_t* x, double* f, Rng& rng, Members& mem) {
  const std::int64_t n = q.n;
  if (mem.in.empty() || mem.out.empty()) return 0;  // nothing can move
  for (std::int64_t k = 0; k < n; ++k) {
    const std::uint64_t a_pos = rng.below(mem.in.size()), b_pos = rng.below(mem.out.size());
    const std::int64_t a = mem.in[a_pos], b = mem.out[b_pos];
    const double delta = f[b] - coupling(q, a, b) - f[a];
    if (metropolis(beta, delta, rng)) {
      x[a] = 0;
      x[b] = 1;
      exchange_rows(q, a, b, f);
      mem.in[a_pos] = b;
      mem.out[b_pos] = a;
      mem.pos[b] = static_cast<std::int64_t>(a_pos);
      mem.pos[a] = static_cast<std::int64_t>(b_pos);
    }
  }
  return static_cast<std::uint64_t>(n);
}

template <class Q>
std::uint64_t anneal_flips(const Q& q, const Options& opt, std::int8_t* x, double* f, Rng& rng, Members& mem) {
  const std::int64_t n = q.n;
  std::uint64_t attempts = 0;
  if (opt.swap_moves) mem.reset(x, n);
  for (double beta : opt.beta_schedule) {
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int64_t i =
          opt.order == Order::Sequential ? k : static_cast<std::int64_t>(rng.below(n));
      const double delta = x[i] ? -f[i] : f[i];
      if (metropolis(beta, delta, rng)) {
        x[i] ^= 1;
        add_row(q, i, x[i] ? 1.0 : -1.0, f);
        if (opt.swap_moves) mem.move(i, x[i] != 0);
      }
    }
    attempts += static_cast<std::uint64_t>(n);
    if (opt.swap_moves) attempts += swap_sweep(q, beta, x, f, rng, mem);
  }
  return attempts;
}

template <class Q>
std::uint64_t anneal_swaps(const Q& q, const Options& opt, std::int8_t* x, double* f, Rng& rng, Members& mem) {
  mem.reset(x, q.n);
  std::uint64_t attempts = 0;
  for (double beta : opt.beta_schedule) attempts += swap_sweep(q, beta, x, f, rng, mem);
  return attempts;
}

void random_state(std::int64_t n, std::int64_t cardinality, Rng& gen, std::int8_t* x) {
  if (cardinality < 0) {
    for (std::int64_t i = 0; i < n; ++i) x[i] = static_cast<std::int8_t>(gen.next() >> 63);
    return;
  }
  rng::random_subset(n, cardinality, gen, x);
}

// A double for an error message, the same on every C library ("nan", "-inf", "-0.125"):
// std::to_string follows the C locale and prints glibc's "-nan".
std::string describe(double v) {
  if (std::isnan(v)) return "nan";
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out << v;
  return out.str();
}

void check_options(std::int64_t n, const Options& opt) {
  if (n < 1) throw std::invalid_argument("the QUBO must have at least one variable, got n=" + std::to_string(n));
  if (opt.num_reads < 1)
    throw std::invalid_argument("num_reads must be >= 1, got num_reads=" + std::to_string(opt.num_reads));
  for (std::size_t k = 0; k < opt.beta_schedule.size(); ++k) {
    const double b = opt.beta_schedule[k];
    if (!(b >= 0.0) || !std::isfinite(b))
      throw std::invalid_argument("beta_schedule must hold finite values >= 0, got beta_schedule[" +
                                  std::to_string(k) + "]=" + describe(b));
  }
  if (opt.cardinality > n)
    throw std::invalid_argument("cardinality must be <= n=" + std::to_string(n) +
                                ", got cardinality=" + std::to_string(opt.cardinality));
}

template <class Q>
Result run(const Q& q, const double* h, const Options& opt) {
  const std::int64_t n = q.n;
  check_options(n, opt);
  Result result;
  result.samples.assign(static_cast<std::size_t>(opt.num_reads * n), 0);
  result.energies.assign(static_cast<std::size_t>(opt.num_reads), 0.0);
  if (opt.initial_states && opt.cardinality >= 0) {
    for (std::int64_t r = 0; r < opt.num_reads; ++r) {
      std::int64_t ones = 0;
      for (std::int64_t i = 0; i < n; ++i) ones += opt.initial_states[r * n + i] != 0;
      if (ones != opt.cardinality)
        throw std::invalid_argument("initial_states row " + std::to_string(r) + " has " + std::to_string(ones) +
                                    " ones but cardinality=" + std::to_string(opt.cardinality));
    }
  }

  std::atomic<std::int64_t> next_read{0};
  std::atomic<std::uint64_t> attempts{0};

  auto worker = [&]() {
    // Thread-local state: annealing in place in the shared output would make threads
    // write to the same cache lines (false sharing) whenever rows are short.
    std::vector<double> f(n);
    std::vector<std::int8_t> state(n);
    Members mem;
    std::uint64_t local_attempts = 0;
    for (std::int64_t r; (r = next_read.fetch_add(1)) < opt.num_reads;) {
      Rng rng(read_seed(opt.seed, static_cast<std::uint64_t>(r)));
      std::int8_t* x = state.data();
      if (opt.initial_states) {
        for (std::int64_t i = 0; i < n; ++i) x[i] = opt.initial_states[r * n + i] != 0;
      } else {
        random_state(n, opt.cardinality, rng, x);
      }
      init_fields(q, h, x, f.data());
      local_attempts += opt.cardinality >= 0 ? anneal_swaps(q, opt, x, f.data(), rng, mem)
                                             : anneal_flips(q, opt, x, f.data(), rng, mem);
      // Recompute the fields from scratch so the reported energy carries no drift from
      // millions of incremental updates.
      init_fields(q, h, x, f.data());
      result.energies[r] = state_energy(q, h, x, f.data());
      std::copy(state.begin(), state.end(), result.samples.begin() + r * n);
    }
    attempts += local_attempts;
  };

  workers::run(opt.num_threads, opt.num_reads, worker);
  result.flip_attempts = attempts.load();
  return result;
}

}  // namespace

std::uint64_t read_seed(std::uint64_t seed, std::uint64_t read) {
  std::uint64_t state = seed ^ (read * 0x9E3779B97F4A7C15ULL);
  return splitmix64(state);
}

Result anneal_dense(const Dense& q, const double* h, const Options& opt) { return run(q, h, opt); }

Result anneal_csr(const Csr& q, const double* h, const Options& opt) { return run(q, h, opt); }

double energy_dense(const Dense& q, const double* h, const std::int8_t* x) {
  std::vector<double> f(q.n);
  init_fields(q, h, x, f.data());
  return state_energy(q, h, x, f.data());
}

ExactResult exact_dense(const Dense& q, const double* h, std::int64_t cardinality, std::int64_t max_states) {
  const std::int64_t n = q.n;
  if (n < 1) throw std::invalid_argument("the QUBO must have at least one variable, got n=" + std::to_string(n));
  if (cardinality > n)
    throw std::invalid_argument("cardinality must be <= n=" + std::to_string(n) +
                                ", got cardinality=" + std::to_string(cardinality));
  if (cardinality < 0 && n > kMaxExhaustiveVariables)
    throw std::invalid_argument("exhaustive search over 2^n states is limited to n <= " +
                                std::to_string(kMaxExhaustiveVariables) + ", got n=" + std::to_string(n));

  ExactResult best;
  best.energy = std::numeric_limits<double>::infinity();
  std::vector<std::int8_t> x(n, 0);
  std::vector<double> f(h, h + n);

  auto offer = [&](double e) {
    ++best.num_states_searched;
    // Incremental updates over up to 2^30 states drift by far less than this tolerance.
    const double tol = std::isfinite(best.energy) ? 1e-9 * std::max(1.0, std::abs(best.energy)) : 0.0;
    if (!std::isfinite(best.energy) || e < best.energy - tol) {
      best.energy = e;
      best.num_ground = 0;
      best.states.clear();
    }
    if (std::abs(e - best.energy) <= tol) {
      ++best.num_ground;
      if (static_cast<std::int64_t>(best.states.size() / std::max<std::int64_t>(n, 1)) < max_states)
        best.states.insert(best.states.end(), x.begin(), x.end());
    }
  };
  auto flip = [&](std::int64_t i, double& e) {
    e += x[i] ? -f[i] : f[i];
    x[i] ^= 1;
    add_row(q, i, x[i] ? 1.0 : -1.0, f.data());
  };

  if (cardinality < 0) {
    // Gray code: state g(k) = k ^ (k >> 1) differs from g(k-1) in bit ctz(k).
    double e = 0.0;
    offer(e);
    const std::uint64_t total = 1ULL << n;
    for (std::uint64_t k = 1; k < total; ++k) {
      flip(static_cast<std::int64_t>(portable::ctz64(k)), e);
      offer(e);
    }
  } else {
    // Depth-first over subsets in lexicographic order, adding/removing one variable at a time.
    double e = 0.0;
    std::vector<std::int64_t> chosen;
    chosen.reserve(cardinality);
    // Recursive lambda via explicit stack of "next candidate" per depth.
    std::vector<std::int64_t> next(cardinality + 1, 0);
    std::int64_t depth = 0;
    if (cardinality == 0) {
      offer(e);
    } else {
      next[0] = 0;
      while (depth >= 0) {
        const std::int64_t remaining = cardinality - depth;
        if (next[depth] > n - remaining) {  // no room left at this depth: backtrack
          if (depth == 0) break;
          --depth;
          const std::int64_t last = chosen.back();
          chosen.pop_back();
          flip(last, e);
          next[depth] = last + 1;
          continue;
        }
        const std::int64_t i = next[depth];
        flip(i, e);
        chosen.push_back(i);
        if (depth + 1 == cardinality) {
          offer(e);
          flip(i, e);
          chosen.pop_back();
          next[depth] = i + 1;
        } else {
          ++depth;
          next[depth] = i + 1;
        }
      }
    }
  }
  if (!best.states.empty()) best.energy = energy_dense(q, h, best.states.data());
  return best;
}

}  // namespace anneal
}  // namespace qkrum
