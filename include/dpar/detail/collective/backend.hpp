#pragma once
// How a backend provides the collectives: specialize collective_backend for its
// policy type with static all_reduce(policy, buffers, op) and
// all_reduce_mean(policy, buffers). The front doors in collective.hpp call it.

namespace dpar::detail {

template <class Policy>
struct collective_backend;

}  // namespace dpar::detail
