#pragma once
// How a backend sorts: specialize sorting<Backend> (Backend: a policy's
// `backend` type) with static functions taking the policy first:
//   sort<Stable>(policy, first, last, comp)   (Stable: std::stable_sort's order)
//   sort_by_key(policy, keys_first, keys_last, values_first, comp)   (stable)
// The front doors in sort.hpp call them; each backend's detail/NAME/sort.hpp
// specializes it.

namespace dpar::detail {

template <class Backend>
struct sorting;

}  // namespace dpar::detail
