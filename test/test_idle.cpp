// An idle pool burns no CPU: after a call, the workers may spin for a moment,
// then must sleep. The process CPU time (all threads) is sampled over 200 ms of
// idling right after a call; spinning workers would use up to 200 ms each.

#include "common.hpp"

#include <sys/resource.h>

#include <chrono>
#include <numeric>
#include <thread>
#include <vector>

namespace {

double process_cpu_seconds() {
  rusage usage{};
  REQUIRE(getrusage(RUSAGE_SELF, &usage) == 0);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// CPU seconds the process spends while the calling thread sleeps 200 ms.
double cpu_over_200ms_idle() {
  double before = process_cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return process_cpu_seconds() - before;
}

}  // namespace

TEST_CASE("an idle pool burns no CPU after a call", "[thread_pool][idle]") {
  // More workers than this machine has cores, so that spinning would show.
  std::size_t threads = std::max<std::size_t>(4, std::thread::hardware_concurrency());
  dpar::thread_pool pool(threads);
  std::vector<double> v(1 << 20, 1.0);

  double sum = dpar::reduce(dpar::par.on(pool), v.begin(), v.end(), 0.0);
  REQUIRE(sum == static_cast<double>(v.size()));
  double busy = cpu_over_200ms_idle();
  INFO("pool of " << threads << " threads used " << busy * 1e3 << " ms of CPU in 200 ms of idling");
  // Spinning workers would use (threads - 1) x 200 ms; allow the short spin
  // phase after the call plus scheduler noise.
  CHECK(busy < 0.020);

  // And again after an empty fork-join and a scan, the calls with the shortest jobs.
  pool.run([](std::size_t, std::size_t) {});
  std::inclusive_scan(v.begin(), v.begin() + 10, v.begin());
  dpar::inclusive_scan(dpar::par.on(pool), v.begin(), v.end(), v.begin());
  busy = cpu_over_200ms_idle();
  INFO("after an empty call and a scan: " << busy * 1e3 << " ms of CPU in 200 ms");
  CHECK(busy < 0.020);
}

TEST_CASE("the global pool behind dpar::par sleeps when idle", "[thread_pool][idle]") {
  std::vector<float> v(1 << 18, 2.0f);
  dpar::transform(dpar::par, v.begin(), v.end(), v.begin(), [](float x) { return x * 0.5f; });
  REQUIRE(v.back() == 1.0f);
  double busy = cpu_over_200ms_idle();
  INFO("global pool of " << dpar::thread_pool::global().size() << " threads used " << busy * 1e3
                         << " ms of CPU in 200 ms of idling");
  CHECK(busy < 0.020);
}
