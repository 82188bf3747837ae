// Run by CTest with DPAR_NUM_THREADS set. "test_env N": the global pool must
// have N threads. "test_env bad": the first dpar::par call must throw
// std::invalid_argument naming DPAR_NUM_THREADS, and do so again on retry.
#include <dpar/dpar.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::string mode = argv[1];
  std::vector<int> v(100000, 1);
  if (mode != "bad") {
    std::size_t want = std::stoul(mode);
    int sum = dpar::reduce(dpar::par, v, 0);
    std::printf("global pool size %zu (want %zu), sum %d\n", dpar::thread_pool::global().size(), want, sum);
    return dpar::thread_pool::global().size() == want && sum == 100000 ? 0 : 1;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      dpar::reduce(dpar::par, v, 0);
      std::printf("no exception for DPAR_NUM_THREADS='%s'\n", std::getenv("DPAR_NUM_THREADS"));
      return 1;
    } catch (const std::invalid_argument& e) {
      std::printf("attempt %d: %s\n", attempt, e.what());
      if (std::string(e.what()).find("DPAR_NUM_THREADS") == std::string::npos) return 1;
    }
  }
  // The sequential policy does not touch the global pool and keeps working.
  return dpar::reduce(dpar::seq, v, 0) == 100000 ? 0 : 1;
}
