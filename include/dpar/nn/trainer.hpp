#pragma once
// Data-parallel SGD. One replica per thread of the policy's pool, each with its
// own copy of the model (parameters, gradient buffer, activations) and of the
// optimizer state. Per step every replica runs forward/backward on its shard of
// the global batch, the gradient buffers are all-reduced in one call, and every
// replica applies the same update, so the replicas stay bitwise identical.
//
// K replicas versus one: the all-reduce adds the replicas' gradients in rank
// order, and each replica's GEMM sums its own shard, so K changes only how the
// batch sum is grouped. In float32 that moves parameters by about 1e-7
// relative over 20 steps (test_nn_trainer checks 1e-5 for K = 2, 3, 4). The
// same K and seed give bitwise-identical runs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../collective.hpp"
#include "../execution.hpp"
#include "checkpoint.hpp"
#include "idx.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "tensor.hpp"

namespace dpar::nn {

struct train_options {
  std::size_t batch = 128;
  std::uint64_t seed = 1;  // data order (model initialization is the caller's)
  lr_schedule schedule = lr_schedule::constant(0.05f);
  sgd_options sgd{};
  // Debug check: after every step, verify all replicas hold identical parameters.
  bool check_replicas = false;
};

struct step_result {
  double loss_sum = 0;      // sum of per-sample losses over the global batch
  std::size_t correct = 0;  // samples whose argmax was right (before the update)
  std::size_t samples = 0;
};

// Hash of a model's layer list, stored in checkpoints to refuse a mismatched model.
inline std::uint64_t layout_hash(const sequential& m) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ '|') * 1099511628211ull;
  };
  mix(std::to_string(m.in_features()));
  for (std::size_t i = 0; i < m.size(); ++i) mix(m[i].name());
  return h;
}

class data_parallel_trainer {
 public:
  // Replicas come from the policy: dpar::seq gives one, dpar::par.on(pool) one
  // per pool thread. Initial parameters are broadcast from replica 0.
  data_parallel_trainer(dpar::sequenced_policy, const sequential& model, train_options options)
      : data_parallel_trainer(nullptr, model, std::move(options)) {}
  data_parallel_trainer(const dpar::parallel_policy& policy, const sequential& model, train_options options)
      : data_parallel_trainer(&policy.pool(), model, std::move(options)) {}

  std::size_t replicas() const noexcept { return replicas_.size(); }
  std::size_t steps() const noexcept { return step_; }
  std::size_t epochs() const noexcept { return epoch_; }
  const train_options& options() const noexcept { return options_; }
  // Replica `r`'s model (all replicas hold the same parameters).
  const sequential& model(std::size_t r = 0) const { return replicas_.at(r)->model; }

  // One SGD step on a global batch (x's rows with their labels), split evenly
  // over the replicas.
  step_result train_step(const tensor& x, std::span<const std::int32_t> labels) {
    if (labels.size() != x.rows())
      throw std::invalid_argument("dpar::nn::data_parallel_trainer: " + std::to_string(x.rows()) + " samples but " +
                                  std::to_string(labels.size()) + " labels");
    check_batch(x.cols(), labels);
    return step(x.rows(), [&](replica&, std::size_t first, std::size_t count) {
      return std::pair{x.rows_view(first, count), labels.subspan(first, count)};
    });
  }

  // The order of the samples in epoch e: a permutation drawn from (seed, e),
  // so a resumed run sees the same batches as an uninterrupted one.
  std::vector<std::size_t> epoch_order(const dataset& data, std::size_t epoch) const {
    std::vector<std::size_t> order(data.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 rng(options_.seed * 0x9E3779B97F4A7C15ull + epoch + 1);
    std::shuffle(order.begin(), order.end(), rng);
    return order;
  }

  // One pass over the data in batches of options().batch (the last may be short).
  // progress(samples_done, samples_total, mean_loss_so_far) is called after each step.
  step_result train_epoch(const dataset& data,
                          const std::function<void(std::size_t, std::size_t, double)>& progress = {}) {
    if (data.labels.size() != data.images.rows())
      throw std::invalid_argument("dpar::nn::data_parallel_trainer: data set has " +
                                  std::to_string(data.images.rows()) + " samples but " +
                                  std::to_string(data.labels.size()) + " labels");
    check_batch(data.images.cols(), data.labels);
    step_result total;
    if (data.size() == 0) {
      ++epoch_;
      return total;
    }
    auto order = epoch_order(data, epoch_);
    std::size_t features = data.images.cols(), batch = options_.batch;
    std::size_t steps = (data.size() + batch - 1) / batch, step0 = step_;
    // One pool job for the whole epoch (SPMD): the replicas meet only in the
    // gradient all-reduce, not in a fork and a join per step as well.
    for (auto& r : replicas_) r->epoch_results.assign(steps, step_result{});
    run_replicas([&](std::size_t rank, std::size_t k) {
      replica& rep = *replicas_[rank];
      for (std::size_t j = 0; j < steps; ++j) {
        std::size_t begin = j * batch, count = std::min(batch, data.size() - begin);
        // Each replica gathers its own shard's samples.
        replica_step(rank, k, count, options_.schedule(step0 + j), [&](replica& r, std::size_t first, std::size_t n) {
          r.batch_x.resize(n, features);
          r.batch_y.resize(n);
          for (std::size_t i = 0; i < n; ++i) {
            std::size_t s = order[begin + first + i];
            std::copy(data.images.row(s), data.images.row(s) + features, r.batch_x.row(i));
            r.batch_y[i] = data.labels[s];
          }
          return std::pair{tensor::view(r.batch_x.data(), n, features), std::span<const std::int32_t>(r.batch_y)};
        });
        // Each step's result has its own slot, written before the all-reduce:
        // replica 0 may read every replica's slot j once its all-reduce j is done.
        rep.epoch_results[j] = rep.result;
        if (options_.check_replicas) {
          if (comm_) comm_->barrier(rank);
          if (rank == 0) check_replicas(step0 + j + 1);
          if (comm_) comm_->barrier(rank);
        }
        if (rank == 0 && progress) {
          for (auto& r : replicas_) {
            total.loss_sum += r->epoch_results[j].loss_sum;
            total.samples += r->epoch_results[j].samples;
          }
          progress(total.samples, data.size(), total.loss_sum / static_cast<double>(total.samples));
        }
      }
    });
    step_ = step0 + steps;
    total = {};
    for (std::size_t j = 0; j < steps; ++j)
      for (auto& r : replicas_) {  // step by step, in rank order: deterministic
        total.loss_sum += r->epoch_results[j].loss_sum;
        total.correct += r->epoch_results[j].correct;
        total.samples += r->epoch_results[j].samples;
      }
    ++epoch_;
    return total;
  }

  // Loss sum and correct count over a data set, evaluated in parallel: each
  // replica takes a contiguous part, in chunks.
  step_result evaluate(const dataset& data, std::size_t chunk = 1000) {
    std::size_t n = data.size();
    run_replicas([&](std::size_t rank, std::size_t k) {
      replica& r = *replicas_[rank];
      r.result = {};
      std::size_t first = n * rank / k, last = n * (rank + 1) / k;
      for (std::size_t b = first; b < last; b += chunk) {
        std::size_t c = std::min(chunk, last - b);
        const tensor& logits = r.model.forward(data.images.rows_view(b, c));
        auto ys = std::span<const std::int32_t>(data.labels).subspan(b, c);
        r.result.loss_sum += loss_(r.loss, logits, ys, nullptr, c);
        r.result.correct += count_correct(logits, ys);
        r.result.samples += c;
      }
    });
    step_result total;
    for (auto& r : replicas_) {
      total.loss_sum += r->result.loss_sum;
      total.correct += r->result.correct;
      total.samples += r->result.samples;
    }
    return total;
  }

  // Throws std::logic_error if any replica's parameters differ from replica 0's.
  void check_replicas() const { check_replicas(step_); }


  void save(const std::string& file) const {
    checkpoint c;
    c.epoch = epoch_;
    c.step = step_;
    c.seed = options_.seed;
    c.replicas = replicas_.size();
    c.layout = layout_hash(replicas_[0]->model);
    auto p = replicas_[0]->model.parameters();
    auto v = replicas_[0]->opt.velocity();
    c.parameters.assign(p.begin(), p.end());
    c.velocity.assign(v.begin(), v.end());
    save_checkpoint(file, c);
  }

  // Restores parameters, optimizer state and progress into every replica.
  void resume(const std::string& file) {
    checkpoint c = load_checkpoint(file);
    const sequential& m = replicas_[0]->model;
    if (c.layout != layout_hash(m) || c.parameters.size() != m.parameters().size() ||
        c.velocity.size() != c.parameters.size())
      throw checkpoint_error(file, "written for a different model (" + std::to_string(c.parameters.size()) +
                                       " parameters; this model has " + std::to_string(m.parameters().size()) + ")");
    if (c.seed != options_.seed)
      throw checkpoint_error(file, "written by a run with seed " + std::to_string(c.seed) + ", this run has seed " +
                                       std::to_string(options_.seed));
    for (auto& r : replicas_) {
      std::copy(c.parameters.begin(), c.parameters.end(), r->model.parameters().begin());
      std::copy(c.velocity.begin(), c.velocity.end(), r->opt.velocity().begin());
    }
    epoch_ = c.epoch;
    step_ = c.step;
  }

 private:
  struct replica {
    replica(const sequential& m, sgd_options o) : model(m), opt(m.parameters().size(), o) {}
    sequential model;
    sgd opt;
    tensor grad_out;
    softmax_cross_entropy loss;
    step_result result;
    std::vector<step_result> epoch_results;  // per step of the current epoch
    tensor batch_x;  // this replica's shard, gathered by train_epoch
    std::vector<std::int32_t> batch_y;
  };

  data_parallel_trainer(dpar::thread_pool* pool, const sequential& model, train_options options)
      : pool_(pool), options_(std::move(options)) {
    if (options_.batch == 0) throw std::invalid_argument("dpar::nn::data_parallel_trainer: batch size must be positive");
    std::size_t k = pool_ ? pool_->size() : 1;
    for (std::size_t r = 0; r < k; ++r) replicas_.push_back(std::make_unique<replica>(model, options_.sgd));
    if (k > 1) comm_ = std::make_unique<dpar::communicator>(k);
    run_replicas([&](std::size_t rank, std::size_t) {
      if (comm_) comm_->broadcast(rank, replicas_[rank]->model.parameters(), 0);
    });
  }

  void check_replicas(std::size_t after_step) const {
    auto p0 = replicas_[0]->model.parameters();
    for (std::size_t r = 1; r < replicas_.size(); ++r) {
      auto pr = replicas_[r]->model.parameters();
      auto diff = std::mismatch(p0.begin(), p0.end(), pr.begin());
      if (diff.first != p0.end())
        throw std::logic_error("dpar::nn::data_parallel_trainer: replica " + std::to_string(r) +
                               " diverged from replica 0 at parameter " + std::to_string(diff.first - p0.begin()) +
                               " after step " + std::to_string(after_step));
    }
  }
  // Validates labels and features before the replicas start: a replica that
  // threw would abort the others' all-reduce and leave the replicas unequal.
  void check_batch(std::size_t features, std::span<const std::int32_t> labels) const {
    std::size_t classes = replicas_[0]->model.out_features();
    if (features != replicas_[0]->model.in_features())
      throw std::invalid_argument("dpar::nn::data_parallel_trainer: samples have " + std::to_string(features) +
                                  " features, the model takes " + std::to_string(replicas_[0]->model.in_features()));
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= classes)
        throw std::out_of_range("dpar::nn::data_parallel_trainer: label " + std::to_string(labels[i]) +
                                " of sample " + std::to_string(i) + " is outside [0, " + std::to_string(classes) + ")");
  }

  // One step on a global batch of n samples; shard(replica, first, count)
  // gives a replica its samples [first, first + count) as (tensor, labels).
  template <class Shard>
  step_result step(std::size_t n, Shard shard) {
    if (n == 0) throw std::invalid_argument("dpar::nn::data_parallel_trainer: empty batch");
    float lr = options_.schedule(step_);
    run_replicas([&](std::size_t rank, std::size_t k) { replica_step(rank, k, n, lr, shard); });
    ++step_;
    if (options_.check_replicas) check_replicas();
    step_result total;
    for (auto& r : replicas_) {  // rank order: deterministic
      total.loss_sum += r->result.loss_sum;
      total.correct += r->result.correct;
      total.samples += r->result.samples;
    }
    return total;
  }

  // Replica `rank`'s part of one step on a global batch of n samples:
  // forward/backward on its shard, the gradient all-reduce, the update.
  template <class Shard>
  void replica_step(std::size_t rank, std::size_t k, std::size_t n, float lr, Shard&& shard) {
    replica& r = *replicas_[rank];
    std::size_t first = n * rank / k, last = n * (rank + 1) / k;
    r.result = {};
    auto grads = r.model.gradients();
    if (first == last) {
      std::fill(grads.begin(), grads.end(), 0.0f);  // an empty shard adds nothing
    } else {
      auto [xs, ys] = shard(r, first, last - first);
      const tensor& logits = r.model.forward(xs);
      r.grad_out.resize(logits.rows(), logits.cols());
      // Gradient of (shard loss sum) / n: the all-reduced sum is the global-batch mean.
      r.result.loss_sum = r.loss(logits, ys, &r.grad_out, n);
      r.result.correct = count_correct(logits, ys);
      r.result.samples = ys.size();
      r.model.backward(r.grad_out);
    }
    if (comm_) comm_->all_reduce(rank, grads);
    r.opt.step(r.model.parameters(), grads, lr);
  }

  static double loss_(const softmax_cross_entropy& l, const tensor& logits, std::span<const std::int32_t> ys,
                      tensor* grad, std::size_t total) {
    return l(logits, ys, grad, total);
  }

  // Runs f(rank, K) on K concurrent threads, one per replica. The
  // communicator's run makes a replica that throws abort the others' pending
  // collectives instead of leaving them waiting; it is then replaced by a fresh
  // one (a poisoned communicator stays poisoned) and the error reaches the caller.
  template <class F>
  void run_replicas(F&& f) {
    std::size_t k = replicas_.size();
    if (k == 1) {
      f(std::size_t{0}, std::size_t{1});
      return;
    }
    if (pool_->concurrency() != k)
      throw std::logic_error("dpar::nn::data_parallel_trainer: its " + std::to_string(k) +
                             " replicas need the pool's threads, but it was called from inside a pool job");
    try {
      comm_->run(*pool_, f);
    } catch (...) {
      comm_ = std::make_unique<dpar::communicator>(k);
      throw;
    }
  }

  dpar::thread_pool* pool_;
  train_options options_;
  std::vector<std::unique_ptr<replica>> replicas_;
  std::unique_ptr<dpar::communicator> comm_;
  std::size_t step_ = 0, epoch_ = 0;
};

}  // namespace dpar::nn
