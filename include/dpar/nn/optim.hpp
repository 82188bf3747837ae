#pragma once
// SGD with momentum, Nesterov and weight decay (PyTorch's torch.optim.SGD
// semantics, no dampening), AdamW (torch.optim.AdamW), and learning-rate
// schedules.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <compare>
#include <functional>
#include <numbers>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../algorithm.hpp"
#include "../execution.hpp"
#include "../partition.hpp"
#include "ops.hpp"

namespace dpar::nn {

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

// Schedules one after another, as PyTorch's SequentialLR chains them:
// schedules[0] until step milestones[0], then schedules[1] counting its steps
// from 0 again, and so on; e.g. a warmup, then a cosine that starts at the
// warmup's end:
//   sequential_lr({lr_schedule::constant(0.1f).with_warmup(100), lr_schedule::cosine(0.1f, 900)}, {100})
inline lr_function sequential_lr(std::vector<lr_function> schedules, std::vector<std::size_t> milestones) {
  if (schedules.empty() || milestones.size() + 1 != schedules.size())
    throw std::invalid_argument("dpar::nn::sequential_lr: " + std::to_string(schedules.size()) + " schedules need " +
                                "one milestone fewer, got " + std::to_string(milestones.size()));
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    if (!schedules[i])
      throw std::invalid_argument("dpar::nn::sequential_lr: schedule " + std::to_string(i) + " is empty");
    if (i > 0 && i < milestones.size() && milestones[i] <= milestones[i - 1])
      throw std::invalid_argument("dpar::nn::sequential_lr: milestones must increase");
  }
  return [schedules = std::move(schedules), milestones = std::move(milestones)](std::size_t step) {
    std::size_t i = static_cast<std::size_t>(std::upper_bound(milestones.begin(), milestones.end(), step) -
                                             milestones.begin());
    return schedules[i](i == 0 ? step : step - milestones[i - 1]);
  };
}

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

namespace detail {
inline void check_step(const char* who, std::size_t params, std::size_t grads, std::size_t n, index_range window,
                       std::size_t first, std::size_t last) {
  if (params != n || grads != n)
    throw std::invalid_argument(std::string("dpar::nn::") + who + "::step: " + std::to_string(params) +
                                " parameters and " + std::to_string(grads) + " gradients for an optimizer of " +
                                std::to_string(n));
  if (first > last || last > n)
    throw std::out_of_range(std::string("dpar::nn::") + who + "::step: elements [" + std::to_string(first) + ", " +
                            std::to_string(last) + ") of " + std::to_string(n));
  if (first < last && (first < window.begin || last > window.end))
    throw std::out_of_range(std::string("dpar::nn::") + who + "::step: elements [" + std::to_string(first) + ", " +
                            std::to_string(last) + ") of " + std::to_string(n) + ", but the state is kept for [" +
                            std::to_string(window.begin) + ", " + std::to_string(window.end) + ") only");
}

// w, if it lies within n parameters; the whole of them if unset.
inline index_range checked_window(const char* who, std::size_t n, std::optional<index_range> w) {
  if (!w) return {0, n};
  if (w->begin > w->end || w->end > n)
    throw std::out_of_range(std::string("dpar::nn::") + who + ": a state window of [" + std::to_string(w->begin) +
                            ", " + std::to_string(w->end) + ") for " + std::to_string(n) + " parameters");
  return *w;
}

// `buffers` state buffers of n elements, kept for the elements of window
// `from` (back to back in `state`), kept for window `to` instead: elements in
// both keep their values, the others of `to` start at 0. A new vector, so
// that a narrower window releases the memory.
inline std::vector<float> rewindow(const char* who, const std::vector<float>& state, std::size_t buffers,
                                   std::size_t n, index_range from, index_range to) {
  checked_window(who, n, to);
  std::vector<float> out(buffers * to.size(), 0.0f);
  const std::size_t lo = std::max(from.begin, to.begin), hi = std::min(from.end, to.end);
  for (std::size_t b = 0; b < buffers && lo < hi; ++b)
    std::copy(state.begin() + static_cast<std::ptrdiff_t>(b * from.size() + lo - from.begin),
              state.begin() + static_cast<std::ptrdiff_t>(b * from.size() + hi - from.begin),
              out.begin() + static_cast<std::ptrdiff_t>(b * to.size() + lo - to.begin));
  return out;
}
}  // namespace detail

struct sgd_options {
  float momentum = 0.0f;
  bool nesterov = false;
  float weight_decay = 0.0f;
};

// Keeps the velocity of a window of the parameters only (window(): all of
// them unless the constructor or set_window says otherwise), so that a
// sharded optimizer (ZeRO stage 1) holds the state of what it updates.
class sgd {
 public:
  explicit sgd(std::size_t parameters, sgd_options options = {}, std::optional<index_range> window = std::nullopt)
      : options_(options),
        n_(parameters),
        window_(detail::checked_window("sgd", parameters, window)),
        velocity_(window_.size(), 0.0f) {
    if (options.nesterov && options.momentum <= 0.0f)
      throw std::invalid_argument("dpar::nn::sgd: Nesterov momentum needs momentum > 0");
  }

  const sgd_options& options() const noexcept { return options_; }
  // The velocity of the window's elements.
  std::span<float> velocity() noexcept { return velocity_; }
  std::span<const float> velocity() const noexcept { return velocity_; }
  index_range window() const noexcept { return window_; }
  // Keeps the velocity of the elements of w (within the parameters) instead:
  // those also in the old window keep theirs, the others start at 0.
  void set_window(index_range w) {
    velocity_ = detail::rewindow("sgd", velocity_, 1, n_, window_, w);
    window_ = w;
  }

  // One update of params from grads, in a single fused pass (ops::sgd_step).
  void step(std::span<float> params, std::span<const float> grads, float lr) { step(params, grads, lr, 0, n_); }
  // The same update of elements [first, last) only (and of their velocity,
  // which the window must hold): element-wise, so a sharded optimizer that
  // updates slices gets the bits of the whole step.
  void step(std::span<float> params, std::span<const float> grads, float lr, std::size_t first, std::size_t last) {
    detail::check_step("sgd", params.size(), grads.size(), n_, window_, first, last);
    if (first == last) return;
    ops::sgd_step(host_place{}, params.data() + first, grads.data() + first, velocity_.data() + (first - window_.begin),
                  last - first, lr, options_.momentum, options_.nesterov, options_.weight_decay);
  }

 private:
  sgd_options options_;
  std::size_t n_;
  index_range window_;
  std::vector<float> velocity_;  // of the window's elements
};

struct adamw_options {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.01f;  // decoupled: p -= lr wd p, apart from the gradient's moments
};

// AdamW with bias correction. Its state is the first moments of every
// parameter followed by the second moments (state(): 2 x parameters, or 2 x
// the window's elements, as sgd keeps a window), and the count of updates
// made, which the bias correction uses.
class adamw {
 public:
  explicit adamw(std::size_t parameters, adamw_options options = {}, std::optional<index_range> window = std::nullopt)
      : options_(options),
        n_(parameters),
        window_(detail::checked_window("adamw", parameters, window)),
        state_(2 * window_.size(), 0.0f) {
    auto in = [](float b) { return b >= 0.0f && b < 1.0f; };
    if (!in(options.beta1) || !in(options.beta2))
      throw std::invalid_argument("dpar::nn::adamw: betas must be in [0, 1), got " + std::to_string(options.beta1) +
                                  " and " + std::to_string(options.beta2));
    if (!(options.eps > 0.0f)) throw std::invalid_argument("dpar::nn::adamw: eps must be positive");
  }

  const adamw_options& options() const noexcept { return options_; }
  std::span<float> state() noexcept { return state_; }
  std::span<const float> state() const noexcept { return state_; }
  std::uint64_t steps() const noexcept { return steps_; }
  // Sets the count of updates made (a resumed run continues the count).
  void set_steps(std::uint64_t steps) noexcept { steps_ = steps; }
  index_range window() const noexcept { return window_; }
  // As sgd::set_window, for both moments.
  void set_window(index_range w) {
    state_ = detail::rewindow("adamw", state_, 2, n_, window_, w);
    window_ = w;
  }

  void step(std::span<float> params, std::span<const float> grads, float lr) { step(params, grads, lr, 0, n_); }
  // Update number steps() + 1 of elements [first, last) only (each element's
  // update is its own: a sharded optimizer gets the bits of the whole step).
  void step(std::span<float> params, std::span<const float> grads, float lr, std::size_t first, std::size_t last) {
    detail::check_step("adamw", params.size(), grads.size(), n_, window_, first, last);
    ++steps_;
    if (first == last) return;
    const std::size_t at = first - window_.begin;
    ops::adamw_step(host_place{}, params.data() + first, grads.data() + first, state_.data() + at,
                    state_.data() + window_.size() + at, last - first, lr, options_.beta1, options_.beta2,
                    options_.eps, options_.weight_decay, steps_);
  }

 private:
  adamw_options options_;
  std::size_t n_;
  index_range window_;
  std::vector<float> state_;  // [m, v] of the window's elements
  std::uint64_t steps_ = 0;
};

}  // namespace dpar::nn
