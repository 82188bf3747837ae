// dpar::nn layers, losses, optimizer and schedules: gradients against
// finite differences of a float64 reference, and closed-form checks.
#include <dpar/nn/batch_norm.hpp>
#include <dpar/nn/dropout.hpp>
#include <dpar/nn/layers.hpp>
#include <dpar/nn/loss.hpp>
#include <dpar/nn/optim.hpp>
#include <dpar/nn/tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <span>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace nn = dpar::nn;

namespace {

// silu: a user's SiLU derived from nn::activation; silu_layer: the same from nn::layer.
enum class act { none, relu, tanh, sigmoid, silu, silu_layer };

double apply(act a, double v) {
  switch (a) {
    case act::relu: return v > 0 ? v : 0;
    case act::tanh: return std::tanh(v);
    case act::sigmoid: return 1 / (1 + std::exp(-v));
    case act::silu:
    case act::silu_layer: return v / (1 + std::exp(-v));
    default: return v;
  }
}

// A float64 re-implementation of a model given as a list of (dense in->out |
// activation), on the same flat parameter layout as nn::sequential.
struct ref_layer {
  bool is_dense;
  std::size_t in, out;
  act a;
};

std::vector<double> ref_forward(const std::vector<ref_layer>& layers, const std::vector<double>& p,
                                const std::vector<double>& x, std::size_t rows, std::size_t& cols) {
  std::vector<double> cur = x;
  std::size_t off = 0;
  for (auto& l : layers) {
    if (l.is_dense) {
      std::vector<double> next(rows * l.out);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t o = 0; o < l.out; ++o) {
          double s = p[off + l.out * l.in + o];
          for (std::size_t i = 0; i < l.in; ++i) s += cur[r * l.in + i] * p[off + o * l.in + i];
          next[r * l.out + o] = s;
        }
      off += l.out * l.in + l.out;
      cur = std::move(next);
      cols = l.out;
    } else {
      for (auto& v : cur) v = apply(l.a, v);
    }
  }
  return cur;
}

double ref_cross_entropy(const std::vector<double>& z, std::size_t rows, std::size_t k, const std::vector<std::int32_t>& y) {
  double total = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    double m = z[r * k];
    for (std::size_t c = 0; c < k; ++c) m = std::max(m, z[r * k + c]);
    double s = 0;
    for (std::size_t c = 0; c < k; ++c) s += std::exp(z[r * k + c] - m);
    total += m + std::log(s) - z[r * k + y[r]];
  }
  return total / static_cast<double>(rows);
}

double ref_mse(const std::vector<double>& z, const std::vector<double>& t) {
  double s = 0;
  for (std::size_t i = 0; i < z.size(); ++i) s += (z[i] - t[i]) * (z[i] - t[i]);
  return s / static_cast<double>(z.size());
}

nn::tensor random_tensor(std::size_t r, std::size_t c, std::uint64_t seed, float scale = 1.0f) {
  nn::tensor t(r, c);
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  for (auto& v : t.flat()) v = d(g);
  return t;
}

// SiLU, x sigmoid(x), as a user writes it: its derivative needs x, not only y.
float silu_of(float v) { return v / (1.0f + std::exp(-v)); }
float silu_derivative(float v) {
  float s = 1.0f / (1.0f + std::exp(-v));
  return s * (1.0f + v * (1.0f - s));
}
void silu_backward(const nn::tensor& x, const nn::tensor& dy, nn::tensor* dx) {
  if (dx)
    for (std::size_t i = 0; i < x.size(); ++i) dx->data()[i] = dy.data()[i] * silu_derivative(x.data()[i]);
}

struct user_silu_activation final : nn::activation {
  std::string name() const override { return "SiLU"; }
  void forward_with_bias(nn::tensor& y, const float* bias) const override {
    for (std::size_t r = 0; r < y.rows(); ++r)
      for (std::size_t c = 0; c < y.cols(); ++c) y(r, c) = silu_of(y(r, c) + (bias ? bias[c] : 0.0f));
  }
  void backward(const nn::tensor& x, const nn::tensor&, const nn::tensor& dy, nn::tensor* dx) override {
    silu_backward(x, dy, dx);
  }
  std::unique_ptr<nn::layer> clone() const override { return std::make_unique<user_silu_activation>(*this); }
};

struct user_silu_layer final : nn::layer {
  std::string name() const override { return "SiLU"; }
  std::size_t out_features(std::size_t in) const override { return in; }
  void forward(const nn::tensor& x, nn::tensor& y) override {
    for (std::size_t i = 0; i < x.size(); ++i) y.data()[i] = silu_of(x.data()[i]);
  }
  void backward(const nn::tensor& x, const nn::tensor&, const nn::tensor& dy, nn::tensor* dx) override {
    silu_backward(x, dy, dx);
  }
  std::unique_ptr<nn::layer> clone() const override { return std::make_unique<user_silu_layer>(*this); }
};

void add_act(nn::sequential& m, act a) {
  if (a == act::relu) m.add(nn::relu());
  if (a == act::tanh) m.add(nn::tanh_layer());
  if (a == act::sigmoid) m.add(nn::sigmoid());
  if (a == act::silu) m.add(user_silu_activation());
  if (a == act::silu_layer) m.add(user_silu_layer());
}

// ||g - fd|| / ||fd||: the model's gradient g against central differences of
// a float64 reference loss of the parameters. each, if given, sees every
// parameter's (index, g, fd).
double gradient_error(std::span<const float> g, const std::vector<double>& p,
                      const std::function<double(const std::vector<double>&)>& loss,
                      const std::function<void(std::size_t, float, double)>& each = {}) {
  const double h = 1e-6;
  double diff2 = 0, fd2 = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    auto plus = p, minus = p;
    plus[i] += h;
    minus[i] -= h;
    double fd = (loss(plus) - loss(minus)) / (2 * h);
    if (each) each(i, g[i], fd);
    diff2 += (g[i] - fd) * (g[i] - fd);
    fd2 += fd * fd;
  }
  return std::sqrt(diff2 / fd2);
}

// Checks model gradients against central differences of the float64 reference loss.
void check_gradients(nn::sequential& m, const std::vector<ref_layer>& layers, const nn::tensor& x,
                     const std::function<double(const nn::tensor&, nn::tensor&)>& loss_and_grad,
                     const std::function<double(const std::vector<double>&, std::size_t)>& ref_loss) {
  const nn::tensor& out = m.forward(x);
  nn::tensor g(out.rows(), out.cols());
  loss_and_grad(out, g);
  m.backward(g);
  std::vector<double> p(m.parameters().begin(), m.parameters().end());
  std::vector<double> xd(x.data(), x.data() + x.size());
  auto eval = [&](const std::vector<double>& params) {
    std::size_t cols = x.cols();
    auto z = ref_forward(layers, params, xd, x.rows(), cols);
    return ref_loss(z, cols);
  };
  // The model's float output agrees with the reference's.
  {
    std::size_t cols = x.cols();
    auto z = ref_forward(layers, p, xd, x.rows(), cols);
    for (std::size_t i = 0; i < z.size(); ++i) REQUIRE(out.data()[i] == Approx(z[i]).margin(1e-5).epsilon(1e-4));
  }
  // Each element, then the whole gradient (run with -s to see it).
  double relative_error = gradient_error(m.gradients(), p, eval, [](std::size_t i, float g, double fd) {
    INFO("parameter " << i);
    REQUIRE(g == Approx(fd).margin(2e-5).epsilon(2e-3));
  });
  REQUIRE(relative_error <= 1e-3);
}

}  // namespace

TEST_CASE("tensor: owning, views, resize keeps capacity", "[nn]") {
  nn::tensor t(3, 4);
  REQUIRE(t.rows() == 3);
  REQUIRE(t.cols() == 4);
  for (float v : t.flat()) REQUIRE(v == 0.0f);
  t(2, 3) = 7.0f;
  nn::tensor v = t.rows_view(1, 2);
  REQUIRE(v(1, 3) == 7.0f);
  REQUIRE_FALSE(v.owning());
  REQUIRE_THROWS_AS(v.resize(1, 1), std::logic_error);
  REQUIRE_THROWS_AS(t.rows_view(2, 2), std::out_of_range);
  const float* before = t.data();
  t.resize(2, 5);  // 10 <= 12: same storage
  REQUIRE(t.data() == before);
  nn::tensor copy = v;  // copying a view makes an owning copy
  REQUIRE(copy.owning());
  REQUIRE(copy(1, 3) == 7.0f);
  REQUIRE(copy.data() != v.data());
}

TEST_CASE("gemm: every transpose combination and odd shapes against a float64 product", "[nn]") {
  INFO("GEMM library: " << nn::blas::implementation());
  std::mt19937_64 g(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto [m, n, k] : {std::array<std::size_t, 3>{1, 1, 1}, {3, 5, 7}, {17, 1, 31}, {64, 256, 784}, {13, 10, 128}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        // Leading dimensions wider than the rows, to catch a seam that ignores them.
        std::size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
        std::vector<float> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc);
        for (auto* v : {&a, &b, &c})
          for (auto& x : *v) x = u(g);
        std::vector<float> c0 = c;
        const float alpha = 0.75f, beta = -0.5f;
        nn::blas::gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        double worst = 0;
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j) {
            double sum = 0;
            for (std::size_t p = 0; p < k; ++p)
              sum += double(ta ? a[p * lda + i] : a[i * lda + p]) * double(tb ? b[j * ldb + p] : b[p * ldb + j]);
            double want = alpha * sum + beta * double(c0[i * ldc + j]);
            worst = std::max(worst, std::abs(want - double(c[i * ldc + j])) / (1.0 + std::abs(want)));
          }
        INFO(m << "x" << n << "x" << k << " trans_a=" << ta << " trans_b=" << tb);
        REQUIRE(worst < 1e-5);
        // The padding between rows of C is left alone.
        for (std::size_t i = 0; i < m; ++i) REQUIRE(c[i * ldc + n] == c0[i * ldc + n]);
      }
}

TEST_CASE("dense + activations: gradients match float64 finite differences", "[nn]") {
  for (act a : {act::none, act::relu, act::tanh, act::sigmoid, act::silu, act::silu_layer}) {
    for (nn::init scheme : {nn::init::he, nn::init::xavier}) {
      DYNAMIC_SECTION("activation " << int(a) << " init " << int(scheme)) {
        nn::sequential m(5);
        m.add(nn::dense(5, 4, scheme));
        add_act(m, a);
        m.add(nn::dense(4, 3, scheme));
        m.initialize(11);
        // Non-zero biases so their gradients are exercised with real values.
        for (auto& v : m.parameters()) v += 0.05f;
        std::vector<ref_layer> layers = {{true, 5, 4, act::none}, {false, 4, 4, a}, {true, 4, 3, act::none}};
        if (a == act::none) layers.erase(layers.begin() + 1);
        nn::tensor x = random_tensor(7, 5, 3);
        std::vector<std::int32_t> y = {0, 1, 2, 2, 1, 0, 1};
        nn::softmax_cross_entropy ce;
        check_gradients(
            m, layers, x, [&](const nn::tensor& out, nn::tensor& g) { return ce(out, y, &g); },
            [&](const std::vector<double>& z, std::size_t k) { return ref_cross_entropy(z, 7, k, y); });
      }
    }
  }
}

TEST_CASE("activation first (unfused path) and MSE: gradients match finite differences", "[nn]") {
  for (act a : {act::relu, act::tanh, act::sigmoid, act::silu, act::silu_layer}) {
    DYNAMIC_SECTION("activation " << int(a)) {
      nn::sequential m(3);
      m.add(nn::dense(3, 6));
      add_act(m, a);
      add_act(m, a);  // two activations in a row: the second runs unfused
      m.add(nn::dense(6, 2, nn::init::xavier));
      add_act(m, act::sigmoid);
      m.initialize(5);
      std::vector<ref_layer> layers = {{true, 3, 6, act::none}, {false, 6, 6, a}, {false, 6, 6, a},
                                       {true, 6, 2, act::none}, {false, 2, 2, act::sigmoid}};
      nn::tensor x = random_tensor(4, 3, 9, 2.0f);
      nn::tensor t = random_tensor(4, 2, 10);
      std::vector<double> td(t.data(), t.data() + t.size());
      nn::mse loss;
      check_gradients(
          m, layers, x, [&](const nn::tensor& out, nn::tensor& g) { return loss(out, t, &g); },
          [&](const std::vector<double>& z, std::size_t) { return ref_mse(z, td); });
    }
  }
}

TEST_CASE("softmax cross-entropy: stable for huge logits, global-batch scaling, bad labels", "[nn]") {
  nn::softmax_cross_entropy ce;
  nn::tensor z(2, 3);
  z(0, 0) = 1000.0f;  // exp(1000) overflows without the max shift
  z(0, 1) = 0.0f;
  z(0, 2) = -1000.0f;
  z(1, 0) = 1.0f;
  z(1, 1) = 2.0f;
  z(1, 2) = 3.0f;
  std::vector<std::int32_t> y = {1, 2};
  nn::tensor g(2, 3);
  double sum = ce(z, y, &g, 8);  // a shard of 2 from a global batch of 8
  double row1 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  REQUIRE(sum == Approx(1000.0 + row1));
  REQUIRE(std::isfinite(sum));
  REQUIRE(g(0, 0) == Approx(1.0 / 8));
  REQUIRE(g(0, 1) == Approx(-1.0 / 8));
  double p2 = std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  REQUIRE(g(1, 2) == Approx((p2 - 1) / 8));
  std::vector<std::int32_t> bad = {1, 3};
  REQUIRE_THROWS_WITH(ce(z, bad), Catch::Contains("label 3 at row 1"));
  std::vector<std::int32_t> neg = {-1, 0};
  REQUIRE_THROWS_AS(ce(z, neg), std::out_of_range);
  std::vector<std::int32_t> short_labels = {1};
  REQUIRE_THROWS_WITH(ce(z, short_labels), Catch::Contains("2 outputs but 1 targets"));
  REQUIRE_THROWS_AS(ce(z, y, nullptr, 1), std::invalid_argument);
  REQUIRE(nn::count_correct(z, std::vector<std::int32_t>{0, 2}) == 2);
  REQUIRE(nn::count_correct(z, std::vector<std::int32_t>{1, 2}) == 1);
}

TEST_CASE("losses of tensor targets: MSE, Huber, BCE with logits against float64 formulas", "[nn]") {
  // Rows of 3 outputs; a shard of 4 rows from a global batch of 10.
  nn::tensor out = random_tensor(4, 3, 21, 3.0f), t = random_tensor(4, 3, 22);
  out(0, 0) = 100.0f;  // BCE: exp(100) overflows float without the stable form
  out(1, 1) = -100.0f;
  std::vector<double> targets01(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) targets01[i] = (t.data()[i] + 1) / 2;
  nn::tensor t01(4, 3);
  for (std::size_t i = 0; i < t.size(); ++i) t01.data()[i] = float(targets01[i]);
  struct reference {
    std::function<double(double, double)> value, derivative;
  };
  auto check = [&](const char* name, auto loss, const nn::tensor& target, reference ref) {
    INFO(name);
    nn::tensor g(4, 3);
    double sum = loss(out, target, &g, 10);
    double want = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      double o = out.data()[i], y = target.data()[i];
      want += ref.value(o, y) / 3;
      REQUIRE(g.data()[i] == Approx(ref.derivative(o, y) / 30).margin(1e-7).epsilon(1e-5));
    }
    REQUIRE(std::isfinite(sum));
    REQUIRE(sum == Approx(want).epsilon(1e-9));
    REQUIRE(loss(out, target, nullptr, 0) == Approx(want).epsilon(1e-9));  // total 0: the shard's rows
    REQUIRE_THROWS_WITH(loss(out, nn::tensor(4, 2), nullptr, 4), Catch::Contains("outputs have 3 columns, targets 2"));
    REQUIRE_THROWS_WITH(loss(out, nn::tensor(3, 3), nullptr, 4), Catch::Contains("4 outputs but 3 targets"));
    REQUIRE_THROWS_AS(loss(out, target, nullptr, 2), std::invalid_argument);
  };
  check("mse", nn::mse{}, t,
        {[](double o, double y) { return (o - y) * (o - y); }, [](double o, double y) { return 2 * (o - y); }});
  for (float delta : {1.0f, 0.25f}) {
    double d = delta;
    check("huber", nn::huber{delta}, t,
          {[d](double o, double y) { return std::abs(o - y) <= d ? 0.5 * (o - y) * (o - y) : d * (std::abs(o - y) - d / 2); },
           [d](double o, double y) { return std::clamp(o - y, -d, d); }});
  }
  check("bce_with_logits", nn::bce_with_logits{}, t01,
        {[](double o, double y) { return std::max(o, 0.0) - o * y + std::log1p(std::exp(-std::abs(o))); },
         [](double o, double y) { return 1 / (1 + std::exp(-o)) - y; }});
  REQUIRE_THROWS_AS(nn::huber{0.0f}(out, t), std::invalid_argument);
}

TEST_CASE("loss_function: built-in kinds, built-in losses and user callables of either form", "[nn]") {
  nn::tensor out = random_tensor(3, 4, 5), t = random_tensor(3, 4, 6), g(3, 4), want(3, 4);
  std::vector<std::int32_t> labels = {3, 0, 2};
  nn::loss_function by_kind = nn::loss_kind::mse;  // today's way of choosing a built-in loss
  REQUIRE(by_kind.kind() == nn::loss_kind::mse);
  REQUIRE(by_kind.takes_labels());
  REQUIRE_FALSE(by_kind.takes_targets());
  REQUIRE(by_kind(out, labels, &g, 6) == nn::mse{}(out, labels, &want, 6));
  REQUIRE(std::equal(g.data(), g.data() + g.size(), want.data()));
  REQUIRE_THROWS_WITH(by_kind(out, t, nullptr, 3), Catch::Contains("takes integer labels, not a tensor"));

  nn::loss_function both = nn::mse{};  // one-hot labels and tensors
  REQUIRE((both.takes_labels() && both.takes_targets() && both.kind() == nn::loss_kind::mse));
  REQUIRE(both(out, t, nullptr, 3) == nn::mse{}(out, t));

  nn::loss_function huber = nn::huber{0.5f};
  REQUIRE((!huber.takes_labels() && huber.takes_targets() && !huber.kind()));
  REQUIRE_THROWS_WITH(huber(out, labels, nullptr, 3), Catch::Contains("takes a tensor of targets, not integer labels"));
  REQUIRE(huber(out, t, &g, 3) == nn::huber{0.5f}(out, t, &want, 3));

  // A user's label loss: cross-entropy with every label shifted by one class.
  int calls = 0;
  nn::loss_function user = [&calls](const nn::tensor& o, std::span<const std::int32_t> y, nn::tensor* grad,
                                    std::size_t total) {
    ++calls;
    std::vector<std::int32_t> shifted(y.begin(), y.end());
    for (auto& v : shifted) v = (v + 1) % std::int32_t(o.cols());
    return nn::softmax_cross_entropy{}(o, shifted, grad, total);
  };
  REQUIRE((user.takes_labels() && !user.takes_targets() && !user.kind()));
  std::vector<std::int32_t> shifted = {0, 1, 3};
  REQUIRE(user(out, labels, &g, 3) == nn::softmax_cross_entropy{}(out, shifted, &want, 3));
  REQUIRE(calls == 1);
  nn::loss_function defaulted;
  REQUIRE(defaulted.kind() == nn::loss_kind::softmax_cross_entropy);
  nn::loss_function ce = nn::softmax_cross_entropy{};
  REQUIRE(ce.kind() == nn::loss_kind::softmax_cross_entropy);
}

TEST_CASE("sequential: shape errors name the layer and sizes", "[nn]") {
  nn::sequential m(4);
  m.add(nn::dense(4, 3));
  REQUIRE_THROWS_WITH(m.add(nn::dense(5, 2)), Catch::Contains("input has 3 features, expected 5"));
  REQUIRE(m.size() == 1);  // the rejected layer was not added
  REQUIRE(m.parameters().size() == 4 * 3 + 3);
  nn::tensor x(2, 5);
  REQUIRE_THROWS_WITH(m.forward(x), Catch::Contains("input has 5 features, the model takes 4"));
  REQUIRE_THROWS_AS(nn::dense(0, 3), std::invalid_argument);
  nn::sequential fresh(2);
  REQUIRE_THROWS_AS(fresh.backward(nn::tensor(1, 2)), std::logic_error);
}

TEST_CASE("sequential: predict_probabilities is the softmax of predict's logits", "[nn]") {
  auto m = nn::make_mlp({6, 8, 4});
  nn::tensor x = random_tensor(5, 6, 8, 3.0f);
  nn::tensor z = m.predict(x), p = m.predict_probabilities(x);
  REQUIRE((p.rows() == 5 && p.cols() == 4));
  for (std::size_t r = 0; r < 5; ++r) {
    double s = 0;
    for (std::size_t c = 0; c < 4; ++c) s += std::exp(double(z(r, c)));
    double total = 0;
    for (std::size_t c = 0; c < 4; ++c) {
      REQUIRE(p(r, c) == Approx(std::exp(double(z(r, c))) / s).epsilon(1e-5));
      total += p(r, c);
    }
    REQUIRE(total == Approx(1.0).epsilon(1e-6));
  }
  REQUIRE(nn::argmax(p) == m.classify(x));
  nn::sequential none(3);  // no layers: the softmax of the input itself
  nn::tensor big(1, 3);
  big(0, 0) = 1000.0f;  // stable: no overflow
  REQUIRE(none.predict_probabilities(big)(0, 0) == 1.0f);
  REQUIRE(none.predict_probabilities(nn::tensor(0, 3)).rows() == 0);
}

TEST_CASE("sequential: copies are independent and bound to their own buffers", "[nn]") {
  auto m = nn::make_mlp({6, 5, 3});
  m.initialize(1);
  nn::sequential c = m;
  REQUIRE(std::equal(m.parameters().begin(), m.parameters().end(), c.parameters().begin()));
  nn::tensor x = random_tensor(3, 6, 2);
  nn::tensor out_m = m.forward(x);
  c.parameters()[0] += 1.0f;
  nn::tensor out_c = c.forward(x);
  REQUIRE(out_m(0, 0) != out_c(0, 0));
  REQUIRE(m.forward(x)(0, 0) == out_m(0, 0));  // the original is unaffected
}

TEST_CASE("initialization: He and Xavier scales, deterministic per seed", "[nn]") {
  nn::sequential he(400), xa(400);
  he.add(nn::dense(400, 300, nn::init::he));
  xa.add(nn::dense(400, 300, nn::init::xavier));
  he.initialize(7);
  xa.initialize(7);
  auto stats = [](std::span<const float> p, std::size_t n) {
    double s = 0, s2 = 0;
    for (std::size_t i = 0; i < n; ++i) s += p[i], s2 += double(p[i]) * p[i];
    return std::pair{s / n, std::sqrt(s2 / n)};
  };
  auto [mh, rh] = stats(he.parameters(), 120000);
  auto [mx, rx] = stats(xa.parameters(), 120000);
  REQUIRE(std::abs(mh) < 0.002);
  REQUIRE(rh == Approx(std::sqrt(2.0 / 400)).epsilon(0.02));
  REQUIRE(std::abs(mx) < 0.002);
  REQUIRE(rx == Approx(std::sqrt(2.0 / 700)).epsilon(0.02));  // uniform(+-a): rms a/sqrt(3)
  for (std::size_t i = 120000; i < he.parameters().size(); ++i) REQUIRE(he.parameters()[i] == 0.0f);
  nn::sequential again(400);
  again.add(nn::dense(400, 300, nn::init::he));
  again.initialize(7);
  REQUIRE(std::equal(he.parameters().begin(), he.parameters().end(), again.parameters().begin()));
  again.initialize(8);
  REQUIRE_FALSE(std::equal(he.parameters().begin(), he.parameters().end(), again.parameters().begin()));
}

TEST_CASE("initialization: at construction from the default seed; initialize(seed) re-seeds", "[nn]") {
  auto built = nn::make_mlp({30, 20, 5});  // never initialized by hand
  auto weights = built.parameters().first(20 * 30);
  REQUIRE(std::count(weights.begin(), weights.end(), 0.0f) == 0);
  // He (the default scheme) for the ReLU layer: rms about sqrt(2 / 30).
  double s2 = 0;
  for (float w : weights) s2 += double(w) * w;
  REQUIRE(std::sqrt(s2 / weights.size()) == Approx(std::sqrt(2.0 / 30)).epsilon(0.15));
  auto reseeded = nn::make_mlp({30, 20, 5});
  reseeded.initialize(nn::sequential::default_seed);
  REQUIRE(std::equal(built.parameters().begin(), built.parameters().end(), reseeded.parameters().begin()));
  reseeded.initialize(2);
  REQUIRE_FALSE(std::equal(built.parameters().begin(), built.parameters().end(), reseeded.parameters().begin()));
  // Layers added after initialize(seed) draw from that seed, as a model initialized after being built.
  nn::sequential late(30);
  late.initialize(2);
  late.add(nn::dense(30, 20)).add(nn::relu()).add(nn::dense(20, 5));
  REQUIRE(std::equal(late.parameters().begin(), late.parameters().end(), reseeded.parameters().begin()));
  // An untouched model learns: its outputs depend on its input.
  nn::tensor x = random_tensor(2, 30, 4);
  nn::tensor out = built.predict(x);
  REQUIRE(out(0, 0) != out(1, 0));
}

TEST_CASE("sgd: momentum, Nesterov and weight decay follow PyTorch's update rule", "[nn]") {
  for (bool nesterov : {false, true}) {
    for (float wd : {0.0f, 0.01f}) {
      for (float mu : {0.0f, 0.9f}) {
        if (nesterov && mu == 0.0f) continue;
        std::vector<float> p = {1.0f, -2.0f, 0.5f}, g = {0.1f, 0.2f, -0.3f};
        std::vector<double> rp(p.begin(), p.end()), rv(3, 0.0);
        nn::sgd opt(3, {mu, nesterov, wd});
        for (int step = 0; step < 5; ++step) {
          float lr = 0.1f * (step + 1);
          opt.step(p, g, lr);
          for (int i = 0; i < 3; ++i) {
            double d = g[i] + wd * rp[i];
            if (mu != 0) {
              rv[i] = mu * rv[i] + d;
              d = nesterov ? d + mu * rv[i] : rv[i];
            }
            rp[i] -= lr * d;
          }
        }
        for (int i = 0; i < 3; ++i) REQUIRE(p[i] == Approx(rp[i]).epsilon(1e-5));
      }
    }
  }
  nn::sgd opt(3);
  std::vector<float> p(4), g(3);
  REQUIRE_THROWS_WITH(opt.step(p, g, 0.1f), Catch::Contains("4 parameters"));
  REQUIRE_THROWS_AS(nn::sgd(3, {0.0f, true, 0.0f}), std::invalid_argument);
}

TEST_CASE("adamw: 20 steps follow a float64 reference of torch.optim.AdamW; slices give the whole step's bits",
          "[nn]") {
  const std::size_t n = 37;
  std::mt19937_64 g(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> p(n), whole;
  for (auto& v : p) v = u(g);
  whole = p;
  const nn::adamw_options o{0.8f, 0.99f, 1e-6f, 0.05f};
  nn::adamw opt(n, o), sliced(n, o);
  std::vector<double> rp(p.begin(), p.end()), m(n, 0.0), v(n, 0.0);
  for (int t = 1; t <= 20; ++t) {
    std::vector<float> grad(n);
    for (auto& x : grad) x = u(g) * (t % 3 == 0 ? 1e-3f : 1.0f);  // small gradients too: eps matters
    float lr = 0.01f * float(1 + t % 4);
    opt.step(p, grad, lr);
    sliced.step(whole, grad, lr, 0, 10);  // the same update, as two shards would make it
    sliced.set_steps(sliced.steps() - 1);
    sliced.step(whole, grad, lr, 10, n);
    for (std::size_t i = 0; i < n; ++i) {
      rp[i] -= double(lr) * o.weight_decay * rp[i];
      m[i] = o.beta1 * m[i] + (1 - double(o.beta1)) * grad[i];
      v[i] = o.beta2 * v[i] + (1 - double(o.beta2)) * double(grad[i]) * grad[i];
      double mh = m[i] / (1 - std::pow(double(o.beta1), t)), vh = v[i] / (1 - std::pow(double(o.beta2), t));
      rp[i] -= lr * mh / (std::sqrt(vh) + o.eps);
    }
  }
  REQUIRE(opt.steps() == 20);
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(p[i] - rp[i]) / (1e-3 + std::abs(rp[i])));
  REQUIRE(worst < 1e-4);
  REQUIRE(p == whole);
  REQUIRE(opt.state().size() == 2 * n);
  std::vector<float> short_grads(n - 1);
  REQUIRE_THROWS_WITH(opt.step(p, short_grads, 0.1f), Catch::Contains("36 gradients"));
  REQUIRE_THROWS_AS(nn::adamw(3, {1.0f, 0.999f, 1e-8f, 0.0f}), std::invalid_argument);
  REQUIRE_THROWS_AS(nn::adamw(3, {0.9f, 0.999f, 0.0f, 0.0f}), std::invalid_argument);
}

// Issue 22 item 4: an optimizer keeps the state of a window of the
// parameters; a sharded one (ZeRO stage 1) updates its window only.
TEST_CASE("optimizers keep the state of a window: the whole step's bits there, ranges outside it refused", "[nn]") {
  const std::size_t n = 37;
  const dpar::index_range w{10, 25};
  std::mt19937_64 g(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // One optimizer whole, a copy keeping window w, stepped alike (the copy on w, in two ranges).
  auto check = [&](auto whole, auto window, std::size_t buffers, auto state) {
    std::vector<float> p(n), grad(n);
    for (auto& v : p) v = u(g);
    std::vector<float> pw = p, pk = p;
    window.set_window(w);
    REQUIRE(state(window).size() == buffers * w.size());
    for (int t = 0; t < 3; ++t) {
      for (auto& x : grad) x = u(g);
      whole.step(pw, grad, 0.05f);
      window.step(pk, grad, 0.05f, 12, 25);
      if constexpr (std::is_same_v<decltype(window), nn::adamw>) window.set_steps(window.steps() - 1);  // one update
      window.step(pk, grad, 0.05f, 10, 12);
    }
    for (std::size_t i = w.begin; i < w.end; ++i) REQUIRE(pk[i] == pw[i]);
    auto ws = state(whole);
    auto ks = state(window);
    for (std::size_t b = 0; b < buffers; ++b)
      for (std::size_t i = w.begin; i < w.end; ++i) REQUIRE(ks[b * w.size() + i - w.begin] == ws[b * n + i]);
    REQUIRE_THROWS_WITH(window.step(pk, grad, 0.05f, 9, 20),
                        Catch::Contains("[9, 20) of 37") && Catch::Contains("kept for [10, 25) only"));
    REQUIRE_THROWS_WITH(window.step(pk, grad, 0.05f), Catch::Contains("[0, 37) of 37"));
    REQUIRE_THROWS_AS(window.set_window({30, 38}), std::out_of_range);
    // Widened back: the window's state where it was, the rest 0.
    window.set_window({0, n});
    ks = state(window);
    for (std::size_t b = 0; b < buffers; ++b)
      for (std::size_t i = 0; i < n; ++i) REQUIRE(ks[b * n + i] == (w.begin <= i && i < w.end ? ws[b * n + i] : 0.0f));
  };
  const nn::sgd_options momentum{0.9f, true, 1e-3f};
  check(nn::sgd(n, momentum), nn::sgd(n, momentum), 1, [](nn::sgd& o) { return o.velocity(); });
  check(nn::adamw(n), nn::adamw(n), 2, [](nn::adamw& o) { return o.state(); });
  // Made with a window, the whole state is never allocated.
  REQUIRE(nn::sgd(n, momentum, w).velocity().size() == w.size());
  REQUIRE(nn::adamw(n, {}, w).state().size() == 2 * w.size());
  REQUIRE_THROWS_WITH(nn::sgd(n, momentum, dpar::index_range{30, 38}), Catch::Contains("[30, 38) for 37 parameters"));
}

TEST_CASE("learning-rate schedules: step, cosine, warmup", "[nn]") {
  auto c = nn::lr_schedule::constant(0.1f);
  REQUIRE(c(0) == 0.1f);
  REQUIRE(c(1000) == 0.1f);
  auto s = nn::lr_schedule::step(1.0f, 10, 0.5f);
  REQUIRE(s(0) == 1.0f);
  REQUIRE(s(9) == 1.0f);
  REQUIRE(s(10) == 0.5f);
  REQUIRE(s(25) == 0.25f);
  auto cos = nn::lr_schedule::cosine(1.0f, 100, 0.1f);
  REQUIRE(cos(0) == Approx(1.0f));
  REQUIRE(cos(50) == Approx(0.55f));
  REQUIRE(cos(100) == Approx(0.1f));
  REQUIRE(cos(500) == Approx(0.1f));
  auto w = cos.with_warmup(4);
  REQUIRE(w(0) == Approx(0.25f * cos(0)));
  REQUIRE(w(3) == Approx(cos(3)));
  REQUIRE(w(10) == Approx(cos(10)));
  REQUIRE_THROWS_AS(nn::lr_schedule::step(1.0f, 0, 0.5f), std::invalid_argument);
  REQUIRE_THROWS_AS(nn::lr_schedule::cosine(1.0f, 0), std::invalid_argument);
}

TEST_CASE("sequential_lr: a warmup, then a cosine that starts at the warmup's end (PyTorch's SequentialLR)", "[nn]") {
  auto cosine = nn::lr_schedule::cosine(1.0f, 100, 0.1f);
  auto f = nn::sequential_lr({nn::lr_schedule::constant(1.0f).with_warmup(4), cosine}, {4});
  REQUIRE(f(0) == 0.25f);
  REQUIRE(f(3) == 1.0f);
  for (std::size_t s : {4, 5, 54, 104, 500}) REQUIRE(f(s) == cosine(s - 4));
  auto three = nn::sequential_lr({nn::lr_schedule::constant(1.0f), nn::lr_schedule::constant(2.0f),
                                  [](std::size_t s) { return 10.0f + float(s); }},
                                 {2, 5});
  REQUIRE(three(1) == 1.0f);
  REQUIRE(three(2) == 2.0f);
  REQUIRE(three(4) == 2.0f);
  REQUIRE(three(5) == 10.0f);
  REQUIRE(three(7) == 12.0f);
  REQUIRE_THROWS_WITH(nn::sequential_lr({cosine, cosine}, {}), Catch::Contains("one milestone fewer"));
  REQUIRE_THROWS_WITH(nn::sequential_lr({cosine, cosine, cosine}, {5, 5}), Catch::Contains("must increase"));
  REQUIRE_THROWS_AS(nn::sequential_lr({cosine, nn::lr_function{}}, {3}), std::invalid_argument);
}

// ---- layers with a mode and state: dropout, batch_norm ----
namespace {

// y = x W^T + b on rows x in doubles; p at `off` holds W ([out][in]) then b.
std::vector<double> ref_dense(const std::vector<double>& x, std::size_t rows, std::size_t in, std::size_t out,
                              const std::vector<double>& p, std::size_t off) {
  std::vector<double> y(rows * out);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t o = 0; o < out; ++o) {
      double s = p[off + out * in + o];
      for (std::size_t i = 0; i < in; ++i) s += x[r * in + i] * p[off + o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

// Batch normalization with the batch's statistics (biased variance), gamma then beta at `off`.
std::vector<double> ref_batch_norm(const std::vector<double>& x, std::size_t rows, std::size_t f,
                                   const std::vector<double>& p, std::size_t off, double eps) {
  std::vector<double> y(x.size());
  for (std::size_t c = 0; c < f; ++c) {
    double mean = 0, var = 0;
    for (std::size_t r = 0; r < rows; ++r) mean += x[r * f + c];
    mean /= double(rows);
    for (std::size_t r = 0; r < rows; ++r) var += (x[r * f + c] - mean) * (x[r * f + c] - mean);
    var /= double(rows);
    for (std::size_t r = 0; r < rows; ++r)
      y[r * f + c] = p[off + c] * (x[r * f + c] - mean) / std::sqrt(var + eps) + p[off + f + c];
  }
  return y;
}

std::vector<double> as_doubles(const nn::tensor& t) { return {t.data(), t.data() + t.size()}; }

}  // namespace

TEST_CASE("dropout: the mask is a hash of (seed, layer, step, sample, unit); inverted scaling; eval is the identity",
          "[nn][dropout]") {
  nn::dropout d(0.25f, 3);
  REQUIRE(d.name() == "Dropout(0.25,3)");
  nn::tensor x = random_tensor(64, 50, 1), y(64, 50), whole(64, 50);
  nn::pass p{nn::mode::train, 7, 100, 2};
  d.forward_pass(p, x, whole);
  std::size_t dropped = 0;
  for (std::size_t r = 0; r < 64; ++r)
    for (std::size_t c = 0; c < 50; ++c) {
      bool kept = d.kept(p, 100 + r, c);
      dropped += !kept;
      REQUIRE(whole(r, c) == (kept ? x(r, c) * (1.0f / 0.75f) : 0.0f));
    }
  REQUIRE(double(dropped) / (64 * 50) == Approx(0.25).margin(0.03));
  // Rows computed apart, at their positions in the batch, get the same mask.
  nn::tensor tail = x.rows_view(40, 24), tail_y(24, 50);
  d.forward_pass(nn::pass{nn::mode::train, 7, 140, 2}, tail, tail_y);
  for (std::size_t i = 0; i < tail_y.size(); ++i) REQUIRE(tail_y.data()[i] == whole.data()[40 * 50 + i]);
  // Another step, layer position or seed: another mask.
  for (nn::pass q : {nn::pass{nn::mode::train, 8, 100, 2}, nn::pass{nn::mode::train, 7, 100, 3}}) {
    d.forward_pass(q, x, y);
    REQUIRE(std::memcmp(y.data(), whole.data(), y.size() * sizeof(float)) != 0);
  }
  nn::dropout(0.25f, 4).forward_pass(p, x, y);
  REQUIRE(std::memcmp(y.data(), whole.data(), y.size() * sizeof(float)) != 0);
  // Eval mode and p = 0: the identity.
  d.forward_pass(nn::pass{nn::mode::eval, 7, 100, 2}, x, y);
  REQUIRE(std::memcmp(y.data(), x.data(), y.size() * sizeof(float)) == 0);
  nn::dropout(0.0f).forward_pass(p, x, y);
  REQUIRE(std::memcmp(y.data(), x.data(), y.size() * sizeof(float)) == 0);
  REQUIRE_THROWS_WITH(nn::dropout(1.0f), Catch::Contains("[0, 1)"));
  REQUIRE_THROWS_AS(nn::dropout(-0.1f), std::invalid_argument);
}

TEST_CASE("dropout: gradients match float64 finite differences of the same mask", "[nn][dropout]") {
  nn::sequential m(5);
  m.add(nn::dense(5, 6, nn::init::xavier)).add(nn::dropout(0.4f, 11)).add(nn::tanh_layer()).add(nn::dense(6, 3));
  for (auto& v : m.parameters()) v += 0.03f;
  const std::size_t rows = 9, step = 5, first = 31;
  nn::tensor x = random_tensor(rows, 5, 2), t = random_tensor(rows, 3, 3);
  const nn::tensor& out = m.forward(x, step, first);
  nn::tensor g(rows, 3);
  nn::mse{}(out, t, &g);
  m.backward(g);
  auto& d = dynamic_cast<const nn::dropout&>(m[1]);
  auto loss = [&](const std::vector<double>& p) {
    auto h = ref_dense(as_doubles(x), rows, 5, 6, p, 0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < 6; ++c)
        h[r * 6 + c] = d.kept(nn::pass{nn::mode::train, step, 0, 1}, first + r, c) ? std::tanh(h[r * 6 + c] / 0.6) : 0.0;
    return ref_mse(ref_dense(h, rows, 6, 3, p, 36), as_doubles(t));
  };
  std::vector<double> p(m.parameters().begin(), m.parameters().end());
  double err = gradient_error(m.gradients(), p, loss);
  INFO("relative gradient error " << err);
  REQUIRE(err <= 1e-3);
  // Eval mode: the same model without dropout, so another output.
  m.eval();
  nn::tensor train_out = m.forward(x, step, first), eval_out = m.predict(x);
  REQUIRE(std::memcmp(m.forward(x).data(), eval_out.data(), eval_out.size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(train_out.data(), eval_out.data(), eval_out.size() * sizeof(float)) == 0);
  m.train();
  REQUIRE(std::memcmp(m.forward(x, step, first).data(), eval_out.data(), eval_out.size() * sizeof(float)) != 0);
}

TEST_CASE("batch_norm: gradients match float64 finite differences, in train and eval mode", "[nn][batch_norm]") {
  const std::size_t rows = 11;
  nn::sequential m(3);
  m.add(nn::dense(3, 4, nn::init::xavier)).add(nn::batch_norm(4)).add(nn::tanh_layer()).add(nn::dense(4, 2));
  for (std::size_t i = 0; i < m.parameters().size(); ++i) m.parameters()[i] += 0.01f * float(i % 5);  // gamma != 1, beta != 0
  nn::tensor x = random_tensor(rows, 3, 4, 2.0f), t = random_tensor(rows, 2, 5);
  auto run = [&] {
    const nn::tensor& out = m.forward(x);
    nn::tensor g(rows, 2);
    nn::mse{}(out, t, &g);
    m.backward(g);
  };
  run();
  const double eps = 1e-5;
  auto loss = [&](const std::vector<double>& p) {
    auto h = ref_batch_norm(ref_dense(as_doubles(x), rows, 3, 4, p, 0), rows, 4, p, 16, eps);
    for (auto& v : h) v = std::tanh(v);
    return ref_mse(ref_dense(h, rows, 4, 2, p, 24), as_doubles(t));
  };
  std::vector<double> p(m.parameters().begin(), m.parameters().end());
  double err = gradient_error(m.gradients(), p, loss);
  INFO("train mode: relative gradient error " << err);
  REQUIRE(err <= 1e-3);

  // The running statistics after one batch: 0.9 * (0, 1) + 0.1 * (mean, unbiased variance).
  auto& bn = dynamic_cast<const nn::batch_norm&>(m[1]);
  auto h = ref_dense(as_doubles(x), rows, 3, 4, p, 0);
  for (std::size_t c = 0; c < 4; ++c) {
    double mean = 0, var = 0;
    for (std::size_t r = 0; r < rows; ++r) mean += h[r * 4 + c] / double(rows);
    for (std::size_t r = 0; r < rows; ++r) var += (h[r * 4 + c] - mean) * (h[r * 4 + c] - mean) / double(rows - 1);
    REQUIRE(bn.running_mean()[c] == Approx(0.1 * mean).epsilon(1e-5).margin(1e-6));
    REQUIRE(bn.running_var()[c] == Approx(0.9 + 0.1 * var).epsilon(1e-5));
  }
  REQUIRE(m.state().size() == 8);

  // Eval mode: normalized by the running statistics, constants of the batch.
  m.eval();
  std::vector<double> rm(bn.running_mean(), bn.running_mean() + 4), rv(bn.running_var(), bn.running_var() + 4);
  run();
  auto eval_loss = [&](const std::vector<double>& q) {
    auto z = ref_dense(as_doubles(x), rows, 3, 4, q, 0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < 4; ++c)
        z[r * 4 + c] = std::tanh(q[16 + c] * (z[r * 4 + c] - rm[c]) / std::sqrt(rv[c] + eps) + q[20 + c]);
    return ref_mse(ref_dense(z, rows, 4, 2, q, 24), as_doubles(t));
  };
  err = gradient_error(m.gradients(), p, eval_loss);
  INFO("eval mode: relative gradient error " << err);
  REQUIRE(err <= 1e-3);
  REQUIRE(bn.running_mean()[0] == float(rm[0]));  // eval mode leaves them alone
  nn::tensor pred = m.predict(x);
  REQUIRE(std::memcmp(pred.data(), m.forward(x).data(), pred.size() * sizeof(float)) == 0);

  // Errors: a train-mode batch of one sample, bad options.
  m.train();
  REQUIRE_THROWS_WITH(m.forward(random_tensor(1, 3, 6)), Catch::Contains("more than one sample"));
  REQUIRE_THROWS_AS(nn::batch_norm(0), std::invalid_argument);
  REQUIRE_THROWS_AS(nn::batch_norm(3, 0.0f), std::invalid_argument);
  REQUIRE_THROWS_AS(nn::batch_norm(3, 1e-5f, 1.5f), std::invalid_argument);
  REQUIRE(nn::batch_norm(7, 1e-5f, 0.1f).name() == "BatchNorm(7,1e-05,0.1)");
}

TEST_CASE("sequential: parts computed together equal each part alone, and batch statistics span the parts",
          "[nn][batch_norm]") {
  // Without a batch layer, forward_parts gives each part the bits forward gives it alone.
  nn::sequential m(4);
  m.add(nn::dense(4, 5)).add(nn::relu()).add(nn::dropout(0.3f)).add(nn::dense(5, 2));
  nn::tensor x = random_tensor(10, 4, 8);
  nn::tensor a = x.rows_view(0, 3), b = x.rows_view(3, 7);
  const nn::tensor* xs[] = {&a, &b};
  const std::size_t firsts[] = {0, 3};
  m.forward_parts(xs, firsts, 4);
  nn::tensor both0 = m.output(0), both1 = m.output(1);
  REQUIRE(std::memcmp(m.forward(a, 4, 0).data(), both0.data(), both0.size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(m.forward(b, 4, 3).data(), both1.data(), both1.size() * sizeof(float)) == 0);
  // With batch_norm: the statistics of both parts, as forward of the whole batch.
  nn::sequential n(4);
  n.add(nn::dense(4, 5)).add(nn::batch_norm(5)).add(nn::dense(5, 2));
  nn::sequential whole = n;
  n.forward_parts(xs, firsts, 0);
  const nn::tensor& all = whole.forward(x);
  for (std::size_t i = 0; i < 6; ++i) REQUIRE(n.output(0).data()[i] == Approx(all.data()[i]).epsilon(1e-5));
  for (std::size_t i = 0; i < 14; ++i) REQUIRE(n.output(1).data()[i] == Approx(all.data()[6 + i]).epsilon(1e-5));
  for (std::size_t i = 0; i < n.state().size(); ++i) REQUIRE(n.state()[i] == Approx(whole.state()[i]).epsilon(1e-6));
  REQUIRE(n.couples_batch());
  REQUIRE_FALSE(m.couples_batch());
  REQUIRE(n.sync_sizes() == std::vector<std::size_t>{11, 10});
}
