// dpar::multi_gpu against dpar::gpu on the same data: reduce, inclusive_scan
// and transform of 2^28 floats, over the device lists [0], [0,0] and [0,0,0,0]
// (on one GPU: the cost of sharding, since the shards share the device), and
// every visible device. Then the device all_reduce of floats, 1 MB to 1 GB per
// buffer, in entry order and in NCCL's order (with_nccl_order(); NCCL on
// distinct devices), with NCCL's bus bandwidth: busBW = bytes / time * 2(K-1)/K.
//
// Times are wall-clock per call including the wait for all shards
// (UseRealTime); bytes are bytes read + written, as in bench_gpu.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <dpar/cuda.hpp>
#include <vector>

namespace {

constexpr std::size_t n = std::size_t{1} << 28;

struct axpb {
  __host__ __device__ float operator()(float x) const { return 2.0f * x + 1.0f; }
};
struct small_ints {
  __host__ __device__ float operator()(int i) const { return static_cast<float>(i % 7) - 3.0f; }
};

// The device list of benchmark argument a: 1, 2 or 4 entries on device 0, or
// (a == 0) every visible device.
dpar::multi_gpu_policy policy_of(std::int64_t a) {
  if (a == 0) return dpar::multi_gpu_all();
  return dpar::multi_gpu(std::vector<int>(static_cast<std::size_t>(a), 0));
}

struct gpu_data {
  dpar::device_vector<float> in{n}, out{n};
  gpu_data() {
    dpar::transform(dpar::gpu, thrust::counting_iterator<int>(0), thrust::counting_iterator<int>(static_cast<int>(n)),
                    in.begin(), small_ints{});
    dpar::gpu.synchronize();
  }
};

struct sharded_data {
  dpar::multi_gpu_policy p;
  dpar::sharded_vector<float> in, out;
  explicit sharded_data(std::int64_t a) : p(policy_of(a)), in(p, n), out(p, n) {
    for (std::size_t i = 0; i < in.shard_count(); ++i) {
      const auto& s = in.shard_at(i);
      auto first = thrust::counting_iterator<int>(static_cast<int>(s.offset));
      dpar::transform(p.entry(i), first, first + static_cast<std::ptrdiff_t>(s.size), s.begin(), small_ints{});
    }
    p.synchronize();
  }
};

void bytes(benchmark::State& state, std::size_t per_call) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * per_call));
}

void reduce_gpu(benchmark::State& state) {
  gpu_data d;
  for (auto _ : state) benchmark::DoNotOptimize(dpar::reduce(dpar::gpu, d.in, 0.0f));
  bytes(state, 4 * n);
}
void reduce_multi(benchmark::State& state) {
  sharded_data d(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(dpar::reduce(d.p, d.in, 0.0f));
  bytes(state, 4 * n);
}
void scan_gpu(benchmark::State& state) {
  gpu_data d;
  for (auto _ : state) {
    dpar::inclusive_scan(dpar::gpu, d.in, d.out.begin());
    dpar::gpu.synchronize();
  }
  bytes(state, 8 * n);
}
void scan_multi(benchmark::State& state) {
  sharded_data d(state.range(0));
  for (auto _ : state) {
    dpar::inclusive_scan(d.p, d.in, d.out);
    d.p.synchronize();
  }
  bytes(state, 8 * n);
}
void transform_gpu(benchmark::State& state) {
  gpu_data d;
  for (auto _ : state) {
    dpar::transform(dpar::gpu, d.in, d.out.begin(), axpb{});
    dpar::gpu.synchronize();
  }
  bytes(state, 8 * n);
}
void transform_multi(benchmark::State& state) {
  sharded_data d(state.range(0));
  for (auto _ : state) {
    dpar::transform(d.p, d.in, d.out, axpb{});
    d.p.synchronize();
  }
  bytes(state, 8 * n);
}

// all_reduce of K buffers of state.range(1) bytes (floats, sum): in entry
// order (the staged path), or in NCCL's order on distinct devices (the opt-in).
template <bool NcclOrder>
void all_reduce(benchmark::State& state) {
  auto p = NcclOrder ? policy_of(state.range(0)).with_nccl_order() : policy_of(state.range(0));
  const std::size_t count = static_cast<std::size_t>(state.range(1)) / sizeof(float);
  std::vector<dpar::device_vector<float>> buffers;
  for (std::size_t r = 0; r < p.size(); ++r) buffers.emplace_back(count, p.device(r));
  for (auto _ : state) dpar::all_reduce(p, buffers, std::plus<>{});
  const double k = static_cast<double>(p.size());
  const double b = static_cast<double>(count * sizeof(float));
  state.counters["algBW"] =
      benchmark::Counter(b * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["busBW"] =
      benchmark::Counter(b * static_cast<double>(state.iterations()) * 2 * (k - 1) / k, benchmark::Counter::kIsRate);
  state.counters["K"] = k;
}

void lists(benchmark::internal::Benchmark* b) {
  for (int a : {1, 2, 4, 0}) b->Arg(a);
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}
void all_reduce_sizes(benchmark::internal::Benchmark* b) {
  for (int a : {2, 4, 0})
    for (std::int64_t s = std::int64_t{1} << 20; s <= std::int64_t{1} << 30; s *= 4) b->Args({a, s});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(reduce_gpu)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(reduce_multi)->Apply(lists);
BENCHMARK(scan_gpu)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(scan_multi)->Apply(lists);
BENCHMARK(transform_gpu)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(transform_multi)->Apply(lists);
BENCHMARK(all_reduce<false>)->Name("all_reduce_entry_order")->Apply(all_reduce_sizes);
BENCHMARK(all_reduce<true>)->Name("all_reduce_nccl_order")->Apply(all_reduce_sizes);

int main(int argc, char** argv) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("bench_multi_gpu: no CUDA device; nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) benchmark::AddCustomContext("cuda_device", prop.name);
  benchmark::AddCustomContext("cuda_devices", std::to_string(count));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
