#pragma once
// The training problem shared by bench_nn (CPU) and bench/gpu/bench_nn_gpu: the
// MLP's shapes and synthetic Fashion-MNIST-shaped data (8192 samples, batch 128,
// so 64 steps per epoch).
#include <dpar/nn.hpp>

#include <cstddef>
#include <cstdint>
#include <random>

namespace nn_bench {

constexpr std::size_t samples = 8192, features = 784, classes = 10, batch = 128;

inline const dpar::nn::dataset& data() {
  static dpar::nn::dataset d = [] {
    dpar::nn::dataset d;
    std::mt19937_64 g(1);
    std::normal_distribution<float> n(0.0f, 1.0f);
    d.images.resize(samples, features);
    for (auto& v : d.images.flat()) v = n(g);
    for (std::size_t i = 0; i < samples; ++i) d.labels.push_back(static_cast<std::int32_t>(g() % classes));
    return d;
  }();
  return d;
}

}  // namespace nn_bench
