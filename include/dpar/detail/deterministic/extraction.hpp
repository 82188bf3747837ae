#pragma once
// The fast path of exact sums: error-free extraction in vector registers.
//
// A tile of at most 2^11 values whose magnitudes are below 2^(e+1) is cut,
// value by value, into h = (x + C) - C and the remainder r = x - h, with
// C = 1.5 * 2^(e+11): h is x rounded to a multiple of u = 2^(e-41), and 2^11
// such h add exactly in a double, in any order. Floats within 2^18 of the
// tile's largest are multiples of u, so r is 0. Doubles get a second level for
// r (the next 41 bits), which leaves nothing for values within 2^31 of the
// largest. The few nonzero remainders, and the tiles this cannot take (inf or
// NaN, all zeros, magnitudes near the ends of the double range), go to a
// binned_sum; the tile's sums go to exact_sum. This relies on IEEE arithmetic
// as written: do not build it with -ffast-math or -fassociative-math.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "../kernels.hpp"
#include "exact_sum.hpp"

namespace dpar::detail::deterministic {

inline constexpr int tile_log2 = 11;
inline constexpr std::size_t tile = std::size_t{1} << tile_log2;

// Adds x[0], ..., x[m-1] (m <= tile) exactly to `into`, through `table` where
// needed. With zeros_matter false, a tile of zeros adds nothing (their signs
// cannot decide the sign of a zero total).
template <class S>
void add_tile(const S* x, std::size_t m, binned_sum<S>& table, exact_sum& into, bool zeros_matter = true) {
  constexpr bool is_float = std::is_same_v<S, float>;
  using bits_t = std::conditional_t<is_float, std::uint32_t, std::uint64_t>;
  constexpr int fraction_bits = std::numeric_limits<S>::digits - 1;
  constexpr int bias = std::numeric_limits<S>::max_exponent - 1;
  constexpr bits_t magnitude_mask = ~bits_t{0} >> 1;
  constexpr int special_field = 2 * bias + 1;

  bits_t top = 0;
  for (std::size_t i = 0; i < m; ++i) top = std::max(top, static_cast<bits_t>(std::bit_cast<bits_t>(x[i]) & magnitude_mask));
  if (top == 0 && !zeros_matter) return;
  const int field = static_cast<int>(top >> fraction_bits);
  const int e = std::max(field, 1) - bias;  // every |x[i]| < 2^(e+1)
  // doubles: C1 finite, and C2 normal
  const bool in_range = is_float || (e + tile_log2 <= 1000 && e - 31 >= -990);
  if (top == 0 || field == special_field || !in_range) {
    auto term = [&](std::size_t i) { return x[i]; };
    table.add_range(0, m, term, into);
    return;
  }
  const double c1 = std::ldexp(1.5, e + tile_log2);
  const double c2 = std::ldexp(1.5, e - 31);  // doubles: the remainders are below 2^(e-42)

  constexpr std::size_t lanes = vector_bytes / sizeof(double), chains = 4;
  typedef double vec __attribute__((vector_size(vector_bytes)));
  typedef std::int64_t mask __attribute__((vector_size(vector_bytes)));
  const vec c1v = vec{} + c1, c2v = vec{} + c2;
  vec high[chains] = {}, low[chains] = {};
  mask left = {};
  std::size_t i = 0;
  const std::size_t vectors_end = m / (chains * lanes) * (chains * lanes);
  for (; i < vectors_end; i += chains * lanes)
    [&]<std::size_t... c>(std::index_sequence<c...>) {
      (
          [&] {
            double lane[lanes];
            for (std::size_t k = 0; k < lanes; ++k) lane[k] = static_cast<double>(x[i + c * lanes + k]);
            vec t;
            std::memcpy(&t, lane, sizeof t);
            const vec h = (t + c1v) - c1v;
            vec r = t - h;
            high[c] += h;
            if constexpr (!is_float) {
              const vec h2 = (r + c2v) - c2v;
              r -= h2;
              low[c] += h2;
            }
            left |= r != 0;
          }(),
          ...);
    }(std::make_index_sequence<chains>{});
  double high_sum = 0, low_sum = 0;
  bool any_left = false;
  for (; i < m; ++i) {
    const double t = static_cast<double>(x[i]), h = (t + c1) - c1;
    double r = t - h;
    high_sum += h;
    if constexpr (!is_float) {
      const double h2 = (r + c2) - c2;
      r -= h2;
      low_sum += h2;
    }
    any_left |= r != 0;
  }
  for (std::size_t c = 0; c < chains; ++c)
    for (std::size_t k = 0; k < lanes; ++k) high_sum += high[c][k], low_sum += low[c][k], any_left |= left[k] != 0;
  into.add(high_sum);
  if constexpr (!is_float) into.add(low_sum);
  if (any_left) {  // rare: the remainders, again from x, into the table
    S rest[tile];
    std::size_t count = 0;
    for (std::size_t j = 0; j < m; ++j) {
      const double t = static_cast<double>(x[j]);
      double r = t - ((t + c1) - c1);
      if constexpr (!is_float) r -= (r + c2) - c2;
      if (r != 0) rest[count++] = static_cast<S>(r);  // exact: r has no more bits than x
    }
    auto term = [&](std::size_t j) { return rest[j]; };
    table.add_range(0, count, term, into);
  }
}

// Adds term(i) for i in [lo, hi) as S values, tile by tile.
template <class S, class Term>
void add_terms(std::size_t lo, std::size_t hi, Term& term, binned_sum<S>& table, exact_sum& into) {
  S buffer[tile];
  for (std::size_t start = lo; start < hi; start += tile) {
    const std::size_t m = std::min(tile, hi - start);
    for (std::size_t j = 0; j < m; ++j) buffer[j] = static_cast<S>(term(start + j));
    add_tile(buffer, m, table, into);
  }
}

// Adds a * b for (a, b) = factors(i), i in [lo, hi), exactly. Products of
// floats are exact in double; a product of doubles is p + e with
// e = fma(a, b, -p) (both doubles) when nothing underflows or overflows, else
// it goes straight into `into`.
template <class Factors>
void add_products(std::size_t lo, std::size_t hi, Factors& factors, binned_sum<double>& table, exact_sum& into) {
  double product[tile], error[tile];
  for (std::size_t start = lo; start < hi; start += tile) {
    const std::size_t m = std::min(tile, hi - start);
    bool has_error = false;
    for (std::size_t j = 0; j < m; ++j) {
      const auto [a, b] = factors(start + j);
      if constexpr (std::is_same_v<std::remove_cv_t<decltype(a)>, float> &&
                    std::is_same_v<std::remove_cv_t<decltype(b)>, float>) {
        product[j] = static_cast<double>(a) * static_cast<double>(b);
      } else {
        const double x = a, y = b, p = x * y, magnitude = std::fabs(p);
        error[j] = -0.0;
        has_error = true;
        if (magnitude >= 0x1p-960 && magnitude <= std::numeric_limits<double>::max()) {
          product[j] = p;
          error[j] = std::fma(x, y, -p);
        } else if (p == 0 && (x == 0 || y == 0)) {
          product[j] = p;
        } else {  // underflow, overflow, inf or NaN
          product[j] = -0.0;
          into.add_product(x, y);
        }
      }
    }
    add_tile(product, m, table, into);
    if (has_error) add_tile(error, m, table, into, /*zeros_matter=*/false);
  }
}

}  // namespace dpar::detail::deterministic
