// dpar::par (the global pool, DPAR_NUM_THREADS = the bench thread count), dpar::seq,
// and dpar::deterministic(dpar::par).

#include "bench_common.hpp"

#include <dpar/dpar.hpp>

namespace bench {
namespace {

template <class T, class Policy>
void add_all(const std::string& impl, Policy policy) {
  add<T>(algo::transform, impl, [policy](const arrays<T>& d) {
    dpar::transform(policy, d.x, d.x + d.n, d.z, [](T v) { return v * T(2) + T(1); });
    return T{};
  });
  add<T>(algo::reduce, impl, [policy](const arrays<T>& d) { return dpar::reduce(policy, d.x, d.x + d.n, T{}); });
  add<T>(algo::dot, impl,
         [policy](const arrays<T>& d) { return dpar::transform_reduce(policy, d.x, d.x + d.n, d.y, T{}); });
  add<T>(algo::inclusive_scan, impl, [policy](const arrays<T>& d) {
    dpar::inclusive_scan(policy, d.x, d.x + d.n, d.z);
    return T{};
  });
  add<T>(algo::exclusive_scan, impl, [policy](const arrays<T>& d) {
    dpar::exclusive_scan(policy, d.x, d.x + d.n, d.z, T{});
    return T{};
  });
}

}  // namespace

void register_dpar() {
  add_all<float>("dpar_par", dpar::par);
  add_all<double>("dpar_par", dpar::par);
  add_all<float>("dpar_seq", dpar::seq);
  add_all<double>("dpar_seq", dpar::seq);
  // Reproducible mode: correctly rounded sums, fixed-order scans (issue 11).
  add_all<float>("dpar_deterministic", dpar::deterministic(dpar::par));
  add_all<double>("dpar_deterministic", dpar::deterministic(dpar::par));
  static dpar::thread_pool two(2);
  add_latency("dpar", [] { two.run([](std::size_t, std::size_t) {}); });
}

}  // namespace bench
