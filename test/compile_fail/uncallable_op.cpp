// Must not compile: the op cannot combine two ints.
#include <dpar/dpar.hpp>
#include <string>
#include <vector>
int main() {
  std::vector<int> v{1, 2, 3};
  return dpar::reduce(dpar::seq, v, 0, [](const std::string& a, const std::string& b) { return a + b; });
}
