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
//
// Most tiles take a cheaper path first (direct_sum below): when every nonzero
// value lies within a few binades of the tile's largest, the values (floats)
// or their two halves (doubles) already are multiples of a common unit small
// enough that 2^11 of them add exactly in a double, so they are summed as
// they are and only checked: one pass of adds, integer max and min.

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

template <class S>
struct tile_format {
  static constexpr bool is_float = std::is_same_v<S, float>;
  using bits = std::conditional_t<is_float, std::uint32_t, std::uint64_t>;
  static constexpr int fraction_bits = std::numeric_limits<S>::digits - 1;
  static constexpr int bias = std::numeric_limits<S>::max_exponent - 1;
  static constexpr bits magnitude_mask = ~bits{0} >> 1;
  static constexpr int special_field = 2 * bias + 1;
  static constexpr int no_bound = std::numeric_limits<int>::min();

  // e with every |x| < 2^(e+1) for magnitude bits `top`, or no_bound if the
  // tile cannot be extracted: all zeros, inf or NaN, or (doubles) magnitudes
  // near the ends of the range (C1 must be finite and C2 normal).
  static int bound(bits top) {
    const int field = static_cast<int>(top >> fraction_bits);
    const int e = std::max(field, 1) - bias;
    if (top == 0 || field == special_field) return no_bound;
    if (!is_float && (e + tile_log2 > 1000 || e - 31 < -990)) return no_bound;
    return e;
  }
};

// What one extraction pass found.
struct extracted {
  double high = 0, low = 0;  // sums of the first and (doubles) second parts
  bool left = false;         // some remainder is not zero
};

// One extraction pass with bound e (every |x| < 2^(e+1); the caller checks),
// fed in pieces: run(x, count) for each piece, then result().
template <class S>
class extractor {
  static constexpr bool is_float = tile_format<S>::is_float;
  static constexpr std::size_t lanes = vector_bytes / sizeof(double), chains = 4;
  typedef double vec __attribute__((vector_size(vector_bytes)));
  typedef std::int64_t mask __attribute__((vector_size(vector_bytes)));

 public:
  explicit extractor(int e)
      : c1_(std::ldexp(1.5, e + tile_log2)),
        c2_(std::ldexp(1.5, e - 31)),  // doubles: the remainders are below 2^(e-42)
        c1v_(vec{} + c1_),
        c2v_(vec{} + c2_) {}

  void run(const S* x, std::size_t count) {
    std::size_t i = 0;
    const std::size_t vectors_end = count / (chains * lanes) * (chains * lanes);
    for (; i < vectors_end; i += chains * lanes)
      [&]<std::size_t... c>(std::index_sequence<c...>) {
        (
            [&] {
              double lane[lanes];
              for (std::size_t k = 0; k < lanes; ++k) lane[k] = static_cast<double>(x[i + c * lanes + k]);
              vec t;
              std::memcpy(&t, lane, sizeof t);
              const vec h = (t + c1v_) - c1v_;
              vec r = t - h;
              high_[c] += h;
              if constexpr (!is_float) {
                const vec h2 = (r + c2v_) - c2v_;
                r -= h2;
                low_[c] += h2;
              }
              left_ |= r != 0;
            }(),
            ...);
      }(std::make_index_sequence<chains>{});
    for (; i < count; ++i) {
      const double t = static_cast<double>(x[i]), r = remainder(t, tail_.high);
      tail_.left |= r != 0;
    }
  }

  extracted result() const {
    extracted out = tail_;
    for (std::size_t c = 0; c < chains; ++c)
      for (std::size_t k = 0; k < lanes; ++k) out.high += high_[c][k], out.low += low_[c][k], out.left |= left_[k] != 0;
    return out;
  }

  // t's remainder after the pass; adds the extracted parts to high (and to
  // the second-level sum).
  double remainder(double t, double& high) {
    const double h = (t + c1_) - c1_;
    double r = t - h;
    high += h;
    if constexpr (!is_float) {
      const double h2 = (r + c2_) - c2_;
      r -= h2;
      tail_.low += h2;
    }
    return r;
  }

 private:
  double c1_, c2_;
  vec c1v_, c2v_;
  vec high_[chains] = {}, low_[chains] = {};
  mask left_ = {};
  extracted tail_;
};

// Adds the sums of a pass with bound e over x[0..m) to `into`, and the
// remainders (rare; recomputed from x) through `table`.
template <class S>
void commit(const extracted& pass, const S* x, std::size_t m, int e, binned_sum<S>& table, exact_sum& into) {
  into.add(pass.high);
  if constexpr (!tile_format<S>::is_float) into.add(pass.low);
  if (!pass.left) return;
  extractor<S> again(e);
  double ignored = 0;
  S rest[tile];
  std::size_t count = 0;
  for (std::size_t j = 0; j < m; ++j) {
    const double r = again.remainder(static_cast<double>(x[j]), ignored);
    if (r != 0) rest[count++] = static_cast<S>(r);  // exact: r has no more bits than x
  }
  auto term = [&](std::size_t j) { return rest[j]; };
  table.add_range(0, count, term, into);
}

// The exact sum of a tile when its values' binades are close: for floats, all
// nonzero |x| >= 2^-18 * 2^e (e: the largest's binade; x is then a multiple of
// 2^(e-41), and 2^11 of them, each below 2^(e+1), sum below 2^(e+12): 53 bits);
// for doubles, all >= 2^-15 * 2^e, each cut (as binned_sum does) into its top
// 26 significant bits and the rest: the tops are multiples of 2^(e-40), the
// rests of 2^(e-67) below 2^(e-26), so each kind sums exactly in 53 bits. The
// sums are formed in any order (vector lanes, chains) and checked afterwards:
// exact() says whether they hold the tile's exact sum.
template <class S>
struct direct_sum {
  using format = tile_format<S>;
  using bits = typename format::bits;
  static constexpr int binades = format::is_float ? 18 : 15;  // how far below the largest, at most
  // doubles: largest exponent field whose sums stay below 2^1024 (the tops' sum is below 2^(e+12))
  static constexpr int highest_field = 2030;
  static constexpr bits split_mask = ~((bits{1} << 27) - 1);  // doubles: the top 26 bits of the significand
  static constexpr std::size_t prefetch_distance = 4096;  // bytes

  double high = 0, low = 0;  // the sums of the values (floats) or of their tops and rests (doubles)
  bits top = 0;              // the largest magnitude bits (only if exact())
  bits least = ~bits{0};     // the smallest nonzero magnitude bits minus one (all ones: no nonzero value)

  // Sums x[0..m), m <= tile.
  direct_sum(const S* x, std::size_t m) {
    constexpr std::size_t dlanes = vector_bytes / sizeof(double), ulanes = vector_bytes / sizeof(S);
    constexpr std::size_t chains = 4, step = chains * dlanes;  // elements per iteration
    typedef double dvec __attribute__((vector_size(vector_bytes)));
    typedef bits uvec __attribute__((vector_size(vector_bytes)));
    dvec sum_high[chains] = {}, sum_low[chains] = {};
    // Unsigned max and min of the magnitude bits (and of the bits minus one,
    // where a zero's all-ones drops out), in 32-bit lanes on the integer
    // pipes, which leaves the floating-point ones to the sums. A double's
    // lanes are its two halves, each compared with its kind only; the high
    // half holds the exponent field, which is all that exact() needs.
    typedef std::uint32_t wvec __attribute__((vector_size(vector_bytes)));
    wvec top_w = wvec{} + 0u, least_w = wvec{} + ~0u;
    auto keys = [&](uvec u) {
      const uvec key = u & format::magnitude_mask, below = key - 1;
      wvec k, b;
      std::memcpy(&k, &key, sizeof k);
      std::memcpy(&b, &below, sizeof b);
      top_w = k > top_w ? k : top_w;
      least_w = b < least_w ? b : least_w;
    };
    // One vector of values from x + at added to the chain (h, l). (Generic
    // lambdas below only call these: GCC drops the vector attribute of a
    // dependent typedef inside them.)
    auto add = [&](dvec& h, dvec& l, std::size_t at) {
      if constexpr (format::is_float) {
        double lane[dlanes];
        for (std::size_t k = 0; k < dlanes; ++k) lane[k] = static_cast<double>(x[at + k]);
        dvec t;
        std::memcpy(&t, lane, sizeof t);
        h += t;
      } else {
        uvec u;
        std::memcpy(&u, x + at, sizeof u);
        const uvec top_bits = u & split_mask;
        dvec t, high_part;
        std::memcpy(&t, &u, sizeof t);
        std::memcpy(&high_part, &top_bits, sizeof high_part);
        h += high_part;
        l += t - high_part;
      }
    };
    auto check = [&](std::size_t at) {
      uvec v;
      std::memcpy(&v, x + at, sizeof v);
      keys(v);
    };
    std::size_t i = 0;
    const std::size_t vectors_end = m / step * step;
    for (; i < vectors_end; i += step) {
      // The hardware prefetchers alone run too few lines ahead for this loop:
      // from memory (2^25 floats, one thread) it ran at 0.5 of a plain sum's
      // speed, with lines asked for 1-8 KiB ahead at 0.62-0.74 (bench/RESULTS.md).
      // Beyond the end of x, a prefetch only wastes a request; it never faults.
      const char* const line = reinterpret_cast<const char*>(x + i) + prefetch_distance;
      for (std::size_t b = 0; b < step * sizeof(S); b += 64) __builtin_prefetch(line + b);
      [&]<std::size_t... u>(std::index_sequence<u...>) { (check(i + u * ulanes), ...); }(
          std::make_index_sequence<step / ulanes>{});
      [&]<std::size_t... c>(std::index_sequence<c...>) { (add(sum_high[c], sum_low[c], i + c * dlanes), ...); }(
          std::make_index_sequence<chains>{});
    }
    double tail_high = 0, tail_low = 0;
    for (; i < m; ++i) {
      const bits u = std::bit_cast<bits>(x[i]);
      const bits key = u & format::magnitude_mask;
      top = std::max(top, key);
      least = std::min(least, static_cast<bits>(key - 1));
      if constexpr (format::is_float) {
        tail_high += static_cast<double>(x[i]);
      } else {
        const double h = std::bit_cast<double>(u & split_mask);
        tail_high += h;
        tail_low += x[i] - h;
      }
    }
    constexpr std::size_t words = sizeof(S) / 4, high_word = std::endian::native == std::endian::little ? words - 1 : 0;
    for (std::size_t k = high_word; k < vector_bytes / 4; k += words) {
      if constexpr (format::is_float) {
        top = std::max(top, top_w[k]);
        least = std::min(least, least_w[k]);
      } else {  // the high halves; least's low half all ones (only the fields count)
        top = std::max(top, static_cast<bits>(top_w[k]) << 32);
        least = std::min(least, static_cast<bits>(least_w[k]) << 32 | 0xffffffffu);
      }
    }
    for (std::size_t c = 0; c < chains; ++c)
      for (std::size_t k = 0; k < dlanes; ++k) high += sum_high[c][k], low += sum_low[c][k];
    high += tail_high;
    low += tail_low;
  }

  // Whether high (+ low) is the exact sum: some value is not zero, none is
  // inf or NaN, and all nonzero ones lie within `binades` of the largest.
  bool exact() const {
    if (top == 0 || !std::isfinite(high) || !std::isfinite(low)) return false;
    const int field = std::max(static_cast<int>(top >> format::fraction_bits), 1);
    if (field == format::special_field || (!format::is_float && field > highest_field)) return false;
    const int least_field = std::max(static_cast<int>(least >> format::fraction_bits), 1);
    return least_field + binades >= field;
  }
};

// Adds x[0], ..., x[m-1] (m <= tile), whose largest magnitude bits are `top`,
// exactly to `into`, through `table` where needed. Returns the tile's bound.
template <class S>
int add_tile(const S* x, std::size_t m, typename tile_format<S>::bits top, binned_sum<S>& table, exact_sum& into) {
  const int e = tile_format<S>::bound(top);
  if (e == tile_format<S>::no_bound) {
    auto term = [&](std::size_t i) { return x[i]; };
    table.add_range(0, m, term, into);
  } else {
    extractor<S> pass(e);
    pass.run(x, m);
    commit(pass.result(), x, m, e, table, into);
  }
  return e;
}

template <class S>
typename tile_format<S>::bits largest_magnitude(const S* x, std::size_t m) {
  typename tile_format<S>::bits top = 0;
  for (std::size_t i = 0; i < m; ++i)
    top = std::max(top, static_cast<typename tile_format<S>::bits>(std::bit_cast<typename tile_format<S>::bits>(x[i]) &
                                                                    tile_format<S>::magnitude_mask));
  return top;
}

// Adds x[0], ..., x[m-1] (m <= tile) exactly to `into`: directly where the
// tile allows it, else by extraction (through `table` where needed).
template <class S>
void add_exactly(const S* x, std::size_t m, binned_sum<S>& table, exact_sum& into) {
  const direct_sum<S> direct(x, m);
  if (direct.exact()) {
    into.add(direct.high);
    if constexpr (!tile_format<S>::is_float) into.add(direct.low);
    return;
  }
  add_tile(x, m, largest_magnitude(x, m), table, into);
}

// Adds term(i) for i in [lo, hi) as S values, exactly, tile by tile.
// `values`, when given, holds the terms (values[i] == term(i)); else they are
// copied to a buffer (which stays in L1) as they are read.
template <class S, class Term>
void add_terms(std::size_t lo, std::size_t hi, Term& term, binned_sum<S>& table, exact_sum& into,
               const S* values = nullptr) {
  S buffer[tile];
  for (std::size_t start = lo; start < hi; start += tile) {
    const std::size_t m = std::min(tile, hi - start);
    if (!values)
      for (std::size_t j = 0; j < m; ++j) buffer[j] = static_cast<S>(term(start + j));
    add_exactly(values ? values + start : buffer, m, table, into);
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
    add_exactly(product, m, table, into);
    if (has_error) {
      // error terms of 0 only (exact products) add nothing: their signs cannot
      // decide the sign of a zero total
      const direct_sum<double> direct(error, m);
      if (direct.exact()) {
        into.add(direct.high);
        into.add(direct.low);
      } else if (largest_magnitude(error, m) != 0) {
        add_tile(error, m, largest_magnitude(error, m), table, into);
      }
    }
  }
}

}  // namespace dpar::detail::deterministic
