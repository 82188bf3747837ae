#pragma once
// SGD with momentum, Nesterov and weight decay (PyTorch's torch.optim.SGD
// semantics, no dampening), and learning-rate schedules.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <compare>
#include <functional>
#include <iterator>
#include <numbers>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../algorithm.hpp"
#include "../execution.hpp"

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

// Learning rate as a function of the step (0-based): constant, step decay or
// cosine annealing, optionally after a linear warmup.
class lr_schedule {
 public:
  enum class kind { constant, step, cosine };

  static lr_schedule constant(float lr) { return lr_schedule(kind::constant, lr); }
  // lr * gamma^(floor(step / every)).
  static lr_schedule step(float lr, std::size_t every, float gamma) {
    if (every == 0) throw std::invalid_argument("dpar::nn::lr_schedule::step: 'every' must be positive");
    lr_schedule s(kind::step, lr);
    s.every_ = every;
    s.gamma_ = gamma;
    return s;
  }
  // From lr down to min_lr over total steps along half a cosine; min_lr after.
  static lr_schedule cosine(float lr, std::size_t total, float min_lr = 0.0f) {
    if (total == 0) throw std::invalid_argument("dpar::nn::lr_schedule::cosine: 'total' must be positive");
    lr_schedule s(kind::cosine, lr);
    s.total_ = total;
    s.min_ = min_lr;
    return s;
  }
  // Ramps linearly from lr/steps up to the schedule's value over the first
  // `steps` steps; the schedule itself counts from step 0 as usual.
  lr_schedule with_warmup(std::size_t steps) const {
    lr_schedule s = *this;
    s.warmup_ = steps;
    return s;
  }

  float operator()(std::size_t step) const {
    float lr = base_;
    switch (kind_) {
      case kind::constant: break;
      case kind::step: lr = base_ * std::pow(gamma_, static_cast<float>(step / every_)); break;
      case kind::cosine: {
        double t = std::min<double>(1.0, static_cast<double>(step) / static_cast<double>(total_));
        lr = static_cast<float>(min_ + (base_ - min_) * 0.5 * (1.0 + std::cos(std::numbers::pi * t)));
        break;
      }
    }
    if (step < warmup_) lr *= static_cast<float>(step + 1) / static_cast<float>(warmup_);
    return lr;
  }

 private:
  lr_schedule(kind k, float lr) : kind_(k), base_(lr) {}
  kind kind_;
  float base_;
  std::size_t every_ = 1, total_ = 1, warmup_ = 0;
  float gamma_ = 1.0f, min_ = 0.0f;
};

// Any learning-rate schedule: a callable from the step (0-based) to the rate,
// such as an lr_schedule or a lambda.
using lr_function = std::function<float(std::size_t step)>;

// A fingerprint of a schedule: a hash of its rates at steps 0, 1, 2, 3, 4, 6,
// 8, 12, ... up to 2^40, where any warmup, decay or total length shows. A
// checkpoint keeps it, so that resuming with another schedule (another epoch
// count, say) is caught. Never 0, which means "not recorded".
inline std::uint64_t schedule_fingerprint(const lr_function& schedule) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](float lr) {
    std::uint32_t bits;
    std::memcpy(&bits, &lr, sizeof bits);
    for (int i = 0; i < 4; ++i) h = (h ^ ((bits >> (8 * i)) & 0xff)) * 1099511628211ull;
  };
  mix(schedule(0));
  for (std::size_t p = 1; p <= (std::size_t{1} << 40); p *= 2) {
    mix(schedule(p));
    if (p >= 2) mix(schedule(p + p / 2));
  }
  return h == 0 ? 1 : h;
}

struct sgd_options {
  float momentum = 0.0f;
  bool nesterov = false;
  float weight_decay = 0.0f;
};

class sgd {
 public:
  explicit sgd(std::size_t parameters, sgd_options options = {}) : options_(options), velocity_(parameters, 0.0f) {
    if (options.nesterov && options.momentum <= 0.0f)
      throw std::invalid_argument("dpar::nn::sgd: Nesterov momentum needs momentum > 0");
  }

  const sgd_options& options() const noexcept { return options_; }
  std::span<float> velocity() noexcept { return velocity_; }
  std::span<const float> velocity() const noexcept { return velocity_; }

  // One update of params from grads, in a single fused pass:
  //   d = g + wd p;  v = mu v + d;  p -= lr (nesterov ? d + mu v : v)   (mu > 0)
  //   p -= lr d                                                           (mu = 0)
  void step(std::span<float> params, std::span<const float> grads, float lr) {
    if (params.size() != velocity_.size() || grads.size() != velocity_.size())
      throw std::invalid_argument("dpar::nn::sgd::step: " + std::to_string(params.size()) + " parameters and " +
                                  std::to_string(grads.size()) + " gradients for an optimizer of " +
                                  std::to_string(velocity_.size()));
    const float mu = options_.momentum, wd = options_.weight_decay;
    if (mu == 0.0f) {
      dpar::transform(dpar::seq, params.begin(), params.end(), grads.begin(), params.begin(),
                      [=](float p, float g) { return p - lr * (g + wd * p); });
      return;
    }
    // Branch-free so that it vectorizes: step = a d + b v, with (a, b) = (1, mu)
    // for Nesterov and (0, 1) for plain momentum.
    const float a = options_.nesterov ? 1.0f : 0.0f, b = options_.nesterov ? mu : 1.0f;
    float* p = params.data();
    const float* g = grads.data();
    float* v = velocity_.data();
    // An index loop (it vectorizes; deriving the index from an element's address does not).
    dpar::for_each(dpar::seq, detail::index_iterator{0}, detail::index_iterator{params.size()}, [=](std::size_t i) {
      float d = g[i] + wd * p[i];
      float vi = mu * v[i] + d;
      v[i] = vi;
      p[i] -= lr * (a * d + b * vi);
    });
  }

 private:
  sgd_options options_;
  std::vector<float> velocity_;
};

}  // namespace dpar::nn
