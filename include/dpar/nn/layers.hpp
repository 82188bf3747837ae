#pragma once
// Layers and the Sequential model. A model's parameters live in one flat
// buffer and its gradients in a second one of the same layout, so a replica's
// whole gradient is one span: the data-parallel trainer all-reduces it in one
// call. Each layer is bound to its slice of both buffers.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../algorithm.hpp"
#include "../execution.hpp"
#include "ops.hpp"
#include "tensor.hpp"

namespace dpar::nn {

class layer {
 public:
  virtual ~layer() = default;
  virtual std::string name() const = 0;
  // Output features for `in` input features; throws if the layer cannot take `in`.
  virtual std::size_t out_features(std::size_t in) const = 0;
  virtual std::size_t parameter_count() const { return 0; }
  // Points the layer at its slice of the model's parameter and gradient buffers.
  virtual void bind(float* /*params*/, float* /*grads*/) {}
  // Writes initial parameters into the bound slice (sequential calls it when
  // the layer is added, and again on sequential::initialize(seed)).
  virtual void initialize(std::mt19937_64& /*rng*/) {}
  // y = f(x); y is already sized x.rows() x out_features(x.cols()).
  virtual void forward(const tensor& x, tensor& y) = 0;
  // Writes (overwrites) this layer's parameter gradients from dy, and dx when
  // it is not null (the first layer needs no input gradient).
  virtual void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) = 0;
  virtual std::unique_ptr<layer> clone() const = 0;
};

// An elementwise activation. forward_with_bias lets a Dense layer in front of
// it fuse "add bias, apply activation" into one pass over its output. Fused,
// the pre-activation is never stored; so only an activation whose backward
// reads y alone says so (backward_reads_x() false) and is fused. Any other,
// a user's SiLU say, runs after the Dense layer's own forward and gets that
// output as its x.
class activation : public layer {
 public:
  std::size_t out_features(std::size_t in) const override { return in; }
  virtual bool backward_reads_x() const { return true; }
  // y[r][c] = f(y[r][c] + bias[c]) in place; bias may be null.
  virtual void forward_with_bias(tensor& y, const float* bias) const = 0;
  void forward(const tensor& x, tensor& y) override {
    std::copy(x.data(), x.data() + x.size(), y.data());
    forward_with_bias(y, nullptr);
  }
};

class relu final : public activation {
 public:
  using function = ops::relu_fn;    // f(v)
  using gradient = ops::relu_grad;  // dL/dv from f(v) and dL/df
  std::string name() const override { return "ReLU"; }
  void forward_with_bias(tensor& y, const float* bias) const override {
    ops::bias_activate(host_place{}, y.data(), y.rows(), y.cols(), bias, function{});
  }
  void backward(const tensor&, const tensor& y, const tensor& dy, tensor* dx) override {
    if (dx) ops::activation_backward(host_place{}, y.data(), dy.data(), dx->data(), y.size(), gradient{});
  }
  bool backward_reads_x() const override { return false; }
  std::unique_ptr<layer> clone() const override { return std::make_unique<relu>(*this); }
};

class tanh_layer final : public activation {
 public:
  using function = ops::tanh_fn;    // f(v)
  using gradient = ops::tanh_grad;  // dL/dv from f(v) and dL/df
  std::string name() const override { return "Tanh"; }
  void forward_with_bias(tensor& y, const float* bias) const override {
    ops::bias_activate(host_place{}, y.data(), y.rows(), y.cols(), bias, function{});
  }
  void backward(const tensor&, const tensor& y, const tensor& dy, tensor* dx) override {
    if (dx) ops::activation_backward(host_place{}, y.data(), dy.data(), dx->data(), y.size(), gradient{});
  }
  bool backward_reads_x() const override { return false; }
  std::unique_ptr<layer> clone() const override { return std::make_unique<tanh_layer>(*this); }
};

class sigmoid final : public activation {
 public:
  using function = ops::sigmoid_fn;    // f(v)
  using gradient = ops::sigmoid_grad;  // dL/dv from f(v) and dL/df
  std::string name() const override { return "Sigmoid"; }
  void forward_with_bias(tensor& y, const float* bias) const override {
    ops::bias_activate(host_place{}, y.data(), y.rows(), y.cols(), bias, function{});
  }
  void backward(const tensor&, const tensor& y, const tensor& dy, tensor* dx) override {
    if (dx) ops::activation_backward(host_place{}, y.data(), dy.data(), dx->data(), y.size(), gradient{});
  }
  bool backward_reads_x() const override { return false; }
  std::unique_ptr<layer> clone() const override { return std::make_unique<sigmoid>(*this); }
};

enum class init { he, xavier };

// y = x W^T + b with W stored row-major as [out][in] (PyTorch's layout), so the
// forward product is one GEMM with B transposed.
class dense final : public layer {
 public:
  dense(std::size_t in, std::size_t out, nn::init scheme = nn::init::he) : in_(in), out_(out), init_(scheme) {
    if (in == 0 || out == 0)
      throw std::invalid_argument("dpar::nn::dense: features must be positive, got " + std::to_string(in) + " -> " +
                                  std::to_string(out));
  }
  std::string name() const override { return "Dense(" + std::to_string(in_) + "," + std::to_string(out_) + ")"; }
  std::size_t out_features(std::size_t in) const override {
    if (in != in_)
      throw std::invalid_argument("dpar::nn::" + name() + ": input has " + std::to_string(in) + " features, expected " +
                                  std::to_string(in_));
    return out_;
  }
  std::size_t in() const noexcept { return in_; }
  std::size_t out() const noexcept { return out_; }
  std::size_t parameter_count() const override { return out_ * in_ + out_; }
  void bind(float* params, float* grads) override {
    w_ = params;
    b_ = params + out_ * in_;
    dw_ = grads;
    db_ = grads + out_ * in_;
  }
  const float* weights() const noexcept { return w_; }
  const float* bias() const noexcept { return b_; }

  // He: normal with std sqrt(2/in), for ReLU. Xavier: uniform in
  // +-sqrt(6/(in+out)), for tanh and sigmoid. Biases start at zero.
  void initialize(std::mt19937_64& rng) override {
    if (init_ == nn::init::he) {
      std::normal_distribution<float> d(0.0f, std::sqrt(2.0f / static_cast<float>(in_)));
      for (std::size_t i = 0; i < out_ * in_; ++i) w_[i] = d(rng);
    } else {
      float a = std::sqrt(6.0f / static_cast<float>(in_ + out_));
      std::uniform_real_distribution<float> d(-a, a);
      for (std::size_t i = 0; i < out_ * in_; ++i) w_[i] = d(rng);
    }
    std::fill(b_, b_ + out_, 0.0f);
  }

  // y = x W^T without the bias: the caller adds it (possibly fused with an activation).
  void forward_linear(const tensor& x, tensor& y) const {
    ops::dense_forward_linear(host_place{}, x.data(), x.rows(), in_, out_, w_, y.data());
  }
  void forward(const tensor& x, tensor& y) override {
    forward_linear(x, y);
    ops::bias_activate(host_place{}, y.data(), y.rows(), out_, b_, ops::identity_fn{});
  }
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) override {
    ops::dense_backward(host_place{}, x.data(), dy.data(), x.rows(), in_, out_, w_, dw_, db_, dx ? dx->data() : nullptr);
  }
  std::unique_ptr<layer> clone() const override { return std::make_unique<dense>(*this); }

 private:
  std::size_t in_, out_;
  nn::init init_;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

// Layers applied in order, over one flat parameter buffer and one flat gradient
// buffer. Activations of the last batch are kept for backward and reused
// between steps (no allocation per step once the largest batch has been seen).
class sequential {
 public:
  explicit sequential(std::size_t in_features) : in_(in_features) {
    if (in_features == 0) throw std::invalid_argument("dpar::nn::sequential: input features must be positive");
  }

  sequential(const sequential& other)
      : in_(other.in_), seed_(other.seed_), params_(other.params_), grads_(other.grads_) {
    for (auto& l : other.layers_) layers_.push_back(l->clone());
    acts_.resize(layers_.size() + 1);
    grad_acts_.resize(layers_.size() + 1);
    rebind();
  }
  sequential& operator=(const sequential& other) {
    if (this != &other) *this = sequential(other);
    return *this;
  }
  sequential(sequential&&) noexcept = default;
  sequential& operator=(sequential&&) noexcept = default;

  // initialize's seed until one is given: a model is trained from
  // initialized parameters even when the caller never chooses a seed.
  static constexpr std::uint64_t default_seed = 1;

  // Appends a layer; its parameters join the flat buffer, initialized from
  // the model's seed (default_seed until initialize(seed) chose another) as
  // initialize would: a model built in one go equals one initialized after.
  template <class Layer>
  sequential& add(Layer l) {
    static_assert(std::is_base_of_v<layer, Layer>, "dpar::nn::sequential::add takes a dpar::nn::layer");
    l.out_features(out_features());  // validates the shapes now, not at the first forward
    std::size_t extra = l.parameter_count();
    layers_.push_back(std::make_unique<Layer>(std::move(l)));
    params_.resize(params_.size() + extra, 0.0f);
    grads_.resize(params_.size(), 0.0f);
    acts_.resize(layers_.size() + 1);
    grad_acts_.resize(layers_.size() + 1);
    rebind();
    initialize_layer(layers_.size() - 1);
    return *this;
  }

  std::size_t in_features() const noexcept { return in_; }
  std::size_t out_features() const {
    std::size_t f = in_;
    for (auto& l : layers_) f = l->out_features(f);
    return f;
  }
  std::size_t size() const noexcept { return layers_.size(); }
  const layer& operator[](std::size_t i) const { return *layers_.at(i); }
  layer& operator[](std::size_t i) { return *layers_.at(i); }

  // Re-initializes every layer from one seed (each layer draws from its own
  // stream, so layer i's parameters depend on the seed and i only).
  void initialize(std::uint64_t seed) {
    seed_ = seed;
    for (std::size_t i = 0; i < layers_.size(); ++i) initialize_layer(i);
  }

  std::span<float> parameters() noexcept { return params_; }
  std::span<const float> parameters() const noexcept { return params_; }
  std::span<float> gradients() noexcept { return grads_; }
  std::span<const float> gradients() const noexcept { return grads_; }

  // Runs the batch x (rows are samples) through every layer; returns the output,
  // valid until the next forward. A Dense followed by an activation runs fused.
  const tensor& forward(const tensor& x) {
    if (x.cols() != in_)
      throw std::invalid_argument("dpar::nn::sequential: input has " + std::to_string(x.cols()) +
                                  " features, the model takes " + std::to_string(in_));
    input_ = &x;
    std::size_t f = in_;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      std::size_t next = layers_[i]->out_features(f);
      acts_[i + 1].resize(x.rows(), next);
      const tensor& in = i == 0 ? x : acts_[i];
      auto* d = dynamic_cast<dense*>(layers_[i].get());
      auto* a = i + 1 < layers_.size() ? dynamic_cast<activation*>(layers_[i + 1].get()) : nullptr;
      if (d && a && !a->backward_reads_x()) {
        // Fused: the activation's output is written directly; the Dense output
        // itself is never needed (Dense backward uses x and dy only, the
        // activation's y and dy only).
        acts_[i + 2].resize(x.rows(), next);
        d->forward_linear(in, acts_[i + 2]);
        a->forward_with_bias(acts_[i + 2], d->bias());
        ++i;
      } else {
        layers_[i]->forward(in, acts_[i + 1]);
      }
      f = next;
    }
    return layers_.empty() ? x : acts_.back();
  }

  // The outputs (logits) for the batch x, computed in buffers of its own: the
  // state kept for backward is left alone, so a const (trained, shared) model
  // can classify, from several threads at once. It assumes, as the built-in
  // layers do, that a layer's forward does not modify the layer.
  tensor predict(const tensor& x) const {
    if (x.cols() != in_)
      throw std::invalid_argument("dpar::nn::sequential::predict: input has " + std::to_string(x.cols()) +
                                  " features, the model takes " + std::to_string(in_));
    tensor out, next;
    const tensor* in = &x;
    for (auto& l : layers_) {
      next.resize(in->rows(), l->out_features(in->cols()));
      l->forward(*in, next);
      std::swap(out, next);
      in = &out;
    }
    return layers_.empty() ? x : out;
  }
  // predict's outputs as probabilities: the softmax of each row (of a
  // classifier trained with softmax cross-entropy).
  tensor predict_probabilities(const tensor& x) const {
    tensor p = predict(x);
    ops::softmax_rows(host_place{}, p.data(), p.rows(), p.cols());
    return p;
  }
  // The predicted class of each row of x: the argmax of its logits.
  std::vector<std::int32_t> classify(const tensor& x) const { return argmax(predict(x)); }

  // Backpropagates dL/d(output) through the last forward's batch, overwriting
  // the gradient buffer.
  void backward(const tensor& grad_output) {
    if (!input_) throw std::logic_error("dpar::nn::sequential::backward called before forward");
    if (layers_.empty()) return;
    const tensor* dy = &grad_output;
    for (std::size_t i = layers_.size(); i-- > 0;) {
      const tensor& in = i == 0 ? *input_ : acts_[i];
      tensor* dx = nullptr;
      if (i > 0) {
        grad_acts_[i].resize(in.rows(), in.cols());
        dx = &grad_acts_[i];
      }
      layers_[i]->backward(in, acts_[i + 1], *dy, dx);
      dy = dx;
    }
  }

 private:
  void initialize_layer(std::size_t i) {
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + i);
    layers_[i]->initialize(rng);
  }
  void rebind() {
    std::size_t offset = 0;
    for (auto& l : layers_) {
      l->bind(params_.data() + offset, grads_.data() + offset);
      offset += l->parameter_count();
    }
  }

  std::size_t in_;
  std::uint64_t seed_ = default_seed;
  std::vector<std::unique_ptr<layer>> layers_;
  std::vector<float> params_, grads_;
  std::vector<tensor> acts_, grad_acts_;  // acts_[i + 1] is layer i's output
  const tensor* input_ = nullptr;
};

// The MLP of the Fashion-MNIST example: Dense+ReLU hidden layers, linear output.
inline sequential make_mlp(std::vector<std::size_t> widths, nn::init scheme = nn::init::he) {
  if (widths.size() < 2) throw std::invalid_argument("dpar::nn::make_mlp: need at least input and output widths");
  sequential m(widths[0]);
  for (std::size_t i = 1; i < widths.size(); ++i) {
    m.add(dense(widths[i - 1], widths[i], scheme));
    if (i + 1 < widths.size()) m.add(relu());
  }
  return m;
}

}  // namespace dpar::nn
