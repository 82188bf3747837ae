// CPU all-reduce bandwidth: dpar::all_reduce over K float buffers on dpar::par
// (K-buffer form) and dpar::communicator (SPMD form, one thread per replica),
// against a memcpy of the same bytes.
//
// Counters (Google Benchmark divides "rate" counters by the run time):
//   busBW  = S * 2(K-1)/K per second (S = bytes per buffer), the NCCL convention
//   memBW  = bytes the all-reduce must move at least, 2*K*S (read every buffer,
//            write every buffer), per second; compare it with memcpy's bytes_per_second
//            (S read + S written counted as S, so compare with 2x memcpy's figure, or
//            use BM_memcpy's memBW counter, which counts 2*S).
#include <dpar/dpar.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace {

void set_counters(benchmark::State& state, double bytes_per_buffer, double k) {
  state.counters["busBW"] =
      benchmark::Counter(bytes_per_buffer * 2.0 * (k - 1) / k, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1024);
  state.counters["memBW"] = benchmark::Counter(2.0 * k * bytes_per_buffer, benchmark::Counter::kIsIterationInvariantRate,
                                               benchmark::Counter::kIs1024);
}

// memcpy of S bytes: the copy bandwidth the all-reduce is measured against.
void BM_memcpy(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<char> from(bytes, 1), to(bytes, 0);
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), bytes);
    benchmark::DoNotOptimize(to.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
  state.counters["memBW"] = benchmark::Counter(2.0 * static_cast<double>(bytes),
                                               benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
}

// memcpy of the same total bytes as the all-reduce must move (K buffers read and written).
void BM_memcpy_k_buffers(benchmark::State& state) {
  const auto k = static_cast<std::size_t>(state.range(0));
  const auto bytes = static_cast<std::size_t>(state.range(1));
  std::vector<std::vector<char>> from(k, std::vector<char>(bytes, 1)), to(k, std::vector<char>(bytes, 0));
  for (auto _ : state) {
    dpar::thread_pool::global().run([&](std::size_t t, std::size_t threads) {
      // each thread copies its share of every buffer, as the all-reduce workers do
      std::size_t lo = bytes * t / threads, hi = bytes * (t + 1) / threads;
      for (std::size_t r = 0; r < k; ++r) std::memcpy(to[r].data() + lo, from[r].data() + lo, hi - lo);
    });
    benchmark::ClobberMemory();
  }
  set_counters(state, static_cast<double>(bytes), static_cast<double>(k));
}

void BM_all_reduce(benchmark::State& state) {
  const auto k = static_cast<std::size_t>(state.range(0));
  const auto bytes = static_cast<std::size_t>(state.range(1));
  std::vector<std::vector<float>> buffers(k, std::vector<float>(bytes / sizeof(float), 0.0f));
  for (auto _ : state) {
    dpar::all_reduce(dpar::par, buffers);
    benchmark::ClobberMemory();
  }
  set_counters(state, static_cast<double>(bytes), static_cast<double>(k));
}

// all_reduce_mean of K buffers of random floats, default against
// dpar::deterministic (correctly rounded sums). The mean keeps the values
// bounded over the iterations (after the first, the K buffers are equal).
template <bool Deterministic>
void BM_all_reduce_mean(benchmark::State& state) {
  const auto k = static_cast<std::size_t>(state.range(0));
  const auto bytes = static_cast<std::size_t>(state.range(1));
  std::vector<std::vector<float>> buffers(k, std::vector<float>(bytes / sizeof(float)));
  std::uint32_t seed = 12345;
  for (auto& b : buffers)
    for (auto& x : b) x = static_cast<float>((seed = seed * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
  for (auto _ : state) {
    if constexpr (Deterministic)
      dpar::all_reduce_mean(dpar::deterministic(dpar::par), buffers);
    else
      dpar::all_reduce_mean(dpar::par, buffers);
    benchmark::ClobberMemory();
  }
  set_counters(state, static_cast<double>(bytes), static_cast<double>(k));
}

// SPMD form: K replicas on a pool of K threads, each calling comm.all_reduce.
void BM_communicator_all_reduce(benchmark::State& state) {
  const auto k = static_cast<std::size_t>(state.range(0));
  const auto bytes = static_cast<std::size_t>(state.range(1));
  std::vector<std::vector<float>> buffers(k, std::vector<float>(bytes / sizeof(float), 0.0f));
  dpar::thread_pool pool(k);
  dpar::communicator comm(k);
  const auto rounds = 16;  // per pool job, so fork/join does not dominate small sizes
  for (auto _ : state) {
    comm.run(pool, [&](std::size_t rank, std::size_t) {
      for (int i = 0; i < rounds; ++i) comm.all_reduce(rank, std::span<float>(buffers[rank]));
    });
    benchmark::ClobberMemory();
  }
  state.counters["busBW"] = benchmark::Counter(rounds * static_cast<double>(bytes) * 2.0 * (k - 1) / k,
                                               benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
  state.counters["latency_us"] =
      benchmark::Counter(rounds / 1e6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

constexpr std::int64_t KB = 1024, MB = 1024 * KB;

void sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t k : {2, 4, 8})
    for (std::int64_t bytes : {1 * KB, 64 * KB, 1 * MB, 16 * MB, 64 * MB, 256 * MB}) b->Args({k, bytes});
}

}  // namespace

BENCHMARK(BM_memcpy)->Arg(1 * KB)->Arg(64 * KB)->Arg(1 * MB)->Arg(16 * MB)->Arg(64 * MB)->Arg(256 * MB)->UseRealTime();
BENCHMARK(BM_memcpy_k_buffers)->Apply(sizes)->UseRealTime();
BENCHMARK(BM_all_reduce)->Apply(sizes)->UseRealTime();
BENCHMARK_TEMPLATE(BM_all_reduce_mean, false)->Args({2, 8 * MB})->Args({4, 8 * MB})->UseRealTime()->Name("BM_all_reduce_mean/default");
BENCHMARK_TEMPLATE(BM_all_reduce_mean, true)->Args({2, 8 * MB})->Args({4, 8 * MB})->UseRealTime()->Name("BM_all_reduce_mean/deterministic");
BENCHMARK(BM_communicator_all_reduce)->Args({2, 1 * KB})->Args({2, 1 * MB})->Args({2, 16 * MB})->Args({4, 1 * KB})
    ->Args({4, 16 * MB})->UseRealTime();

BENCHMARK_MAIN();
