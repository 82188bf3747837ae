#pragma once
// dpar over MPI ranks (OpenMPI or any MPI-3 library): include this header,
// which needs <mpi.h> (included here without the deprecated C++ bindings),
// and link MPI (CMake: MPI::MPI_CXX or MPI::MPI_C).
//
//   auto policy = dpar::mpi(MPI_COMM_WORLD, dpar::par);   // inner policy: seq (default) or par
//   double total = dpar::reduce(policy, local.begin(), local.end(), 0.0);
//   dpar::inclusive_scan(policy, local, out.begin());      // scan of the ranks' concatenation
//   dpar::all_reduce(policy, gradients);                    // one buffer per rank
//
// Every rank of the communicator must make the same calls in the same order
// (they are collective). Data is the concatenation of the ranks' local ranges
// in rank order: transform and for_each are rank-local; reduce and
// transform_reduce return the whole reduction on every rank (init applied
// once); scans give each rank its part of the global scan. Ops are combined in
// rank order, so they need to be associative, not commutative. MPI failures
// throw dpar::mpi_error with MPI's message; ranks passing different lengths to
// all_reduce throw dpar::collective_error on every rank. A user function that
// throws on one rank in reduce, transform_reduce or a scan before the ranks
// combine makes the call throw on every rank: that rank gets its exception,
// the others a dpar::collective_error naming it (nobody waits forever).
// Values that cross ranks through a user op must be trivially copyable.
// dpar::sort, stable_sort and sort_by_key sort the concatenation: rank r
// keeps as many elements as it had, the r-th part of the sorted sequence
// (detail/mpi/sort.hpp).

#include "detail/mpi/mpi_h.hpp"

#include <stdexcept>
#include <type_traits>

#include "dpar.hpp"
#include "detail/mpi/backend.hpp"
#include "detail/mpi/error.hpp"
#include "detail/mpi/sort.hpp"

namespace dpar {

template <class Inner>
class mpi_policy {
 public:
  using backend = detail::mpi::backend;
  using inner_type = Inner;

  mpi_policy(MPI_Comm comm, Inner inner) : comm_(comm), inner_(std::move(inner)) {
    if (comm == MPI_COMM_NULL) throw std::invalid_argument("dpar::mpi: the communicator is MPI_COMM_NULL");
  }

  MPI_Comm comm() const noexcept { return comm_; }
  const Inner& inner() const noexcept { return inner_; }
  int rank() const { return detail::mpi::rank_of(comm_); }
  int size() const { return detail::mpi::size_of(comm_); }

 private:
  MPI_Comm comm_;
  Inner inner_;
};

template <class Inner>
struct is_execution_policy<mpi_policy<Inner>> : std::true_type {};

static_assert(detail::backend_for<detail::mpi::backend, mpi_policy<sequenced_policy>>);

// A policy over the ranks of `comm`, each running its local part on `inner`.
template <execution_policy Inner>
  requires(!std::is_same_v<typename std::remove_cvref_t<Inner>::backend, detail::mpi::backend>)
mpi_policy<std::remove_cvref_t<Inner>> mpi(MPI_Comm comm, Inner&& inner) {
  return {comm, std::forward<Inner>(inner)};
}

inline mpi_policy<sequenced_policy> mpi(MPI_Comm comm) { return {comm, seq}; }

}  // namespace dpar

#include "detail/deterministic/mpi.hpp"  // dpar::deterministic(dpar::mpi(...))
#include "detail/mpi/participants.hpp"    // the derived algorithms over ranks
