#pragma once
// Concepts on the public signatures, so that misuse reads as a sentence in the
// compiler's error ("the constraint dpar::reduction_op<Op, T, U> was not satisfied").

#include <concepts>
#include <functional>
#include <iterator>
#include <ranges>
#include <utility>

namespace dpar {

// An op that folds values of type U into an accumulator of type T: it takes
// (T, U) and (T, T) and gives something convertible to T, and T can be made
// from a U (a block's reduction starts from its first element).
template <class Op, class T, class U>
concept reduction_op = std::invocable<Op&, T, U> && std::invocable<Op&, T, T> &&
                       std::convertible_to<std::invoke_result_t<Op&, T, U>, T> &&
                       std::convertible_to<std::invoke_result_t<Op&, T, T>, T> && std::constructible_from<T, U>;

// A random-access iterator that values of type V can be written through. The
// second form admits proxy references whose assignment is not const-qualified,
// such as thrust::device_vector's (std::indirectly_writable asks for that).
template <class Out, class V>
concept random_access_output = std::random_access_iterator<Out> &&
                               (std::indirectly_writable<Out, V> || requires(Out out, V&& v) {
                                 *out = std::forward<V>(v);
                               });

// What the range overloads take: random access and a known size.
template <class R>
concept sized_random_access_range = std::ranges::random_access_range<R> && std::ranges::sized_range<R>;

namespace detail {
// A range's end as an iterator of its begin's type (views may end in a sentinel).
template <class R>
auto range_end(R& r) {
  return std::ranges::begin(r) + std::ranges::distance(r);
}
}  // namespace detail

}  // namespace dpar
