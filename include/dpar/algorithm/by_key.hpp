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
// Over several participants (dpar::mpi): segments may cross ranks (a rank's
// first key is compared with the last key of the nearest lower rank holding
// any). The scans are global. reduce_by_key writes, on each rank, the
// segments that start there, in order, each with its full reduction: a
// segment that goes on into higher ranks takes their values up to its end
// (those ranks hold the segment's continuation and write nothing for it), so
// the ranks' outputs in rank order are the one-process result. Two
// collectives: the lower rank's last key (MPI_Exscan), and the ranks' values
// before their first head (MPI_Allgather); a third, the agreement on
// failures, where op may throw. Keys and values must be trivially copyable.

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
    using parts = detail::participants_of<P>;
    using K = std::iter_value_t<KeyIt>;
    using V = std::iter_value_t<ValueIt>;
    static_assert(!parts::distributed || (std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>),
                  "dpar::reduce_by_key over MPI ranks: keys and values must be trivially copyable (a rank's last "
                  "key and partial reductions cross ranks)");
    // Each value with the number of segments started up to it on this
    // participant: the count tells the segment's output slot, the value its
    // reduction so far. Values before the first head (count 0) continue a
    // segment of an earlier participant.
    struct counted {
      std::size_t segments;
      V value;
    };
    auto combine = [&](const counted& a, const counted& b) {
      return b.segments ? counted{a.segments + b.segments, b.value}
                        : counted{a.segments, static_cast<V>(op(a.value, b.value))};
    };
    const auto head = detail::run_heads_of(policy, keys_first, keys_last, key_eq);
    const auto n = static_cast<std::size_t>(keys_last - keys_first);
    auto element = [&](std::size_t i) { return counted{head(i) ? std::size_t{1} : std::size_t{0}, V(values_first[i])}; };
    // Written by one call each: the last element's, and the one before the first head.
    std::size_t segments = 0;
    std::optional<V> last_part, before_head;
    auto write = [&](std::size_t i, const counted& c) {
      const bool last = i + 1 == n, ends = last || head(i + 1);
      if (c.segments == 0) {
        if (ends) before_head.emplace(c.value);
        return;
      }
      const std::size_t slot = c.segments - 1;
      if (head(i)) detail::at(keys_out, slot) = detail::at(keys_first, i);
      if (last) {
        segments = c.segments;
        last_part.emplace(c.value);  // the segment may go on past this participant
      } else if (ends) {
        detail::at(values_out, slot) = c.value;
      }
    };
    // What a participant passes to earlier ones: its values before its first
    // head, and whether it has one; combined in order, they give the rest of
    // a segment that goes on past a participant (up to the next head).
    struct rest {
      bool head;
      std::optional<V> value;
    };
    auto rest_of = [&]() -> std::optional<rest> {
      detail::derived::index_iterator in(element);
      auto&& local = parts::local(policy);
      detail::backend_of<decltype(local)>::inclusive_scan(local, in, in + static_cast<std::ptrdiff_t>(n),
                                                          detail::derived::sink_iterator(write), combine,
                                                          std::optional<counted>());
      if (n == 0) return std::nullopt;
      return rest{segments != 0, std::move(before_head)};
    };
    constexpr bool nothrow =
        std::is_nothrow_invocable_r_v<V, Op&, const V&, V> && std::is_nothrow_copy_constructible_v<V>;
    auto up_to_head = [&](const rest& a, const rest& b) noexcept(nothrow) {
      return a.head ? a : rest{b.head, detail::join(a.value, b.value, op)};
    };
    // The last segment's value, with the rest from later participants; the count of segments here.
    auto finish = [&](std::optional<rest> later) {
      if (segments == 0) return segments;
      detail::at(values_out, segments - 1) =
          later && later->value ? V(op(std::move(*last_part), std::move(*later->value))) : std::move(*last_part);
      return segments;
    };
    const std::size_t count = parts::template from_later<rest>(policy, rest_of, up_to_head, finish);
    return {keys_out + static_cast<std::iter_difference_t<KeyOut>>(count),
            values_out + static_cast<std::iter_difference_t<ValueOut>>(count)};
  }
}

}  // namespace dpar
