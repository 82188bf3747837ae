#pragma once
// Exact sums of floats and doubles, rounded once.
//
// exact_sum is a wide fixed-point accumulator: 32-bit digits held in int64
// limbs (31 bits of carry headroom), covering every double and every exact
// product of two doubles. Integer adds are associative and commutative, so
// partial accumulators (per thread, per rank) combine into the same value
// whatever the split; round<T>() then rounds that value once to T, to nearest
// even. Inf and NaN are kept aside as flags, as a sequential sum would see them.
//
// binned_sum takes what the fast path (extraction.hpp) does not: a float is a
// multiple of the unit of its exponent field and below 2^24 such units, so
// 2^29 of them add exactly in a double; one double accumulator per exponent
// ("bin") adds them at a few cycles per element and goes into exact_sum only
// at the end.
// A double is cut into two halves of at most 27 significant bits, each added
// to the bin of its own unit, where 2^26 of them add exactly; doubles of
// 2^967 and above (rare) go straight to exact_sum, so no bin can overflow.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

namespace dpar::detail::deterministic {

template <class T>
inline constexpr bool is_float_or_double_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

class exact_sum {
 public:
  // Bit 0 weighs 2^-2176, below the exact product of two subnormal doubles
  // (2^-2148); 136 digits reach 2^2176, above 2^64 products of doubles.
  static constexpr int low_exponent = -2176;
  static constexpr int limbs = 136;

  void add(double x) {
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
    const int field = static_cast<int>((bits >> 52) & 0x7ff);
    const bool negative = bits >> 63;
    if (field == 0x7ff) return add_special(x);
    const std::uint64_t fraction = bits & ((std::uint64_t{1} << 52) - 1);
    if (field == 0 && fraction == 0) {  // a zero
      if (!negative) all_negative_zero_ = false;
      return;
    }
    all_negative_zero_ = false;
    if (field == 0) add_magnitude(fraction, -1074, negative);
    else add_magnitude(fraction | (std::uint64_t{1} << 52), field - 1075, negative);
  }

  // Adds a * b exactly (the 106-bit product of the significands).
  void add_product(double a, double b) {
    if (!std::isfinite(a) || !std::isfinite(b)) return add_special(a * b);
    auto split = [](double x, std::uint64_t& significand, int& exponent) {
      const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
      const int field = static_cast<int>((bits >> 52) & 0x7ff);
      significand = bits & ((std::uint64_t{1} << 52) - 1);
      if (field != 0) significand |= std::uint64_t{1} << 52;
      exponent = field == 0 ? -1074 : field - 1075;
      return static_cast<bool>(bits >> 63);
    };
    std::uint64_t ma, mb;
    int ea, eb;
    const bool negative = split(a, ma, ea) != split(b, mb, eb);
    if (ma == 0 || mb == 0) {
      if (!negative) all_negative_zero_ = false;
      return;
    }
    all_negative_zero_ = false;
    add_magnitude(static_cast<unsigned __int128>(ma) * mb, ea + eb, negative);
  }

  // An infinity or NaN term (the sum of several such terms, too).
  void add_special(double x) {
    all_negative_zero_ = false;
    if (std::isnan(x)) nan_ = true;
    else if (x > 0) pos_inf_ = true;
    else neg_inf_ = true;
  }

  void merge(exact_sum& other) {
    normalize();
    other.normalize();
    for (int i = other.lo_; i <= other.hi_; ++i) limb_[i] += other.limb_[i];
    lo_ = std::min(lo_, other.lo_);
    hi_ = std::max(hi_, other.hi_);
    adds_ = 2;
    nan_ |= other.nan_;
    pos_inf_ |= other.pos_inf_;
    neg_inf_ |= other.neg_inf_;
    all_negative_zero_ &= other.all_negative_zero_;
  }

  // The exact value rounded once to T (round to nearest, ties to even);
  // overflow gives +-inf, inf and NaN terms give what a sequential sum would.
  template <class T>
  T round() {
    static_assert(is_float_or_double_v<T>);
    if (nan_ || (pos_inf_ && neg_inf_)) return std::numeric_limits<T>::quiet_NaN();
    if (pos_inf_) return std::numeric_limits<T>::infinity();
    if (neg_inf_) return -std::numeric_limits<T>::infinity();
    normalize();
    int top = hi_;
    while (top >= lo_ && limb_[top] == 0) --top;
    if (top < lo_) return all_negative_zero_ ? T(-0.0) : T(0.0);
    const bool negative = limb_[top] < 0;
    if (negative) {
      for (int i = lo_; i <= hi_; ++i) limb_[i] = -limb_[i];
      normalize();
      top = hi_;
      while (limb_[top] == 0) --top;
    }
    // Now every digit is in [0, 2^32). msb: the highest set bit.
    const int msb = 32 * top + 63 - std::countl_zero(static_cast<std::uint64_t>(limb_[top]));
    constexpr int precision = std::numeric_limits<T>::digits;
    // the unit of T's subnormals (2^-149, 2^-1074): rounding there, once, gives
    // a significand that T holds exactly, so the conversion below rounds nothing
    constexpr int lowest_unit = std::numeric_limits<T>::min_exponent - precision;
    const int exponent = msb + low_exponent;  // value in [2^exponent, 2^(exponent+1))
    const int unit = std::max(exponent - precision + 1, lowest_unit);
    const int unit_bit = unit - low_exponent;  // >= 1
    std::uint64_t significand = 0;
    for (int b = msb; b >= unit_bit; --b) significand = (significand << 1) | bit(b);
    const bool half = bit(unit_bit - 1);
    if (half && (significand & 1 || any_below(unit_bit - 1))) ++significand;
    const double magnitude = std::ldexp(static_cast<double>(significand), unit);  // exact, or inf
    T result = magnitude > static_cast<double>(std::numeric_limits<T>::max()) ? std::numeric_limits<T>::infinity()
                                                                               : static_cast<T>(magnitude);
    if (negative) {  // the value back as it was
      for (int i = lo_; i <= hi_; ++i) limb_[i] = -limb_[i];
      normalize();
    }
    return negative ? -result : result;
  }

  // Back to zero, touching only the digits in use.
  void clear() {
    for (int i = lo_; i <= hi_; ++i) limb_[i] = 0;
    lo_ = limbs;
    hi_ = -1;
    adds_ = 0;
    nan_ = pos_inf_ = neg_inf_ = false;
    all_negative_zero_ = true;
  }

  // The state as `limbs + 4` integers whose element-wise sum over several
  // accumulators (e.g. MPI_SUM over ranks) is the state of their merge.
  static constexpr int wire_size = limbs + 4;
  void to_wire(std::int64_t* out) {
    normalize();
    std::fill(out, out + limbs, std::int64_t{0});
    for (int i = lo_; i <= hi_; ++i) out[i] = limb_[i];
    out[limbs] = nan_;
    out[limbs + 1] = pos_inf_;
    out[limbs + 2] = neg_inf_;
    out[limbs + 3] = !all_negative_zero_;
  }
  void from_wire(const std::int64_t* in) {
    clear();
    for (int i = 0; i < limbs; ++i) limb_[i] = in[i];
    lo_ = 0;
    hi_ = limbs - 1;
    adds_ = 1 << 20;  // digits may be sums of many normalized ones
    normalize();
    nan_ = in[limbs] != 0;
    pos_inf_ = in[limbs + 1] != 0;
    neg_inf_ = in[limbs + 2] != 0;
    all_negative_zero_ = in[limbs + 3] == 0;
  }

 private:
  // Adds +-m * 2^exponent, m < 2^107: at most five digits.
  void add_magnitude(unsigned __int128 m, int exponent, bool negative) {
    const int position = exponent - low_exponent;
    int i = position >> 5;
    const int shift = position & 31;
    const int first = i;
    std::uint64_t digit = (static_cast<std::uint64_t>(m) << shift) & 0xffffffffu;
    m >>= 32 - shift;
    for (;;) {
      const auto d = static_cast<std::int64_t>(digit);
      limb_[i] += negative ? -d : d;
      if (m == 0) break;
      digit = static_cast<std::uint64_t>(m) & 0xffffffffu;
      m >>= 32;
      ++i;
    }
    lo_ = std::min(lo_, first);
    hi_ = std::max(hi_, i);
    if (++adds_ >= (1u << 30)) normalize();
  }

  // Carries propagated: digits below hi_ in [0, 2^32), the top one signed.
  void normalize() {
    if (hi_ < lo_) return;
    std::int64_t carry = 0;
    for (int i = lo_; i <= hi_; ++i) {
      const std::int64_t v = limb_[i] + carry;
      carry = v >> 32;
      limb_[i] = v - carry * (std::int64_t{1} << 32);
    }
    if (carry != 0) {
      if (hi_ + 1 < limbs) limb_[++hi_] = carry;
      else limb_[hi_] += carry * (std::int64_t{1} << 32);  // beyond any reachable sum
    }
    adds_ = 1;
  }

  bool bit(int b) const {
    const int i = b >> 5;
    if (i < lo_ || i > hi_) return false;
    return (static_cast<std::uint64_t>(limb_[i]) >> (b & 31)) & 1;
  }
  // Whether any bit below bit b is set.
  bool any_below(int b) const {
    const int i = b >> 5;
    for (int j = lo_; j < std::min(i, hi_ + 1); ++j)
      if (limb_[j] != 0) return true;
    if (i < lo_ || i > hi_) return false;
    return (static_cast<std::uint64_t>(limb_[i]) & ((std::uint64_t{1} << (b & 31)) - 1)) != 0;
  }

  std::int64_t limb_[limbs] = {};
  int lo_ = limbs, hi_ = -1;  // digits that may be nonzero
  std::uint32_t adds_ = 0;    // adds since the digits were last normalized
  bool nan_ = false, pos_inf_ = false, neg_inf_ = false;
  bool all_negative_zero_ = true;  // an exact zero is -0 only if every term was -0
};

// Per-exponent double accumulators for float (S = float) or double terms.
// `copies` interleaved tables hide the latency of an add on the same bin.
// Empty bins hold -0.0, so a bin still at -0.0 added only -0 terms.
template <class S>
class binned_sum {
  static_assert(is_float_or_double_v<S>);
  static constexpr bool is_float = std::is_same_v<S, float>;
  static constexpr int copies = is_float ? 8 : 4;
  // float: bin = exponent field (255: inf and NaN). double: bin g holds
  // multiples of 2^(g-1075) below 2^(g-1048); a double of exponent field e
  // (subnormals: 1) puts its low half in bin e and its high half in bin e+27.
  static constexpr int direct_field = 1990;  // doubles from here on skip the bins
  static constexpr int bins = is_float ? 256 : direct_field + 27;
  static constexpr int special_bin = is_float ? 255 : -1;
  static constexpr int page = 64;  // bins per bit of `touched_`
  // Rows one cache line longer than a whole number of lines, so the copies of a
  // bin are never a multiple of 4 KiB apart (a load may then wait on a store
  // to another copy: "4K aliasing").
  static constexpr int row = (bins + 7) / 8 * 8 + 8;
  static_assert(bins / page <= 64);

 public:
  // Adds per bin that stay exact.
  static constexpr std::size_t capacity = is_float ? std::size_t{1} << 29 : std::size_t{1} << 26;

  binned_sum() { std::fill(&bin_[0][0], &bin_[0][0] + copies * row, -0.0); }

  // Adds term(i) for i in [lo, hi); term(i) converts to S.
  template <class Term>
  void add_range(std::size_t lo, std::size_t hi, Term& term, exact_sum& into) {
    if (pending_ + (hi - lo) > capacity) flush(into);
    pending_ += hi - lo;
    std::size_t i = lo;
    const std::size_t unrolled_end = lo + (hi - lo) / copies * copies;
    for (; i < unrolled_end; i += copies) {
      // Terms (and, for floats, their double values) first, in a loop the
      // compiler vectorizes: a scalar float-to-double conversion merges into
      // its destination register and would chain every add to the one before.
      S x[copies];
      for (int c = 0; c < copies; ++c) x[c] = static_cast<S>(term(i + c));
      double wide[copies];
      for (int c = 0; c < copies; ++c) wide[c] = static_cast<double>(x[c]);
      [&]<int... c>(std::integer_sequence<int, c...>) {
        (add<c>(x[c], wide[c], into), ...);
      }(std::make_integer_sequence<int, copies>{});
    }
    for (; i < hi; ++i) {
      const S x = static_cast<S>(term(i));
      add<0>(x, static_cast<double>(x), into);
    }
  }

  // Moves the bins' values into `into` and empties them.
  void flush(exact_sum& into) {
    for (std::uint64_t pages = touched_; pages != 0; pages &= pages - 1) {
      const int first = std::countr_zero(pages) * page, last = std::min(first + page, bins);
      for (int c = 0; c < copies; ++c)
        for (int b = first; b < last; ++b) {
          double& v = bin_[c][b];
          if (std::bit_cast<std::uint64_t>(v) == std::bit_cast<std::uint64_t>(-0.0)) continue;
          if (b == special_bin) into.add_special(v);
          else into.add(v);
          v = -0.0;
        }
    }
    touched_ = 0;
    pending_ = 0;
  }

  // Empties the bins, dropping their values (after an exception).
  void discard() {
    if (touched_ == 0) return;  // (a sink costs 1 KiB of zeros: a loan per block returns often)
    exact_sum sink;
    flush(sink);
  }

 private:
  // Adds x, whose value as a double is `wide`.
  template <int c>
  void add(S x, double wide, exact_sum& into) {
    if constexpr (is_float) {
      const int field = static_cast<int>((std::bit_cast<std::uint32_t>(x) >> 23) & 0xff);
      bin_[c][field] += wide;
      touched_ |= std::uint64_t{1} << (field / page);
    } else {
      const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
      const int field = static_cast<int>((bits >> 52) & 0x7ff);
      if (field >= direct_field) [[unlikely]] {
        into.add(x);
        return;
      }
      const int low_bin = field + (field == 0);
      const double high = std::bit_cast<double>(bits & ~((std::uint64_t{1} << 27) - 1));
      // -(high - x) rather than x - high: a zero low half is -0, which leaves
      // an empty bin empty.
      const double low = -(high - x);
      bin_[c][low_bin] += low;
      bin_[c][low_bin + 27] += high;
      touched_ |= (std::uint64_t{1} << (low_bin / page)) | (std::uint64_t{1} << ((low_bin + 27) / page));
    }
  }

  alignas(64) double bin_[copies][row];
  std::uint64_t touched_ = 0;  // pages of bins that may hold values
  std::size_t pending_ = 0;    // adds per bin since the last flush, at most
};

// A binned_sum for this thread, empty on loan and on return. Each thread keeps
// one (they are large); a nested loan on the same thread gets its own.
template <class S>
class binned_loan {
 public:
  binned_loan() {
    if (!busy()) {
      busy() = true;
      table_ = &mine();
    } else {
      own_ = std::make_unique<binned_sum<S>>();
      table_ = own_.get();
    }
  }
  binned_loan(const binned_loan&) = delete;
  binned_loan& operator=(const binned_loan&) = delete;
  ~binned_loan() {
    table_->discard();
    if (!own_) busy() = false;
  }
  binned_sum<S>& operator*() const noexcept { return *table_; }
  binned_sum<S>* operator->() const noexcept { return table_; }

 private:
  static binned_sum<S>& mine() {
    thread_local std::unique_ptr<binned_sum<S>> table = std::make_unique<binned_sum<S>>();
    return *table;
  }
  static bool& busy() {
    thread_local bool in_use = false;
    return in_use;
  }
  binned_sum<S>* table_;
  std::unique_ptr<binned_sum<S>> own_;
};

}  // namespace dpar::detail::deterministic
