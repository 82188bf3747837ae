// oneTBB peer (parallel_for / parallel_reduce / parallel_scan over blocked_range,
// inner loops vectorized with "omp simd") and std::execution::par_unseq, which
// libstdc++ runs on oneTBB. Both obey one tbb::global_control.

#include "bench_common.hpp"

#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <tbb/parallel_scan.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <execution>
#include <functional>
#include <numeric>

namespace bench {
namespace {

using range = tbb::blocked_range<std::size_t>;

template <class T>
void add_tbb() {
  add<T>(algo::transform, "tbb", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    tbb::parallel_for(range(0, d.n), [=](const range& r) {
#pragma omp simd
      for (std::size_t i = r.begin(); i < r.end(); ++i) z[i] = x[i] * T(2) + T(1);
    });
    return T{};
  });
  add<T>(algo::reduce, "tbb", [](const arrays<T>& d) {
    const T* x = d.x;
    return tbb::parallel_reduce(
        range(0, d.n), T{},
        [=](const range& r, T sum) {
#pragma omp simd reduction(+ : sum)
          for (std::size_t i = r.begin(); i < r.end(); ++i) sum += x[i];
          return sum;
        },
        std::plus<T>());
  });
  add<T>(algo::dot, "tbb", [](const arrays<T>& d) {
    const T* x = d.x;
    const T* y = d.y;
    return tbb::parallel_reduce(
        range(0, d.n), T{},
        [=](const range& r, T sum) {
#pragma omp simd reduction(+ : sum)
          for (std::size_t i = r.begin(); i < r.end(); ++i) sum += x[i] * y[i];
          return sum;
        },
        std::plus<T>());
  });
  // parallel_scan calls the body in a pre-scan pass (only the total matters,
  // vectorized) and a final pass (writes the prefixes).
  add<T>(algo::inclusive_scan, "tbb", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    tbb::parallel_scan(
        range(0, d.n), T{},
        [=](const range& r, T sum, bool is_final) {
          if (!is_final) {
#pragma omp simd reduction(+ : sum)
            for (std::size_t i = r.begin(); i < r.end(); ++i) sum += x[i];
          } else {
            for (std::size_t i = r.begin(); i < r.end(); ++i) z[i] = sum += x[i];
          }
          return sum;
        },
        std::plus<T>());
    return T{};
  });
  add<T>(algo::exclusive_scan, "tbb", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    tbb::parallel_scan(
        range(0, d.n), T{},
        [=](const range& r, T sum, bool is_final) {
          if (!is_final) {
#pragma omp simd reduction(+ : sum)
            for (std::size_t i = r.begin(); i < r.end(); ++i) sum += x[i];
          } else {
            for (std::size_t i = r.begin(); i < r.end(); ++i) {
              z[i] = sum;
              sum += x[i];
            }
          }
          return sum;
        },
        std::plus<T>());
    return T{};
  });
  // the value only: the rows compare the search, not iterator bookkeeping
  add<T>(algo::min_element, "tbb", [](const arrays<T>& d) {
    const T* x = d.x;
    if (d.n == 0) return T{};
    return tbb::parallel_reduce(
        range(0, d.n), x[0],
        [=](const range& r, T low) {
#pragma omp simd reduction(min : low)
          for (std::size_t i = r.begin(); i < r.end(); ++i) low = std::min(low, x[i]);
          return low;
        },
        [](T a, T b) { return std::min(a, b); });
  });
  add<T>(algo::lower_bound, "tbb", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const T* h = search_haystack<T>();
    tbb::parallel_for(range(0, d.n), [=](const range& r) {
      for (std::size_t i = r.begin(); i < r.end(); ++i) z[i] = T(std::lower_bound(h, h + search_haystack_size, x[i]) - h);
    });
    return T{};
  });
}

template <class T>
void add_std_par() {
  add<T>(algo::transform, "std_par_unseq", [](const arrays<T>& d) {
    std::transform(std::execution::par_unseq, d.x, d.x + d.n, d.z, [](T v) { return v * T(2) + T(1); });
    return T{};
  });
  add<T>(algo::reduce, "std_par_unseq", [](const arrays<T>& d) { return std::reduce(std::execution::par_unseq, d.x, d.x + d.n, T{}); });
  add<T>(algo::dot, "std_par_unseq",
         [](const arrays<T>& d) { return std::transform_reduce(std::execution::par_unseq, d.x, d.x + d.n, d.y, T{}); });
  add<T>(algo::inclusive_scan, "std_par_unseq", [](const arrays<T>& d) {
    std::inclusive_scan(std::execution::par_unseq, d.x, d.x + d.n, d.z);
    return T{};
  });
  add<T>(algo::exclusive_scan, "std_par_unseq", [](const arrays<T>& d) {
    std::exclusive_scan(std::execution::par_unseq, d.x, d.x + d.n, d.z, T{});
    return T{};
  });
  add<T>(algo::copy_if, "std_par_unseq", [](const arrays<T>& d) {
    return T(std::copy_if(std::execution::par_unseq, d.x, d.x + d.n, d.z, [](T v) { return v > T(0); }) - d.z);
  });
  add<T>(algo::min_element, "std_par_unseq", [](const arrays<T>& d) {
    return d.n == 0 ? T{} : *std::min_element(std::execution::par_unseq, d.x, d.x + d.n);
  });
  add<T>(algo::lower_bound, "std_par_unseq", [](const arrays<T>& d) {
    const T* h = search_haystack<T>();
    std::transform(std::execution::par_unseq, d.x, d.x + d.n, d.z,
                   [h](T v) { return T(std::lower_bound(h, h + search_haystack_size, v) - h); });
    return T{};
  });
}

}  // namespace

void register_tbb() {
  static tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads());
  add_tbb<float>();
  add_tbb<double>();
  static tbb::task_arena two(2);
  add_latency("tbb", [] {
    two.execute([] { tbb::parallel_for(0, 2, [](int) { benchmark::ClobberMemory(); }, tbb::static_partitioner()); });
  });
}

void register_std_par() {
  add_std_par<float>();
  add_std_par<double>();
}

}  // namespace bench
