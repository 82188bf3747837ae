// Must not compile: Thrust's order (first, last, d_first, init, op); the
// error names the mix-up.
#include <dpar/dpar.hpp>
#include <functional>
#include <vector>
int main() {
  std::vector<int> v{1, 2, 3}, out(3);
  dpar::inclusive_scan(dpar::par, v.begin(), v.end(), out.begin(), 10, std::plus<>{});
}
