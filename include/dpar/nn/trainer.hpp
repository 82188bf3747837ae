#pragma once
// Data-parallel training (SGD or AdamW) on the replicas of any policy
// (replica_group.hpp): dpar::seq (one), dpar::par.on(pool) (one per pool
// thread), dpar::mpi(comm, inner)
// (ranks x the inner policy's replicas; include <dpar/nn/mpi.hpp>),
// dpar::gpu and dpar::multi_gpu({...}) (include <dpar/nn/cuda.hpp>). Each
// replica has its own copy of the model (parameters, gradient buffer,
// activations) and of the optimizer state: a replica_model its group made,
// which lives wherever the replica computes (replica_model.hpp). Per step
// every replica runs forward/backward on its shard of the global batch, the
// gradient buffers are all-reduced, and every replica applies the same
// update, so the replicas stay bitwise identical. (Thread replicas shard the
// last two: each sums and updates one slice, then they all-gather the
// parameters; the same bits, replica_group::sum_and_update.)
//
// K replicas versus one: the all-reduce adds the replicas' gradients in replica
// order, and each replica's GEMM sums its own shard, so K changes only how the
// batch sum is grouped. In float32 that moves parameters by about 1e-7
// relative over 20 steps (the tests check 1e-5). The same K and seed give
// bitwise-identical runs. Under dpar::deterministic(policy) any K gives the
// same bits: the replica group then sums exactly (sum_parts), and the trainer
// cuts batches into micro-batches at fixed positions (nn/deterministic.hpp).
//
// Failures. Every step ends in a collective that carries each replica's
// status with its loss and counts: a replica that failed (bad labels, a
// throwing layer) still joins it, no replica updates, and every replica of
// every process stops at the same point. The caller then gets the original
// exception in the process where it happened and a dpar::collective_error
// naming the replica and rank everywhere else, so no rank is left waiting.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../communicator.hpp"
#include "../execution.hpp"
#include "../partition.hpp"
#include "agreement.hpp"
#include "checkpoint.hpp"
#include "data_source.hpp"
#include "deterministic.hpp"
#include "detail/prefetch.hpp"
#include "idx.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "model_file.hpp"
#include "model_parallel.hpp"
#include "optim.hpp"
#include "replica_group.hpp"
#include "replica_model.hpp"
#include "tensor.hpp"

namespace dpar::nn {

struct train_options {
  std::size_t batch = 128;  // global batch: split over all replicas of all ranks
  std::uint64_t seed = 1;   // data order (model initialization is the caller's)
  // dpar::deterministic(policy) only: gradients are computed per micro-batch
  // of this many samples, at fixed positions of the global batch, so the run
  // does not depend on the replica count (nn/deterministic.hpp).
  std::size_t micro_batch = 64;
  lr_function schedule = lr_schedule::constant(0.05f);  // an lr_schedule or any float(std::size_t step)
  sgd_options sgd{};
  // Set: AdamW (torch.optim.AdamW) instead of SGD; `sgd` is then unused.
  std::optional<adamw_options> adamw{};
  // > 0: the summed gradient is scaled to at most this global (L2) norm
  // before the update (torch.nn.utils.clip_grad_norm_). CPU replicas only.
  float clip_norm = 0;
  // Gradient accumulation: each replica computes its share of a batch in
  // this many passes (at most one per sample), summing their gradients
  // before the one update: the batch of a step may hold this many times the
  // samples one pass holds in memory. Under dpar::deterministic the passes
  // are the micro-batches already (micro_batch), so this changes nothing.
  std::size_t accumulate = 1;
  // A loss_kind, a built-in loss (softmax_cross_entropy, mse, huber,
  // bce_with_logits) or any callable of their signature (loss.hpp); its form
  // (labels or tensor targets) is the form train_step, train_epoch and
  // evaluate then take.
  loss_function loss = loss_kind::softmax_cross_entropy;
  // Debug check: after every step, verify all replicas hold identical parameters
  // (thread replicas' sharded update all-gathers them, so there it always holds).
  bool check_replicas = false;
  // true: train_epoch gathers each replica's next batch on a helper thread
  // while the replica computes this one (a double buffer). It pays where a
  // core is spare (fewer replicas than cores, GPU replicas); with a replica on
  // every core the helpers only compete with them (bench/RESULTS.md, session 5).
  bool prefetch = false;
  // Gradient buckets: where the group can (MPI ranks of host replicas), the
  // sum of a step's gradients starts during backward, a bucket of layers at
  // a time from the last layer, each as soon as its gradients are final, so
  // that it runs while earlier layers compute (PyTorch DDP's buckets). A
  // bucket is whole layers of at least this many bytes of gradients; the
  // first layer's is summed at once (nothing is left to overlap). The same
  // bits as the sum at the step's end. 0, the default, keeps that: on the
  // machine measured (2 vCPUs, Open MPI 4.1, 2 and 4 ranks) a non-blocking
  // sum advances only inside MPI calls, i.e. between layers, and finished
  // later than the blocking one, so buckets lengthened the step's wait for
  // the sum (bench/RESULTS.md, session 7). Steps where a replica has
  // several parts (accumulate > 1, micro-batches under dpar::deterministic,
  // whose exact sum stays at the end), models that couple the batch and
  // model-parallel ones sum at the end whatever this says.
  std::size_t bucket_bytes = 0;
};

struct step_result {
  double loss_sum = 0;      // sum of per-sample losses over the global batch
  std::size_t correct = 0;  // samples whose argmax was right (before the update); 0 for tensor targets
  std::size_t samples = 0;
};

class data_parallel_trainer {
 public:
  // Replicas come from the policy (replica_group_for<Policy>). Initial
  // parameters are broadcast from replica 0. Under MPI, every rank constructs
  // the trainer with the same model layout and options.
  template <execution_policy Policy>
  data_parallel_trainer(const Policy& policy, const sequential& model, train_options options)
      : data_parallel_trainer(make_replica_group(policy), model, std::move(options)) {}

  // Over a group built by hand (a new kind of replica, tests).
  data_parallel_trainer(std::unique_ptr<replica_group> group, const sequential& model, train_options options)
      : group_(with_model_parallel(std::move(group), model)),
        options_(std::move(options)),
        couples_batch_(model.couples_batch()),
        sync_sizes_(model.sync_sizes()),
        buckets_(buckets_of(model, options_.bucket_bytes)) {
    if (!group_) throw std::invalid_argument("dpar::nn::data_parallel_trainer: no replica group");
    const std::exception_ptr early = failure_of([&] {
      if (options_.batch == 0)
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: batch size must be positive");
      if (options_.micro_batch == 0)
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: micro-batch size must be positive");
      if (options_.accumulate == 0)
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: accumulate must be at least 1 pass");
      if (!(options_.clip_norm >= 0))
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: clip_norm must be 0 (off) or positive");
      if (options_.clip_norm > 0 && group_->device_replicas())
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: gradient clipping runs on CPU replicas only");
      if (couples_batch_ && group_->lockstep_passes())
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: batch normalization and model-parallel layers "
                                    "in one model are not supported");
      check_schedule(options_.schedule);
    });
    for (std::size_t r = 0; r < group_->local_size(); ++r)  // ZeRO: each replica's piece of the optimizer state
      replicas_.push_back(std::make_unique<replica>(group_->make_model(
          r, model,
          {options_.sgd, options_.loss, options_.adamw, group_->state_piece(r, model.parameters().size())})));
    std::uint64_t layout = layout_hash(model) ^ model.parameters().size();
    run([&](std::size_t local, replica& r) {
      if (!agree(local, r, agreement(trainer_call::construct, options_), early)) return;
      std::size_t odd = first_different(local, layout);
      if (odd != group_->size()) {
        if (local == 0)
          outcome_ = {"dpar::nn::data_parallel_trainer: replica " + who(odd) + " has another model than replica 0",
                      outcome::kind::invalid};
        return;
      }
      group_->broadcast(local, std::as_writable_bytes(r.model->host_model().parameters()), 0);
      group_->broadcast(local, std::as_writable_bytes(r.model->host_model().state()), 0);
      r.model->push();
    });
  }

  std::size_t replicas() const noexcept { return group_->size(); }             // of all ranks
  std::size_t local_replicas() const noexcept { return group_->local_size(); }  // of this rank
  int rank() const noexcept { return group_->process_rank(); }                  // MPI rank; 0 without MPI
  std::size_t steps() const noexcept { return step_; }
  std::size_t epochs() const noexcept { return epoch_; }
  const train_options& options() const noexcept { return options_; }
  // The trained model: this rank's local replica `local` (all replicas hold the
  // same parameters), brought to the host if it computes on a device. With
  // model-parallel layers, each replica holds only its own slice of them
  // current after a step: call synchronize() (on every rank) first.
  const sequential& model(std::size_t local = 0) const {
    if (split_stale_)
      throw std::logic_error(
          "dpar::nn::data_parallel_trainer::model: the model-parallel layers' slices are spread over the replicas "
          "since the last step; call synchronize() (on every rank) first");
    auto& m = *replicas_.at(local)->model;
    m.pull();
    return m.host_model();
  }

  // Collective: completes every replica's parameters and optimizer state
  // where they are kept in slices (model-parallel layers), so that model()
  // reads them whole. (A sharded update's optimizer state is each replica's
  // piece again afterwards.)
  void synchronize() {
    run([&](std::size_t local, replica& r) {
      group_->gather_velocity(local, *r.model);
      group_->keep_state_piece(local, *r.model);
    });
    split_stale_ = false;
  }

  // Changes the learning-rate schedule from the next step on (every rank alike).
  void set_schedule(lr_function schedule) {
    check_schedule(schedule);
    options_.schedule = std::move(schedule);
  }

  // One optimizer step on a global batch (x's rows with their labels, or with the
  // rows of a tensor of targets), split evenly over the replicas. Under MPI
  // every rank passes the same batch.
  step_result train_step(const tensor& x, std::span<const std::int32_t> labels) { return step_on(x, labels); }
  step_result train_step(const tensor& x, const tensor& targets) { return step_on(x, targets); }
 private:
  // train_step's body, for labels (a span) or targets (a tensor).
  template <class Targets>
  step_result step_on(const tensor& x, const Targets& targets) {
    float lr = 0;
    const std::exception_ptr early = failure_of([&] {
      require_loss_for(targets);
      if (count_of(targets) != x.rows())
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: " + std::to_string(x.rows()) + " samples but " +
                                    std::to_string(count_of(targets)) + noun_of(targets));
      if (x.rows() == 0) throw std::invalid_argument("dpar::nn::data_parallel_trainer: empty batch");
      check_features(x.cols());
      check_progress(1);
      lr = options_.schedule(step_);
    });
    const agreement call = agreement(trainer_call::train_step, options_)
                               .progress(step_, epoch_)
                               .data(x.rows(), x.cols(), targets)
                               .learning_rates(std::span(&lr, 1));
    std::size_t after = step_ + 1;
    totals result{};
    split_stale_ = group_->lockstep_passes();
    run([&](std::size_t local, replica& r) {
      if (!agree(local, r, call, early)) return;
      r.model->set_mode(mode::train);
      auto shard = [&](replica&, std::size_t first, std::size_t count) {
        auto ys = rows_of(targets, first, count);
        check_targets(ys, first);
        return std::pair{x.rows_view(first, count), ys};
      };
      totals t{};
      if (!replica_step(local, r, x.rows(), step_, lr, shard, t)) return;
      if (local == 0) {
        result = t;
        step_ = after;
      }
      if (options_.check_replicas) check_lockstep(local, r, after);
    });
    return to_result(result);
  }

 public:

  // The order of the samples in epoch e: a permutation drawn from (seed, e),
  // so a resumed run sees the same batches as an uninterrupted one, and all
  // ranks agree without communicating.
  template <class Data>
    requires std::is_same_v<Data, dataset> || std::is_same_v<Data, tensor_dataset>
  std::vector<std::size_t> epoch_order(const Data& data, std::size_t epoch) const {
    return order_of(data.size(), epoch);
  }
  // A data source's; for a rank_shard, this rank's order of its own rows.
  std::vector<std::size_t> epoch_order(const data_source& data, std::size_t epoch) const {
    return order_of(data.size(), epoch, data.per_rank() ? stream_of_rank() : 0);
  }

  // One pass over the data in batches of options().batch (the last may be
  // short). Labels are checked before the first step. progress(samples_done,
  // samples_total, mean_loss_so_far), global figures, is called after each
  // step on every rank (in the calling thread).
  //
  // Under MPI every rank passes the same data set (in memory, or a
  // mapped_dataset of the same files): each replica gathers only its own
  // rows of each batch, the rows the 1-rank run gives it. Or every rank
  // passes its own rank_shard, of any size: replica g takes its share
  // (batch * (g + 1) / replicas - batch * g / replicas samples) of each step
  // from its rank's shard, in an order drawn from (seed, epoch, rank); the
  // epoch lasts as many steps as the longest shard needs, ranks that have run
  // out join those steps with no samples, and each step's gradient is that
  // of the mean loss over the samples the step really had. The shards'
  // shapes must agree (an empty one too: tensor(0, features)).
  step_result train_epoch(const dataset& data,
                          const std::function<void(std::size_t, std::size_t, double)>& progress = {}) {
    return train_epoch(memory_source(data), progress);
  }
  step_result train_epoch(const tensor_dataset& data,
                          const std::function<void(std::size_t, std::size_t, double)>& progress = {}) {
    return train_epoch(memory_source(data), progress);
  }
  step_result train_epoch(const data_source& data,
                          const std::function<void(std::size_t, std::size_t, double)>& progress = {}) {
    if (data.target_columns() == 0) return epoch_over<std::span<const std::int32_t>>(data, progress);
    return epoch_over<tensor>(data, progress);
  }
 private:
  // A replica's batch of a step, gathered from a data source: sample rows,
  // inputs, and labels or targets. Two per replica: the step computes from
  // one while the helper thread fills the other.
  struct batch_buffer {
    std::vector<std::size_t> rows;
    tensor x, targets;
    std::vector<std::int32_t> labels;
  };
  // A batch of n samples cut into the parts whose gradients and losses
  // sum_parts adds. Over a group that sums exactly: parts of `size` samples at
  // fixed positions, so each part is computed alike (the same GEMM shapes)
  // whoever owns it. Else (size 0) `passes` parts per replica (fewer if it
  // has fewer samples), even shares.
  struct batch_parts {
    std::size_t n, size, count;
    std::vector<std::size_t> begins;  // if set (rank_shard steps): part p begins at begins[p]
    std::size_t begin(std::size_t p) const {
      if (!begins.empty()) return begins[p];
      return size ? std::min(n, p * size) : even_split_begin(n, count, p);
    }
  };
  // Replica `local`'s part of step j: the step's batch cut into parts, the
  // parts it owns, and its samples: positions [from, from + count) of the
  // epoch's order.
  struct step_plan {
    batch_parts parts;
    std::size_t first = 0, last = 0, from = 0, count = 0;
  };

  // train_epoch's body.
  template <class Targets>
  step_result epoch_over(const data_source& data, const std::function<void(std::size_t, std::size_t, double)>& progress) {
    const bool shards = data.per_rank();
    std::vector<std::size_t> sizes;  // rank_shard: every rank's sample count, agreed first
    if (shards) sizes = shard_sizes<Targets>(data);
    const std::size_t n = shards ? std::accumulate(sizes.begin(), sizes.end(), std::size_t{0}) : data.size();
    const std::size_t batch = options_.batch, step0 = step_;
    const std::size_t steps = shards ? shard_steps(sizes) : n / batch + (n % batch != 0);  // not (n + batch - 1) / batch: it wraps
    std::vector<float> rates;  // the schedule runs here, in the calling thread, not on every replica
    const std::exception_ptr early = failure_of([&] {
      if (!shards) check_source<Targets>(data);
      check_progress(steps);
      rates.resize(steps);
      for (std::size_t j = 0; j < steps; ++j) rates[j] = options_.schedule(step0 + j);
    });
    const agreement call = agreement(trainer_call::train_epoch, options_)
                               .progress(step_, epoch_)
                               .data(n, data.features(), contents_of(data))
                               .learning_rates(rates);
    const auto order = order_of(data.size(), epoch_, shards ? stream_of_rank() : 0);
    totals sum{};
    split_stale_ = group_->lockstep_passes();
    // One run for the whole epoch (SPMD): the replicas meet only in the
    // collectives, not in a fork and a join per step as well.
    run([&](std::size_t local, replica& r) {
      if (!agree(local, r, call, early)) return;
      r.model->set_mode(mode::train);
      if (n == 0) {
        if (local == 0) ++epoch_;
        return;
      }
      if (!check_share(local, r, data, shards)) return;
      auto plan = [&](std::size_t j) {
        return shards ? shard_step(local, j, sizes) : global_step(local, j * batch, std::min(batch, n - j * batch));
      };
      auto fill = [&](batch_buffer& b, const step_plan& p) {
        b.rows.assign(order.begin() + static_cast<std::ptrdiff_t>(p.from),
                      order.begin() + static_cast<std::ptrdiff_t>(p.from + p.count));
        gather(data, b, Targets{});
      };
      std::array<step_plan, 2> plans{plan(0), {}};
      std::optional<detail::background_job> helper;  // after plans: it may still be filling one when the run ends
      if (options_.prefetch && steps > 1) {
        helper.emplace();
        helper->start([&] { fill(r.buffers[0], plans[0]); });
      }
      totals done{};
      for (std::size_t j = 0; j < steps; ++j) {
        batch_buffer& b = r.buffers[j % 2];
        const step_plan& p = plans[j % 2];
        try {
          if (helper) helper->wait();
          else fill(b, p);
        } catch (...) {
          r.error = std::current_exception();  // reported by the step's status collective
        }
        if (helper && j + 1 < steps && !r.error) {
          plans[(j + 1) % 2] = plan(j + 1);
          helper->start([&, j] { fill(r.buffers[(j + 1) % 2], plans[(j + 1) % 2]); });
        }
        auto shard = [&](replica&, std::size_t first, std::size_t c) {
          std::size_t at = first - p.parts.begin(p.first);
          return std::pair{b.x.rows_view(at, c), rows_in(b, at, c, Targets{})};
        };
        totals t{};
        if (!replica_step(local, r, p.parts, p.first, p.last, step0 + j, rates[j], shard, t)) return;
        if (!helper && j + 1 < steps) plans[(j + 1) % 2] = plan(j + 1);
        // Every replica holds the same global totals (t came out of an
        // all-reduce): local replica 0 keeps the count and reports progress.
        for (std::size_t i = 1; i < t.size(); ++i) done[i] += t[i];
        if (local == 0) {
          step_ = step0 + j + 1;
          sum = done;
        }
        if (options_.check_replicas && !check_lockstep(local, r, step0 + j + 1)) return;
        if (local == 0 && progress) {
          try {
            progress(static_cast<std::size_t>(done[samples_at]), n, done[loss_at] / done[samples_at]);
          } catch (...) {
            r.error = std::current_exception();  // reported by the next status collective
          }
        }
      }
      totals last{};
      if (sync(local, r, last) && local == 0) ++epoch_;  // a failed progress call of the last step
    });
    return to_result(sum);
  }

  // Replica `local`'s part of a step on samples [begin, begin + count) of the epoch's order.
  step_plan global_step(std::size_t local, std::size_t begin, std::size_t count) const {
    step_plan p;
    p.parts = parts_of(count, options_.micro_batch, options_.accumulate);
    std::tie(p.first, p.last) = owned(local, p.parts);
    p.from = begin + p.parts.begin(p.first);
    p.count = p.parts.begin(p.last) - p.parts.begin(p.first);
    return p;
  }

  // rank_shard: global replica g's share of every step.
  std::size_t quota(std::size_t g) const {
    const std::size_t b = options_.batch, k = group_->size();
    return b / k * (g + 1) + b % k * (g + 1) / k - (b / k * g + b % k * g / k);  // b*(g+1)/k - b*g/k without overflow
  }
  // Each rank's samples per step: the quotas of its replicas.
  std::vector<std::size_t> rank_quotas(std::size_t processes) const {
    std::vector<std::size_t> q(processes, 0);
    for (std::size_t g = 0; g < group_->size(); ++g) q[static_cast<std::size_t>(group_->process_of(g))] += quota(g);
    return q;
  }
  // Steps of an epoch over shards of these sizes: as many as the longest needs.
  std::size_t shard_steps(const std::vector<std::size_t>& sizes) const {
    auto q = rank_quotas(sizes.size());
    std::size_t steps = 0;
    for (std::size_t p = 0; p < sizes.size(); ++p)
      if (sizes[p] != 0) steps = std::max(steps, sizes[p] / q[p] + (sizes[p] % q[p] != 0));
    return steps;
  }
  // rank_shard: replica `local`'s part of step j. Each rank takes its quota of
  // samples from its shard's order, its replicas in turn; the step's batch
  // is every replica's samples, in replica order, cut into parts as
  // parts_of cuts a replica's share (micro-batches where sums are exact).
  step_plan shard_step(std::size_t local, std::size_t j, const std::vector<std::size_t>& sizes) const {
    const std::size_t k = group_->size(), me = group_->first() + local;
    const auto q = rank_quotas(sizes.size());
    std::vector<std::size_t> taken(sizes.size(), 0);  // of each rank's samples this step, by its replicas so far
    step_plan p;
    std::vector<std::size_t> begins{0};
    std::size_t n = 0;
    for (std::size_t g = 0; g < k; ++g) {
      const auto rank = static_cast<std::size_t>(group_->process_of(g));
      const std::size_t start = j * q[rank], left = sizes[rank] > start ? std::min(q[rank], sizes[rank] - start) : 0;
      const std::size_t c = std::min(quota(g), left - std::min(left, taken[rank]));
      if (g == me) {
        p.first = begins.size() - 1;
        p.from = start + taken[rank];
        p.count = c;
      }
      taken[rank] += quota(g);
      const std::size_t pieces = group_->sums_exactly() ? c / options_.micro_batch + (c % options_.micro_batch != 0)
                                                        : std::min(c, options_.accumulate);
      for (std::size_t i = 1; i <= pieces; ++i)
        begins.push_back(n + (group_->sums_exactly() ? std::min(c, i * options_.micro_batch) : c * i / pieces));
      n += c;
      if (g == me) p.last = begins.size() - 1;
    }
    p.parts = {n, 0, begins.size() - 1, std::move(begins)};
    return p;
  }

  // rank_shard: agrees on the shapes and options, then every rank's sample
  // count (collective; raises on every rank if a rank fails or differs).
  template <class Targets>
  std::vector<std::size_t> shard_sizes(const data_source& data) {
    const std::exception_ptr early = failure_of([&] {
      check_source<Targets>(data);
      if (options_.batch < group_->size())
        throw std::invalid_argument("dpar::nn::data_parallel_trainer: a batch of " + std::to_string(options_.batch) +
                                    " over " + std::to_string(group_->size()) +
                                    " replicas leaves replicas without samples of their rank's shard; train on "
                                    "shards with a batch of at least the replica count");
    });
    const agreement call =
        agreement(trainer_call::train_epoch, options_).progress(step_, epoch_).data(0, data.features(), contents_of(data));
    const auto processes = static_cast<std::size_t>(group_->process_of(group_->size() - 1)) + 1;
    std::vector<std::uint64_t> sizes(processes, 0);
    run([&](std::size_t local, replica& r) {
      if (!agree(local, r, call, early)) return;
      std::vector<std::uint64_t> mine(processes, 0);
      if (local == 0) mine[static_cast<std::size_t>(group_->process_rank())] = data.size();
      group_->all_reduce(local, std::span<std::uint64_t>(mine));
      if (local == 0) sizes = mine;
    });
    return {sizes.begin(), sizes.end()};
  }

  // What the ranks compare of a data source beside its size and features:
  // its contents where it offers them, the form of its targets, and whether
  // it is a rank's shard.
  static std::uint64_t contents_of(const data_source& data) {
    return data.fingerprint() ^ (data.target_columns() * 0x9E3779B97F4A7C15ull) ^
           (data.per_rank() ? 0xD6E8FEB86659FD93ull : 0);
  }
  // Checks that can fail before any collective (then every rank raises).
  template <class Targets>
  void check_source(const data_source& data) const {
    require_loss_for(Targets{});
    data.check();
    if (data.size() != 0) check_features(data.features());
  }
  // The order of a rank's own shard depends on the rank as well.
  std::uint64_t stream_of_rank() const { return static_cast<std::uint64_t>(group_->process_rank()) + 1; }

  // A buffer's rows gathered from the source: inputs and labels, or inputs and targets.
  static void gather(const data_source& data, batch_buffer& b, std::span<const std::int32_t>) {
    b.x.resize(b.rows.size(), data.features());
    data.gather_inputs(b.rows, b.x.data());
    b.labels.resize(b.rows.size());
    data.gather_labels(b.rows, b.labels.data());
  }
  static void gather(const data_source& data, batch_buffer& b, const tensor&) {
    b.x.resize(b.rows.size(), data.features());
    data.gather_inputs(b.rows, b.x.data());
    b.targets.resize(b.rows.size(), data.target_columns());
    data.gather_targets(b.rows, b.targets.data());
  }
  static std::span<const std::int32_t> rows_in(const batch_buffer& b, std::size_t at, std::size_t c,
                                               std::span<const std::int32_t>) {
    return std::span<const std::int32_t>(b.labels).subspan(at, c);
  }
  static tensor rows_in(const batch_buffer& b, std::size_t at, std::size_t c, const tensor&) {
    return b.targets.rows_view(at, c);
  }

 public:

  // Loss sum and correct count over a data set, evaluated in parallel: each
  // replica of each rank takes a contiguous part, in chunks. Under MPI every
  // rank passes the same data set (or each its rank_shard); the totals are global.
  step_result evaluate(const dataset& data, std::size_t chunk = 1000) { return evaluate(memory_source(data), chunk); }
  step_result evaluate(const tensor_dataset& data, std::size_t chunk = 1000) {
    return evaluate(memory_source(data), chunk);
  }
  step_result evaluate(const data_source& data, std::size_t chunk = 1000) {
    if (data.target_columns() == 0) return evaluate_over<std::span<const std::int32_t>>(data, chunk);
    return evaluate_over<tensor>(data, chunk);
  }
 private:
  // evaluate's body.
  template <class Targets>
  step_result evaluate_over(const data_source& data, std::size_t chunk) {
    const bool shards = data.per_rank();
    const std::exception_ptr early = failure_of([&] {
      check_source<Targets>(data);
      if (chunk == 0) throw std::invalid_argument("dpar::nn::data_parallel_trainer::evaluate: chunk must be positive");
    });
    const agreement call = agreement(trainer_call::evaluate, options_)
                               .progress(step_, epoch_)
                               .data(shards ? 0 : data.size(), data.features(), contents_of(data))
                               .evaluation_chunk(chunk);
    // Shards: each replica one part, its share of its rank's shard.
    const std::size_t n = data.size();
    const batch_parts parts = shards ? batch_parts{n, 0, group_->size(), {}} : parts_of(n, std::max<std::size_t>(chunk, 1));
    totals result{};
    run([&](std::size_t local, replica& r) {
      if (!agree(local, r, call, early)) return;
      r.model->set_mode(mode::eval);  // dropout off, batch_norm on its running statistics
      // (not structured bindings: lambdas cannot capture them before C++20 compilers all allow it)
      std::size_t first = group_->first() + local, last = first + 1;
      if (!shards) std::tie(first, last) = owned(local, parts);
      const std::size_t begin = shards ? even_split_begin(n, local_replicas(), local) : parts.begin(first);
      const std::size_t end = shards ? even_split_begin(n, local_replicas(), local + 1) : parts.begin(last);
      r.part_losses.assign(last - first, 0.0);
      auto part_begin = [&](std::size_t p) { return shards ? (p == first ? begin : end) : parts.begin(p); };
      batch_buffer& buf = r.buffers[0];
      totals t{};
      if (group_->lockstep_passes()) {
        if (!evaluate_in_lockstep<Targets>(local, r, data, chunk, parts, t)) return;
      } else {
        try {
          for (std::size_t p = first; p < last; ++p)
            // at += c, not at += chunk: that wraps for a chunk near SIZE_MAX
            for (std::size_t at = part_begin(p), stop = part_begin(p + 1), c = 0; at < stop; at += c) {
              c = std::min(chunk, stop - at);
              buf.rows.resize(c);
              std::iota(buf.rows.begin(), buf.rows.end(), at);
              gather(data, buf, Targets{});
              auto ys = rows_in(buf, 0, c, Targets{});
              check_targets(ys, at);
              auto [loss, correct] = evaluate_on(*r.model, buf.x, ys);
              r.part_losses[p - first] += loss;
              t[correct_at] += static_cast<double>(correct);
              t[samples_at] += static_cast<double>(c);
            }
        } catch (...) {
          r.error = std::current_exception();
        }
      }
      if (sum_losses(local, r, first, parts.count, t) && local == 0) result = t;
    });
    return to_result(result);
  }
 public:

  // Throws std::logic_error naming the first replica (and its rank) whose
  // parameters differ from replica 0's. Collective under MPI.
  void check_replicas() const {
    run([&](std::size_t local, replica& r) { check_lockstep(local, r, step_); });
    split_stale_ = false;
  }

  // Collective: replica 0 (rank 0) writes the checkpoint atomically, the
  // others wait; an error writing it (a full disk) raises on every rank.
  // Where each replica keeps a piece of the optimizer state (ZeRO), the
  // whole state is gathered for the save and dropped after it.
  void save(const std::string& file) const {
    run([&](std::size_t local, replica& r) {
      group_->gather_velocity(local, *r.model);
      if (group_->first() + local == 0) {
        try {
          checkpoint c;
          c.epoch = epoch_;
          c.step = step_;
          c.seed = options_.seed;
          c.replicas = replicas();
          r.model->pull();
          const sequential& m = r.model->host_model();
          c.layout = layout_hash(m);
          c.schedule = schedule_fingerprint(options_.schedule);
          c.parameters.assign(m.parameters().begin(), m.parameters().end());
          c.velocity.assign(r.model->host_velocity().begin(), r.model->host_velocity().end());
          c.state.assign(m.state().begin(), m.state().end());
          save_checkpoint(file, c);
        } catch (...) {
          r.error = std::current_exception();
        }
      }
      group_->keep_state_piece(local, *r.model);
      totals t{};
      sync(local, r, t);
    });
    split_stale_ = false;
  }

  // Collective: every rank reads the file and restores parameters, optimizer
  // state and progress into its replicas. A checkpoint of another model, seed
  // or learning-rate schedule (the one in effect when it was saved) is refused
  // (on every rank). One written with another replica count is
  // accepted: the replicas hold one shared state, so training continues the
  // same run, bitwise with the same replica count, or with any count under
  // dpar::deterministic(policy) (else another count groups the gradient sums
  // differently, about 1e-7 relative per step).
  void resume(const std::string& file) {
    checkpoint c;
    run([&](std::size_t local, replica& r) {
      if (local == 0) {
        try {
          c = load_checkpoint(file);
          const sequential& m = r.model->host_model();
          if (c.velocity.empty() && !c.parameters.empty())
            throw checkpoint_error(file, "a model file (save_model), not a training checkpoint: it holds no "
                                         "optimizer state or progress; load it with load_model() instead");
          if (c.layout != layout_hash(m) || c.parameters.size() != m.parameters().size())
            throw checkpoint_error(file, "written for a different model (" + std::to_string(c.parameters.size()) +
                                             " parameters; this model has " +
                                             std::to_string(m.parameters().size()) + ")");
          if (c.velocity.size() != r.model->state_size())
            throw checkpoint_error(file, "written with another optimizer (" + std::to_string(c.velocity.size()) +
                                             " state values; this run's keeps " +
                                             std::to_string(r.model->state_size()) + ")");
          // Format 01 and 02 checkpoints hold no state: they come from models without any.
          if (c.state.size() != m.state().size())
            throw checkpoint_error(file, "holds " + std::to_string(c.state.size()) +
                                             " state values (running statistics); this model keeps " +
                                             std::to_string(m.state().size()));
          if (c.seed != options_.seed)
            throw checkpoint_error(file, "written by a run with seed " + std::to_string(c.seed) +
                                             ", this run has seed " + std::to_string(options_.seed));
          // 0: a checkpoint of format 01, which did not record the schedule.
          if (c.schedule != 0 && c.schedule != schedule_fingerprint(options_.schedule))
            throw checkpoint_error(file,
                                   "written by a run with another learning-rate schedule (another epoch count, "
                                   "warmup or rate?); resume with the options that wrote it, then call "
                                   "set_schedule() to change the schedule on purpose");
        } catch (...) {
          r.error = std::current_exception();
        }
      }
      // every rank loaded the same checkpoint; the others read c only once local replica 0 is known to have loaded it
      agreement loaded(trainer_call::resume, options_);
      if (local == 0 && !r.error) loaded.loaded(c);
      if (!agree(local, r, loaded, nullptr)) return;
      std::copy(c.parameters.begin(), c.parameters.end(), r.model->host_model().parameters().begin());
      r.model->set_whole_state(c.velocity);  // of each buffer, the window the replica keeps
      std::copy(c.state.begin(), c.state.end(), r.model->host_model().state().begin());
      r.model->set_updates(c.step);
      r.model->push();
      if (local == 0) {
        epoch_ = c.epoch;
        step_ = c.step;
      }
    });
    split_stale_ = false;
  }

 private:
  struct replica {
    explicit replica(std::unique_ptr<replica_model> m) : model(std::move(m)) {}
    std::unique_ptr<replica_model> model;  // parameters, optimizer state, loss: wherever the group put them
    batch_buffer buffers[2];               // its batches gathered by train_epoch (two: see prefetch)
    std::vector<std::vector<float>> part_grads;  // gradients of its parts but the last (which stays in the model)
    std::vector<double> part_losses;
    std::exception_ptr error;  // this replica's failure in the current run
  };

  // What stopped the last run, as every replica agreed (written by local replica 0).
  struct outcome {
    enum class kind { ok, failed, diverged, invalid };
    std::string message;
    kind what = kind::ok;
  };

  // The status collective's payload: [failed replicas, loss sum, correct, samples].
  using totals = std::array<double, 4>;
  static constexpr std::size_t failed_at = 0, loss_at = 1, correct_at = 2, samples_at = 3;


  static step_result to_result(const totals& t) {
    return {t[loss_at], static_cast<std::size_t>(t[correct_at]), static_cast<std::size_t>(t[samples_at])};
  }

  static void check_schedule(const lr_function& f) {
    if (!f) throw std::invalid_argument("dpar::nn::data_parallel_trainer: the learning-rate schedule is empty");
  }

  // Runs f(local, replica) on every local replica, then raises what stopped it.
  template <class F>
  void run(F&& f) const {
    group_->run([&](std::size_t local) {
      replica& r = *replicas_[local];
      r.error = nullptr;
      if (local == 0) outcome_ = {};  // written by local replica 0 only, read after the run
      f(local, r);
    });
    for (auto& r : replicas_)
      if (r->error) std::rethrow_exception(r->error);  // the original error, where it happened
    switch (outcome_.what) {
      case outcome::kind::ok: return;
      case outcome::kind::failed: throw collective_error(outcome_.message);
      case outcome::kind::diverged: throw std::logic_error(outcome_.message);
      case outcome::kind::invalid: throw std::invalid_argument(outcome_.message);
    }
  }

  // "3 (rank 1)": global replica g and the MPI rank that runs it.
  std::string who(std::size_t g) const {
    return std::to_string(g) + " (rank " + std::to_string(group_->process_of(g)) + ")";
  }

  // [first, last) of n items for local replica `local` among all replicas.
  std::pair<std::size_t, std::size_t> share(std::size_t local, std::size_t n) const {
    const index_range r = even_split(n, group_->size(), group_->first() + local);
    return {r.begin, r.end};
  }

  batch_parts parts_of(std::size_t n, std::size_t size, std::size_t passes = 1) const {
    if (!group_->sums_exactly()) {
      const std::size_t k = group_->size(), per_replica = std::clamp<std::size_t>(n / k, 1, passes);
      return {n, 0, k * per_replica, {}};
    }
    return {n, size, n / size + (n % size != 0), {}};  // not (n + size - 1) / size: it wraps
  }
  // [first, last) of the parts local replica `local` owns: contiguous, in
  // replica order; none if they hold no sample (an even share of a batch
  // smaller than the replica count).
  std::pair<std::size_t, std::size_t> owned(std::size_t local, const batch_parts& parts) const {
    const index_range mine = even_split(parts.count, group_->size(), group_->first() + local);
    std::size_t first = mine.begin, last = mine.end;
    if (parts.begin(first) == parts.begin(last)) last = first;
    return {first, last};
  }

  // The status collective with t[loss_at] the sum of every replica's
  // part_losses (its parts [first, ...) of `total`), through sum_parts where
  // that is exact, so the loss is the same bits on any replica count.
  bool sum_losses(std::size_t local, replica& r, std::size_t first, std::size_t total, totals& t) const {
    t[loss_at] = 0;
    for (double l : r.part_losses) t[loss_at] += l;
    if (!sync(local, r, t)) return false;
    if (group_->sums_exactly()) {
      std::vector<const double*> mine;
      for (const double& l : r.part_losses) mine.push_back(&l);
      group_->sum_parts(local, mine, first, total, std::span<double>(&t[loss_at], 1));
    }
    return true;
  }

  // The status collective, by every replica: sums t over all replicas, with
  // this replica's failure in t[failed_at]. False, on every replica alike, if
  // any failed; then outcome_ names the first failed replica and its error.
  bool sync(std::size_t local, replica& r, totals& t) const {
    t[failed_at] = r.error ? 1.0 : 0.0;
    group_->all_reduce(local, std::span<double>(t));
    if (t[failed_at] == 0) return true;
    // Rare path: which replica failed first, and its message, for everyone.
    auto [root, text] = first_failure(*group_, local, r.error);
    if (local == 0) outcome_ = failed_at_replica(root, text);
    return false;
  }

  outcome failed_at_replica(std::size_t g, const std::string& message) const {
    return {"dpar::nn::data_parallel_trainer: replica " + who(g) + " failed: " + message, outcome::kind::failed};
  }

  // The ranks' agreement at the start of a call (agreement.hpp), with this
  // replica's failure so far, `early`: false, on every replica alike and with
  // outcome_ set, if a replica failed or the ranks differ.
  bool agree(std::size_t local, replica& r, const agreement& call, const std::exception_ptr& early) const {
    if (early) r.error = early;
    agreement_result a = nn::agree(*group_, local, call, r.error);
    if (a.what == agreement_result::kind::agreed) return true;
    if (local == 0)
      outcome_ = a.what == agreement_result::kind::failed ? failed_at_replica(a.failed_replica, a.message)
                                                          : outcome{std::move(a.message), outcome::kind::invalid};
    return false;
  }

  // evaluate's loop where a forward is collective (model-parallel layers):
  // one part per replica (the group does not sum exactly), every replica
  // runs as many chunks as the largest part needs, empty ones included, each
  // after the status collective. False, on every replica alike, if one failed.
  template <class Targets>
  bool evaluate_in_lockstep(std::size_t local, replica& r, const data_source& data, std::size_t chunk,
                            const batch_parts& parts, totals& t) const {
    const std::size_t g = group_->first() + local;
    std::size_t largest = 0;
    for (std::size_t p = 0; p < parts.count; ++p) largest = std::max(largest, parts.begin(p + 1) - parts.begin(p));
    const std::size_t rounds = largest / chunk + (largest % chunk != 0);
    const std::size_t begin = parts.begin(std::min(g, parts.count)), end = parts.begin(std::min(g + 1, parts.count));
    batch_buffer& buf = r.buffers[0];
    for (std::size_t i = 0, b = begin; i < rounds; ++i) {
      const std::size_t c = std::min(chunk, end - b);
      decltype(rows_in(buf, 0, c, Targets{})) ys{};
      if (!r.error) try {
          buf.rows.resize(c);
          std::iota(buf.rows.begin(), buf.rows.end(), b);
          gather(data, buf, Targets{});
          ys = rows_in(buf, 0, c, Targets{});
          check_targets(ys, b);
        } catch (...) {
          r.error = std::current_exception();
        }
      totals ready{};
      if (!sync(local, r, ready)) return false;
      try {
        auto [loss, correct] = evaluate_on(*r.model, buf.x, ys);
        if (!r.part_losses.empty()) r.part_losses[0] += loss;
        t[correct_at] += static_cast<double>(correct);
        t[samples_at] += static_cast<double>(c);
      } catch (...) {
        r.error = std::current_exception();
      }
      b += c;
    }
    return true;
  }

  // Steps counted past SIZE_MAX (a checkpoint's step count near it) would wrap.
  void check_progress(std::size_t steps) const {
    if (steps > std::numeric_limits<std::size_t>::max() - step_)
      throw std::overflow_error("dpar::nn::data_parallel_trainer: " + std::to_string(steps) + " more steps after " +
                                std::to_string(step_) + " overflow the step count");
  }

  // The first global replica whose `value` differs from replica 0's (size() if
  // none), the same on every replica: one all-reduce of a slot per replica.
  std::size_t first_different(std::size_t local, std::uint64_t value) const {
    std::vector<std::uint64_t> values(group_->size(), 0);
    values[group_->first() + local] = value;
    group_->all_reduce(local, std::span<std::uint64_t>(values));
    return static_cast<std::size_t>(std::find_if(values.begin(), values.end(), [&](auto v) { return v != values[0]; }) -
                                    values.begin());
  }

  // Compares a hash of every replica's parameters with replica 0's.
  bool check_lockstep(std::size_t local, replica& r, std::size_t after_step) const {
    std::uint64_t h = 1469598103934665603ull;
    if (group_->lockstep_passes()) group_->gather_velocity(local, *r.model);  // the split layers' slices, whole
    r.model->pull();
    for (auto values : {r.model->host_model().parameters(), r.model->host_model().state()})
      for (float p : values) {
        std::uint32_t bits;
        std::memcpy(&bits, &p, sizeof bits);
        h = (h ^ bits) * 1099511628211ull;
      }
    std::size_t odd = first_different(local, h);
    if (odd == group_->size()) return true;
    if (local == 0)
      outcome_ = {"dpar::nn::data_parallel_trainer: replica " + who(odd) + " diverged from replica 0 after step " +
                      std::to_string(after_step),
                  outcome::kind::diverged};
    return false;
  }

  void check_features(std::size_t features) const {
    std::size_t in = replicas_[0]->model->host_model().in_features();
    if (features != in)
      throw std::invalid_argument("dpar::nn::data_parallel_trainer: samples have " + std::to_string(features) +
                                  " features, the model takes " + std::to_string(in));
  }
  // The loss takes the form of targets given (checked before any replica runs).
  void require_loss_for(std::span<const std::int32_t>) const {
    if (!options_.loss.takes_labels())
      throw std::invalid_argument(
          "dpar::nn::data_parallel_trainer: the loss takes a tensor of targets; pass targets, not labels");
  }
  void require_loss_for(const tensor&) const {
    if (!options_.loss.takes_targets())
      throw std::invalid_argument(
          "dpar::nn::data_parallel_trainer: the loss takes integer labels; pass labels, not a tensor of targets");
  }
  // `stream` > 0: another order for the same (seed, epoch) (a rank's shard).
  std::vector<std::size_t> order_of(std::size_t n, std::size_t epoch, std::uint64_t stream = 0) const {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 rng(options_.seed * 0x9E3779B97F4A7C15ull + epoch + 1 + stream * 0xBF58476D1CE4E5B9ull);
    std::shuffle(order.begin(), order.end(), rng);
    return order;
  }

  // Labels (a span) and targets (a tensor's rows) alike: their count, name,
  // and rows [first, first + count).
  static std::size_t count_of(std::span<const std::int32_t> labels) { return labels.size(); }
  static std::size_t count_of(const tensor& targets) { return targets.rows(); }
  static const char* noun_of(std::span<const std::int32_t>) { return " labels"; }
  static const char* noun_of(const tensor&) { return " targets"; }
  static std::span<const std::int32_t> rows_of(std::span<const std::int32_t> labels, std::size_t first,
                                               std::size_t count) {
    return labels.subspan(first, count);
  }
  static tensor rows_of(const tensor& targets, std::size_t first, std::size_t count) {
    return targets.rows_view(first, count);
  }
  // A replica model's forward, loss (and backward) on labels or targets.
  static shard_totals gradients_on(replica_model& m, const tensor& x, std::span<const std::int32_t> labels,
                                   std::size_t total) {
    return m.compute_gradients(x, labels, total);
  }
  static shard_totals gradients_on(replica_model& m, const tensor& x, const tensor& targets, std::size_t total) {
    return m.compute_target_gradients(x, targets, total);
  }
  static shard_totals evaluate_on(replica_model& m, const tensor& x, std::span<const std::int32_t> labels) {
    return m.evaluate(x, labels);
  }
  static shard_totals evaluate_on(replica_model& m, const tensor& x, const tensor& targets) {
    return m.evaluate_targets(x, targets);
  }

  // Labels of samples [first, first + labels.size()) of a batch or data set
  // (tensor targets: the loss checks them).
  void check_targets(const tensor&, std::size_t) const {}
  void check_targets(std::span<const std::int32_t> labels, std::size_t first) const {
    std::size_t classes = replicas_[0]->model->host_model().out_features();
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= classes)
        throw std::out_of_range("dpar::nn::data_parallel_trainer: label " + std::to_string(labels[i]) +
                                " of sample " + std::to_string(first + i) + " is outside [0, " +
                                std::to_string(classes) + ")");
  }
  // Each replica checks the labels of its share of a data set (of its
  // rank's shard), a chunk at a time; false everywhere if any is bad.
  bool check_share(std::size_t local, replica& r, const data_source& data, bool shards) const {
    const std::size_t n = data.size(), l = local_replicas();
    auto [first, last] = shards ? std::pair{n * local / l, n * (local + 1) / l} : share(local, n);
    try {
      constexpr std::size_t chunk = 4096;
      std::vector<std::size_t> rows;
      std::vector<std::int32_t> labels;
      for (std::size_t at = first; data.target_columns() == 0 && at < last; at += rows.size()) {
        rows.resize(std::min(chunk, last - at));
        std::iota(rows.begin(), rows.end(), at);
        labels.resize(rows.size());
        data.gather_labels(rows, labels.data());
        check_targets(labels, at);
      }
    } catch (...) {
      r.error = std::current_exception();
    }
    totals t{};
    return sync(local, r, t);
  }

  // Replica `local`'s part of one step on a global batch of n samples:
  // forward/backward on each of its parts (shard(replica, first, count) gives
  // samples [first, first + count) as (tensor, labels)), the status
  // collective, the gradient sum, the update. t gets the global totals.
  // False, with no update anywhere, if any replica failed.
  template <class Shard>
  bool replica_step(std::size_t local, replica& r, std::size_t n, std::size_t step, float lr, Shard&& shard,
                    totals& t) const {
    const batch_parts parts = parts_of(n, options_.micro_batch, options_.accumulate);
    auto [first, last] = owned(local, parts);
    return replica_step(local, r, parts, first, last, step, lr, shard, t);
  }
  // The same with the parts given, and the replica's: [first, last).
  template <class Shard>
  bool replica_step(std::size_t local, replica& r, const batch_parts& parts, std::size_t first, std::size_t last,
                    std::size_t step, float lr, Shard&& shard, totals& t) const {
    const std::size_t n = parts.n;
    // In lockstep (model-parallel layers, whose forward is collective) a
    // replica without samples still runs one empty pass, and every pass
    // starts with the status collective, so that a replica whose shard
    // failed (bad labels) stops all before any forward.
    const bool lockstep = group_->lockstep_passes();
    const std::size_t passes = lockstep ? std::max<std::size_t>(last - first, 1) : last - first;
    auto grads = r.model->gradients();
    std::vector<const float*> mine;
    // Buckets: decided alike on every replica (at most one part each).
    const bool buckets = !couples_batch_ && !lockstep && !buckets_.empty() && parts.count <= group_->size() &&
                         group_->sums_in_buckets(*r.model);
    bucket_walk walk{*group_, local, *r.model, buckets_};
    if (buckets) r.model->watch_backward([&walk](std::size_t final_from) { walk.reached(final_from); });
    r.part_losses.assign(passes, 0.0);
    r.part_grads.resize(std::max<std::size_t>(r.part_grads.size(), passes));
    t = {};
    if (couples_batch_) {
      all_parts_at_once(local, r, parts, first, last, step, shard, t, mine);
    } else {
      for (std::size_t q = 0; q < passes && (lockstep || !r.error); ++q) {
        const std::size_t p = std::min(first + q, last), begin = parts.begin(p);
        decltype(shard(r, begin, 0)) part;
        if (!r.error) try {
            if (q > 0) {  // keep the previous part's gradient; the next pass overwrites the model's
              auto& kept = r.part_grads[q - 1];
              kept.resize(grads.size());
              group_->copy_gradients(local, grads, kept);
              mine.push_back(kept.data());
            }
            part = shard(r, begin, p < last ? parts.begin(p + 1) - begin : 0);
            // An empty pass: BLAS leaves a product over no rows unwritten, so
            // the replicated layers' gradients start at zero (the split
            // layers' slices are computed over the global batch all the same).
            if (count_of(part.second) == 0) r.model->zero_gradients();
          } catch (...) {
            r.error = std::current_exception();
          }
        if (lockstep) {
          totals ready{};
          if (!sync(local, r, ready)) return false;
        }
        if (!r.error) try {
            r.model->set_position(step, begin);
            // Gradient of (part loss sum) / n: the sum over all parts is the global-batch mean.
            auto [loss, correct] = gradients_on(*r.model, part.first, part.second, n);
            r.part_losses[q] = loss;
            t[correct_at] += static_cast<double>(correct);
            t[samples_at] += static_cast<double>(count_of(part.second));
          } catch (...) {
            r.error = std::current_exception();
          }
      }
      if (buckets) {
        r.model->watch_backward({});
        walk.finish(r, passes == 0);
      } else if (!r.error) {
        try {
          if (passes > 0) {
            mine.push_back(grads.data());
          } else if (!group_->sums_exactly()) {
            // No samples here (a batch smaller than the replica count): a zero
            // part, zeroed where the gradients live (device memory for GPU groups).
            r.model->zero_gradients();
            mine.push_back(grads.data());
          }
        } catch (...) {
          r.error = std::current_exception();
        }
      }
    }
    if (!sum_losses(local, r, first, parts.count, t)) return false;
    if (buckets)
      group_->update_summed(local, *r.model, lr, options_.clip_norm);
    else
      group_->sum_and_update(local, mine, first, parts.count, *r.model, lr,
                             options_.clip_norm);  // exact groups: no parts give zeros
    return true;
  }

  // The buckets of a model's gradient buffer for bucket_bytes: whole layers,
  // from the last, cut once a bucket holds `bytes`; none for 0 (or no parameters).
  static std::vector<std::pair<std::size_t, std::size_t>> buckets_of(const sequential& model, std::size_t bytes) {
    std::vector<std::pair<std::size_t, std::size_t>> buckets;
    if (bytes == 0) return buckets;
    std::vector<std::size_t> starts{0};
    for (std::size_t i = 0; i < model.size(); ++i) starts.push_back(starts.back() + model[i].parameter_count());
    std::size_t hi = starts.back();
    for (std::size_t i = model.size(); i-- > 0;)
      if (hi > starts[i] && (i == 0 || (hi - starts[i]) * sizeof(float) >= bytes)) {
        buckets.emplace_back(starts[i], hi);
        hi = starts[i];
      }
    return buckets;
  }

  // One replica's buckets during a step: each started once the backward has
  // made its range final, the group's sums advanced between layers.
  struct bucket_walk {
    replica_group& group;
    std::size_t local;
    replica_model& model;
    std::span<const std::pair<std::size_t, std::size_t>> buckets;
    std::size_t started = 0;

    void reached(std::size_t final_from) {
      if (started == buckets.size() || buckets[started].first < final_from) return group.progress_buckets(local);
      while (started < buckets.size() && buckets[started].first >= final_from) {
        auto [lo, hi] = buckets[started++];  // counted first: a bucket whose start throws is not started again
        group.start_bucket(local, model, lo, hi);
      }
    }
    // After the replica's passes: zero gradients if it had no samples, the
    // buckets not started yet (all of them where the model does not report
    // its backward, and after a failure: the others wait in them), the wait.
    void finish(replica& r, bool no_samples) {
      try {
        if (no_samples && !r.error) model.zero_gradients();
      } catch (...) {
        r.error = std::current_exception();
      }
      try {
        reached(0);
        group.finish_buckets(local, model);
      } catch (...) {
        if (!r.error) r.error = std::current_exception();
      }
    }
  };

  // replica_step for a model that couples the batch (batch_norm): the
  // replica's parts [first, last) in one forward and backward, layer by
  // layer, its layers' statistics summed over every replica through the
  // group (group_batch_sync). Every replica takes part in the sums, even
  // without samples or after a failure of its own.
  template <class Shard>
  void all_parts_at_once(std::size_t local, replica& r, const batch_parts& parts, std::size_t first, std::size_t last,
                         std::size_t step, Shard& shard, totals& t, std::vector<const float*>& mine) const {
    group_batch_sync sync(*group_, local, first, last - first, parts.count, sync_sizes_);
    std::vector<float*> out;  // part p's gradient: kept copies, the last one in the model's buffer
    for (std::size_t p = first; p < last; ++p) {
      float* g = r.model->gradients().data();
      if (p + 1 < last) {
        auto& kept = r.part_grads[p - first];
        kept.resize(r.model->gradients().size());
        g = kept.data();
      }
      out.push_back(g);
      mine.push_back(g);
    }
    std::vector<std::size_t> bounds;
    for (std::size_t p = first; p <= last; ++p) bounds.push_back(parts.begin(p));
    try {
      if (r.error) std::rethrow_exception(r.error);
      auto [xs, ys] = shard(r, bounds.front(), bounds.back() - bounds.front());
      std::size_t correct = r.model->compute_parts_gradients(xs, ys, bounds, step, parts.n, sync, out, r.part_losses);
      t[correct_at] = static_cast<double>(correct);
      t[samples_at] = static_cast<double>(count_of(ys));
      if (first == last && !group_->sums_exactly()) {  // no samples: a zero part
        r.model->zero_gradients();
        mine.push_back(r.model->gradients().data());
      }
    } catch (const batch_aborted&) {
      // another replica failed: its status reports it at the step's end
    } catch (...) {
      r.error = std::current_exception();
      sync.fail();
    }
  }

  std::unique_ptr<replica_group> group_;
  train_options options_;
  bool couples_batch_;                    // the model has a batch_layer: replica_step runs all parts at once
  std::vector<std::size_t> sync_sizes_;  // the lengths of its statistics' sums, in order
  std::vector<std::pair<std::size_t, std::size_t>> buckets_;  // [lo, hi) of the gradients, the buffer's end first
  std::vector<std::unique_ptr<replica>> replicas_;  // this rank's
  std::size_t step_ = 0, epoch_ = 0;
  mutable outcome outcome_;
  // Model-parallel layers' slices spread over the replicas since the last step (model() refuses).
  mutable bool split_stale_ = false;
};

}  // namespace dpar::nn
