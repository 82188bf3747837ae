#pragma once
// The rank-ordered sum of rank_order.hpp, non-blocking: sums started while
// the caller still computes (dpar::nn's gradient buckets, started during
// backward). The same steps as all_reduce_in_rank_order: MPI_Ialltoallv,
// each rank folds its slice of all ranks' buffers in rank order,
// MPI_Iallgatherv (short buffers: MPI_Iallgather and a fold of everything);
// so each element is the same additions in the same order, the same bits.
//
// OpenMPI advances a non-blocking collective only inside MPI calls: the
// caller calls progress() now and then (between layers), which also starts
// the gathers of exchanges that are done.
//
// MPI wants the collectives of a communicator started in the same order on
// every rank. The exchanges start in the caller's order, but a gather can
// start only once its exchange is done, which happens at different points on
// different ranks; so exchanges and gathers run on two duplicates of their
// own, made at the first sum (collectively, as every sum is), and gathers
// start in the order of the sums, each after every earlier one's.

#include "mpi_h.hpp"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "error.hpp"
#include "rank_order.hpp"
#include "types.hpp"

namespace dpar::detail::mpi {

template <class T>
class rank_order_sums {
 public:
  // Over `comm` (dpar's private duplicate: the duplicates here are made of it).
  explicit rank_order_sums(MPI_Comm comm) : comm_(comm) {}
  rank_order_sums(const rank_order_sums&) = delete;
  rank_order_sums& operator=(const rank_order_sums&) = delete;
  ~rank_order_sums() {
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (finalized) return;  // MPI_Finalize freed nothing of ours, but nothing can be freed after it
    for (MPI_Comm* c : {&exchanges_, &gathers_})
      if (*c != MPI_COMM_NULL) MPI_Comm_free(c);  // after whatever is pending on it
  }

  // Starts data = the element-wise sum of every rank's data, in rank order.
  // Collective: every rank starts the same lengths in the same order. data
  // must be left alone until wait() returns.
  void start(std::span<T> data) {
    const std::size_t p = static_cast<std::size_t>(size_of(comm_));
    if (p == 1 || data.empty()) return;
    if (exchanges_ == MPI_COMM_NULL) {
      for (MPI_Comm* c : {&exchanges_, &gathers_}) {
        check(MPI_Comm_dup(comm_, c), "MPI_Comm_dup");
        check(MPI_Comm_set_errhandler(*c, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
      }
    }
    // MPI counts and displacements are int: pieces whose whole fits.
    const std::size_t most = static_cast<std::size_t>(INT_MAX) / 2;
    for (std::size_t at = 0; at < data.size(); at += most) {
      if (used_ == sums_.size()) sums_.emplace_back();
      sum& s = sums_[used_++];  // reused: its scratch is already the size a bucket of last step's needed
      s.data = data.subspan(at, std::min(most, data.size() - at));
      const std::size_t n = s.data.size();
      s.whole = n * p <= small_all_reduce;
      if (s.whole) {
        s.scratch.resize(n * p);
        check(MPI_Iallgather(s.data.data(), static_cast<int>(n), datatype<T>(), s.scratch.data(), static_cast<int>(n),
                             datatype<T>(), exchanges_, &s.request),
              "MPI_Iallgather");
        continue;
      }
      const int me = rank_of(comm_);
      slice_counts(n, static_cast<int>(p), s.counts, s.offsets);  // the slices of all_reduce_in_rank_order
      s.mine.resize(p), s.at.resize(p);
      const int c = s.counts[static_cast<std::size_t>(me)];
      for (std::size_t r = 0; r < p; ++r) s.mine[r] = c, s.at[r] = static_cast<int>(r) * c;
      s.scratch.resize(static_cast<std::size_t>(c) * p);
      check(MPI_Ialltoallv(s.data.data(), s.counts.data(), s.offsets.data(), datatype<T>(), s.scratch.data(),
                           s.mine.data(), s.at.data(), datatype<T>(), exchanges_, &s.request),
            "MPI_Ialltoallv");
    }
  }

  // data = the same sum, now (all_reduce_in_rank_order, blocking): for a
  // sum with nothing left to overlap, which Open MPI's blocking collectives
  // finish sooner than its non-blocking ones (bench/RESULTS.md, session 7).
  // Collective, in the caller's order with start.
  void sum_now(std::span<T> data) {
    std::plus<> op;
    all_reduce_in_rank_order(comm_, data, op);
  }

  // Advances the started sums without blocking.
  void progress() {
    for (; folded_ < used_; ++folded_) {
      int done = 0;
      check(MPI_Test(&sums_[folded_].request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (!done) break;
      fold_and_gather(sums_[folded_]);
    }
    for (std::size_t i = gathered_; i < folded_; ++i) {  // gathers advance only when tested
      int done = 0;
      check(MPI_Test(&sums_[i].request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done && i == gathered_) ++gathered_;
    }
  }

  // Completes every started sum.
  void wait() {
    for (; folded_ < used_; ++folded_) {
      check(MPI_Wait(&sums_[folded_].request, MPI_STATUS_IGNORE), "MPI_Wait");
      fold_and_gather(sums_[folded_]);
    }
    for (; gathered_ < used_; ++gathered_)
      check(MPI_Wait(&sums_[gathered_].request, MPI_STATUS_IGNORE), "MPI_Wait");
    used_ = folded_ = gathered_ = 0;
  }

 private:
  struct sum {
    std::span<T> data;
    bool whole = false;  // gathered whole (short), not exchanged in slices
    std::vector<T> scratch;
    std::vector<int> counts, offsets, mine, at;  // MPI reads them until the request completes
    MPI_Request request = MPI_REQUEST_NULL;
  };

  // Once s's exchange is done: the rank-order fold, then (sliced) the gather.
  void fold_and_gather(sum& s) {
    const std::size_t p = static_cast<std::size_t>(size_of(comm_)), me = static_cast<std::size_t>(rank_of(comm_));
    std::plus<> op;
    if (s.whole) {
      fold_in_rank_order(s.scratch.data(), s.data.size(), p, s.data.data(), op);
      return;  // request is MPI_REQUEST_NULL: nothing to gather
    }
    fold_in_rank_order(s.scratch.data(), static_cast<std::size_t>(s.counts[me]), p, s.data.data() + s.offsets[me], op);
    check(MPI_Iallgatherv(MPI_IN_PLACE, 0, datatype<T>(), s.data.data(), s.counts.data(), s.offsets.data(),
                          datatype<T>(), gathers_, &s.request),
          "MPI_Iallgatherv");
  }

  MPI_Comm comm_, exchanges_ = MPI_COMM_NULL, gathers_ = MPI_COMM_NULL;
  std::vector<sum> sums_;  // [0, used_) started this round
  // Sums whose exchange is folded (and gather started): [0, folded_); whose gather is done: [0, gathered_).
  std::size_t used_ = 0, folded_ = 0, gathered_ = 0;
};

}  // namespace dpar::detail::mpi
