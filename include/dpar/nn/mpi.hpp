#pragma once
// dpar::nn over MPI ranks: include this header (it brings <dpar/mpi.hpp> and
// <dpar/nn.hpp>) and link dpar::nn and MPI, then
//
//   dpar::thread_pool pool(2);
//   dpar::nn::data_parallel_trainer t(dpar::mpi(MPI_COMM_WORLD, dpar::par.on(pool)), model, options);
//
// Every rank runs a group of its own replicas (the inner policy's: seq, or one
// per pool thread); replicas are numbered rank-major. A sum over replicas is
// hierarchical: inside the rank first (dpar::communicator), then
// dpar::all_reduce over dpar::mpi of the whole buffer by the rank's replica 0,
// which adds the ranks in rank order (every rank gets the same bits), then a
// broadcast back to the rank's replicas. dpar::nn makes no MPI calls of its
// own: it goes through the MPI backend (detail/mpi/backend.hpp). MPI is called
// only from the thread that called the trainer (replica 0 runs there), so
// MPI_THREAD_FUNNELED is enough.

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

// The rank's own replicas are those of the group `local` (forwarding_group:
// run, make_model, where the replicas compute); the collectives span the ranks.
class mpi_group final : public forwarding_group {
 public:
  // The ranks of `comm`, each running the replicas of `local`.
  mpi_group(MPI_Comm comm, std::unique_ptr<replica_group> local)
      : mpi_group(comm, std::move(local), layout_of(comm, *local)) {}

  int process_of(std::size_t g) const override {
    if (g >= size())
      throw std::out_of_range("dpar::nn::mpi_group: replica " + std::to_string(g) + " of " + std::to_string(size()));
    return static_cast<int>(std::upper_bound(firsts_.begin(), firsts_.end(), g) - firsts_.begin()) - 1;
  }

  // Device replicas' gradients (mpi(comm, gpu.on(d))): summed inside the rank
  // on the devices, then host-staged across ranks (dpar does not assume a
  // CUDA-aware MPI): each local replica copies its (identical) sum to the host,
  // replica 0 all-reduces it over MPI, the rank's replicas share the result and
  // copy it back.
  void all_reduce(std::size_t local, std::span<float> data) override {
    if (!inner().device_replicas()) return reduce(local, data);
    inner().all_reduce(local, data);
    std::vector<float>& host = staged_[local];
    host.resize(data.size());
    inner().copy_gradients(local, data, host);
    if (local == 0) dpar::all_reduce(ranks(), host);
    inner().broadcast(local, std::as_writable_bytes(std::span<float>(host)), 0);
    inner().copy_gradients(local, host, data);
  }
  void all_reduce(std::size_t local, std::span<double> data) override { reduce(local, data); }
  void all_reduce(std::size_t local, std::span<std::uint64_t> data) override { reduce(local, data); }

  void broadcast(std::size_t local, std::span<std::byte> data, std::size_t root) override {
    int owner = process_of(root);
    bool here = owner == process_rank();
    if (here) inner().broadcast(local, data, root - first());
    if (local == 0) collectives::broadcast(ranks(), data, owner);
    if (!here) inner().broadcast(local, data, 0);
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
    inner().barrier(local);
    if (local == 0) exchange_over_ranks();
    inner().barrier(local);
  }

  void barrier(std::size_t local) override {
    inner().barrier(local);
    if (local == 0) collectives::barrier(ranks());
    inner().barrier(local);
  }

  // Gradient buckets (replica_group::sums_in_buckets), host replicas: a
  // bucket is summed inside the rank at once (the inner group's all_reduce),
  // then local replica 0 starts its rank-ordered sum over the ranks without
  // waiting for it (rank_order_async.hpp) and advances it between layers,
  // but for the first layer's bucket, summed at once; at the end it waits
  // for them all and shares the result with the rank's replicas. Each element: the sums of reduce(), the same bits.
  bool sums_in_buckets(const replica_model&) const noexcept override { return !inner().device_replicas(); }
  void start_bucket(std::size_t local, replica_model& model, std::size_t lo, std::size_t hi) override {
    std::span<float> bucket = model.gradients().subspan(lo, hi - lo);
    inner().all_reduce(local, bucket);
    if (local != 0) return;
    if (!bucket_sums_) bucket_sums_ = collectives::async_sums<float>(ranks());
    if (lo == 0)  // the last bucket: the backward is over, nothing to overlap
      bucket_sums_->sum_now(bucket);
    else
      bucket_sums_->start(bucket);
  }
  void progress_buckets(std::size_t local) override {
    if (local == 0 && bucket_sums_) bucket_sums_->progress();
  }
  void finish_buckets(std::size_t local, replica_model& model) override {
    if (local == 0 && bucket_sums_) bucket_sums_->wait();
    inner().broadcast(local, std::as_writable_bytes(model.gradients()), 0);
  }

 private:
  struct layout {
    std::vector<std::size_t> firsts;  // global number of each rank's replica 0
    std::size_t size = 0;
    int rank = 0;
  };

  static layout layout_of(MPI_Comm comm, const replica_group& local) {
    if (local.local_size() > 1 && collectives::thread_level() < MPI_THREAD_FUNNELED)
      throw std::invalid_argument(
          "dpar::nn: " + std::to_string(local.local_size()) +
          " replicas per rank need MPI initialized with at least MPI_THREAD_FUNNELED (use MPI_Init_thread)");
    auto sizes = collectives::all_gather(dpar::mpi(comm), local.local_size());
    layout l;
    l.rank = dpar::mpi(comm).rank();
    for (auto s : sizes) {
      l.firsts.push_back(l.size);
      l.size += s;
    }
    return l;
  }

  // `local` is an rvalue reference: nothing moves out of it before layout_of has read it.
  mpi_group(MPI_Comm comm, std::unique_ptr<replica_group>&& local, layout l)
      : forwarding_group(std::move(local), l.size, l.firsts[static_cast<std::size_t>(l.rank)], l.rank),
        comm_(comm),
        firsts_(std::move(l.firsts)),
        staged_(local_size()),
        blocks_(local_size()) {}

  void exchange_over_ranks() {
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
    collectives::all_to_all(this->ranks(), exchange_send_.data(), send_counts.data(), send_at.data(), exchange_recv_.data(),
                            recv_counts.data(), recv_at.data());
    const float* from = exchange_recv_.data();
    for (std::size_t s = 0; s < size(); ++s)
      for (std::size_t l = 0; l < here; ++l) {
        auto block = blocks_[l].recv[s];
        std::copy(from, from + block.size(), block.begin());
        from += block.size();
      }
  }

  using collectives = dpar::detail::mpi::collectives;
  dpar::mpi_policy<dpar::sequenced_policy> ranks() const { return dpar::mpi(comm_); }

  // Inside the rank, then across ranks (by local replica 0), then back.
  template <class T>
  void reduce(std::size_t local, std::span<T> data) {
    inner().all_reduce(local, data);
    if (local == 0) dpar::all_reduce(ranks(), data);
    inner().broadcast(local, std::as_writable_bytes(data), 0);
  }

  MPI_Comm comm_;
  std::vector<std::size_t> firsts_;
  std::vector<std::vector<float>> staged_;  // device replicas' gradients on the host, one per local replica
  struct posted {  // a local replica's blocks in the current exchange
    const std::span<const float>* send = nullptr;
    const std::span<float>* recv = nullptr;
  };
  std::vector<posted> blocks_;
  std::vector<float> exchange_send_, exchange_recv_;  // local replica 0's packed blocks
  std::unique_ptr<dpar::detail::mpi::rank_order_sums<float>> bucket_sums_;  // local replica 0's, made at the first bucket
};

template <class Inner>
struct replica_group_for<mpi_policy<Inner>> {
  static std::unique_ptr<replica_group> make(const mpi_policy<Inner>& p) {
    return std::make_unique<mpi_group>(p.comm(), make_replica_group(p.inner()));
  }
};

}  // namespace dpar::nn
