// Convolutional layers (nn/conv.hpp): conv2d and max_pool2d forward against
// direct loops in float64 (odd sizes, stride 2, padding), every gradient
// (parameters and input) against float64 central differences, shape errors,
// and a small CNN trained on 1, 2 and 3 thread replicas (and reproducibly
// under dpar::deterministic, also across a checkpoint). Label cpu: runs under
// TSan and ASan too.
#include <dpar/nn.hpp>

#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "nn_test_problem.hpp"

using namespace nn_test;

namespace {

struct conv_case {
  nn::image_shape in;
  std::size_t out_channels, kernel, stride, padding;
};

// Odd sizes; stride 2 with and without padding; a kernel as large as the
// padded image; 1x1; a padding larger than the kernel's reach; "same" 5x5
// (stride 1, as wide as the input: im2col's one-run path), also on an image
// smaller than the padding, where some kernel columns read only padding.
const std::vector<conv_case> conv_cases = {
    {{3, 7, 5}, 4, 3, 1, 1}, {{2, 9, 8}, 3, 3, 2, 0}, {{2, 7, 6}, 5, 3, 2, 1}, {{1, 4, 5}, 2, 6, 1, 1},
    {{3, 5, 7}, 2, 1, 1, 0}, {{1, 3, 3}, 2, 2, 3, 2}, {{2, 6, 5}, 3, 5, 1, 2}, {{1, 2, 2}, 2, 5, 1, 2},
};

std::vector<double> random_values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<double> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

nn::tensor to_tensor(const std::vector<double>& v, std::size_t rows) {
  nn::tensor t(rows, v.size() / rows);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

// Rounds to float, so the reference sees exactly the layer's values.
std::vector<double> as_float(std::vector<double> v) {
  for (auto& x : v) x = static_cast<float>(x);
  return v;
}

// conv2d by its definition, one output at a time, in float64. p: weights [OC][C][k][k] then biases.
std::vector<double> conv_reference(const conv_case& c, const std::vector<double>& p, const std::vector<double>& x,
                                   std::size_t rows) {
  const auto& s = c.in;
  const std::size_t k = c.kernel;
  const std::size_t oh_n = (s.height + 2 * c.padding - k) / c.stride + 1;
  const std::size_t ow_n = (s.width + 2 * c.padding - k) / c.stride + 1;
  std::vector<double> y(rows * c.out_channels * oh_n * ow_n);
  std::size_t at = 0;
  for (std::size_t n = 0; n < rows; ++n)
    for (std::size_t o = 0; o < c.out_channels; ++o)
      for (std::size_t oh = 0; oh < oh_n; ++oh)
        for (std::size_t ow = 0; ow < ow_n; ++ow) {
          double sum = p[c.out_channels * s.channels * k * k + o];
          for (std::size_t ch = 0; ch < s.channels; ++ch)
            for (std::size_t i = 0; i < k; ++i)
              for (std::size_t j = 0; j < k; ++j) {
                long ih = long(oh * c.stride + i) - long(c.padding), iw = long(ow * c.stride + j) - long(c.padding);
                if (ih < 0 || iw < 0 || ih >= long(s.height) || iw >= long(s.width)) continue;
                sum += p[((o * s.channels + ch) * k + i) * k + j] *
                       x[n * s.size() + (ch * s.height + std::size_t(ih)) * s.width + std::size_t(iw)];
              }
          y[at++] = sum;
        }
  return y;
}

std::vector<double> pool_reference(const nn::image_shape& s, std::size_t k, std::size_t stride,
                                   const std::vector<double>& x, std::size_t rows) {
  const std::size_t oh_n = (s.height - k) / stride + 1, ow_n = (s.width - k) / stride + 1;
  std::vector<double> y;
  for (std::size_t n = 0; n < rows; ++n)
    for (std::size_t ch = 0; ch < s.channels; ++ch)
      for (std::size_t oh = 0; oh < oh_n; ++oh)
        for (std::size_t ow = 0; ow < ow_n; ++ow) {
          double m = -INFINITY;
          for (std::size_t i = 0; i < k; ++i)
            for (std::size_t j = 0; j < k; ++j)
              m = std::max(m, x[n * s.size() + (ch * s.height + oh * stride + i) * s.width + ow * stride + j]);
          y.push_back(m);
        }
  return y;
}

// A layer's float results against a float64 reference f(params, x):
//   forward equal within float rounding;
//   with L = sum(r * f) for random r, backward(dy = r) gives dL/dparams and
//   dL/dx within 1e-3 relative of central differences of the reference.
void check_layer(nn::layer& l, std::size_t in_features, std::size_t rows, std::uint64_t seed,
                 const std::function<std::vector<double>(const std::vector<double>&, const std::vector<double>&)>& f) {
  const std::size_t out_features = l.out_features(in_features);
  std::vector<float> params(l.parameter_count()), grads(l.parameter_count(), -7.0f);  // grads overwritten
  l.bind(params.data(), grads.data());
  std::vector<double> p = as_float(random_values(params.size(), seed));
  std::copy(p.begin(), p.end(), params.begin());
  std::vector<double> x = as_float(random_values(rows * in_features, seed + 1));
  std::vector<double> r = as_float(random_values(rows * out_features, seed + 2));

  nn::tensor xt = to_tensor(x, rows), y(rows, out_features), dy = to_tensor(r, rows), dx(rows, in_features);
  l.forward(xt, y);
  const std::vector<double> want = f(p, x);
  REQUIRE(want.size() == y.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("output " << i);
    REQUIRE(y.data()[i] == Approx(want[i]).margin(1e-5).epsilon(1e-5));
  }
  std::fill(dx.data(), dx.data() + dx.size(), -7.0f);  // overwritten too
  l.backward(xt, y, dy, &dx);

  auto loss = [&](const std::vector<double>& pp, const std::vector<double>& xx) {
    auto out = f(pp, xx);
    double s = 0;
    for (std::size_t i = 0; i < out.size(); ++i) s += r[i] * out[i];
    return s;
  };
  auto check = [&](std::vector<double>& v, std::size_t i, float analytic, const char* what) {
    const double h = 1e-6, keep = v[i];
    v[i] = keep + h;
    double up = loss(p, x);
    v[i] = keep - h;
    double down = loss(p, x);
    v[i] = keep;
    double fd = (up - down) / (2 * h);
    double err = std::abs(analytic - fd) / std::max(std::abs(fd), 1e-2);
    INFO(what << " " << i << ": analytic " << analytic << ", finite differences " << fd);
    REQUIRE(err <= 1e-3);
  };
  for (std::size_t i = 0; i < p.size(); ++i) check(p, i, grads[i], "parameter");
  for (std::size_t i = 0; i < x.size(); ++i) check(x, i, dx.data()[i], "input");
}

}  // namespace

TEST_CASE("conv2d: forward matches the direct loop and every gradient matches finite differences", "[nn][conv]") {
  std::uint64_t seed = 1;
  for (const auto& c : conv_cases) {
    DYNAMIC_SECTION("input " << c.in.str() << " -> " << c.out_channels << " k" << c.kernel << " s" << c.stride << " p"
                             << c.padding) {
      nn::conv2d l(c.in, c.out_channels, c.kernel, c.stride, c.padding);
      REQUIRE(l.parameter_count() == c.out_channels * c.in.channels * c.kernel * c.kernel + c.out_channels);
      const std::size_t rows = 3;
      check_layer(l, c.in.size(), rows, seed,
                  [&](const auto& p, const auto& x) { return conv_reference(c, p, x, rows); });
    }
    seed += 10;
  }
}

TEST_CASE("conv2d: no rows, and backward without an input gradient", "[nn][conv]") {
  nn::conv2d l({2, 5, 5}, 3, 3, 2, 1);
  std::vector<float> params(l.parameter_count(), 0.5f), grads(l.parameter_count(), 9.0f);
  l.bind(params.data(), grads.data());
  nn::tensor x(0, 50), y(0, l.out_features(50));
  l.forward(x, y);
  l.backward(x, y, y, nullptr);
  CHECK(std::all_of(grads.begin(), grads.end(), [](float g) { return g == 0.0f; }));  // a sum over no samples
}

TEST_CASE("max_pool2d and flatten: forward matches the direct loop, gradients match finite differences", "[nn][conv]") {
  struct pool_case {
    nn::image_shape in;
    std::size_t kernel, stride;
  };
  // Non-overlapping 2x2 with and without a ragged edge (its own loop), overlapping, one window, 1x1.
  for (const pool_case& c : {pool_case{{3, 7, 5}, 2, 2}, pool_case{{2, 4, 6}, 2, 2}, pool_case{{2, 7, 9}, 3, 2},
                             pool_case{{1, 4, 6}, 4, 3}, pool_case{{2, 3, 3}, 1, 1}}) {
    DYNAMIC_SECTION("input " << c.in.str() << " k" << c.kernel << " s" << c.stride) {
      nn::max_pool2d l(c.in, c.kernel, c.stride);
      REQUIRE(l.output_shape() == nn::image_shape{c.in.channels, (c.in.height - c.kernel) / c.stride + 1,
                                                  (c.in.width - c.kernel) / c.stride + 1});
      check_layer(l, c.in.size(), 2, 7,
                  [&](const auto&, const auto& x) { return pool_reference(c.in, c.kernel, c.stride, x, 2); });
    }
  }
  nn::flatten f({2, 3, 4});
  REQUIRE(f.out_features(24) == 24);
  check_layer(f, 24, 3, 11, [](const auto&, const auto& x) { return x; });
}

TEST_CASE("max_pool2d: the gradient of a tied window goes to its first maximum only", "[nn][conv]") {
  nn::max_pool2d l({1, 2, 2}, 2);
  nn::tensor x(1, 4), y(1, 1), dy(1, 1), dx(1, 4);
  std::fill(x.data(), x.data() + 4, 3.0f);
  dy(0, 0) = 1.5f;
  l.forward(x, y);
  l.backward(x, y, dy, &dx);
  CHECK(y(0, 0) == 3.0f);
  CHECK(std::vector<float>(dx.data(), dx.data() + 4) == std::vector<float>{1.5f, 0.0f, 0.0f, 0.0f});
}

TEST_CASE("conv layers: bad shapes are refused with the layer and the sizes named", "[nn][conv]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(nn::conv2d({0, 4, 4}, 2, 3), Contains("conv2d") && Contains("0x4x4"));
  CHECK_THROWS_WITH(nn::conv2d({1, 4, 4}, 0, 3), Contains("out_channels"));
  CHECK_THROWS_WITH(nn::conv2d({1, 4, 4}, 2, 3, 0), Contains("stride"));
  CHECK_THROWS_WITH(nn::conv2d({1, 4, 4}, 2, 0), Contains("kernel"));
  CHECK_THROWS_WITH(nn::conv2d({1, 4, 9}, 2, 7, 1, 1), Contains("kernel 7") && Contains("height 4"));
  CHECK_THROWS_WITH(nn::max_pool2d({1, 9, 2}, 3), Contains("max_pool2d") && Contains("width 2"));
  CHECK_THROWS_WITH(nn::flatten({3, 0, 1}), Contains("flatten"));
  nn::sequential m(50);
  CHECK_THROWS_WITH(m.add(nn::conv2d({1, 7, 7}, 2, 3)),
                    Contains("Conv2d(1x7x7") && Contains("50 features") && Contains("expected 49"));
  CHECK_THROWS_WITH(m.add(nn::max_pool2d({2, 5, 4}, 2)), Contains("MaxPool2d(2x5x4") && Contains("expected 40"));
  CHECK_THROWS_WITH(m.add(nn::flatten({1, 5, 9})), Contains("Flatten(1x5x9)") && Contains("expected 45"));
}

TEST_CASE("make_cnn: conv + ReLU + pool blocks, then a hidden dense layer", "[nn][conv]") {
  auto m = nn::make_cnn({1, 28, 28}, {32, 64}, 128, 10);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < m.size(); ++i) names.push_back(m[i].name());
  CHECK(names == std::vector<std::string>{"Conv2d(1x28x28,32,k3,s1,p1)", "ReLU", "MaxPool2d(32x28x28,k2,s2)",
                                          "Conv2d(32x14x14,64,k3,s1,p1)", "ReLU", "MaxPool2d(64x14x14,k2,s2)",
                                          "Flatten(64x7x7)", "Dense(3136,128)", "ReLU", "Dense(128,10)"});
  CHECK(m.parameters().size() == (32 * 9 + 32) + (64 * 32 * 9 + 64) + (3136 * 128 + 128) + (128 * 10 + 10));
  CHECK(m.out_features() == 10);
  CHECK_THROWS_WITH(nn::make_cnn({1, 28, 28}, {}, 128, 10), Catch::Contains("at least one"));
  CHECK_THROWS_WITH(nn::make_cnn({1, 3, 3}, {4, 4}, 8, 2),
                    Catch::Contains("max_pool2d: kernel 2 is larger than the height 1"));
}

TEST_CASE("conv layers: the layout names their geometry, so a model file of another CNN is refused", "[nn][conv]") {
  nn::sequential a(16), b(16);
  a.add(nn::conv2d({1, 4, 4}, 2, 3, 1, 1));
  b.add(nn::conv2d({1, 4, 4}, 2, 3, 1, 0));  // another padding: other outputs from the same parameter count
  REQUIRE(a.parameters().size() == b.parameters().size());
  CHECK(nn::layout_hash(a) != nn::layout_hash(b));
}

TEST_CASE("a small CNN learns, and trains on 1, 2, 3 replicas to within 1e-5 of one", "[nn][conv]") {
  const auto& data = quadrant_images();
  auto o = options(24);
  auto train = [&](std::size_t replicas) {
    dpar::thread_pool pool(replicas);
    nn::data_parallel_trainer t(dpar::par.on(pool), small_cnn(), o);
    REQUIRE(t.replicas() == replicas);
    for (std::size_t s = 0; s < 20; ++s) {
      auto [x, y] = batch_of(data, 24, s);
      t.train_step(x, y);
    }
    return std::pair{params(t), t.evaluate(data)};
  };
  auto [one, eval] = train(1);
  CHECK(double(eval.correct) / double(eval.samples) > 0.9);  // the quadrant is found
  for (std::size_t k : {2, 3}) {
    INFO(k << " replicas");
    auto many = train(k).first;
    REQUIRE(many.size() == one.size());
    CHECK(max_abs_difference(many, one) <= 1e-5 * max_abs(one));
  }
}

TEST_CASE("a small CNN under dpar::deterministic: the same bits on 1, 2 and 3 replicas, and across a checkpoint",
          "[nn][conv][deterministic]") {
  const auto& data = quadrant_images();
  auto o = options(24);
  o.micro_batch = 8;  // 3 parts per batch: every replica count splits them differently
  auto train = [&](std::size_t replicas) {
    dpar::thread_pool pool(replicas);
    nn::data_parallel_trainer t(dpar::deterministic(dpar::par.on(pool)), small_cnn(), o);
    std::vector<std::uint64_t> losses;
    for (std::size_t s = 0; s < 6; ++s) {
      auto [x, y] = batch_of(data, 24, s);
      losses.push_back(std::bit_cast<std::uint64_t>(t.train_step(x, y).loss_sum));
    }
    return std::pair{params(t), losses};
  };
  const auto one = train(1);
  CHECK(one.first != params(nn::data_parallel_trainer(dpar::seq, small_cnn(), o)));  // it trained
  for (std::size_t k : {2, 3}) {
    INFO(k << " replicas");
    CHECK(train(k) == one);
  }
  // A checkpoint written on 2 replicas after 3 steps, resumed on 3, continues with the same bits.
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_conv_" + std::to_string(::getpid()))).string();
  dpar::thread_pool two(2), three(3);
  nn::data_parallel_trainer before(dpar::deterministic(dpar::par.on(two)), small_cnn(), o);
  nn::data_parallel_trainer after(dpar::deterministic(dpar::par.on(three)), small_cnn(), o);
  for (std::size_t s = 0; s < 3; ++s) {
    auto [x, y] = batch_of(data, 24, s);
    before.train_step(x, y);
  }
  before.save(file);
  after.resume(file);
  std::filesystem::remove(file);
  for (std::size_t s = 3; s < 6; ++s) {
    auto [x, y] = batch_of(data, 24, s);
    after.train_step(x, y);
  }
  CHECK(params(after) == one.first);
}
