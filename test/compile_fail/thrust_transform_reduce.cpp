// Must not compile: Thrust's order (first, last, unary_op, init, binary_op);
// the error names the mix-up.
#include <dpar/dpar.hpp>
#include <functional>
#include <vector>
int main() {
  std::vector<int> v{1, 2, 3};
  dpar::transform_reduce(dpar::par, v.begin(), v.end(), [](int x) { return x * x; }, 0, std::plus<>{});
}
