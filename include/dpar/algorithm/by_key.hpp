#pragma once
// Algorithms by key, in Thrust's forms: runs of consecutive keys that are
// equal under key_eq (default ==) are segments; op (default +) combines the
// values of a segment in order, so it need not be commutative.
//   reduce_by_key(policy, keys_first, keys_last, values_first, keys_out, values_out[, key_eq[, op]])
//     writes each segment's first key and its reduction; returns both ends.
//   inclusive_scan_by_key(policy, keys_first, keys_last, values_first, out[, key_eq[, op]])
//   exclusive_scan_by_key(policy, keys_first, keys_last, values_first, out, init[, key_eq[, op]])
//     scan each segment, the exclusive one starting every segment from init.
// Each is one scan of (value, segment starts here) pairs under a segmented op
// (detail/derived.hpp), on any backend's scan.
//
// Over several participants (dpar::mpi): the scans are global, segments may
// cross ranks (a rank's first key is compared with the last key of the nearest
// lower rank holding any). reduce_by_key is not available there.

#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <type_traits>
#include <utility>

#include "../concepts.hpp"
#include "../detail/derived.hpp"
#include "../detail/participants.hpp"
#include "../execution.hpp"

namespace dpar {

namespace detail {
template <class P, class KeyIt, class KeyEqual>
auto run_heads_of(const P& policy, KeyIt keys_first, KeyIt keys_last, const KeyEqual& key_eq) {
  using K = std::iter_value_t<KeyIt>;
  return derived::run_heads<KeyIt, KeyEqual, K>{
      keys_first, &key_eq, participants_of<P>::template previous_element<K>(policy, keys_first, keys_last)};
}
}  // namespace detail

template <execution_policy P, std::random_access_iterator KeyIt, std::random_access_iterator ValueIt, class Out,
          class KeyEqual = std::equal_to<>, class Op = std::plus<>>
  requires std::indirect_equivalence_relation<KeyEqual&, KeyIt> &&
           reduction_op<Op, std::iter_value_t<ValueIt>, std::iter_reference_t<ValueIt>> &&
           random_access_output<Out, std::iter_value_t<ValueIt>&>
Out inclusive_scan_by_key(P&& policy, KeyIt keys_first, KeyIt keys_last, ValueIt values_first, Out out,
                          KeyEqual key_eq = {}, Op op = {}) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::template scan_by_key<true>(policy, keys_first, keys_last, values_first, out,
                                                                  std::iter_value_t<ValueIt>{}, key_eq, op);
  } else {
    detail::require_host_policy<P>();
    using V = std::iter_value_t<ValueIt>;
    using headed = detail::derived::headed<V>;
    const auto head = detail::run_heads_of(policy, keys_first, keys_last, key_eq);
    auto element = [&](std::size_t i) { return headed{head(i), V(values_first[i])}; };
    auto write = [&](std::size_t i, const headed& s) { detail::at(out, i) = s.value; };
    detail::derived::index_iterator in(element);
    const auto n = keys_last - keys_first;
    detail::backend_of<P>::inclusive_scan(policy, in, in + n, detail::derived::sink_iterator(write),
                                          detail::derived::segmented<V, Op>{std::move(op)}, std::optional<headed>());
    return out + n;
  }
}

template <execution_policy P, std::random_access_iterator KeyIt, std::random_access_iterator ValueIt, class Out,
          class T, class KeyEqual = std::equal_to<>, class Op = std::plus<>>
  requires std::indirect_equivalence_relation<KeyEqual&, KeyIt> &&
           reduction_op<Op, T, std::iter_reference_t<ValueIt>> && random_access_output<Out, T&>
Out exclusive_scan_by_key(P&& policy, KeyIt keys_first, KeyIt keys_last, ValueIt values_first, Out out, T init,
                          KeyEqual key_eq = {}, Op op = {}) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::template scan_by_key<false>(policy, keys_first, keys_last, values_first, out, init,
                                                                   key_eq, op);
  } else {
    detail::require_host_policy<P>();
    using headed = detail::derived::headed<T>;
    const auto head = detail::run_heads_of(policy, keys_first, keys_last, key_eq);
    // A segment's first value enters as init op value, so that the pair scan
    // carries init at the start of every segment.
    auto element = [&](std::size_t i) {
      const bool h = head(i);
      return headed{h, h ? T(op(init, values_first[i])) : T(values_first[i])};
    };
    auto write = [&](std::size_t i, const headed& s) { detail::at(out, i) = head(i) ? init : s.value; };
    detail::derived::index_iterator in(element);
    const auto n = keys_last - keys_first;
    detail::backend_of<P>::exclusive_scan(policy, in, in + n, detail::derived::sink_iterator(write), headed{true, init},
                                          detail::derived::segmented<T, Op>{op});
    return out + n;
  }
}

template <execution_policy P, std::random_access_iterator KeyIt, std::random_access_iterator ValueIt,
          std::random_access_iterator KeyOut, std::random_access_iterator ValueOut, class KeyEqual = std::equal_to<>,
          class Op = std::plus<>>
  requires std::indirect_equivalence_relation<KeyEqual&, KeyIt> &&
           reduction_op<Op, std::iter_value_t<ValueIt>, std::iter_reference_t<ValueIt>> &&
           std::indirectly_copyable<KeyIt, KeyOut> && std::indirectly_writable<ValueOut, std::iter_value_t<ValueIt>>
std::pair<KeyOut, ValueOut> reduce_by_key(P&& policy, KeyIt keys_first, KeyIt keys_last, ValueIt values_first,
                                          KeyOut keys_out, ValueOut values_out, KeyEqual key_eq = {}, Op op = {}) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::reduce_by_key(policy, keys_first, keys_last, values_first, keys_out, values_out,
                                                     key_eq, op);
  } else {
    detail::require_host_policy<P>();
    static_assert(!detail::participants_of<P>::distributed,
                  "dpar::reduce_by_key: not available over MPI ranks (a segment may span ranks)");
    using V = std::iter_value_t<ValueIt>;
    // Each value with the number of segments started up to it: the count
    // tells the segment's output slot, the value its reduction so far.
    struct counted {
      std::size_t segments;
      V value;
    };
    auto combine = [&](const counted& a, const counted& b) {
      return b.segments ? counted{a.segments + b.segments, b.value}
                        : counted{a.segments, static_cast<V>(op(a.value, b.value))};
    };
    const detail::derived::run_heads<KeyIt, KeyEqual, std::iter_value_t<KeyIt>> head{keys_first, &key_eq, {}};
    const auto n = static_cast<std::size_t>(keys_last - keys_first);
    auto element = [&](std::size_t i) { return counted{head(i) ? std::size_t{1} : std::size_t{0}, V(values_first[i])}; };
    std::size_t segments = 0;  // written by the call for the last element only
    auto write = [&](std::size_t i, const counted& c) {
      const std::size_t slot = c.segments - 1;
      if (head(i)) detail::at(keys_out, slot) = detail::at(keys_first, i);
      const bool last = i + 1 == n;
      if (last || head(i + 1)) detail::at(values_out, slot) = c.value;
      if (last) segments = c.segments;
    };
    detail::derived::index_iterator in(element);
    detail::backend_of<P>::inclusive_scan(policy, in, in + static_cast<std::ptrdiff_t>(n),
                                          detail::derived::sink_iterator(write), combine, std::optional<counted>());
    return {keys_out + static_cast<std::iter_difference_t<KeyOut>>(segments),
            values_out + static_cast<std::iter_difference_t<ValueOut>>(segments)};
  }
}

}  // namespace dpar
