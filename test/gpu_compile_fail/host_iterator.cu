// Must not compile: dpar::gpu given host iterators. run.cmake checks that nvcc
// fails with dpar's message rather than deep inside CUB.
#include <dpar/cuda.hpp>

#include <vector>

int main() {
  std::vector<float> host(10);
  return dpar::reduce(dpar::gpu, host.begin(), host.end(), 0.0f) > 0;
}
