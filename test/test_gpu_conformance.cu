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
#include <thrust/device_vector.h>

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
