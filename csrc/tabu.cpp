#include "tabu.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "portable.hpp"
#include "rng.hpp"
#include "workers.hpp"

namespace qkrum {
namespace tabu {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kInf = std::numeric_limits<double>::infinity();

inline double tolerance(double energy) { return 1e-9 * std::max(1.0, std::abs(energy)); }

struct Move {
  std::int64_t a = -1, b = -1;  // a leaves the selection, b joins it
  double delta = kInf;
};

// One restart's working state: the selection as two index lists with O(1) exchange.
class Search {
 public:
  Search(const anneal::Dense& q, const double* h, const std::vector<double>& row_max)
      : q_(q), h_(h), row_max_(row_max), n_(q.n), f_(q.n), x_(q.n), pos_(q.n), left_at_(q.n), joined_at_(q.n) {}

  void start(const std::int8_t* x0) {
    in_.clear();
    out_.clear();
    for (std::int64_t i = 0; i < n_; ++i) {
      x_[i] = x0[i] ? 1 : 0;
      auto& list = x_[i] ? in_ : out_;
      pos_[i] = static_cast<std::int64_t>(list.size());
      list.push_back(i);
    }
    std::fill(f_.begin(), f_.end(), 0.0);
    for (std::int64_t i = 0; i < n_; ++i) f_[i] = h_[i];
    for (std::int64_t j : in_) {
      const double* row = q_.J + j * n_;
      for (std::int64_t i = 0; i < n_; ++i) f_[i] += row[i];
    }
    energy_ = 0.0;
    for (std::int64_t i : in_) energy_ += 0.5 * (h_[i] + f_[i]);
    // Never tabu at the start: the "until" iterations lie in the past.
    std::fill(left_at_.begin(), left_at_.end(), std::numeric_limits<std::int64_t>::min() / 2);
    std::fill(joined_at_.begin(), joined_at_.end(), std::numeric_limits<std::int64_t>::min() / 2);
  }

  // The lowest-ΔE exchange allowed at iteration `iter`: neither client tabu (with
  // `tenure`), or the move beats `best` (aspiration). tenure < 0: every move is allowed.
  Move best_move(std::int64_t iter, std::int64_t tenure, double best) {
    const bool tabu = tenure >= 0;
    auto may_leave = [&](std::int64_t a) { return !tabu || iter - joined_at_[a] > tenure; };
    auto may_join = [&](std::int64_t b) { return !tabu || iter - left_at_[b] > tenure; };
    // A first admissible pair bounds the search: the allowed a with the largest field
    // and the allowed b with the smallest (tenure < min(m, n − m) leaves both).
    std::int64_t a0 = -1, b0 = -1;
    double u_max = -kInf, f_min = kInf;
    for (std::int64_t a : in_) {
      if (may_leave(a) && (a0 < 0 || f_[a] > f_[a0])) a0 = a;
      u_max = std::max(u_max, f_[a] + row_max_[a]);
    }
    for (std::int64_t b : out_) {
      if (may_join(b) && (b0 < 0 || f_[b] < f_[b0])) b0 = b;
      f_min = std::min(f_min, f_[b]);
    }
    Move move;
    if (a0 >= 0 && b0 >= 0) move = Move{a0, b0, f_[b0] - f_[a0] - q_.J[a0 * n_ + b0]};
    const double aspire = best - tolerance(best) - energy_;  // ΔE below this beats the best
    // ΔE(a, b) >= f_b − u_a with u_a = f_a + max_j J_aj: only the pairs whose bound is
    // below the best ΔE so far can improve on it.
    cand_a_.clear();
    for (std::int64_t a : in_)
      if (f_min - (f_[a] + row_max_[a]) < move.delta) cand_a_.push_back(a);
    cand_b_.clear();
    for (std::int64_t b : out_)
      if (f_[b] - u_max < move.delta) cand_b_.push_back(b);
    // Ascending f_b: the inner loop stops at the first b whose bound fails. Ties by index
    // keep the order, and so the chosen move, independent of the lists' history.
    std::sort(cand_b_.begin(), cand_b_.end(),
              [&](std::int64_t i, std::int64_t j) { return f_[i] < f_[j] || (f_[i] == f_[j] && i < j); });
    std::sort(cand_a_.begin(), cand_a_.end());
    for (std::int64_t a : cand_a_) {
      const double u = f_[a] + row_max_[a];
      const double* row = q_.J + a * n_;
      const bool leave = may_leave(a);
      for (std::int64_t b : cand_b_) {
        if (f_[b] - u >= move.delta) break;
        const double delta = f_[b] - f_[a] - row[b];
        if (delta < move.delta && ((leave && may_join(b)) || delta < aspire)) move = Move{a, b, delta};
      }
    }
    return move;
  }

  void apply(const Move& m, std::int64_t iter) {
    const double* QKRUM_RESTRICT row_a = q_.J + m.a * n_;
    const double* QKRUM_RESTRICT row_b = q_.J + m.b * n_;
    double* QKRUM_RESTRICT f = f_.data();
    for (std::int64_t j = 0; j < n_; ++j) f[j] += row_b[j] - row_a[j];
    energy_ += m.delta;
    x_[m.a] = 0;
    x_[m.b] = 1;
    const std::int64_t pa = pos_[m.a], pb = pos_[m.b];
    in_[pa] = m.b;
    out_[pb] = m.a;
    pos_[m.b] = pa;
    pos_[m.a] = pb;
    left_at_[m.a] = iter;
    joined_at_[m.b] = iter;
  }

  // Steepest descent to a local minimum of the exchange neighbourhood.
  std::int64_t descend(std::int64_t iter) {
    std::int64_t moves = 0;
    for (;;) {
      const Move m = best_move(iter, -1, kInf);
      if (m.a < 0 || !(m.delta < -tolerance(energy_))) return moves;
      apply(m, iter + moves);
      ++moves;
    }
  }

  // The energy from scratch: no drift from the incremental updates.
  double exact_energy() const {
    double e = 0.0;
    for (std::int64_t i : in_) {
      e += h_[i];
      const double* row = q_.J + i * n_;
      for (std::int64_t j : in_)
        if (j > i) e += row[j];
    }
    return e;
  }

  double energy() const { return energy_; }
  const std::vector<std::int8_t>& state() const { return x_; }
  std::int64_t selected() const { return static_cast<std::int64_t>(in_.size()); }
  std::int64_t unselected() const { return static_cast<std::int64_t>(out_.size()); }

 private:
  const anneal::Dense& q_;
  const double* h_;
  const std::vector<double>& row_max_;
  std::int64_t n_;
  std::vector<double> f_;
  std::vector<std::int8_t> x_;
  std::vector<std::int64_t> in_, out_, pos_, left_at_, joined_at_, cand_a_, cand_b_;
  double energy_ = 0.0;
};

void check_options(std::int64_t n, const Options& opt) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (n < 1) bad("the QUBO must have at least one variable, got n=" + std::to_string(n));
  if (opt.cardinality < 0 || opt.cardinality > n)
    bad("cardinality must lie in [0, n=" + std::to_string(n) + "], got cardinality=" +
        std::to_string(opt.cardinality));
  if (opt.max_restarts < 1) bad("num_reads must be >= 1, got num_reads=" + std::to_string(opt.max_restarts));
  if (opt.confirm < 0) bad("confirm must be >= 0, got confirm=" + std::to_string(opt.confirm));
  if (opt.min_restarts < 1)
    bad("min_restarts must be >= 1, got min_restarts=" + std::to_string(opt.min_restarts));
  if (opt.stall < 1) bad("stall must be >= 1, got stall=" + std::to_string(opt.stall));
  if (opt.max_iterations < 0)
    bad("max_iterations must be >= 0, got max_iterations=" + std::to_string(opt.max_iterations));
  if (opt.tenure < 0) bad("tenure must be >= 0, got tenure=" + std::to_string(opt.tenure));
  if (opt.num_initial < 0 || opt.num_initial > opt.max_restarts)
    bad("initial states must number at most num_reads=" + std::to_string(opt.max_restarts) + ", got " +
        std::to_string(opt.num_initial));
  for (std::int64_t r = 0; r < opt.num_initial; ++r) {
    std::int64_t ones = 0;
    for (std::int64_t i = 0; i < n; ++i) ones += opt.initial_states[r * n + i] != 0;
    if (ones != opt.cardinality)
      bad("initial_states row " + std::to_string(r) + " has " + std::to_string(ones) +
          " ones but cardinality=" + std::to_string(opt.cardinality));
  }
}

}  // namespace

Result tabu_dense(const anneal::Dense& q, const double* h, const Options& opt) {
  const std::int64_t n = q.n, m = opt.cardinality;
  check_options(n, opt);
  const std::int64_t tenure = std::max<std::int64_t>(0, std::min(opt.tenure, std::min(m, n - m) - 1));
  std::vector<double> row_max(n, 0.0);  // J_aa = 0 is in the row, so the bound holds for every b
  for (std::int64_t a = 0; a < n; ++a) {
    const double* row = q.J + a * n;
    row_max[a] = *std::max_element(row, row + n);
  }
  const bool timed = opt.timeout_s > 0.0;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timed ? opt.timeout_s : 0.0));

  const std::int64_t R = opt.max_restarts;
  std::vector<std::int8_t> samples(static_cast<std::size_t>(R * n));
  std::vector<double> energies(R, kInf);
  std::vector<std::int64_t> iterations(R, 0);
  std::vector<char> done(R, 0);
  std::mutex lock;
  std::atomic<std::int64_t> next{0};
  std::atomic<bool> stop{false}, timed_out{false};
  std::int64_t prefix = 0, returned = -1;  // restarts 0..prefix-1 are done
  double prefix_best = kInf;

  auto finish = [&](std::int64_t r) {
    std::lock_guard<std::mutex> guard(lock);
    done[r] = 1;
    while (returned < 0 && prefix < R && done[prefix]) {
      const double e = energies[prefix++];
      prefix_best = std::min(prefix_best, e);
      if (opt.confirm > 0) {
        std::int64_t hits = 0;
        for (std::int64_t k = 0; k < prefix; ++k) hits += energies[k] <= prefix_best + tolerance(prefix_best);
        if (hits >= opt.confirm && prefix >= opt.min_restarts) {
          returned = prefix;
          stop = true;
        }
      }
    }
  };

  auto worker = [&]() {
    Search search(q, h, row_max);
    std::vector<std::int8_t> x0(n), best_x(n);
    for (std::int64_t r; !stop && (r = next.fetch_add(1)) < R;) {
      if (r > 0 && timed && Clock::now() >= deadline) {  // restart 0 always runs
        timed_out = true;
        stop = true;
        break;
      }
      rng::Rng gen(anneal::read_seed(opt.seed, static_cast<std::uint64_t>(r)));
      if (r < opt.num_initial) {
        for (std::int64_t i = 0; i < n; ++i) x0[i] = opt.initial_states[r * n + i] != 0;
      } else {
        rng::random_subset(n, m, gen, x0.data());
      }
      search.start(x0.data());
      double best = search.energy();
      best_x = search.state();
      std::int64_t iter = 0, last_gain = 0;
      if (search.selected() > 0 && search.unselected() > 0) {
        while (iter < opt.max_iterations && iter - last_gain < opt.stall) {
          if (stop) break;  // confirmed by earlier restarts: this one is not returned
          if (timed && Clock::now() >= deadline) {
            timed_out = true;
            break;
          }
          const Move move = search.best_move(iter, tenure, best);
          if (move.a < 0) break;
          search.apply(move, iter);
          ++iter;
          if (search.energy() < best - tolerance(best)) {
            best = search.energy();
            best_x = search.state();
            last_gain = iter;
          }
        }
        search.start(best_x.data());
        iter += search.descend(iter);
      }
      std::copy(search.state().begin(), search.state().end(), samples.begin() + r * n);
      energies[r] = search.exact_energy();
      iterations[r] = iter;
      finish(r);
    }
  };

  workers::run(opt.num_threads, R, worker);

  Result result;
  // The confirm rule fixes the returned restarts; otherwise every finished one (all of
  // them, unless the time ran out: then the started ones, each stopped at the deadline).
  std::int64_t count = returned >= 0 ? returned : 0;
  if (returned < 0)
    for (std::int64_t r = 0; r < R; ++r) count += done[r] ? 1 : 0;
  result.confirmed = returned >= 0;
  result.timed_out = timed_out;
  result.restarts = count;
  result.samples.reserve(static_cast<std::size_t>(count * n));
  for (std::int64_t r = 0, k = 0; r < R && k < count; ++r) {
    if (!done[r]) continue;
    result.samples.insert(result.samples.end(), samples.begin() + r * n, samples.begin() + (r + 1) * n);
    result.energies.push_back(energies[r]);
    result.iterations.push_back(iterations[r]);
    ++k;
  }
  return result;
}

}  // namespace tabu
}  // namespace qkrum
