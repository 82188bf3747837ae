// A CUDA consumer of the installed package: dpar::dpar must give nvcc the
// flags dpar/cuda.hpp needs (C++20, extended lambdas). Exits 77 (skipped)
// without a CUDA device.
#include <dpar/cuda.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("SKIPPED: built; no CUDA device to run on\n");
    return 77;
  }
  std::vector<long> v(100000);
  std::iota(v.begin(), v.end(), 1L);
  dpar::device_vector<long> d(v);
  long sum = dpar::reduce(dpar::gpu, d, 0L, [] __host__ __device__(long a, long b) { return a + b; });
  long expected = 100000L * 100001L / 2;
  std::printf("consumer_cuda: sum %ld, expected %ld\n", sum, expected);
  return sum == expected ? 0 : 1;
}
