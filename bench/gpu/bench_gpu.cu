// dpar::gpu against raw CUB and thrust (thrust::device) on float, 2^20 to 2^28
// elements: reduce, inclusive_scan and transform; a device-to-device copy is
// the bandwidth baseline. Times are CUDA-event times of one call each
// (UseManualTime); bytes are bytes read + written. A reduce returns its value
// to the host in all three (the copy back is part of the call), so raw CUB's
// reduce includes the cudaMemcpy of its result too. Raw CUB gets its temporary
// storage allocated once, outside the timed loop.
#include <dpar/cuda.hpp>

#include <benchmark/benchmark.h>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_transform.cuh>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/transform.h>

#include <cstdio>
#include <cstdlib>
#include <functional>

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_gpu: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

struct axpb {
  __host__ __device__ float operator()(float x) const { return 2.0f * x + 1.0f; }
};

// Inputs shared by all benchmarks of one size (allocated once per size).
struct buffers {
  std::size_t n = 0;
  dpar::device_vector<float> in, out;
  void resize(std::size_t size) {
    if (n == size) return;
    in = dpar::device_vector<float>();
    out = dpar::device_vector<float>();
    in = dpar::device_vector<float>(size);
    out = dpar::device_vector<float>(size);
    dpar::transform(dpar::gpu, thrust::counting_iterator<int>(0), thrust::counting_iterator<int>(static_cast<int>(size)),
                    in.begin(), [] __host__ __device__(int i) { return static_cast<float>(i % 7) - 3.0f; });
    check(cudaDeviceSynchronize(), "init");
    n = size;
  }
};
buffers& data(std::size_t n) {
  static buffers b;
  b.resize(n);
  return b;
}

// Times each call with CUDA events on the default stream.
template <class F>
void timed(benchmark::State& state, std::size_t bytes, F&& call) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  call();  // warm-up: caches, allocator, lazy module loading
  check(cudaDeviceSynchronize(), "warm-up");
  for (auto _ : state) {
    check(cudaEventRecord(start), "cudaEventRecord");
    call();
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms / 1e3);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

void copy_baseline(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  timed(state, 2 * d.n * sizeof(float), [&] {
    check(cudaMemcpyAsync(d.out.data(), d.in.data(), d.n * sizeof(float), cudaMemcpyDeviceToDevice), "copy");
  });
}

// ---- reduce ----
void reduce_dpar(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  float r = 0;
  timed(state, d.n * sizeof(float), [&] { r = dpar::reduce(dpar::gpu, d.in, 0.0f); });
  benchmark::DoNotOptimize(r);
}
void reduce_cub(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  int n = static_cast<int>(d.n);
  std::size_t bytes = 0;
  check(cub::DeviceReduce::Reduce(nullptr, bytes, d.in.data(), d.out.data(), n, std::plus<>{}, 0.0f), "query");
  thrust::device_vector<char> temp(bytes);
  float r = 0;
  timed(state, d.n * sizeof(float), [&] {
    check(cub::DeviceReduce::Reduce(thrust::raw_pointer_cast(temp.data()), bytes, d.in.data(), d.out.data(), n,
                                    std::plus<>{}, 0.0f),
          "cub reduce");
    check(cudaMemcpy(&r, d.out.data(), sizeof(float), cudaMemcpyDeviceToHost), "result");
  });
  benchmark::DoNotOptimize(r);
}
void reduce_thrust(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  float r = 0;
  timed(state, d.n * sizeof(float),
        [&] { r = thrust::reduce(thrust::device, d.in.begin(), d.in.end(), 0.0f, std::plus<float>{}); });
  benchmark::DoNotOptimize(r);
}

// ---- inclusive_scan ----
void scan_dpar(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  timed(state, 2 * d.n * sizeof(float), [&] { dpar::inclusive_scan(dpar::gpu, d.in, d.out.begin()); });
}
void scan_cub(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  int n = static_cast<int>(d.n);
  std::size_t bytes = 0;
  check(cub::DeviceScan::InclusiveScan(nullptr, bytes, d.in.data(), d.out.data(), std::plus<>{}, n), "query");
  thrust::device_vector<char> temp(bytes);
  timed(state, 2 * d.n * sizeof(float), [&] {
    check(cub::DeviceScan::InclusiveScan(thrust::raw_pointer_cast(temp.data()), bytes, d.in.data(), d.out.data(),
                                         std::plus<>{}, n),
          "cub scan");
  });
}
void scan_thrust(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  timed(state, 2 * d.n * sizeof(float),
        [&] { thrust::inclusive_scan(thrust::device, d.in.begin(), d.in.end(), d.out.begin()); });
}

// ---- transform ----
void transform_dpar(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  timed(state, 2 * d.n * sizeof(float), [&] { dpar::transform(dpar::gpu, d.in, d.out.begin(), axpb{}); });
}
void transform_cub(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  int n = static_cast<int>(d.n);
  timed(state, 2 * d.n * sizeof(float), [&] {
    check(cub::DeviceTransform::Transform(d.in.data(), d.out.data(), n, axpb{}), "cub transform");
  });
}
void transform_thrust(benchmark::State& state) {
  auto& d = data(static_cast<std::size_t>(state.range(0)));
  timed(state, 2 * d.n * sizeof(float),
        [&] { thrust::transform(thrust::device, d.in.begin(), d.in.end(), d.out.begin(), axpb{}); });
}

void sizes(benchmark::internal::Benchmark* b) {
  b->RangeMultiplier(4)->Range(1 << 20, 1 << 28)->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(copy_baseline)->Apply(sizes);
BENCHMARK(reduce_dpar)->Apply(sizes);
BENCHMARK(reduce_cub)->Apply(sizes);
BENCHMARK(reduce_thrust)->Apply(sizes);
BENCHMARK(scan_dpar)->Apply(sizes);
BENCHMARK(scan_cub)->Apply(sizes);
BENCHMARK(scan_thrust)->Apply(sizes);
BENCHMARK(transform_dpar)->Apply(sizes);
BENCHMARK(transform_cub)->Apply(sizes);
BENCHMARK(transform_thrust)->Apply(sizes);

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "bench_gpu: no CUDA device; run it on a GPU machine\n");
    return 1;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  benchmark::AddCustomContext("cuda_device", prop.name);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
