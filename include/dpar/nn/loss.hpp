#pragma once
// Losses. Each returns the SUM of per-sample losses of a shard and writes the
// gradient of (sum / total) where `total` is the global batch size, so that
// summing the replicas' gradients (the all-reduce) gives the gradient of the
// global-batch mean, however unevenly the batch was split.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../algorithm.hpp"
#include "../execution.hpp"
#include "../functional.hpp"
#include "ops.hpp"
#include "tensor.hpp"

namespace dpar::nn {

namespace detail {
inline void check_batch(const char* who, const tensor& out, std::size_t labels, std::size_t total) {
  if (labels != out.rows())
    throw std::invalid_argument(std::string("dpar::nn::") + who + ": " + std::to_string(out.rows()) +
                                " outputs but " + std::to_string(labels) + " targets");
  if (total < out.rows())
    throw std::invalid_argument(std::string("dpar::nn::") + who + ": global batch size " + std::to_string(total) +
                                " is smaller than the shard's " + std::to_string(out.rows()));
}
// Labels must name a column of the k outputs.
inline void check_labels(const char* who, std::span<const std::int32_t> labels, std::size_t k) {
  for (std::size_t r = 0; r < labels.size(); ++r)
    if (labels[r] < 0 || static_cast<std::size_t>(labels[r]) >= k)
      throw std::out_of_range(std::string("dpar::nn::") + who + ": label " + std::to_string(labels[r]) + " at row " +
                              std::to_string(r) + " is outside [0, " + std::to_string(k) + ")");
}
}  // namespace detail

// Softmax over each row of logits, then cross-entropy against integer labels.
// Stable: log-sum-exp subtracts the row's maximum first.
struct softmax_cross_entropy {
  // Sum over rows of -log softmax(logits)[label]; grad (if not null) gets
  // (softmax - onehot) / total. total = 0 means logits.rows() (a plain mean).
  double operator()(const tensor& logits, std::span<const std::int32_t> labels, tensor* grad = nullptr,
                    std::size_t total = 0) const {
    if (total == 0) total = logits.rows();
    detail::check_batch("softmax_cross_entropy", logits, labels.size(), total);
    detail::check_labels("softmax_cross_entropy", labels, logits.cols());
    row_loss_.resize(logits.rows());
    return ops::softmax_cross_entropy(host_place{}, logits.data(), labels.data(), logits.rows(), logits.cols(),
                                      1.0f / static_cast<float>(total), grad ? grad->data() : nullptr,
                                      row_loss_.data());
  }

 private:
  mutable std::vector<double> row_loss_;
};

namespace detail {
inline void check_same_shape(const char* who, const tensor& out, const tensor& target) {
  if (target.cols() != out.cols())
    throw std::invalid_argument(std::string("dpar::nn::") + who + ": outputs have " + std::to_string(out.cols()) +
                                " columns, targets " + std::to_string(target.cols()));
}
// A loss of out against a same-shaped target, per sample the mean over the
// columns of f (ops::pointwise_loss), with the shard checks every loss makes.
template <class F>
double pointwise(const char* who, const tensor& out, const tensor& target, tensor* grad, std::size_t total, F f) {
  if (total == 0) total = out.rows();
  check_batch(who, out, target.rows(), total);
  check_same_shape(who, out, target);
  return ops::pointwise_loss(host_place{}, out.data(), target.data(), out.rows(), out.cols(), total,
                             grad ? grad->data() : nullptr, f);
}
}  // namespace detail

// Mean squared error in PyTorch's sense per sample: the per-sample loss is the
// mean over the output's columns of (out - target)^2. Against a target tensor,
// or against one-hot targets made from labels.
struct mse {
  double operator()(const tensor& out, const tensor& target, tensor* grad = nullptr, std::size_t total = 0) const {
    return detail::pointwise("mse", out, target, grad, total, ops::squared_difference{});
  }
  double operator()(const tensor& out, std::span<const std::int32_t> labels, tensor* grad = nullptr,
                    std::size_t total = 0) const {
    if (total == 0) total = out.rows();
    detail::check_batch("mse", out, labels.size(), total);
    detail::check_labels("mse", labels, out.cols());
    return ops::onehot_mse(host_place{}, out.data(), labels.data(), out.rows(), out.cols(),
                           ops::mse_scale(out.cols(), total), grad ? grad->data() : nullptr);
  }
};

// Huber loss (PyTorch's HuberLoss): 0.5 d^2 where |d| <= delta, else
// delta (|d| - delta / 2), d = out - target; per sample the mean over columns.
struct huber {
  float delta = 1.0f;
  double operator()(const tensor& out, const tensor& target, tensor* grad = nullptr, std::size_t total = 0) const {
    if (!(delta > 0.0f)) throw std::invalid_argument("dpar::nn::huber: delta must be positive");
    return detail::pointwise("huber", out, target, grad, total, ops::huber_fn{delta});
  }
};

// Binary cross-entropy of sigmoid(out) against targets in [0, 1] (PyTorch's
// BCEWithLogitsLoss), from the logits so it stays finite for any of them; per
// sample the mean over columns (one column per independent binary label).
struct bce_with_logits {
  double operator()(const tensor& out, const tensor& target, tensor* grad = nullptr, std::size_t total = 0) const {
    return detail::pointwise("bce_with_logits", out, target, grad, total, ops::bce_logits_fn{});
  }
};

// Number of rows whose largest logit is at the label.
inline std::size_t count_correct(const tensor& logits, std::span<const std::int32_t> labels) {
  detail::check_batch("count_correct", logits, labels.size(), logits.rows());
  return ops::count_correct(host_place{}, logits.data(), labels.data(), logits.rows(), logits.cols());
}

// The losses a classifier can train with from integer labels.
enum class loss_kind {
  softmax_cross_entropy,  // on the logits
  mse,                    // of the outputs against one-hot targets
};

// A loss_kind as a loss over (outputs, labels), with the signature of
// softmax_cross_entropy: returns the sum, writes the gradient of sum / total.
class label_loss {
 public:
  explicit label_loss(loss_kind kind = loss_kind::softmax_cross_entropy) : kind_(kind) {}
  loss_kind kind() const noexcept { return kind_; }

  double operator()(const tensor& out, std::span<const std::int32_t> labels, tensor* grad = nullptr,
                    std::size_t total = 0) const {
    if (kind_ == loss_kind::softmax_cross_entropy) return cross_entropy_(out, labels, grad, total);
    return mse{}(out, labels, grad, total);
  }

 private:
  loss_kind kind_;
  softmax_cross_entropy cross_entropy_;
};

// A loss as the trainer takes it (train_options::loss): any callable with the
// signature of the built-in losses, against integer labels
//   double(const tensor& out, std::span<const std::int32_t> labels, tensor* grad, std::size_t total)
// or against a tensor of targets (rows = samples)
//   double(const tensor& out, const tensor& targets, tensor* grad, std::size_t total)
// or both (nn::mse). It returns the sum of the shard's per-sample losses and,
// when grad is not null, writes the gradient of that sum / total into it
// (total: the global batch size). Every replica calls its own copy, one shard
// at a time. A loss_kind names a built-in label loss, which GPU replicas can
// also compute.
template <class F>
concept labels_loss = std::is_invocable_r_v<double, F&, const tensor&, std::span<const std::int32_t>, tensor*,
                                            std::size_t>;
template <class F>
concept targets_loss = std::is_invocable_r_v<double, F&, const tensor&, const tensor&, tensor*, std::size_t>;

class loss_function {
 public:
  loss_function(loss_kind kind = loss_kind::softmax_cross_entropy) : kind_(kind), labels_(label_loss(kind)) {}
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, loss_function> && (labels_loss<F> || targets_loss<F>))
  loss_function(F f) {
    if constexpr (std::is_same_v<F, softmax_cross_entropy>) kind_ = loss_kind::softmax_cross_entropy;
    if constexpr (std::is_same_v<F, mse>) kind_ = loss_kind::mse;
    if constexpr (labels_loss<F>) labels_ = f;
    if constexpr (targets_loss<F>) targets_ = std::move(f);
  }

  bool takes_labels() const noexcept { return static_cast<bool>(labels_); }
  bool takes_targets() const noexcept { return static_cast<bool>(targets_); }
  // The built-in label loss this is, if it is one.
  std::optional<loss_kind> kind() const noexcept { return kind_; }

  double operator()(const tensor& out, std::span<const std::int32_t> labels, tensor* grad, std::size_t total) const {
    if (!labels_) throw std::invalid_argument("dpar::nn: the loss takes a tensor of targets, not integer labels");
    return labels_(out, labels, grad, total);
  }
  double operator()(const tensor& out, const tensor& targets, tensor* grad, std::size_t total) const {
    if (!targets_) throw std::invalid_argument("dpar::nn: the loss takes integer labels, not a tensor of targets");
    return targets_(out, targets, grad, total);
  }

 private:
  std::optional<loss_kind> kind_;
  std::function<double(const tensor&, std::span<const std::int32_t>, tensor*, std::size_t)> labels_;
  std::function<double(const tensor&, const tensor&, tensor*, std::size_t)> targets_;
};

}  // namespace dpar::nn
