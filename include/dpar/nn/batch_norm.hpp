#pragma once
// nn::batch_norm: batch normalization with SyncBatchNorm's statistics (a batch_layer).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "layers.hpp"
#include "tensor.hpp"

namespace dpar::nn {

// nn.BatchNorm1d over the columns of a batch (features), with SyncBatchNorm's
// statistics in train mode: the mean and variance of each feature over the
// whole global batch (every part of every replica and rank: sums of x and x^2
// in double, combined through the trainer's batch_sync; exact, so the same
// bits on any replica count, under dpar::deterministic). The running mean and
// (unbiased) variance are updated in train mode, as PyTorch's with
// `momentum`, kept in the model's state (checkpoints, model files), and used
// in eval mode. Parameters: gamma (1) then beta (0).
class batch_norm final : public batch_layer {
 public:
  explicit batch_norm(std::size_t features, float eps = 1e-5f, float momentum = 0.1f)
      : f_(features), eps_(eps), momentum_(momentum), mean_(features), invstd_(features), sums_(2 * features) {
    if (features == 0) throw std::invalid_argument("dpar::nn::batch_norm: features must be positive");
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
      throw std::invalid_argument("dpar::nn::batch_norm: eps must be positive and momentum in [0, 1], got " +
                                  detail::short_number(eps) + " and " + detail::short_number(momentum));
  }
  std::string name() const override {
    return "BatchNorm(" + std::to_string(f_) + "," + detail::short_number(eps_) + "," +
           detail::short_number(momentum_) + ")";
  }
  std::size_t out_features(std::size_t in) const override {
    if (in != f_)
      throw std::invalid_argument("dpar::nn::" + name() + ": input has " + std::to_string(in) + " features, expected " +
                                  std::to_string(f_));
    return f_;
  }
  std::size_t features() const noexcept { return f_; }
  float eps() const noexcept { return eps_; }
  float momentum() const noexcept { return momentum_; }
  std::size_t parameter_count() const override { return 2 * f_; }
  void bind(float* params, float* grads) override { gamma_ = params, beta_ = params + f_, dgamma_ = grads, dbeta_ = grads + f_; }
  std::size_t state_count() const override { return 2 * f_; }
  void bind_state(float* state) override { running_mean_ = state, running_var_ = state + f_; }
  const float* running_mean() const noexcept { return running_mean_; }
  const float* running_var() const noexcept { return running_var_; }
  void initialize(std::mt19937_64&) override {
    std::fill(gamma_, gamma_ + f_, 1.0f);
    std::fill(beta_, beta_ + f_, 0.0f);
    std::fill(running_mean_, running_mean_ + f_, 0.0f);
    std::fill(running_var_, running_var_ + f_, 1.0f);
  }

  // Forward: [sum of x (per feature), sum of x^2, rows] of a part.
  std::size_t forward_sums_size() const override { return 2 * f_ + 1; }
  void forward_sums(const pass&, const tensor& x, double* s) const override {
    std::fill(s, s + 2 * f_ + 1, 0.0);
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t c = 0; c < f_; ++c) {
        double v = x(r, c);
        s[c] += v;
        s[f_ + c] += v * v;
      }
    s[2 * f_] = static_cast<double>(x.rows());
  }
  void begin_forward(const pass&, const double* g) override {
    const double n = g[2 * f_];
    if (n < 2)
      throw std::invalid_argument("dpar::nn::" + name() + ": train mode needs more than one sample in the batch, got " +
                                  std::to_string(static_cast<std::size_t>(n)));
    rows_ = n;
    for (std::size_t c = 0; c < f_; ++c) {
      double mean = g[c] / n, var = std::max(0.0, g[f_ + c] / n - mean * mean);
      mean_[c] = static_cast<float>(mean);
      invstd_[c] = static_cast<float>(1.0 / std::sqrt(var + eps_));
      running_mean_[c] = static_cast<float>((1.0 - momentum_) * running_mean_[c] + momentum_ * mean);
      running_var_[c] = static_cast<float>((1.0 - momentum_) * running_var_[c] + momentum_ * var * n / (n - 1));
    }
  }
  void forward_pass(const pass& p, const tensor& x, tensor& y) override {
    std::vector<float> running;
    auto [mean, invstd] = statistics(p, running);
    for (std::size_t r = 0; r < x.rows(); ++r) {
      const float* in = x.row(r);
      float* out = y.row(r);
      for (std::size_t c = 0; c < f_; ++c) out[c] = gamma_[c] * ((in[c] - mean[c]) * invstd[c]) + beta_[c];
    }
  }

  // Backward: [sum of dy, sum of dy * xhat] of a part.
  std::size_t backward_sums_size() const override { return 2 * f_; }
  void backward_sums(const pass&, const tensor& x, const tensor&, const tensor& dy, double* s) const override {
    std::fill(s, s + 2 * f_, 0.0);
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t c = 0; c < f_; ++c) {
        s[c] += dy(r, c);
        s[f_ + c] += static_cast<double>(dy(r, c)) * ((x(r, c) - mean_[c]) * invstd_[c]);
      }
  }
  void begin_backward(const pass&, const double* g) override { std::copy(g, g + 2 * f_, sums_.begin()); }
  // This part's gamma and beta gradients, and dx: in train mode through the
  // batch's statistics (the global sums of begin_backward), in eval mode
  // through the running ones (constants).
  void backward_pass(const pass& p, const tensor& x, const tensor&, const tensor& dy, tensor* dx) override {
    std::vector<float> running;
    auto [mean, invstd] = statistics(p, running);
    part_.assign(2 * f_, 0.0);  // this part's [sum of dy * xhat, sum of dy]
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t c = 0; c < f_; ++c) {
        part_[c] += static_cast<double>(dy(r, c)) * ((x(r, c) - mean[c]) * invstd[c]);
        part_[f_ + c] += dy(r, c);
      }
    for (std::size_t c = 0; c < f_; ++c) {
      dgamma_[c] = static_cast<float>(part_[c]);
      dbeta_[c] = static_cast<float>(part_[f_ + c]);
    }
    if (!dx) return;
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t c = 0; c < f_; ++c) {
        const double k = static_cast<double>(gamma_[c]) * invstd[c];
        if (p.mode == mode::eval) {
          (*dx)(r, c) = static_cast<float>(k * dy(r, c));
        } else {
          double xhat = (x(r, c) - mean[c]) * invstd[c];
          (*dx)(r, c) = static_cast<float>(k / rows_ * (rows_ * dy(r, c) - sums_[c] - xhat * sums_[f_ + c]));
        }
      }
  }
  std::unique_ptr<layer> clone() const override { return std::make_unique<batch_norm>(*this); }

 private:
  // Each feature's mean and 1/sqrt(var + eps): the batch's in train mode,
  // the running ones in eval mode (computed into `running`, so that an
  // eval-mode forward writes nothing of the layer's: predict may run it
  // from several threads).
  std::pair<const float*, const float*> statistics(const pass& p, std::vector<float>& running) const {
    if (p.mode == mode::train) return {mean_.data(), invstd_.data()};
    running.resize(f_);
    for (std::size_t c = 0; c < f_; ++c)
      running[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var_[c]) + eps_));
    return {running_mean_, running.data()};
  }

  std::size_t f_;
  float eps_, momentum_;
  float *gamma_ = nullptr, *beta_ = nullptr, *dgamma_ = nullptr, *dbeta_ = nullptr;
  float *running_mean_ = nullptr, *running_var_ = nullptr;
  // The last train-mode batch's statistics, for its forward_pass and backward.
  std::vector<float> mean_, invstd_;
  std::vector<double> sums_;  // the global backward sums
  std::vector<double> part_;  // backward_pass's scratch
  double rows_ = 0;           // the global batch's sample count
};

}  // namespace dpar::nn
