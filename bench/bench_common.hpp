#pragma once
// Shared pieces of the CPU benchmark: the thread count every peer uses, the
// input buffers, and the registration of one (algorithm, type, implementation)
// row over the size sweep. Each peer lives in its own file and registers its
// rows from a register_*() function that main() calls when the peer was found.

#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace bench {

// The thread count of every peer: DPAR_BENCH_THREADS, else the hardware threads.
std::size_t threads();

// Largest benchmark size, elements.
inline constexpr std::size_t max_size = std::size_t{1} << 26;

// Three arrays of n elements: inputs x and y, output z. The values are chosen so
// that every sum, dot product and prefix sum is exact in float and double
// (x cycles through -1.5, -0.5, 0.5, 1.5; y through -1, 0, 1), so results can
// be checked exactly whatever the order of summation.
template <class T>
struct arrays {
  T* x;
  T* y;
  T* z;
  std::size_t n;
};
template <class T>
arrays<T> prepare(std::size_t n);

inline double x_value(std::size_t i) { return static_cast<double>(i % 4) - 1.5; }
inline double y_value(std::size_t i) { return static_cast<double>(i % 3) - 1.0; }

// Algorithms of the sweep; bytes_per_element is the minimal memory traffic.
// copy_if keeps x > 0 (returns the count); min_element returns the smallest
// x; lower_bound writes, for each x, its index in search_haystack();
// reduce_by_key sums x over runs of 4 (keys i / 4, given as a counting
// iterator and run_key_eq) into z and returns the number of runs.
enum class algo {
  transform,
  reduce,
  dot,
  inclusive_scan,
  exclusive_scan,
  read,
  copy,
  copy_if,
  min_element,
  lower_bound,
  reduce_by_key
};

// The sorted haystack of lower_bound: 64 values from -2 in steps of 1/16.
template <class T>
const T* search_haystack() {
  static const auto values = [] {
    std::array<T, 64> h{};
    for (std::size_t j = 0; j < h.size(); ++j) h[j] = T(-2) + T(j) / T(16);
    return h;
  }();
  return values.data();
}
inline constexpr std::size_t search_haystack_size = 64;

// Keys of reduce_by_key: element i has key i / 4.
struct run_key_eq {
  bool operator()(std::size_t a, std::size_t b) const { return a / 4 == b / 4; }
};

// The keys written by reduce_by_key (one per run of 4), sized for the largest run.
std::size_t* run_keys_out();
const char* name_of(algo a);
double bytes_per_element(algo a);

// A call of one implementation; returns the scalar result (0 for
// transforms and scans, which write z).
template <class T>
using call = std::function<T(const arrays<T>&)>;

// Registers "algo/type/impl/size" for the sizes of the sweep. The body runs
// call per iteration; afterwards the result is checked exactly.
template <class T>
void add(algo a, const std::string& impl, call<T> body);

// Fork-join latency of an empty parallel call, one row per peer.
void add_latency(const std::string& impl, std::function<void()> empty_call);

void register_dpar();
void register_sort();  // bench_sort.cpp: dpar::sort against std::sort, std::execution::par, tbb::parallel_sort
void register_openmp();
void register_tbb();
void register_std_par();
void register_thrust();
void register_baseline();

}  // namespace bench
