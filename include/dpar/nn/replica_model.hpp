#pragma once
// One replica's copy of the model and optimizer state, wherever it computes.
// The trainer drives every replica through this interface, so it has no
// branch for where a replica runs: a replica group (replica_group.hpp) makes
// the kind its replicas need (host_replica_model here; gpu_replica_model in
// nn/cuda.hpp).
//
// The host mirror (host_model().parameters(), host_velocity()) is the state
// the trainer broadcasts, hashes, saves and restores. push() sends the mirror
// to where the replica computes; pull() brings that state back into it. For a
// host replica both are no-ops: the mirror is the state.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include "layers.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "tensor.hpp"

namespace dpar::nn {

// {loss sum, correct count} of a shard (the count is 0 against tensor targets).
using shard_totals = std::pair<double, std::size_t>;

// What every replica model is made with: the trainer's optimizer options and loss.
struct replica_options {
  sgd_options sgd{};
  loss_function loss{};
  std::optional<adamw_options> adamw{};  // set: AdamW instead of SGD
};

class replica_model {
 public:
  virtual ~replica_model() = default;

  // A host tensor of rows x cols to gather a shard into (the cheapest one to
  // compute from: pinned memory for a GPU replica), valid until the next call.
  virtual tensor& input_buffer(std::size_t rows, std::size_t cols) = 0;
  // Forward, loss and backward on a shard x (host memory; labels in range),
  // leaving the gradient of (loss sum / total) in gradients().
  virtual shard_totals compute_gradients(const tensor& x, std::span<const std::int32_t> labels,
                                         std::size_t total) = 0;
  // Loss sum and correct count of a shard; the gradients are left alone.
  virtual shard_totals evaluate(const tensor& x, std::span<const std::int32_t> labels) = 0;
  // The same two against a tensor of targets (a row per sample), for losses
  // that take one. Host replicas compute them; a kind that does not (GPU
  // replicas, which compute the built-in label losses on the device) refuses.
  virtual shard_totals compute_target_gradients(const tensor& /*x*/, const tensor& /*targets*/,
                                                std::size_t /*total*/) {
    throw std::invalid_argument("dpar::nn: this kind of replica trains on integer labels only, not tensor targets");
  }
  virtual shard_totals evaluate_targets(const tensor& /*x*/, const tensor& /*targets*/) {
    throw std::invalid_argument("dpar::nn: this kind of replica evaluates integer labels only, not tensor targets");
  }
  virtual void zero_gradients() = 0;
  // The gradient buffer, in the memory its group's all_reduce(span<float>) takes.
  virtual std::span<float> gradients() = 0;
  // One optimizer step from gradients().
  virtual void update(float lr) = 0;
  // The count of updates made so far, for an optimizer that depends on it
  // (AdamW's bias correction): a resumed run continues it.
  virtual void set_updates(std::uint64_t /*count*/) {}

  virtual sequential& host_model() = 0;
  // The optimizer's state: SGD's velocity, AdamW's moments (m then v), each a
  // multiple of the parameter count long.
  virtual std::span<float> host_velocity() = 0;
  virtual void push() {}
  virtual void pull() {}
};

// A replica on the CPU, in its own thread: the model, its optimizer and loss.
class host_replica_model final : public replica_model {
 public:
  host_replica_model(const sequential& m, const replica_options& o)
      : model_(m), opt_(make_optimizer(m.parameters().size(), o)), loss_(o.loss) {}

  tensor& input_buffer(std::size_t rows, std::size_t cols) override {
    batch_.resize(rows, cols);
    return batch_;
  }
  shard_totals compute_gradients(const tensor& x, std::span<const std::int32_t> labels,
                                 std::size_t total) override {
    const tensor& logits = model_.forward(x);
    grad_out_.resize(logits.rows(), logits.cols());
    double loss = loss_(logits, labels, &grad_out_, total);
    std::size_t correct = count_correct(logits, labels);
    model_.backward(grad_out_);
    return {loss, correct};
  }
  shard_totals evaluate(const tensor& x, std::span<const std::int32_t> labels) override {
    const tensor& logits = model_.forward(x);
    return {loss_(logits, labels, nullptr, x.rows()), count_correct(logits, labels)};
  }
  shard_totals compute_target_gradients(const tensor& x, const tensor& targets, std::size_t total) override {
    const tensor& out = model_.forward(x);
    grad_out_.resize(out.rows(), out.cols());
    double loss = loss_(out, targets, &grad_out_, total);
    model_.backward(grad_out_);
    return {loss, 0};
  }
  shard_totals evaluate_targets(const tensor& x, const tensor& targets) override {
    return {loss_(model_.forward(x), targets, nullptr, x.rows()), 0};
  }
  void zero_gradients() override {
    auto g = model_.gradients();
    std::fill(g.begin(), g.end(), 0.0f);
  }
  std::span<float> gradients() override { return model_.gradients(); }
  void update(float lr) override { update(lr, 0, model_.parameters().size()); }
  // The same step for parameters [first, last) only (a sharded update, thread_group).
  void update(float lr, std::size_t first, std::size_t last) {
    std::visit([&](auto& opt) { opt.step(model_.parameters(), model_.gradients(), lr, first, last); }, opt_);
  }
  // The same step for the elements of several ranges, counted as one update
  // (AdamW's bias correction): a model-parallel replica updates the shared
  // parameters and its own slices only (nn/model_parallel.hpp).
  void update(float lr, std::span<const std::pair<std::size_t, std::size_t>> ranges) {
    std::visit(
        [&](auto& opt) {
          std::uint64_t done = 0;
          if constexpr (std::is_same_v<std::decay_t<decltype(opt)>, adamw>) done = opt.steps();
          for (auto [first, last] : ranges) {
            if constexpr (std::is_same_v<std::decay_t<decltype(opt)>, adamw>) opt.set_steps(done);
            opt.step(model_.parameters(), model_.gradients(), lr, first, last);
          }
          if constexpr (std::is_same_v<std::decay_t<decltype(opt)>, adamw>) opt.set_steps(done + 1);
        },
        opt_);
  }
  void set_updates(std::uint64_t count) override {
    if (auto* a = std::get_if<adamw>(&opt_)) a->set_steps(count);
  }
  sequential& host_model() override { return model_; }
  std::span<float> host_velocity() override {
    if (auto* a = std::get_if<adamw>(&opt_)) return a->state();
    return std::get<sgd>(opt_).velocity();
  }

 private:
  using optimizer = std::variant<sgd, adamw>;
  static optimizer make_optimizer(std::size_t n, const replica_options& o) {
    if (o.adamw) return adamw(n, *o.adamw);
    return sgd(n, o.sgd);
  }

  sequential model_;
  optimizer opt_;
  loss_function loss_;
  tensor grad_out_, batch_;
};

}  // namespace dpar::nn
