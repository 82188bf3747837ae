// dpar::par (the global pool, DPAR_NUM_THREADS = the bench thread count), dpar::seq,
// and dpar::deterministic(dpar::par).

#include "bench_common.hpp"

#include <dpar/dpar.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace bench {
namespace {

template <class T, class Policy>
void add_all(const std::string& impl, Policy policy) {
  add<T>(algo::transform, impl, [policy](const arrays<T>& d) {
    dpar::transform(policy, d.x, d.x + d.n, d.z, [](T v) { return v * T(2) + T(1); });
    return T{};
  });
  add<T>(algo::reduce, impl, [policy](const arrays<T>& d) { return dpar::reduce(policy, d.x, d.x + d.n, T{}); });
  add<T>(algo::dot, impl,
         [policy](const arrays<T>& d) { return dpar::transform_reduce(policy, d.x, d.x + d.n, d.y, T{}); });
  add<T>(algo::inclusive_scan, impl, [policy](const arrays<T>& d) {
    dpar::inclusive_scan(policy, d.x, d.x + d.n, d.z);
    return T{};
  });
  add<T>(algo::exclusive_scan, impl, [policy](const arrays<T>& d) {
    dpar::exclusive_scan(policy, d.x, d.x + d.n, d.z, T{});
    return T{};
  });
  add<T>(algo::copy_if, impl, [policy](const arrays<T>& d) {
    return T(dpar::copy_if(policy, d.x, d.x + d.n, d.z, [](T v) { return v > T(0); }) - d.z);
  });
  add<T>(algo::min_element, impl, [policy](const arrays<T>& d) {
    return d.n == 0 ? T{} : *dpar::min_element(policy, d.x, d.x + d.n);
  });
  add<T>(algo::lower_bound, impl, [policy](const arrays<T>& d) {
    const T* h = search_haystack<T>();
    dpar::lower_bound(policy, h, h + search_haystack_size, d.x, d.x + d.n, d.z);
    return T{};
  });
  add<T>(algo::reduce_by_key, impl, [policy](const arrays<T>& d) {
    dpar::counting_iterator<std::size_t> keys(0);
    auto ends = dpar::reduce_by_key(policy, keys, keys + static_cast<std::ptrdiff_t>(d.n), d.x, run_keys_out(), d.z,
                                    run_key_eq{});
    return T(ends.second - d.z);
  });
}

// 64 elements of about 2 ms each: by count a single block, by cost work
// for every thread (issue 19). The row pair dpar_par / dpar_seq is the speed-up.
void busy_for_2ms() {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
  while (std::chrono::steady_clock::now() < until) {
  }
}

template <class Policy>
void add_heavy(const std::string& impl, Policy policy) {
  benchmark::RegisterBenchmark(("heavy_elements/64x2ms/" + impl).c_str(), [policy](benchmark::State& state) {
    std::vector<double> in(64, 1.0), out(64);
    for (auto _ : state) {
      dpar::transform(policy, in.begin(), in.end(), out.begin(), [](double v) {
        busy_for_2ms();
        return v + 1;
      });
      benchmark::ClobberMemory();
    }
    if (out != std::vector<double>(64, 2.0)) state.SkipWithError("heavy_elements: wrong result");
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

// dpar's own pool and kernels cut into one static half per thread (pool.run):
// tells the scheduling (blocks claimed from a counter) apart from the kernels.
template <class T>
void add_static_pool(dpar::thread_pool& pool) {
  auto halves = [&pool](std::size_t n, auto&& body) {
    pool.run([&](std::size_t t, std::size_t threads) {
      body(t, dpar::even_split_begin(n, threads, t), dpar::even_split_begin(n, threads, t + 1));
    });
  };
  add<T>(algo::reduce, "baseline_static_pool", [halves](const arrays<T>& d) {
    T part[64] = {};
    std::plus<> op;
    auto elem = [&](std::size_t i) { return d.x[i]; };
    halves(d.n, [&](std::size_t t, std::size_t lo, std::size_t hi) { part[t] = dpar::detail::fold(T{}, lo, hi, op, elem); });
    return part[0] + part[1];
  });
  add<T>(algo::dot, "baseline_static_pool", [halves](const arrays<T>& d) {
    T part[64] = {};
    std::plus<> op;
    auto elem = [&](std::size_t i) { return d.x[i] * d.y[i]; };
    halves(d.n, [&](std::size_t t, std::size_t lo, std::size_t hi) { part[t] = dpar::detail::fold(T{}, lo, hi, op, elem); });
    return part[0] + part[1];
  });
  add<T>(algo::transform, "baseline_static_pool", [halves](const arrays<T>& d) {
    auto f = [](T v) { return v * T(2) + T(1); };
    halves(d.n, [&](std::size_t, std::size_t lo, std::size_t hi) { dpar::detail::transform_range(d.x, d.z, lo, hi, f); });
    return T{};
  });
}

}  // namespace

void register_dpar() {
  add_all<float>("dpar_par", dpar::par);
  add_all<double>("dpar_par", dpar::par);
  add_all<float>("dpar_seq", dpar::seq);
  add_all<double>("dpar_seq", dpar::seq);
  // Reproducible mode: correctly rounded sums, fixed-order scans (issue 11).
  add_all<float>("dpar_deterministic", dpar::deterministic(dpar::par));
  add_all<double>("dpar_deterministic", dpar::deterministic(dpar::par));
  add_static_pool<float>(dpar::thread_pool::global());
  add_static_pool<double>(dpar::thread_pool::global());
  add_heavy("dpar_par", dpar::par);
  add_heavy("dpar_seq", dpar::seq);
  static dpar::thread_pool two(2);
  add_latency("dpar", [] { two.run([](std::size_t, std::size_t) {}); });
}

}  // namespace bench
