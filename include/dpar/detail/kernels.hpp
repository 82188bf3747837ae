#pragma once
// Sequential kernels over index ranges [lo, hi). The sequential backend runs
// them over a whole range, the thread backend over one block per thread.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../functional.hpp"
#include "../partition.hpp"

namespace dpar::detail {

// it[i] with the index converted to the iterator's difference type. Also for
// the derived algorithms' index and sink iterators (detail/derived.hpp), which
// have only what the backends use.
template <class It>
constexpr decltype(auto) at(const It& it, std::size_t i) {
  return it[static_cast<std::iter_difference_t<It>>(i)];
}

// Width of the vector registers this translation unit is compiled for. Vector
// types wider than that would still work, but trigger ABI warnings.
#if defined(__AVX512F__)
inline constexpr std::size_t vector_bytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t vector_bytes = 32;
#else
inline constexpr std::size_t vector_bytes = 16;
#endif

// Sums of arithmetic values (std::plus) are folded in vector registers: GCC and
// Clang do not vectorize an unrolled array of scalar accumulators when elem()
// does arithmetic of its own (a dot product), but they keep vector-extension
// accumulators in registers and fuse the multiply-add.
template <class Op, class T>
inline constexpr bool vector_sum_v =
    op_kind_v<Op, T> == op_kind::sum && std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && (sizeof(T) == 4 || sizeof(T) == 8);

// init + elem(lo) + ... + elem(hi-1), reassociated over 8 independent vector
// accumulators, each one register of vector_bytes, then whole vectors into
// the first, then the last few values one by one. The accumulators start at
// the sum's identity (-0.0 for floating point), so a sum is -0.0 exactly when
// init and every term are, as in the order written.
template <class T, class Elem>
T vector_sum(T init, std::size_t lo, std::size_t hi, Elem& elem) {
  constexpr std::size_t width = vector_bytes / sizeof(T), chains = 8;
  typedef T vec __attribute__((vector_size(vector_bytes)));
  std::size_t i = lo;
  if (hi - lo >= width) {
    // Adds elem(at .. at+width-1) to acc. A plain array first: inserting into
    // a vector lane by lane vectorizes badly.
    auto add = [&](vec& acc, std::size_t at) {
      T lane[width];
      for (std::size_t k = 0; k < width; ++k) lane[k] = static_cast<T>(elem(at + k));
      vec v;
      std::memcpy(&v, lane, sizeof v);
      acc += v;
    };
    vec start;
    for (std::size_t k = 0; k < width; ++k) start[k] = reduction_identity<T>::sum();
    vec acc[chains] = {start, start, start, start, start, start, start, start};
    const std::size_t vectors_end = lo + (hi - lo) / (chains * width) * (chains * width);
    // The chains are unrolled with constant indices, so the accumulators stay
    // in registers (a runtime loop over them puts them on the stack, and every
    // add then waits on store forwarding).
    auto step = [&]<std::size_t... c>(std::index_sequence<c...>) { (add(acc[c], i + c * width), ...); };
    for (; i < vectors_end; i += chains * width) step(std::make_index_sequence<chains>{});
    for (; i + width <= hi; i += width) add(acc[0], i);  // a scalar tail is one dependent add per value
    vec total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    T sum = total[0];
    for (std::size_t k = 1; k < width; ++k) sum = static_cast<T>(sum + total[k]);
    init = static_cast<T>(init + sum);
  }
  for (; i < hi; ++i) init = static_cast<T>(init + static_cast<T>(elem(i)));
  return init;
}

// op(...op(op(init, elem(lo)), elem(lo+1))..., elem(hi-1)).
// For reorderable ops on arithmetic types it keeps many independent partial
// results, which the compiler turns into vector registers.
template <class T, class Op, class Elem>
T fold(T init, std::size_t lo, std::size_t hi, Op& op, Elem& elem) {
  if constexpr (vector_sum_v<Op, T>) {
    return vector_sum(std::move(init), lo, hi, elem);
  } else {
    if constexpr (reorderable_v<Op, T>) {
      constexpr std::size_t lanes = sizeof(T) >= 8 ? 16 : 32;
      if (hi - lo >= 2 * lanes) {
        T acc[lanes];
        for (std::size_t k = 0; k < lanes; ++k) acc[k] = static_cast<T>(elem(lo + k));
        std::size_t i = lo + lanes;
        for (; i + lanes <= hi; i += lanes)
          for (std::size_t k = 0; k < lanes; ++k) acc[k] = static_cast<T>(op(acc[k], elem(i + k)));
        for (std::size_t width = lanes / 2; width > 0; width /= 2)
          for (std::size_t k = 0; k < width; ++k) acc[k] = static_cast<T>(op(acc[k], acc[k + width]));
        for (; i < hi; ++i) acc[0] = static_cast<T>(op(acc[0], elem(i)));
        return static_cast<T>(op(std::move(init), acc[0]));
      }
    }
    for (std::size_t i = lo; i < hi; ++i) init = op(std::move(init), elem(i));
    return init;
  }
}

// The reduction of a non-empty range, with no init. A reorderable op takes
// the last element as the seed, so that the vector loop starts at lo, where a
// block of contiguous memory starts aligned: seeded with elem(lo), every
// 64-byte load of [lo + 1, hi) straddled two cache lines (2^18 floats summed
// from L2 on two threads: 8.0 us against 4.5 us).
template <class T, class Op, class Elem>
T fold_nonempty(std::size_t lo, std::size_t hi, Op& op, Elem& elem) {
  if constexpr (reorderable_v<Op, T>)
    return fold(T(elem(hi - 1)), lo, hi - 1, op, elem);
  else
    return fold(T(elem(lo)), lo + 1, hi, op, elem);
}

// op(left, right) where either may be absent (an empty part, or no init).
template <class T, class Op>
std::optional<T> join(const std::optional<T>& left, std::optional<T> right, Op& op) {
  if (!left) return right;
  if (!right) return left;
  return std::optional<T>(std::in_place, op(*left, std::move(*right)));
}

// Reduce-then-scan's middle step, in place: on entry part[0] is the carry into
// part 0 (none: nothing on its left) and part[b] the total of part b-1 (none:
// empty); on return part[b] is the carry into part b, all on its left in order.
template <class T, class Op>
void totals_to_carries(std::vector<std::optional<T>>& part, Op& op) {
  for (std::size_t b = 1; b < part.size(); ++b) part[b] = join(part[b - 1], std::move(part[b]), op);
}


template <class In, class Out, class F>
void transform_range(In first, Out d_first, std::size_t lo, std::size_t hi, F& f) {
  for (std::size_t i = lo; i < hi; ++i) at(d_first, i) = f(at(first, i));
}

template <class In1, class In2, class Out, class F>
void transform_range(In1 first1, In2 first2, Out d_first, std::size_t lo, std::size_t hi, F& f) {
  for (std::size_t i = lo; i < hi; ++i) at(d_first, i) = f(at(first1, i), at(first2, i));
}

// Outputs at least this large bypass the caches (non-temporal stores): a
// transform that writes more than the last-level cache holds gains nothing
// from caching its output, and a plain store first reads each line from
// memory (a third stream next to the input and the output).
inline constexpr std::size_t streaming_store_bytes = std::size_t{32} << 20;

#if defined(__SSE2__)
// Whether stream_range below takes outputs of type T.
template <class T>
inline constexpr bool streamable_v = std::is_arithmetic_v<T> && !std::is_same_v<T, bool> &&
                                     (sizeof(T) == 4 || sizeof(T) == 8);

// out[i] = value(i) for i in [lo, hi), whole 64-byte lines of out written with
// non-temporal stores, the ragged ends with plain ones. Ends with a store
// fence: non-temporal stores are weakly ordered, and the pool's join must
// publish them.
template <class T, class Value>
void stream_range(T* out, std::size_t lo, std::size_t hi, Value& value) {
  constexpr std::size_t line = 64 / sizeof(T);
  std::size_t i = lo;
  for (; i < hi && reinterpret_cast<std::uintptr_t>(out + i) % 64 != 0; ++i) out[i] = static_cast<T>(value(i));
  for (; i + line <= hi; i += line) {
    alignas(64) T lane[line];
    for (std::size_t k = 0; k < line; ++k) lane[k] = static_cast<T>(value(i + k));
#if defined(__AVX__)
    for (std::size_t k = 0; k < line; k += 32 / sizeof(T))
      _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i + k), _mm256_load_si256(reinterpret_cast<const __m256i*>(lane + k)));
#else
    for (std::size_t k = 0; k < line; k += 16 / sizeof(T))
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + i + k), _mm_load_si128(reinterpret_cast<const __m128i*>(lane + k)));
#endif
  }
  for (; i < hi; ++i) out[i] = static_cast<T>(value(i));
  _mm_sfence();
}
#else
template <class T>
inline constexpr bool streamable_v = false;
template <class T, class Value>
void stream_range(T*, std::size_t, std::size_t, Value&) {}
#endif

// An inclusive scan without a carry (no init) starts from element lo, which
// becomes the carry and its own output. Returns where the scan goes on: lo,
// or lo + 1 where element lo was taken (lo must be in the range).
template <class V, class In, class Out>
std::size_t start_from_first(In first, Out d_first, std::size_t lo, std::optional<V>& carry) {
  if (carry) return lo;
  carry.emplace(at(first, lo));
  at(d_first, lo) = *carry;
  return lo + 1;
}

// Inclusive scan of [lo, hi) with `carry` (if any) combined on the left.
// Reads each input before writing its output, so in-place is fine.
template <class V, class In, class Out, class Op>
void inclusive_scan_range(In first, Out d_first, std::size_t lo, std::size_t hi, Op& op,
                          std::optional<V> carry) {
  if (lo == hi) return;
  std::size_t i = start_from_first(first, d_first, lo, carry);
  V& running = *carry;
  for (; i < hi; ++i) {
    running = op(std::move(running), at(first, i));
    at(d_first, i) = running;
  }
}

// Exclusive scan of [lo, hi) starting from `carry`.
template <class V, class In, class Out, class Op>
void exclusive_scan_range(In first, Out d_first, std::size_t lo, std::size_t hi, Op& op, V carry) {
  for (std::size_t i = lo; i < hi; ++i) {
    V next = op(carry, at(first, i));
    at(d_first, i) = std::move(carry);
    carry = std::move(next);
  }
}

// In-register prefix sums of one vector register: log2(lanes) steps of "add
// the vector shifted up by k lanes", zeros shifted in.
template <class T>
struct vector_scan {
  static constexpr std::size_t lanes = vector_bytes / sizeof(T);
  typedef T vec __attribute__((vector_size(vector_bytes)));
  using mask_elem = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  typedef mask_elem mask __attribute__((vector_size(vector_bytes)));

  template <std::size_t K, std::size_t... I>
  static vec shift_up(vec v, std::index_sequence<I...>) {
    const vec zero = {};
#if defined(__clang__)
    return __builtin_shufflevector(v, zero, (I >= K ? I - K : lanes + I)...);
#else
    return __builtin_shuffle(v, zero, mask{static_cast<mask_elem>(I >= K ? I - K : lanes + I)...});
#endif
  }
  template <std::size_t K>
  static vec shift_up(vec v) {
    return shift_up<K>(v, std::make_index_sequence<lanes>{});
  }
  static vec inclusive(vec v) {
    v += shift_up<1>(v);
    if constexpr (lanes > 2) v += shift_up<2>(v);
    if constexpr (lanes > 4) v += shift_up<4>(v);
    if constexpr (lanes > 8) v += shift_up<8>(v);
    return v;
  }
};

// Sum scan of [lo, hi) with carry on the left, one vector register at a time; returns the running sum after hi-1. Reads each vector's inputs
// before writing its outputs, so in-place is fine.
template <bool Inclusive, class V, class In, class Out>
V vector_scan_range(In first, Out d_first, std::size_t lo, std::size_t hi, V carry) {
  using scan = vector_scan<V>;
  constexpr std::size_t lanes = scan::lanes;
  std::size_t i = lo;
  const std::size_t vectors_end = lo + (hi - lo) / lanes * lanes;
  for (; i < vectors_end; i += lanes) {
    V lane[lanes];
    for (std::size_t k = 0; k < lanes; ++k) lane[k] = static_cast<V>(at(first, i + k));
    typename scan::vec v;
    std::memcpy(&v, lane, sizeof v);
    typename scan::vec sums = scan::inclusive(v);
    typename scan::vec out = Inclusive ? sums : scan::template shift_up<1>(sums);
    out += carry;
    std::memcpy(lane, &out, sizeof out);
    for (std::size_t k = 0; k < lanes; ++k) at(d_first, i + k) = lane[k];
    carry = static_cast<V>(carry + sums[lanes - 1]);
  }
  for (; i < hi; ++i) {
    V next = static_cast<V>(carry + static_cast<V>(at(first, i)));
    at(d_first, i) = Inclusive ? next : carry;
    carry = next;
  }
  return carry;
}

// Scan of [lo, hi) for cheap arithmetic values, carry on the left; returns the
// running value after hi-1 (the carry for what follows). Sums go through
// vector_scan_range; other ops run as independent chains: A sequential scan is
// one dependent chain (an add's latency per element), so the range is cut into
// `segments` pieces whose totals are folded first (vectorized, and from cache
// when the range is a cache-sized tile); then the pieces are scanned together,
// interleaved, as independent chains. Only reassociates op: carries still
// combine on the left, in sequence order. In-place is fine: all totals are read
// before any output is written, and each input before its output.
template <bool Inclusive, class V, class In, class Out, class Op>
V interleaved_scan_range(In first, Out d_first, std::size_t lo, std::size_t hi, Op& op, V carry) {
#if !defined(__clang__)  // Clang 14 compiles vector_scan_range to slower code than the chains below
  if constexpr (vector_sum_v<Op, V>) return vector_scan_range<Inclusive, V>(first, d_first, lo, hi, carry);
#endif
  constexpr std::size_t segments = 8;
  std::size_t len = (hi - lo) / segments;
  // Segments whose starts lie a multiple of 4 KiB apart (as with power-of-two
  // lengths) make each store look like it may feed a load of another segment
  // ("4K aliasing"), which stalls the loop several-fold; shorten them a little.
  auto aliases = [](std::size_t bytes) {
    for (std::size_t k = 1; k < segments; ++k) {
      std::size_t offset = (k * bytes) % 4096;
      if (offset < 128 || offset > 4096 - 128) return true;
    }
    return false;
  };
  while (len > 64 && aliases(len * sizeof(V))) len -= (64 + sizeof(V) - 1) / sizeof(V);
  std::size_t i = lo;
  if (len >= 64) {
    auto elem = [&](std::size_t j) -> decltype(auto) { return at(first, j); };
    V run[segments];
    run[0] = carry;
    for (std::size_t k = 1; k < segments; ++k)
      run[k] = static_cast<V>(op(run[k - 1], fold_nonempty<V>(lo + (k - 1) * len, lo + k * len, op, elem)));
    for (std::size_t j = 0; j < len; ++j)
      for (std::size_t k = 0; k < segments; ++k) {
        const std::size_t at_j = lo + k * len + j;
        V next = static_cast<V>(op(run[k], at(first, at_j)));
        at(d_first, at_j) = Inclusive ? next : run[k];
        run[k] = next;
      }
    carry = run[segments - 1];
    i = lo + segments * len;
  }
  for (; i < hi; ++i) {
    V next = static_cast<V>(op(carry, at(first, i)));
    at(d_first, i) = Inclusive ? next : carry;
    carry = next;
  }
  return carry;
}

}  // namespace dpar::detail
