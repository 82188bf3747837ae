#pragma once
// Collectives: one front door, dpar::all_reduce, for every kind of replica.
//
//   dpar::all_reduce(policy, buffers, op)   buffers: K equal-length buffers, one per
//                                           replica; afterwards each holds their
//                                           element-wise reduction in replica order.
//   dpar::all_reduce_mean(policy, buffers)  the same with +, then divided by K.
//
// The policy's type picks the backend at compile time through
// detail::collective_backend<Policy> (detail/collective/backend.hpp),
// specialized for seq and par in detail/threads/all_reduce.hpp, for MPI in
// mpi.hpp and for multi_gpu in sharded_algorithms.hpp. What
// `buffers` is depends on the backend: for CPU replicas any range whose
// elements convert to std::span<T> (vectors, spans, arrays); for MPI ranks
// the one local buffer of this rank.
//
// Ops: std::plus<>, std::multiplies<>, dpar::minimum<>, dpar::maximum<> or any
// associative op; it need not be commutative, since values are always combined
// in replica order, so every buffer gets the same bits whatever the number of
// threads. The one exception is opt-in: a multi_gpu policy's with_nccl_order()
// lets float sums and products on distinct devices take NCCL's own order
// (detail/multi_gpu/all_reduce.hpp). For replicas that each run in their own thread see
// dpar::communicator (communicator.hpp).

#include <functional>
#include <type_traits>
#include <utility>

#include "communicator.hpp"
#include "detail/threads/all_reduce.hpp"
#include "execution.hpp"

namespace dpar {

template <execution_policy P, class Buffers, class Op = std::plus<>>
void all_reduce(P&& policy, Buffers&& buffers, Op op = {}) {
  detail::collective_backend<std::remove_cvref_t<P>>::all_reduce(policy, buffers, op);
}

// Gradient averaging: the sum over replicas divided by their number.
template <execution_policy P, class Buffers>
void all_reduce_mean(P&& policy, Buffers&& buffers) {
  detail::collective_backend<std::remove_cvref_t<P>>::all_reduce_mean(policy, buffers);
}

}  // namespace dpar
