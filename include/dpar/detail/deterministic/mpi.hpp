#pragma once
// dpar::deterministic(dpar::mpi(comm, inner)): included by <dpar/mpi.hpp>.
// Exact sums: each rank sums its part exactly on `inner`, one MPI_Allreduce
// (MPI_SUM of int64 digits, which is exact and order-free) merges the ranks'
// accumulators, every rank rounds the same value. Exact all_reduce: the ranks'
// buffers are all-gathered (in pieces) and every rank sums each element's
// column exactly. Anything else runs as mpi(comm, deterministic(inner)):
// fixed blocks within a rank, ranks combined in rank order.

#include "../mpi/mpi_h.hpp"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../../deterministic.hpp"
#include "../mpi/backend.hpp"
#include "../mpi/error.hpp"
#include "../mpi/types.hpp"
#include "backend.hpp"

namespace dpar::detail::deterministic {

template <class Inner>
struct site<mpi_policy<Inner>> {
  static constexpr bool supported = site<Inner>::supported, distributed = true;

  static thread_pool* pool(const mpi_policy<Inner>& policy) { return site<Inner>::pool(policy.inner()); }

  static void combine(const mpi_policy<Inner>& policy, exact_sum& total) {
    const MPI_Comm comm = mpi::private_comm(policy.comm());
    std::int64_t wire[exact_sum::wire_size];
    total.to_wire(wire);
    mpi::check(MPI_Allreduce(MPI_IN_PLACE, wire, exact_sum::wire_size, MPI_INT64_T, MPI_SUM, comm),
               "MPI_Allreduce");
    total.from_wire(wire);
  }

  // The policy that runs everything but exact sums.
  static auto over_ranks(const mpi_policy<Inner>& policy) {
    return mpi_policy<deterministic_policy<Inner>>(policy.comm(), deterministic_policy<Inner>(policy.inner()));
  }

  template <class Buffer>
  using element_t = typename decltype(mpi::local_span(std::declval<Buffer&>()))::element_type;

  // Every rank's buffer gets the correctly rounded sum over the ranks (divided
  // by the rank count for the mean).
  template <class Buffer>
  static void exact_all_reduce(const mpi_policy<Inner>& policy, Buffer& buffer, bool mean) {
    auto data = mpi::local_span(buffer);
    using T = typename decltype(data)::element_type;
    const MPI_Comm comm = mpi::private_comm(policy.comm());
    const char* who = mean ? "dpar::all_reduce_mean over MPI" : "dpar::all_reduce over MPI";
    mpi::check_same_length(comm, data.size(), who);
    const auto ranks = static_cast<std::size_t>(mpi::size_of(comm));
    // Pieces of at most 16 MiB gathered per rank's share, and an int count.
    const std::size_t piece =
        std::max<std::size_t>(1, std::min<std::size_t>((std::size_t{16} << 20) / sizeof(T), INT_MAX / ranks));
    std::vector<T> gathered(ranks * std::min(piece, data.size()));
    for (std::size_t offset = 0; offset < data.size(); offset += piece) {
      const std::size_t count = std::min(piece, data.size() - offset);
      mpi::check(MPI_Allgather(data.data() + offset, static_cast<int>(count), mpi::datatype<T>(), gathered.data(),
                               static_cast<int>(count), mpi::datatype<T>(), comm),
                 "MPI_Allgather");
      auto column = [&](std::size_t r) -> const T* { return gathered.data() + r * count; };
      exact_column_sums<T>(pool(policy), ranks, count, column, data.data() + offset, [&](std::size_t lo, std::size_t hi) {
        if (mean) collective::divide_by{ranks}(data.data() + offset + lo, hi - lo);
      });
    }
  }
};

}  // namespace dpar::detail::deterministic
