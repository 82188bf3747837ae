#pragma once
// Sequential backend: every algorithm is one kernel over the whole range.

#include <iterator>
#include <optional>

#include "../../execution.hpp"
#include "../backend_concept.hpp"
#include "../kernels.hpp"

namespace dpar::detail::seq {

struct backend {
  template <class In, class Out, class F>
  static Out transform(const sequenced_policy&, In first, In last, Out d_first, F f) {
    auto n = static_cast<std::size_t>(last - first);
    transform_range(first, d_first, 0, n, f);
    return d_first + (last - first);
  }

  template <class In1, class In2, class Out, class F>
  static Out transform(const sequenced_policy&, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
    auto n = static_cast<std::size_t>(last1 - first1);
    transform_range(first1, first2, d_first, 0, n, f);
    return d_first + (last1 - first1);
  }

  template <class It, class F>
  static void for_each(const sequenced_policy&, It first, It last, F f) {
    for (; first != last; ++first) f(*first);
  }

  template <class It, class T, class R, class U>
  static T transform_reduce(const sequenced_policy&, It first, It last, T init, R reduce, U transform) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first, i)); };
    return fold(std::move(init), 0, static_cast<std::size_t>(last - first), reduce, elem);
  }

  template <class It1, class It2, class T, class R, class U>
  static T transform_reduce(const sequenced_policy&, It1 first1, It1 last1, It2 first2, T init, R reduce,
                            U transform) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first1, i), at(first2, i)); };
    return fold(std::move(init), 0, static_cast<std::size_t>(last1 - first1), reduce, elem);
  }

  template <class It, class T, class Op>
  static T reduce(const sequenced_policy&, It first, It last, T init, Op op) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };
    return fold(std::move(init), 0, static_cast<std::size_t>(last - first), op, elem);
  }

  // Scans with an init carry it on the left of the first element.
  template <class V, class In, class Out, class Op>
  static Out inclusive_scan(const sequenced_policy&, In first, In last, Out d_first, Op op, std::optional<V> init) {
    inclusive_scan_range(first, d_first, 0, static_cast<std::size_t>(last - first), op, std::move(init));
    return d_first + (last - first);
  }

  template <class In, class Out, class T, class Op>
  static Out exclusive_scan(const sequenced_policy&, In first, In last, Out d_first, T init, Op op) {
    exclusive_scan_range(first, d_first, 0, static_cast<std::size_t>(last - first), op, std::move(init));
    return d_first + (last - first);
  }
};

static_assert(backend_for<backend, sequenced_policy>);

}  // namespace dpar::detail::seq
