// The machine's FP32 FMA peak, to put dpar::nn's GFLOP/s in proportion:
// independent chains of vector FMAs (enough to cover the FMA latency on both
// pipes), one chain set per thread, on the widest vectors the CPU has.
// counters: GFLOPs = FP32 flops per second over all threads.
#include "fma_peak.hpp"

#include <benchmark/benchmark.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace {

constexpr long fmas_per_chain = 10'000'000;

// Inlined into each target-specific caller, so it is compiled for that ISA.
template <class V>
[[gnu::always_inline]] inline float chains(V m, V c, float seed) {
  // 12 accumulators with distinct starts, so the compiler cannot merge them.
  V a[12];
  for (int i = 0; i < 12; ++i) a[i] = V{} + (seed + float(i));
  for (long k = 0; k < fmas_per_chain; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = a[i] * m + c;  // contracted to one FMA (-ffp-contract=fast)
  V s{};
  for (int i = 0; i < 12; ++i) s += a[i];
  return s[0];
}

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));

__attribute__((target("avx512f,fma"), optimize("fp-contract=fast"))) float chains512(float seed) {
  return chains<v16>(v16{} + 0.9999f, v16{} + 1e-7f, seed);
}
__attribute__((target("avx2,fma"), optimize("fp-contract=fast"))) float chains256(float seed) {
  return chains<v8>(v8{} + 0.9999f, v8{} + 1e-7f, seed);
}

bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_fma() { return has_avx512() || __builtin_cpu_supports("fma"); }

// One run of the chains on `threads` threads; returns the FP32 flops done.
double run_chains(unsigned threads) {
  const bool wide = has_avx512();
  std::atomic<float> sink{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { sink.store(wide ? chains512(float(t)) : chains256(float(t))); });
  for (auto& t : pool) t.join();
  benchmark::DoNotOptimize(sink.load());
  return double(threads) * 12.0 * fmas_per_chain * 2 * (wide ? 16 : 8);
}

void fma_peak(benchmark::State& state) {
  if (!has_fma()) {
    state.SkipWithError("no FMA instructions on this CPU");
    return;
  }
  double flops = 0;
  for (auto _ : state) flops += run_chains(static_cast<unsigned>(state.range(0)));
  state.counters["GFLOPs"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(has_avx512() ? "AVX-512" : "AVX2");
}

}  // namespace

BENCHMARK(fma_peak)->Arg(1)->Arg(std::max(1u, std::thread::hardware_concurrency()))->UseRealTime();

double fma_peak_gflops(unsigned threads) {
  static std::mutex lock;
  static std::map<unsigned, double> measured;
  std::lock_guard<std::mutex> hold(lock);
  if (auto it = measured.find(threads); it != measured.end()) return it->second;
  double best = 0;
  for (int run = 0; has_fma() && run < 3; ++run) {
    const auto start = std::chrono::steady_clock::now();
    const double flops = run_chains(threads);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    best = std::max(best, flops / took.count() / 1e9);
  }
  return measured[threads] = best;
}
