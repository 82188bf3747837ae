#pragma once
// Sequential kernels over index ranges [lo, hi). The sequential backend runs
// them over a whole range, the thread backend over one block per thread.

#include <cstddef>
#include <iterator>
#include <optional>
#include <utility>

#include "../functional.hpp"

namespace dpar::detail {

// it[i] with the index converted to the iterator's difference type.
template <std::random_access_iterator It>
constexpr decltype(auto) at(const It& it, std::size_t i) {
  return it[static_cast<std::iter_difference_t<It>>(i)];
}

// op(...op(op(init, elem(lo)), elem(lo+1))..., elem(hi-1)).
// For reorderable ops on arithmetic types it keeps many independent partial
// results, which the compiler turns into vector registers.
template <class T, class Op, class Elem>
T fold(T init, std::size_t lo, std::size_t hi, Op& op, Elem& elem) {
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

// The reduction of a non-empty range, with no init.
template <class T, class Op, class Elem>
T fold_nonempty(std::size_t lo, std::size_t hi, Op& op, Elem& elem) {
  return fold(T(elem(lo)), lo + 1, hi, op, elem);
}

template <class In, class Out, class F>
void transform_range(In first, Out d_first, std::size_t lo, std::size_t hi, F& f) {
  for (std::size_t i = lo; i < hi; ++i) at(d_first, i) = f(at(first, i));
}

template <class In1, class In2, class Out, class F>
void transform_range(In1 first1, In2 first2, Out d_first, std::size_t lo, std::size_t hi, F& f) {
  for (std::size_t i = lo; i < hi; ++i) at(d_first, i) = f(at(first1, i), at(first2, i));
}

// Inclusive scan of [lo, hi) with `carry` (if any) combined on the left.
// Reads each input before writing its output, so in-place is fine.
template <class V, class In, class Out, class Op>
void inclusive_scan_range(In first, Out d_first, std::size_t lo, std::size_t hi, Op& op,
                          std::optional<V> carry) {
  if (lo == hi) return;
  std::size_t i = lo;
  if (!carry) {
    carry.emplace(at(first, i));
    at(d_first, i) = *carry;
    ++i;
  }
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

}  // namespace dpar::detail
