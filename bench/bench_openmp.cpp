// OpenMP peer ("parallel for simd" with reduction and inscan reductions, as
// the OpenMP 5 specification writes them) and the memory-bandwidth baseline.

#include "bench_common.hpp"

#include <dpar/partition.hpp>

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bench {
namespace {

template <class T>
void add_openmp() {
  add<T>(algo::transform, "openmp", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
#pragma omp parallel for simd schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) z[i] = x[i] * T(2) + T(1);
    return T{};
  });
  add<T>(algo::reduce, "openmp", [](const arrays<T>& d) {
    const T* x = d.x;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
    T sum{};
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (std::ptrdiff_t i = 0; i < n; ++i) sum += x[i];
    return sum;
  });
  add<T>(algo::dot, "openmp", [](const arrays<T>& d) {
    const T* x = d.x;
    const T* y = d.y;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
    T sum{};
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (std::ptrdiff_t i = 0; i < n; ++i) sum += x[i] * y[i];
    return sum;
  });
  add<T>(algo::inclusive_scan, "openmp", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
    T sum{};
#pragma omp parallel for simd reduction(inscan, + : sum)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      sum += x[i];
#pragma omp scan inclusive(sum)
      z[i] = sum;
    }
    return T{};
  });
  add<T>(algo::exclusive_scan, "openmp", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
    T sum{};
#pragma omp parallel for simd reduction(inscan, + : sum)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      z[i] = sum;
#pragma omp scan exclusive(sum)
      sum += x[i];
    }
    return T{};
  });
  add<T>(algo::min_element, "openmp", [](const arrays<T>& d) {
    const T* x = d.x;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
    if (n == 0) return T{};
    T low = x[0];
#pragma omp parallel for simd reduction(min : low) schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) low = x[i] < low ? x[i] : low;
    return low;
  });
  add<T>(algo::lower_bound, "openmp", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const T* h = search_haystack<T>();
    const auto n = static_cast<std::ptrdiff_t>(d.n);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) z[i] = T(std::lower_bound(h, h + search_haystack_size, x[i]) - h);
    return T{};
  });
}

// The calling OpenMP thread's piece [lo, hi) of [0, n): dpar's even split
// over the team, as dpar's own thread backend splits its blocks.
struct piece {
  std::ptrdiff_t lo, hi;
};
piece thread_piece(std::ptrdiff_t n) {
  const dpar::index_range r = dpar::even_split(static_cast<std::size_t>(n), static_cast<std::size_t>(omp_get_num_threads()),
                                               static_cast<std::size_t>(omp_get_thread_num()));
  return {static_cast<std::ptrdiff_t>(r.begin), static_cast<std::ptrdiff_t>(r.end)};
}

// The physical limit: one static block per thread, a plain vectorized sum
// (read bandwidth) and memcpy (copy bandwidth), nothing else.
template <class T>
void add_baseline() {
  add<T>(algo::read, "baseline", [](const arrays<T>& d) {
    const T* x = d.x;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
    T sum{};
#pragma omp parallel reduction(+ : sum)
    {
      const auto [lo, hi] = thread_piece(n);
      T local{};
#pragma omp simd reduction(+ : local)
      for (std::ptrdiff_t i = lo; i < hi; ++i) local += x[i];
      sum += local;
    }
    return sum;
  });
  add<T>(algo::copy, "baseline", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
#pragma omp parallel
    {
      const auto [lo, hi] = thread_piece(n);
      std::memcpy(z + lo, x + lo, static_cast<std::size_t>(hi - lo) * sizeof(T));
    }
    return T{};
  });
  // transform's limit: one static half per thread, the same element function,
  // with plain stores ("baseline_static") and with non-temporal stores
  // ("baseline_stream", which skip reading the output's lines into cache).
  add<T>(algo::transform, "baseline_static", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
#pragma omp parallel
    {
      const auto [lo, hi] = thread_piece(n);
#pragma omp simd
      for (std::ptrdiff_t i = lo; i < hi; ++i) z[i] = x[i] * T(2) + T(1);
    }
    return T{};
  });
#if defined(__AVX__)
  add<T>(algo::transform, "baseline_stream", [](const arrays<T>& d) {
    const T* x = d.x;
    T* z = d.z;
    const auto n = static_cast<std::ptrdiff_t>(d.n);
    constexpr std::ptrdiff_t lanes = 32 / sizeof(T);
#pragma omp parallel
    {
      auto [lo, hi] = thread_piece(n);
      for (; lo < hi && reinterpret_cast<std::uintptr_t>(z + lo) % 32; ++lo) z[lo] = x[lo] * T(2) + T(1);
      for (; lo + lanes <= hi; lo += lanes) {
        if constexpr (sizeof(T) == 4) {
          __m256 v = _mm256_loadu_ps(x + lo);
          _mm256_stream_ps(z + lo, _mm256_add_ps(_mm256_add_ps(v, v), _mm256_set1_ps(1)));
        } else {
          __m256d v = _mm256_loadu_pd(x + lo);
          _mm256_stream_pd(z + lo, _mm256_add_pd(_mm256_add_pd(v, v), _mm256_set1_pd(1)));
        }
      }
      for (; lo < hi; ++lo) z[lo] = x[lo] * T(2) + T(1);
      _mm_sfence();
    }
    return T{};
  });
#endif
}

}  // namespace

void register_openmp() {
  omp_set_num_threads(static_cast<int>(threads()));
  add_openmp<float>();
  add_openmp<double>();
  add_latency("openmp", [] {
#pragma omp parallel num_threads(2)
    { benchmark::ClobberMemory(); }
  });
}

void register_baseline() {
  add_baseline<float>();
  add_baseline<double>();
}

}  // namespace bench
