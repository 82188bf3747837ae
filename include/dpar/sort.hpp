#pragma once
// Sorting, with the policy first as everywhere in dpar:
//
//   dpar::sort(policy, first, last[, comp])          std::sort's result (any order of equal elements)
//   dpar::stable_sort(policy, first, last[, comp])   std::stable_sort's result
//   dpar::sort_by_key(policy, keys_first, keys_last, values_first[, comp])
//       sorts the keys stably and moves values_first[i] along with key i (Thrust's form)
//
// and range forms (dpar::sort(policy, v), dpar::sort_by_key(policy, keys, values)).
// comp defaults to std::less<> and must be a strict weak order.
//
// CPU backends (detail/threads/sort.hpp): arithmetic keys with std::less or
// std::greater in contiguous memory are radix-sorted (stable); anything else
// is merge-sorted over the pool. Floating-point keys: -0.0 and +0.0 are equal
// (stable_sort keeps their input order); NaN has no place under <, and dpar
// puts NaNs with the sign bit set first and the others last.
// MPI (dpar/mpi.hpp): the ranks' local ranges form one sequence, sorted by
// sample sort; each rank keeps its local size. GPU (dpar/cuda.hpp): CUB's
// radix and merge sorts. dpar::deterministic(policy) sorts as stable_sort on
// its inner policy: the same order for any thread count.

#include <functional>
#include <iterator>
#include <ranges>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "detail/backend_concept.hpp"
#include "concepts.hpp"
#include "deterministic.hpp"
#include "detail/seq/sort.hpp"
#include "detail/sort_backend.hpp"
#include "detail/threads/sort.hpp"
#include "execution.hpp"

namespace dpar {

// A comparator for the elements that policy P passes it from iterators It.
template <class Comp, class P, class It>
concept sort_comparator =
    std::strict_weak_order<Comp&, detail::element_reference_t<P, It>, detail::element_reference_t<P, It>>;

template <execution_policy P, std::random_access_iterator It, class Comp = std::less<>>
  requires sort_comparator<Comp, P, It>
void stable_sort(P&& policy, It first, It last, Comp comp = {}) {
  if constexpr (detail::deterministic::is_deterministic_v<std::remove_cvref_t<P>>)
    dpar::stable_sort(policy.inner(), first, last, std::move(comp));
  else
    detail::sorting<detail::backend_of<P>>::template sort<true>(policy, first, last, std::move(comp));
}

template <execution_policy P, std::random_access_iterator It, class Comp = std::less<>>
  requires sort_comparator<Comp, P, It>
void sort(P&& policy, It first, It last, Comp comp = {}) {
  if constexpr (detail::deterministic::is_deterministic_v<std::remove_cvref_t<P>>)
    dpar::stable_sort(policy.inner(), first, last, std::move(comp));  // equal elements in one order for any split
  else
    detail::sorting<detail::backend_of<P>>::template sort<false>(policy, first, last, std::move(comp));
}

template <execution_policy P, std::random_access_iterator Keys, std::random_access_iterator Values,
          class Comp = std::less<>>
  requires sort_comparator<Comp, P, Keys>
void sort_by_key(P&& policy, Keys keys_first, Keys keys_last, Values values_first, Comp comp = {}) {
  if constexpr (detail::deterministic::is_deterministic_v<std::remove_cvref_t<P>>)
    dpar::sort_by_key(policy.inner(), keys_first, keys_last, values_first, std::move(comp));
  else
    detail::sorting<detail::backend_of<P>>::sort_by_key(policy, keys_first, keys_last, values_first,
                                                        std::move(comp));
}

// ---- range forms -------------------------------------------------------------

template <execution_policy P, sized_random_access_range R, class Comp = std::less<>>
  requires sort_comparator<Comp, P, std::ranges::iterator_t<R>>
void sort(P&& policy, R&& r, Comp comp = {}) {
  dpar::sort(policy, std::ranges::begin(r), detail::range_end(r), std::move(comp));
}

template <execution_policy P, sized_random_access_range R, class Comp = std::less<>>
  requires sort_comparator<Comp, P, std::ranges::iterator_t<R>>
void stable_sort(P&& policy, R&& r, Comp comp = {}) {
  dpar::stable_sort(policy, std::ranges::begin(r), detail::range_end(r), std::move(comp));
}

template <execution_policy P, sized_random_access_range R, std::random_access_iterator Values,
          class Comp = std::less<>>
  requires sort_comparator<Comp, P, std::ranges::iterator_t<R>>
void sort_by_key(P&& policy, R&& keys, Values values_first, Comp comp = {}) {
  dpar::sort_by_key(policy, std::ranges::begin(keys), detail::range_end(keys), values_first, std::move(comp));
}

// Values as a range: it must hold at least as many elements as keys.
template <execution_policy P, sized_random_access_range R, sized_random_access_range V, class Comp = std::less<>>
  requires sort_comparator<Comp, P, std::ranges::iterator_t<R>>
void sort_by_key(P&& policy, R&& keys, V&& values, Comp comp = {}) {
  const auto n = std::ranges::size(keys), m = std::ranges::size(values);
  if (m < n)
    throw std::invalid_argument("dpar::sort_by_key: " + std::to_string(n) + " keys but only " + std::to_string(m) +
                                " values");
  dpar::sort_by_key(policy, std::ranges::begin(keys), detail::range_end(keys), std::ranges::begin(values),
                    std::move(comp));
}

}  // namespace dpar
