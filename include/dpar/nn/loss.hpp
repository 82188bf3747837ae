#pragma once
// Losses. Each returns the SUM of per-sample losses of a shard and writes the
// gradient of (sum / total) where `total` is the global batch size, so that
// summing the replicas' gradients (the all-reduce) gives the gradient of the
// global-batch mean, however unevenly the batch was split.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
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

// Mean squared error in PyTorch's sense per sample: the per-sample loss is the
// mean over the output's columns of (out - target)^2.
struct mse {
  double operator()(const tensor& out, const tensor& target, tensor* grad = nullptr, std::size_t total = 0) const {
    if (total == 0) total = out.rows();
    detail::check_batch("mse", out, target.rows(), total);
    if (target.cols() != out.cols())
      throw std::invalid_argument("dpar::nn::mse: outputs have " + std::to_string(out.cols()) +
                                  " columns, targets " + std::to_string(target.cols()));
    double cols = static_cast<double>(out.cols());
    if (grad)
      dpar::transform(dpar::seq, out.data(), out.data() + out.size(), target.data(), grad->data(),
                      ops::mse_grad{ops::mse_scale(out.cols(), total)});
    auto [first, last] = host_place::indices(out.size());
    const float *o = out.data(), *t = target.data();
    double sum = dpar::transform_reduce(dpar::seq, first, last, 0.0, std::plus<>{},
                                        [o, t](std::size_t i) { return ops::squared_error{}(o[i], t[i]); });
    return out.cols() ? sum / cols : 0.0;
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
    if (total == 0) total = out.rows();
    detail::check_batch("mse", out, labels.size(), total);
    detail::check_labels("mse", labels, out.cols());
    return ops::onehot_mse(host_place{}, out.data(), labels.data(), out.rows(), out.cols(),
                           ops::mse_scale(out.cols(), total), grad ? grad->data() : nullptr);
  }

 private:
  loss_kind kind_;
  softmax_cross_entropy cross_entropy_;
};

}  // namespace dpar::nn
