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
    std::size_t k = logits.cols();
    row_loss_.resize(logits.rows());
    float scale = 1.0f / static_cast<float>(total);
    for (std::size_t r = 0; r < logits.rows(); ++r) {
      std::int32_t y = labels[r];
      if (y < 0 || static_cast<std::size_t>(y) >= k)
        throw std::out_of_range("dpar::nn::softmax_cross_entropy: label " + std::to_string(y) + " at row " +
                                std::to_string(r) + " is outside [0, " + std::to_string(k) + ")");
      const float* z = logits.row(r);
      float m = dpar::reduce(dpar::seq, z, z + k, z[0], dpar::maximum<>{});
      float s = dpar::transform_reduce(dpar::seq, z, z + k, 0.0f, std::plus<>{}, [m](float v) { return std::exp(v - m); });
      float lse = m + std::log(s);
      row_loss_[r] = static_cast<double>(lse - z[y]);
      if (grad) {
        float* g = grad->row(r);
        float inv = scale / s;
        dpar::transform(dpar::seq, z, z + k, g, [m, inv](float v) { return std::exp(v - m) * inv; });
        g[y] -= scale;
      }
    }
    return dpar::reduce(dpar::seq, row_loss_.begin(), row_loss_.end(), 0.0);
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
    if (grad) {
      float scale = static_cast<float>(2.0 / (cols * static_cast<double>(total)));
      dpar::transform(dpar::seq, out.data(), out.data() + out.size(), target.data(), grad->data(),
                      [scale](float o, float t) { return scale * (o - t); });
    }
    sq_.resize(out.size());
    dpar::transform(dpar::seq, out.data(), out.data() + out.size(), target.data(), sq_.begin(), [](float o, float t) {
      double d = static_cast<double>(o) - t;
      return d * d;
    });
    double sum = dpar::reduce(dpar::seq, sq_.begin(), sq_.end(), 0.0);
    return out.cols() ? sum / cols : 0.0;
  }

 private:
  mutable std::vector<double> sq_;
};

// Number of rows whose largest logit is at the label.
inline std::size_t count_correct(const tensor& logits, std::span<const std::int32_t> labels) {
  detail::check_batch("count_correct", logits, labels.size(), logits.rows());
  std::vector<std::int32_t> predicted = argmax(logits);
  dpar::transform(dpar::seq, predicted.begin(), predicted.end(), labels.begin(), predicted.begin(),
                  [](std::int32_t p, std::int32_t y) { return std::int32_t(p == y); });
  return static_cast<std::size_t>(dpar::reduce(dpar::seq, predicted.begin(), predicted.end(), std::int64_t{0}));
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
    detail::check_batch("mse", out, labels.size(), total == 0 ? out.rows() : total);
    target_.resize(out.rows(), out.cols());
    std::fill(target_.data(), target_.data() + target_.size(), 0.0f);
    for (std::size_t r = 0; r < labels.size(); ++r) {
      if (labels[r] < 0 || static_cast<std::size_t>(labels[r]) >= out.cols())
        throw std::out_of_range("dpar::nn::mse: label " + std::to_string(labels[r]) + " at row " + std::to_string(r) +
                                " is outside [0, " + std::to_string(out.cols()) + ")");
      target_(r, static_cast<std::size_t>(labels[r])) = 1.0f;
    }
    return mse_(out, target_, grad, total);
  }

 private:
  loss_kind kind_;
  softmax_cross_entropy cross_entropy_;
  mse mse_;
  mutable tensor target_;  // one-hot targets, reused between calls
};

}  // namespace dpar::nn
