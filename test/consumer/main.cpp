// Built against an installed dpar: checks the package exports a usable target.
#include <dpar/dpar.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

int main() {
  std::vector<long> v(100000);
  std::iota(v.begin(), v.end(), 1L);
  long sum = dpar::reduce(dpar::par, v, 0L);
  long expected = 100000L * 100001L / 2;
  std::printf("consumer: sum %ld, expected %ld\n", sum, expected);
  return sum == expected ? 0 : 1;
}
