// dpar::nn training throughput on GPUs (issue 12): the MLP 784-256-128-10, batch
// 128, SGD with momentum 0.9, on the same synthetic Fashion-MNIST-shaped data as
// bench/bench_nn.cpp (8192 samples, 64 steps per iteration), with replicas from
// dpar::gpu (one) and dpar::multi_gpu({0, 0}) (two on device 0). items_per_second
// is samples/s. Run it on a GPU machine, next to bench_nn and PyTorch:
//   ./build/release/bench/gpu/bench_nn_gpu
// Without a device every row is skipped with the reason.
#include <dpar/nn.hpp>
#include <dpar/nn/cuda.hpp>

#include <benchmark/benchmark.h>

#include "../nn_bench_data.hpp"

namespace nn = dpar::nn;

namespace {

using nn_bench::batch, nn_bench::classes, nn_bench::data, nn_bench::features, nn_bench::samples;

bool have_device(benchmark::State& state) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  return true;
}

template <class Policy>
void train(benchmark::State& state, const Policy& policy) {
  auto model = nn::make_mlp({features, 256, 128, classes});
  model.initialize(1);
  nn::train_options o;
  o.batch = batch;
  o.schedule = nn::lr_schedule::constant(0.01f);
  o.sgd = {0.9f, false, 0.0f};
  nn::data_parallel_trainer t(policy, model, o);
  t.train_epoch(data());  // warm-up: cuBLAS handles, buffers, JIT
  for (auto _ : state) {
    auto r = t.train_epoch(data());  // 64 steps; the totals come back to the host
    benchmark::DoNotOptimize(r.loss_sum);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * samples));
}

void dpar_mlp_gpu(benchmark::State& state) {
  if (have_device(state)) train(state, dpar::gpu.on(0));
}

void dpar_mlp_multi_gpu_0_0(benchmark::State& state) {
  if (have_device(state)) train(state, dpar::multi_gpu({0, 0}));
}

}  // namespace

BENCHMARK(dpar_mlp_gpu)->UseRealTime()->MinTime(2.0);
BENCHMARK(dpar_mlp_multi_gpu_0_0)->UseRealTime()->MinTime(2.0);

BENCHMARK_MAIN();
