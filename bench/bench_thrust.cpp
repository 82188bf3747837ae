// Thrust (CCCL, from the CUDA toolkit) on its OpenMP backend, thrust::omp::par.

#include "bench_common.hpp"

#include <thrust/functional.h>
#include <thrust/inner_product.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/system/omp/execution_policy.h>
#include <thrust/transform.h>

namespace bench {
namespace {

template <class T>
struct twice_plus_one {
  T operator()(T v) const { return v * T(2) + T(1); }
};

template <class T>
void add_thrust() {
  add<T>(algo::transform, "thrust_omp", [](const arrays<T>& d) {
    thrust::transform(thrust::omp::par, d.x, d.x + d.n, d.z, twice_plus_one<T>());
    return T{};
  });
  add<T>(algo::reduce, "thrust_omp", [](const arrays<T>& d) { return thrust::reduce(thrust::omp::par, d.x, d.x + d.n, T{}); });
  add<T>(algo::dot, "thrust_omp",
         [](const arrays<T>& d) { return thrust::inner_product(thrust::omp::par, d.x, d.x + d.n, d.y, T{}); });
  add<T>(algo::inclusive_scan, "thrust_omp", [](const arrays<T>& d) {
    thrust::inclusive_scan(thrust::omp::par, d.x, d.x + d.n, d.z);
    return T{};
  });
  add<T>(algo::exclusive_scan, "thrust_omp", [](const arrays<T>& d) {
    thrust::exclusive_scan(thrust::omp::par, d.x, d.x + d.n, d.z, T{});
    return T{};
  });
}

}  // namespace

void register_thrust() {
  add_thrust<float>();
  add_thrust<double>();
}

}  // namespace bench
