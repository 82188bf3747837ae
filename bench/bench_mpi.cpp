// dpar::all_reduce over MPI ranks against raw MPI_Allreduce on the same
// buffers (float sum, in place), and dpar::sort over the ranks. Run under mpiexec, e.g.
//   mpiexec -n 2 --oversubscribe build/release/bench/bench_mpi
// Every rank runs the same fixed number of iterations (a collective loop must
// not let ranks choose different counts); rank 0 reports.

#include <dpar/mpi.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

constexpr std::int64_t KB = 1024, MB = 1024 * KB;

void set_counters(benchmark::State& state, std::size_t bytes) {
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  state.counters["ranks"] = ranks;
  state.counters["busBW"] = benchmark::Counter(static_cast<double>(bytes) * 2.0 * (ranks - 1) / ranks,
                                               benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
}

void BM_raw_MPI_Allreduce(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<float> buffer(bytes / sizeof(float), 0.0f);
  MPI_Allreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(buffer.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  for (auto _ : state)
    MPI_Allreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(buffer.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  set_counters(state, bytes);
}

void BM_dpar_all_reduce(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<float> buffer(bytes / sizeof(float), 0.0f);
  auto policy = dpar::mpi(MPI_COMM_WORLD);
  dpar::all_reduce(policy, buffer);  // warm-up: pages, MPI connections
  MPI_Barrier(MPI_COMM_WORLD);
  for (auto _ : state) dpar::all_reduce(policy, buffer);
  set_counters(state, bytes);
}

// raw() and with_dpar() in one loop, `calls` of each per turn, alternating
// which goes first, each turn timed between barriers: load from other
// processes then hits both alike, so their ratio stays meaningful on a noisy
// machine. Returns the slowest rank's seconds per call of each (a collective
// finishes when its last rank does).
template <class Raw, class Dpar>
std::pair<double, double> interleaved(benchmark::State& state, Raw&& raw, Dpar&& with_dpar, int calls) {
  double raw_seconds = 0, dpar_seconds = 0;
  bool raw_first = true;
  for (auto _ : state) {
    for (int turn = 0; turn < 2; ++turn) {
      bool run_raw = (turn == 0) == raw_first;
      MPI_Barrier(MPI_COMM_WORLD);
      double start = MPI_Wtime();
      for (int i = 0; i < calls; ++i) run_raw ? raw() : with_dpar();
      (run_raw ? raw_seconds : dpar_seconds) += MPI_Wtime() - start;
    }
    raw_first = !raw_first;
  }
  double mine[2] = {raw_seconds, dpar_seconds}, slowest[2] = {0, 0};
  MPI_Allreduce(mine, slowest, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  const double n = static_cast<double>(state.iterations()) * calls;
  return {slowest[0] / n, slowest[1] / n};
}

// Both on the same buffer size, interleaved.
void BM_interleaved_raw_vs_dpar(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<float> raw_buffer(bytes / sizeof(float), 0.0f), dpar_buffer(bytes / sizeof(float), 0.0f);
  const int count = static_cast<int>(raw_buffer.size());
  auto policy = dpar::mpi(MPI_COMM_WORLD);
  auto raw = [&] { MPI_Allreduce(MPI_IN_PLACE, raw_buffer.data(), count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); };
  auto with_dpar = [&] { dpar::all_reduce(policy, dpar_buffer); };
  raw();
  with_dpar();
  auto [raw_seconds, dpar_seconds] = interleaved(state, raw, with_dpar, 1);
  state.counters["raw_us"] = raw_seconds * 1e6;
  state.counters["dpar_us"] = dpar_seconds * 1e6;
  state.counters["raw_over_dpar"] = raw_seconds / dpar_seconds;
}

// dpar::reduce over ranks (local reduce, then one MPI_Allreduce of the partials).
void BM_dpar_reduce(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<float> local(bytes / sizeof(float), 1.0f);
  auto policy = dpar::mpi(MPI_COMM_WORLD);
  benchmark::DoNotOptimize(dpar::reduce(policy, local, 0.0f));
  MPI_Barrier(MPI_COMM_WORLD);
  for (auto _ : state) benchmark::DoNotOptimize(dpar::reduce(policy, local, 0.0f));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}

// Latency: one 8-byte value per rank. Each form of dpar call against a raw
// MPI collective on the same 8 bytes (MPI_Allreduce, or MPI_Scan for the
// scans), interleaved as above; "over_raw" is dpar's time / raw's.
// With seq inside and contiguous arithmetic input, the forms with noexcept
// functions (or std::plus) cannot fail: the value crosses alone. The
// "may_throw" forms take functions not declared noexcept, as most lambdas
// are: the value crosses with a status byte that also carries a failure.
enum class latency_form {
  reduce_plus,              // double, std::plus: rank order, through an ordered user op on 8 bytes
  reduce_user,              // double, a noexcept user op (value and presence: 9 bytes)
  reduce_plus_int64,        // long long, std::plus: MPI_SUM on MPI_LONG_LONG
  transform_reduce_plus,    // double, std::plus
  transform_reduce_user,    // double, a noexcept user op
  inclusive_scan_plus,      // double, std::plus
  inclusive_scan_user,      // double, a noexcept user op
  exclusive_scan_plus,      // double, std::plus
  exclusive_scan_user,      // double, a noexcept user op
  reduce_may_throw,         // double, a user op that may throw: value and status, one call
  transform_reduce_may_throw,  // double, a transform that may throw, std::plus
  inclusive_scan_may_throw  // double, a user op that may throw: two collective calls (gather, agreement)
};

void BM_latency(benchmark::State& state, latency_form form, bool raw_scan) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::vector<double> local{rank + 1.0}, out(1);
  std::vector<long long> local_int{rank + 1LL};
  double sum = 0, total = 0;
  auto policy = dpar::mpi(MPI_COMM_WORLD);
  auto user_plus = [](double a, double b) noexcept { return a + b; };
  auto may_throw_plus = [](double a, double b) { return a + b; };
  auto twice = [](double x) noexcept { return 2 * x; };  // without noexcept: the failure flag
  auto may_throw_twice = [](double x) { return 2 * x; };
  auto raw = [&] {
    if (raw_scan) MPI_Scan(local.data(), &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    else MPI_Allreduce(local.data(), &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  };
  auto with_dpar = [&] {
    switch (form) {
      case latency_form::reduce_plus: total += dpar::reduce(policy, local, 0.0); break;
      case latency_form::reduce_user: total += dpar::reduce(policy, local, 0.0, user_plus); break;
      case latency_form::reduce_plus_int64: total += static_cast<double>(dpar::reduce(policy, local_int, 0LL)); break;
      case latency_form::transform_reduce_plus:
        total += dpar::transform_reduce(policy, local, 0.0, std::plus<>{}, twice);
        break;
      case latency_form::transform_reduce_user: total += dpar::transform_reduce(policy, local, 0.0, user_plus, twice); break;
      case latency_form::inclusive_scan_plus: dpar::inclusive_scan(policy, local, out.begin()); break;
      case latency_form::inclusive_scan_user: dpar::inclusive_scan(policy, local, out.begin(), user_plus); break;
      case latency_form::exclusive_scan_plus: dpar::exclusive_scan(policy, local, out.begin(), 0.0); break;
      case latency_form::exclusive_scan_user: dpar::exclusive_scan(policy, local, out.begin(), 0.0, user_plus); break;
      case latency_form::reduce_may_throw: total += dpar::reduce(policy, local, 0.0, may_throw_plus); break;
      case latency_form::transform_reduce_may_throw:
        total += dpar::transform_reduce(policy, local, 0.0, std::plus<>{}, may_throw_twice);
        break;
      case latency_form::inclusive_scan_may_throw: dpar::inclusive_scan(policy, local, out.begin(), may_throw_plus); break;
    }
  };
  for (int i = 0; i < 100; ++i) raw(), with_dpar();
  auto [raw_seconds, dpar_seconds] = interleaved(state, raw, with_dpar, 16);
  benchmark::DoNotOptimize(total);
  state.counters["raw_us"] = raw_seconds * 1e6;
  state.counters["dpar_us"] = dpar_seconds * 1e6;
  state.counters["over_raw"] = dpar_seconds / raw_seconds;
}

// dpar::sort of `total` random keys (int32 or float) in all, split evenly over
// the ranks, each rank's part sorted on the inner policy (dpar::par or
// dpar::seq). For the figure in bench/RESULTS.md: 2 ranks x 1 thread is
// mpiexec -n 2 with DPAR_NUM_THREADS=1 (BM_dpar_sort_*/par), 1 rank x 2
// threads is mpiexec -n 1 with DPAR_NUM_THREADS=2 (par), 1 rank x 1 thread is
// mpiexec -n 1 (seq). Refilling the keys is not timed.
template <class T, class Inner>
void BM_dpar_sort(benchmark::State& state, Inner inner) {
  int ranks = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const auto total = static_cast<std::size_t>(state.range(0));
  const std::size_t mine = total * static_cast<std::size_t>(rank + 1) / static_cast<std::size_t>(ranks) -
                           total * static_cast<std::size_t>(rank) / static_cast<std::size_t>(ranks);
  std::mt19937 rng(static_cast<unsigned>(rank) + 1);
  std::vector<T> input(mine), work(mine);
  if constexpr (std::is_floating_point_v<T>) {
    std::uniform_real_distribution<T> uniform(T(-1e6), T(1e6));
    for (auto& x : input) x = uniform(rng);
  } else {
    for (auto& x : input) x = static_cast<T>(rng());
  }
  auto policy = dpar::mpi(MPI_COMM_WORLD, inner);
  for (auto _ : state) {
    state.PauseTiming();
    std::copy(input.begin(), input.end(), work.begin());
    MPI_Barrier(MPI_COMM_WORLD);
    state.ResumeTiming();
    dpar::sort(policy, work);
  }
  state.counters["ranks"] = ranks;
  state.counters["threads"] =
      std::is_same_v<Inner, dpar::sequenced_policy> ? 1.0 : static_cast<double>(dpar::thread_pool::global().size());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(total));
}

class null_reporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

// Registers raw and dpar side by side for every size, with fixed iteration
// counts (the same on every rank: about 256 MB moved per repetition) and
// 5 repetitions, reporting mean/median/stddev.
void register_benchmarks() {
  for (std::int64_t bytes : {1 * KB, 64 * KB, 1 * MB, 4 * MB, 16 * MB, 64 * MB}) {
    std::int64_t iterations = std::max<std::int64_t>(10, std::min<std::int64_t>(20000, 256 * MB / bytes));
    auto add = [&](const char* name, void (*fn)(benchmark::State&)) {
      benchmark::RegisterBenchmark(name, fn)
          ->Arg(bytes)
          ->Iterations(iterations)
          ->Repetitions(5)
          ->ReportAggregatesOnly(true)
          ->UseRealTime();
    };
    add("BM_interleaved_raw_vs_dpar", BM_interleaved_raw_vs_dpar);
    add("BM_raw_MPI_Allreduce", BM_raw_MPI_Allreduce);
    add("BM_dpar_all_reduce", BM_dpar_all_reduce);
    add("BM_dpar_reduce", BM_dpar_reduce);
  }
  const std::pair<const char*, latency_form> forms[] = {
      {"reduce_plus", latency_form::reduce_plus},
      {"reduce_user", latency_form::reduce_user},
      {"reduce_plus_int64", latency_form::reduce_plus_int64},
      {"transform_reduce_plus", latency_form::transform_reduce_plus},
      {"transform_reduce_user", latency_form::transform_reduce_user},
      {"inclusive_scan_plus", latency_form::inclusive_scan_plus},
      {"inclusive_scan_user", latency_form::inclusive_scan_user},
      {"exclusive_scan_plus", latency_form::exclusive_scan_plus},
      {"exclusive_scan_user", latency_form::exclusive_scan_user},
      {"reduce_may_throw", latency_form::reduce_may_throw},
      {"transform_reduce_may_throw", latency_form::transform_reduce_may_throw},
      {"inclusive_scan_may_throw", latency_form::inclusive_scan_may_throw}};
  for (auto [name, form] : forms)
    for (bool raw_scan : {false, true}) {
      const bool scan = std::string_view(name).find("scan") != std::string_view::npos;
      if (raw_scan && !scan) continue;
      std::string full = std::string("BM_latency_8B/") + name + (raw_scan ? "/vs_MPI_Scan" : "/vs_MPI_Allreduce");
      benchmark::RegisterBenchmark(full.c_str(), BM_latency, form, raw_scan)
          ->Iterations(2000)
          ->Repetitions(5)
          ->ReportAggregatesOnly(true)
          ->UseRealTime();
    }
  for (std::int64_t keys : {std::int64_t{1} << 20, std::int64_t{1} << 24}) {
    auto add_sort = [&](const char* name, auto inner, auto type) {
      benchmark::RegisterBenchmark(name, [inner](benchmark::State& state) {
        BM_dpar_sort<typename decltype(type)::type>(state, inner);
      })
          ->Arg(keys)
          ->Iterations(keys > (1 << 20) ? 3 : 10)  // 2^24 keys: about 0.7 s a sort on 2 ranks here
          ->Repetitions(3)
          ->ReportAggregatesOnly(true)
          ->UseRealTime();
    };
    add_sort("BM_dpar_sort_int32/par", dpar::par, std::type_identity<int>{});
    add_sort("BM_dpar_sort_float/par", dpar::par, std::type_identity<float>{});
    add_sort("BM_dpar_sort_int32/seq", dpar::seq, std::type_identity<int>{});
    add_sort("BM_dpar_sort_float/seq", dpar::seq, std::type_identity<float>{});
  }
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  benchmark::Initialize(&argc, argv);
  register_benchmarks();
  if (rank == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    null_reporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
  benchmark::Shutdown();
  MPI_Finalize();
  return 0;
}
