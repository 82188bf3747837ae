// Must not compile: the first argument is not a dpar execution policy.
#include <dpar/dpar.hpp>
#include <vector>
int main() {
  std::vector<int> v{1, 2, 3};
  return dpar::reduce(42, v, 0);
}
