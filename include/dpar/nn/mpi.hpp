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
// broadcast back to the rank's replicas. The end of a step is sharded over
// the ranks (ZeRO stage 1, sum_and_update): a reduce-scatter over the ranks,
// each rank's replicas update its slice, an all-gather. dpar::nn makes no MPI
// calls of its own: it goes through the MPI backend (detail/mpi/backend.hpp).
// MPI is called only from the thread that called the trainer (replica 0 runs
// there), so MPI_THREAD_FUNNELED is enough.

#include "../mpi.hpp"
#include "../nn.hpp"
#include "../partition.hpp"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <memory>
#include <optional>
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
  // for them all and shares the result with the rank's replicas. Each
  // element gets the sums of reduce(), the same bits.
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
  // The update after buckets is whole (the gradient sum is whole on every
  // replica). After sharded steps (sum_and_update below) or
  // keep_state_piece, each replica keeps the optimizer state of its piece
  // only, so it is gathered whole first: the trainer takes the bucket path
  // on every replica of a step or on none, so all of them take part. (Steps
  // alternate between the two paths where micro-batches give some replicas
  // several parts; the next sharded step narrows the state again.)
  void update_summed(std::size_t local, replica_model& model, float lr, float max_norm) override {
    if (state_in_pieces_[local]) gather_velocity(local, model);
    replica_group::update_summed(local, model, lr, max_norm);
  }

  // ZeRO stage 1 over ranks: thread_group's sharded update, one level up.
  // The rank's replicas sum their gradients as all_reduce does (inside the
  // rank first); local replica 0 reduce-scatters that sum over the ranks in
  // rank order, leaving each rank the global sum on its slice of the
  // parameters (dpar::even_split over the ranks), which the rank's replicas
  // share; each replica updates its own piece of the slice (even_split
  // again), and the parameters are gathered back (gather_pieces). The same
  // bits as the whole update (the clip factor aside, below): every element is
  // the same sum in the same order and the same element-wise update. Each
  // replica keeps, reads and writes the optimizer state of its piece only,
  // 1/replicas of it (state_piece); gather_velocity makes the state whole
  // for save. Device
  // replicas (host-staged sums, whole updates on the device) and models that
  // update whole only take the default path, as do gradients too long for
  // one MPI call (INT_MAX values).
  void sum_and_update(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                      replica_model& model, float lr, float max_norm) override {
    if (!shards(model)) return replica_group::sum_and_update(local, mine, first, total, model, lr, max_norm);
    state_in_pieces_[local] = true;
    std::span<float> grads = model.gradients();
    add_parts(mine, grads);
    inner().all_reduce(local, grads);  // the rank's sum, grouped as all_reduce groups it
    const index_range ours = collectives::slice(ranks(), grads.size());
    if (local == 0) collectives::reduce_scatter_sum(ranks(), grads);
    inner().broadcast(local, std::as_writable_bytes(grads.subspan(ours.begin, ours.size())), 0);
    // The clip's norm is summed from the pieces: a double sum grouped
    // otherwise than the whole update's, so the float clip factor could
    // differ in its last bit (rarely: it is rounded from a double); the
    // tests' clipped runs match bitwise.
    update_piece(local, model, piece(local, grads.size()), lr, max_norm);
    gather_pieces(local, model.host_model().parameters());
  }
  void gather_velocity(std::size_t local, replica_model& model) override {
    if (!shards(model)) return;
    state_in_pieces_[local] = false;
    gather_state(model, [&](std::span<float> state) { gather_pieces(local, state); });
  }
  std::optional<index_range> state_piece(std::size_t local, std::size_t n) const override {
    if (!shards(n)) return std::nullopt;
    return piece(local, n);
  }
  void keep_state_piece(std::size_t local, replica_model& model) override {
    if (!shards(model)) return;
    state_in_pieces_[local] = true;
    replica_group::keep_state_piece(local, model);
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
        blocks_(local_size()),
        pieces_(local_size()),
        state_in_pieces_(local_size(), true) {}

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

  // Where sum_and_update shards the update over ranks: host replicas that
  // update ranges, n elements few enough for one MPI call.
  bool shards(std::size_t n) const { return !inner().device_replicas() && n <= static_cast<std::size_t>(INT_MAX); }
  bool shards(replica_model& model) const { return model.updates_ranges() && shards(model.gradients().size()); }
  // The elements of an n-element buffer local replica `local` updates: its
  // piece of this rank's slice.
  index_range piece(std::size_t local, std::size_t n) const {
    const index_range ours = collectives::slice(ranks(), n);
    const index_range own = even_split(ours.size(), local_size(), local);
    return {ours.begin + own.begin, ours.begin + own.end};
  }
  // Each local replica's `whole` (n values, the same n for all) is current
  // on its piece; afterwards every replica's is current everywhere. Local
  // replica 0 copies the rank's other pieces out of their replicas' buffers
  // (posted before a barrier; their owners wait in the broadcast until it
  // is done), all-gathers the slices over the ranks, and the rank's
  // replicas copy its buffer.
  void gather_pieces(std::size_t local, std::span<float> whole) {
    pieces_[local] = whole.data();
    inner().barrier(local);
    if (local == 0) {
      for (std::size_t l = 1; l < local_size(); ++l) {
        const index_range p = piece(l, whole.size());
        std::copy(pieces_[l] + p.begin, pieces_[l] + p.end, whole.begin() + static_cast<std::ptrdiff_t>(p.begin));
      }
      collectives::all_gather(ranks(), whole);
    }
    inner().broadcast(local, std::as_writable_bytes(whole), 0);
  }

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
  std::vector<float*> pieces_;  // each local replica's buffer in the current gather_pieces
  std::unique_ptr<dpar::detail::mpi::rank_order_sums<float>> bucket_sums_;  // local replica 0's, made at the first bucket
  // Per local replica: whether its optimizer state may be its piece's only
  // (since construction, a sharded step or keep_state_piece, until the next
  // gather_velocity). A flag rather than the model's window, which is the
  // whole on a replica whose piece is all of a short buffer while the
  // others' are not: every replica must decide alike.
  std::vector<char> state_in_pieces_;
};

template <class Inner>
struct replica_group_for<mpi_policy<Inner>> {
  static std::unique_ptr<replica_group> make(const mpi_policy<Inner>& p) {
    return std::make_unique<mpi_group>(p.comm(), make_replica_group(p.inner()));
  }
};

}  // namespace dpar::nn
