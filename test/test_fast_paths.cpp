// The paths the thread backend takes for speed: thread_pool::run_available,
// keeping workers off their caller's CPU, the single-pass (look-back) scan of
// arithmetic values, and vector-register sums.

#include "common.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace {

// A commutative op that throws on one chosen operand, to break a scan mid-way.
struct throwing_plus {
  long long poison;
  long long operator()(long long a, long long b) const {
    if (b == poison) throw std::runtime_error("poisoned operand");
    return a + b;
  }
};

}  // namespace

template <>
struct dpar::is_commutative<throwing_plus> : std::true_type {};

TEST_CASE("run_available: the caller always runs, workers that join get unique ids", "[thread_pool][fast]") {
  for (std::size_t n : {1, 2, 3, 8}) {
    dpar::thread_pool& pool = dpar_test::pool(n);
    for (int rep = 0; rep < 200; ++rep) {
      constexpr std::size_t items = 1000;
      std::vector<std::atomic<int>> claimed(items);
      std::vector<std::atomic<int>> ids(n);
      std::atomic<std::size_t> next{0};
      bool caller_ran = false;
      std::atomic<bool> bad_ids{false};  // Catch2's macros are not for worker threads
      pool.run_available([&](std::size_t thread, std::size_t threads) {
        if (thread >= threads || threads != n) {
          bad_ids = true;
          return;
        }
        ids[thread].fetch_add(1);
        if (thread == 0) caller_ran = true;
        for (std::size_t i; (i = next.fetch_add(1)) < items;) claimed[i].fetch_add(1);
      });
      REQUIRE(caller_ran);
      REQUIRE(!bad_ids);
      for (auto& c : claimed) REQUIRE(c.load() == 1);
      for (auto& id : ids) REQUIRE(id.load() <= 1);
    }
    // An exception on any thread reaches the caller, and the pool still works.
    CHECK_THROWS_WITH(pool.run_available([](std::size_t, std::size_t) { throw std::runtime_error("boom"); }), "boom");
    std::atomic<int> calls{0};
    pool.run([&](std::size_t, std::size_t) { ++calls; });
    CHECK(calls.load() == static_cast<int>(n));
  }
}

#if defined(__linux__)
#include <sched.h>

namespace {
bool same_cpus(const cpu_set_t& a, const cpu_set_t& b) { return CPU_EQUAL(&a, &b); }
cpu_set_t allowed_cpus(pid_t tid = 0) {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(::sched_getaffinity(tid, sizeof set, &set) == 0);
  return set;
}
}  // namespace

TEST_CASE("cpu_placement moves a thread off a CPU and leaves its allowed CPUs as they were", "[thread_pool][fast]") {
  const cpu_set_t before = allowed_cpus();
  const auto cpus = static_cast<std::size_t>(CPU_COUNT(&before));
  // Only where every pool thread can have a CPU of its own.
  CHECK_FALSE(dpar::detail::cpu_placement(1).enabled());
  CHECK_FALSE(dpar::detail::cpu_placement(cpus + 1).enabled());
  if (cpus < 2) {
    WARN("this process may use " << cpus << " CPU: there is nowhere to move a thread to; not checked");
    return;
  }
  const dpar::detail::cpu_placement placement(2);
  REQUIRE(placement.enabled());

  // The calling thread moves at once.
  for (int round = 0; round < 5; ++round) {
    const int cpu = dpar::detail::current_cpu();
    placement.move_off(dpar::detail::current_thread_id(), cpu);
    CHECK(dpar::detail::current_cpu() != cpu);
    CHECK(same_cpus(allowed_cpus(), before));
  }

  // Another thread, busy spinning, is moved too.
  std::atomic<long> id{0};
  std::atomic<int> where{-1};
  std::atomic<bool> stop{false};
  std::thread spinner([&] {
    id = dpar::detail::current_thread_id();
    while (!stop) where = dpar::detail::current_cpu();
  });
  while (where.load() < 0) std::this_thread::yield();
  bool moved = false;
  for (int round = 0; round < 5 && !moved; ++round) {
    const int cpu = where.load();
    placement.move_off(id, cpu);
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
         !moved && std::chrono::steady_clock::now() < until;)
      moved = where.load() != cpu;
  }
  CHECK(same_cpus(allowed_cpus(static_cast<pid_t>(id.load())), before));
  stop = true;
  spinner.join();
  CHECK(moved);

  // Thread id 0 is no thread: the calling thread (which sched_setaffinity(0)
  // would mean) keeps its allowed CPUs, here narrowed to the one it is on.
  {
    const int cpu = dpar::detail::current_cpu();
    cpu_set_t only;
    CPU_ZERO(&only);
    CPU_SET(cpu, &only);
    REQUIRE(::sched_setaffinity(0, sizeof only, &only) == 0);
    placement.move_off(0, cpu);
    CHECK(same_cpus(allowed_cpus(), only));
    REQUIRE(::sched_setaffinity(0, sizeof before, &before) == 0);
  }

  // Bad ids and CPUs change nothing and do not throw.
  placement.move_off(0, 0);
  placement.move_off(dpar::detail::current_thread_id(), -1);
  placement.move_off(dpar::detail::current_thread_id(), CPU_SETSIZE + 5);
  CHECK(same_cpus(allowed_cpus(), before));
}
#endif

TEST_CASE("run_available: back-to-back jobs too short for the workers stay correct", "[thread_pool][fast]") {
  // Workers mostly miss such jobs, so the pool keeps moving them off the
  // caller's CPU (thread_pool::count_missing_workers): results must not care.
  for (std::size_t n : {2, 3}) {
    dpar::thread_pool pool(n);
    std::vector<float> x(4099, 0.5f);
    for (int rep = 0; rep < 2000; ++rep) {
      std::atomic<int> callers{0};
      pool.run_available([&](std::size_t thread, std::size_t) {
        if (thread == 0) ++callers;
      });
      REQUIRE(callers == 1);
    }
    CHECK(dpar::reduce(dpar::par.on(pool), x.begin(), x.end(), 0.0f) == 2049.5f);
  }
}

TEST_CASE("single-pass scan equals std's scans across tile boundaries", "[scan][fast]") {
  // Sizes around the sequential cutoff (2 x 16384) and the tile sizes (4K..32K).
  const std::vector<std::size_t> sizes = {32767, 32768, 32769, 65536 + 7, 262144 - 1, 1000003};
  for (std::size_t n : sizes) {
    auto a = dpar_test::random_vector<int>(n, n);
    for (std::size_t threads : {2, 3, 8}) {
      auto policy = dpar::par.on(dpar_test::pool(threads));
      INFO("n = " << n << ", threads = " << threads);
      std::vector<long long> want(n), got(n, -1);
      std::inclusive_scan(a.begin(), a.end(), want.begin(), std::plus<>{}, 0LL);
      dpar::inclusive_scan(policy, a.begin(), a.end(), got.begin(), std::plus<>{}, 0LL);
      CHECK(got == want);
      std::vector<int> want_i(n), got_i(a);
      std::inclusive_scan(a.begin(), a.end(), want_i.begin(), dpar::maximum<>{});
      dpar::inclusive_scan(policy, got_i.begin(), got_i.end(), got_i.begin(), dpar::maximum<>{});  // in place
      CHECK(got_i == want_i);
      std::exclusive_scan(a.begin(), a.end(), want.begin(), 5LL);
      dpar::exclusive_scan(policy, a.begin(), a.end(), got.begin(), 5LL);
      CHECK(got == want);
      std::vector<double> d(a.begin(), a.end()), want_d(n), got_d(n);
      std::inclusive_scan(d.begin(), d.end(), want_d.begin());
      dpar::inclusive_scan(policy, d.begin(), d.end(), got_d.begin());
      for (std::size_t i = 0; i < n; i += 997) REQUIRE(got_d[i] == Approx(want_d[i]).margin(1e-6));
      REQUIRE(got_d.back() == Approx(want_d.back()).margin(1e-6));
    }
  }
}

TEST_CASE("an op that throws inside the single-pass scan reaches the caller, no hang", "[scan][fast][exceptions]") {
  const std::size_t n = 500000;
  std::vector<long long> a(n, 1);
  for (std::size_t where : {std::size_t{10}, n / 2, n - 1}) {
    a[where] = -99;
    for (std::size_t threads : {2, 3, 8}) {
      auto policy = dpar::par.on(dpar_test::pool(threads));
      std::vector<long long> out(n);
      CHECK_THROWS_WITH(dpar::inclusive_scan(policy, a.begin(), a.end(), out.begin(), throwing_plus{-99}),
                        "poisoned operand");
      CHECK_THROWS_WITH(dpar::exclusive_scan(policy, a.begin(), a.end(), out.begin(), 0LL, throwing_plus{-99}),
                        "poisoned operand");
      // The pool is still usable.
      CHECK(dpar::reduce(policy, out.begin(), out.begin() + 10, 0LL) >= 0);
    }
    a[where] = 1;
  }
}

TEST_CASE("vector-register sums equal exact and higher-precision references", "[reduce][fast]") {
  for (std::size_t n : dpar_test::sizes) {
    INFO("n = " << n);
    auto ints = dpar_test::random_vector<int>(n, 3 * n + 1);
    std::vector<std::int64_t> wide(ints.begin(), ints.end());
    std::vector<unsigned> uns(ints.begin(), ints.end());
    long double exact = 0;
    for (int v : ints) exact += v;
    dpar_test::for_each_policy([&](auto policy, const std::string& name) {
      INFO(name);
      CHECK(dpar::reduce(policy, wide.begin(), wide.end(), std::int64_t{7}) ==
            std::accumulate(wide.begin(), wide.end(), std::int64_t{7}));
      CHECK(dpar::reduce(policy, uns.begin(), uns.end(), 1u) == std::accumulate(uns.begin(), uns.end(), 1u));
      std::vector<double> d(ints.begin(), ints.end());
      std::vector<float> f(ints.begin(), ints.end());
      CHECK(dpar::reduce(policy, d.begin(), d.end(), 0.5) == Approx(static_cast<double>(exact) + 0.5));
      CHECK(dpar::reduce(policy, f.begin(), f.end(), 0.0f) ==
            Approx(static_cast<double>(exact)).epsilon(1e-4).margin(1e-2 * static_cast<double>(n)));
      CHECK(dpar::transform_reduce(policy, d.begin(), d.end(), d.begin(), 0.0) ==
            Approx(std::inner_product(d.begin(), d.end(), d.begin(), 0.0L)));
    });
  }
}

namespace {
// Busy for about `d` of wall-clock time: an element that costs far more than
// a fork-join.
void busy_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

// How many threads ran the calls that recorded their id.
std::size_t distinct(std::vector<std::thread::id> ids) {
  std::sort(ids.begin(), ids.end());
  return static_cast<std::size_t>(std::unique(ids.begin(), ids.end()) - ids.begin());
}
}  // namespace

// Few elements by count, but heavy: the timed probe blocks show the cost and
// the rest is shared (64 elements of 2 ms ran on one thread before). Each
// call is checked every time; that both threads took elements, in any of 5
// tries, since a loaded machine (ctest -j) may keep the worker off its core
// for a whole call.
TEST_CASE("heavy elements use every thread: 64 elements of 2 ms", "[split]") {
  dpar::thread_pool& two = dpar_test::pool(2);
  const std::size_t n = 64;
  std::vector<std::thread::id> by(n);
  auto heavy = [&](int i) {
    busy_for(std::chrono::microseconds(2000));
    by[static_cast<std::size_t>(i)] = std::this_thread::get_id();
    return i * 3;
  };
  // Whether call() ran the elements [0, count) on both threads, in one of 5 tries.
  auto shared = [&](std::size_t count, auto&& call) {
    bool both = false;
    for (int attempt = 0; attempt < 5 && !both; ++attempt) {
      std::fill(by.begin(), by.end(), std::thread::id());
      call();
      both = distinct({by.begin(), by.begin() + static_cast<std::ptrdiff_t>(count)}) == 2;
    }
    return both;
  };
  CHECK(shared(n, [&] {
    std::vector<int> in(n), out(n, -1);
    std::iota(in.begin(), in.end(), 0);
    dpar::transform(dpar::par.on(two), in.begin(), in.end(), out.begin(), heavy);
    for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == static_cast<int>(3 * i));
  }));
  // the other kinds of call, on 16 of them: a reduction with an op that is
  // not reorderable, and for_each
  CHECK(shared(16, [&] {
    std::vector<int> in(16);
    std::iota(in.begin(), in.end(), 0);
    long total = dpar::transform_reduce(dpar::par.on(two), in.begin(), in.end(), 0L,
                                        [](long a, long b) { return a + b; }, [&](int i) { return long(heavy(i)); });
    CHECK(total == 3L * 15 * 16 / 2);
  }));
  CHECK(shared(16, [&] {
    std::vector<int> in(16);
    std::iota(in.begin(), in.end(), 0);
    dpar::for_each(dpar::par.on(two), in.begin(), in.end(), [&](int& x) { x = heavy(x); });
    CHECK(in[15] == 45);
  }));
}

// Where the count alone is worth a fork but gives few blocks (4096 elements
// that may be costly: 2 blocks of 2048), the call gets 4 claimed blocks per
// thread, so that a disturbed thread cannot hold up half of it (min_element
// folds 16 KB chunks: 2^24 floats are 4096 such elements).
TEST_CASE("costly elements: 4 claimed blocks per thread once the count is worth a fork", "[split]") {
  namespace threads = dpar::detail::threads;
  dpar::thread_pool& two = dpar_test::pool(2);
  for (const std::size_t n : {std::size_t{4096}, std::size_t{6000}, std::size_t{100000}}) {
    INFO("n = " << n);
    std::vector<std::atomic<int>> seen(n);
    const threads::blocks cut =
        threads::for_each_block(two, n, threads::sizing{threads::min_block, 0, true},
                                [&](std::size_t, std::size_t lo, std::size_t hi) {
                                  for (std::size_t i = lo; i < hi; ++i) seen[i].fetch_add(1, std::memory_order_relaxed);
                                });
    CHECK(cut.count == 2 * threads::blocks_per_thread);
    CHECK(std::all_of(seen.begin(), seen.end(), [](const std::atomic<int>& c) { return c.load() == 1; }));
  }
  // cheap elements (not timed) keep the count's cut
  const threads::blocks cheap = threads::for_each_block(two, 4096, threads::sizing{threads::min_block, 0, false},
                                                        [](std::size_t, std::size_t, std::size_t) {});
  CHECK(cheap.count == 2);
}

// Each thread claims the blocks of its own run first (one run of consecutive
// blocks per thread), so repeated calls over the same range give a thread
// the same data, which its core's cache may still hold. Each thread's first
// block waits until the other thread has started one, so neither can reach
// the other's run first: the first claims are the runs' first blocks.
TEST_CASE("each thread first claims the first block of its own run; every block runs once", "[split]") {
  namespace threads = dpar::detail::threads;
  dpar::thread_pool& two = dpar_test::pool(2);
  const auto caller = std::this_thread::get_id();
  for (const std::size_t from : {std::size_t{0}, std::size_t{2}}) {
    INFO("from block " << from);
    const threads::blocks cut{1000, 8};
    std::array<std::atomic<long>, 2> first{-1, -1};
    std::atomic<int> started{0};
    std::vector<std::atomic<int>> runs(cut.count);
    threads::for_each_block(two, cut, [&](std::size_t b, std::size_t, std::size_t) {
      runs[b].fetch_add(1);
      std::atomic<long>& mine = first[std::this_thread::get_id() == caller ? 0 : 1];
      long none = -1;
      if (!mine.compare_exchange_strong(none, static_cast<long>(b))) return;
      started.fetch_add(1);
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (started.load() < 2 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    }, from);
    CHECK(started.load() == 2);  // the worker joined
    CHECK(first[0].load() == static_cast<long>(from));
    CHECK(first[1].load() == static_cast<long>(from + dpar::even_split_begin(cut.count - from, 2, 1)));
    for (std::size_t b = 0; b < cut.count; ++b) CHECK(runs[b].load() == (b < from ? 0 : 1));
  }
  // inline (one thread): every block in order
  dpar::thread_pool& one = dpar_test::pool(1);
  std::vector<std::size_t> order;
  threads::for_each_block(one, threads::blocks{100, 5}, [&](std::size_t b, std::size_t, std::size_t) { order.push_back(b); });
  CHECK(order == std::vector<std::size_t>{0, 1, 2, 3, 4});
}

// Cheap and few: the probe blocks take all of them on the calling thread
// (timing-dependent where a sanitizer makes every element slow, so checked
// only without one).
TEST_CASE("cheap elements below the count cut-off stay on the calling thread", "[split]") {
  dpar::thread_pool& two = dpar_test::pool(2);
  std::vector<int> in(200, 1), out(200);
  std::vector<std::thread::id> by(in.size());
  dpar::transform(dpar::par.on(two), in.begin(), in.end(), out.begin(), [&](const int& x) {
    by[static_cast<std::size_t>(&x - in.data())] = std::this_thread::get_id();
    return x + 1;
  });
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  CHECK(distinct(by) == 1);
  CHECK(by[0] == std::this_thread::get_id());
#endif
  CHECK(std::accumulate(out.begin(), out.end(), 0) == 400);
}

// with_grain(g): tasks of g elements whatever the count, kept by on(pool).
TEST_CASE("par.with_grain(n) cuts tasks of n elements", "[split]") {
  dpar::thread_pool& two = dpar_test::pool(2);
  STATIC_REQUIRE(dpar::par.with_grain(5).grain() == 5);
  STATIC_REQUIRE(dpar::par.grain() == 0);
  auto policy = dpar::par.with_grain(1).on(two);
  CHECK(policy.grain() == 1);
  CHECK(&policy.pool() == &two);
  const std::size_t n = 16;
  std::vector<std::thread::id> by(n);
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  // a cheap-looking element that is slow enough for the second thread to join
  dpar::for_each(policy, idx.begin(), idx.end(), [&](int i) {
    busy_for(std::chrono::microseconds(1000));
    by[static_cast<std::size_t>(i)] = std::this_thread::get_id();
  });
  CHECK(distinct(by) == 2);
  // every algorithm takes it; results as without
  auto v = dpar_test::random_vector<long>(10007, 3);
  for (std::size_t grain : {1, 7, 4096, 100000}) {
    INFO("grain " << grain);
    auto p = dpar::par.on(two).with_grain(grain);
    CHECK(dpar::reduce(p, v, 0L) == std::accumulate(v.begin(), v.end(), 0L));
    std::vector<long> scanned(v.size()), want(v.size());
    std::inclusive_scan(v.begin(), v.end(), want.begin(), [](long a, long b) { return a - 0 + b; });
    dpar::inclusive_scan(p, v, scanned.begin(), [](long a, long b) { return a - 0 + b; });
    CHECK(scanned == want);
  }
}
