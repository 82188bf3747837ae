// Must not compile: a new backend without scans is named by the concept it fails.
#include <dpar/dpar.hpp>
struct my_backend : dpar::detail::seq::backend {
  template <class... A>
  static void inclusive_scan(A&&...) = delete;
};
static_assert(dpar::detail::backend_for<my_backend, dpar::sequenced_policy>);
int main() {}
