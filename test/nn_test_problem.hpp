#pragma once
// The small problem the trainer tests share: Gaussian blobs, a 12-16-8-5 MLP
// and options with momentum, weight decay and a warmed-up cosine schedule;
// and a small CNN with its images.
#include <dpar/nn.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn_test {

namespace nn = dpar::nn;

// The library's forwarding_group over a thread_group on `pool`: the tests'
// stand-in groups derive from it and override what they watch.
class forwarding_group : public nn::forwarding_group {
 public:
  explicit forwarding_group(dpar::thread_pool& pool)
      : nn::forwarding_group(std::make_unique<nn::thread_group>(pool)) {}
};

// Another group with all it does forwarded to it, the end of a step and the
// optimizer state's pieces included (a forwarding_group keeps
// replica_group's own), keeping the models it makes: for tests that look at
// the trainer's replicas.
class observed_group final : public nn::forwarding_group {
 public:
  explicit observed_group(std::unique_ptr<nn::replica_group> inner)
      : nn::forwarding_group(std::move(inner)), models(local_size()) {}
  std::unique_ptr<nn::replica_model> make_model(std::size_t local, const nn::sequential& m,
                                                const nn::replica_options& o) override {
    auto made = inner().make_model(local, m, o);
    models[local] = made.get();
    return made;
  }
  void sum_parts(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                 std::span<float> out) override {
    inner().sum_parts(local, mine, first, total, out);
  }
  void sum_parts(std::size_t local, std::span<const double* const> mine, std::size_t first, std::size_t total,
                 std::span<double> out) override {
    inner().sum_parts(local, mine, first, total, out);
  }
  void sum_and_update(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                      nn::replica_model& model, float lr, float max_norm) override {
    inner().sum_and_update(local, mine, first, total, model, lr, max_norm);
  }
  bool sums_in_buckets(const nn::replica_model& model) const noexcept override {
    return inner().sums_in_buckets(model);
  }
  void start_bucket(std::size_t local, nn::replica_model& model, std::size_t lo, std::size_t hi) override {
    inner().start_bucket(local, model, lo, hi);
  }
  void progress_buckets(std::size_t local) override { inner().progress_buckets(local); }
  void finish_buckets(std::size_t local, nn::replica_model& model) override { inner().finish_buckets(local, model); }
  void update_summed(std::size_t local, nn::replica_model& model, float lr, float max_norm) override {
    inner().update_summed(local, model, lr, max_norm);
  }
  void gather_velocity(std::size_t local, nn::replica_model& model) override { inner().gather_velocity(local, model); }
  std::optional<dpar::index_range> state_piece(std::size_t local, std::size_t n) const override {
    return inner().state_piece(local, n);
  }
  void keep_state_piece(std::size_t local, nn::replica_model& model) override {
    inner().keep_state_piece(local, model);
  }
  bool sums_exactly() const noexcept override { return inner().sums_exactly(); }

  std::vector<nn::replica_model*> models;  // local replica l's
};

// `classes` centres in `features` dimensions, with noise.
inline nn::dataset blobs(std::size_t n, std::size_t features, std::size_t classes, std::uint64_t seed,
                         float noise = 0.6f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> centres(classes * features);
  std::mt19937_64 cg(1234);  // same centres for every seed: train and test share the problem
  for (auto& c : centres) c = d(cg);
  nn::dataset data;
  data.images.resize(n, features);
  for (std::size_t i = 0; i < n; ++i) {
    auto y = static_cast<std::int32_t>(g() % classes);
    data.labels.push_back(y);
    for (std::size_t f = 0; f < features; ++f) data.images(i, f) = centres[y * features + f] + noise * d(g);
  }
  return data;
}

// Regression: y = (sin(3 x0), x0 x1) for x uniform in [-1, 1]^2.
inline nn::tensor_dataset waves(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  nn::tensor_dataset data{nn::tensor(n, 2), nn::tensor(n, 2)};
  for (std::size_t i = 0; i < n; ++i) {
    float a = u(g), b = u(g);
    data.inputs(i, 0) = a;
    data.inputs(i, 1) = b;
    data.targets(i, 0) = std::sin(3.0f * a);
    data.targets(i, 1) = a * b;
  }
  return data;
}

inline nn::sequential waves_model() {
  nn::sequential m(2);
  m.add(nn::dense(2, 16, nn::init::xavier)).add(nn::tanh_layer()).add(nn::dense(16, 2, nn::init::xavier));
  return m;
}

// A user's loss of tensor targets: Huber with delta 0.5, written by hand.
struct user_huber {
  double operator()(const nn::tensor& out, const nn::tensor& t, nn::tensor* grad, std::size_t total) const {
    double sum = 0;
    const double k = double(out.cols());
    for (std::size_t i = 0; i < out.size(); ++i) {
      double d = double(out.data()[i]) - t.data()[i], a = std::abs(d);
      sum += (a <= 0.5 ? 0.5 * d * d : 0.5 * (a - 0.25)) / k;
      if (grad) grad->data()[i] = float(std::clamp(d, -0.5, 0.5) / (k * double(total)));
    }
    return sum;
  }
};

inline nn::train_options options(std::size_t batch) {
  nn::train_options o;
  o.batch = batch;
  o.seed = 9;
  o.schedule = nn::lr_schedule::cosine(0.1f, 40).with_warmup(3);
  o.sgd = {0.9f, true, 1e-3f};
  o.check_replicas = true;
  return o;
}

inline nn::sequential model() {
  auto m = nn::make_mlp({12, 16, 8, 5});
  m.initialize(3);
  return m;
}

// model() with its first two dense layers model-parallel (the first gets no
// input gradient, the second does): the same layout and initial parameters.
inline nn::sequential split_model() {
  nn::sequential m(12);
  m.add(nn::model_parallel(nn::dense(12, 16))).add(nn::relu());
  m.add(nn::model_parallel(nn::dense(16, 8))).add(nn::relu()).add(nn::dense(8, 5));
  m.initialize(3);
  return m;
}

// Fashion-MNIST's shape, for reproducible training: 784 features, 10
// classes; 1000 samples in batches of 128 wrap around (batch_of) with a short
// batch of 104 every 8 steps.
inline const nn::dataset& fashion_shaped() {
  static const nn::dataset data = blobs(1000, 784, 10, 21, 2.0f);
  return data;
}

inline nn::sequential fashion_model() {
  auto m = nn::make_mlp({784, 48, 10});
  m.initialize(5);
  return m;
}

inline std::vector<float> params(const nn::data_parallel_trainer& t) {
  auto p = t.model().parameters();
  return {p.begin(), p.end()};
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::abs(x)));
  return m;
}

inline double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, double(std::abs(a[i] - b[i])));
  return d;
}

// An identity layer with one parameter that breaks the replicas' lockstep on
// purpose: a copy for which drifts(copy) holds nudges its parameter during
// forward (copy: 0 for the original, then 1, 2, ... for each clone made).
class drifting final : public nn::layer {
 public:
  explicit drifting(bool (*drifts)(int copy)) : drifts_(drifts) {}
  std::string name() const override { return "Drifting"; }
  std::size_t out_features(std::size_t in) const override { return in; }
  std::size_t parameter_count() const override { return 1; }
  void bind(float* params, float* grads) override { p_ = params, g_ = grads; }
  void forward(const nn::tensor& x, nn::tensor& y) override {
    std::copy(x.data(), x.data() + x.size(), y.data());
    if (drifts_(id_)) *p_ += 1.0f;
  }
  void backward(const nn::tensor&, const nn::tensor&, const nn::tensor& dy, nn::tensor* dx) override {
    *g_ = 0.0f;
    if (dx) std::copy(dy.data(), dy.data() + dy.size(), dx->data());
  }
  std::unique_ptr<nn::layer> clone() const override {
    auto c = std::make_unique<drifting>(*this);
    c->id_ = ++copies_;
    return c;
  }

 private:
  bool (*drifts_)(int);
  float *p_ = nullptr, *g_ = nullptr;
  int id_ = 0;
  static inline int copies_ = 0;
};

// The global batch of step s: consecutive rows, wrapping around.
inline std::pair<nn::tensor, std::span<const std::int32_t>> batch_of(const nn::dataset& data, std::size_t batch,
                                                                     std::size_t s) {
  std::size_t first = (s * batch) % data.size(), count = std::min(batch, data.size() - first);
  return {data.images.rows_view(first, count), std::span<const std::int32_t>(data.labels).subspan(first, count)};
}

// A small CNN on 1x8x8 images: conv 3x3 pad 1, ReLU, pool 2, conv 3x3 stride 2
// pad 1, ReLU, flatten, dense to 4 classes.
inline nn::sequential small_cnn() {
  nn::conv2d c1({1, 8, 8}, 4, 3, 1, 1);
  nn::max_pool2d p1(c1.output_shape(), 2);
  nn::conv2d c2(p1.output_shape(), 6, 3, 2, 1);
  nn::flatten f(c2.output_shape());
  nn::sequential m(64);
  m.add(c1).add(nn::relu()).add(p1).add(c2).add(nn::relu()).add(f).add(nn::dense(c2.output_shape().size(), 4));
  m.initialize(17);
  return m;
}

// 120 1x8x8 images of 4 classes with a class-dependent bright quadrant, plus noise.
inline const nn::dataset& quadrant_images() {
  static const nn::dataset data = [] {
    nn::dataset d;
    std::mt19937_64 g(5);
    std::normal_distribution<float> noise(0.0f, 0.5f);
    d.images.resize(120, 64);
    for (std::size_t n = 0; n < 120; ++n) {
      auto y = static_cast<std::int32_t>(g() % 4);
      d.labels.push_back(y);
      for (std::size_t i = 0; i < 64; ++i) {
        std::size_t row = i / 8, col = i % 8;
        bool lit = (row / 4) * 2 + col / 4 == static_cast<std::size_t>(y);
        d.images(n, i) = (lit ? 1.0f : 0.0f) + noise(g);
      }
    }
    return d;
  }();
  return data;
}

// Files for the mapped data sources: a whole file of bytes, an IDX header
// (unsigned bytes, these dims) followed by `values`.
inline void write_bytes(const std::string& path, const void* data, std::size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!f) throw std::runtime_error("cannot write " + path);
}
inline std::vector<std::uint8_t> idx_u8(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& values) {
  std::vector<std::uint8_t> b = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

// blobs() as files: `stem`.images.idx (n x features bytes: the blobs
// quantized), `stem`.labels.idx, and `stem`.raw (the images as idx_load_dataset
// gives them: float32, bytes / 255). Returns the data set they hold, loaded.
struct blob_files {
  std::string images, labels, raw;
};
inline blob_files write_blob_files(const std::string& stem, std::size_t n, std::size_t features, std::uint64_t seed) {
  const nn::dataset d = blobs(n, features, 5, seed);
  std::vector<std::uint8_t> pixels(n * features), labels(n);
  std::vector<float> raw(n * features);
  for (std::size_t i = 0; i < n * features; ++i) {
    pixels[i] = static_cast<std::uint8_t>(std::clamp(128.0f + 40.0f * d.images.data()[i], 0.0f, 255.0f));
    raw[i] = pixels[i] * (1.0f / 255.0f);
  }
  for (std::size_t i = 0; i < n; ++i) labels[i] = static_cast<std::uint8_t>(d.labels[i]);
  blob_files f{stem + ".images.idx", stem + ".labels.idx", stem + ".raw"};
  auto images = idx_u8({static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(features)}, pixels);
  auto label_file = idx_u8({static_cast<std::uint32_t>(n)}, labels);
  write_bytes(f.images, images.data(), images.size());
  write_bytes(f.labels, label_file.data(), label_file.size());
  write_bytes(f.raw, raw.data(), raw.size() * sizeof(float));
  return f;
}

}  // namespace nn_test
