#pragma once
// The tests' non-commutative op on every backend: 2x2 matrices modulo a prime
// under multiplication (associative, not commutative). A plain aggregate, so
// it is trivially copyable and usable in device code and MPI messages.

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#if defined(__CUDACC__)
#define DPAR_TEST_HOST_DEVICE __host__ __device__
#else
#define DPAR_TEST_HOST_DEVICE
#endif

namespace dpar_test {

struct mat2 {
  static constexpr std::uint64_t p = 1'000'003;
  std::uint64_t a, b, c, d;
  friend bool operator==(const mat2&, const mat2&) = default;
};

struct mat2_mul {
  DPAR_TEST_HOST_DEVICE mat2 operator()(const mat2& x, const mat2& y) const {
    return {(x.a * y.a + x.b * y.c) % mat2::p, (x.a * y.b + x.b * y.d) % mat2::p,
            (x.c * y.a + x.d * y.c) % mat2::p, (x.c * y.b + x.d * y.d) % mat2::p};
  }
};

inline constexpr mat2 mat2_identity{1, 0, 0, 1};

inline std::vector<mat2> random_mat2s(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::uint64_t> d(0, mat2::p - 1);
  std::vector<mat2> v(n);
  for (auto& m : v) m = {d(rng), d(rng), d(rng), d(rng)};
  return v;
}

}  // namespace dpar_test
