#pragma once
// dpar::seq sorts with the thread backend's algorithms (detail/threads/sort.hpp)
// run in the calling thread: radix sort where it applies, else std::sort and
// std::stable_sort.

#include <utility>

#include "../../execution.hpp"
#include "../sort_backend.hpp"
#include "../threads/sort.hpp"

namespace dpar::detail {

template <>
struct sorting<seq::backend> {
  template <bool Stable, class It, class Comp>
  static void sort(const sequenced_policy&, It first, It last, Comp comp) {
    threads::sort<Stable>(nullptr, first, last, std::move(comp));
  }
  template <class Keys, class Values, class Comp>
  static void sort_by_key(const sequenced_policy&, Keys keys_first, Keys keys_last, Values values_first, Comp comp) {
    threads::sort_by_key(nullptr, keys_first, keys_last, values_first, std::move(comp));
  }
};

}  // namespace dpar::detail
