#pragma once
// Convolutional layers: conv2d, max_pool2d and flatten. A batch stays a
// rows x features tensor: each row is one sample's image in CHW order (the
// batch's NCHW layout, row by row), and each layer is told the image shape
// it takes, so a model is still a sequential of layers over flat features.
//
// conv2d runs each sample as one GEMM through the library's GEMM seam
// (host_place::gemm: oneDNN or CBLAS): im2col unfolds the sample's windows
// into a (C k k) x (OH OW) matrix and the output channels are W [OC][C k k]
// times it, already in CHW order. One sample at a time keeps the unfolded
// matrix in cache, and a sample's result does not depend on what else is in
// the batch, so reproducible training (nn/deterministic.hpp) gets the same
// bits for any split. Parallelism comes from the replicas, one thread each.
// On the CPU only: a GPU replica refuses these layers by name (nn/cuda.hpp).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "layers.hpp"
#include "ops.hpp"
#include "tensor.hpp"

namespace dpar::nn {

// One sample's image: channels x height x width floats, row-major.
struct image_shape {
  std::size_t channels = 0, height = 0, width = 0;
  std::size_t size() const noexcept { return channels * height * width; }
  std::string str() const {
    return std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width);
  }
  friend bool operator==(const image_shape&, const image_shape&) = default;
};

namespace detail {

inline void check_image(const std::string& who, const image_shape& s) {
  if (s.channels == 0 || s.height == 0 || s.width == 0)
    throw std::invalid_argument("dpar::nn::" + who + ": the input image " + s.str() + " has a zero dimension");
}

// A layer's input must be the image it was built for.
inline void check_input_features(const std::string& who, const image_shape& s, std::size_t in) {
  if (in != s.size())
    throw std::invalid_argument("dpar::nn::" + who + ": input has " + std::to_string(in) + " features, expected " +
                                std::to_string(s.size()) + " (" + s.str() + ")");
}

// Positions of a window of `kernel` moved by `stride` over `side + 2 padding`
// values (floor, as PyTorch); throws if not even one fits.
inline std::size_t window_positions(const std::string& who, const char* dimension, std::size_t side, std::size_t kernel,
                                    std::size_t stride, std::size_t padding) {
  if (kernel == 0 || stride == 0)
    throw std::invalid_argument("dpar::nn::" + who + ": kernel and stride must be positive");
  if (kernel > side + 2 * padding)
    throw std::invalid_argument("dpar::nn::" + who + ": kernel " + std::to_string(kernel) + " is larger than the " +
                                dimension + " " + std::to_string(side) + " plus padding");
  return (side + 2 * padding - kernel) / stride + 1;
}

// Scratch of at least n floats, one buffer per thread and slot: layers'
// forward may run on a shared const model from several threads at once.
inline float* thread_scratch(std::size_t slot, std::size_t n) {
  thread_local std::vector<float> buffers[2];
  auto& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// The geometry of a 2-D convolution and its im2col / col2im for one sample.
// The unfolded matrix `col` has a row per (c, i, j) of the kernel window and
// a column per output position (oh, ow):
//   col[(c k + i) k + j][oh OW + ow] = x[c][oh s + i - p][ow s + j - p]   (0 in the padding)
struct conv_geometry {
  image_shape in;
  std::size_t kernel, stride, padding, out_h, out_w;

  std::size_t patch() const noexcept { return in.channels * kernel * kernel; }  // rows of col
  std::size_t positions() const noexcept { return out_h * out_w; }              // columns of col

  // For kernel column j: the output columns [lo, hi) whose input column
  // ow s + j - p lies inside the image; the others read padding.
  std::pair<std::size_t, std::size_t> inside(std::size_t j) const noexcept { return inside(j, in.width, out_w); }
  // The same for kernel row i and the output rows.
  std::pair<std::size_t, std::size_t> rows_inside(std::size_t i) const noexcept {
    return inside(i, in.height, out_h);
  }
  std::pair<std::size_t, std::size_t> inside(std::size_t j, std::size_t side, std::size_t out_side) const noexcept {
    auto s = static_cast<std::ptrdiff_t>(stride),
         off = static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(padding);
    auto w = static_cast<std::ptrdiff_t>(side), ow = static_cast<std::ptrdiff_t>(out_side);
    std::ptrdiff_t lo = off >= 0 ? 0 : (-off + s - 1) / s;         // first ow with ow s + off >= 0
    std::ptrdiff_t hi = w - off <= 0 ? 0 : (w - off + s - 1) / s;  // first ow with ow s + off >= w
    lo = std::min(lo, ow);
    hi = std::clamp(hi, lo, ow);
    return {static_cast<std::size_t>(lo), static_cast<std::size_t>(hi)};
  }

  // Stride 1 and the output as wide as the input (kernel 2 p + 1: "same"
  // padding, as make_cnn's 3x3 with padding 1): for one kernel offset, output
  // position q = oh OW + ow reads x at q + a constant, so the positions that
  // read the image are one run [first, last) of col's row, except its columns
  // outside [lo, hi), which read the neighbouring input row instead of padding.
  bool same_width() const noexcept { return stride == 1 && out_w == in.width; }

  // same_width only: f(row, first, last, shift, top, bottom, lo, hi) for every
  // kernel offset (c, i, j): col's row, its run [first, last) (empty when no
  // position reads the image), x's index of position q is q + shift, output
  // rows [top, bottom) and columns [lo, hi) read the image.
  template <class F>
  void each_run(F f) const {
    const std::size_t w = in.width;
    for (std::size_t c = 0; c < in.channels; ++c)
      for (std::size_t i = 0; i < kernel; ++i) {
        const auto [top, bottom] = rows_inside(i);
        for (std::size_t j = 0; j < kernel; ++j) {
          const auto [lo, hi] = inside(j);
          const std::size_t row = (c * kernel + i) * kernel + j;
          const std::ptrdiff_t shift =
              static_cast<std::ptrdiff_t>(c * in.height * w) +
              (static_cast<std::ptrdiff_t>(i) - static_cast<std::ptrdiff_t>(padding)) * static_cast<std::ptrdiff_t>(w) +
              static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(padding);
          const bool any = top < bottom && lo < hi;
          const std::size_t first = any ? top * w + lo : 0, last = any ? (bottom - 1) * w + hi : 0;
          f(row, first, last, shift, top, bottom, lo, hi);
        }
      }
  }

  // For every kernel offset (c, i, j) and output row oh: on_image(at, x0, lo,
  // hi) where input row oh s + i - p is inside the image, else on_padding(at).
  // `at` is where that output row starts in col; x0 the index in x that output
  // column 0 would read (possibly before the row: only columns [lo, hi) do).
  template <class OnImage, class OnPadding>
  void walk(OnImage on_image, OnPadding on_padding) const {
    const auto h = static_cast<std::ptrdiff_t>(in.height), w = static_cast<std::ptrdiff_t>(in.width);
    for (std::size_t c = 0; c < in.channels; ++c)
      for (std::size_t i = 0; i < kernel; ++i)
        for (std::size_t j = 0; j < kernel; ++j) {
          const std::size_t row = (c * kernel + i) * kernel + j;
          auto [lo, hi] = inside(j);
          const std::ptrdiff_t off = static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(padding);
          for (std::size_t oh = 0; oh < out_h; ++oh) {
            const std::size_t at = row * positions() + oh * out_w;
            const std::ptrdiff_t ih =
                static_cast<std::ptrdiff_t>(oh * stride + i) - static_cast<std::ptrdiff_t>(padding);
            if (ih < 0 || ih >= h)
              on_padding(at);
            else
              on_image(at, (static_cast<std::ptrdiff_t>(c) * h + ih) * w + off, lo, hi);
          }
        }
  }

  void im2col(const float* x, float* col) const {
    const std::size_t ow_n = out_w, s = stride;
    if (same_width()) {  // one copy per kernel offset, then the columns that read padding
      each_run([&](std::size_t row, std::size_t first, std::size_t last, std::ptrdiff_t shift, std::size_t top,
                   std::size_t bottom, std::size_t lo, std::size_t hi) {
        float* out = col + row * positions();
        std::fill(out, out + first, 0.0f);
        std::fill(out + last, out + positions(), 0.0f);
        if (first == last) return;
        std::copy(x + (static_cast<std::ptrdiff_t>(first) + shift), x + (static_cast<std::ptrdiff_t>(last) + shift),
                  out + first);
        for (std::size_t oh = top; oh < bottom; ++oh) {
          std::fill(out + oh * ow_n, out + oh * ow_n + lo, 0.0f);
          std::fill(out + oh * ow_n + hi, out + (oh + 1) * ow_n, 0.0f);
        }
      });
      return;
    }
    walk(
        [&](std::size_t at, std::ptrdiff_t x0, std::size_t lo, std::size_t hi) {
          float* out = col + at;
          std::fill(out, out + lo, 0.0f);
          if (s == 1) {  // a contiguous run of the input row (lo < hi: its first value is inside the image)
            if (lo < hi) std::copy_n(x + x0 + static_cast<std::ptrdiff_t>(lo), hi - lo, out + lo);
          } else {
            for (std::size_t ow = lo; ow < hi; ++ow) out[ow] = x[x0 + static_cast<std::ptrdiff_t>(ow * s)];
          }
          std::fill(out + hi, out + ow_n, 0.0f);
        },
        [&](std::size_t at) { std::fill(col + at, col + at + ow_n, 0.0f); });
  }

  // x = the sum, at each input position, of the col entries that read it
  // (the adjoint of im2col); x is overwritten. col is scratch: the entries
  // that read padding may be zeroed.
  void col2im(float* col, float* x) const {
    std::fill(x, x + in.size(), 0.0f);
    const std::size_t s = stride;
    if (same_width()) {  // one run per kernel offset: its columns that read padding zeroed, the run added
      each_run([&](std::size_t row, std::size_t first, std::size_t last, std::ptrdiff_t shift, std::size_t top,
                   std::size_t bottom, std::size_t lo, std::size_t hi) {
        if (first == last) return;
        float* __restrict from = col + row * positions();
        for (std::size_t oh = top; oh < bottom; ++oh) {
          std::fill(from + oh * out_w, from + oh * out_w + lo, 0.0f);
          std::fill(from + oh * out_w + hi, from + (oh + 1) * out_w, 0.0f);
        }
        float* __restrict to = x + (static_cast<std::ptrdiff_t>(first) + shift);  // position q reads x[q + shift]
        for (std::size_t k = 0; k < last - first; ++k) to[k] += from[first + k];  // + 0.0f where zeroed: x unchanged
      });
      return;
    }
    walk(
        [&](std::size_t at, std::ptrdiff_t x0, std::size_t lo, std::size_t hi) {
          if (s == 1 && lo < hi) {  // a contiguous run: vectorizes
            float* __restrict to = x + x0 + static_cast<std::ptrdiff_t>(lo);
            const float* __restrict from = col + at + lo;
            for (std::size_t k = 0; k < hi - lo; ++k) to[k] += from[k];
          } else {
            for (std::size_t ow = lo; ow < hi; ++ow) x[x0 + static_cast<std::ptrdiff_t>(ow * s)] += col[at + ow];
          }
        },
        [](std::size_t) {});
  }
};

// The sum of n floats in 16 interleaved partial sums (they vectorize; one
// running sum is a chain of dependent adds), then the partials in order.
inline float plane_sum(const float* v, std::size_t n) {
  float part[16] = {};
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (std::size_t l = 0; l < 16; ++l) part[l] += v[i + l];
  float s = 0.0f;
  for (float p : part) s += p;
  for (; i < n; ++i) s += v[i];
  return s;
}

// He (normal, std sqrt(2 / fan_in)) or Xavier (uniform in +-sqrt(6 / (fan_in + fan_out))) weights.
inline void init_weights(nn::init scheme, std::size_t fan_in, std::size_t fan_out, float* w, std::size_t n,
                         std::mt19937_64& rng) {
  if (scheme == nn::init::he) {
    std::normal_distribution<float> d(0.0f, std::sqrt(2.0f / static_cast<float>(fan_in)));
    for (std::size_t i = 0; i < n; ++i) w[i] = d(rng);
  } else {
    float a = std::sqrt(6.0f / static_cast<float>(fan_in + fan_out));
    std::uniform_real_distribution<float> d(-a, a);
    for (std::size_t i = 0; i < n; ++i) w[i] = d(rng);
  }
}

}  // namespace detail

// 2-D convolution (cross-correlation, as PyTorch's Conv2d): out_channels
// filters of in.channels x kernel x kernel, moved by `stride` over the image
// zero-padded by `padding` on every side. Weights are stored [OC][C][k][k]
// (PyTorch's layout), then the OC biases.
class conv2d final : public layer {
 public:
  conv2d(image_shape in, std::size_t out_channels, std::size_t kernel, std::size_t stride = 1, std::size_t padding = 0,
         nn::init scheme = nn::init::he)
      : out_channels_(out_channels), init_(scheme) {
    const std::string who = "conv2d";
    detail::check_image(who, in);
    if (out_channels == 0) throw std::invalid_argument("dpar::nn::conv2d: out_channels must be positive");
    g_.in = in;
    g_.kernel = kernel;
    g_.stride = stride;
    g_.padding = padding;
    g_.out_h = detail::window_positions(who, "height", in.height, kernel, stride, padding);
    g_.out_w = detail::window_positions(who, "width", in.width, kernel, stride, padding);
  }

  std::string name() const override {
    return "Conv2d(" + g_.in.str() + "," + std::to_string(out_channels_) + ",k" + std::to_string(g_.kernel) + ",s" +
           std::to_string(g_.stride) + ",p" + std::to_string(g_.padding) + ")";
  }
  image_shape input_shape() const noexcept { return g_.in; }
  image_shape output_shape() const noexcept { return {out_channels_, g_.out_h, g_.out_w}; }
  std::size_t out_features(std::size_t in) const override {
    detail::check_input_features(name(), g_.in, in);
    return output_shape().size();
  }
  std::size_t parameter_count() const override { return out_channels_ * g_.patch() + out_channels_; }
  void bind(float* params, float* grads) override {
    w_ = params;
    b_ = params + out_channels_ * g_.patch();
    dw_ = grads;
    db_ = grads + out_channels_ * g_.patch();
  }
  const float* weights() const noexcept { return w_; }
  const float* bias() const noexcept { return b_; }

  void initialize(std::mt19937_64& rng) override {
    detail::init_weights(init_, g_.patch(), out_channels_ * g_.kernel * g_.kernel, w_, out_channels_ * g_.patch(), rng);
    std::fill(b_, b_ + out_channels_, 0.0f);
  }

  // Per sample: y [OC][OH OW] = W [OC][C k k] col + b.
  void forward(const tensor& x, tensor& y) override {
    const std::size_t patch = g_.patch(), positions = g_.positions();
    float* col = detail::thread_scratch(0, patch * positions);
    for (std::size_t n = 0; n < x.rows(); ++n) {
      g_.im2col(x.row(n), col);
      float* yn = y.row(n);
      host_place::gemm(false, false, out_channels_, positions, patch, 1.0f, w_, patch, col, positions, 0.0f, yn,
                       positions);
      for (std::size_t oc = 0; oc < out_channels_; ++oc) {
        float* plane = yn + oc * positions;
        const float b = b_[oc];
        for (std::size_t p = 0; p < positions; ++p) plane[p] += b;
      }
    }
  }

  // Per sample, in row order: dW += dy_n col^T, db += dy_n's plane sums,
  // dx_n = col2im(W^T dy_n). im2col is redone here rather than kept from
  // forward: forward leaves the layer untouched (a shared model predicts
  // from several threads), and it costs a fraction of the two GEMMs.
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) override {
    const std::size_t patch = g_.patch(), positions = g_.positions();
    std::fill(dw_, dw_ + out_channels_ * patch, 0.0f);
    std::fill(db_, db_ + out_channels_, 0.0f);
    float* col = detail::thread_scratch(0, patch * positions);
    float* dcol = dx ? detail::thread_scratch(1, patch * positions) : nullptr;
    for (std::size_t n = 0; n < x.rows(); ++n) {
      const float* dyn = dy.row(n);
      g_.im2col(x.row(n), col);
      host_place::gemm(false, true, out_channels_, patch, positions, 1.0f, dyn, positions, col, positions, 1.0f, dw_,
                       patch);
      for (std::size_t oc = 0; oc < out_channels_; ++oc) db_[oc] += detail::plane_sum(dyn + oc * positions, positions);
      if (dcol) {
        host_place::gemm(true, false, patch, positions, out_channels_, 1.0f, w_, patch, dyn, positions, 0.0f, dcol,
                         positions);
        g_.col2im(dcol, dx->row(n));
      }
    }
  }
  std::unique_ptr<layer> clone() const override { return std::make_unique<conv2d>(*this); }

 private:
  detail::conv_geometry g_{};
  std::size_t out_channels_;
  nn::init init_;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

// Max over kernel x kernel windows moved by `stride` (default: the kernel,
// non-overlapping), each channel alone; a window must fit inside the image
// (floor, as PyTorch's MaxPool2d). The gradient goes to the first maximum of
// each window.
class max_pool2d final : public layer {
 public:
  max_pool2d(image_shape in, std::size_t kernel) : max_pool2d(in, kernel, kernel) {}
  max_pool2d(image_shape in, std::size_t kernel, std::size_t stride) : in_(in), kernel_(kernel), stride_(stride) {
    const std::string who = "max_pool2d";
    detail::check_image(who, in);
    out_h_ = detail::window_positions(who, "height", in.height, kernel, stride, 0);
    out_w_ = detail::window_positions(who, "width", in.width, kernel, stride, 0);
  }

  std::string name() const override {
    return "MaxPool2d(" + in_.str() + ",k" + std::to_string(kernel_) + ",s" + std::to_string(stride_) + ")";
  }
  image_shape input_shape() const noexcept { return in_; }
  image_shape output_shape() const noexcept { return {in_.channels, out_h_, out_w_}; }
  std::size_t out_features(std::size_t in) const override {
    detail::check_input_features(name(), in_, in);
    return output_shape().size();
  }

  void forward(const tensor& x, tensor& y) override {
    for (std::size_t n = 0; n < x.rows(); ++n) {
      float* out = y.row(n);
      if (kernel_ == 2 && stride_ == 2)
        each_2x2(x.row(n), [&](std::size_t o, float m, unsigned, float*) { out[o] = m; }, nullptr);
      else
        each_window(x.row(n), [&](std::size_t o, const float* best) { out[o] = *best; });
    }
  }
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) override {
    if (!dx) return;
    for (std::size_t n = 0; n < x.rows(); ++n) {
      const float* xn = x.row(n);
      const float* dyn = dy.row(n);
      float* dxn = dx->row(n);
      std::fill(dxn, dxn + in_.size(), 0.0f);
      if (kernel_ == 2 && stride_ == 2) {  // disjoint windows: each input gets at most one gradient
        const std::size_t w = in_.width;
        each_2x2(
            xn, [&](std::size_t o, float, unsigned first, float* d) { d[(first / 2) * w + first % 2] = dyn[o]; },
            dxn);
        continue;
      }
      each_window(xn, [&](std::size_t o, const float* best) { dxn[best - xn] += dyn[o]; });
    }
  }
  std::unique_ptr<layer> clone() const override { return std::make_unique<max_pool2d>(*this); }

 private:
  // Kernel 2, stride 2 (the common pooling), without the general loops:
  // f(output index, the window's maximum, which of its 4 values (row-major)
  // is the first maximum, the window's top-left in `d`, a buffer shaped as x
  // or null). The same comparisons in the same order as each_window.
  template <class F>
  void each_2x2(const float* x, F f, float* d) const {
    const std::size_t w = in_.width, plane = in_.height * w;
    std::size_t o = 0;
    for (std::size_t c = 0; c < in_.channels; ++c)
      for (std::size_t oh = 0; oh < out_h_; ++oh) {
        const std::size_t at = c * plane + 2 * oh * w;
        const float* r0 = x + at;
        const float* r1 = r0 + w;
        for (std::size_t ow = 0; ow < out_w_; ++ow, ++o) {
          // Without branches: which value wins is unpredictable on real data, and
          // with branches the backward took 2.5x as long.
          float m = r0[2 * ow];
          unsigned first = 0;
          auto take = [&](float v, unsigned k) {
            const unsigned later = 0u - static_cast<unsigned>(v > m);  // all ones where v wins
            first = (first & ~later) | (k & later);
            m = v > m ? v : m;
          };
          take(r0[2 * ow + 1], 1);
          take(r1[2 * ow], 2);
          take(r1[2 * ow + 1], 3);
          f(o, m, first, d ? d + at + 2 * ow : nullptr);
        }
      }
  }

  // f(output index, pointer to the window's first maximum in x) for every window of one sample.
  template <class F>
  void each_window(const float* x, F f) const {
    std::size_t o = 0;
    for (std::size_t c = 0; c < in_.channels; ++c) {
      const float* plane = x + c * in_.height * in_.width;
      for (std::size_t oh = 0; oh < out_h_; ++oh)
        for (std::size_t ow = 0; ow < out_w_; ++ow, ++o) {
          const float* best = plane + oh * stride_ * in_.width + ow * stride_;
          for (std::size_t i = 0; i < kernel_; ++i) {
            const float* row = plane + (oh * stride_ + i) * in_.width + ow * stride_;
            for (std::size_t j = 0; j < kernel_; ++j)
              if (row[j] > *best) best = row + j;
          }
          f(o, best);
        }
    }
  }

  image_shape in_;
  std::size_t kernel_, stride_, out_h_ = 0, out_w_ = 0;
};

// Where images become plain feature vectors (before a dense layer). Rows
// already hold each image in CHW order, so the values pass unchanged; the
// layer checks the shape and names it in the model's layout (checkpoints).
class flatten final : public layer {
 public:
  explicit flatten(image_shape in) : in_(in) { detail::check_image("flatten", in); }
  std::string name() const override { return "Flatten(" + in_.str() + ")"; }
  image_shape input_shape() const noexcept { return in_; }
  std::size_t out_features(std::size_t in) const override {
    detail::check_input_features(name(), in_, in);
    return in;
  }
  void forward(const tensor& x, tensor& y) override { std::copy(x.data(), x.data() + x.size(), y.data()); }
  void backward(const tensor&, const tensor&, const tensor& dy, tensor* dx) override {
    if (dx) std::copy(dy.data(), dy.data() + dy.size(), dx->data());
  }
  std::unique_ptr<layer> clone() const override { return std::make_unique<flatten>(*this); }

 private:
  image_shape in_;
};

// The CNN of the Fashion-MNIST example: per entry of `channels` a block of
// 3x3 convolution (padding 1) + ReLU + 2x2 max pooling, then a dense hidden
// layer of `hidden` units + ReLU and a linear output of `classes`.
inline sequential make_cnn(image_shape in, const std::vector<std::size_t>& channels, std::size_t hidden,
                           std::size_t classes) {
  if (channels.empty()) throw std::invalid_argument("dpar::nn::make_cnn: need at least one convolution block");
  sequential m(in.size());
  image_shape at = in;
  for (std::size_t c : channels) {
    conv2d conv(at, c, 3, 1, 1);
    max_pool2d pool(conv.output_shape(), 2);
    at = pool.output_shape();
    m.add(conv).add(relu()).add(pool);
  }
  m.add(flatten(at)).add(dense(at.size(), hidden)).add(relu()).add(dense(hidden, classes));
  return m;
}

}  // namespace dpar::nn
