#pragma once
// Data movement and the std parity: fill, copy, for_each_n, iota,
// adjacent_difference, transform_inclusive_scan, transform_exclusive_scan
// (std's arguments after the policy), and Thrust's gather and scatter.
//
// Over several participants (dpar::mpi): fill, copy, for_each_n, gather and
// scatter are element-wise, each rank on its own ranges (gather's input and
// scatter's output are indexed in the rank's own memory by the map's
// values). iota gives each rank the values of its positions in the
// concatenation; adjacent_difference takes the element before a rank's first
// from the nearest lower rank holding any; the transform scans are global,
// as the scans.
//
// dpar::gpu runs each with CUB (detail/cuda/algorithms.hpp); user functions
// must be __host__ __device__ there.

#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>

#include "../concepts.hpp"
#include "../detail/derived.hpp"
#include "../detail/kernels.hpp"
#include "../detail/participants.hpp"
#include "../execution.hpp"

namespace dpar {

template <execution_policy P, std::random_access_iterator It, class T>
  requires std::indirectly_writable<It, const T&>
void fill(P&& policy, It first, It last, const T& value) {
  if constexpr (detail::derived::native_v<P>) {
    detail::derived::native<P>::fill(policy, first, last, value);
  } else {
    detail::require_host_policy<P>();
    detail::backend_of<P>::for_each(policy, first, last, [&](std::iter_reference_t<It> x) { x = value; });
  }
}

template <execution_policy P, std::random_access_iterator In, std::random_access_iterator Out>
  requires std::indirectly_copyable<In, Out>
Out copy(P&& policy, In first, In last, Out d_first) {
  // a transform: every backend runs it (multi_gpu on host iterators through the devices)
  return detail::backend_of<P>::transform(policy, first, last, d_first, std::identity{});
}

template <execution_policy P, std::random_access_iterator It, std::integral Size, class F>
  requires std::invocable<F&, std::iter_reference_t<It>>
It for_each_n(P&& policy, It first, Size n, F f) {
  // for_each on the first n: every backend runs it (multi_gpu on host
  // iterators copies them to the devices and back)
  const auto count = n > 0 ? static_cast<std::iter_difference_t<It>>(n) : std::iter_difference_t<It>(0);
  detail::backend_of<P>::for_each(policy, first, first + count, std::move(f));
  return first + count;
}

// first[i] = value + i, where i is the element's position in the sequence.
template <execution_policy P, std::random_access_iterator It, class T>
  requires requires(const T& value, std::iter_difference_t<It> i) {
    { value + static_cast<T>(i) } -> std::convertible_to<T>;
  } && std::indirectly_writable<It, T>
void iota(P&& policy, It first, It last, T value) {
  if constexpr (detail::derived::native_v<P>) {
    detail::derived::native<P>::iota(policy, first, last, value);
  } else {
    detail::require_host_policy<P>();
    using parts = detail::participants_of<P>;
    const std::size_t n = static_cast<std::size_t>(last - first);
    const std::size_t offset = parts::offset(policy, n);
    detail::derived::tabulate(
        parts::local(policy), n, [&](std::size_t i) { return static_cast<T>(value + static_cast<T>(offset + i)); },
        first);
  }
}

// d_first[0] = first[0], d_first[i] = op(first[i], first[i - 1]); the ranges
// must not overlap (as std's parallel form).
template <execution_policy P, std::random_access_iterator In, std::random_access_iterator Out,
          class Op = std::minus<>>
  requires std::invocable<Op&, std::iter_reference_t<In>, std::iter_reference_t<In>> &&
           std::indirectly_writable<Out, std::iter_value_t<In>> &&
           std::convertible_to<std::invoke_result_t<Op&, std::iter_reference_t<In>, std::iter_reference_t<In>>,
                               std::iter_value_t<In>>
Out adjacent_difference(P&& policy, In first, In last, Out d_first, Op op = {}) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::adjacent_difference(policy, first, last, d_first, op);
  } else {
    detail::require_host_policy<P>();
    using V = std::iter_value_t<In>;
    using parts = detail::participants_of<P>;
    const std::optional<V> before = parts::template previous_element<V>(policy, first, last);
    return detail::derived::tabulate(
        parts::local(policy), static_cast<std::size_t>(last - first),
        [&](std::size_t i) -> V {
          if (i > 0) return op(first[i], first[i - 1]);
          return before ? V(op(first[0], *before)) : V(first[0]);
        },
        d_first);
  }
}

// Scans of unary(first[i]): without init from the first element.
template <execution_policy P, std::random_access_iterator In, class Out, class BinaryOp, class UnaryOp>
  requires std::invocable<UnaryOp&, std::iter_reference_t<In>> &&
           reduction_op<BinaryOp, std::remove_cvref_t<std::invoke_result_t<UnaryOp&, std::iter_reference_t<In>>>,
                        std::invoke_result_t<UnaryOp&, std::iter_reference_t<In>>> &&
           random_access_output<Out, std::remove_cvref_t<std::invoke_result_t<UnaryOp&, std::iter_reference_t<In>>>&>
Out transform_inclusive_scan(P&& policy, In first, In last, Out d_first, BinaryOp binary_op, UnaryOp unary_op) {
  using V = std::remove_cvref_t<std::invoke_result_t<UnaryOp&, std::iter_reference_t<In>>>;
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::template transform_inclusive_scan<V>(policy, first, last, d_first, binary_op,
                                                                           unary_op, std::optional<V>());
  } else {
    detail::require_host_policy<P>();
    auto element = [&](std::size_t i) -> V { return unary_op(first[i]); };
    detail::derived::index_iterator in(element);
    return detail::backend_of<P>::inclusive_scan(policy, in, in + (last - first), d_first, std::move(binary_op),
                                                 std::optional<V>());
  }
}

template <execution_policy P, std::random_access_iterator In, class Out, class BinaryOp, class UnaryOp, class T>
  requires std::invocable<UnaryOp&, std::iter_reference_t<In>> &&
           reduction_op<BinaryOp, T, std::invoke_result_t<UnaryOp&, std::iter_reference_t<In>>> &&
           random_access_output<Out, T&>
Out transform_inclusive_scan(P&& policy, In first, In last, Out d_first, BinaryOp binary_op, UnaryOp unary_op,
                             T init) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::template transform_inclusive_scan<T>(policy, first, last, d_first, binary_op,
                                                                           unary_op, std::optional<T>(std::move(init)));
  } else {
    detail::require_host_policy<P>();
    auto element = [&](std::size_t i) -> decltype(auto) { return unary_op(first[i]); };
    detail::derived::index_iterator in(element);
    return detail::backend_of<P>::inclusive_scan(policy, in, in + (last - first), d_first, std::move(binary_op),
                                                 std::optional<T>(std::move(init)));
  }
}

template <execution_policy P, std::random_access_iterator In, class Out, class T, class BinaryOp, class UnaryOp>
  requires std::invocable<UnaryOp&, std::iter_reference_t<In>> &&
           reduction_op<BinaryOp, T, std::invoke_result_t<UnaryOp&, std::iter_reference_t<In>>> &&
           random_access_output<Out, T&&>
Out transform_exclusive_scan(P&& policy, In first, In last, Out d_first, T init, BinaryOp binary_op,
                             UnaryOp unary_op) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::transform_exclusive_scan(policy, first, last, d_first, std::move(init),
                                                                binary_op, unary_op);
  } else {
    detail::require_host_policy<P>();
    auto element = [&](std::size_t i) -> decltype(auto) { return unary_op(first[i]); };
    detail::derived::index_iterator in(element);
    return detail::backend_of<P>::exclusive_scan(policy, in, in + (last - first), d_first, std::move(init),
                                                 std::move(binary_op));
  }
}

// ---- gather, scatter (Thrust's forms) --------------------------------------

// out[i] = input_first[map_first[i]]; returns the end of out.
template <execution_policy P, std::random_access_iterator Map, std::random_access_iterator In,
          std::random_access_iterator Out>
  requires std::integral<std::iter_value_t<Map>> && std::indirectly_copyable<In, Out>
Out gather(P&& policy, Map map_first, Map map_last, In input_first, Out out) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::gather(policy, map_first, map_last, input_first, out);
  } else {
    detail::require_host_policy<P>();
    return detail::backend_of<P>::transform(policy, map_first, map_last, out, [&](std::iter_reference_t<Map> m) {
      return std::iter_value_t<In>(input_first[static_cast<std::iter_difference_t<In>>(m)]);
    });
  }
}

// out[map_first[i]] = first[i]; the map's values must differ.
template <execution_policy P, std::random_access_iterator In, std::random_access_iterator Map,
          std::random_access_iterator Out>
  requires std::integral<std::iter_value_t<Map>> && std::indirectly_copyable<In, Out>
void scatter(P&& policy, In first, In last, Map map_first, Out out) {
  if constexpr (detail::derived::native_v<P>) {
    detail::derived::native<P>::scatter(policy, first, last, map_first, out);
  } else {
    detail::require_host_policy<P>();
    detail::derived::for_each_index(detail::participants_of<P>::local(policy), static_cast<std::size_t>(last - first),
                                    [&](std::size_t i) {
                                      out[static_cast<std::iter_difference_t<Out>>(detail::at(map_first, i))] =
                                          detail::at(first, i);
                                    });
  }
}

// ---- range forms -----------------------------------------------------------

template <execution_policy P, sized_random_access_range R, class T>
  requires std::indirectly_writable<std::ranges::iterator_t<R>, const T&>
void fill(P&& policy, R&& r, const T& value) {
  dpar::fill(policy, std::ranges::begin(r), detail::range_end(r), value);
}
template <execution_policy P, sized_random_access_range R, std::random_access_iterator Out>
  requires std::indirectly_copyable<std::ranges::iterator_t<R>, Out>
Out copy(P&& policy, R&& r, Out d_first) {
  return dpar::copy(policy, std::ranges::begin(r), detail::range_end(r), d_first);
}
template <execution_policy P, sized_random_access_range R, class T>
  requires std::indirectly_writable<std::ranges::iterator_t<R>, T>
void iota(P&& policy, R&& r, T value) {
  dpar::iota(policy, std::ranges::begin(r), detail::range_end(r), std::move(value));
}
template <execution_policy P, sized_random_access_range R, std::random_access_iterator Out, class Op = std::minus<>>
  requires std::invocable<Op&, std::ranges::range_reference_t<R>, std::ranges::range_reference_t<R>>
Out adjacent_difference(P&& policy, R&& r, Out d_first, Op op = {}) {
  return dpar::adjacent_difference(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(op));
}
template <execution_policy P, sized_random_access_range R, class Out, class BinaryOp, class UnaryOp>
  requires std::invocable<UnaryOp&, std::ranges::range_reference_t<R>>
Out transform_inclusive_scan(P&& policy, R&& r, Out d_first, BinaryOp binary_op, UnaryOp unary_op) {
  return dpar::transform_inclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first,
                                        std::move(binary_op), std::move(unary_op));
}
template <execution_policy P, sized_random_access_range R, class Out, class BinaryOp, class UnaryOp, class T>
  requires std::invocable<UnaryOp&, std::ranges::range_reference_t<R>>
Out transform_inclusive_scan(P&& policy, R&& r, Out d_first, BinaryOp binary_op, UnaryOp unary_op, T init) {
  return dpar::transform_inclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first,
                                        std::move(binary_op), std::move(unary_op), std::move(init));
}
template <execution_policy P, sized_random_access_range R, class Out, class T, class BinaryOp, class UnaryOp>
  requires std::invocable<UnaryOp&, std::ranges::range_reference_t<R>>
Out transform_exclusive_scan(P&& policy, R&& r, Out d_first, T init, BinaryOp binary_op, UnaryOp unary_op) {
  return dpar::transform_exclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first,
                                        std::move(init), std::move(binary_op), std::move(unary_op));
}

}  // namespace dpar
