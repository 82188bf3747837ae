#pragma once
// Helpers for the GPU tests: the multi_gpu device lists, and host threads run
// at once under a watchdog.

#include <cuda_runtime_api.h>

#include <exception>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "collective_common.hpp"  // within_seconds

namespace dpar_test {

// [0] to [0,0,0,0] (each entry its own shard and stream, so every multi-device
// path runs on one GPU); where there are several GPUs also distinct devices
// (the NCCL path of all_reduce, in both orders), a mix, and every device.
inline std::vector<std::vector<int>> device_lists() {
  std::vector<std::vector<int>> l = {{0}, {0, 0}, {0, 0, 0}, {0, 0, 0, 0}};
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
  }
  if (count >= 2) {
    l.push_back({0, 1});
    l.push_back({1, 0});  // the communicators of {0, 1}, ranks permuted
    l.push_back({1, 0, 1});
    std::vector<int> all(static_cast<std::size_t>(count));
    std::iota(all.begin(), all.end(), 0);
    if (count > 2) l.push_back(all);
  }
  return l;
}

inline std::string name_of(const std::vector<int>& list) {
  std::string s = "[";
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(list[i]);
  }
  return s + "]";
}

// Runs body(t) for t = 0 .. threads-1, each on its own host thread, all at
// once; a hang past `seconds` aborts (the watchdog). Then rethrows what a
// thread threw (Catch's assertions are not thread-safe: count failures in
// body, check them after).
template <class Body>
void on_host_threads(int threads, int seconds, const char* what, Body body) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  within_seconds(seconds, what, [&] {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        try {
          body(t);
        } catch (...) {
          errors[static_cast<std::size_t>(t)] = std::current_exception();
        }
      });
    for (auto& th : pool) th.join();
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace dpar_test
