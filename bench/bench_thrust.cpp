// Thrust (CCCL, from the CUDA toolkit) on its OpenMP backend, thrust::omp::par.

#include "bench_common.hpp"

#include <thrust/binary_search.h>
#include <thrust/copy.h>
#include <thrust/extrema.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/inner_product.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/system/omp/execution_policy.h>
#include <thrust/transform.h>

namespace bench {
namespace {

template <class T>
struct positive {
  bool operator()(T v) const { return v > T(0); }
};

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
  add<T>(algo::copy_if, "thrust_omp", [](const arrays<T>& d) {
    return T(thrust::copy_if(thrust::omp::par, d.x, d.x + d.n, d.z, positive<T>()) - d.z);
  });
  add<T>(algo::min_element, "thrust_omp", [](const arrays<T>& d) {
    return d.n == 0 ? T{} : *thrust::min_element(thrust::omp::par, d.x, d.x + d.n);
  });
  add<T>(algo::lower_bound, "thrust_omp", [](const arrays<T>& d) {
    const T* h = search_haystack<T>();
    thrust::lower_bound(thrust::omp::par, h, h + search_haystack_size, d.x, d.x + d.n, d.z);
    return T{};
  });
  add<T>(algo::reduce_by_key, "thrust_omp", [](const arrays<T>& d) {
    thrust::counting_iterator<std::size_t> keys(0);
    auto ends = thrust::reduce_by_key(thrust::omp::par, keys, keys + static_cast<std::ptrdiff_t>(d.n), d.x,
                                      run_keys_out(), d.z, run_key_eq{});
    return T(ends.second - d.z);
  });
}

}  // namespace

void register_thrust() {
  add_thrust<float>();
  add_thrust<double>();
}

}  // namespace bench
