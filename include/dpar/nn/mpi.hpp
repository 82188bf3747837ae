#pragma once
// dpar::nn over MPI ranks: include this header (it brings <dpar/mpi.hpp> and
// <dpar/nn.hpp>) and link dpar::nn and MPI, then
//
//   dpar::thread_pool pool(2);
//   dpar::nn::data_parallel_trainer t(dpar::mpi(MPI_COMM_WORLD, dpar::par.on(pool)), model, options);
//
// Every rank runs a group of its own replicas (the inner policy's: seq, or one
// per pool thread); replicas are numbered rank-major. A sum over replicas is
// hierarchical: inside the rank first (dpar::communicator), then one MPI
// all-reduce of the whole buffer by the rank's replica 0, adding the ranks in
// rank order (every rank gets the same bits), then a broadcast back to the
// rank's replicas. MPI is called only from the
// thread that called the trainer (replica 0 runs there), so MPI_THREAD_FUNNELED
// is enough.

#include "../mpi.hpp"
#include "../nn.hpp"

#include <algorithm>
#include <climits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpar::nn {

namespace detail {
// Up to this many elements gathered (length x ranks) an all-reduce gathers
// the whole buffers: one collective instead of two, for the per-step status.
inline constexpr std::size_t small_all_reduce = 4096;

// Element-wise sum of every rank's `data`, added in rank order, into every
// rank's `data`, bitwise the same on all of them. Short buffers: gathered
// whole, and every rank adds them. Long ones: a reduce-scatter by hand
// (MPI_Alltoallv, then each rank adds its slice of the ranks' buffers in rank
// order) and an MPI_Allgatherv, the traffic of a ring all-reduce. MPI_SUM
// would leave the grouping to MPI, and a non-commutative user op that keeps
// the order makes OpenMPI fall back to a far slower algorithm (9 ms against
// 1.5 ms for 1 MB on 2 ranks). Every rank passes the same length.
template <class T>
void all_reduce_in_rank_order(MPI_Comm comm, std::span<T> data, std::vector<T>& scratch) {
  namespace m = dpar::detail::mpi;
  m::errors_return guard(comm);
  const int ranks = m::size_of(comm), me = m::rank_of(comm);
  if (ranks == 1 || data.empty()) return;
  if (data.size() > static_cast<std::size_t>(INT_MAX))
    throw std::length_error("dpar::nn over MPI: " + std::to_string(data.size()) + " elements in one all-reduce; at most " +
                            std::to_string(INT_MAX));
  const std::size_t n = data.size(), p = static_cast<std::size_t>(ranks);
  if (n * p <= small_all_reduce) {  // latency-bound: one MPI_Allgather, then every rank adds all in rank order
    scratch.resize(n * p);
    m::check(MPI_Allgather(data.data(), static_cast<int>(n), m::datatype<T>(), scratch.data(), static_cast<int>(n),
                           m::datatype<T>(), comm),
             "MPI_Allgather");
    std::copy(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(n), data.begin());
    for (std::size_t r = 1; r < p; ++r)
      for (std::size_t i = 0; i < n; ++i) data[i] += scratch[r * n + i];
    return;
  }
  std::vector<int> counts(p), offsets(p), mine(p), at(p);
  for (std::size_t r = 0; r < p; ++r) {
    offsets[r] = static_cast<int>(n * r / p);
    counts[r] = static_cast<int>(n * (r + 1) / p) - offsets[r];
  }
  const std::size_t c = static_cast<std::size_t>(counts[static_cast<std::size_t>(me)]);
  for (std::size_t r = 0; r < p; ++r) mine[r] = static_cast<int>(c), at[r] = static_cast<int>(r * c);
  scratch.resize(c * p);
  m::check(MPI_Alltoallv(data.data(), counts.data(), offsets.data(), m::datatype<T>(), scratch.data(), mine.data(),
                         at.data(), m::datatype<T>(), comm),
           "MPI_Alltoallv");
  T* slice = data.data() + offsets[static_cast<std::size_t>(me)];
  std::copy(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(c), slice);
  for (std::size_t r = 1; r < p; ++r) {
    const T* from = scratch.data() + r * c;
    for (std::size_t i = 0; i < c; ++i) slice[i] += from[i];
  }
  m::check(MPI_Allgatherv(MPI_IN_PLACE, 0, m::datatype<T>(), data.data(), counts.data(), offsets.data(),
                          m::datatype<T>(), comm),
           "MPI_Allgatherv");
}
}  // namespace detail

class mpi_group final : public replica_group {
 public:
  // The ranks of `comm`, each running the replicas of `local`.
  mpi_group(MPI_Comm comm, std::unique_ptr<replica_group> local)
      : mpi_group(comm, std::move(local), layout_of(comm, *local)) {}

  int process_of(std::size_t g) const override {
    if (g >= size())
      throw std::out_of_range("dpar::nn::mpi_group: replica " + std::to_string(g) + " of " + std::to_string(size()));
    return static_cast<int>(std::upper_bound(firsts_.begin(), firsts_.end(), g) - firsts_.begin()) - 1;
  }

  void run(const std::function<void(std::size_t)>& f) override { local_->run(f); }

  // Device replicas' gradients (mpi(comm, gpu.on(d))): summed inside the rank
  // on the devices, then host-staged across ranks (dpar does not assume a
  // CUDA-aware MPI): each local replica copies its (identical) sum to the host,
  // replica 0 all-reduces it over MPI, the rank's replicas share the result and
  // copy it back.
  void all_reduce(std::size_t local, std::span<float> data) override {
    if (!local_->device_replicas()) return reduce(local, data, floats_);
    local_->all_reduce(local, data);
    std::vector<float>& host = staged_[local];
    host.resize(data.size());
    local_->copy_gradients(local, data, host);
    if (local == 0) detail::all_reduce_in_rank_order(comm_, std::span<float>(host), floats_);
    local_->broadcast(local, std::as_writable_bytes(std::span<float>(host)), 0);
    local_->copy_gradients(local, host, data);
  }
  void all_reduce(std::size_t local, std::span<double> data) override { reduce(local, data, doubles_); }
  void all_reduce(std::size_t local, std::span<std::uint64_t> data) override { reduce(local, data, integers_); }

  void broadcast(std::size_t local, std::span<std::byte> data, std::size_t root) override {
    int owner = process_of(root);
    bool here = owner == process_rank();
    if (here) local_->broadcast(local, data, root - first());
    if (local == 0) {
      dpar::detail::mpi::errors_return guard(comm_);
      dpar::detail::mpi::for_each_piece(data.size(), [&](std::size_t offset, int count) {
        dpar::detail::mpi::check(MPI_Bcast(data.data() + offset, count, MPI_BYTE, owner, comm_), "MPI_Bcast");
      });
    }
    if (!here) local_->broadcast(local, data, 0);
  }

  // The all-to-all over ranks: each local replica posts its blocks, local
  // replica 0 packs them per destination rank (source replica, then
  // destination replica), one MPI_Alltoallv, and unpacks what arrived into
  // the local replicas' receive blocks (source replica, then local replica).
  void exchange(std::size_t local, std::span<const std::span<const float>> send,
                std::span<const std::span<float>> recv) override {
    if (send.size() != size() || recv.size() != size())
      throw std::invalid_argument("dpar::nn::mpi_group::exchange: " + std::to_string(send.size()) +
                                  " blocks to send and " + std::to_string(recv.size()) + " to receive among " +
                                  std::to_string(size()) + " replicas");
    blocks_[local] = {send.data(), recv.data()};
    local_->barrier(local);
    if (local == 0) exchange_over_ranks();
    local_->barrier(local);
  }

  std::unique_ptr<replica_model> make_model(std::size_t local, const sequential& model,
                                            const replica_options& options) override {
    return local_->make_model(local, model, options);
  }
  bool device_replicas() const noexcept override { return local_->device_replicas(); }
  void copy_gradients(std::size_t local, std::span<const float> from, std::span<float> to) override {
    local_->copy_gradients(local, from, to);
  }

  void barrier(std::size_t local) override {
    local_->barrier(local);
    if (local == 0) {
      dpar::detail::mpi::errors_return guard(comm_);
      dpar::detail::mpi::check(MPI_Barrier(comm_), "MPI_Barrier");
    }
    local_->barrier(local);
  }

 private:
  struct layout {
    std::vector<std::size_t> firsts;  // global number of each rank's replica 0
    std::size_t size = 0;
    int rank = 0;
  };

  static layout layout_of(MPI_Comm comm, const replica_group& local) {
    if (local.local_size() > 1) {
      int level = MPI_THREAD_SINGLE;
      dpar::detail::mpi::check(MPI_Query_thread(&level), "MPI_Query_thread");
      if (level < MPI_THREAD_FUNNELED)
        throw std::invalid_argument(
            "dpar::nn: " + std::to_string(local.local_size()) +
            " replicas per rank need MPI initialized with at least MPI_THREAD_FUNNELED (use MPI_Init_thread)");
    }
    dpar::detail::mpi::errors_return guard(comm);
    int ranks = dpar::detail::mpi::size_of(comm);
    std::vector<unsigned long long> sizes(static_cast<std::size_t>(ranks));
    unsigned long long mine = local.local_size();
    dpar::detail::mpi::check(
        MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, sizes.data(), 1, MPI_UNSIGNED_LONG_LONG, comm), "MPI_Allgather");
    layout l;
    l.rank = dpar::detail::mpi::rank_of(comm);
    for (auto s : sizes) {
      l.firsts.push_back(l.size);
      l.size += s;
    }
    return l;
  }

  // `local` is an rvalue reference: nothing moves out of it before layout_of has read it.
  mpi_group(MPI_Comm comm, std::unique_ptr<replica_group>&& local, layout l)
      : replica_group(l.size, local->local_size(), l.firsts[static_cast<std::size_t>(l.rank)], l.rank),
        comm_(comm),
        local_(std::move(local)),
        firsts_(std::move(l.firsts)),
        staged_(local_size()),
        blocks_(local_size()) {}

  void exchange_over_ranks() {
    namespace m = dpar::detail::mpi;
    const std::size_t ranks = firsts_.size(), here = local_size();
    auto replicas_of = [&](std::size_t p) {
      return std::pair{firsts_[p], p + 1 < ranks ? firsts_[p + 1] : size()};
    };
    std::vector<int> send_counts(ranks), send_at(ranks), recv_counts(ranks), recv_at(ranks);
    std::size_t out = 0, in = 0;
    auto checked = [](std::size_t v) {
      if (v > static_cast<std::size_t>(INT_MAX))
        throw std::length_error("dpar::nn over MPI: " + std::to_string(v) + " values in one exchange; at most " +
                                std::to_string(INT_MAX));
      return static_cast<int>(v);
    };
    exchange_send_.clear();
    for (std::size_t p = 0; p < ranks; ++p) {
      auto [lo, hi] = replicas_of(p);
      send_at[p] = checked(out);
      recv_at[p] = checked(in);
      for (std::size_t l = 0; l < here; ++l)
        for (std::size_t d = lo; d < hi; ++d) {
          auto block = blocks_[l].send[d];
          exchange_send_.insert(exchange_send_.end(), block.begin(), block.end());
          out += block.size();
        }
      for (std::size_t s = lo; s < hi; ++s)
        for (std::size_t l = 0; l < here; ++l) in += blocks_[l].recv[s].size();
      send_counts[p] = checked(out) - send_at[p];
      recv_counts[p] = checked(in) - recv_at[p];
    }
    exchange_recv_.resize(in);
    m::errors_return guard(comm_);
    m::check(MPI_Alltoallv(exchange_send_.data(), send_counts.data(), send_at.data(), MPI_FLOAT,
                           exchange_recv_.data(), recv_counts.data(), recv_at.data(), MPI_FLOAT, comm_),
             "MPI_Alltoallv");
    const float* from = exchange_recv_.data();
    for (std::size_t s = 0; s < size(); ++s)
      for (std::size_t l = 0; l < here; ++l) {
        auto block = blocks_[l].recv[s];
        std::copy(from, from + block.size(), block.begin());
        from += block.size();
      }
  }

  // Inside the rank, then across ranks (by local replica 0), then back.
  template <class T>
  void reduce(std::size_t local, std::span<T> data, std::vector<T>& scratch) {
    local_->all_reduce(local, data);
    if (local == 0) detail::all_reduce_in_rank_order(comm_, data, scratch);
    local_->broadcast(local, std::as_writable_bytes(data), 0);
  }

  MPI_Comm comm_;
  std::unique_ptr<replica_group> local_;
  std::vector<std::size_t> firsts_;
  std::vector<float> floats_;  // all_reduce's receive buffers, kept between steps (local replica 0's)
  std::vector<std::vector<float>> staged_;  // device replicas' gradients on the host, one per local replica
  std::vector<double> doubles_;
  struct posted {  // a local replica's blocks in the current exchange
    const std::span<const float>* send = nullptr;
    const std::span<float>* recv = nullptr;
  };
  std::vector<posted> blocks_;
  std::vector<float> exchange_send_, exchange_recv_;  // local replica 0's packed blocks
  std::vector<std::uint64_t> integers_;
};

template <class Inner>
struct replica_group_for<mpi_policy<Inner>> {
  static std::unique_ptr<replica_group> make(const mpi_policy<Inner>& p) {
    return std::make_unique<mpi_group>(p.comm(), make_replica_group(p.inner()));
  }
};

}  // namespace dpar::nn
