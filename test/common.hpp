#pragma once
// Shared test helpers: the policies every algorithm is checked on, the sizes,
// and random inputs.

#include <dpar/dpar.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace dpar_test {

// Under a sanitizer every element costs 5-20x more, and races and memory
// errors show at any size that gives every thread blocks of its own: there
// the tests stop at `sanitizer_cap` elements (several blocks above every
// thread cut-off), so that CI's sanitizer runs stay short.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool under_sanitizer = true;
#else
inline constexpr bool under_sanitizer = false;
#endif
inline constexpr std::size_t sanitizer_cap = 65537;

// `all` without the sizes above sanitizer_cap, under a sanitizer.
inline std::vector<std::size_t> sizes_up_to_cap(std::vector<std::size_t> all) {
  if (under_sanitizer) std::erase_if(all, [](std::size_t n) { return n > sanitizer_cap; });
  return all;
}

// Sizes: empty, tiny, primes, around the thread backend's block size, above
// every pool's thread count, and about 10^6 (not under a sanitizer).
inline const std::vector<std::size_t> sizes =
    sizes_up_to_cap({0, 1, 2, 3, 7, 13, 97, 1009, 2047, 2048, 4099, 10007, 65537, 1000003});

inline dpar::thread_pool& pool(std::size_t n) {
  static dpar::thread_pool p1(1), p2(2), p3(3), p8(8);
  switch (n) {
    case 1: return p1;
    case 2: return p2;
    case 3: return p3;
    default: return p8;
  }
}

// Calls body(policy, name) for seq, the global par, and pools of 1, 2, 3 and 8 threads.
template <class Body>
void for_each_policy(Body&& body) {
  body(dpar::seq, std::string("seq"));
  body(dpar::par, std::string("par"));
  for (std::size_t n : {1, 2, 3, 8}) body(dpar::par.on(pool(n)), "par.on(pool(" + std::to_string(n) + "))");
}

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> v(n);
  if constexpr (std::is_floating_point_v<T>) {
    std::uniform_real_distribution<T> d(-1, 1);
    for (auto& x : v) x = d(rng);
  } else {
    // small enough that sums of squares of 10^6 ints do not overflow
    long long bound = sizeof(T) <= 4 ? 30 : 1000;
    std::uniform_int_distribution<long long> d(-bound, bound);
    for (auto& x : v) x = static_cast<T>(d(rng));
  }
  return v;
}

// Keeps `pool` busy from another thread until release(): a job whose part 0
// spins. Constructed once the job is running.
class pool_holder {
 public:
  explicit pool_holder(dpar::thread_pool& pool)
      : thread_([this, &pool] {
          pool.run([this](std::size_t i, std::size_t) {
            if (i != 0) return;
            occupied_ = true;
            while (!released_) std::this_thread::yield();
          });
        }) {
    while (!occupied_) std::this_thread::yield();
  }
  pool_holder(const pool_holder&) = delete;
  pool_holder& operator=(const pool_holder&) = delete;
  ~pool_holder() { release(); }
  // Ends the job and waits for it: the pool is free afterwards.
  void release() {
    released_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> occupied_{false}, released_{false};
  std::thread thread_;  // declared last: starts once the flags exist
};

// |a - b| within a tolerance scaled by the sum of magnitudes (the reduction's condition).
inline bool close(double a, double b, double magnitude, double eps) {
  return std::abs(a - b) <= eps * (magnitude + 1.0);
}

}  // namespace dpar_test
