#pragma once
// The ranks as participants of the derived algorithms (detail/participants.hpp):
// each rank holds its local range of the concatenation and runs the inner
// policy on it. Each fact costs one collective call; values that cross ranks
// must be trivially copyable.

#include "mpi_h.hpp"

#include <climits>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <utility>

#include "../participants.hpp"
#include "backend.hpp"
#include "error.hpp"

namespace dpar::detail {

template <class Inner>
struct participants<mpi_policy<Inner>> {
  using policy_type = mpi_policy<Inner>;
  static constexpr bool host = participants<Inner>::host, distributed = true;

  static const Inner& local(const policy_type& policy) noexcept { return policy.inner(); }

  static std::size_t offset(const policy_type& policy, std::size_t n) {
    const mpi::ranked_comm comm = mpi::private_ranked_comm(policy.comm());
    std::plus<> sum;
    auto below = mpi::across_ranks_nothrow(MPI_Exscan, "MPI_Exscan", comm.comm, std::optional<std::size_t>(n), sum);
    return comm.rank == 0 ? 0 : *below;  // MPI leaves rank 0's result undefined
  }

  template <class T, class It>
  static std::optional<T> previous_element(const policy_type& policy, It first, It last) {
    const mpi::ranked_comm comm = mpi::private_ranked_comm(policy.comm());
    // join keeps the last present one; a copy of T cannot throw, so no agreement follows
    auto later = [](const T&, const T& b) noexcept { return b; };
    std::optional<T> mine;
    if (first != last) mine.emplace(*(last - 1));
    auto below = mpi::across_ranks_nothrow(MPI_Exscan, "MPI_Exscan", comm.comm, std::move(mine), later);
    if (comm.rank == 0) return std::nullopt;
    return below;
  }

  template <class V, class Local, class Better>
  static std::optional<V> best_here(const policy_type& policy, Local&& local, Better&& better) {
    const mpi::ranked_comm comm = mpi::private_ranked_comm(policy.comm());
    struct candidate {
      V value;
      int rank;
    };
    std::exception_ptr error;
    std::optional<V> mine = mpi::run_local<V>(local, error);
    std::optional<candidate> offer;
    if (mine) offer = candidate{*mine, comm.rank};
    auto pick = [&](const candidate& a, const candidate& b) { return better(b.value, a.value) ? b : a; };
    auto best = mpi::all_ranks(comm, std::move(offer), error, pick);
    if (best && best->rank == comm.rank) return mine;
    return std::nullopt;
  }

  // One MPI_Allgather of the ranks' values, and one agreement after finish
  // unless op cannot throw (finish must throw only where op may).
  template <class V, class Local, class Op, class Finish>
  static auto from_later(const policy_type& policy, Local&& local, Op& op, Finish&& finish) {
    const mpi::ranked_comm comm = mpi::private_ranked_comm(policy.comm());
    std::exception_ptr error, fold_error;
    std::optional<V> mine = mpi::run_local<V>(local, error);
    std::optional<V> later = mpi::beside_this_rank<true>(comm, std::move(mine), error, op, fold_error);
    return mpi::last_phase<mpi::op_cannot_throw_v<Op, V>>(comm.comm, std::move(fold_error),
                                                          [&] { return finish(std::move(later)); });
  }
};

}  // namespace dpar::detail
