#pragma once
// The public algorithms. Each one checks its arguments with concepts and
// forwards to the backend that the policy's type names (execution.hpp).
// Results equal the std:: algorithm of the same name, and ops are combined in
// sequence order, so they need to be associative but not commutative. The
// algorithms derived from these are in algorithm/ (included at the end).

#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>

#include "concepts.hpp"
#include "detail/backend_concept.hpp"
#include "detail/seq/backend.hpp"
#include "detail/threads/backend.hpp"
#include "execution.hpp"

namespace dpar {

// ---- transform -------------------------------------------------------------

template <execution_policy P, std::random_access_iterator In, class Out, class F>
  requires std::invocable<F&, std::iter_reference_t<In>> &&
           random_access_output<Out, std::invoke_result_t<F&, std::iter_reference_t<In>>>
Out transform(P&& policy, In first, In last, Out d_first, F f) {
  return detail::backend_of<P>::transform(policy, first, last, d_first, std::move(f));
}

template <execution_policy P, std::random_access_iterator In1, std::random_access_iterator In2, class Out, class F>
  requires std::invocable<F&, std::iter_reference_t<In1>, std::iter_reference_t<In2>> &&
           random_access_output<Out,
                                std::invoke_result_t<F&, std::iter_reference_t<In1>, std::iter_reference_t<In2>>>
Out transform(P&& policy, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
  return detail::backend_of<P>::transform(policy, first1, last1, first2, d_first, std::move(f));
}

template <execution_policy P, sized_random_access_range R, class Out, class F>
  requires std::invocable<F&, std::ranges::range_reference_t<R>> &&
           random_access_output<Out, std::invoke_result_t<F&, std::ranges::range_reference_t<R>>>
Out transform(P&& policy, R&& r, Out d_first, F f) {
  return dpar::transform(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(f));
}

template <execution_policy P, sized_random_access_range R, std::random_access_iterator In2, class Out, class F>
  requires std::invocable<F&, std::ranges::range_reference_t<R>, std::iter_reference_t<In2>> &&
           random_access_output<
               Out, std::invoke_result_t<F&, std::ranges::range_reference_t<R>, std::iter_reference_t<In2>>>
Out transform(P&& policy, R&& r, In2 first2, Out d_first, F f) {
  return dpar::transform(policy, std::ranges::begin(r), detail::range_end(r), first2, d_first, std::move(f));
}

// ---- for_each --------------------------------------------------------------

template <execution_policy P, std::random_access_iterator It, class F>
  requires std::invocable<F&, detail::element_reference_t<P, It>>
void for_each(P&& policy, It first, It last, F f) {
  detail::backend_of<P>::for_each(policy, first, last, std::move(f));
}

template <execution_policy P, sized_random_access_range R, class F>
  requires std::invocable<F&, detail::element_reference_t<P, std::ranges::iterator_t<R>>>
void for_each(P&& policy, R&& r, F f) {
  dpar::for_each(policy, std::ranges::begin(r), detail::range_end(r), std::move(f));
}

// ---- reduce ----------------------------------------------------------------

template <execution_policy P, std::random_access_iterator It, class T, class Op>
  requires reduction_op<Op, T, std::iter_reference_t<It>>
T reduce(P&& policy, It first, It last, T init, Op op) {
  using backend = detail::backend_of<P>;
  if constexpr (detail::has_reduce<backend, std::remove_cvref_t<P>, It, T, Op>)
    return backend::reduce(policy, first, last, std::move(init), std::move(op));
  else  // a reduction is a transform_reduce that transforms nothing
    return backend::transform_reduce(policy, first, last, std::move(init), std::move(op), std::identity{});
}

template <execution_policy P, std::random_access_iterator It, class T>
  requires reduction_op<std::plus<>, T, std::iter_reference_t<It>>
T reduce(P&& policy, It first, It last, T init) {
  return dpar::reduce(policy, first, last, std::move(init), std::plus<>{});
}

// std::reduce without init: from a value-initialized element, with +.
template <execution_policy P, std::random_access_iterator It>
  requires std::default_initializable<std::iter_value_t<It>> &&
           reduction_op<std::plus<>, std::iter_value_t<It>, std::iter_reference_t<It>>
std::iter_value_t<It> reduce(P&& policy, It first, It last) {
  return dpar::reduce(policy, first, last, std::iter_value_t<It>{}, std::plus<>{});
}

template <execution_policy P, sized_random_access_range R, class T, class Op>
  requires reduction_op<Op, T, std::ranges::range_reference_t<R>>
T reduce(P&& policy, R&& r, T init, Op op) {
  return dpar::reduce(policy, std::ranges::begin(r), detail::range_end(r), std::move(init), std::move(op));
}

template <execution_policy P, sized_random_access_range R, class T>
  requires reduction_op<std::plus<>, T, std::ranges::range_reference_t<R>>
T reduce(P&& policy, R&& r, T init) {
  return dpar::reduce(policy, std::ranges::begin(r), detail::range_end(r), std::move(init), std::plus<>{});
}

template <execution_policy P, sized_random_access_range R>
  requires std::default_initializable<std::ranges::range_value_t<R>> &&
           reduction_op<std::plus<>, std::ranges::range_value_t<R>, std::ranges::range_reference_t<R>>
std::ranges::range_value_t<R> reduce(P&& policy, R&& r) {
  return dpar::reduce(policy, std::ranges::begin(r), detail::range_end(r));
}

// ---- transform_reduce ------------------------------------------------------

template <execution_policy P, std::random_access_iterator It, class T, class ReduceOp, class TransformOp>
  requires std::invocable<TransformOp&, std::iter_reference_t<It>> &&
           reduction_op<ReduceOp, T, std::invoke_result_t<TransformOp&, std::iter_reference_t<It>>>
T transform_reduce(P&& policy, It first, It last, T init, ReduceOp reduce, TransformOp transform) {
  return detail::backend_of<P>::transform_reduce(policy, first, last, std::move(init), std::move(reduce),
                                                 std::move(transform));
}

// init reduce transform(first1[0], first2[0]) reduce ... in order.
template <execution_policy P, std::random_access_iterator It1, std::random_access_iterator It2, class T,
          class ReduceOp, class TransformOp>
  requires std::invocable<TransformOp&, std::iter_reference_t<It1>, std::iter_reference_t<It2>> &&
           reduction_op<ReduceOp, T,
                        std::invoke_result_t<TransformOp&, std::iter_reference_t<It1>, std::iter_reference_t<It2>>>
T transform_reduce(P&& policy, It1 first1, It1 last1, It2 first2, T init, ReduceOp reduce, TransformOp transform) {
  return detail::backend_of<P>::transform_reduce(policy, first1, last1, first2, std::move(init), std::move(reduce),
                                                 std::move(transform));
}

// init + the sum of first1[i] * first2[i]: the form above with + and *.
template <execution_policy P, std::random_access_iterator It1, std::random_access_iterator It2, class T>
  requires reduction_op<std::plus<>, T,
                        std::invoke_result_t<std::multiplies<>&, std::iter_reference_t<It1>, std::iter_reference_t<It2>>>
T transform_reduce(P&& policy, It1 first1, It1 last1, It2 first2, T init) {
  return dpar::transform_reduce(policy, first1, last1, first2, std::move(init), std::plus<>{}, std::multiplies<>{});
}

template <execution_policy P, sized_random_access_range R, class T, class ReduceOp, class TransformOp>
  requires std::invocable<TransformOp&, std::ranges::range_reference_t<R>> &&
           reduction_op<ReduceOp, T, std::invoke_result_t<TransformOp&, std::ranges::range_reference_t<R>>>
T transform_reduce(P&& policy, R&& r, T init, ReduceOp reduce, TransformOp transform) {
  return dpar::transform_reduce(policy, std::ranges::begin(r), detail::range_end(r), std::move(init),
                                std::move(reduce), std::move(transform));
}

template <execution_policy P, sized_random_access_range R, std::random_access_iterator It2, class T, class ReduceOp,
          class TransformOp>
  requires std::invocable<TransformOp&, std::ranges::range_reference_t<R>, std::iter_reference_t<It2>> &&
           reduction_op<ReduceOp, T,
                        std::invoke_result_t<TransformOp&, std::ranges::range_reference_t<R>, std::iter_reference_t<It2>>>
T transform_reduce(P&& policy, R&& r, It2 first2, T init, ReduceOp reduce, TransformOp transform) {
  return dpar::transform_reduce(policy, std::ranges::begin(r), detail::range_end(r), first2, std::move(init),
                                std::move(reduce), std::move(transform));
}

template <execution_policy P, sized_random_access_range R, std::random_access_iterator It2, class T>
  requires reduction_op<std::plus<>, T,
                        std::invoke_result_t<std::multiplies<>&, std::ranges::range_reference_t<R>,
                                             std::iter_reference_t<It2>>>
T transform_reduce(P&& policy, R&& r, It2 first2, T init) {
  return dpar::transform_reduce(policy, std::ranges::begin(r), detail::range_end(r), first2, std::move(init));
}

// Thrust's order, (first, last, unary_op, init, binary_op): one clear error
// instead of every overload that did not match.
namespace detail {
template <class T>
inline constexpr bool thrust_order_v = false;  // false, but only once instantiated
}  // namespace detail

template <execution_policy P, std::random_access_iterator It, class UnaryOp, class T, class BinaryOp>
  requires(!std::random_access_iterator<UnaryOp>) && std::invocable<UnaryOp&, std::iter_reference_t<It>> &&
          (!std::invocable<T&, std::iter_reference_t<It>>)
void transform_reduce(P&&, It, It, UnaryOp, T, BinaryOp) {
  static_assert(detail::thrust_order_v<T>,
                "dpar::transform_reduce takes std's argument order (first, last, init, reduce_op, transform_op), "
                "not Thrust's (first, last, transform_op, init, reduce_op)");
}

// ---- inclusive_scan --------------------------------------------------------

template <execution_policy P, std::random_access_iterator In, class Out, class Op>
  requires reduction_op<Op, std::iter_value_t<In>, std::iter_reference_t<In>> &&
           random_access_output<Out, std::iter_value_t<In>&>
Out inclusive_scan(P&& policy, In first, In last, Out d_first, Op op) {
  return detail::backend_of<P>::inclusive_scan(policy, first, last, d_first, std::move(op),
                                               std::optional<std::iter_value_t<In>>());
}

template <execution_policy P, std::random_access_iterator In, class Out>
  requires reduction_op<std::plus<>, std::iter_value_t<In>, std::iter_reference_t<In>> &&
           random_access_output<Out, std::iter_value_t<In>&>
Out inclusive_scan(P&& policy, In first, In last, Out d_first) {
  return dpar::inclusive_scan(policy, first, last, d_first, std::plus<>{});
}

template <execution_policy P, std::random_access_iterator In, class Out, class Op, class T>
  requires reduction_op<Op, T, std::iter_reference_t<In>> && random_access_output<Out, T&>
Out inclusive_scan(P&& policy, In first, In last, Out d_first, Op op, T init) {
  return detail::backend_of<P>::inclusive_scan(policy, first, last, d_first, std::move(op),
                                               std::optional<T>(std::move(init)));
}

template <execution_policy P, sized_random_access_range R, class Out, class Op>
  requires reduction_op<Op, std::ranges::range_value_t<R>, std::ranges::range_reference_t<R>> &&
           random_access_output<Out, std::ranges::range_value_t<R>&>
Out inclusive_scan(P&& policy, R&& r, Out d_first, Op op) {
  return dpar::inclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(op));
}

template <execution_policy P, sized_random_access_range R, class Out>
  requires reduction_op<std::plus<>, std::ranges::range_value_t<R>, std::ranges::range_reference_t<R>> &&
           random_access_output<Out, std::ranges::range_value_t<R>&>
Out inclusive_scan(P&& policy, R&& r, Out d_first) {
  return dpar::inclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::plus<>{});
}

template <execution_policy P, sized_random_access_range R, class Out, class Op, class T>
  requires reduction_op<Op, T, std::ranges::range_reference_t<R>> && random_access_output<Out, T&>
Out inclusive_scan(P&& policy, R&& r, Out d_first, Op op, T init) {
  return dpar::inclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(op),
                              std::move(init));
}

// Thrust's order, (first, last, d_first, init, op): one clear error.
template <execution_policy P, std::random_access_iterator In, class Out, class T, class Op>
  requires(!std::invocable<T&, std::iter_value_t<In>, std::iter_reference_t<In>>) &&
          std::invocable<Op&, T, std::iter_reference_t<In>>
void inclusive_scan(P&&, In, In, Out, T, Op) {
  static_assert(detail::thrust_order_v<T>,
                "dpar::inclusive_scan takes std's argument order (first, last, d_first, op, init), not Thrust's "
                "(first, last, d_first, init, op)");
}

// ---- exclusive_scan --------------------------------------------------------

template <execution_policy P, std::random_access_iterator In, class Out, class T, class Op>
  requires reduction_op<Op, T, std::iter_reference_t<In>> && random_access_output<Out, T&&>
Out exclusive_scan(P&& policy, In first, In last, Out d_first, T init, Op op) {
  return detail::backend_of<P>::exclusive_scan(policy, first, last, d_first, std::move(init), std::move(op));
}

template <execution_policy P, std::random_access_iterator In, class Out, class T>
  requires reduction_op<std::plus<>, T, std::iter_reference_t<In>> && random_access_output<Out, T&&>
Out exclusive_scan(P&& policy, In first, In last, Out d_first, T init) {
  return dpar::exclusive_scan(policy, first, last, d_first, std::move(init), std::plus<>{});
}

template <execution_policy P, sized_random_access_range R, class Out, class T, class Op>
  requires reduction_op<Op, T, std::ranges::range_reference_t<R>> && random_access_output<Out, T&&>
Out exclusive_scan(P&& policy, R&& r, Out d_first, T init, Op op) {
  return dpar::exclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(init),
                              std::move(op));
}

template <execution_policy P, sized_random_access_range R, class Out, class T>
  requires reduction_op<std::plus<>, T, std::ranges::range_reference_t<R>> && random_access_output<Out, T&&>
Out exclusive_scan(P&& policy, R&& r, Out d_first, T init) {
  return dpar::exclusive_scan(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(init),
                              std::plus<>{});
}

}  // namespace dpar

#include "algorithm/by_key.hpp"
#include "algorithm/compaction.hpp"
#include "algorithm/movement.hpp"
#include "algorithm/search.hpp"
#include "sort.hpp"  // dpar::sort, stable_sort, sort_by_key
