// Training throughput of the MLP 784-256-128-10 (batch 128, SGD with momentum
// 0.9, softmax cross-entropy): dpar::nn with one replica per thread against
// libtorch's C++ API with the same thread count, in the same run. Both train
// on the same synthetic Fashion-MNIST-shaped data (8192 samples, 64 steps per
// iteration; dpar shuffles and gathers its batches, libtorch takes contiguous
// slices). items_per_second is samples/s.
//
//   bench_nn --benchmark_filter=. [--benchmark_repetitions=5]
#include <benchmark/benchmark.h>
#include <dpar/nn.hpp>

#ifdef DPAR_BENCH_TORCH
#include <torch/torch.h>
#endif

#include <time.h>

#include <random>
#include <thread>

namespace nn = dpar::nn;

namespace {

constexpr std::size_t samples = 8192, features = 784, classes = 10, batch = 128;

// CPU time of the whole process (all threads): on a shared machine, samples per
// CPU-second is a load-robust efficiency figure next to wall-clock samples/s.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

void report(benchmark::State& state, double cpu_start) {
  double samples_done = double(state.iterations()) * double(samples);
  state.SetItemsProcessed(static_cast<std::int64_t>(samples_done));
  state.counters["samples_per_cpu_s"] = samples_done / (process_cpu_seconds() - cpu_start);
}

const nn::dataset& data() {
  static nn::dataset d = [] {
    nn::dataset d;
    std::mt19937_64 g(1);
    std::normal_distribution<float> n(0.0f, 1.0f);
    d.images.resize(samples, features);
    for (auto& v : d.images.flat()) v = n(g);
    for (std::size_t i = 0; i < samples; ++i) d.labels.push_back(static_cast<std::int32_t>(g() % classes));
    return d;
  }();
  return d;
}

void dpar_mlp(benchmark::State& state) {
  std::size_t threads = static_cast<std::size_t>(state.range(0));
  if (openblas_set_num_threads) openblas_set_num_threads(1);  // replicas are the parallelism
  auto model = nn::make_mlp({features, 256, 128, classes});
  model.initialize(1);
  nn::train_options o;
  o.batch = batch;
  o.schedule = nn::lr_schedule::constant(0.01f);
  o.sgd = {0.9f, false, 0.0f};
  dpar::thread_pool pool(threads);
  nn::data_parallel_trainer t(dpar::par.on(pool), model, o);
  const auto& d = data();
  double cpu = process_cpu_seconds();
  for (auto _ : state) {
    auto r = t.train_epoch(d);  // 64 steps of 128 samples
    benchmark::DoNotOptimize(r.loss_sum);
  }
  report(state, cpu);
}

#ifdef DPAR_BENCH_TORCH
void libtorch_mlp(benchmark::State& state) {
  int threads = static_cast<int>(state.range(0));
  torch::set_num_threads(threads);
  if (openblas_set_num_threads) openblas_set_num_threads(threads);  // in case torch's GEMMs go to OpenBLAS
  torch::manual_seed(1);
  torch::nn::Sequential model(torch::nn::Linear(features, 256), torch::nn::ReLU(), torch::nn::Linear(256, 128),
                              torch::nn::ReLU(), torch::nn::Linear(128, classes));
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto& d = data();
  auto x = torch::from_blob(const_cast<float*>(d.images.data()), {long(samples), long(features)}, torch::kFloat);
  std::vector<std::int64_t> labels(d.labels.begin(), d.labels.end());
  auto y = torch::from_blob(labels.data(), {long(samples)}, torch::kLong);
  double cpu = process_cpu_seconds();
  for (auto _ : state) {
    for (long at = 0; at < long(samples); at += long(batch)) {  // the same 64 steps of 128 samples
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model->forward(x.narrow(0, at, batch)), y.narrow(0, at, batch));
      loss.backward();
      opt.step();
      benchmark::DoNotOptimize(loss.item<float>());
    }
  }
  report(state, cpu);
  if (openblas_set_num_threads) openblas_set_num_threads(1);
}
#endif

const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

}  // namespace

BENCHMARK(dpar_mlp)->Arg(1)->Arg(hw)->UseRealTime()->MinTime(2.0);
#ifdef DPAR_BENCH_TORCH
BENCHMARK(libtorch_mlp)->Arg(1)->Arg(hw)->UseRealTime()->MinTime(2.0);
#endif

BENCHMARK_MAIN();
