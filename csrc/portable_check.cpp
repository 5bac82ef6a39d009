// A check of csrc/portable.hpp, not part of the extension (CMakeLists.txt does not build it):
// tests/test_native.py compiles it twice with the system C++ compiler,
//
//   c++ -std=c++17 -O1 -Icsrc csrc/portable_check.cpp csrc/anneal.cpp csrc/tabu.cpp -pthread
//   c++ ... -DQKRUM_PORTABLE_FORCE_GENERIC
//
// and requires both builds to print the same lines. The first line compares mul_hi_u64 and
// ctz64 (the compiler's branch, or the generic code in the second build) with bit-by-bit
// references on random and edge inputs; the others hash the annealer's and the exact
// solver's and the tabu search's outputs, which depend on every random draw (Lemire's bounded draws use
// mul_hi_u64, the Gray code ctz64).
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "anneal.hpp"
#include "portable.hpp"
#include "tabu.hpp"

namespace {

using std::uint64_t;

// The high word of a·b by shift-and-add over a's bits: slow, obviously right.
uint64_t mul_hi_reference(uint64_t a, uint64_t b) {
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 64; ++i) {
    if (!((a >> i) & 1)) continue;
    const uint64_t add_lo = i ? b << i : b;
    const uint64_t add_hi = i ? b >> (64 - i) : 0;
    const uint64_t sum = lo + add_lo;
    hi += add_hi + (sum < lo);
    lo = sum;
  }
  return hi;
}

int ctz_reference(uint64_t x) {
  int k = 0;
  while (!((x >> k) & 1)) ++k;
  return k;
}

uint64_t fnv(const void* p, std::size_t n) {
  uint64_t h = 1469598103934665603ULL;
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ULL;
  return h;
}

}  // namespace

int main() {
  using namespace qkrum;
  std::mt19937_64 gen(12345);
  long checked = 0, mismatches = 0;
  auto check = [&](uint64_t a, uint64_t b) {
    const uint64_t want = mul_hi_reference(a, b);
    mismatches += portable::mul_hi_u64(a, b) != want;
    mismatches += portable::mul_hi_u64_generic(a, b) != want;
    if (a) mismatches += portable::ctz64(a) != ctz_reference(a) || portable::ctz64_generic(a) != ctz_reference(a);
    ++checked;
  };
  const uint64_t edge[] = {0, 1, 2, 3, 0xFFFFFFFFULL, 0x100000000ULL, ~0ULL, ~0ULL - 1, 1ULL << 63,
                           0x9E3779B97F4A7C15ULL, 0xFFFFFFFF00000000ULL};
  for (uint64_t a : edge)
    for (uint64_t b : edge) check(a, b);
  for (int i = 0; i < 64; ++i) check(1ULL << i, gen()), check(gen() << i, (1ULL << i) - 1);
  for (int i = 0; i < 200000; ++i) check(gen() << (i % 64), gen() >> (i % 61));
  std::printf("ops checked=%ld mismatches=%ld\n", checked, mismatches);

  std::normal_distribution<double> normal;
  for (int n : {5, 17, 64}) {
    std::vector<double> J(n * n, 0.0), h(n);
    for (int i = 0; i < n; ++i) {
      h[i] = normal(gen);
      for (int j = i + 1; j < n; ++j) J[i * n + j] = J[j * n + i] = normal(gen);
    }
    const anneal::Dense q{J.data(), n};
    for (int order = 0; order < 2; ++order)
      for (int cardinality : {-1, n / 3})
        for (bool swap_moves : {false, true}) {
          anneal::Options opt;
          opt.num_reads = 9;
          opt.seed = 1000 + n;
          opt.order = order ? anneal::Order::Random : anneal::Order::Sequential;
          opt.cardinality = cardinality;
          opt.swap_moves = swap_moves;
          opt.num_threads = 2;
          for (int k = 0; k < 30; ++k) opt.beta_schedule.push_back(0.05 * (k + 1));
          const anneal::Result r = anneal::anneal_dense(q, h.data(), opt);
          std::printf("anneal n=%d order=%d cardinality=%d swap=%d samples=%016llx energies=%016llx attempts=%llu\n",
                      n, order, cardinality, swap_moves ? 1 : 0,
                      static_cast<unsigned long long>(fnv(r.samples.data(), r.samples.size())),
                      static_cast<unsigned long long>(fnv(r.energies.data(), r.energies.size() * sizeof(double))),
                      static_cast<unsigned long long>(r.flip_attempts));
        }
    for (int tenure : {0, 3}) {
      tabu::Options topt;
      topt.cardinality = n / 3;
      topt.max_restarts = 7;
      topt.confirm = tenure ? 2 : 0;
      topt.min_restarts = 3;
      topt.stall = 50;
      topt.max_iterations = 500;
      topt.tenure = tenure;
      topt.seed = 2000 + n;
      topt.num_threads = 2;
      const tabu::Result t = tabu::tabu_dense(q, h.data(), topt);
      std::printf("tabu n=%d tenure=%d restarts=%lld samples=%016llx energies=%016llx iterations=%016llx\n", n, tenure,
                  static_cast<long long>(t.restarts),
                  static_cast<unsigned long long>(fnv(t.samples.data(), t.samples.size())),
                  static_cast<unsigned long long>(fnv(t.energies.data(), t.energies.size() * sizeof(double))),
                  static_cast<unsigned long long>(fnv(t.iterations.data(), t.iterations.size() * sizeof(std::int64_t))));
    }
    if (n <= 17) {
      const anneal::ExactResult e = anneal::exact_dense(q, h.data(), -1, 100);
      std::vector<double> zero(n * n, 0.0), zero_h(n, 0.0);
      // Every state is a ground state: the states come back in Gray-code order.
      const anneal::ExactResult all = anneal::exact_dense(anneal::Dense{zero.data(), n}, zero_h.data(), -1, 1 << 20);
      std::printf("exact n=%d energy=%.17g states=%016llx num_ground=%lld gray_order=%016llx\n", n, e.energy,
                  static_cast<unsigned long long>(fnv(e.states.data(), e.states.size())),
                  static_cast<long long>(e.num_ground),
                  static_cast<unsigned long long>(fnv(all.states.data(), all.states.size())));
    }
  }
  return mismatches != 0;
}
