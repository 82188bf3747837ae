#pragma once
// nn::dropout: a hashed mask, the same whichever replica computes a sample.

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

namespace detail {
// SplitMix64's finalizer: a counter-based hash, the same bits for the same key anywhere.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace detail

// nn.Dropout: in train mode each value is zeroed with probability p and the
// others scaled by 1 / (1 - p) (inverted dropout: eval mode is the identity).
// The mask is a hash of (seed, the layer's position, step, the sample's
// position in the global batch, unit), not a draw from a random stream, so a
// sample gets the same mask whichever replica or rank computes it: the same
// bits for any replica count under dpar::deterministic.
class dropout final : public layer {
 public:
  explicit dropout(float p = 0.5f, std::uint64_t seed = 0) : p_(p), seed_(seed) {
    if (!(p >= 0.0f && p < 1.0f))
      throw std::invalid_argument("dpar::nn::dropout: probability must be in [0, 1), got " + detail::short_number(p));
    threshold_ = static_cast<std::uint64_t>(static_cast<double>(p) * 4294967296.0);
    scale_ = 1.0f / (1.0f - p);
  }
  std::string name() const override {
    return "Dropout(" + detail::short_number(p_) + "," + std::to_string(seed_) + ")";
  }
  std::size_t out_features(std::size_t in) const override { return in; }
  float probability() const noexcept { return p_; }
  std::uint64_t seed() const noexcept { return seed_; }

  // Whether unit `unit` of the sample at `sample` in the batch survives in pass p (train mode).
  bool kept(const pass& p, std::size_t sample, std::size_t unit) const noexcept {
    return (detail::mix64(row_key(p, sample) + unit * 0x9E3779B97F4A7C15ull) >> 32) >= threshold_;
  }

  void forward(const tensor& x, tensor& y) override { forward_pass(pass{}, x, y); }
  void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) override {
    backward_pass(pass{}, x, y, dy, dx);
  }
  void forward_pass(const pass& p, const tensor& x, tensor& y) override { apply(p, x, y); }
  void backward_pass(const pass& p, const tensor&, const tensor&, const tensor& dy, tensor* dx) override {
    if (dx) apply(p, dy, *dx);
  }
  std::unique_ptr<layer> clone() const override { return std::make_unique<dropout>(*this); }

 private:
  std::uint64_t row_key(const pass& p, std::size_t sample) const noexcept {
    using detail::mix64;
    return mix64(mix64(mix64(seed_ ^ mix64(p.layer)) ^ p.step) ^ sample);
  }
  // out = in masked and scaled (forward: x to y; backward: dy to dx, the same mask).
  void apply(const pass& p, const tensor& in, tensor& out) const {
    if (p.mode == mode::eval || threshold_ == 0) {
      std::copy(in.data(), in.data() + in.size(), out.data());
      return;
    }
    for (std::size_t r = 0; r < in.rows(); ++r) {
      const std::uint64_t key = row_key(p, p.first_sample + r);
      const float* a = in.row(r);
      float* b = out.row(r);
      for (std::size_t c = 0; c < in.cols(); ++c)
        b[c] = (detail::mix64(key + c * 0x9E3779B97F4A7C15ull) >> 32) >= threshold_ ? a[c] * scale_ : 0.0f;
    }
  }

  float p_;
  std::uint64_t seed_;
  std::uint64_t threshold_ = 0;
  float scale_ = 1.0f;
};

}  // namespace dpar::nn
