#pragma once
// Compaction: copy_if, remove_copy_if, remove_if, partition_copy,
// stable_partition, unique, unique_copy (std's arguments after the policy;
// the order of the elements kept is the order of the input). Each counts the
// kept elements of pieces of the range in parallel, scans the counts and then
// writes every piece from its start (detail/derived.hpp), calling the
// predicate twice per element. The in-place forms move elements through a
// buffer. dpar::gpu runs each with CUB (detail/cuda/algorithms.hpp).
//
// Over several participants (dpar::mpi): each rank compacts its own local
// range into its own output and gets the end of what it wrote, so the
// concatenation of the ranks' outputs is the global result (nothing moves
// between ranks; stable_partition partitions each rank's range). unique and
// unique_copy compare a rank's first element with the last element of the
// nearest lower rank holding any, as on the concatenation.

#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <utility>

#include "../concepts.hpp"
#include "../detail/derived.hpp"
#include "../detail/participants.hpp"
#include "../execution.hpp"

namespace dpar {

namespace detail {
// Copies first[i] for each i with keep(i) to d_first, in order; returns the end.
template <class P, class In, class Out, class Keep>
Out copy_kept(const P& policy, In first, In last, Out d_first, const Keep& keep) {
  require_host_policy<P>();
  const std::size_t n = static_cast<std::size_t>(last - first);
  // iterators by value: through references, the compiler reloads them after each write
  const std::size_t total = derived::compact(participants_of<P>::local(policy), n, keep,
                                             [first, d_first](std::size_t i, std::size_t before, bool kept) {
                                               if (kept) at(d_first, before) = at(first, i);
                                             });
  return d_first + static_cast<std::iter_difference_t<Out>>(total);
}

// Moves the elements with keep(i) to the front, in order, the others after
// them if `keep_rest`; returns the end of the kept ones.
template <class P, class It, class Keep>
It compact_in_place(const P& policy, It first, It last, const Keep& keep, bool keep_rest) {
  require_host_policy<P>();
  const std::size_t n = static_cast<std::size_t>(last - first);
  return first + static_cast<std::iter_difference_t<It>>(
                     derived::compact_in_place(participants_of<P>::local(policy), first, n, keep, keep_rest));
}

// Whether element i is not a repeat of the one before it (the first of the
// sequence always counts as new).
template <class P, class It, class Pred>
auto first_of_repeats(const P& policy, It first, It last, Pred& pred) {
  using V = std::iter_value_t<It>;
  return [&pred, first, before = participants_of<P>::template previous_element<V>(policy, first, last)](
             std::size_t i) {
    if (i == 0) return !(before && pred(*before, first[0]));
    return !pred(first[i - 1], first[i]);
  };
}
}  // namespace detail

template <execution_policy P, std::random_access_iterator In, std::random_access_iterator Out, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<In>> && std::indirectly_copyable<In, Out>
Out copy_if(P&& policy, In first, In last, Out d_first, Pred pred) {
  if constexpr (detail::derived::native_v<P>)
    return detail::derived::native<P>::copy_if(policy, first, last, d_first, pred, false, "dpar::copy_if");
  else return detail::copy_kept(policy, first, last, d_first, [&pred, first](std::size_t i) { return bool(pred(first[i])); });
}

template <execution_policy P, std::random_access_iterator In, std::random_access_iterator Out, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<In>> && std::indirectly_copyable<In, Out>
Out remove_copy_if(P&& policy, In first, In last, Out d_first, Pred pred) {
  if constexpr (detail::derived::native_v<P>)
    return detail::derived::native<P>::copy_if(policy, first, last, d_first, pred, true, "dpar::remove_copy_if");
  else return detail::copy_kept(policy, first, last, d_first, [&pred, first](std::size_t i) { return !pred(first[i]); });
}

template <execution_policy P, std::random_access_iterator In, std::random_access_iterator OutTrue,
          std::random_access_iterator OutFalse, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<In>> && std::indirectly_copyable<In, OutTrue> &&
           std::indirectly_copyable<In, OutFalse>
std::pair<OutTrue, OutFalse> partition_copy(P&& policy, In first, In last, OutTrue d_first_true,
                                            OutFalse d_first_false, Pred pred) {
  if constexpr (detail::derived::native_v<P>)
    return detail::derived::native<P>::partition_copy(policy, first, last, d_first_true, d_first_false, pred);
  else {
    detail::require_host_policy<P>();
    const std::size_t n = static_cast<std::size_t>(last - first);
    const std::size_t total = detail::derived::compact(
        detail::participants_of<P>::local(policy), n, [&](std::size_t i) { return bool(pred(first[i])); },
        [&](std::size_t i, std::size_t before, bool kept) {
          if (kept) detail::at(d_first_true, before) = detail::at(first, i);
          else detail::at(d_first_false, i - before) = detail::at(first, i);
        });
    return std::pair{d_first_true + static_cast<std::iter_difference_t<OutTrue>>(total),
                     d_first_false + static_cast<std::iter_difference_t<OutFalse>>(n - total)};
  }
}

template <execution_policy P, std::random_access_iterator It, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<It>> && std::permutable<It>
It remove_if(P&& policy, It first, It last, Pred pred) {
  if constexpr (detail::derived::native_v<P>) return detail::derived::native<P>::remove_if(policy, first, last, pred);
  else return detail::compact_in_place(policy, first, last, [&](std::size_t i) { return !pred(first[i]); }, false);
}

template <execution_policy P, std::random_access_iterator It, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<It>> && std::permutable<It>
It stable_partition(P&& policy, It first, It last, Pred pred) {
  if constexpr (detail::derived::native_v<P>)
    return detail::derived::native<P>::stable_partition(policy, first, last, pred);
  else return detail::compact_in_place(policy, first, last, [&](std::size_t i) { return bool(pred(first[i])); }, true);
}

// Keeps the first element of each run of consecutive equal elements.
template <execution_policy P, std::random_access_iterator It, class Pred = std::ranges::equal_to>
  requires std::indirect_equivalence_relation<Pred&, It> && std::permutable<It>
It unique(P&& policy, It first, It last, Pred pred = {}) {
  if constexpr (detail::derived::native_v<P>) return detail::derived::native<P>::unique(policy, first, last, pred);
  else return detail::compact_in_place(policy, first, last, detail::first_of_repeats(policy, first, last, pred), false);
}

template <execution_policy P, std::random_access_iterator In, std::random_access_iterator Out,
          class Pred = std::ranges::equal_to>
  requires std::indirect_equivalence_relation<Pred&, In> && std::indirectly_copyable<In, Out>
Out unique_copy(P&& policy, In first, In last, Out d_first, Pred pred = {}) {
  if constexpr (detail::derived::native_v<P>)
    return detail::derived::native<P>::unique_copy(policy, first, last, d_first, pred);
  else return detail::copy_kept(policy, first, last, d_first, detail::first_of_repeats(policy, first, last, pred));
}

// ---- range forms -----------------------------------------------------------

template <execution_policy P, sized_random_access_range R, std::random_access_iterator Out, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>> &&
           std::indirectly_copyable<std::ranges::iterator_t<R>, Out>
Out copy_if(P&& policy, R&& r, Out d_first, Pred pred) {
  return dpar::copy_if(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(pred));
}
template <execution_policy P, sized_random_access_range R, std::random_access_iterator Out, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>> &&
           std::indirectly_copyable<std::ranges::iterator_t<R>, Out>
Out remove_copy_if(P&& policy, R&& r, Out d_first, Pred pred) {
  return dpar::remove_copy_if(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(pred));
}
template <execution_policy P, sized_random_access_range R, std::random_access_iterator OutTrue,
          std::random_access_iterator OutFalse, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>> &&
           std::indirectly_copyable<std::ranges::iterator_t<R>, OutTrue> &&
           std::indirectly_copyable<std::ranges::iterator_t<R>, OutFalse>
std::pair<OutTrue, OutFalse> partition_copy(P&& policy, R&& r, OutTrue d_first_true, OutFalse d_first_false,
                                            Pred pred) {
  return dpar::partition_copy(policy, std::ranges::begin(r), detail::range_end(r), d_first_true, d_first_false,
                              std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>> && std::permutable<std::ranges::iterator_t<R>>
std::ranges::iterator_t<R> remove_if(P&& policy, R&& r, Pred pred) {
  return dpar::remove_if(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>> && std::permutable<std::ranges::iterator_t<R>>
std::ranges::iterator_t<R> stable_partition(P&& policy, R&& r, Pred pred) {
  return dpar::stable_partition(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class Pred = std::ranges::equal_to>
  requires std::indirect_equivalence_relation<Pred&, std::ranges::iterator_t<R>> &&
           std::permutable<std::ranges::iterator_t<R>>
std::ranges::iterator_t<R> unique(P&& policy, R&& r, Pred pred = {}) {
  return dpar::unique(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, std::random_access_iterator Out,
          class Pred = std::ranges::equal_to>
  requires std::indirect_equivalence_relation<Pred&, std::ranges::iterator_t<R>> &&
           std::indirectly_copyable<std::ranges::iterator_t<R>, Out>
Out unique_copy(P&& policy, R&& r, Out d_first, Pred pred = {}) {
  return dpar::unique_copy(policy, std::ranges::begin(r), detail::range_end(r), d_first, std::move(pred));
}

}  // namespace dpar
