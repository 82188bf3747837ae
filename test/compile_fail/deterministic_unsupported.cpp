// Must not compile: a policy with no deterministic backend (as the GPU policies
// are for now) cannot be wrapped in dpar::deterministic.
#include <dpar/dpar.hpp>
#include <vector>
struct custom_policy {
  using backend = dpar::detail::seq::backend;
};
template <>
struct dpar::is_execution_policy<custom_policy> : std::true_type {};
int main() {
  std::vector<double> v{1, 2, 3};
  return static_cast<int>(dpar::reduce(dpar::deterministic(custom_policy{}), v, 0.0));
}
