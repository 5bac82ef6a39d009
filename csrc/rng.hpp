// qkrum::rng — the random number generator shared by the annealer and the tabu search:
// splitmix64 for seeding and xoshiro256+ for the draws. Header-only, pure C++17.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "portable.hpp"

namespace qkrum {
namespace rng {

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// xoshiro256+ (Blackman & Vigna): fast, 2^256 period; the top 53 bits give doubles.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& word : s_) word = splitmix64(seed);
  }
  std::uint64_t next() {
    const std::uint64_t result = s_[0] + s_[3];
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return result;
  }
  // Uniform integer in [0, bound): Lemire's multiply-shift (bias < bound / 2^64).
  std::uint64_t below(std::uint64_t bound) {
    return portable::mul_hi_u64(next(), bound);
  }

 private:
  std::uint64_t s_[4];
};

// A uniform m-subset of 0..n-1 as a 0/1 vector: a partial Fisher–Yates over the indices,
// O(n), drawing m bounded integers. The random start of the annealer's cardinality mode
// and of every tabu restart.
inline void random_subset(std::int64_t n, std::int64_t m, Rng& gen, std::int8_t* x) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) idx[i] = i;
  std::fill(x, x + n, std::int8_t{0});
  for (std::int64_t k = 0; k < m; ++k) {
    const std::int64_t pick = k + static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(n - k)));
    std::swap(idx[k], idx[pick]);
    x[idx[k]] = 1;
  }
}

}  // namespace rng
}  // namespace qkrum
