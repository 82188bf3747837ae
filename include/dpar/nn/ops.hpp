#pragma once
// The arithmetic of dpar::nn's layers, losses and optimizer, written once for
// every place a model can live. A "place" says where the numbers are and how
// to run on them:
//   policy()        the dpar policy elementwise work and reductions run on;
//   indices(n)      a [begin, end) pair over 0..n-1 that the policy takes;
//   gemm(...)       row-major C = alpha op(A) op(B) + beta C (a BLAS, cuBLAS);
//   walks_rows      true where a matrix is best walked row by row (a CPU
//                   thread: contiguous, vectorizes, no index division), false
//                   where by a flat index (a GPU: coalesced, one thread each).
// host_place (below) is the CPU; gpu_place (nn/cuda.hpp) one device and
// stream. Pointers passed to an op point into the place's memory.
//
// The functors are __host__ __device__ under a CUDA compiler, so the same
// definition runs in CPU replicas and in GPU kernels, and the CPU tests cover
// the formulas the GPU path uses.

#include <algorithm>
#include <cmath>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <type_traits>
#include <utility>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../algorithm.hpp"
#include "../execution.hpp"
#include "blas.hpp"

#if defined(__CUDACC__)
#define DPAR_NN_HOST_DEVICE __host__ __device__
#else
#define DPAR_NN_HOST_DEVICE
#endif

namespace dpar::nn {

namespace detail {
// A random-access iterator over the indices 0, 1, 2, ... (std::views::iota's
// iterator, which clang 14 cannot use with libstdc++ 12's ranges).
struct index_iterator {
  using iterator_category = std::random_access_iterator_tag;
  using value_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using reference = std::size_t;
  using pointer = void;
  std::size_t i = 0;
  std::size_t operator*() const noexcept { return i; }
  std::size_t operator[](difference_type n) const noexcept { return i + static_cast<std::size_t>(n); }
  index_iterator& operator++() noexcept { ++i; return *this; }
  index_iterator operator++(int) noexcept { return {i++}; }
  index_iterator& operator--() noexcept { --i; return *this; }
  index_iterator operator--(int) noexcept { return {i--}; }
  index_iterator& operator+=(difference_type n) noexcept { i += static_cast<std::size_t>(n); return *this; }
  index_iterator& operator-=(difference_type n) noexcept { i -= static_cast<std::size_t>(n); return *this; }
  friend index_iterator operator+(index_iterator a, difference_type n) noexcept { return a += n; }
  friend index_iterator operator+(difference_type n, index_iterator a) noexcept { return a += n; }
  friend index_iterator operator-(index_iterator a, difference_type n) noexcept { return a -= n; }
  friend difference_type operator-(index_iterator a, index_iterator b) noexcept {
    return static_cast<difference_type>(a.i) - static_cast<difference_type>(b.i);
  }
  friend bool operator==(index_iterator, index_iterator) = default;
  friend auto operator<=>(index_iterator, index_iterator) = default;
};
static_assert(std::random_access_iterator<index_iterator>);
}  // namespace detail

// The CPU: a replica's own thread, OpenBLAS for products.
struct host_place {
  static constexpr bool walks_rows = true;
  static constexpr sequenced_policy policy() noexcept { return dpar::seq; }
  static std::pair<detail::index_iterator, detail::index_iterator> indices(std::size_t n) noexcept {
    return {detail::index_iterator{0}, detail::index_iterator{n}};
  }
  static void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
                   const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                   std::size_t ldc) {
    blas::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
};

namespace ops {

// ---- activations: f(v) forward, and dL/dv from the output and dL/dout ----
// expf/tanhf (not std::): the same names on host and device; on the host they
// are what std::exp/std::tanh of a float call.
struct relu_fn {
  DPAR_NN_HOST_DEVICE float operator()(float v) const { return v > 0.0f ? v : 0.0f; }
};
struct relu_grad {
  DPAR_NN_HOST_DEVICE float operator()(float out, float g) const { return out > 0.0f ? g : 0.0f; }
};
struct tanh_fn {
  DPAR_NN_HOST_DEVICE float operator()(float v) const { return tanhf(v); }
};
struct tanh_grad {
  DPAR_NN_HOST_DEVICE float operator()(float out, float g) const { return g * (1.0f - out * out); }
};
struct sigmoid_fn {
  DPAR_NN_HOST_DEVICE float operator()(float v) const { return 1.0f / (1.0f + expf(-v)); }
};
struct sigmoid_grad {
  DPAR_NN_HOST_DEVICE float operator()(float out, float g) const { return g * out * (1.0f - out); }
};

// y[i] = f(y[i] + bias[i % cols]) over a rows x cols matrix (bias may be null):
// one pass that fuses a Dense layer's bias with the activation after it.
template <class F>
struct bias_activate_at {
  float* y;
  const float* bias;
  std::size_t cols;
  F f;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t i) const { y[i] = f(bias ? y[i] + bias[i % cols] : y[i]); }
};
// The same, a row at a time.
template <class F>
struct bias_activate_row {
  float* y;
  const float* bias;
  std::size_t cols;
  F f;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t r) const {
    float* row = y + r * cols;
    if (bias)
      for (std::size_t c = 0; c < cols; ++c) row[c] = f(row[c] + bias[c]);
    else
      for (std::size_t c = 0; c < cols; ++c) row[c] = f(row[c]);
  }
};
struct identity_fn {
  DPAR_NN_HOST_DEVICE float operator()(float v) const { return v; }
};

template <class Place, class F>
void bias_activate(const Place& place, float* y, std::size_t rows, std::size_t cols, const float* bias, F f) {
  if constexpr (Place::walks_rows) {
    auto [first, last] = place.indices(rows);
    dpar::for_each(place.policy(), first, last, bias_activate_row<F>{y, bias, cols, f});
  } else {
    auto [first, last] = place.indices(rows * cols);
    dpar::for_each(place.policy(), first, last, bias_activate_at<F>{y, bias, cols, f});
  }
}

// dx = grad(y, dy) elementwise over n values.
template <class Place, class G>
void activation_backward(const Place& place, const float* y, const float* dy, float* dx, std::size_t n, G grad) {
  dpar::transform(place.policy(), y, y + n, dy, dx, grad);
}

// ---- Dense: y = x W^T (+ b), W row-major [out][in] ----
template <class Place>
void dense_forward_linear(const Place& place, const float* x, std::size_t n, std::size_t in, std::size_t out,
                          const float* w, float* y) {
  place.gemm(false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
}

// db[c] = sum over rows r of dy[r][c], added in row order: a column per
// index (a GPU thread each), or row by row into db (a CPU's contiguous
// walk); the same bits either way.
struct column_sum_at {
  const float* dy;
  std::size_t rows, cols;
  float* db;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t c) const {
    float s = 0.0f;
    for (std::size_t r = 0; r < rows; ++r) s += dy[r * cols + c];
    db[c] = s;
  }
};

// dW = dY^T X, db = column sums of dY, dX = dY W (dx may be null).
template <class Place>
void dense_backward(const Place& place, const float* x, const float* dy, std::size_t n, std::size_t in,
                    std::size_t out, const float* w, float* dw, float* db, float* dx) {
  place.gemm(true, false, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
  if constexpr (Place::walks_rows) {
    std::fill(db, db + out, 0.0f);
    for (std::size_t r = 0; r < n; ++r) dpar::transform(place.policy(), db, db + out, dy + r * out, db, std::plus<>{});
  } else {
    auto [first, last] = place.indices(out);
    dpar::for_each(place.policy(), first, last, column_sum_at{dy, n, out, db});
  }
  if (dx) place.gemm(false, false, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}

// ---- losses over a rows x k output with integer labels (already checked to be in [0, k)) ----

// Row r of softmax cross-entropy: its loss into row_loss[r], and (grad not
// null) (softmax - onehot) * scale into its gradient row. Stable: the row's
// maximum is subtracted before exp.
struct softmax_xent_row {
  const float* z;
  const std::int32_t* labels;
  std::size_t k;
  float scale;
  float* grad;
  double* row_loss;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t r) const {
    const float* row = z + r * k;
    float m = row[0];
    for (std::size_t c = 1; c < k; ++c) m = row[c] > m ? row[c] : m;
    float s = 0.0f;
    for (std::size_t c = 0; c < k; ++c) s += expf(row[c] - m);
    std::size_t y = static_cast<std::size_t>(labels[r]);
    row_loss[r] = static_cast<double>(m + logf(s) - row[y]);
    if (grad) {
      float* g = grad + r * k;
      float inv = scale / s;
      for (std::size_t c = 0; c < k; ++c) g[c] = expf(row[c] - m) * inv;
      g[y] -= scale;
    }
  }
};

// Row r of z (k columns) to its softmax, in place; stable as above.
struct softmax_row {
  float* z;
  std::size_t k;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t r) const {
    float* row = z + r * k;
    float m = row[0];
    for (std::size_t c = 1; c < k; ++c) m = row[c] > m ? row[c] : m;
    float s = 0.0f;
    for (std::size_t c = 0; c < k; ++c) s += (row[c] = expf(row[c] - m));
    for (std::size_t c = 0; c < k; ++c) row[c] /= s;
  }
};

template <class Place>
void softmax_rows(const Place& place, float* z, std::size_t rows, std::size_t k) {
  auto [first, last] = place.indices(rows);
  if (k != 0) dpar::for_each(place.policy(), first, last, softmax_row{z, k});
}

// Sum of the rows' losses; row_loss is scratch for `rows` doubles in the place's memory.
template <class Place>
double softmax_cross_entropy(const Place& place, const float* z, const std::int32_t* labels, std::size_t rows,
                             std::size_t k, float scale, float* grad, double* row_loss) {
  auto [first, last] = place.indices(rows);
  dpar::for_each(place.policy(), first, last, softmax_xent_row{z, labels, k, scale, grad, row_loss});
  return dpar::reduce(place.policy(), row_loss, row_loss + rows, 0.0);
}

// Mean squared error against one-hot targets taken from the labels: element i
// (row i / k, column i % k). The squared term in double, as the CPU loss sums it.
struct onehot_target {
  const std::int32_t* labels;
  std::size_t k;
  DPAR_NN_HOST_DEVICE float operator()(std::size_t i) const {
    return static_cast<std::size_t>(labels[i / k]) == i % k ? 1.0f : 0.0f;
  }
};
// d(sum of per-sample MSEs)/d(out) / total = scale (out - t), per-sample MSE being the mean over k columns.
inline float mse_scale(std::size_t k, std::size_t total) {
  return static_cast<float>(2.0 / (static_cast<double>(k) * static_cast<double>(total)));
}
struct mse_grad {
  float scale;
  DPAR_NN_HOST_DEVICE float operator()(float o, float t) const { return scale * (o - t); }
};
struct squared_error {
  DPAR_NN_HOST_DEVICE double operator()(float o, float t) const {
    double d = static_cast<double>(o) - static_cast<double>(t);
    return d * d;
  }
};
struct onehot_mse_grad_at {
  const float* out;
  onehot_target target;
  mse_grad g;
  float* grad;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t i) const { grad[i] = g(out[i], target(i)); }
};
struct onehot_squared_error_at {
  const float* out;
  onehot_target target;
  DPAR_NN_HOST_DEVICE double operator()(std::size_t i) const { return squared_error{}(out[i], target(i)); }
};

// Sum over rows of the per-sample MSE (mean over the k columns); grad (if not
// null) gets d(sum)/d(out) * 1/total, i.e. scale = 2 / (k total).
template <class Place>
double onehot_mse(const Place& place, const float* out, const std::int32_t* labels, std::size_t rows, std::size_t k,
                  float scale, float* grad) {
  auto [first, last] = place.indices(rows * k);
  onehot_target target{labels, k};
  if (grad) dpar::for_each(place.policy(), first, last, onehot_mse_grad_at{out, target, mse_grad{scale}, grad});
  double sum = dpar::transform_reduce(place.policy(), first, last, 0.0, std::plus<>{},
                                      onehot_squared_error_at{out, target});
  return k ? sum / static_cast<double>(k) : 0.0;
}

// ---- losses of an output against a target tensor of the same shape ----
// Per sample: the mean over the columns of f(out, target) (PyTorch's "mean"
// reduction, per row). F gives value(o, t) in double and derivative(o, t),
// d value / d o, in float.
struct squared_difference {  // MSE
  DPAR_NN_HOST_DEVICE double value(float o, float t) const { return squared_error{}(o, t); }
  DPAR_NN_HOST_DEVICE float derivative(float o, float t) const { return 2.0f * (o - t); }
};
struct huber_fn {  // quadratic within delta of the target, linear beyond
  float delta;
  DPAR_NN_HOST_DEVICE double value(float o, float t) const {
    double d = static_cast<double>(o) - static_cast<double>(t), a = d < 0 ? -d : d;
    return a <= delta ? 0.5 * d * d : delta * (a - 0.5 * delta);
  }
  DPAR_NN_HOST_DEVICE float derivative(float o, float t) const {
    float d = o - t;
    return d > delta ? delta : (d < -delta ? -delta : d);
  }
};
struct bce_logits_fn {  // binary cross-entropy of sigmoid(o) against t in [0, 1], stable for any o
  DPAR_NN_HOST_DEVICE double value(float o, float t) const {
    double z = o, a = z < 0 ? -z : z;
    return (z > 0 ? z : 0.0) - z * static_cast<double>(t) + log1p(exp(-a));
  }
  DPAR_NN_HOST_DEVICE float derivative(float o, float t) const { return 1.0f / (1.0f + expf(-o)) - t; }
};

template <class F>
struct pointwise_value_at {
  const float *out, *target;
  F f;
  DPAR_NN_HOST_DEVICE double operator()(std::size_t i) const { return f.value(out[i], target[i]); }
};
template <class F>
struct pointwise_grad_at {
  const float *out, *target;
  float scale;
  float* grad;
  F f;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t i) const { grad[i] = scale * f.derivative(out[i], target[i]); }
};

// Sum over the rows of their per-sample loss; grad (if not null) gets
// d(sum)/d(out) / total.
template <class Place, class F>
double pointwise_loss(const Place& place, const float* out, const float* target, std::size_t rows, std::size_t cols,
                      std::size_t total, float* grad, F f) {
  if (cols == 0) return 0.0;
  auto [first, last] = place.indices(rows * cols);
  float scale = static_cast<float>(1.0 / (static_cast<double>(cols) * static_cast<double>(total)));
  if (grad) dpar::for_each(place.policy(), first, last, pointwise_grad_at<F>{out, target, scale, grad, f});
  return dpar::transform_reduce(place.policy(), first, last, 0.0, std::plus<>{},
                                pointwise_value_at<F>{out, target, f}) /
         static_cast<double>(cols);
}

// ---- accuracy ----
// 1 if row r's largest value (the first on ties) is at its label.
struct argmax_hit {
  const float* z;
  const std::int32_t* labels;
  std::size_t k;
  DPAR_NN_HOST_DEVICE std::int64_t operator()(std::size_t r) const {
    const float* row = z + r * k;
    std::size_t best = 0;
    for (std::size_t c = 1; c < k; ++c)
      if (row[c] > row[best]) best = c;
    return static_cast<std::size_t>(labels[r]) == best ? 1 : 0;
  }
};

template <class Place>
std::size_t count_correct(const Place& place, const float* z, const std::int32_t* labels, std::size_t rows,
                          std::size_t k) {
  auto [first, last] = place.indices(rows);
  return static_cast<std::size_t>(
      dpar::transform_reduce(place.policy(), first, last, std::int64_t{0}, std::plus<>{}, argmax_hit{z, labels, k}));
}

// ---- SGD (torch.optim.SGD, no dampening), one fused pass ----
//   d = g + wd p;  v = mu v + d;  p -= lr (nesterov ? d + mu v : v)   (mu > 0)
//   p -= lr d                                                           (mu = 0)
struct sgd_plain {
  float lr, wd;
  DPAR_NN_HOST_DEVICE float operator()(float p, float g) const { return p - lr * (g + wd * p); }
};
// Branch-free so that it vectorizes: step = a d + b v, with (a, b) = (1, mu)
// for Nesterov and (0, 1) for plain momentum. An index functor (it vectorizes
// on the CPU; deriving the index from an element's address does not).
struct sgd_momentum_at {
  float* p;
  const float* g;
  float* v;
  float lr, wd, mu, a, b;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t i) const {
    float d = g[i] + wd * p[i];
    float vi = mu * v[i] + d;
    v[i] = vi;
    p[i] -= lr * (a * d + b * vi);
  }
};

template <class Place>
void sgd_step(const Place& place, float* p, const float* g, float* v, std::size_t n, float lr, float momentum,
              bool nesterov, float weight_decay) {
  if (momentum == 0.0f) {
    dpar::transform(place.policy(), p, p + n, g, p, sgd_plain{lr, weight_decay});
    return;
  }
  const float a = nesterov ? 1.0f : 0.0f, b = nesterov ? momentum : 1.0f;
  auto [first, last] = place.indices(n);
  dpar::for_each(place.policy(), first, last, sgd_momentum_at{p, g, v, lr, weight_decay, momentum, a, b});
}

// ---- AdamW (torch.optim.AdamW), one fused pass ----
//   p -= lr wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr (m c1) / (sqrt(v c2) + eps),  c1 = 1 / (1 - b1^t), c2 = 1 / (1 - b2^t)
// The update of one element, or of a host vector's lanes (V: float, or a
// GCC vector of floats; root: the square root of a V), written once so that
// both give the same operations in the same order.
struct adamw_rule {
  float lr, wd, b1, b2, eps, c1, c2;
  template <class V, class Root>
  DPAR_NN_HOST_DEVICE void operator()(V& p, V g, V& m, V& v, Root root) const {
    m = b1 * m + (1.0f - b1) * g;
    v = b2 * v + (1.0f - b2) * g * g;
    const V decayed = p - lr * wd * p;
    p = decayed - lr * (m * c1) / (root(v * c2) + eps);
  }
};

struct float_root {
  DPAR_NN_HOST_DEVICE float operator()(float x) const { return sqrtf(x); }
};

struct adamw_at {
  float* p;
  const float* g;
  float *m, *v;
  adamw_rule rule;
  DPAR_NN_HOST_DEVICE void operator()(std::size_t i) const { rule(p[i], g[i], m[i], v[i], float_root{}); }
};

#if defined(__SSE2__) && !defined(__CUDA_ARCH__)  // nvcc's device pass takes no vector types
// adamw_at over [0, n) on the host, four elements at a time, with SSE's
// square root (IEEE, as sqrtf's). GCC keeps a loop over sqrtf scalar for its
// errno path: 2.5 ns per parameter against 0.7 (bench/RESULTS.md). The last
// elements go through the same vector code (padded), so an element's bits do
// not depend on where a piece of the update starts.
inline void adamw_host(const adamw_at& a, std::size_t n) {
  typedef float four __attribute__((vector_size(16)));
  auto root = [](four x) { return four(_mm_sqrt_ps(__m128(x))); };
  auto load = [](const float* x) {
    four r;
    std::memcpy(&r, x, sizeof r);
    return r;
  };
  auto store = [](float* x, four r) { std::memcpy(x, &r, sizeof r); };
  auto step = [&](float* p, const float* g, float* m, float* v) {
    four pv = load(p), mv = load(m), vv = load(v);
    a.rule(pv, load(g), mv, vv, root);
    store(p, pv), store(m, mv), store(v, vv);
  };
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) step(a.p + i, a.g + i, a.m + i, a.v + i);
  if (i == n) return;
  float p[4] = {}, g[4] = {}, m[4] = {}, v[4] = {};
  const std::size_t k = n - i;
  std::copy_n(a.p + i, k, p), std::copy_n(a.g + i, k, g), std::copy_n(a.m + i, k, m), std::copy_n(a.v + i, k, v);
  step(p, g, m, v);
  std::copy_n(p, k, a.p + i), std::copy_n(m, k, a.m + i), std::copy_n(v, k, a.v + i);
}
#endif

// Update t (1-based) of n parameters; m and v are the moment estimates.
template <class Place>
void adamw_step(const Place& place, float* p, const float* g, float* m, float* v, std::size_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, std::uint64_t t) {
  const double td = static_cast<double>(t);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta1), td)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta2), td)));
  const adamw_at update{p, g, m, v, {lr, weight_decay, beta1, beta2, eps, c1, c2}};
#if defined(__SSE2__) && !defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<Place, host_place>) return adamw_host(update, n);
#endif
  auto [first, last] = place.indices(n);
  dpar::for_each(place.policy(), first, last, update);
}

}  // namespace ops
}  // namespace dpar::nn
