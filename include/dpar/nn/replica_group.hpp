#pragma once
// Replica groups: the replicas of data-parallel training and the collectives
// among them, behind one small interface, so the trainer does not care where
// its replicas run. One implementation per kind:
//   - sequential_group: one replica in the calling thread (dpar::seq);
//   - thread_group: one replica per thread of a pool, over dpar::communicator
//     (dpar::par, dpar::par.on(pool));
//   - mpi_group (nn/mpi.hpp): MPI ranks, each running a group of its own.
// Replicas are numbered globally, rank-major: this process runs replicas
// [first(), first() + local_size()) of size().
//
// replica_group_for<Policy>::make(policy) builds the group a policy stands for;
// a new kind of replica (the deterministic wrapper, GPUs) plugs in by
// specializing it, without touching the trainer. A group also makes its
// replicas' model copies (make_model): where they live is the group's business.
//
// Collectives are called from inside run(f), by every local replica, in the
// same order on every process. Sums combine replicas in replica order, so
// every replica gets the same bits.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../communicator.hpp"
#include "../execution.hpp"
#include "../partition.hpp"
#include "../thread_pool.hpp"
#include "replica_model.hpp"

namespace dpar::nn {

class replica_group {
 public:
  virtual ~replica_group() = default;

  std::size_t size() const noexcept { return size_; }              // replicas of all processes
  std::size_t local_size() const noexcept { return local_size_; }  // replicas of this process
  std::size_t first() const noexcept { return first_; }            // global number of local replica 0
  int process_rank() const noexcept { return process_rank_; }      // MPI rank; 0 without MPI
  // The MPI rank that runs global replica g.
  virtual int process_of(std::size_t g) const { return static_cast<int>(g / local_size_); }

  // Runs f(local) for every local replica concurrently and returns when all
  // have returned. An exception from any of them reaches the caller; replicas
  // waiting in a collective are released with an error (within this process:
  // a failure that other processes must learn of has to travel through a
  // collective, as the trainer's steps do).
  virtual void run(const std::function<void(std::size_t local)>& f) = 0;

  // Element-wise sum over all replicas, in replica order, into every replica's data.
  virtual void all_reduce(std::size_t local, std::span<float> data) = 0;
  virtual void all_reduce(std::size_t local, std::span<double> data) = 0;
  virtual void all_reduce(std::size_t local, std::span<std::uint64_t> data) = 0;
  // Every replica's data becomes a copy of global replica root's.
  virtual void broadcast(std::size_t local, std::span<std::byte> data, std::size_t root) = 0;
  virtual void barrier(std::size_t local) = 0;
  // All-to-all among all replicas (model-parallel layers, nn/model_parallel.hpp):
  // send[d] goes to global replica d, recv[s] receives global replica s's
  // block for this replica (as long as the block s sends here). Here: for
  // groups whose replicas all live in this process (the others override it),
  // each replica copies its blocks straight out of the senders' buffers.
  virtual void exchange(std::size_t local, std::span<const std::span<const float>> send,
                        std::span<const std::span<float>> recv) {
    if (size() != local_size())
      throw std::logic_error("dpar::nn::replica_group::exchange: this group's replicas span processes");
    if (send.size() != size() || recv.size() != size())
      throw std::invalid_argument("dpar::nn::replica_group::exchange: " + std::to_string(send.size()) + " blocks to send and " +
                                  std::to_string(recv.size()) + " to receive among " + std::to_string(size()) +
                                  " replicas");
    posted_[local] = send.data();
    barrier(local);  // every replica's blocks are posted
    for (std::size_t s = 0; s < size(); ++s) {
      std::span<const float> from = posted_[s][local];
      if (from.size() != recv[s].size())
        throw std::invalid_argument("dpar::nn::replica_group::exchange: replica " + std::to_string(s) + " sends " +
                                    std::to_string(from.size()) + " values to replica " + std::to_string(local) +
                                    ", which expects " + std::to_string(recv[s].size()));
      if (from.data() != recv[s].data()) std::copy(from.begin(), from.end(), recv[s].begin());
    }
    barrier(local);  // nobody reuses its send buffers before all have read them
  }
  // True where a replica's forward pass joins collectives (model-parallel
  // layers): every replica must then run as many passes as the others, empty
  // ones included.
  virtual bool lockstep_passes() const noexcept { return false; }

  // The model copy local replica `local` computes with: on the host unless a
  // group says otherwise (GPU groups, nn/cuda.hpp). Called before run, in the
  // calling thread.
  virtual std::unique_ptr<replica_model> make_model(std::size_t /*local*/, const sequential& model,
                                                    const replica_options& options) {
    return std::make_unique<host_replica_model>(model, options);
  }
  // True where replicas compute on devices: all_reduce(span<float>) then takes
  // their gradient buffers in device memory.
  virtual bool device_replicas() const noexcept { return false; }
  // Copies `from` to `to` (equal lengths) where one is gradient memory (what
  // all_reduce(span<float>) takes) and the other host memory: a plain copy
  // here, a device copy in GPU groups. Called by local replica `local` in run.
  virtual void copy_gradients(std::size_t /*local*/, std::span<const float> from, std::span<float> to) {
    std::copy(from.begin(), from.end(), to.begin());
  }

  // The parts of a batch (micro-batch gradients, loss sums): `total` parts of
  // out.size() elements in all, this replica's being [first, first +
  // mine.size()). out = their element-wise sum, on every replica. Here: each
  // replica adds its own in order, then all_reduce; so the grouping depends on
  // how the parts are spread. out may be mine[0] when it is the only part.
  virtual void sum_parts(std::size_t local, std::span<const float* const> mine, std::size_t /*first*/,
                         std::size_t /*total*/, std::span<float> out) {
    add_then_all_reduce(local, mine, out);
  }
  virtual void sum_parts(std::size_t local, std::span<const double* const> mine, std::size_t /*first*/,
                         std::size_t /*total*/, std::span<double> out) {
    add_then_all_reduce(local, mine, out);
  }
  // The end of a training step, by every local replica: model.gradients() =
  // the sum of the parts (as sum_parts), scaled by clip_scale(max_norm, its
  // norm) when max_norm > 0 (host gradients only: the trainer refuses
  // clipping on device replicas), then model.update(lr). Here exactly that;
  // thread_group shards it. Afterwards every replica holds the updated
  // parameters; its gradients, and its velocity outside what it updated
  // itself, may be stale until gather_velocity.
  virtual void sum_and_update(std::size_t local, std::span<const float* const> mine, std::size_t first,
                              std::size_t total, replica_model& model, float lr, float max_norm) {
    sum_parts(local, mine, first, total, model.gradients());
    update_summed(local, model, lr, max_norm);
  }

  // Gradient buckets (train_options::bucket_bytes): a group that can sum a
  // range of the gradients while the replica computes the rest of its
  // backward. For a step in which every replica has at most one part, the
  // trainer asks sums_in_buckets(model) (the same answer on every replica
  // of every process: it depends on the kind of group and replica only);
  // if true, every local replica calls start_bucket(local, model, lo, hi)
  // for each bucket, in the same order (the buffer's end first), once
  // model.gradients()[lo, hi) are final, progress_buckets(local) between
  // layers, and finish_buckets(local, model) after its backward (then
  // model.gradients() holds the sum of all replicas', the same bits as
  // sum_parts gives); the step ends in update_summed instead of
  // sum_and_update. A replica that failed still starts every bucket (the
  // others may wait in them) and no replica updates. Here false: the sum
  // stays at the step's end; forwarding groups keep that unless they say
  // otherwise (a deterministic group's exact sum). update_summed's update is
  // whole: a group whose sum_and_update leaves the optimizer state in pieces
  // completes it there first (mpi_group).
  virtual bool sums_in_buckets(const replica_model& /*model*/) const noexcept { return false; }
  virtual void start_bucket(std::size_t /*local*/, replica_model& /*model*/, std::size_t /*lo*/, std::size_t /*hi*/) {
    throw std::logic_error("dpar::nn::replica_group: this group does not sum in buckets");
  }
  virtual void progress_buckets(std::size_t /*local*/) {}
  virtual void finish_buckets(std::size_t /*local*/, replica_model& /*model*/) {
    throw std::logic_error("dpar::nn::replica_group: this group does not sum in buckets");
  }
  // The end of sum_and_update once model.gradients() holds the sum: the
  // clip, then the update.
  virtual void update_summed(std::size_t /*local*/, replica_model& model, float lr, float max_norm) {
    std::span<float> grads = model.gradients();
    if (max_norm > 0) scale(grads, clip_scale(max_norm, squares(grads)));
    model.update(lr);
  }
  // Collective, by every local replica, before the trainer reads
  // model.host_velocity() or the whole parameters: makes the optimizer state
  // whole where a sharded sum_and_update keeps only the replica's piece (and,
  // in model_parallel_group, completes the model-parallel layers' slices).
  // Nothing to do here.
  virtual void gather_velocity(std::size_t /*local*/, replica_model& /*model*/) {}
  // The piece of each optimizer state buffer (n elements) that local replica
  // `local` keeps where this group's sum_and_update shards the update (ZeRO
  // stage 1: 1/replicas of the state per replica): the trainer makes its
  // model with that window (replica_options::state_window), and
  // keep_state_piece narrows it again. None here, nor in wrappers
  // (forwarding_group), whose steps end in the whole update.
  virtual std::optional<index_range> state_piece(std::size_t /*local*/, std::size_t /*n*/) const {
    return std::nullopt;
  }
  // By each local replica, between steps (not collective): narrows the
  // model's optimizer state to its state_piece after a gather_velocity that
  // only a save needed.
  virtual void keep_state_piece(std::size_t local, replica_model& model) {
    if (!model.updates_ranges()) return;
    if (auto piece = state_piece(local, model.host_model().parameters().size())) model.set_state_window(*piece);
  }
  // True where sum_parts is the same bits however the parts are spread over
  // the replicas (nn/deterministic.hpp); the trainer then cuts batches into
  // parts of a fixed size at fixed positions.
  virtual bool sums_exactly() const noexcept { return false; }

 protected:
  replica_group(std::size_t size, std::size_t local_size, std::size_t first, int process_rank)
      : size_(size), local_size_(local_size), first_(first), process_rank_(process_rank), posted_(local_size) {}

  // Gradient clipping by the global norm (torch.nn.utils.clip_grad_norm_):
  // the factor for a gradient whose squared norm is `squared`.
  static float clip_scale(float max_norm, double squared) {
    return static_cast<float>(std::min(1.0, max_norm / (std::sqrt(squared) + 1e-6)));
  }
  static double squares(std::span<const float> g) {
    double s = 0;
    for (float v : g) s += static_cast<double>(v) * v;
    return s;
  }
  static void scale(std::span<float> g, float factor) {
    if (factor < 1.0f)
      for (float& v : g) v *= factor;
  }

  // The end of a sharded step (ZeRO stage 1), by every local replica:
  // model.gradients() holds the global sum on `own`, this replica's piece;
  // clip it by the whole gradient's norm (every piece's squares, summed over
  // the group in replica order) and update the parameters and optimizer
  // state there only. The state is narrowed to `own` first where it is whole
  // (after a save or a whole update, every replica's whole state is current).
  void update_piece(std::size_t local, replica_model& model, index_range own, float lr, float max_norm) {
    if (model.state_window() != own) model.set_state_window(own);
    const std::span<float> own_grads = model.gradients().subspan(own.begin, own.size());
    if (max_norm > 0) {
      double squared = squares(own_grads);
      all_reduce(local, std::span<double>(&squared, 1));
      scale(own_grads, clip_scale(max_norm, squared));
    }
    const std::pair<std::size_t, std::size_t> range{own.begin, own.end};
    model.update_ranges(lr, std::span(&range, 1));
  }
  // Widens the model's optimizer state to the whole (the window's values stay
  // in place), then gather(buffer) for each buffer, each as long as the
  // parameters and cut into pieces as they are (SGD's velocity; AdamW's m
  // and v): it completes the buffer from every replica's piece.
  template <class F>
  static void gather_state(replica_model& model, F&& gather) {
    const std::size_t n = model.host_model().parameters().size();
    model.set_state_window({0, n});
    std::span<float> state = model.host_velocity();
    for (std::size_t at = 0; n != 0 && at < state.size(); at += n) gather(state.subspan(at, n));
  }

  // out = the element-wise sum of this replica's parts, in order (out may be
  // mine[0] when it is the only part).
  template <class T>
  static void add_parts(std::span<const T* const> mine, std::span<T> out) {
    if (mine.size() == 1 && mine[0] == out.data()) return;
    std::vector<T> sum(out.size(), T(0));
    for (const T* part : mine)
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += part[i];
    std::copy(sum.begin(), sum.end(), out.begin());
  }

 private:
  template <class T>
  void add_then_all_reduce(std::size_t local, std::span<const T* const> mine, std::span<T> out) {
    add_parts(mine, out);
    all_reduce(local, out);
  }

  std::size_t size_, local_size_, first_;
  int process_rank_;
  std::vector<const std::span<const float>*> posted_;  // exchange's send blocks, one list per local replica
};

// The replicas of another group (`inner`), with what that group does
// forwarded to it: where the replicas run and compute (run, process_of,
// make_model, device_replicas, copy_gradients, lockstep_passes) and how they
// meet (all_reduce, broadcast, barrier, exchange). The sums of a step
// (sum_parts, sum_and_update, gather_velocity, sums_exactly) are
// replica_group's own, on the forwarded collectives, not the inner group's:
// so a wrapper that changes sum_parts is the one its sum_and_update and
// batch sums use. The base of the groups that wrap another and change a few
// calls (deterministic_group, model_parallel_group): they override only those.
class forwarding_group : public replica_group {
 public:
  explicit forwarding_group(std::unique_ptr<replica_group> inner)
      : replica_group(checked(inner).size(), inner->local_size(), inner->first(), inner->process_rank()),
        inner_(std::move(inner)) {}

  replica_group& inner() noexcept { return *inner_; }
  const replica_group& inner() const noexcept { return *inner_; }

  int process_of(std::size_t g) const override { return inner_->process_of(g); }
  void run(const std::function<void(std::size_t)>& f) override { inner_->run(f); }
  void all_reduce(std::size_t local, std::span<float> data) override { inner_->all_reduce(local, data); }
  void all_reduce(std::size_t local, std::span<double> data) override { inner_->all_reduce(local, data); }
  void all_reduce(std::size_t local, std::span<std::uint64_t> data) override { inner_->all_reduce(local, data); }
  void broadcast(std::size_t local, std::span<std::byte> data, std::size_t root) override {
    inner_->broadcast(local, data, root);
  }
  void barrier(std::size_t local) override { inner_->barrier(local); }
  void exchange(std::size_t local, std::span<const std::span<const float>> send,
                std::span<const std::span<float>> recv) override {
    inner_->exchange(local, send, recv);
  }
  bool lockstep_passes() const noexcept override { return inner_->lockstep_passes(); }
  std::unique_ptr<replica_model> make_model(std::size_t local, const sequential& model,
                                            const replica_options& options) override {
    return inner_->make_model(local, model, options);
  }
  bool device_replicas() const noexcept override { return inner_->device_replicas(); }
  void copy_gradients(std::size_t local, std::span<const float> from, std::span<float> to) override {
    inner_->copy_gradients(local, from, to);
  }

 protected:
  // For a group with more replicas than the inner group's, numbered its own
  // way (mpi_group: every rank runs an inner group): its size, first replica
  // and MPI rank; the local replicas are the inner group's.
  forwarding_group(std::unique_ptr<replica_group> inner, std::size_t size, std::size_t first, int process_rank)
      : replica_group(size, checked(inner).local_size(), first, process_rank), inner_(std::move(inner)) {}

 private:
  static const replica_group& checked(const std::unique_ptr<replica_group>& inner) {
    if (!inner) throw std::invalid_argument("dpar::nn::forwarding_group: no inner group");
    return *inner;
  }

  std::unique_ptr<replica_group> inner_;
};

// One replica, in the calling thread: every collective is the identity.
class sequential_group : public replica_group {
 public:
  sequential_group() : replica_group(1, 1, 0, 0) {}
  void run(const std::function<void(std::size_t)>& f) override { f(0); }
  void all_reduce(std::size_t, std::span<float>) override {}
  void all_reduce(std::size_t, std::span<double>) override {}
  void all_reduce(std::size_t, std::span<std::uint64_t>) override {}
  void broadcast(std::size_t, std::span<std::byte>, std::size_t) override {}
  void barrier(std::size_t) override {}
};

// One replica per thread of `pool`, all in this process, meeting in a
// dpar::communicator. A replica that throws aborts the others' pending
// collectives; the communicator is then replaced (a poisoned one stays
// poisoned) and the first error reaches the caller of run.
class thread_group final : public replica_group {
 public:
  explicit thread_group(thread_pool& pool)
      : replica_group(pool.size(), pool.size(), 0, 0), pool_(pool), comm_(make_comm()) {}

  void run(const std::function<void(std::size_t)>& f) override {
    if (local_size() == 1) return f(0);
    if (pool_.concurrency() != local_size())
      throw std::logic_error("dpar::nn: " + std::to_string(local_size()) +
                             " replicas need the pool's threads, but they were started from inside a pool job");
    try {
      comm_->run(pool_, [&](std::size_t rank, std::size_t) { f(rank); });
    } catch (...) {
      comm_ = make_comm();
      throw;
    }
  }
  void all_reduce(std::size_t local, std::span<float> data) override { reduce(local, data); }
  void all_reduce(std::size_t local, std::span<double> data) override { reduce(local, data); }
  void all_reduce(std::size_t local, std::span<std::uint64_t> data) override { reduce(local, data); }
  void broadcast(std::size_t local, std::span<std::byte> data, std::size_t root) override {
    if (comm_) comm_->broadcast(local, data, root);
  }
  void barrier(std::size_t local) override {
    if (comm_) comm_->barrier(local);
  }

  // ZeRO stage 1 for threads: reduce-scatter the gradients, each replica
  // updates its own slice of the parameters and velocity, all-gather the
  // parameters. The same bits as the default (each element is the same
  // rank-order sum and the same element-wise update), with 1/K of the update
  // per replica. Optimizer state (velocity, AdamW's moments) stays sharded:
  // each replica always updates the same slice (it depends only on the
  // length and K), so it keeps the state of that slice only
  // (state_piece), and gather_velocity makes it whole for the rare reader
  // (save).
  // Gathering it every step as well made this step's end about 10% slower
  // (784-256-128-10 MLP, K = 2: ~82 against ~74 us; the whole update ~99 us).
  // Models that update whole only (updates_ranges() false) take the default path.
  void sum_and_update(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                      replica_model& model, float lr, float max_norm) override {
    if (!comm_ || !model.updates_ranges())
      return replica_group::sum_and_update(local, mine, first, total, model, lr, max_norm);
    std::span<float> grads = model.gradients();
    add_parts(mine, grads);
    comm_->reduce_scatter(local, grads);
    update_piece(local, model, *state_piece(local, grads.size()), lr, max_norm);
    comm_->all_gather(local, model.host_model().parameters());
  }
  void gather_velocity(std::size_t local, replica_model& model) override {
    if (comm_) gather_state(model, [&](std::span<float> state) { comm_->all_gather(local, state); });
  }
  std::optional<index_range> state_piece(std::size_t local, std::size_t n) const override {
    if (!comm_) return std::nullopt;
    auto [lo, hi] = comm_->slice<float>(local, n);
    return index_range{lo, hi};
  }

 private:
  std::unique_ptr<communicator> make_comm() const {
    return local_size() > 1 ? std::make_unique<communicator>(local_size()) : nullptr;
  }
  template <class T>
  void reduce(std::size_t local, std::span<T> data) {
    if (comm_) comm_->all_reduce(local, data);
  }

  thread_pool& pool_;
  std::unique_ptr<communicator> comm_;
};

// What every replica of a step throws from a batch_sync sum when a replica
// failed before it: that replica reports its own error at the step's end.
struct batch_aborted : std::runtime_error {
  batch_aborted() : std::runtime_error("dpar::nn: another replica failed during the batch") {}
};

// The batch_sync of one replica's step, over any replica group: layers'
// statistics (batch_norm's sums) combined over every part of the global
// batch through sum_parts of doubles: in replica order, exactly under
// dpar::deterministic (the same bits for any replica count), over MPI ranks
// and ranks x threads as the group's sum_parts does, over a GPU group's host
// threads. Written once here, so every kind of group has it.
//
// Each part carries one more value, a failure flag, so that a replica that
// fails between two sums (a throwing layer or loss, a bad label) does not
// leave the others waiting: it calls fail(), which takes part in the next
// sum every replica expects (their lengths: sequential::sync_sizes) with the
// flag set, and every replica then throws batch_aborted from that sum. A
// replica without samples runs no layer or loss of its own between sums, so
// its only failures are those every replica has at the same sum.
class group_batch_sync final : public batch_sync {
 public:
  // parts: this replica's parts [first, first + parts) of `total`; sizes: the
  // lengths of the step's sums, in order.
  group_batch_sync(replica_group& group, std::size_t local, std::size_t first, std::size_t parts, std::size_t total,
                   std::span<const std::size_t> sizes)
      : group_(group), local_(local), first_(first), parts_(parts), total_(total), sizes_(sizes) {}

  void sum(std::span<const double* const> mine, std::span<double> out) override {
    if (mine.size() != parts_ || next_ >= sizes_.size() || out.size() != sizes_[next_])
      throw std::logic_error("dpar::nn::group_batch_sync: sum " + std::to_string(next_) + " of " +
                             std::to_string(out.size()) + " values over " + std::to_string(mine.size()) +
                             " parts does not match the model's (a batch_layer must sum once per forward and "
                             "backward, forward_sums_size() and backward_sums_size() values)");
    exchange(mine, out, false);
  }
  // By a replica that failed: joins the next sum the others wait in, if any.
  void fail() {
    if (next_ >= sizes_.size()) return;
    std::vector<double> out(sizes_[next_]);
    try {
      exchange({}, out, true);
    } catch (const batch_aborted&) {
    }
  }

 private:
  void exchange(std::span<const double* const> mine, std::span<double> out, bool failed) {
    const std::size_t n = out.size(), w = n + 1;
    buffer_.assign(parts_ * w, 0.0);
    std::vector<const double*> parts(parts_);
    for (std::size_t p = 0; p < parts_; ++p) {
      if (!failed) std::copy(mine[p], mine[p] + n, buffer_.data() + p * w);
      buffer_[p * w + n] = failed ? 1.0 : 0.0;
      parts[p] = buffer_.data() + p * w;
    }
    std::vector<double> sum(w);
    group_.sum_parts(local_, parts, first_, total_, std::span<double>(sum));
    ++next_;
    if (sum[n] != 0) throw batch_aborted();
    std::copy(sum.begin(), sum.begin() + static_cast<std::ptrdiff_t>(n), out.begin());
  }

  replica_group& group_;
  std::size_t local_, first_, parts_, total_;
  std::span<const std::size_t> sizes_;
  std::size_t next_ = 0;  // sums done
  std::vector<double> buffer_;
};

// The group a policy's replicas form. Specialize for new kinds of policy.
template <class Policy>
struct replica_group_for {
  static_assert(sizeof(Policy) == 0,
                "dpar::nn: no replica group for this policy (for dpar::mpi(...) include <dpar/nn/mpi.hpp>)");
};

template <>
struct replica_group_for<sequenced_policy> {
  static std::unique_ptr<replica_group> make(const sequenced_policy&) { return std::make_unique<sequential_group>(); }
};

template <>
struct replica_group_for<parallel_policy> {
  static std::unique_ptr<replica_group> make(const parallel_policy& p) {
    return std::make_unique<thread_group>(p.pool());
  }
};

template <execution_policy Policy>
std::unique_ptr<replica_group> make_replica_group(const Policy& policy) {
  return replica_group_for<std::remove_cvref_t<Policy>>::make(policy);
}

}  // namespace dpar::nn
