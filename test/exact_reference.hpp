#pragma once
// The tests' own exact sum, independent of dpar's: a 4608-bit two's-complement
// integer (64-bit words, bit 0 weighing 2^-2200) that terms are added to by
// frexp decomposition and plain carry propagation, and a correctly-rounded
// answer chosen by comparing the exact value with a result and its two
// neighbours. Plus adversarial data generators.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

namespace dpar_test {

class exact_reference {
  static constexpr int words = 72, low = -2200;
  using number = std::array<std::uint64_t, words>;

 public:
  void add(double x) {
    if (std::isnan(x)) nan_ = true;
    else if (std::isinf(x)) (x > 0 ? pos_inf_ : neg_inf_) = true;
    if (x != 0 || !std::signbit(x)) all_negative_zero_ = false;
    if (!std::isfinite(x) || x == 0) return;
    int e = 0;
    const double f = std::frexp(std::fabs(x), &e);  // |x| = f 2^e, f in [0.5, 1)
    add_to(value_, static_cast<unsigned __int128>(std::ldexp(f, 53)), e - 53, x < 0);
  }
  void add_product(double a, double b) {
    if (!std::isfinite(a) || !std::isfinite(b)) return add(a * b);
    if (a == 0 || b == 0) {
      if (!std::signbit(a * b)) all_negative_zero_ = false;
      return;
    }
    all_negative_zero_ = false;
    int ea = 0, eb = 0;
    const auto ma = static_cast<std::uint64_t>(std::ldexp(std::frexp(std::fabs(a), &ea), 53));
    const auto mb = static_cast<std::uint64_t>(std::ldexp(std::frexp(std::fabs(b), &eb), 53));
    add_to(value_, static_cast<unsigned __int128>(ma) * mb, ea + eb - 106, (a < 0) != (b < 0));
  }

  // The correctly rounded sum, given dpar's answer `got`: among got and its
  // two neighbours, the one nearest to the exact value (ties: even). If got
  // is far off, this is a neighbour of got, which differs from got.
  template <class T>
  T rounded(T got) const {
    if (nan_ || (pos_inf_ && neg_inf_)) return std::numeric_limits<T>::quiet_NaN();
    if (pos_inf_) return std::numeric_limits<T>::infinity();
    if (neg_inf_) return -std::numeric_limits<T>::infinity();
    if (is_zero(value_)) return all_negative_zero_ ? T(-0.0) : T(0.0);
    const bool negative = value_[words - 1] >> 63;
    const T max = std::numeric_limits<T>::max();
    // overflow: |exact| >= max + half an ulp of max
    number threshold{};
    add_to(threshold, (std::uint64_t{1} << (std::numeric_limits<T>::digits + 1)) - 1,
           std::numeric_limits<T>::max_exponent - std::numeric_limits<T>::digits - 1, false);
    if (!less(magnitude(value_), threshold)) return negative ? -std::numeric_limits<T>::infinity()
                                                             : std::numeric_limits<T>::infinity();
    if (std::isinf(got) || std::isnan(got)) got = negative ? -max : max;
    T best = got;
    number best_distance = distance(got);
    for (T c : {std::nextafter(got, -max), std::nextafter(got, max)}) {
      number d = distance(c);
      bool even = (std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(c) & 1) == 0;
      if (less(d, best_distance) || (d == best_distance && even)) best = c, best_distance = d;
    }
    return best;
  }

 private:
  // n += (negative ? -1 : 1) * m * 2^exponent, with carries or borrows up the words.
  static void add_to(number& n, unsigned __int128 m, int exponent, bool negative) {
    const int position = exponent - low;
    int word = position / 64;
    const int shift = position % 64;
    // m << shift spans up to three words
    std::uint64_t part[3] = {static_cast<std::uint64_t>(m) << shift,
                             shift ? static_cast<std::uint64_t>(m >> (64 - shift)) : static_cast<std::uint64_t>(m >> 64),
                             shift ? static_cast<std::uint64_t>(m >> (128 - shift)) : 0};
    unsigned carry = 0;
    for (int i = 0; word + i < words; ++i) {
      const std::uint64_t p = i < 3 ? part[i] : 0;
      if (i >= 3 && carry == 0) break;
      std::uint64_t& w = n[word + i];
      if (!negative) {
        const std::uint64_t s = w + p, t = s + carry;
        carry = (s < w) + (t < s);
        w = t;
      } else {
        const std::uint64_t s = w - p, t = s - carry;
        carry = (w < p) + (s < t);
        w = t;
      }
    }
  }
  static bool is_zero(const number& n) {
    for (auto w : n)
      if (w) return false;
    return true;
  }
  static number magnitude(number n) {
    if (!(n[words - 1] >> 63)) return n;
    for (auto& w : n) w = ~w;
    for (auto& w : n)
      if (++w != 0) break;
    return n;
  }
  static bool less(const number& a, const number& b) {
    for (int i = words - 1; i >= 0; --i)
      if (a[i] != b[i]) return a[i] < b[i];
    return false;
  }
  // |exact - c|
  template <class T>
  number distance(T c) const {
    number n = value_;
    if (c != 0) {
      int e = 0;
      const double f = std::frexp(std::fabs(static_cast<double>(c)), &e);
      add_to(n, static_cast<unsigned __int128>(std::ldexp(f, 53)), e - 53, !(c < 0));
    }
    return magnitude(n);
  }

  number value_{};
  bool nan_ = false, pos_inf_ = false, neg_inf_ = false, all_negative_zero_ = true;
};

// Random values 2^k * [1, 2) with k uniform in [-100, 100] (about 1e-30 to
// 1e30) and random signs.
template <class T>
std::vector<T> wide_range(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> mantissa(1.0, 2.0);
  std::uniform_int_distribution<int> exponent(-100, 100);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(std::ldexp(mantissa(rng), exponent(rng)) * (rng() & 1 ? -1 : 1));
  return v;
}

// x and -x pairs in random places, plus one tiny residue: the exact sum is the residue.
template <class T>
std::vector<T> cancelling(std::size_t n, std::uint64_t seed) {
  std::vector<T> v = wide_range<T>(n / 2, seed);
  const std::size_t half = v.size();
  for (std::size_t i = 0; i < half; ++i) v.push_back(-v[i]);
  if (v.size() < n) v.push_back(std::numeric_limits<T>::denorm_min() * 3);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed + 1));
  return v;
}

// Doubles with full 53-bit significands whose magnitudes lie in
// [2^low, 2^high), random signs: with `high` at or below T's smallest normal,
// a sum of a few of them rounds to a subnormal T.
inline std::vector<double> binade_range(std::size_t n, int low, int high, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> exponent(low, high - 1);
  std::vector<double> v(n);
  for (auto& x : v) {
    const double significand = std::ldexp(static_cast<double>((rng() >> 11) | (std::uint64_t{1} << 52)), -52);
    x = std::ldexp(significand, exponent(rng)) * (rng() & 1 ? -1 : 1);
  }
  return v;
}

// Factors a[i], b[i] (full significands) whose products are subnormal in T,
// near the bottom of the normal range or a few binades below it.
template <class T>
std::pair<std::vector<T>, std::vector<T>> subnormal_products(std::size_t n, std::uint64_t seed) {
  constexpr int smallest = std::numeric_limits<T>::min_exponent - 1;  // -126, -1022
  constexpr int spread = std::numeric_limits<T>::digits + 4;
  std::vector<double> a = binade_range(n, smallest / 2 - 8, smallest / 2 + 8, seed);
  std::vector<double> b = binade_range(n, 0, 1, seed + 1);
  std::mt19937_64 rng(seed + 2);
  std::pair<std::vector<T>, std::vector<T>> out;
  for (std::size_t i = 0; i < n; ++i) {
    // b[i] scaled so that a[i] * b[i] lies in [2^(smallest - spread), 2^smallest)
    const int target = smallest - 1 - static_cast<int>(rng() % spread);
    const int scale = target - std::ilogb(a[i]) - 1;
    out.first.push_back(static_cast<T>(a[i]));
    out.second.push_back(static_cast<T>(std::ldexp(b[i], scale)));
  }
  return out;
}

// Subnormals, the smallest normals and a few ones.
template <class T>
std::vector<T> subnormal(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) {
    const auto pick = rng() % 8;
    const T tiny = std::numeric_limits<T>::denorm_min() * static_cast<T>(rng() % 100000);
    x = pick == 0 ? T(1) : pick == 1 ? std::numeric_limits<T>::min() : tiny;
    if (rng() & 1) x = -x;
  }
  return v;
}

}  // namespace dpar_test
