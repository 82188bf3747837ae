// Must not compile (for now): dpar::deterministic has no GPU backend yet, and
// says so at compile time rather than running something non-reproducible.
#include <dpar/cuda.hpp>
int main() {
  auto p = dpar::deterministic(dpar::gpu);
  (void)p;
}
