#pragma once
// Helpers for the collective tests: a non-commutative op, a watchdog that
// turns a hang into a failure, and a sequential all-reduce reference.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "mat2.hpp"

namespace dpar_test {

// A random 2x2 matrix (mat2.hpp) from a caller-held generator state.
inline mat2 random_mat2(std::uint64_t& state) {
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % mat2::p;
  };
  return {next(), next(), next(), next()};
}

// Runs body; if it does not return within `seconds`, reports and aborts the
// process, so a deadlock fails the test instead of hanging CI.
template <class Body>
void within_seconds(int seconds, const char* what, Body&& body) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock lock(m);
    if (!cv.wait_for(lock, std::chrono::seconds(seconds), [&] { return done; })) {
      std::fprintf(stderr, "TIMEOUT: '%s' did not finish within %d s (deadlock?)\n", what, seconds);
      std::abort();
    }
  });
  auto finish = [&] {
    {
      std::lock_guard lock(m);
      done = true;
    }
    cv.notify_one();
    watchdog.join();
  };
  try {
    body();
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

// Element-wise op(...op(op(b0, b1), b2)..., b[K-1]), the order every backend must use.
template <class T, class Op>
std::vector<T> reference_all_reduce(const std::vector<std::vector<T>>& buffers, Op op) {
  std::vector<T> out = buffers.at(0);
  for (std::size_t r = 1; r < buffers.size(); ++r)
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = op(out[i], buffers[r][i]);
  return out;
}

}  // namespace dpar_test
