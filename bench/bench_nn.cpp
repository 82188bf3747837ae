// Training throughput of the MLP 784-256-128-10 (batch 128, SGD with momentum
// 0.9, softmax cross-entropy): dpar::nn with one replica per thread against
// libtorch's C++ API with the same thread count, in the same run. Both train
// on the same synthetic Fashion-MNIST-shaped data (8192 samples, 64 steps per
// iteration; dpar shuffles and gathers its batches, libtorch takes contiguous
// slices). items_per_second is samples/s. dpar_mlp_deterministic: the same
// under dpar::deterministic(dpar::par.on(pool)), the same bits on any thread
// count (target: at least 0.67 of dpar_mlp's samples/s at 2 threads).
// dpar_mlp_adamw and dpar_mlp_syncbn: AdamW instead of SGD, and batch_norm
// (SyncBatchNorm) after each hidden layer; each a ratio against dpar_mlp.
// mlp_gemms: the MLP's GEMMs alone, the ceiling of dpar_mlp's fma_peak_fraction.
// fma_peak_fraction (MLP rows in one process): samples/s x the MLP's GEMM
// FLOP per sample (1,007,104) / the FMA peak of as many threads, measured in
// the same process (fma_peak.hpp): the share of the machine's limit used.
//
//   bench_nn [--benchmark_repetitions=5]          1 rank x 1, 2 (and all hardware) threads; libtorch
//   mpiexec -n 2 bench_nn                         2 ranks x 1 thread, and the cross-rank gradient
//                                                 all-reduce alone (time per call = per step);
//                                                 dpar_mlp_mpi_zero: ZeRO stage 1 over ranks on
//                                                 and off (SGD, AdamW)
//
// dpar_cnn / libtorch_cnn: the same for the example's CNN (nn::make_cnn: 3x3
// conv 32 + pool, 3x3 conv 64 + pool, dense 128, 10) on the first 1024 of
// those samples as 1x28x28 images (8 steps per iteration). libtorch's Linear
// layers run on OpenBLAS, which falls back to SSE3 kernels on CPUs it does not
// know: OPENBLAS_CORETYPE=SkylakeX (or Haswell) gives it its best there.
//
// Data-model parallelism (nn/model_parallel.hpp), pure data parallel against
// data-model parallel on the same threads or ranks: *_dp rows all-reduce every
// gradient; *_split rows mark the large dense layers model-parallel (MLP: the
// two hidden layers; CNN with a large FC layer, nn::make_cnn with hidden 1024:
// its 7x7x64 -> 1024 layer). bytes_per_step: what one replica sends per step,
// from the shapes (an all-reduce of P floats sends 2 (K-1)/K P of them per
// replica; the split layers' exchanges: model_parallel_group::
// exchanged_bytes_per_replica). Seconds per step: 1 / (items_per_second / 128).
//
// dpar_mlp_source: the MLP from the data set in memory or memory-mapped
// (mapped_dataset of an uncompressed IDX copy), with the next batch gathered
// on a helper thread (prefetch 1) or in the step (0). *_mapped_memory: the
// mapped files' resident bytes in a rank over their size, during an epoch.
//
// Under mpiexec every rank runs the same fixed iteration counts; rank 0 reports.
#include <benchmark/benchmark.h>
#include <dpar/nn.hpp>
#ifdef DPAR_BENCH_MPI
#include <dpar/nn/mpi.hpp>
#endif

#ifdef DPAR_BENCH_TORCH
#include <torch/torch.h>
#endif

#include <time.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "environment.hpp"
#include "fma_peak.hpp"
#include "nn_bench_data.hpp"

namespace nn = dpar::nn;

namespace {

using nn_bench::batch, nn_bench::classes, nn_bench::data, nn_bench::features, nn_bench::samples;

// CPU time of the whole process (all threads): on a shared machine, samples per
// CPU-second is a load-robust efficiency figure next to wall-clock samples/s.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Samples per iteration of the CNN rows.
constexpr std::size_t cnn_samples = 1024;

const nn::dataset& cnn_data() {
  static const nn::dataset d = [] {
    nn::dataset s;
    const nn::tensor first = data().images.rows_view(0, cnn_samples);
    s.images = first;  // a copy of the view
    s.labels.assign(data().labels.begin(), data().labels.begin() + cnn_samples);
    return s;
  }();
  return d;
}

// FLOP of the MLP's GEMMs per sample: x W^T forward and dW backward for
// every dense layer, dX for all but the first: 1,007,104 for 784-256-128-10.
double mlp_gemm_flop_per_sample() {
  const std::size_t sizes[] = {features, 256, 128, classes};
  double weights = 0, below_first = 0;
  for (std::size_t i = 0; i + 1 < std::size(sizes); ++i) {
    const double w = double(sizes[i]) * double(sizes[i + 1]);
    weights += w;
    if (i > 0) below_first += w;
  }
  return 2 * (2 * weights + below_first);
}

using wall_clock = std::chrono::steady_clock;

// samples_per_cpu_s; with peak_threads > 0 (rows that train the MLP in one
// process) also fma_peak_fraction: samples/s x the MLP's GEMM FLOP per sample
// / the FMA peak of peak_threads threads, measured in this process after
// the row (fma_peak.hpp): how much of the machine's limit the training uses.
void report(benchmark::State& state, double cpu_start, wall_clock::time_point wall_start, std::size_t per_iteration,
            unsigned peak_threads = 0) {
  const double samples_done = double(state.iterations()) * double(per_iteration);
  const std::chrono::duration<double> wall = wall_clock::now() - wall_start;
  state.SetItemsProcessed(static_cast<std::int64_t>(samples_done));
  state.counters["samples_per_cpu_s"] = samples_done / (process_cpu_seconds() - cpu_start);
  if (peak_threads > 0 && fma_peak_gflops(peak_threads) > 0)
    state.counters["fma_peak_fraction"] =
        samples_done / wall.count() * mlp_gemm_flop_per_sample() / 1e9 / fma_peak_gflops(peak_threads);
}

nn::sequential mlp() {
  auto model = nn::make_mlp({features, 256, 128, classes});
  model.initialize(1);
  return model;
}

nn::train_options options() {
  nn::train_options o;
  o.batch = batch;
  o.schedule = nn::lr_schedule::constant(0.01f);
  o.sgd = {0.9f, false, 0.0f};
  return o;
}

nn::sequential cnn() {
  auto model = nn::make_cnn({1, 28, 28}, {32, 64}, 128, classes);
  model.initialize(1);
  return model;
}

// peak_threads: see report.
void train(benchmark::State& state, nn::data_parallel_trainer& t, const nn::dataset& d = data(),
           unsigned peak_threads = 0) {
  const double cpu = process_cpu_seconds();
  const auto wall = wall_clock::now();
  for (auto _ : state) {
    auto r = t.train_epoch(d);  // steps of 128 samples: 64 (MLP), 8 (CNN)
    benchmark::DoNotOptimize(r.loss_sum);
  }
  report(state, cpu, wall, d.size(), peak_threads);
  state.counters["replicas"] = static_cast<double>(t.replicas());
}

// 1 rank x state.range(0) threads.
void dpar_mlp(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  nn::data_parallel_trainer t(dpar::par.on(pool), mlp(), options());
  train(state, t, data(), static_cast<unsigned>(state.range(0)));
}

// The MLP's GEMMs alone (nn::blas::gemm, as ops.hpp's dense layers call it):
// state.range(0) threads at once, each running one replica's share of a step
// (batch / threads samples) 64 times per iteration, forward x W^T, backward
// dW and dX (not for the first layer). Its fma_peak_fraction is the ceiling
// that the GEMM library sets on dpar_mlp's: everything else in a step only
// adds time.
void mlp_gemms(benchmark::State& state) {
  const auto threads = static_cast<unsigned>(state.range(0));
  const std::size_t rows = batch / threads, sizes[] = {features, 256, 128, classes}, layers = 3;
  struct replica {
    std::vector<float> act[layers + 1], grad[layers + 1], w[layers], dw[layers];
  };
  std::vector<replica> replicas(threads);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> value(-0.05f, 0.05f);
  for (auto& r : replicas)
    for (std::size_t l = 0; l <= layers; ++l) {
      r.act[l].resize(rows * sizes[l]);
      r.grad[l].resize(rows * sizes[l]);
      for (float& v : r.act[l]) v = value(gen);
      for (float& v : r.grad[l]) v = value(gen);
      if (l == layers) break;
      r.w[l].resize(sizes[l + 1] * sizes[l]);
      r.dw[l].resize(r.w[l].size());
      for (float& v : r.w[l]) v = value(gen);
    }
  auto steps = [&](replica& r) {
    for (int step = 0; step < 64; ++step) {
      for (std::size_t l = 0; l < layers; ++l)
        nn::blas::gemm(false, true, rows, sizes[l + 1], sizes[l], 1.0f, r.act[l].data(), sizes[l], r.w[l].data(),
                       sizes[l], 0.0f, r.act[l + 1].data(), sizes[l + 1]);
      for (std::size_t l = layers; l-- > 0;) {
        nn::blas::gemm(true, false, sizes[l + 1], sizes[l], rows, 1.0f, r.grad[l + 1].data(), sizes[l + 1],
                       r.act[l].data(), sizes[l], 0.0f, r.dw[l].data(), sizes[l]);
        if (l > 0)
          nn::blas::gemm(false, false, rows, sizes[l], sizes[l + 1], 1.0f, r.grad[l + 1].data(), sizes[l + 1],
                         r.w[l].data(), sizes[l], 0.0f, r.grad[l].data(), sizes[l]);
      }
    }
  };
  const auto wall = wall_clock::now();
  for (auto _ : state) {
    std::vector<std::thread> running;
    for (unsigned t = 1; t < threads; ++t) running.emplace_back([&, t] { steps(replicas[t]); });
    steps(replicas[0]);
    for (auto& t : running) t.join();
  }
  const std::chrono::duration<double> took = wall_clock::now() - wall;
  const double samples = double(state.iterations()) * 64 * double(rows * threads);
  state.SetItemsProcessed(static_cast<std::int64_t>(samples));
  if (fma_peak_gflops(threads) > 0)
    state.counters["fma_peak_fraction"] =
        samples / took.count() * mlp_gemm_flop_per_sample() / 1e9 / fma_peak_gflops(threads);
  state.SetLabel(nn::blas::implementation());
}

// The same with AdamW instead of SGD with momentum: the optimizer's cost per
// step (read against dpar_mlp with the same thread count).
void dpar_mlp_adamw(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  auto o = options();
  o.adamw = nn::adamw_options{};
  nn::data_parallel_trainer t(dpar::par.on(pool), mlp(), o);
  train(state, t, data(), static_cast<unsigned>(state.range(0)));
}

// The MLP with a batch_norm after each hidden Dense (784-256-BN-ReLU-128-BN-ReLU-10):
// SyncBatchNorm's cost per step, its statistics summed over the replicas
// twice per layer and step (read against dpar_mlp with the same thread count).
void dpar_mlp_syncbn(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  nn::sequential model(features);
  model.add(nn::dense(features, 256)).add(nn::batch_norm(256)).add(nn::relu());
  model.add(nn::dense(256, 128)).add(nn::batch_norm(128)).add(nn::relu()).add(nn::dense(128, classes));
  model.initialize(1);
  nn::data_parallel_trainer t(dpar::par.on(pool), model, options());
  train(state, t, data(), static_cast<unsigned>(state.range(0)));
}

// The same, reproducible: the same bits for any state.range(0).
void dpar_mlp_deterministic(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  nn::data_parallel_trainer t(dpar::deterministic(dpar::par.on(pool)), mlp(), options());
  train(state, t, data(), static_cast<unsigned>(state.range(0)));
}

// The MLP with its two hidden layers model-parallel (the same parameters).
nn::sequential split_mlp() {
  nn::sequential m(features);
  m.add(nn::model_parallel(nn::dense(features, 256))).add(nn::relu());
  m.add(nn::model_parallel(nn::dense(256, 128))).add(nn::relu()).add(nn::dense(128, classes));
  m.initialize(1);
  return m;
}

// A CNN whose FC layer holds most of the weights: make_cnn's with hidden 1024
// (7x7x64 -> 1024: 3.2 M of its 3.2 M parameters), that layer model-parallel or not.
nn::sequential wide_cnn(bool split) {
  nn::conv2d c1({1, 28, 28}, 32, 3, 1, 1);
  nn::max_pool2d p1(c1.output_shape(), 2);
  nn::conv2d c2(p1.output_shape(), 64, 3, 1, 1);
  nn::max_pool2d p2(c2.output_shape(), 2);
  nn::flatten f(p2.output_shape());
  nn::sequential m(c1.input_shape().size());
  m.add(c1).add(nn::relu()).add(p1).add(c2).add(nn::relu()).add(p2).add(f);
  nn::dense fc(p2.output_shape().size(), 1024);
  if (split)
    m.add(nn::model_parallel(fc));
  else
    m.add(fc);
  m.add(nn::relu()).add(nn::dense(1024, classes));
  m.initialize(1);
  return m;
}

// Bytes one of k replicas sends per step of `batch` samples (see the top).
double bytes_per_step(const nn::sequential& m, std::size_t k) {
  const double others = 2.0 * double(k - 1) / double(k);
  if (!nn::model_parallel_group::needed(m)) return others * double(m.parameters().size()) * sizeof(float);
  std::size_t shared = 0;  // parameters outside the split layers
  for (std::size_t i = 0; i < m.size(); ++i)
    if (!m[i].as_replica_split()) shared += m[i].parameter_count();
  return others * double(shared) * sizeof(float) + nn::model_parallel_group::exchanged_bytes_per_replica(m, batch, k);
}

template <class Policy>
void train_model(benchmark::State& state, const Policy& policy, const nn::sequential& m, const nn::dataset& d,
                 unsigned peak_threads = 0) {
  nn::data_parallel_trainer t(policy, m, options());
  train(state, t, d, peak_threads);
  state.counters["bytes_per_step"] = bytes_per_step(m, t.replicas());
}

// 1 rank x state.range(0) threads; range(1): 0 MLP, 1 the wide CNN; range(2): split.
void dpar_data_model(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  const bool split = state.range(2) != 0;
  if (state.range(1) == 0)
    train_model(state, dpar::par.on(pool), split ? split_mlp() : mlp(), data(), static_cast<unsigned>(state.range(0)));
  else
    train_model(state, dpar::par.on(pool), wide_cnn(split), cnn_data());
}

void dpar_cnn(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  nn::data_parallel_trainer t(dpar::par.on(pool), cnn(), options());
  train(state, t, cnn_data());
}

// The data set as an uncompressed IDX pair (the samples quantized to bytes),
// written once per process under /tmp and removed at exit: the mapped source.
struct bench_files {
  std::string images, labels;
  std::size_t bytes = 0;  // of both files
  bench_files() {
    const std::string stem = "/tmp/dpar_bench_nn_" + std::to_string(::getpid());
    images = stem + ".images.idx";
    labels = stem + ".labels.idx";
    auto header = [](std::vector<std::uint32_t> dims) {
      std::vector<std::uint8_t> b = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
      for (auto d : dims)
        for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
      return b;
    };
    auto x = header({std::uint32_t(samples), std::uint32_t(features)});
    for (float v : data().images.flat()) x.push_back(static_cast<std::uint8_t>(std::clamp(128.0f + 40.0f * v, 0.0f, 255.0f)));
    auto y = header({std::uint32_t(samples)});
    for (auto l : data().labels) y.push_back(static_cast<std::uint8_t>(l));
    std::ofstream(images, std::ios::binary).write(reinterpret_cast<const char*>(x.data()), std::streamsize(x.size()));
    std::ofstream(labels, std::ios::binary).write(reinterpret_cast<const char*>(y.data()), std::streamsize(y.size()));
    bytes = x.size() + y.size();
  }
  ~bench_files() {
    std::remove(images.c_str());
    std::remove(labels.c_str());
  }
};
const bench_files& files() {
  static const bench_files f;
  return f;
}

// Resident bytes of this process's mappings of `path` (/proc/self/smaps).
std::size_t resident_of(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in = false;
  std::size_t kb = 0;
  while (std::getline(smaps, line)) {
    const auto space = line.find(' ');
    if (space != std::string::npos && line.find('-') < space) {  // a mapping's header: "start-end perms ... path"
      in = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
      continue;
    }
    if (in && line.rfind("Rss:", 0) == 0) kb += std::stoul(line.substr(4));
  }
  return kb * 1024;
}

// state.range(0) threads; range(1): 0 the data set in memory, 1 mapped
// (mapped_dataset of the IDX files); range(2): prefetch (the next batch
// gathered on a helper thread) off or on.
void dpar_mlp_source(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  auto o = options();
  o.prefetch = state.range(2) != 0;
  nn::data_parallel_trainer t(dpar::par.on(pool), mlp(), o);
  const nn::memory_source memory(data());
  std::optional<nn::mapped_dataset> mapped;
  if (state.range(1)) mapped.emplace(nn::mapped_dataset::idx(files().images, files().labels));
  const nn::data_source& source = mapped ? static_cast<const nn::data_source&>(*mapped) : memory;
  const double cpu = process_cpu_seconds();
  const auto wall = wall_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(t.train_epoch(source).loss_sum);
  report(state, cpu, wall, samples);
}

// The mapped source's resident memory in this rank: the largest, after any
// step of one epoch, and at its end, of the files' mappings, each over the
// files' size. One epoch, no timing (smaps is read after every step).
void mapped_memory(benchmark::State& state, nn::data_parallel_trainer& t) {
  const auto mapped = nn::mapped_dataset::idx(files().images, files().labels);
  std::size_t peak = 0;
  auto resident = [] { return resident_of(files().images) + resident_of(files().labels); };
  for (auto _ : state)
    t.train_epoch(mapped, [&](std::size_t, std::size_t, double) { peak = std::max(peak, resident()); });
  state.counters["peak_resident_over_data"] = double(peak) / double(files().bytes);
  state.counters["end_resident_over_data"] = double(resident()) / double(files().bytes);
  state.counters["data_MB"] = double(files().bytes) / 1e6;
}
void dpar_mlp_mapped_memory(benchmark::State& state) {
  nn::data_parallel_trainer t(dpar::seq, mlp(), options());
  mapped_memory(state, t);
}

#ifdef DPAR_BENCH_MPI
void dpar_mlp_mpi_mapped_memory(benchmark::State& state) {
  nn::data_parallel_trainer t(dpar::mpi(MPI_COMM_WORLD, dpar::seq), mlp(), options());
  mapped_memory(state, t);
}

// All ranks x state.range(0) threads each.
void dpar_mlp_mpi(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  nn::data_parallel_trainer t(dpar::mpi(MPI_COMM_WORLD, dpar::par.on(pool)), mlp(), options());
  train(state, t);
}

// ZeRO stage 1 over ranks against the whole update on every replica: all
// ranks x range(0) threads; range(1): 1 the sharded update (mpi_group's
// sum_and_update), 0 the whole one (replica_group's, through a
// forwarding_group); range(2): 1 AdamW, 0 SGD with momentum. The same bits.
void dpar_mlp_mpi_zero(benchmark::State& state) {
  dpar::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  auto group = nn::make_replica_group(dpar::mpi(MPI_COMM_WORLD, dpar::par.on(pool)));
  if (state.range(1) == 0) group = std::make_unique<nn::forwarding_group>(std::move(group));
  auto o = options();
  if (state.range(2) != 0) o.adamw = nn::adamw_options{};
  nn::data_parallel_trainer t(std::move(group), mlp(), o);
  train(state, t);
}

// All ranks x 1 thread: range(1) and range(2) as in dpar_data_model.
void dpar_data_model_mpi(benchmark::State& state) {
  const bool split = state.range(2) != 0;
  auto policy = dpar::mpi(MPI_COMM_WORLD, dpar::seq);
  if (state.range(1) == 0)
    train_model(state, policy, split ? split_mlp() : mlp(), data());
  else
    train_model(state, policy, wide_cnn(split), cnn_data());
}

// Gradient buckets (train_options::bucket_bytes) on all ranks x 1 thread:
// range(0) the model (0 MLP, 1 CNN), range(1) the bucket size in KiB (0:
// the sum at the step's end). The mpi_group is wrapped in a group that
// times what the gradient sum keeps a replica from computing: the whole
// all-reduce without buckets; with them every bucket call (starts, the
// progress between layers, the first layer's bucket summed at once, the
// wait at the end). wait_us_per_step: that time, per step; the share of
// the sum hidden behind backward = 1 - wait(buckets) / wait(no buckets).
class timed_sum_group final : public nn::forwarding_group {
 public:
  timed_sum_group() : forwarding_group(std::make_unique<nn::mpi_group>(MPI_COMM_WORLD, std::make_unique<nn::sequential_group>())) {}
  void all_reduce(std::size_t local, std::span<float> data) override { timed([&] { inner().all_reduce(local, data); }); }
  using forwarding_group::all_reduce;
  bool sums_in_buckets(const nn::replica_model& m) const noexcept override { return inner().sums_in_buckets(m); }
  void start_bucket(std::size_t local, nn::replica_model& m, std::size_t lo, std::size_t hi) override {
    timed([&] { inner().start_bucket(local, m, lo, hi); });
  }
  void progress_buckets(std::size_t local) override { timed([&] { inner().progress_buckets(local); }); }
  void finish_buckets(std::size_t local, nn::replica_model& m) override {
    timed([&] { inner().finish_buckets(local, m); });
  }
  double waited = 0;  // seconds

 private:
  template <class F>
  void timed(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    waited += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

void dpar_mpi_buckets(benchmark::State& state) {
  auto o = options();
  o.bucket_bytes = static_cast<std::size_t>(state.range(1)) * 1024;
  const bool cnn_model = state.range(0) != 0;
  auto group = std::make_unique<timed_sum_group>();
  timed_sum_group& timed = *group;
  nn::data_parallel_trainer t(std::move(group), cnn_model ? cnn() : mlp(), o);
  const nn::dataset& d = cnn_model ? cnn_data() : data();
  t.train_epoch(d);  // warm-up: pages, connections, the buckets' duplicates
  timed.waited = 0;
  train(state, t, d);
  const double steps = double(state.iterations()) * double(d.size() / batch);
  state.counters["wait_us_per_step"] = 1e6 * timed.waited / steps;
}

// The cross-rank part of one step alone: the MLP's whole gradient buffer
// through the MPI replica group's all-reduce (1 thread per rank).
void nn_mpi_gradient_all_reduce(benchmark::State& state) {
  dpar::nn::mpi_group group(MPI_COMM_WORLD, std::make_unique<dpar::nn::sequential_group>());
  // range(0): floats, or 0 for the MLP's whole gradient (the scaling model fits latency and bandwidth to both)
  std::vector<float> gradient(state.range(0) ? std::size_t(state.range(0)) : mlp().parameters().size(), 1.0f);
  group.all_reduce(0, std::span<float>(gradient));  // warm-up: pages, connections
  MPI_Barrier(MPI_COMM_WORLD);
  for (auto _ : state) group.all_reduce(0, std::span<float>(gradient));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * gradient.size() * sizeof(float)));
}

class null_reporter : public benchmark::BenchmarkReporter {  // ranks other than 0
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};
#endif

#ifdef DPAR_BENCH_TORCH
// libtorch on state.range(0) threads: SGD with momentum 0.9 over d in steps
// of `batch` samples, each sample shaped `sample` (features, or C x H x W).
void libtorch_train(benchmark::State& state, torch::nn::Sequential& model, const nn::dataset& d,
                    std::vector<std::int64_t> sample, unsigned peak_threads = 0) {
  int threads = static_cast<int>(state.range(0));
  torch::set_num_threads(threads);
  if (openblas_set_num_threads) openblas_set_num_threads(threads);  // in case torch's GEMMs go to OpenBLAS
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto n = static_cast<std::int64_t>(d.size());
  sample.insert(sample.begin(), n);
  auto x = torch::from_blob(const_cast<float*>(d.images.data()), sample, torch::kFloat);
  std::vector<std::int64_t> labels(d.labels.begin(), d.labels.end());
  auto y = torch::from_blob(labels.data(), {n}, torch::kLong);
  const double cpu = process_cpu_seconds();
  const auto wall = wall_clock::now();
  for (auto _ : state) {
    for (std::int64_t at = 0; at < n; at += std::int64_t(batch)) {  // the same steps as dpar's
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model->forward(x.narrow(0, at, batch)), y.narrow(0, at, batch));
      loss.backward();
      opt.step();
      benchmark::DoNotOptimize(loss.item<float>());
    }
  }
  report(state, cpu, wall, d.size(), peak_threads);
  if (openblas_set_num_threads) openblas_set_num_threads(1);
}

void libtorch_mlp(benchmark::State& state) {
  torch::manual_seed(1);
  torch::nn::Sequential model(torch::nn::Linear(features, 256), torch::nn::ReLU(), torch::nn::Linear(256, 128),
                              torch::nn::ReLU(), torch::nn::Linear(128, classes));
  libtorch_train(state, model, data(), {std::int64_t(features)}, static_cast<unsigned>(state.range(0)));
}

void libtorch_cnn(benchmark::State& state) {
  torch::manual_seed(1);
  namespace tn = torch::nn;
  tn::Sequential model(tn::Conv2d(tn::Conv2dOptions(1, 32, 3).padding(1)), tn::ReLU(),
                       tn::MaxPool2d(tn::MaxPool2dOptions(2)), tn::Conv2d(tn::Conv2dOptions(32, 64, 3).padding(1)),
                       tn::ReLU(), tn::MaxPool2d(tn::MaxPool2dOptions(2)), tn::Flatten(), tn::Linear(64 * 7 * 7, 128),
                       tn::ReLU(), tn::Linear(128, classes));
  libtorch_train(state, model, cnn_data(), {1, 28, 28});
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifdef DPAR_BENCH_TORCH
  // libtorch's OpenMP threads spin while idle unless told otherwise: spinning,
  // libtorch on 2 threads ran at 15-19k samples/s on a 2-core machine;
  // passive, 72k (its 1-thread figure: 76k).
  bench::environment_settler env;
  env.want("OMP_WAIT_POLICY", "passive", false);
  env.settle(argv);
#endif
  [[maybe_unused]] int rank = 0, ranks = 1;
#ifdef DPAR_BENCH_MPI
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
#endif
  benchmark::Initialize(&argc, argv);
  if (openblas_set_num_threads) openblas_set_num_threads(1);  // replicas are the parallelism
  if (ranks == 1) {
    std::vector<int> threads{1, 2};
    int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (hw > 2) threads.push_back(hw);
    for (int t : threads) {
      benchmark::RegisterBenchmark("mlp_gemms", mlp_gemms)->Arg(t)->UseRealTime()->MinTime(1.0);
      benchmark::RegisterBenchmark("dpar_mlp", dpar_mlp)->Arg(t)->UseRealTime()->MinTime(2.0);
      benchmark::RegisterBenchmark("dpar_mlp_adamw", dpar_mlp_adamw)->Arg(t)->UseRealTime()->MinTime(2.0);
      benchmark::RegisterBenchmark("dpar_mlp_syncbn", dpar_mlp_syncbn)->Arg(t)->UseRealTime()->MinTime(2.0);
      benchmark::RegisterBenchmark("dpar_mlp_deterministic", dpar_mlp_deterministic)
          ->Arg(t)
          ->UseRealTime()
          ->MinTime(2.0);
      benchmark::RegisterBenchmark("dpar_cnn", dpar_cnn)->Arg(t)->UseRealTime()->MinTime(2.0);
      if (t == 2)  // args: threads, model (0 MLP, 1 wide CNN), split
        for (int model : {0, 1})
          for (int split : {0, 1})
            benchmark::RegisterBenchmark("dpar_data_model", dpar_data_model)
                ->Args({t, model, split})
                ->UseRealTime()
                ->MinTime(2.0);
      for (int mapped : {0, 1})
        for (int prefetch : {0, 1})
          benchmark::RegisterBenchmark("dpar_mlp_source", dpar_mlp_source)
              ->Args({t, mapped, prefetch})
              ->ArgNames({"threads", "mapped", "prefetch"})
              ->UseRealTime()
              ->MinTime(1.0);
#ifdef DPAR_BENCH_TORCH
      benchmark::RegisterBenchmark("libtorch_mlp", libtorch_mlp)->Arg(t)->UseRealTime()->MinTime(2.0);
      benchmark::RegisterBenchmark("libtorch_cnn", libtorch_cnn)->Arg(t)->UseRealTime()->MinTime(2.0);
#endif
    }
    benchmark::RegisterBenchmark("dpar_mlp_mapped_memory", dpar_mlp_mapped_memory)->Iterations(1);
  }
#ifdef DPAR_BENCH_MPI
  else {
    benchmark::RegisterBenchmark("dpar_mlp_mpi_mapped_memory", dpar_mlp_mpi_mapped_memory)->Iterations(1);
    // Fixed iteration counts: every rank must make the same collective calls.
    benchmark::RegisterBenchmark("dpar_mlp_mpi", dpar_mlp_mpi)->Arg(1)->Iterations(30)->UseRealTime();
    for (int adamw : {0, 1})
      for (int zero : {0, 1})
        benchmark::RegisterBenchmark("dpar_mlp_mpi_zero", dpar_mlp_mpi_zero)
            ->Args({1, zero, adamw})
            ->ArgNames({"threads", "zero", "adamw"})
            ->Iterations(30)
            ->UseRealTime();
    for (int model : {0, 1})
      for (int split : {0, 1})
        benchmark::RegisterBenchmark("dpar_data_model_mpi", dpar_data_model_mpi)
            ->Args({1, model, split})
            ->Iterations(model == 0 ? 20 : 3)
            ->UseRealTime();
    for (int model : {0, 1})
      for (int kib : {0, 64, 256, 1024, 4096})
        benchmark::RegisterBenchmark("dpar_mpi_buckets", dpar_mpi_buckets)
            ->Args({model, kib})
            ->ArgNames({"cnn", "bucket_KiB"})
            ->Iterations(model == 0 ? 20 : 6)
            ->UseRealTime();
    for (int floats : {0, 256, 16384, 1 << 20})
      benchmark::RegisterBenchmark("nn_mpi_gradient_all_reduce", nn_mpi_gradient_all_reduce)
          ->Arg(floats)
          ->Iterations(floats > (1 << 16) ? 100 : 500)
          ->UseRealTime();
  }
  if (rank != 0) {
    null_reporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  } else
#endif
    benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
#ifdef DPAR_BENCH_MPI
  MPI_Finalize();
#endif
  return 0;
}
