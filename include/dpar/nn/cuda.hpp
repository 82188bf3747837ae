#pragma once
// dpar::nn on CUDA devices: device tensors, the cuBLAS GEMM, gpu_model (a
// sequential model's forward/backward/loss/SGD on one device and stream), and
// the trainer's replicas for dpar::gpu and dpar::multi_gpu({...}).
// Needs a CUDA compiler and cuBLAS (CMake: CUDA::cublas). Reached only from
// here: <dpar/nn.hpp> stays plain C++.
//
// Only "where the numbers live" and "which GEMM" are written here
// (gpu_place); the arithmetic is ops.hpp's, shared with the CPU layers:
//   GEMMs                      cuBLAS, one handle per place, destroyed with it
//   bias + activation (fused)  dpar::for_each over elements
//   activation gradients       dpar::transform
//   bias gradients             dpar::for_each over columns, each summing its
//                              column in row order: the CPU's bits exactly
//                              (a cuBLAS GEMV with a ones vector would sum in
//                              its own order); untimed, the dW GEMM of the
//                              same layer does `in` times more work
//   losses, count-correct      dpar::for_each over rows + dpar::reduce /
//                              dpar::transform_reduce
//   SGD                        dpar::transform / dpar::for_each
// Everything is queued on the place's stream; the losses and counts are
// values, so computing them waits for the stream.

#if !defined(__CUDACC__)
#error "dpar/nn/cuda.hpp needs a CUDA compiler; plain C++ code includes <dpar/nn.hpp> only."
#endif

#include <cublas_v2.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../cuda.hpp"
#include "../detail/cuda/placement.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "ops.hpp"
#include "optim.hpp"
#include "replica_group.hpp"
#include "replica_model.hpp"
#include "tensor.hpp"

namespace dpar::nn {

// A failed cuBLAS call: names the call, the device and cuBLAS's status.
class cublas_error : public std::runtime_error {
 public:
  cublas_error(const std::string& operation, int device, cublasStatus_t status)
      : std::runtime_error("dpar::nn::gpu: " + operation + " on device " + std::to_string(device) + " failed: " +
                           cublasGetStatusName(status) + ": " + cublasGetStatusString(status)),
        device_(device),
        status_(status) {}
  int device() const noexcept { return device_; }
  cublasStatus_t status() const noexcept { return status_; }

 private:
  int device_;
  cublasStatus_t status_;
};

namespace detail {

inline void check_cublas(cublasStatus_t status, const std::string& operation, int device) {
  if (status != CUBLAS_STATUS_SUCCESS) throw cublas_error(operation, device, status);
}

// A cuBLAS handle of one place (device and stream), destroyed with it: a
// handle per place, not per stream value, since one value can name several
// streams (cudaStreamPerThread is each host thread's own; a destroyed
// stream's address comes back), and two places sharing a handle would share
// its workspace. Pedantic math: single-precision GEMMs compute in full fp32,
// never TF32 or BF16x9 emulation, whatever the environment says, so device
// results match the CPU's within float rounding.
struct cublas_destroy {
  int device;
  void operator()(cublasHandle_t h) const noexcept {
    int previous = device;
    (void)cudaGetDevice(&previous);
    (void)cudaSetDevice(device);  // a handle is destroyed on the device it was made on
    (void)cublasDestroy(h);
    (void)cudaSetDevice(previous);
  }
};
using cublas_handle = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, cublas_destroy>;

inline cublas_handle make_cublas_handle(int device, cudaStream_t stream) {
  dpar::detail::cuda::device_scope scope(device);
  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), "cublasCreate", device);
  cublas_handle owned(h, cublas_destroy{device});
  check_cublas(cublasSetStream(h, stream), "cublasSetStream", device);
  check_cublas(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode(CUBLAS_PEDANTIC_MATH)", device);
  return owned;
}

inline int cublas_int(std::size_t v, const char* what, int device) {
  if (v > static_cast<std::size_t>(INT_MAX))
    throw std::invalid_argument("dpar::nn::gpu: GEMM " + std::string(what) + " " + std::to_string(v) +
                                " exceeds cuBLAS's int range (device " + std::to_string(device) + ")");
  return static_cast<int>(v);
}

}  // namespace detail

// One device and stream as a place for ops.hpp: dpar::gpu.on(device, stream)
// for elementwise work and reductions, cuBLAS for products (a handle of its
// own). Used by one host thread at a time. Move-only.
class gpu_place {
 public:
  explicit gpu_place(const gpu_policy& policy)
      : policy_(policy.on(policy.device(), policy.stream())),
        handle_(detail::make_cublas_handle(policy_.device(), policy_.stream())) {}

  static constexpr bool walks_rows = false;
  const gpu_policy& policy() const noexcept { return policy_; }
  int device() const { return policy_.device(); }
  cudaStream_t stream() const noexcept { return policy_.stream(); }

  static std::pair<thrust::counting_iterator<std::size_t>, thrust::counting_iterator<std::size_t>> indices(
      std::size_t n) {
    return {thrust::counting_iterator<std::size_t>(0), thrust::counting_iterator<std::size_t>(n)};
  }

  // Row-major C[m,n] = alpha op(A) op(B) + beta C. cuBLAS is column-major, and
  // a row-major matrix read column-major is its transpose, so this is
  // C^T = op(B)^T op(A)^T: the same call with the operands swapped.
  void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
            std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) const {
    if (m == 0 || n == 0) return;
    int d = device();
    using detail::cublas_int;
    dpar::detail::cuda::device_scope scope(d);
    detail::check_cublas(
        cublasSgemm(handle_.get(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                    cublas_int(n, "n", d), cublas_int(m, "m", d), cublas_int(k, "k", d), &alpha, b,
                    cublas_int(ldb, "ldb", d), a, cublas_int(lda, "lda", d), &beta, c, cublas_int(ldc, "ldc", d)),
        "cublasSgemm", d);
  }

 private:
  gpu_policy policy_;  // with its device named, so that it does not follow the calling thread's current device
  detail::cublas_handle handle_;
};

// A row-major float matrix in one device's memory: owning (dpar::device_vector
// storage that only grows, as tensor's does) or a view of someone else's.
// Move-only: a copy of device memory is an explicit copy().
class device_tensor {
 public:
  device_tensor() = default;
  device_tensor(std::size_t rows, std::size_t cols, int device) : device_(device) { resize(rows, cols); }
  static device_tensor view(float* data, std::size_t rows, std::size_t cols, int device) {
    device_tensor t;
    t.data_ = data;
    t.rows_ = rows;
    t.cols_ = cols;
    t.device_ = device;
    t.view_ = true;
    return t;
  }
  device_tensor(device_tensor&&) noexcept = default;
  device_tensor& operator=(device_tensor&&) noexcept = default;

  // Contents are unspecified afterwards (zero when the storage grew). Storage
  // is on the tensor's device; a tensor constructed without one takes the
  // device of the first place that resizes it (resize(rows, cols, device)),
  // and a tensor of another device than that place's is refused
  // (detail/cuda/placement.hpp).
  void resize(std::size_t rows, std::size_t cols, int place_device = -1) {
    if (view_)
      throw std::logic_error("dpar::nn::device_tensor: cannot resize a view to " + std::to_string(rows) + "x" +
                             std::to_string(cols));
    device_ = dpar::detail::cuda::tensor_device(device_, place_device, "dpar::nn::device_tensor");
    if (rows * cols > storage_.size()) storage_ = device_vector<float>(rows * cols, device_);
    data_ = storage_.data();
    rows_ = rows;
    cols_ = cols;
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t size() const noexcept { return rows_ * cols_; }
  int device() const noexcept { return device_; }
  bool owning() const noexcept { return !view_; }
  static constexpr nn::device where() noexcept { return nn::device::cuda; }
  float* data() noexcept { return data_; }
  const float* data() const noexcept { return data_; }

  device_tensor rows_view(std::size_t first, std::size_t count) const {
    if (first + count > rows_)
      throw std::out_of_range("dpar::nn::device_tensor: rows [" + std::to_string(first) + ", " +
                              std::to_string(first + count) + ") of a tensor with " + std::to_string(rows_) + " rows");
    return view(data_ + first * cols_, count, cols_, device_);
  }

 private:
  device_vector<float> storage_;
  float* data_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0;
  int device_ = -1;  // -1: none yet
  bool view_ = false;
};

namespace detail {
inline void copy_bytes(const gpu_policy& on, void* to, const void* from, std::size_t bytes, cudaMemcpyKind kind,
                       const char* what) {
  if (bytes == 0) return;
  int d = on.device();
  dpar::detail::cuda::device_scope scope(d);
  dpar::detail::cuda::check(cudaMemcpyAsync(to, from, bytes, kind, on.stream()), what, d);
}
// A replica group's copy_gradients: between device and host memory, finished on return.
inline void copy_gradients(const gpu_policy& on, std::span<const float> from, std::span<float> to) {
  copy_bytes(on, to.data(), from.data(), from.size_bytes(), cudaMemcpyDefault, "cudaMemcpyAsync (gradient staging)");
  on.synchronize();
}
}  // namespace detail

// Host -> device, resizing `to` (an owning tensor): queued on the policy's
// stream after the work already there.
inline void copy(const gpu_policy& on, const tensor& from, device_tensor& to) {
  to.resize(from.rows(), from.cols(), on.device());
  detail::copy_bytes(on, to.data(), from.data(), from.size() * sizeof(float), cudaMemcpyHostToDevice,
                     "cudaMemcpyAsync (host to device tensor)");
}
// Device -> host, resizing `to`: waits for the policy's stream, so `to` is ready on return.
inline void copy(const gpu_policy& on, const device_tensor& from, tensor& to) {
  to.resize(from.rows(), from.cols());
  detail::copy_bytes(on, to.data(), from.data(), from.size() * sizeof(float), cudaMemcpyDeviceToHost,
                     "cudaMemcpyAsync (device tensor to host)");
  on.synchronize();
}

// A sequential model's copy on one device and stream: parameters, gradients,
// optimizer state and activations in device memory, with the layer sequence
// (and the Dense + activation fusion) of the host model it was made from.
// Layers: dense, relu, tanh_layer, sigmoid; any other is refused by name.
class gpu_model {
 public:
  gpu_model(const sequential& model, const gpu_policy& policy, sgd_options opt = {})
      : place_(policy),
        in_(model.in_features()),
        params_(model.parameters().size(), place_.device()),
        grads_(model.parameters().size(), place_.device()),
        velocity_(model.parameters().size(), place_.device()),
        opt_(opt) {
    sgd(0, opt);  // refuses the options the CPU optimizer refuses
    std::size_t offset = 0, f = in_;
    for (std::size_t i = 0; i < model.size(); ++i) {
      const layer& l = model[i];
      step s{kind_of(l), f, l.out_features(f), offset};
      steps_.push_back(s);
      offset += l.parameter_count();
      f = s.out;
    }
    acts_.resize(steps_.size() + 1);
    grad_acts_.resize(steps_.size() + 1);
    for (std::size_t i = 1; i <= steps_.size(); ++i) {
      acts_[i] = device_tensor(0, 0, place_.device());
      grad_acts_[i] = device_tensor(0, 0, place_.device());
    }
    upload_parameters(model);
  }

  const gpu_place& place() const noexcept { return place_; }
  std::size_t in_features() const noexcept { return in_; }
  std::size_t out_features() const noexcept { return steps_.empty() ? in_ : steps_.back().out; }
  std::span<float> parameters() noexcept { return {params_.data(), params_.size()}; }  // device memory
  std::span<float> gradients() noexcept { return {grads_.data(), grads_.size()}; }     // device memory
  std::span<float> velocity() noexcept { return {velocity_.data(), velocity_.size()}; }  // device memory

  // The host model's parameters to the device, queued on the stream (the
  // host side may change on return: a copy from pageable memory is staged
  // before the call returns); and back, waiting for the stream.
  void upload_parameters(const sequential& model) {
    check_same(model);
    detail::copy_bytes(place_.policy(), params_.data(), model.parameters().data(), params_.size() * sizeof(float),
                       cudaMemcpyHostToDevice, "cudaMemcpyAsync (parameters to device)");
  }
  void download_parameters(sequential& model) const {
    check_same(model);
    detail::copy_bytes(place_.policy(), model.parameters().data(), params_.data(), params_.size() * sizeof(float),
                       cudaMemcpyDeviceToHost, "cudaMemcpyAsync (parameters to host)");
    place_.policy().synchronize();
  }

  // As sequential::forward, on device memory; x stays referenced until backward.
  const device_tensor& forward(const device_tensor& x) {
    (void)dpar::detail::cuda::tensor_device(x.device(), place_.device(), "dpar::nn::gpu_model::forward: the input");
    if (x.cols() != in_)
      throw std::invalid_argument("dpar::nn::gpu_model: input has " + std::to_string(x.cols()) +
                                  " features, the model takes " + std::to_string(in_));
    input_ = &x;
    const std::size_t n = x.rows();
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const step& s = steps_[i];
      const float* in = i == 0 ? x.data() : acts_[i].data();
      if (s.what == kind::dense) {
        // Fused with an activation that follows, as on the CPU: the GEMM
        // writes the activation's output, which gets bias + f in place.
        bool fused = i + 1 < steps_.size() && steps_[i + 1].what != kind::dense;
        device_tensor& y = acts_[fused ? i + 2 : i + 1];
        y.resize(n, s.out);
        ops::dense_forward_linear(place_, in, n, s.in, s.out, weights(s), y.data());
        activate(fused ? steps_[i + 1].what : kind::dense, y.data(), n, s.out, bias(s));
        if (fused) ++i;
      } else {
        acts_[i + 1].resize(n, s.out);
        detail::copy_bytes(place_.policy(), acts_[i + 1].data(), in, n * s.out * sizeof(float),
                           cudaMemcpyDeviceToDevice, "cudaMemcpyAsync (activation input)");
        activate(s.what, acts_[i + 1].data(), n, s.out, nullptr);
      }
    }
    return steps_.empty() ? x : acts_.back();
  }

  // As sequential::backward: overwrites the gradients from dL/d(output).
  void backward(const device_tensor& grad_output) {
    if (!input_) throw std::logic_error("dpar::nn::gpu_model::backward called before forward");
    const std::size_t n = input_->rows();
    (void)dpar::detail::cuda::tensor_device(grad_output.device(), place_.device(),
                                            "dpar::nn::gpu_model::backward: the gradient");
    if (grad_output.rows() != n || grad_output.cols() != out_features())
      throw std::invalid_argument("dpar::nn::gpu_model::backward: gradient is " + std::to_string(grad_output.rows()) +
                                  "x" + std::to_string(grad_output.cols()) + ", the last forward's output " +
                                  std::to_string(n) + "x" + std::to_string(out_features()));
    const float* dy = grad_output.data();
    for (std::size_t i = steps_.size(); i-- > 0;) {
      const step& s = steps_[i];
      const float* in = i == 0 ? input_->data() : acts_[i].data();
      float* dx = nullptr;
      if (i > 0) {
        grad_acts_[i].resize(n, s.in);
        dx = grad_acts_[i].data();
      }
      if (s.what == kind::dense)
        ops::dense_backward(place_, in, dy, n, s.in, s.out, weights(s), grads_.data() + s.offset,
                            grads_.data() + s.offset + s.out * s.in, dx);
      else if (dx)
        activation_backward(s.what, acts_[i + 1].data(), dy, dx, n * s.out);
      dy = dx;
    }
  }

  // The loss sum of the last forward's output against labels (device memory,
  // already checked to lie in [0, out_features())), and its gradient of
  // sum / total into grad (resized). Waits for the stream.
  double loss(loss_kind what, const device_tensor& out, const std::int32_t* labels, device_tensor* grad,
              std::size_t total) {
    std::size_t n = out.rows(), k = out.cols();
    if (total < n)
      throw std::invalid_argument("dpar::nn::gpu_model::loss: global batch size " + std::to_string(total) +
                                  " is smaller than the shard's " + std::to_string(n));
    (void)dpar::detail::cuda::tensor_device(out.device(), place_.device(), "dpar::nn::gpu_model::loss: the output");
    if (grad) grad->resize(n, k, place_.device());
    float* g = grad ? grad->data() : nullptr;
    if (what == loss_kind::mse)
      return ops::onehot_mse(place_, out.data(), labels, n, k, ops::mse_scale(k, total), g);
    if (row_loss_.size() < n) row_loss_ = device_vector<double>(n, place_.device());
    return ops::softmax_cross_entropy(place_, out.data(), labels, n, k, 1.0f / static_cast<float>(total), g,
                                      row_loss_.data());
  }
  std::size_t count_correct(const device_tensor& out, const std::int32_t* labels) const {
    return ops::count_correct(place_, out.data(), labels, out.rows(), out.cols());
  }

  // One SGD step of the parameters from the gradient buffer.
  void sgd_step(float lr) {
    ops::sgd_step(place_, params_.data(), grads_.data(), velocity_.data(), params_.size(), lr, opt_.momentum,
                  opt_.nesterov, opt_.weight_decay);
  }

 private:
  using kind = builtin_layer;
  struct step {
    kind what;
    std::size_t in, out, offset;  // offset: of the layer's parameters in the flat buffer
  };

  static kind kind_of(const layer& l) {
    if (const kind k = l.builtin(); k != kind::other) return k;
    throw std::invalid_argument("dpar::nn::gpu_model: layer " + l.name() +
                                " has no device path (supported: Dense, ReLU, Tanh, Sigmoid)");
  }

  const float* weights(const step& s) const { return params_.data() + s.offset; }
  const float* bias(const step& s) const { return params_.data() + s.offset + s.out * s.in; }

  // y = f(y + bias) in place for the activation `what` (kind::dense: the identity).
  void activate(kind what, float* y, std::size_t n, std::size_t cols, const float* b) const {
    switch (what) {
      case kind::dense: return ops::bias_activate(place_, y, n, cols, b, ops::identity_fn{});
      case kind::relu: return ops::bias_activate(place_, y, n, cols, b, relu::function{});
      case kind::tanh: return ops::bias_activate(place_, y, n, cols, b, tanh_layer::function{});
      case kind::sigmoid: return ops::bias_activate(place_, y, n, cols, b, sigmoid::function{});
      case kind::other: return;  // never a step: kind_of refuses it
    }
  }
  void activation_backward(kind what, const float* y, const float* dy, float* dx, std::size_t count) const {
    switch (what) {
      case kind::dense: return;
      case kind::relu: return ops::activation_backward(place_, y, dy, dx, count, relu::gradient{});
      case kind::tanh: return ops::activation_backward(place_, y, dy, dx, count, tanh_layer::gradient{});
      case kind::sigmoid: return ops::activation_backward(place_, y, dy, dx, count, sigmoid::gradient{});
      case kind::other: return;  // never a step: kind_of refuses it
    }
  }

  void check_same(const sequential& model) const {
    if (model.in_features() != in_ || model.size() != steps_.size() || model.parameters().size() != params_.size())
      throw std::invalid_argument("dpar::nn::gpu_model: the host model has another layout (" +
                                  std::to_string(model.parameters().size()) + " parameters; this one has " +
                                  std::to_string(params_.size()) + ")");
  }

  gpu_place place_;
  std::size_t in_;
  std::vector<step> steps_;
  device_vector<float> params_, grads_, velocity_;
  sgd_options opt_;
  std::vector<device_tensor> acts_, grad_acts_;  // acts_[i + 1] is layer i's output
  device_vector<double> row_loss_;
  const device_tensor* input_ = nullptr;
};

namespace detail {
// Page-locked host memory (cudaMallocHost) that only grows: a replica's batch
// staging, so that its upload is one truly asynchronous copy.
class pinned_buffer {
 public:
  pinned_buffer() = default;
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
  ~pinned_buffer() {
    if (data_) (void)cudaFreeHost(data_);
  }
  // At least `floats` floats; the contents are lost when it grows.
  float* reserve(std::size_t floats, int device) {
    if (floats > size_) {
      if (data_) (void)cudaFreeHost(data_);
      data_ = nullptr;
      size_ = 0;
      void* p = nullptr;
      dpar::detail::cuda::check(cudaMallocHost(&p, floats * sizeof(float)), "cudaMallocHost (batch staging)", device);
      data_ = static_cast<float*>(p);
      size_ = floats;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  std::size_t size_ = 0;
};
}  // namespace detail

// A data-parallel replica on one device and stream (replica_model.hpp): a
// gpu_model plus the host mirror of its state. A step's shard is gathered on
// the host into pinned memory, samples then labels, and reaches the device in
// one cudaMemcpyAsync; the loss value waits for the stream, so the staging
// buffer is free again when compute_gradients returns.
class gpu_replica_model final : public replica_model {
 public:
  gpu_replica_model(const sequential& model, const gpu_policy& on, sgd_options opt, loss_kind loss)
      : host_(model), velocity_(model.parameters().size(), 0.0f), device_(model, on, opt), loss_(loss) {}

  tensor& input_buffer(std::size_t rows, std::size_t cols) override {
    staged_ = tensor();  // not a view of memory that reserve frees and then fails to replace
    staged_ = tensor::view(staging_.reserve(rows * cols + rows, device()), rows, cols);
    return staged_;
  }
  shard_totals compute_gradients(const tensor& x, std::span<const std::int32_t> labels, std::size_t total) override {
    const device_tensor& out = device_.forward(upload(x, labels));
    double loss = device_.loss(loss_, out, labels_, &grad_, total);
    std::size_t correct = device_.count_correct(out, labels_);
    device_.backward(grad_);
    return {loss, correct};
  }
  shard_totals evaluate(const tensor& x, std::span<const std::int32_t> labels) override {
    const device_tensor& out = device_.forward(upload(x, labels));
    return {device_.loss(loss_, out, labels_, nullptr, x.rows()), device_.count_correct(out, labels_)};
  }
  void zero_gradients() override {
    auto g = device_.gradients();
    dpar::detail::cuda::device_scope scope(device());
    dpar::detail::cuda::check(cudaMemsetAsync(g.data(), 0, g.size_bytes(), device_.place().stream()),
                              "cudaMemsetAsync (gradients)", device());
  }
  std::span<float> gradients() override { return device_.gradients(); }
  void update(float lr) override { device_.sgd_step(lr); }

  sequential& host_model() override { return host_; }
  std::span<float> host_velocity() override { return velocity_; }
  void push() override {
    device_.upload_parameters(host_);
    detail::copy_bytes(device_.place().policy(), device_.velocity().data(), velocity_.data(),
                       velocity_.size() * sizeof(float), cudaMemcpyHostToDevice, "cudaMemcpyAsync (velocity to device)");
    device_.place().policy().synchronize();  // the host mirror may change as soon as this returns
  }
  void pull() override {
    detail::copy_bytes(device_.place().policy(), velocity_.data(), device_.velocity().data(),
                       velocity_.size() * sizeof(float), cudaMemcpyDeviceToHost, "cudaMemcpyAsync (velocity to host)");
    device_.download_parameters(host_);  // waits for the stream
  }

 private:
  int device() const { return device_.place().device(); }

  // The shard and its labels to the device in one copy; labels_ points at them there.
  const device_tensor& upload(const tensor& x, std::span<const std::int32_t> labels) {
    const std::size_t n = x.rows(), f = x.cols(), floats = n * f + n;
    if (x.data() != staged_.data() || x.rows() != staged_.rows() || x.cols() != staged_.cols()) {
      tensor& stage = input_buffer(n, f);
      std::copy(x.data(), x.data() + x.size(), stage.data());
    }
    // Labels after the samples, as int32 bits in float slots (same size).
    static_assert(sizeof(std::int32_t) == sizeof(float));
    std::memcpy(staged_.data() + n * f, labels.data(), n * sizeof(std::int32_t));
    if (batch_.size() < floats) batch_ = device_vector<float>(floats, device());
    detail::copy_bytes(device_.place().policy(), batch_.data(), staged_.data(), floats * sizeof(float),
                       cudaMemcpyHostToDevice, "cudaMemcpyAsync (batch to device)");
    x_ = device_tensor::view(batch_.data(), n, f, device());
    labels_ = reinterpret_cast<const std::int32_t*>(batch_.data() + n * f);
    return x_;
  }

  sequential host_;
  std::vector<float> velocity_;
  gpu_model device_;
  loss_kind loss_;
  detail::pinned_buffer staging_;
  tensor staged_;                // a view of staging_
  device_vector<float> batch_;   // the shard and its labels on the device
  device_tensor x_, grad_;       // x_: a view of batch_
  const std::int32_t* labels_ = nullptr;
};

// The built-in label loss a GPU replica computes on its device. What it does
// not compute (a user's loss or one of tensor targets, AdamW) is refused, by name.
inline loss_kind device_loss(const replica_options& options) {
  if (options.adamw)
    throw std::invalid_argument("dpar::nn: GPU replicas update with SGD only; AdamW runs on CPU replicas");
  if (!options.loss.kind())
    throw std::invalid_argument(
        "dpar::nn: GPU replicas compute the built-in label losses only (loss_kind::softmax_cross_entropy, "
        "loss_kind::mse); this loss runs on CPU replicas (dpar::seq, dpar::par, dpar::mpi of those)");
  return *options.loss.kind();
}

// dpar::gpu: one replica on the policy's device and stream; collectives are
// the identity (sequential_group's). Under dpar::mpi(comm, dpar::gpu.on(d)), one such group per
// rank, the gradients host-staged across ranks (nn/mpi.hpp).
class gpu_group final : public sequential_group {
 public:
  explicit gpu_group(const gpu_policy& p) : policy_(p.on(p.device(), p.stream())) {}
  std::unique_ptr<replica_model> make_model(std::size_t, const sequential& model,
                                            const replica_options& options) override {
    return std::make_unique<gpu_replica_model>(model, policy_, options.sgd, device_loss(options));
  }
  bool device_replicas() const noexcept override { return true; }
  void copy_gradients(std::size_t, std::span<const float> from, std::span<float> to) override {
    detail::copy_gradients(policy_, from, to);
  }

 private:
  gpu_policy policy_;
};

// dpar::multi_gpu({d0, d1, ...}): one replica per entry, on the entry's
// device and stream, each driven by a host thread of a pool of its own. Host
// collectives (the trainer's status, hashes, broadcasts) go through those
// threads (thread_group); the gradients through dpar::all_reduce on the
// multi_gpu policy, opted into NCCL's order: NCCL where the devices are
// distinct (its bandwidth, its order of summing, as in other data-parallel
// trainers), else staged through entry 0 in entry order. Same bits for any
// replica count: dpar::deterministic(multi_gpu) (nn/deterministic.hpp).
class multi_gpu_group final : public replica_group {
 public:
  explicit multi_gpu_group(const multi_gpu_policy& p)
      : replica_group(p.size(), p.size(), 0, 0),
        policy_(p.with_nccl_order()),
        pool_(p.size()),
        threads_(pool_),
        slots_(p.size()) {}

  void run(const std::function<void(std::size_t)>& f) override { threads_.run(f); }
  // Every replica posts its device buffer; local replica 0 reduces them all.
  void all_reduce(std::size_t local, std::span<float> data) override {
    slots_[local] = data;
    threads_.barrier(local);
    if (local == 0) dpar::all_reduce(policy_, slots_);
    threads_.barrier(local);
  }
  void all_reduce(std::size_t local, std::span<double> data) override { threads_.all_reduce(local, data); }
  void all_reduce(std::size_t local, std::span<std::uint64_t> data) override { threads_.all_reduce(local, data); }
  void broadcast(std::size_t local, std::span<std::byte> data, std::size_t root) override {
    threads_.broadcast(local, data, root);
  }
  void barrier(std::size_t local) override { threads_.barrier(local); }
  std::unique_ptr<replica_model> make_model(std::size_t local, const sequential& model,
                                            const replica_options& options) override {
    return std::make_unique<gpu_replica_model>(model, policy_.entry(local), options.sgd, device_loss(options));
  }
  bool device_replicas() const noexcept override { return true; }
  void copy_gradients(std::size_t local, std::span<const float> from, std::span<float> to) override {
    detail::copy_gradients(policy_.entry(local), from, to);
  }

 private:
  multi_gpu_policy policy_;
  thread_pool pool_;
  thread_group threads_;
  std::vector<std::span<float>> slots_;  // each replica's gradient buffer, for the all-reduce
};

template <>
struct replica_group_for<gpu_policy> {
  static std::unique_ptr<replica_group> make(const gpu_policy& p) { return std::make_unique<gpu_group>(p); }
};
template <>
struct replica_group_for<multi_gpu_policy> {
  static std::unique_ptr<replica_group> make(const multi_gpu_policy& p) {
    return std::make_unique<multi_gpu_group>(p);
  }
};

}  // namespace dpar::nn
