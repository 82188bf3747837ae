#pragma once
// Waiting on an atomic word: the spin-then-block primitive of the thread pool,
// the communicator and the scans' look-back.

#include <atomic>
#include <chrono>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dpar::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Waits until `word` differs from `old` and returns the new value: spins for
// about 2 us (back-to-back calls find their workers awake), yields until about
// 100 us (on an oversubscribed machine, lets the thread we wait for run), then
// blocks on the word (futex), so an idle pool burns no CPU.
template <class U>
U wait_while_equal(const std::atomic<U>& word, U old) noexcept {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (unsigned i = 1;; ++i) {
    U now = word.load(std::memory_order_acquire);
    if (now != old) return now;
    if (i % 32 != 0) {
      cpu_relax();
      continue;
    }
    auto waited = clock::now() - start;
    if (waited > std::chrono::microseconds(100)) break;
    if (waited > std::chrono::microseconds(2)) std::this_thread::yield();
  }
  for (;;) {
    word.wait(old, std::memory_order_acquire);
    U now = word.load(std::memory_order_acquire);
    if (now != old) return now;
  }
}

}  // namespace dpar::detail
