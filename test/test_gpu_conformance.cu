// The conformance suite (conformance.hpp) on the GPU policies: dpar::gpu with
// its inputs in thrust::device_vector, and dpar::multi_gpu on the device lists
// [0] to [0,0,0,0] (each entry its own shard and stream, so every multi-device
// path runs on one GPU; distinct devices too where there are several). Run by gpu_main.cpp, which skips (exit
// 77) without a CUDA device; the [nodevice] case runs everywhere.
//
// multi_gpu takes the suite's inputs as host vectors: the suite is written
// against the std-shaped front doors (iterators and ranges), which multi_gpu
// serves by scattering into sharded_vectors, running every sharded algorithm
// (shard-local work, partials combined in order, scan carries) and gathering.
// sharded_vector's own overloads are tested in test_multi_gpu.cu.
//
// Not here: the DPAR_CONFORMANCE_HOST group (user functions that throw or call
// dpar::par, types without a default constructor), which a device cannot run.
// One translation unit for both policies, and few element types (int, float,
// double, and the 2x2 matrices of the TYPES group): each costs CUB
// instantiations.
#include <dpar/cuda.hpp>

#include <thrust/copy.h>
#include <thrust/transform.h>
#include <thrust/device_vector.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

#include "common.hpp"
#include "conformance.hpp"
#include "gpu_common.hpp"  // device_lists

namespace {

// The GPU adaptors: the suite's sizes; no DPAR_CONFORMANCE_HOST group.
struct device_adaptor {
  static inline const std::vector<std::size_t>& sizes = dpar_test::sizes;
};

struct gpu_adaptor : device_adaptor {
  // Both run on the legacy default stream, which orders them with thrust's copies.
  template <class Body>
  static void for_each_policy(Body&& body) {
    body(dpar::gpu, std::string("gpu"));
    body(dpar::gpu.on(0), std::string("gpu.on(0)"));
  }
  template <class T>
  static thrust::device_vector<T> place(const std::vector<T>& global) {
    return thrust::device_vector<T>(global.begin(), global.end());
  }
  template <class T>
  static std::vector<T> host(const thrust::device_vector<T>& part) {
    std::vector<T> h(part.size());
    thrust::copy(part.begin(), part.end(), h.begin());
    return h;
  }
};

struct multi_gpu_adaptor : device_adaptor, conformance::all_data_in_host_vectors {
  template <class Body>
  static void for_each_policy(Body&& body) {
    for (const auto& list : dpar_test::device_lists())
      body(dpar::multi_gpu(list), "multi_gpu(" + dpar_test::name_of(list) + ")");
  }
};

}  // namespace

DPAR_CONFORMANCE_ALGORITHMS(gpu_adaptor, "gpu", int, float, double)
DPAR_CONFORMANCE_TYPES(gpu_adaptor, "gpu")
DPAR_CONFORMANCE_ALGORITHMS(multi_gpu_adaptor, "multi_gpu", int, float, double)
DPAR_CONFORMANCE_TYPES(multi_gpu_adaptor, "multi_gpu")

// The 2b algorithms on dpar::gpu against std on a host copy (int, raw device
// pointers: one instantiation each).
namespace gpu_algos {
struct positive {
  __host__ __device__ bool operator()(int x) const { return x > 0; }
};
struct above_40 {
  __host__ __device__ bool operator()(int x) const { return x > 40; }
};
struct square {
  __host__ __device__ int operator()(int x) const { return x * x; }
};
struct add_one {
  __host__ __device__ void operator()(int& x) const { ++x; }
};
struct keep_left {  // associative, not commutative: a segment's first value
  __host__ __device__ int operator()(int a, int) const { return a; }
};

void check_all(std::size_t n) {
  std::vector<int> h(n), keys(n);
  std::uint32_t state = 12345u + static_cast<std::uint32_t>(n);
  for (std::size_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    h[i] = static_cast<int>(state >> 16) % 100 - 50;
    keys[i] = static_cast<int>(i / 7 + (i % 13 == 0 ? 1 : 0));
  }
  thrust::device_vector<int> dv(h.begin(), h.end()), dk(keys.begin(), keys.end()), dout(n + 1), dout2(n + 1);
  const int* d = thrust::raw_pointer_cast(dv.data());
  const int* k = thrust::raw_pointer_cast(dk.data());
  int* out = thrust::raw_pointer_cast(dout.data());
  int* out2 = thrust::raw_pointer_cast(dout2.data());
  auto host = [&](const thrust::device_vector<int>& v, std::size_t m) {
    std::vector<int> r(m);
    thrust::copy(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m), r.begin());
    return r;
  };
  const auto g = dpar::gpu;
  auto index = [&](const int* it) { return it - d; };

  std::vector<int> want;
  std::copy_if(h.begin(), h.end(), std::back_inserter(want), positive{});
  int* e = dpar::copy_if(g, d, d + n, out, positive{});
  CHECK(static_cast<std::size_t>(e - out) == want.size());
  CHECK(host(dout, want.size()) == want);
  want.clear();
  std::remove_copy_if(h.begin(), h.end(), std::back_inserter(want), positive{});
  e = dpar::remove_copy_if(g, d, d + n, out, positive{});
  CHECK(host(dout, static_cast<std::size_t>(e - out)) == want);

  CHECK(dpar::count_if(g, d, d + n, positive{}) == std::count_if(h.begin(), h.end(), positive{}));
  CHECK(dpar::count(g, d, d + n, 7) == std::count(h.begin(), h.end(), 7));
  CHECK(dpar::any_of(g, d, d + n, above_40{}) == std::any_of(h.begin(), h.end(), above_40{}));
  CHECK(dpar::all_of(g, d, d + n, positive{}) == std::all_of(h.begin(), h.end(), positive{}));
  CHECK(dpar::none_of(g, d, d + n, above_40{}) == std::none_of(h.begin(), h.end(), above_40{}));
  CHECK(index(dpar::find_if(g, d, d + n, above_40{})) == std::find_if(h.begin(), h.end(), above_40{}) - h.begin());
  CHECK(index(dpar::find(g, d, d + n, -3)) == std::find(h.begin(), h.end(), -3) - h.begin());

  CHECK(index(dpar::min_element(g, d, d + n)) == std::min_element(h.begin(), h.end()) - h.begin());
  CHECK(index(dpar::max_element(g, d, d + n)) == std::max_element(h.begin(), h.end()) - h.begin());
  auto [lo, hi] = dpar::minmax_element(g, d, d + n, std::greater<>{});
  auto [wlo, whi] = std::minmax_element(h.begin(), h.end(), std::greater<>{});
  CHECK(index(lo) == wlo - h.begin());
  CHECK(index(hi) == whi - h.begin());

  // the needles are the values, the haystack the sorted values
  std::vector<int> sorted = h;
  std::sort(sorted.begin(), sorted.end());
  thrust::device_vector<int> dsorted(sorted.begin(), sorted.end());
  const int* s = thrust::raw_pointer_cast(dsorted.data());
  std::vector<int> bounds(n);
  for (std::size_t i = 0; i < n; ++i)
    bounds[i] = static_cast<int>(std::upper_bound(sorted.begin(), sorted.end(), h[i]) - sorted.begin());
  CHECK(dpar::upper_bound(g, s, s + n, d, d + n, out) == out + n);
  CHECK(host(dout, n) == bounds);
  for (std::size_t i = 0; i < n; ++i)
    bounds[i] = static_cast<int>(std::lower_bound(sorted.begin(), sorted.end(), h[i] + 1) - sorted.begin());
  thrust::device_vector<int> plus_one(h.begin(), h.end());
  thrust::transform(plus_one.begin(), plus_one.end(), plus_one.begin(), [] __device__(int x) { return x + 1; });
  const int* p1 = thrust::raw_pointer_cast(plus_one.data());
  dpar::lower_bound(g, s, s + n, p1, p1 + n, out);
  CHECK(host(dout, n) == bounds);
  thrust::device_vector<bool> found(n);
  dpar::binary_search(g, s, s + n, p1, p1 + n, thrust::raw_pointer_cast(found.data()));
  std::vector<bool> found_h(n);
  thrust::copy(found.begin(), found.end(), found_h.begin());
  for (std::size_t i = 0; i < n; ++i) CHECK(found_h[i] == std::binary_search(sorted.begin(), sorted.end(), h[i] + 1));

  // by key: sequential references
  std::vector<int> want_keys, want_values, incl(n), excl(n);
  for (std::size_t i = 0; i < n; ++i) {
    const bool head = i == 0 || keys[i] != keys[i - 1];
    if (head) want_keys.push_back(keys[i]), want_values.push_back(h[i]);
    incl[i] = head ? h[i] : incl[i - 1] + h[i];
    excl[i] = head ? 10 : excl[i - 1] + h[i - 1];
  }
  auto ends = dpar::reduce_by_key(g, k, k + n, d, out, out2, std::equal_to<>{}, keep_left{});
  CHECK(static_cast<std::size_t>(ends.first - out) == want_keys.size());
  CHECK(static_cast<std::size_t>(ends.second - out2) == want_keys.size());
  CHECK(host(dout, want_keys.size()) == want_keys);
  CHECK(host(dout2, want_keys.size()) == want_values);
  CHECK(dpar::inclusive_scan_by_key(g, k, k + n, d, out) == out + n);
  CHECK(host(dout, n) == incl);
  dpar::exclusive_scan_by_key(g, k, k + n, d, out, 10);
  CHECK(host(dout, n) == excl);
  dpar::copy(g, d, d + n, out);
  CHECK(host(dout, n) == h);

  // the rest of the compactions
  std::vector<int> want_true, want_false;
  std::partition_copy(h.begin(), h.end(), std::back_inserter(want_true), std::back_inserter(want_false), positive{});
  auto [true_end, false_end] = dpar::partition_copy(g, d, d + n, out, out2, positive{});
  CHECK(host(dout, static_cast<std::size_t>(true_end - out)) == want_true);
  CHECK(host(dout2, static_cast<std::size_t>(false_end - out2)) == want_false);
  std::vector<int> hw = h;
  thrust::device_vector<int> work(h.begin(), h.end());
  int* w = thrust::raw_pointer_cast(work.data());
  auto kept = static_cast<std::size_t>(std::remove_if(hw.begin(), hw.end(), positive{}) - hw.begin());
  CHECK(static_cast<std::size_t>(dpar::remove_if(g, w, w + n, positive{}) - w) == kept);
  CHECK(host(work, kept) == std::vector<int>(hw.begin(), hw.begin() + static_cast<std::ptrdiff_t>(kept)));
  hw = h;
  thrust::copy(h.begin(), h.end(), work.begin());
  kept = static_cast<std::size_t>(std::stable_partition(hw.begin(), hw.end(), positive{}) - hw.begin());
  CHECK(static_cast<std::size_t>(dpar::stable_partition(g, w, w + n, positive{}) - w) == kept);
  CHECK(host(work, n) == hw);
  std::vector<int> runs;  // the keys: runs of equal values
  std::unique_copy(keys.begin(), keys.end(), std::back_inserter(runs));
  CHECK(host(dout, static_cast<std::size_t>(dpar::unique_copy(g, k, k + n, out) - out)) == runs);
  thrust::copy(keys.begin(), keys.end(), work.begin());
  CHECK(host(work, static_cast<std::size_t>(dpar::unique(g, w, w + n, std::equal_to<>{}) - w)) == runs);

  // equal and mismatch: the values against a copy with one changed
  hw = h;
  if (n > 0) hw[n / 2] += 1;
  thrust::copy(hw.begin(), hw.end(), work.begin());
  CHECK(dpar::equal(g, d, d + n, d) == true);
  CHECK(dpar::equal(g, d, d + n, w) == (n == 0));
  CHECK(dpar::equal(g, d, d + n, w, w + (n > 0 ? n - 1 : 0)) == (n == 0));
  auto [m1, m2] = dpar::mismatch(g, d, d + n, w);
  CHECK(index(m1) == std::mismatch(h.begin(), h.end(), hw.begin()).first - h.begin());
  CHECK(m2 - w == m1 - d);

  // movement: fill, iota, for_each_n, adjacent_difference, gather, scatter
  dpar::fill(g, out, out + n, 5);
  CHECK(host(dout, n) == std::vector<int>(n, 5));
  dpar::iota(g, out, out + n, -3);
  std::vector<int> want_iota(n);
  std::iota(want_iota.begin(), want_iota.end(), -3);
  CHECK(host(dout, n) == want_iota);
  CHECK(dpar::for_each_n(g, out, n / 2, add_one{}) == out + n / 2);
  for (std::size_t i = 0; i < n / 2; ++i) ++want_iota[i];
  CHECK(host(dout, n) == want_iota);
  std::vector<int> want_diff(n);
  std::adjacent_difference(h.begin(), h.end(), want_diff.begin());
  CHECK(dpar::adjacent_difference(g, d, d + n, out) == out + n);
  CHECK(host(dout, n) == want_diff);
  std::vector<int> reversed(n);
  for (std::size_t i = 0; i < n; ++i) reversed[i] = static_cast<int>(n - 1 - i);
  thrust::device_vector<int> dmap(reversed.begin(), reversed.end());
  const int* map = thrust::raw_pointer_cast(dmap.data());
  std::vector<int> want_rev(h.rbegin(), h.rend());
  CHECK(dpar::gather(g, map, map + n, d, out) == out + n);
  CHECK(host(dout, n) == want_rev);
  dpar::scatter(g, d, d + n, map, out2);
  CHECK(host(dout2, n) == want_rev);

  // the transform scans
  std::vector<int> want_scan(n);
  std::transform_inclusive_scan(h.begin(), h.end(), want_scan.begin(), std::plus<>{}, square{});
  CHECK(dpar::transform_inclusive_scan(g, d, d + n, out, std::plus<>{}, square{}) == out + n);
  CHECK(host(dout, n) == want_scan);
  std::transform_inclusive_scan(h.begin(), h.end(), want_scan.begin(), std::plus<>{}, square{}, 7);
  dpar::transform_inclusive_scan(g, d, d + n, out, std::plus<>{}, square{}, 7);
  CHECK(host(dout, n) == want_scan);
  std::transform_exclusive_scan(h.begin(), h.end(), want_scan.begin(), 7, std::plus<>{}, square{});
  dpar::transform_exclusive_scan(g, d, d + n, out, 7, std::plus<>{}, square{});
  CHECK(host(dout, n) == want_scan);
}
}  // namespace gpu_algos

TEST_CASE("compactions, counts, searches, extremes, by-key algorithms, movement and transform scans on dpar::gpu "
          "match std", "[gpu][derived]") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1009}, std::size_t{100003}}) {
    INFO("n=" << n);
    gpu_algos::check_all(n);
  }
}

// Without a device the suite cannot pass by doing nothing: making the
// adaptors' policies is already a cuda_error that says why.
TEST_CASE("gpu conformance adaptors need a device", "[nodevice]") {
  using Catch::Matchers::Contains;
  int count = 0;
  const bool have_device = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  (void)cudaGetLastError();
  int policies = 0;
  auto count_policy = [&](const auto&, const std::string&) { ++policies; };
  if (!have_device) {
    CHECK_THROWS_WITH(gpu_adaptor::for_each_policy(count_policy), Contains("no CUDA device"));
    CHECK_THROWS_WITH(multi_gpu_adaptor::for_each_policy(count_policy), Contains("no CUDA device"));
  } else {
    gpu_adaptor::for_each_policy(count_policy);
    multi_gpu_adaptor::for_each_policy(count_policy);
    CHECK(policies == 2 + static_cast<int>(dpar_test::device_lists().size()));
  }
}
