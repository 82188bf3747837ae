#pragma once
// Layers and the Sequential model. A model's parameters live in one flat
// buffer and its gradients in a second one of the same layout, so a replica's
// whole gradient is one span: the data-parallel trainer all-reduces it in one
// call. Each layer is bound to its slice of both buffers.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstdint>
#include <functional>
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

// Training or evaluation (PyTorch's model.train() / model.eval()): dropout
// drops and batch_norm uses the batch's statistics in train mode only.
enum class mode { train, eval };

// What a forward or backward computes for: the mode, and where the batch is
// in the run, which dropout's mask depends on (so that the mask is the same
// whichever replica computes a sample).
struct pass {
  nn::mode mode = nn::mode::train;
  std::uint64_t step = 0;        // optimizer steps taken before this batch
  std::size_t first_sample = 0;  // position of x's row 0 in the global batch
  std::size_t layer = 0;         // the layer's position in its model
};

// Sums small vectors over every part of the global batch, on every replica:
// how batch_norm's statistics span all replicas and ranks (the trainer's
// comes from its replica group, replica_group.hpp). mine[p] is this
// replica's part p (out.size() values each); out = the sum over the parts of
// every replica.
class batch_sync {
 public:
  virtual ~batch_sync() = default;
  virtual void sum(std::span<const double* const> mine, std::span<double> out) = 0;
};

class activation;
class batch_layer;
class replica_split;  // nn/model_parallel.hpp

// The built-in layers a backend may run by kind instead of through their
// virtual calls (the device model of nn/cuda.hpp): each names itself in
// layer::builtin(); every other layer is `other`, which such a backend refuses.
enum class builtin_layer { other, dense, relu, tanh, sigmoid };

class layer {
 public:
  virtual ~layer() = default;
  virtual std::string name() const = 0;
  // Output features for `in` input features; throws if the layer cannot take `in`.
  virtual std::size_t out_features(std::size_t in) const = 0;
  virtual std::size_t parameter_count() const { return 0; }
  // Points the layer at its slice of the model's parameter and gradient buffers.
  virtual void bind(float* /*params*/, float* /*grads*/) {}
  // Values kept but not trained (batch_norm's running mean and variance): a
  // slice of the model's state buffer, saved in checkpoints and model files,
  // never touched by the optimizer.
  virtual std::size_t state_count() const { return 0; }
  virtual void bind_state(float* /*state*/) {}
  // Writes initial parameters (and state) into the bound slices (sequential
  // calls it when the layer is added, and again on sequential::initialize(seed)).
  virtual void initialize(std::mt19937_64& /*rng*/) {}
  // y = f(x); y is already sized x.rows() x out_features(x.cols()).
  virtual void forward(const tensor& x, tensor& y) = 0;
  // Writes (overwrites) this layer's parameter gradients from dy, and dx when
  // it is not null (the first layer needs no input gradient).
  virtual void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) = 0;
  virtual std::unique_ptr<layer> clone() const = 0;
  // What sequential calls: forward and backward for a pass. A layer whose
  // result depends on the mode or the batch's position overrides these
  // (dropout, batch_norm); any other computes the same in every pass.
  virtual void forward_pass(const pass&, const tensor& x, tensor& y) { forward(x, y); }
  virtual void backward_pass(const pass&, const tensor& x, const tensor& y, const tensor& dy, tensor* dx) {
    backward(x, y, dy, dx);
  }

  // Hooks by which sequential and the replica groups learn what a layer is,
  // each answered by the kind itself, so a new kind plugs in without a type
  // switch elsewhere. The defaults: a plain layer.
  virtual nn::builtin_layer builtin() const noexcept { return nn::builtin_layer::other; }
  // Non-null for a layer that couples the batch (batch_layer::as_batch_layer).
  virtual batch_layer* as_batch_layer() noexcept { return nullptr; }
  virtual const batch_layer* as_batch_layer() const noexcept { return nullptr; }
  // Non-null for an activation that may run fused behind the layer before it
  // (activation::fusable).
  virtual const activation* fusable() const noexcept { return nullptr; }
  // True for a layer that can write f(its output) in one pass, f a fusable
  // activation (dense: f(x W^T + b)); its backward must not read its own
  // output, which the fused pass never stores. forward_fused then computes
  // y = f(layer(x)); the default, a forward then f in place, is correct for
  // any such layer, only not fused.
  virtual bool fuses_activation() const noexcept { return false; }
  virtual void forward_fused(const tensor& x, tensor& y, const activation& f);
  // Non-null for a layer whose parameters are split over the replicas of a
  // trainer (model_parallel_dense); model_parallel_group runs it.
  virtual replica_split* as_replica_split() noexcept { return nullptr; }
  virtual const replica_split* as_replica_split() const noexcept { return nullptr; }
};

// A layer whose output for a sample depends, in train mode, on the whole
// global batch through per-feature sums (batch_norm). sequential runs a
// batch layer by layer over all the parts a replica holds, and between the
// two halves below sums each part's vector over every part of every replica
// (batch_sync), so the statistics are the global batch's (SyncBatchNorm).
// Forward: forward_sums for each part, the sum, begin_forward once,
// forward_pass for each part. Backward alike. In eval mode only
// forward_pass and backward_pass run.
class batch_layer : public layer {
 public:
  virtual std::size_t forward_sums_size() const = 0;
  virtual std::size_t backward_sums_size() const = 0;
  virtual void forward_sums(const pass&, const tensor& x, double* sums) const = 0;
  virtual void begin_forward(const pass&, const double* global_sums) = 0;
  virtual void backward_sums(const pass&, const tensor& x, const tensor& y, const tensor& dy, double* sums) const = 0;
  virtual void begin_backward(const pass&, const double* global_sums) = 0;
  batch_layer* as_batch_layer() noexcept final { return this; }
  const batch_layer* as_batch_layer() const noexcept final { return this; }
  // The plain forms: x alone is the batch.
  void forward(const tensor& x, tensor& y) override {
    std::vector<double> s(forward_sums_size());
    pass p;
    forward_sums(p, x, s.data());
    begin_forward(p, s.data());
    forward_pass(p, x, y);
  }
  void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) override {
    std::vector<double> s(backward_sums_size());
    pass p;
    backward_sums(p, x, y, dy, s.data());
    begin_backward(p, s.data());
    backward_pass(p, x, y, dy, dx);
  }
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
  const activation* fusable() const noexcept override { return backward_reads_x() ? nullptr : this; }
};

inline void layer::forward_fused(const tensor& x, tensor& y, const activation& f) {
  forward(x, y);
  f.forward_with_bias(y, nullptr);
}

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
  nn::builtin_layer builtin() const noexcept override { return nn::builtin_layer::relu; }
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
  nn::builtin_layer builtin() const noexcept override { return nn::builtin_layer::tanh; }
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
  nn::builtin_layer builtin() const noexcept override { return nn::builtin_layer::sigmoid; }
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
  nn::builtin_layer builtin() const noexcept override { return nn::builtin_layer::dense; }
  // The bias added and the activation applied in one pass over the output.
  bool fuses_activation() const noexcept override { return true; }
  void forward_fused(const tensor& x, tensor& y, const activation& f) override {
    forward_linear(x, y);
    f.forward_with_bias(y, b_);
  }

 private:
  std::size_t in_, out_;
  nn::init init_;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

namespace detail {
// The shortest text that reads back as the same float ("0.1", "1e-05"): for layer names.
inline std::string short_number(float v) {
  char text[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, static_cast<double>(v));
    if (std::strtof(text, nullptr) == v) break;
  }
  return text;
}
}  // namespace detail

// Layers applied in order, over one flat parameter buffer and one flat gradient
// buffer (and a state buffer for values kept but not trained). Activations of
// the last batch are kept for backward and reused between steps (no
// allocation per step once the largest batch has been seen). The mode
// (train, the default, or eval) is the model's; predict always evaluates.
class sequential {
 public:
  explicit sequential(std::size_t in_features) : in_(in_features) {
    if (in_features == 0) throw std::invalid_argument("dpar::nn::sequential: input features must be positive");
  }

  sequential(const sequential& other)
      : in_(other.in_), seed_(other.seed_), mode_(other.mode_), params_(other.params_), grads_(other.grads_),
        state_(other.state_) {
    for (auto& l : other.layers_) layers_.push_back(l->clone());
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
    requires std::is_base_of_v<layer, Layer>
  sequential& add(Layer l) {
    return add(std::unique_ptr<layer>(std::make_unique<Layer>(std::move(l))));
  }
  sequential& add(std::unique_ptr<layer> l) {
    if (!l) throw std::invalid_argument("dpar::nn::sequential::add: no layer");
    l->out_features(out_features());  // validates the shapes now, not at the first forward
    std::size_t extra = l->parameter_count(), kept = l->state_count();
    layers_.push_back(std::move(l));
    params_.resize(params_.size() + extra, 0.0f);
    grads_.resize(params_.size(), 0.0f);
    state_.resize(state_.size() + kept, 0.0f);
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

  // model.train() / model.eval(): the mode forward and backward run in.
  nn::mode mode() const noexcept { return mode_; }
  void set_mode(nn::mode m) noexcept { mode_ = m; }
  void train() noexcept { mode_ = nn::mode::train; }
  void eval() noexcept { mode_ = nn::mode::eval; }

  std::span<float> parameters() noexcept { return params_; }
  std::span<const float> parameters() const noexcept { return params_; }
  std::span<float> gradients() noexcept { return grads_; }
  std::span<const float> gradients() const noexcept { return grads_; }
  // Values kept but not trained (batch_norm's running statistics), layer by layer.
  std::span<float> state() noexcept { return state_; }
  std::span<const float> state() const noexcept { return state_; }

  // True if a layer's output depends on the rest of the batch in train mode
  // (a batch_layer): the trainer then runs all of a replica's parts at once.
  bool couples_batch() const {
    for (auto& l : layers_)
      if (l->as_batch_layer()) return true;
    return false;
  }
  // The lengths of the vectors a train-mode forward and backward sum over
  // the batch (batch_sync::sum), in the order they are summed.
  std::vector<std::size_t> sync_sizes() const {
    std::vector<std::size_t> sizes;
    for (auto& l : layers_)
      if (const batch_layer* b = l->as_batch_layer()) sizes.push_back(b->forward_sums_size());
    for (std::size_t i = layers_.size(); i-- > 0;)
      if (const batch_layer* b = layers_[i]->as_batch_layer()) sizes.push_back(b->backward_sums_size());
    return sizes;
  }

  // Runs the batch x (rows are samples) through every layer in the model's
  // mode; `step` and `first_sample` say where the batch is in the run
  // (dropout's mask depends on them). Returns the output, valid until the
  // next forward. A Dense followed by an activation runs fused.
  const tensor& forward(const tensor& x, std::uint64_t step = 0, std::size_t first_sample = 0) {
    const tensor* xs[] = {&x};
    forward_parts(xs, std::span<const std::size_t>(&first_sample, 1), step);
    return output(0);
  }
  // Backpropagates dL/d(output) through the last forward's batch, overwriting
  // the gradient buffer.
  void backward(const tensor& grad_output) {
    const tensor* dys[] = {&grad_output};
    float* grads[] = {grads_.data()};
    backward_parts(dys, grads);
  }

  // Forward over several parts of one batch at once (xs[p] starting at
  // firsts[p] in the batch), layer by layer, so that a batch_layer's
  // statistics span every part, and, through `sync`, every replica's parts
  // (null: these parts alone). The data-parallel trainer's path for models
  // that couple the batch; each part is computed as forward alone would
  // (the same GEMM shapes). output(p) is part p's, until the next forward.
  void forward_parts(std::span<const tensor* const> xs, std::span<const std::size_t> firsts, std::uint64_t step,
                     batch_sync* sync = nullptr) {
    if (firsts.size() != xs.size())
      throw std::invalid_argument("dpar::nn::sequential::forward_parts: " + std::to_string(xs.size()) + " parts but " +
                                  std::to_string(firsts.size()) + " positions");
    for (const tensor* x : xs)
      if (x->cols() != in_)
        throw std::invalid_argument("dpar::nn::sequential: input has " + std::to_string(x->cols()) +
                                    " features, the model takes " + std::to_string(in_));
    const std::size_t parts = xs.size();
    forwarded_ = true;
    inputs_.assign(xs.begin(), xs.end());
    firsts_.assign(firsts.begin(), firsts.end());
    step_ = step;
    acts_.resize(parts);
    for (auto& a : acts_) a.resize(layers_.size() + 1);
    std::vector<double> sums;
    std::size_t f = in_;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const std::size_t next = layers_[i]->out_features(f);
      auto in = [&](std::size_t p) -> const tensor& { return i == 0 ? *xs[p] : acts_[p][i]; };
      for (std::size_t p = 0; p < parts; ++p) acts_[p][i + 1].resize(xs[p]->rows(), next);
      const activation* a = i + 1 < layers_.size() ? layers_[i + 1]->fusable() : nullptr;
      if (a && layers_[i]->fuses_activation()) {
        // Fused: the activation's output is written directly; the layer's own
        // output is never needed (its backward reads x and dy only, the
        // activation's y and dy only).
        for (std::size_t p = 0; p < parts; ++p) {
          acts_[p][i + 2].resize(xs[p]->rows(), next);
          layers_[i]->forward_fused(in(p), acts_[p][i + 2], *a);
        }
        ++i;
      } else {
        batch_layer* b = layers_[i]->as_batch_layer();
        if (b && mode_ == nn::mode::train) {
          const std::size_t n = b->forward_sums_size();
          sums.assign((parts + 1) * n, 0.0);
          for (std::size_t p = 0; p < parts; ++p) b->forward_sums(at(i, p), in(p), sums.data() + (p + 1) * n);
          combine(sync, sums, parts, n);
          b->begin_forward(at(i, 0), sums.data());
        }
        for (std::size_t p = 0; p < parts; ++p) layers_[i]->forward_pass(at(i, p), in(p), acts_[p][i + 1]);
      }
      f = next;
    }
  }
  const tensor& output(std::size_t part = 0) const {
    return layers_.empty() ? *inputs_.at(part) : acts_.at(part).back();
  }
  // Backward over the parts of the last forward_parts: part p's parameter
  // gradients overwrite grads[p] (a buffer of parameters().size() floats;
  // may be gradients().data()).
  void backward_parts(std::span<const tensor* const> dys, std::span<float* const> grads, batch_sync* sync = nullptr) {
    if (!forwarded_)
      throw std::logic_error("dpar::nn::sequential::backward called before forward");
    const std::size_t parts = inputs_.size();
    if (dys.size() != parts || grads.size() != parts)
      throw std::invalid_argument("dpar::nn::sequential::backward_parts: the forward had " + std::to_string(parts) +
                                  " parts, got " + std::to_string(dys.size()) + " gradients of the output and " +
                                  std::to_string(grads.size()) + " gradient buffers");
    if (layers_.empty()) return;
    grad_acts_.resize(parts);
    std::vector<const tensor*> dy(dys.begin(), dys.end());
    std::vector<tensor*> dx(parts);
    std::vector<double> sums;
    for (std::size_t i = layers_.size(); i-- > 0;) {
      auto in = [&](std::size_t p) -> const tensor& { return i == 0 ? *inputs_[p] : acts_[p][i]; };
      for (std::size_t p = 0; p < parts; ++p) {
        grad_acts_[p].resize(layers_.size() + 1);
        dx[p] = nullptr;
        if (i > 0) {
          grad_acts_[p][i].resize(in(p).rows(), in(p).cols());
          dx[p] = &grad_acts_[p][i];
        }
      }
      batch_layer* b = layers_[i]->as_batch_layer();
      if (b && mode_ == nn::mode::train) {
        const std::size_t n = b->backward_sums_size();
        sums.assign((parts + 1) * n, 0.0);
        for (std::size_t p = 0; p < parts; ++p)
          b->backward_sums(at(i, p), in(p), acts_[p][i + 1], *dy[p], sums.data() + (p + 1) * n);
        combine(sync, sums, parts, n);
        b->begin_backward(at(i, 0), sums.data());
      }
      for (std::size_t p = 0; p < parts; ++p) {
        if (grads[p] != grads_.data()) layers_[i]->bind(params_.data() + offsets_[i], grads[p] + offsets_[i]);
        layers_[i]->backward_pass(at(i, p), in(p), acts_[p][i + 1], *dy[p], dx[p]);
        if (grads[p] != grads_.data()) layers_[i]->bind(params_.data() + offsets_[i], grads_.data() + offsets_[i]);
      }
      for (std::size_t p = 0; p < parts; ++p) dy[p] = dx[p];
      if (on_backward_) on_backward_(offsets_[i]);
    }
  }

  // Called during every backward after each layer's, with the offset from
  // which the gradients are final for that backward: the buffer's suffix
  // [offset, size), growing from the last layer's (the trainer starts the
  // sum of a bucket of layers while earlier ones compute). Not copied with
  // the model; an empty function stops it.
  void on_backward(std::function<void(std::size_t)> f) { on_backward_ = std::move(f); }

  // The outputs (logits) for the batch x, in eval mode, computed in buffers
  // of its own: the state kept for backward is left alone, so a const
  // (trained, shared) model can classify, from several threads at once. It
  // assumes, as the built-in layers do, that a layer's eval-mode forward
  // does not modify the layer.
  tensor predict(const tensor& x) const {
    if (x.cols() != in_)
      throw std::invalid_argument("dpar::nn::sequential::predict: input has " + std::to_string(x.cols()) +
                                  " features, the model takes " + std::to_string(in_));
    tensor out, next;
    const tensor* in = &x;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      next.resize(in->rows(), layers_[i]->out_features(in->cols()));
      layers_[i]->forward_pass(pass{nn::mode::eval, 0, 0, i}, *in, next);
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

 private:
  pass at(std::size_t layer, std::size_t part) const {
    return {mode_, step_, part < firsts_.size() ? firsts_[part] : 0, layer};  // a replica may hold no part
  }
  // sums[0, n) = the sum of the parts' vectors (sums[(p + 1) n, (p + 2) n)),
  // over every replica through `sync`, else over these parts in order.
  static void combine(batch_sync* sync, std::vector<double>& sums, std::size_t parts, std::size_t n) {
    if (sync) {
      std::vector<const double*> mine(parts);
      for (std::size_t p = 0; p < parts; ++p) mine[p] = sums.data() + (p + 1) * n;
      sync->sum(mine, std::span<double>(sums.data(), n));
      return;
    }
    for (std::size_t p = 0; p < parts; ++p)
      for (std::size_t j = 0; j < n; ++j) sums[j] += sums[(p + 1) * n + j];
  }
  void initialize_layer(std::size_t i) {
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + i);
    layers_[i]->initialize(rng);
  }
  void rebind() {
    std::size_t offset = 0, kept = 0;
    offsets_.clear();
    for (auto& l : layers_) {
      offsets_.push_back(offset);
      l->bind(params_.data() + offset, grads_.data() + offset);
      l->bind_state(state_.data() + kept);
      offset += l->parameter_count();
      kept += l->state_count();
    }
    inputs_.clear();
    acts_.clear();
    grad_acts_.clear();
    forwarded_ = false;
  }

  std::size_t in_;
  std::uint64_t seed_ = default_seed;
  nn::mode mode_ = nn::mode::train;
  std::vector<std::unique_ptr<layer>> layers_;
  std::vector<float> params_, grads_, state_;
  std::vector<std::size_t> offsets_;  // layer i's parameters start at offsets_[i]
  std::function<void(std::size_t)> on_backward_;
  // The last forward's parts: inputs, positions, and activations
  // (acts_[p][i + 1] is layer i's output for part p).
  std::vector<const tensor*> inputs_;
  std::vector<std::size_t> firsts_;
  std::uint64_t step_ = 0;
  bool forwarded_ = false;
  std::vector<std::vector<tensor>> acts_, grad_acts_;
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
