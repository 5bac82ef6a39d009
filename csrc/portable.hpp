// qkrum::portable — the few compiler intrinsics csrc needs, with a branch per compiler
// family and a plain C++17 fallback, all giving the same results.
//
//   mul_hi_u64(a, b)  the high 64 bits of the 128-bit product a·b
//   ctz64(x)          the number of trailing zero bits of x (x != 0)
//   QKRUM_RESTRICT    `__restrict` where the compiler has it, nothing elsewhere
//
// Branches: GCC/Clang (builtins, unsigned __int128 where the target has it), MSVC
// (<intrin.h>), and the generic code for any other compiler. Defining
// QKRUM_PORTABLE_FORCE_GENERIC selects the generic code everywhere (used to test it).
#pragma once

#include <cstdint>

#if !defined(QKRUM_PORTABLE_FORCE_GENERIC) && defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

#if defined(QKRUM_PORTABLE_FORCE_GENERIC)
#define QKRUM_RESTRICT
#elif defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define QKRUM_RESTRICT __restrict
#else
#define QKRUM_RESTRICT
#endif

namespace qkrum {
namespace portable {

// Generic versions: always compiled, so that tests can compare them with the intrinsics.
constexpr std::uint64_t mul_hi_u64_generic(std::uint64_t a, std::uint64_t b) {
  // Schoolbook product of 32-bit halves; `mid` collects the carries into the high word.
  const std::uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32;
  const std::uint64_t b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
  const std::uint64_t lo_lo = a_lo * b_lo, lo_hi = a_lo * b_hi;
  const std::uint64_t hi_lo = a_hi * b_lo, hi_hi = a_hi * b_hi;
  const std::uint64_t mid = (lo_lo >> 32) + (lo_hi & 0xFFFFFFFFu) + (hi_lo & 0xFFFFFFFFu);
  return hi_hi + (lo_hi >> 32) + (hi_lo >> 32) + (mid >> 32);
}

// De Bruijn sequence 0x022FDD63CC95386D: bit i times it has a distinct top 6 bits.
inline constexpr int kCtzIndex[64] = {0,  1,  2,  53, 3,  7,  54, 27, 4,  38, 41, 8,  34, 55, 48, 28,
                                      62, 5,  39, 46, 44, 42, 22, 9,  24, 35, 59, 56, 49, 18, 29, 11,
                                      63, 52, 6,  26, 37, 40, 33, 47, 61, 45, 43, 21, 23, 58, 17, 10,
                                      51, 25, 36, 32, 60, 20, 57, 16, 50, 31, 19, 15, 30, 14, 13, 12};

constexpr int ctz64_generic(std::uint64_t x) {
  // Isolate the lowest set bit (x & -x) and look up its position.
  return kCtzIndex[((x & (~x + 1)) * 0x022FDD63CC95386DULL) >> 58];
}

inline std::uint64_t mul_hi_u64(std::uint64_t a, std::uint64_t b) {
#if defined(QKRUM_PORTABLE_FORCE_GENERIC)
  return mul_hi_u64_generic(a, b);
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;  // __extension__: no -Wpedantic warning
  return static_cast<std::uint64_t>((static_cast<u128>(a) * b) >> 64);
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
  return __umulh(a, b);
#else
  return mul_hi_u64_generic(a, b);
#endif
}

inline int ctz64(std::uint64_t x) {
#if defined(QKRUM_PORTABLE_FORCE_GENERIC)
  return ctz64_generic(x);
#elif defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(x);  // unsigned long long is 64 bits on every GCC/Clang target
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
  unsigned long index;
  _BitScanForward64(&index, x);
  return static_cast<int>(index);
#elif defined(_MSC_VER)
  unsigned long index;
  if (_BitScanForward(&index, static_cast<unsigned long>(x))) return static_cast<int>(index);
  _BitScanForward(&index, static_cast<unsigned long>(x >> 32));
  return static_cast<int>(index) + 32;
#else
  return ctz64_generic(x);
#endif
}

}  // namespace portable
}  // namespace qkrum
