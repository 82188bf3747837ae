#pragma once
// Collectives: one front door, dpar::all_reduce, for every kind of replica.
//
//   dpar::all_reduce(policy, buffers, op)   buffers: K equal-length buffers, one per
//                                           replica; afterwards each holds their
//                                           element-wise reduction in replica order.
//   dpar::all_reduce_mean(policy, buffers)  the same with +, then divided by K.
//
// The policy's type picks the backend at compile time through
// detail::collective_backend<Policy> (declared below), specialized beside each
// backend (the umbrella headers dpar.hpp, mpi.hpp and cuda.hpp include them):
//   seq, par                       detail/threads/all_reduce.hpp
//   mpi(comm, inner)               detail/mpi/backend.hpp
//   deterministic(any CPU or MPI)  detail/deterministic/backend.hpp
//   gpu: none (one device holds one replica; use multi_gpu)
//   multi_gpu(devices)             detail/multi_gpu/all_reduce.hpp
//   deterministic(gpu, multi_gpu)  detail/deterministic/gpu.hpp
// What
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

#include "execution.hpp"

namespace dpar {

namespace detail {
// A backend provides the collectives by specializing this for its policy type
// with static all_reduce(policy, buffers, op) and all_reduce_mean(policy, buffers).
template <class Policy>
struct collective_backend;
}  // namespace detail

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
