#pragma once
// Counting, testing and searching: count, count_if, any_of, all_of, none_of,
// find, find_if, min_element, max_element, minmax_element, equal, mismatch
// (std's arguments after the policy), and Thrust's vectorized lower_bound,
// upper_bound and binary_search (many needles, one sorted haystack).
//
// Over several participants (dpar::mpi: the sequence is the concatenation of
// the ranks' local ranges): counts and tests are global, the same on every
// rank. An algorithm that returns an iterator returns it on the rank whose
// local range holds the element, and `last` (for mismatch: the pair of local
// ends) on every other rank. The haystack of lower_bound and the others is
// each rank's own (searched whole; the needles are the distributed sequence).
//
// find, find_if, any_of, all_of, none_of, equal and mismatch search pieces of
// the range in parallel and skip the pieces past a match already found.

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <utility>

#include "../concepts.hpp"
#include "../detail/derived.hpp"
#include "../detail/participants.hpp"
#include "../execution.hpp"

namespace dpar {

namespace detail {
template <class It>
std::size_t length(It first, It last) {
  return static_cast<std::size_t>(last - first);
}
}  // namespace detail

// ---- count, count_if, any_of, all_of, none_of ------------------------------

template <execution_policy P, std::random_access_iterator It, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<It>>
std::iter_difference_t<It> count_if(P&& policy, It first, It last, Pred pred) {
  if constexpr (detail::derived::native_v<P>) {
    return static_cast<std::iter_difference_t<It>>(detail::derived::native<P>::count_if(policy, first, last, pred));
  } else {
    detail::require_host_policy<P>();
    using D = std::iter_difference_t<It>;
    auto one_if = [&](std::iter_reference_t<It> x) -> D { return pred(x) ? 1 : 0; };
    return detail::backend_of<P>::transform_reduce(policy, first, last, D(0), std::plus<>{}, one_if);
  }
}

template <execution_policy P, std::random_access_iterator It, class T>
  requires std::equality_comparable_with<std::iter_reference_t<It>, const T&>
std::iter_difference_t<It> count(P&& policy, It first, It last, const T& value) {
  if constexpr (detail::derived::native_v<P>)
    return static_cast<std::iter_difference_t<It>>(
        detail::derived::native<P>::count_value(policy, first, last, value));
  else return dpar::count_if(policy, first, last, [&](std::iter_reference_t<It> x) { return x == value; });
}

template <execution_policy P, std::random_access_iterator It, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<It>>
bool any_of(P&& policy, It first, It last, Pred pred) {
  if constexpr (detail::derived::native_v<P>) {
    return detail::derived::native<P>::find_if(policy, first, last, pred) != detail::length(first, last);
  } else {
    detail::require_host_policy<P>();
    return detail::derived::any_index(policy, detail::length(first, last),
                                      [&](std::size_t i) { return bool(pred(first[i])); });
  }
}

template <execution_policy P, std::random_access_iterator It, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<It>>
bool none_of(P&& policy, It first, It last, Pred pred) {
  return !dpar::any_of(policy, first, last, std::move(pred));
}

template <execution_policy P, std::random_access_iterator It, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<It>>
bool all_of(P&& policy, It first, It last, Pred pred) {
  if constexpr (detail::derived::native_v<P>)
    return detail::derived::native<P>::count_if(policy, first, last, pred) == detail::length(first, last);
  else return !dpar::any_of(policy, first, last, [&](std::iter_reference_t<It> x) { return !pred(x); });
}

// ---- find, find_if ---------------------------------------------------------

template <execution_policy P, std::random_access_iterator It, class Pred>
  requires std::predicate<Pred&, std::iter_reference_t<It>>
It find_if(P&& policy, It first, It last, Pred pred) {
  if constexpr (detail::derived::native_v<P>) {
    return first + static_cast<std::iter_difference_t<It>>(detail::derived::native<P>::find_if(policy, first, last, pred));
  } else {
    detail::require_host_policy<P>();
    auto i = detail::derived::first_index_here(policy, detail::length(first, last),
                                               [&](std::size_t j) { return bool(pred(first[j])); });
    return i ? first + static_cast<std::iter_difference_t<It>>(*i) : last;
  }
}

template <execution_policy P, std::random_access_iterator It, class T>
  requires std::equality_comparable_with<std::iter_reference_t<It>, const T&>
It find(P&& policy, It first, It last, const T& value) {
  if constexpr (detail::derived::native_v<P>)
    return first + static_cast<std::iter_difference_t<It>>(detail::derived::native<P>::find_value(policy, first, last, value));
  else return dpar::find_if(policy, first, last, [&](std::iter_reference_t<It> x) { return x == value; });
}

// ---- min_element, max_element, minmax_element ------------------------------
// The first smallest and the first largest element, as std (minmax_element:
// the first smallest and the last largest). Arithmetic values in contiguous
// memory under < or > take one vectorized pass (detail/derived.hpp); NaNs,
// which < does not order, give an unspecified one of the elements there.

namespace detail {
// On the host: one vectorized pass for arithmetic values under < or >,
// else a fold through the backend per extreme.
template <derived::extreme... Want, class P, class It, class Comp>
std::array<It, sizeof...(Want)> host_extreme_elements(const P& policy, It first, It last, Comp& comp) {
  require_host_policy<P>();
  const std::size_t n = length(first, last);
  constexpr int order = derived::plain_order_v<Comp, std::iter_value_t<It>>;
  std::array<std::optional<std::size_t>, sizeof...(Want)> at;
  if constexpr (order != 0 && std::contiguous_iterator<It>) {
    // under >, the largest is the smallest by <
    at = derived::arithmetic_extremes_here<derived::extreme{Want.largest == (order > 0), Want.last}...>(
        policy, std::to_address(first), n);
  } else {
    std::size_t w = 0;
    for (const derived::extreme want : {Want...}) {
      at[w++] = derived::select_element_here(policy, first, n, [&](const auto& a, const auto& b) {
        // whether b, later than a, replaces it
        return want.largest ? (want.last ? !comp(b, a) : bool(comp(a, b)))
                            : (want.last ? !comp(a, b) : bool(comp(b, a)));
      });
    }
  }
  std::array<It, sizeof...(Want)> result;
  for (std::size_t w = 0; w < at.size(); ++w)
    result[w] = at[w] ? first + static_cast<std::iter_difference_t<It>>(*at[w]) : last;
  return result;
}

// The positions of the extremes Want (by comp) of [first, last): `largest`
// means largest under comp.
template <derived::extreme... Want, class P, class It, class Comp>
std::array<It, sizeof...(Want)> extreme_elements(const P& policy, It first, It last, Comp& comp) {
  const std::size_t n = length(first, last);
  if constexpr (derived::native_v<P>) {
    if (n == 0) return {((void)Want, last)...};
    return {(first + static_cast<std::iter_difference_t<It>>(
                         derived::native<P>::extreme_element(policy, first, last, comp, Want)))...};
  } else {
    return host_extreme_elements<Want...>(policy, first, last, comp);
  }
}

}  // namespace detail

template <execution_policy P, std::random_access_iterator It, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, It>
It min_element(P&& policy, It first, It last, Comp comp = {}) {
  return detail::extreme_elements<detail::derived::extreme{false, false}>(policy, first, last, comp)[0];
}

template <execution_policy P, std::random_access_iterator It, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, It>
It max_element(P&& policy, It first, It last, Comp comp = {}) {
  return detail::extreme_elements<detail::derived::extreme{true, false}>(policy, first, last, comp)[0];
}

template <execution_policy P, std::random_access_iterator It, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, It>
std::pair<It, It> minmax_element(P&& policy, It first, It last, Comp comp = {}) {
  const auto [low, high] = detail::extreme_elements<detail::derived::extreme{false, false},
                                                    detail::derived::extreme{true, true}>(policy, first, last, comp);
  return {low, high};
}

// ---- equal, mismatch -------------------------------------------------------

namespace detail {
// Whether first1[i] and first2[i] are equal for i < n1 and n1 == n2: global.
template <class P, class It1, class It2, class Pred>
bool equal_lengths_and_elements(const P& policy, It1 first1, std::size_t n1, It2 first2, std::size_t n2, Pred& pred) {
  if constexpr (derived::native_v<P>) {
    return n1 == n2 && derived::native<P>::mismatch(policy, first1, first2, n1, pred) == n1;
  } else {
    require_host_policy<P>();
    const std::size_t n = std::min(n1, n2);
    // A participant whose lengths differ has one more mismatch, at index n.
    auto differs = [&](std::size_t i) { return i == n || !pred(first1[i], first2[i]); };
    return !derived::any_index(policy, n + (n1 != n2 ? 1 : 0), differs);
  }
}

template <class P, class It1, class It2, class Pred>
std::pair<It1, It2> mismatch_at(const P& policy, It1 first1, It2 first2, std::size_t n, Pred& pred) {
  std::size_t at = n;
  if constexpr (derived::native_v<P>) {
    at = derived::native<P>::mismatch(policy, first1, first2, n, pred);
  } else {
    require_host_policy<P>();
    auto i = derived::first_index_here(policy, n, [&](std::size_t j) { return !pred(first1[j], first2[j]); });
    if (i) at = *i;
  }
  return {first1 + static_cast<std::iter_difference_t<It1>>(at), first2 + static_cast<std::iter_difference_t<It2>>(at)};
}
}  // namespace detail

template <execution_policy P, std::random_access_iterator It1, std::random_access_iterator It2,
          class Pred = std::ranges::equal_to>
  requires std::indirect_binary_predicate<Pred&, It1, It2>
bool equal(P&& policy, It1 first1, It1 last1, It2 first2, Pred pred = {}) {
  const std::size_t n = detail::length(first1, last1);
  return detail::equal_lengths_and_elements(policy, first1, n, first2, n, pred);
}

template <execution_policy P, std::random_access_iterator It1, std::random_access_iterator It2,
          class Pred = std::ranges::equal_to>
  requires std::indirect_binary_predicate<Pred&, It1, It2>
bool equal(P&& policy, It1 first1, It1 last1, It2 first2, It2 last2, Pred pred = {}) {
  return detail::equal_lengths_and_elements(policy, first1, detail::length(first1, last1), first2,
                                            detail::length(first2, last2), pred);
}

template <execution_policy P, std::random_access_iterator It1, std::random_access_iterator It2,
          class Pred = std::ranges::equal_to>
  requires std::indirect_binary_predicate<Pred&, It1, It2>
std::pair<It1, It2> mismatch(P&& policy, It1 first1, It1 last1, It2 first2, Pred pred = {}) {
  return detail::mismatch_at(policy, first1, first2, detail::length(first1, last1), pred);
}

template <execution_policy P, std::random_access_iterator It1, std::random_access_iterator It2,
          class Pred = std::ranges::equal_to>
  requires std::indirect_binary_predicate<Pred&, It1, It2>
std::pair<It1, It2> mismatch(P&& policy, It1 first1, It1 last1, It2 first2, It2 last2, Pred pred = {}) {
  return detail::mismatch_at(policy, first1, first2,
                             std::min(detail::length(first1, last1), detail::length(first2, last2)), pred);
}

// ---- lower_bound, upper_bound, binary_search (Thrust's vectorized forms) ---
// For each needle, out gets the index in the sorted [first, last) where
// std::lower_bound / std::upper_bound would point, or whether
// std::binary_search finds it.

namespace detail {
// Each needle searched on its own: a transform, or the backend's own search.
template <derived::search_kind Kind, class P, class It, class Needles, class Out, class Comp>
Out search_each(const P& policy, It first, It last, Needles needles_first, Needles needles_last, Out out, Comp& comp) {
  using kind = derived::search_kind;
  if constexpr (derived::native_v<P>) {
    return derived::native<P>::template search<Kind>(policy, first, last, needles_first, needles_last, out, comp);
  } else {
    require_host_policy<P>();
    // A search is bound by its dependent loads, not by memory traffic: its
    // results go through the cache (element-wise), never streamed past it as
    // a large transform's output is (streamed, lower_bound on 2^24 floats ran
    // at 1.11-1.27x the peers' time; bench/RESULTS.md).
    const std::size_t n = length(needles_first, needles_last);
    derived::for_each_index(policy, n, [&](std::size_t i) {
      const auto& needle = needles_first[i];
      if constexpr (Kind == kind::lower_bound) at(out, i) = std::lower_bound(first, last, needle, comp) - first;
      else if constexpr (Kind == kind::upper_bound) at(out, i) = std::upper_bound(first, last, needle, comp) - first;
      else at(out, i) = std::binary_search(first, last, needle, comp);
    });
    return out + static_cast<std::iter_difference_t<Out>>(n);
  }
}
}  // namespace detail

template <execution_policy P, std::random_access_iterator It, std::random_access_iterator Needles,
          std::random_access_iterator Out, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, It, Needles>
Out lower_bound(P&& policy, It first, It last, Needles needles_first, Needles needles_last, Out out, Comp comp = {}) {
  return detail::search_each<detail::derived::search_kind::lower_bound>(policy, first, last, needles_first,
                                                                        needles_last, out, comp);
}

template <execution_policy P, std::random_access_iterator It, std::random_access_iterator Needles,
          std::random_access_iterator Out, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, It, Needles>
Out upper_bound(P&& policy, It first, It last, Needles needles_first, Needles needles_last, Out out, Comp comp = {}) {
  return detail::search_each<detail::derived::search_kind::upper_bound>(policy, first, last, needles_first,
                                                                        needles_last, out, comp);
}

template <execution_policy P, std::random_access_iterator It, std::random_access_iterator Needles,
          std::random_access_iterator Out, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, It, Needles>
Out binary_search(P&& policy, It first, It last, Needles needles_first, Needles needles_last, Out out,
                  Comp comp = {}) {
  return detail::search_each<detail::derived::search_kind::binary_search>(policy, first, last, needles_first,
                                                                          needles_last, out, comp);
}

// ---- range forms -----------------------------------------------------------

template <execution_policy P, sized_random_access_range R, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>>
std::ranges::range_difference_t<R> count_if(P&& policy, R&& r, Pred pred) {
  return dpar::count_if(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class T>
  requires std::equality_comparable_with<std::ranges::range_reference_t<R>, const T&>
std::ranges::range_difference_t<R> count(P&& policy, R&& r, const T& value) {
  return dpar::count(policy, std::ranges::begin(r), detail::range_end(r), value);
}
template <execution_policy P, sized_random_access_range R, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>>
bool any_of(P&& policy, R&& r, Pred pred) {
  return dpar::any_of(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>>
bool all_of(P&& policy, R&& r, Pred pred) {
  return dpar::all_of(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>>
bool none_of(P&& policy, R&& r, Pred pred) {
  return dpar::none_of(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class Pred>
  requires std::predicate<Pred&, std::ranges::range_reference_t<R>>
std::ranges::iterator_t<R> find_if(P&& policy, R&& r, Pred pred) {
  return dpar::find_if(policy, std::ranges::begin(r), detail::range_end(r), std::move(pred));
}
template <execution_policy P, sized_random_access_range R, class T>
  requires std::equality_comparable_with<std::ranges::range_reference_t<R>, const T&>
std::ranges::iterator_t<R> find(P&& policy, R&& r, const T& value) {
  return dpar::find(policy, std::ranges::begin(r), detail::range_end(r), value);
}
template <execution_policy P, sized_random_access_range R, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, std::ranges::iterator_t<R>>
std::ranges::iterator_t<R> min_element(P&& policy, R&& r, Comp comp = {}) {
  return dpar::min_element(policy, std::ranges::begin(r), detail::range_end(r), std::move(comp));
}
template <execution_policy P, sized_random_access_range R, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, std::ranges::iterator_t<R>>
std::ranges::iterator_t<R> max_element(P&& policy, R&& r, Comp comp = {}) {
  return dpar::max_element(policy, std::ranges::begin(r), detail::range_end(r), std::move(comp));
}
template <execution_policy P, sized_random_access_range R, class Comp = std::ranges::less>
  requires std::indirect_strict_weak_order<Comp&, std::ranges::iterator_t<R>>
std::pair<std::ranges::iterator_t<R>, std::ranges::iterator_t<R>> minmax_element(P&& policy, R&& r, Comp comp = {}) {
  return dpar::minmax_element(policy, std::ranges::begin(r), detail::range_end(r), std::move(comp));
}
template <execution_policy P, sized_random_access_range R1, sized_random_access_range R2,
          class Pred = std::ranges::equal_to>
  requires std::indirect_binary_predicate<Pred&, std::ranges::iterator_t<R1>, std::ranges::iterator_t<R2>>
bool equal(P&& policy, R1&& r1, R2&& r2, Pred pred = {}) {
  return dpar::equal(policy, std::ranges::begin(r1), detail::range_end(r1), std::ranges::begin(r2),
                     detail::range_end(r2), std::move(pred));
}
template <execution_policy P, sized_random_access_range R1, sized_random_access_range R2,
          class Pred = std::ranges::equal_to>
  requires std::indirect_binary_predicate<Pred&, std::ranges::iterator_t<R1>, std::ranges::iterator_t<R2>>
std::pair<std::ranges::iterator_t<R1>, std::ranges::iterator_t<R2>> mismatch(P&& policy, R1&& r1, R2&& r2,
                                                                             Pred pred = {}) {
  return dpar::mismatch(policy, std::ranges::begin(r1), detail::range_end(r1), std::ranges::begin(r2),
                        detail::range_end(r2), std::move(pred));
}

}  // namespace dpar
