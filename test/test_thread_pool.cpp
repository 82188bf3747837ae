#include "collective_common.hpp"
#include "common.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>

TEST_CASE("thread_pool reports its size and rejects bad sizes", "[thread_pool]") {
  for (std::size_t n : {1, 2, 3, 8}) CHECK(dpar::thread_pool(n).size() == n);
  CHECK_THROWS_WITH(dpar::thread_pool(0), Catch::Contains("size 0"));
  CHECK_THROWS_AS(dpar::thread_pool(1'000'000), std::invalid_argument);
  CHECK(dpar::thread_pool::global().size() >= 1);
}

TEST_CASE("thread_pool::run calls every thread once and concurrently", "[thread_pool]") {
  for (std::size_t n : {1, 2, 3, 8}) {
    dpar::thread_pool pool(n);
    for (int round = 0; round < 50; ++round) {
      std::vector<int> hits(n, 0);
      std::set<std::thread::id> ids;
      std::mutex m;
      std::atomic<std::size_t> arrived{0}, wrong_width{0};
      // Catch2 assertions are not thread-safe: record in the workers, check after.
      pool.run([&](std::size_t i, std::size_t threads) {
        if (threads != n) ++wrong_width;
        ++hits[i];
        // A barrier: it only completes if all n calls run at the same time.
        arrived.fetch_add(1);
        while (arrived.load() < n) std::this_thread::yield();
        std::lock_guard lock(m);
        ids.insert(std::this_thread::get_id());
      });
      CHECK(wrong_width == 0);
      CHECK(std::count(hits.begin(), hits.end(), 1) == static_cast<long>(n));
      CHECK(ids.size() == n);
    }
  }
}

TEST_CASE("thread_pool rethrows a worker exception and stays usable", "[thread_pool][exceptions]") {
  dpar::thread_pool pool(4);
  for (std::size_t thrower = 0; thrower < 4; ++thrower) {
    CHECK_THROWS_WITH(pool.run([&](std::size_t i, std::size_t) {
      if (i == thrower) throw std::runtime_error("boom " + std::to_string(i));
    }),
                      "boom " + std::to_string(thrower));
    std::atomic<int> calls{0};
    pool.run([&](std::size_t, std::size_t) { ++calls; });
    CHECK(calls == 4);
  }
  // Every thread throws: one of the exceptions arrives, nothing terminates.
  CHECK_THROWS_AS(pool.run([](std::size_t, std::size_t) { throw std::logic_error("all"); }), std::logic_error);
}

TEST_CASE("nested pool calls run inline instead of deadlocking", "[thread_pool][nested]") {
  dpar::thread_pool pool(3);
  std::atomic<int> inner_calls{0}, inline_calls{0};
  pool.run([&](std::size_t, std::size_t) {
    bool inside = pool.concurrency() == 1;
    pool.run([&](std::size_t i, std::size_t threads) {
      ++inner_calls;
      inline_calls += inside && i == 0 && threads == 1;
    });
  });
  CHECK(inner_calls == 3);
  CHECK(inline_calls == 3);
  CHECK(pool.concurrency() == 3);
}

TEST_CASE("jobs from several outside threads on one pool all give correct results", "[thread_pool]") {
  dpar::thread_pool pool(2);
  std::vector<long> v(100000, 1);
  std::vector<std::thread> callers;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int k = 0; k < 20; ++k) good += dpar::reduce(dpar::par.on(pool), v, 0L) == 100000;
    });
  for (auto& c : callers) c.join();
  CHECK(good == 80);
}

TEST_CASE("DPAR_NUM_THREADS parsing names the bad value", "[thread_pool][env]") {
  using dpar::detail::parse_thread_count;
  CHECK(parse_thread_count("1", "X") == 1);
  CHECK(parse_thread_count("64", "X") == 64);
  CHECK_THROWS_WITH(parse_thread_count("", "DPAR_NUM_THREADS"), Catch::Contains("DPAR_NUM_THREADS=''"));
  CHECK_THROWS_WITH(parse_thread_count("0", "V"), Catch::Contains("V='0' is zero"));
  CHECK_THROWS_WITH(parse_thread_count("-1", "V"), Catch::Contains("not a positive integer"));
  CHECK_THROWS_WITH(parse_thread_count("two", "V"), Catch::Contains("V='two' is not a positive integer"));
  CHECK_THROWS_WITH(parse_thread_count("3 ", "V"), Catch::Contains("not a positive integer"));
  CHECK_THROWS_WITH(parse_thread_count("99999999999999999999999", "V"), Catch::Contains("too large"));
  CHECK_THROWS_WITH(parse_thread_count("5000", "V"), Catch::Contains("too large"));
  // The limit itself: 4096 is the largest accepted.
  CHECK(parse_thread_count("4096", "V") == 4096);
  CHECK_THROWS_WITH(parse_thread_count("4097", "V"), Catch::Contains("V='4097' is too large; at most 4096"));
  CHECK_THROWS_WITH(dpar::thread_pool(4097), Catch::Contains("size 4097 is out of range [1, 4096]"));
}

// Issue 14, fault 1: a job that waits for a new thread which calls dpar::par
// on the same (busy) pool. The new thread must not wait for the pool.
TEST_CASE("a pool job waiting on a new thread that uses the same pool does not deadlock", "[thread_pool][nested]") {
  std::vector<long> v(100000);
  std::iota(v.begin(), v.end(), 1L);
  const long want = 100000L * 100001L / 2;
  dpar::thread_pool own(3);
  for (dpar::thread_pool* pool : {&dpar::thread_pool::global(), &own}) {
    std::atomic<long> got{0};
    std::atomic<std::size_t> inner_threads{0};
    dpar_test::within_seconds(30, "job waiting on a thread that uses the busy pool", [&] {
      for (int round = 0; round < 20; ++round)
        pool->run([&](std::size_t i, std::size_t) {
          if (i != 0) return;
          got = std::async(std::launch::async, [&] { return dpar::reduce(dpar::par.on(*pool), v, 0L); }).get();
          // pool.run from that thread runs inline too: one thread, index 0.
          std::async(std::launch::async, [&] {
            pool->run([&](std::size_t, std::size_t threads) { inner_threads = threads; });
          }).get();
        });
    });
    CHECK(got == want);
    CHECK(inner_threads == 1);
  }
}

TEST_CASE("an outside thread finding the pool busy runs its job inline, with correct results", "[thread_pool]") {
  dpar::thread_pool pool(2);
  dpar_test::pool_holder holder(pool);
  std::vector<double> v(50000, 0.5), out(v.size());
  std::size_t threads_seen = 0;
  pool.run([&](std::size_t, std::size_t threads) { threads_seen = threads; });
  double sum = dpar::reduce(dpar::par.on(pool), v, 0.0);
  dpar::inclusive_scan(dpar::par.on(pool), v, out.begin());
  holder.release();
  CHECK(threads_seen == 1);
  CHECK(sum == 25000.0);
  CHECK(out.back() == 25000.0);
  // Free again: jobs use every thread.
  pool.run([&](std::size_t i, std::size_t threads) {
    if (i == 0) threads_seen = threads;
  });
  CHECK(threads_seen == 2);
}

// Issue 27, item 12: thread B destroys the pool while thread A's job runs on
// it; the destructor waits for the job (before, it returned once the workers
// were joined and A's own share then used freed memory: ASan and TSan catch it).
TEST_CASE("destroying a pool while another thread's job runs waits for that job", "[thread_pool]") {
  auto pool = std::make_unique<dpar::thread_pool>(3);
  std::atomic<bool> started{false};
  std::atomic<int> finished{0};
  std::thread a([&] {
    pool->run([&](std::size_t i, std::size_t) {
      if (i == 0) started.store(true);
      std::this_thread::sleep_for(std::chrono::milliseconds(i == 0 ? 150 : 50));
      finished.fetch_add(1);
    });
  });
  while (!started.load()) std::this_thread::yield();
  pool.reset();  // the job is running: this waits for it
  CHECK(finished.load() == 3);
  a.join();
}
