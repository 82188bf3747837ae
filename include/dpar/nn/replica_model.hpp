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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../partition.hpp"
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
  // Set: the optimizer keeps the state of this window of the parameters only,
  // from the start (replica_model::set_state_window), where the replica's
  // kind keeps windows; the whole state is never allocated.
  std::optional<index_range> state_window{};
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
  // The mode the next calls compute in: the trainer's steps train, its
  // evaluate evaluates (dropout, batch_norm). Kinds without such layers may ignore it.
  virtual void set_mode(nn::mode) {}
  // Where the next compute_gradients' batch starts in the run: dropout's mask depends on it.
  virtual void set_position(std::uint64_t /*step*/, std::size_t /*first_sample*/) {}
  // All of this replica's parts of a batch at once, layer by layer, for a
  // model that couples the batch (sequential::couples_batch: batch_norm): x
  // holds the parts back to back, part p being samples [bounds[p], bounds[p
  // + 1]) of the batch; part p's gradient (of its loss sum / total) goes to
  // grads[p] and its loss sum to losses[p]; sync sums the layers' statistics
  // over every replica. Returns the correct count.
  virtual std::size_t compute_parts_gradients(const tensor& /*x*/, std::span<const std::int32_t> /*labels*/,
                                              std::span<const std::size_t> /*bounds*/, std::uint64_t /*step*/,
                                              std::size_t /*total*/, batch_sync& /*sync*/,
                                              std::span<float* const> /*grads*/, std::span<double> /*losses*/) {
    throw std::invalid_argument("dpar::nn: this kind of replica cannot run layers that couple the batch (batch_norm)");
  }
  virtual std::size_t compute_parts_gradients(const tensor& /*x*/, const tensor& /*targets*/,
                                              std::span<const std::size_t> /*bounds*/, std::uint64_t /*step*/,
                                              std::size_t /*total*/, batch_sync& /*sync*/,
                                              std::span<float* const> /*grads*/, std::span<double> /*losses*/) {
    throw std::invalid_argument("dpar::nn: this kind of replica cannot run layers that couple the batch (batch_norm)");
  }
  virtual void zero_gradients() = 0;
  // During the backward of the next compute_gradients calls: done(offset)
  // once gradients()[offset, size) are final, as sequential::on_backward (an
  // empty function stops it). Kinds that cannot say (GPU replicas) ignore
  // it: their gradients are final when compute_gradients returns.
  virtual void watch_backward(std::function<void(std::size_t)> /*done*/) {}
  // The gradient buffer, in the memory its group's all_reduce(span<float>) takes.
  virtual std::span<float> gradients() = 0;
  // One optimizer step from gradients().
  virtual void update(float lr) = 0;
  // For groups that share a step's update out among the replicas
  // (thread_group's sharded update, model_parallel_group's own slices): true
  // where gradients() and host_model().parameters() are the state this
  // replica computes with, in host memory, and update_ranges can update
  // parts of it. Other kinds (GPU replicas) take the whole update(lr).
  virtual bool updates_ranges() const noexcept { return false; }
  // One optimizer step, counted as one update (AdamW's bias correction), for
  // the elements of `ranges` only. Where updates_ranges() alone.
  virtual void update_ranges(float /*lr*/, std::span<const std::pair<std::size_t, std::size_t>> /*ranges*/) {
    throw std::logic_error("dpar::nn: this kind of replica updates its parameters whole (updates_ranges() is false)");
  }
  // The count of updates made so far, for an optimizer that depends on it
  // (AdamW's bias correction): a resumed run continues it.
  virtual void set_updates(std::uint64_t /*count*/) {}

  virtual sequential& host_model() = 0;
  // The optimizer's state: SGD's velocity, AdamW's moments (m then v),
  // state_size() values in all, each buffer as long as the parameters. The
  // replica keeps each buffer's elements [state_window()) only, back to back
  // in host_velocity(): all of them unless set_state_window narrowed it.
  virtual std::span<float> host_velocity() = 0;
  virtual std::size_t state_size() { return host_velocity().size(); }
  virtual index_range state_window() { return {0, host_model().parameters().size()}; }
  // Keeps the state of window w instead: elements also in the old window keep
  // their values, the others start at 0. A group that shards the update
  // (ZeRO stage 1) narrows it to the piece the replica updates and widens it
  // to gather the whole state. Where updates_ranges() alone; the others keep
  // the whole state.
  virtual void set_state_window(index_range w) {
    if (w != state_window())
      throw std::logic_error("dpar::nn: this kind of replica keeps its optimizer state whole (updates_ranges() is false)");
  }
  // Sets the state from the whole state (state_size() values): each buffer's
  // window (resume).
  void set_whole_state(std::span<const float> whole) {
    const index_range w = state_window();
    const std::size_t n = host_model().parameters().size();
    std::span<float> mine = host_velocity();
    for (std::size_t b = 0; b * w.size() < mine.size(); ++b)
      std::copy_n(whole.begin() + static_cast<std::ptrdiff_t>(b * n + w.begin), w.size(),
                  mine.begin() + static_cast<std::ptrdiff_t>(b * w.size()));
  }
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
  void set_mode(nn::mode m) override { model_.set_mode(m); }
  void set_position(std::uint64_t step, std::size_t first_sample) override {
    step_ = step;
    first_sample_ = first_sample;
  }
  shard_totals compute_gradients(const tensor& x, std::span<const std::int32_t> labels,
                                 std::size_t total) override {
    const tensor& logits = model_.forward(x, step_, first_sample_);
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
    const tensor& out = model_.forward(x, step_, first_sample_);
    grad_out_.resize(out.rows(), out.cols());
    double loss = loss_(out, targets, &grad_out_, total);
    model_.backward(grad_out_);
    return {loss, 0};
  }
  shard_totals evaluate_targets(const tensor& x, const tensor& targets) override {
    return {loss_(model_.forward(x), targets, nullptr, x.rows()), 0};
  }
  std::size_t compute_parts_gradients(const tensor& x, std::span<const std::int32_t> labels,
                                      std::span<const std::size_t> bounds, std::uint64_t step, std::size_t total,
                                      batch_sync& sync, std::span<float* const> grads,
                                      std::span<double> losses) override {
    return parts_gradients(x, labels, bounds, step, total, sync, grads, losses);
  }
  std::size_t compute_parts_gradients(const tensor& x, const tensor& targets, std::span<const std::size_t> bounds,
                                      std::uint64_t step, std::size_t total, batch_sync& sync,
                                      std::span<float* const> grads, std::span<double> losses) override {
    return parts_gradients(x, targets, bounds, step, total, sync, grads, losses);
  }
  void zero_gradients() override {
    auto g = model_.gradients();
    std::fill(g.begin(), g.end(), 0.0f);
  }
  std::span<float> gradients() override { return model_.gradients(); }
  void watch_backward(std::function<void(std::size_t)> done) override { model_.on_backward(std::move(done)); }
  void update(float lr) override {
    const std::pair<std::size_t, std::size_t> all{0, model_.parameters().size()};
    update_ranges(lr, std::span(&all, 1));
  }
  bool updates_ranges() const noexcept override { return true; }
  void update_ranges(float lr, std::span<const std::pair<std::size_t, std::size_t>> ranges) override {
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
  std::size_t state_size() override {
    return model_.parameters().size() * (std::holds_alternative<adamw>(opt_) ? 2 : 1);
  }
  index_range state_window() override {
    return std::visit([](auto& opt) { return opt.window(); }, opt_);
  }
  void set_state_window(index_range w) override {
    std::visit([&](auto& opt) { opt.set_window(w); }, opt_);
  }

 private:
  static std::span<const std::int32_t> rows_of(std::span<const std::int32_t> labels, std::size_t first,
                                               std::size_t count) {
    return labels.subspan(first, count);
  }
  static tensor rows_of(const tensor& targets, std::size_t first, std::size_t count) {
    return targets.rows_view(first, count);
  }
  static std::size_t correct_of(const tensor& out, std::span<const std::int32_t> labels) {
    return count_correct(out, labels);
  }
  static std::size_t correct_of(const tensor&, const tensor&) { return 0; }
  template <class Targets>
  std::size_t parts_gradients(const tensor& x, const Targets& ys, std::span<const std::size_t> bounds,
                              std::uint64_t step, std::size_t total, batch_sync& sync,
                              std::span<float* const> grads, std::span<double> losses) {
    const std::size_t parts = bounds.empty() ? 0 : bounds.size() - 1;
    std::vector<tensor> xs;
    std::vector<const tensor*> in, dys;
    for (std::size_t p = 0; p < parts; ++p) xs.push_back(x.rows_view(bounds[p] - bounds[0], bounds[p + 1] - bounds[p]));
    for (auto& t : xs) in.push_back(&t);
    model_.forward_parts(in, bounds.first(parts), step, &sync);
    part_grads_.resize(parts);
    std::size_t correct = 0;
    for (std::size_t p = 0; p < parts; ++p) {
      const tensor& out = model_.output(p);
      auto y = rows_of(ys, bounds[p] - bounds[0], bounds[p + 1] - bounds[p]);
      part_grads_[p].resize(out.rows(), out.cols());
      losses[p] = loss_(out, y, &part_grads_[p], total);
      correct += correct_of(out, y);
      dys.push_back(&part_grads_[p]);
    }
    model_.backward_parts(dys, grads, &sync);
    return correct;
  }

  using optimizer = std::variant<sgd, adamw>;
  static optimizer make_optimizer(std::size_t n, const replica_options& o) {
    if (o.adamw) return adamw(n, *o.adamw, o.state_window);
    return sgd(n, o.sgd, o.state_window);
  }

  sequential model_;
  optimizer opt_;
  loss_function loss_;
  tensor grad_out_, batch_;
  std::vector<tensor> part_grads_;  // dL/d(output) of each part (compute_parts_gradients)
  std::uint64_t step_ = 0;
  std::size_t first_sample_ = 0;
};

}  // namespace dpar::nn
