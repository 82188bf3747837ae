// Sort rows of bench_cpu: "sort/TYPE/IMPL/n" for int32, uint64, float, double
// and a 16-byte record ordered by its first 8 bytes (a user comparator: dpar's
// merge path), over random keys. Peers: std::sort (one thread), and where
// oneTBB is found std::sort(std::execution::par) (libstdc++ on oneTBB) and
// tbb::parallel_sort, in an arena of the bench's thread count. Each
// iteration sorts a fresh copy of the input; the copy is not timed.

#include "bench_common.hpp"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <dpar/dpar.hpp>

#ifdef DPAR_BENCH_HAVE_TBB
#include <tbb/parallel_sort.h>
#include <tbb/task_arena.h>

#include <execution>
#endif

namespace bench {
namespace {

struct record16 {
  std::uint64_t key;
  std::uint64_t payload;
};
struct record_less {
  bool operator()(const record16& a, const record16& b) const { return a.key < b.key; }
};

template <class T>
const char* sort_type_name() {
  if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  else if constexpr (std::is_same_v<T, std::uint64_t>) return "uint64";
  else if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else return "record16";
}

template <class T>
T random_key(std::mt19937_64& rng) {
  if constexpr (std::is_floating_point_v<T>) return static_cast<T>(std::normal_distribution<double>(0, 1e6)(rng));
  else if constexpr (std::is_same_v<T, record16>) return {rng(), rng()};
  else return static_cast<T>(rng());
}

// The random input of the largest size, made once per type.
template <class T>
const std::vector<T>& input() {
  static const std::vector<T> keys = [] {
    std::mt19937_64 rng(42);
    std::vector<T> v(max_size);
    for (auto& x : v) x = random_key<T>(rng);
    return v;
  }();
  return keys;
}

template <class T>
using comparator = std::conditional_t<std::is_same_v<T, record16>, record_less, std::less<>>;

template <class T, class Sort>
void add_sort(const std::string& impl, Sort sort) {
  const std::string name = std::string("sort/") + sort_type_name<T>() + "/" + impl;
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [sort](benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<T>& keys = input<T>();
    std::vector<T> work(n);
    for (auto _ : state) {
      state.PauseTiming();
      std::copy(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(n), work.begin());
      state.ResumeTiming();
      sort(work.begin(), work.end(), comparator<T>{});
      benchmark::ClobberMemory();
    }
    if (!std::is_sorted(work.begin(), work.end(), comparator<T>{})) state.SkipWithError("not sorted");
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
  });
  for (int log = 16; log <= 26; log += 2) b->Arg(std::int64_t{1} << log);
  b->UseRealTime();
  b->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
}

template <class T>
void add_sorts() {
  using It = typename std::vector<T>::iterator;
  add_sort<T>("dpar_par", [](It first, It last, comparator<T> comp) { dpar::sort(dpar::par, first, last, comp); });
  add_sort<T>("std_sort", [](It first, It last, comparator<T> comp) { std::sort(first, last, comp); });
#ifdef DPAR_BENCH_HAVE_TBB
  static tbb::task_arena arena(static_cast<int>(threads()));
  add_sort<T>("std_par", [](It first, It last, comparator<T> comp) {
    arena.execute([&] { std::sort(std::execution::par, first, last, comp); });
  });
  add_sort<T>("tbb", [](It first, It last, comparator<T> comp) {
    arena.execute([&] { tbb::parallel_sort(first, last, comp); });
  });
#endif
}

}  // namespace

void register_sort() {
  add_sorts<std::int32_t>();
  add_sorts<std::uint64_t>();
  add_sorts<float>();
  add_sorts<double>();
  add_sorts<record16>();
}

}  // namespace bench
