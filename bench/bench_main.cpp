// CPU benchmark driver: thread count, buffers, registration, result checks.
// Run it as bench/compare describes; every peer gets the same thread count.

#include "bench_common.hpp"
#include "environment.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <dpar/thread_pool.hpp>

namespace bench {

std::size_t threads() {
  static const std::size_t count = [] {
    if (const char* env = std::getenv("DPAR_BENCH_THREADS"))
      return dpar::detail::parse_thread_count(env, "DPAR_BENCH_THREADS");
    unsigned hw = std::thread::hardware_concurrency();
    return std::size_t{hw == 0 ? 1u : hw};
  }();
  return count;
}

namespace {

// Page-aligned buffers of max_size elements, one set per element type, filled
// once: the inputs x and y are never written, so rows share them.
template <class T>
T* buffer(int which) {
  static T* buffers[3] = {};
  if (!buffers[which]) {
    std::size_t bytes = max_size * sizeof(T);
    auto* p = static_cast<T*>(std::aligned_alloc(4096, bytes));
    if (!p) throw std::bad_alloc();
    for (std::size_t i = 0; i < max_size; ++i) p[i] = static_cast<T>(which == 0 ? x_value(i) : which == 1 ? y_value(i) : -7);
    buffers[which] = p;
  }
  return buffers[which];
}

const std::vector<std::size_t>& sweep() {
  static const std::vector<std::size_t> sizes = [] {
    std::vector<std::size_t> s;
    for (int log = 10; log <= 26; log += 2) {
      s.push_back(std::size_t{1} << log);
      if (log == 24) s.push_back(std::size_t{1} << 25);  // the reduce bandwidth target is stated at 2^25
    }
    return s;
  }();
  return sizes;
}

template <class T>
const char* type_name() {
  return sizeof(T) == 4 ? "float" : "double";
}

// The positions of z that are poisoned before and checked after a run: all of
// them up to 2^16 elements, else a stride through the array plus both ends,
// which keeps the sweep's set-up time small next to the timed calls.
std::vector<std::size_t> probes(std::size_t n) {
  std::vector<std::size_t> at;
  if (n <= (std::size_t{1} << 16)) {
    for (std::size_t i = 0; i < n; ++i) at.push_back(i);
    return at;
  }
  for (std::size_t i = 0; i < 256; ++i) at.push_back(i);
  for (std::size_t i = 256; i < n - 256; i += 4099) at.push_back(i);
  for (std::size_t i = n - 256; i < n; ++i) at.push_back(i);
  return at;
}

// prefix(i) = x_value(0) + ... + x_value(i), exactly: x cycles with period 4 and sum 0.
double prefix(std::size_t i) {
  static const double within[4] = {-1.5, -2.0, -1.5, 0.0};
  return within[i % 4];
}

// Exact check of the result of one call (see arrays in bench_common.hpp).
template <class T>
std::string check(algo a, const arrays<T>& d, T result) {
  auto fail = [&](const char* what, std::size_t i) {
    return std::string(name_of(a)) + ": wrong " + what + " at " + std::to_string(i) + " of " + std::to_string(d.n);
  };
  switch (a) {
    case algo::reduce:
    case algo::read:
      return static_cast<double>(result) == (d.n == 0 ? 0.0 : prefix(d.n - 1)) ? "" : fail("sum", d.n);
    case algo::dot: {
      double sum = 0;  // x*y has period 12 and sums to 0 over a period
      for (std::size_t i = d.n / 12 * 12; i < d.n; ++i) sum += x_value(i) * y_value(i);
      return static_cast<double>(result) == sum ? "" : fail("dot product", d.n);
    }
    case algo::transform:
      for (std::size_t i : probes(d.n))
        if (static_cast<double>(d.z[i]) != 2 * x_value(i) + 1) return fail("element", i);
      return "";
    case algo::copy:
      for (std::size_t i : probes(d.n))
        if (static_cast<double>(d.z[i]) != x_value(i)) return fail("element", i);
      return "";
    case algo::inclusive_scan:
    case algo::exclusive_scan:
      for (std::size_t i : probes(d.n)) {
        double want = a == algo::inclusive_scan ? prefix(i) : (i == 0 ? 0.0 : prefix(i - 1));
        if (static_cast<double>(d.z[i]) != want) return fail("prefix", i);
      }
      return "";
    case algo::copy_if: {  // x > 0 for i % 4 in {2, 3}: 0.5, 1.5, 0.5, ...
      const std::size_t kept = d.n / 4 * 2 + (d.n % 4 > 2 ? d.n % 4 - 2 : 0);
      if (static_cast<double>(result) != static_cast<double>(kept)) return fail("count", d.n);
      for (std::size_t k : probes(kept))
        if (static_cast<double>(d.z[k]) != (k % 2 ? 1.5 : 0.5)) return fail("element", k);
      return "";
    }
    case algo::min_element:
      return static_cast<double>(result) == (d.n == 0 ? 0.0 : -1.5) ? "" : fail("minimum", d.n);
    case algo::lower_bound: {
      const T* h = search_haystack<T>();
      for (std::size_t i : probes(d.n)) {
        auto want = std::lower_bound(h, h + search_haystack_size, T(x_value(i))) - h;
        if (static_cast<double>(d.z[i]) != static_cast<double>(want)) return fail("index", i);
      }
      return "";
    }
    case algo::reduce_by_key: {  // full runs of 4 sum to 0; a last partial run to prefix(n % 4 - 1)
      const std::size_t runs = (d.n + 3) / 4;
      if (static_cast<double>(result) != static_cast<double>(runs)) return fail("run count", d.n);
      for (std::size_t k : probes(runs)) {
        double want = k + 1 == runs && d.n % 4 ? prefix(d.n % 4 - 1) : 0.0;
        if (static_cast<double>(d.z[k]) != want || run_keys_out()[k] != 4 * k) return fail("run", k);
      }
      return "";
    }
  }
  return "unknown algorithm";
}

}  // namespace

std::size_t* run_keys_out() {
  static std::vector<std::size_t> keys(max_size / 4 + 1);
  return keys.data();
}

template <class T>
arrays<T> prepare(std::size_t n) {
  arrays<T> d{buffer<T>(0), buffer<T>(1), buffer<T>(2), n};
  run_keys_out();  // allocated (and zeroed) here, before any timed call
  for (std::size_t i : probes(n)) d.z[i] = T(-7);  // so that an output left unwritten fails the check
  return d;
}

const char* name_of(algo a) {
  switch (a) {
    case algo::transform: return "transform";
    case algo::reduce: return "reduce";
    case algo::dot: return "transform_reduce";
    case algo::inclusive_scan: return "inclusive_scan";
    case algo::exclusive_scan: return "exclusive_scan";
    case algo::read: return "baseline_read";
    case algo::copy: return "baseline_copy";
    case algo::copy_if: return "copy_if";
    case algo::min_element: return "min_element";
    case algo::lower_bound: return "lower_bound";
    case algo::reduce_by_key: return "reduce_by_key";
  }
  return "?";
}

double bytes_per_element(algo a) {
  switch (a) {
    case algo::reduce:
    case algo::read:
    case algo::min_element: return 1;
    case algo::copy_if: return 1.5;        // read all, write half
    case algo::reduce_by_key: return 1.25;  // read all, write a quarter
    default: return 2;  // two inputs, or one input and one output
  }
}

template <class T>
void add(algo a, const std::string& impl, call<T> body) {
  std::string name = std::string(name_of(a)) + "/" + type_name<T>() + "/" + impl;
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [a, body](benchmark::State& state) {
    auto n = static_cast<std::size_t>(state.range(0));
    arrays<T> d = prepare<T>(n);
    T result{};
    for (auto _ : state) {
      result = body(d);
      benchmark::DoNotOptimize(result);
      benchmark::ClobberMemory();
    }
    std::string error = check(a, d, result);
    if (!error.empty()) state.SkipWithError(error.c_str());
    state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * n *
                                                      bytes_per_element(a) * sizeof(T)));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
  });
  for (std::size_t n : sweep()) b->Arg(static_cast<std::int64_t>(n));
  b->UseRealTime();
  // On a shared machine the fastest repetition is the one least disturbed by others.
  b->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
}

template void add<float>(algo, const std::string&, call<float>);
template void add<double>(algo, const std::string&, call<double>);

void add_latency(const std::string& impl, std::function<void()> empty_call) {
  benchmark::RegisterBenchmark(("forkjoin/empty/" + impl).c_str(), [empty_call](benchmark::State& state) {
    for (auto _ : state) empty_call();
  })->UseRealTime()->ComputeStatistics("min", [](const std::vector<double>& v) {
    return *std::min_element(v.begin(), v.end());
  });
}

}  // namespace bench

// The environment must be right before the OpenMP runtime starts, so if it is
// not, main sets it and runs the program again: every peer on the same thread
// count, and OpenMP's idle threads sleeping instead of spinning on the cores the
// other peers need (OMP_WAIT_POLICY=passive unless the caller chose otherwise).
static void settle_environment(char** argv) {
  const std::string n = std::to_string(bench::threads());
  bench::environment_settler env;
  env.want("DPAR_NUM_THREADS", n, true);
  env.want("OMP_NUM_THREADS", n, true);
  env.want("OMP_WAIT_POLICY", "passive", false);
  env.settle(argv);
}

int main(int argc, char** argv) {
  settle_environment(argv);
  bench::register_dpar();
  bench::register_sort();
#ifdef DPAR_BENCH_HAVE_OPENMP
  bench::register_baseline();
  bench::register_openmp();
#endif
#ifdef DPAR_BENCH_HAVE_TBB
  bench::register_tbb();
  bench::register_std_par();
#endif
#ifdef DPAR_BENCH_HAVE_THRUST
  bench::register_thrust();
#endif
  benchmark::AddCustomContext("threads", std::to_string(bench::threads()));
  benchmark::AddCustomContext("OMP_WAIT_POLICY", std::getenv("OMP_WAIT_POLICY"));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
