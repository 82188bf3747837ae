// dpar::gpu beyond the conformance suite (test_gpu_conformance.cu has every
// algorithm against std:: on int, float, double and 2x2 matrices mod p):
// a custom struct with a user op, ordered float sums, thrust and fancy
// iterators, a user stream, device 0 named explicitly, the errors, a 288-byte
// element type (6x6 matrices) in the ordered reduce, T& functions on
// thrust::device_vector, cudaStreamPerThread from several host threads,
// dpar::deterministic(gpu) (sums of adversarial floats: the bits of
// deterministic(seq)) and (tag [big]) 2^27 elements. Run by gpu_main.cpp,
// which skips (exit 77) when there is no CUDA device.
//
// Inputs of float and double are small integers, so that every partial sum is
// exact whatever the order of operations and results can be compared exactly;
// one test uses real-valued floats with a tolerance.
#include <dpar/cuda.hpp>

#include <catch2/catch.hpp>

#include "exact_reference.hpp"  // adversarial float data
#include "gpu_common.hpp"       // on_host_threads
#include "mat2.hpp"

#include <thrust/device_vector.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace {

const std::vector<std::size_t> sizes = {0, 1, 2, 3, 7, 13, 97, 1009, 10007, 65537, std::size_t{1} << 20};
constexpr std::size_t big = std::size_t{1} << 27;

template <class T>
std::vector<T> random_values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(-30, 30);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

// A custom value type with a user op that dpar does not know to be commutative.
struct point {
  int x;
  float y;
  friend bool operator==(const point&, const point&) = default;
};
struct point_add {
  __host__ __device__ point operator()(const point& a, const point& b) const { return {a.x + b.x, a.y + b.y}; }
};

// 2x2 matrices mod p: associative, not commutative.
using dpar_test::mat2;
using mat_mul = dpar_test::mat2_mul;
constexpr mat2 identity = dpar_test::mat2_identity;
inline std::vector<mat2> random_matrices(std::size_t n, std::uint64_t seed) { return dpar_test::random_mat2s(n, seed); }

struct square_int {
  __host__ __device__ int operator()(int x) const { return x * x; }
};

// 6x6 matrices mod 1009 held as doubles: 288 bytes, associative and exact
// (entries below 1009, so sums of products stay far below 2^53), not
// commutative. Too big for a reduction whose block reduce keeps one value per
// thread in shared memory.
struct mat6 {
  static constexpr double p = 1009;
  double m[6][6];
  friend bool operator==(const mat6&, const mat6&) = default;
};
static_assert(sizeof(mat6) == 288);
struct mat6_mul {
  __host__ __device__ mat6 operator()(const mat6& x, const mat6& y) const {
    mat6 z{};
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 6; ++j) {
        double sum = 0;
        for (int k = 0; k < 6; ++k) sum += x.m[i][k] * y.m[k][j];
        z.m[i][j] = fmod(sum, mat6::p);
      }
    return z;
  }
};
struct mat6_transpose {
  __host__ __device__ mat6 operator()(const mat6& x) const {
    mat6 t{};
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 6; ++j) t.m[i][j] = x.m[j][i];
    return t;
  }
};
std::vector<mat6> random_mat6s(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(0, 1008);
  std::vector<mat6> v(n);
  for (auto& x : v)
    for (auto& row : x.m)
      for (auto& e : row) e = d(rng);
  return v;
}

struct add_in_place {
  int k;
  __host__ __device__ void operator()(int& x) const { x += k; }
};

template <class T>
std::vector<T> host_of(const dpar::device_vector<T>& v) {
  return v.to_host();
}

}  // namespace

// deterministic(gpu): float and double sums staged through the host are the
// bits of deterministic(seq) on the same data; everything else is what plain
// dpar::gpu gives.
template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// One rounding, the same on host and device; a struct, as a fancy iterator needs.
template <class T>
struct times3 {
  __host__ __device__ T operator()(T x) const { return x * T(3); }
};

TEMPLATE_TEST_CASE("deterministic(gpu) sums are the bits of deterministic(seq)", "[gpu][deterministic]", float,
                   double) {
  using T = TestType;
  const auto det_gpu = dpar::deterministic(dpar::gpu);
  const auto det_seq = dpar::deterministic(dpar::seq);
  const times3<T> triple;
  for (std::size_t n : sizes) {
    for (int kind = 0; kind < 3; ++kind) {
      INFO("n = " << n << ", data kind " << kind);
      auto a = kind == 0   ? dpar_test::wide_range<T>(n, n + 1)
               : kind == 1 ? dpar_test::cancelling<T>(n, n + 1)
                           : dpar_test::subnormal<T>(n, n + 1);
      const auto b = dpar_test::wide_range<T>(n, n + 2);
      const dpar::device_vector<T> da(a), db(b);
      const T init = T(0.375);
      CHECK(same_bits(dpar::reduce(det_gpu, da, init), dpar::reduce(det_seq, a, init)));
      CHECK(same_bits(dpar::reduce(det_gpu, da, 0.0, std::plus<double>{}),
                      dpar::reduce(det_seq, a, 0.0, std::plus<double>{})));
      CHECK(same_bits(dpar::reduce(det_gpu, da, 0.0f, std::plus<float>{}),
                      dpar::reduce(det_seq, a, 0.0f, std::plus<float>{})));
      CHECK(same_bits(dpar::transform_reduce(det_gpu, da, init, std::plus<>{}, triple),
                      dpar::transform_reduce(det_seq, a, init, std::plus<>{}, triple)));
      CHECK(same_bits(dpar::transform_reduce(det_gpu, da, db.begin(), init),
                      dpar::transform_reduce(det_seq, a, b.begin(), init)));
      CHECK(same_bits(dpar::transform_reduce(det_gpu, da, db.begin(), 0.0),
                      dpar::transform_reduce(det_seq, a, b.begin(), 0.0)));
    }
  }
  // thrust iterators and a fancy one (the terms are materialized on the device)
  const auto a = dpar_test::cancelling<T>(10007, 5);
  thrust::device_vector<T> ta(a.begin(), a.end());
  CHECK(same_bits(dpar::reduce(det_gpu, ta.begin(), ta.end(), T(0)), dpar::reduce(det_seq, a, T(0))));
  auto tripled = thrust::make_transform_iterator(ta.begin(), triple);
  CHECK(same_bits(dpar::reduce(det_gpu, tripled, tripled + static_cast<std::ptrdiff_t>(a.size()), T(0)),
                  dpar::transform_reduce(det_seq, a, T(0), std::plus<>{}, triple)));
  // wrapping twice changes nothing
  static_assert(std::is_same_v<decltype(dpar::deterministic(det_gpu)), std::remove_const_t<decltype(det_gpu)>>);
}

TEST_CASE("deterministic(gpu) scans, other ops and element-wise algorithms are plain gpu's", "[gpu][deterministic]") {
  const auto det_gpu = dpar::deterministic(dpar::gpu);
  mat_mul mul;
  const mat2 init{2, 1, 1, 1};
  for (std::size_t n : sizes) {
    INFO("n = " << n);
    // non-commutative op: reduce and scans in sequence order
    auto m = random_matrices(n, n + 9);
    dpar::device_vector<mat2> dm(m), want(n), got(n);
    CHECK(dpar::reduce(det_gpu, dm, init, mul) == dpar::reduce(dpar::gpu, dm, init, mul));
    dpar::inclusive_scan(dpar::gpu, dm.begin(), dm.end(), want.begin(), mul, init);
    dpar::inclusive_scan(det_gpu, dm.begin(), dm.end(), got.begin(), mul, init);
    CHECK(host_of(got) == host_of(want));
    dpar::exclusive_scan(dpar::gpu, dm.begin(), dm.end(), want.begin(), init, mul);
    dpar::exclusive_scan(det_gpu, dm.begin(), dm.end(), got.begin(), init, mul);
    CHECK(host_of(got) == host_of(want));

    // real-valued float scans and a max (not a sum): the same as plain gpu
    auto f = dpar_test::wide_range<float>(n, n + 10);
    dpar::device_vector<float> df(f), fwant(n), fgot(n);
    dpar::inclusive_scan(dpar::gpu, df.begin(), df.end(), fwant.begin(), std::plus<>{});
    dpar::inclusive_scan(det_gpu, df.begin(), df.end(), fgot.begin(), std::plus<>{});
    CHECK(host_of(fgot) == host_of(fwant));
    auto biggest = [] __host__ __device__(float x, float y) { return x < y ? y : x; };
    CHECK(dpar::reduce(det_gpu, df, -1e38f, biggest) == dpar::reduce(dpar::gpu, df, -1e38f, biggest));
    CHECK(dpar::reduce(det_gpu, df, -1e38f, biggest) == dpar::reduce(dpar::seq, f, -1e38f, biggest));

    // int sums are not staged; transform and for_each run on the device
    auto xs = random_values<int>(n, n + 11);
    dpar::device_vector<int> dx(xs);
    CHECK(dpar::reduce(det_gpu, dx, 0) == dpar::reduce(dpar::seq, xs, 0));
    dpar::transform(det_gpu, dx, dx.begin(), [] __host__ __device__(int x) { return 2 * x; });
    dpar::for_each(det_gpu, dx, [] __host__ __device__(int& x) { x += 1; });
    dpar::transform(dpar::seq, xs, xs.begin(), [](int x) { return 2 * x + 1; });
    CHECK(host_of(dx) == xs);
  }
}

TEST_CASE("gpu custom struct with a user op", "[gpu]") {
  for (std::size_t n : sizes) {
    INFO("n = " << n);
    auto xs = random_values<int>(n, n + 7);
    std::vector<point> a(n);
    for (std::size_t i = 0; i < n; ++i) a[i] = {xs[i], static_cast<float>(xs[i] % 7)};
    dpar::device_vector<point> da(a), out(n);
    CHECK(dpar::reduce(dpar::gpu, da, point{1, 2.f}, point_add{}) ==
          dpar::reduce(dpar::seq, a, point{1, 2.f}, point_add{}));
    std::vector<point> want(n);
    dpar::inclusive_scan(dpar::seq, a.begin(), a.end(), want.begin(), point_add{});
    dpar::inclusive_scan(dpar::gpu, da.begin(), da.end(), out.begin(), point_add{});
    CHECK(host_of(out) == want);
  }
}

TEST_CASE("gpu real-valued floats: reduce within rounding", "[gpu]") {
  const std::size_t n = std::size_t{1} << 20;
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> a(n);
  for (auto& x : a) x = d(rng);
  double exact = 0, magnitude = 0;
  for (float x : a) exact += x, magnitude += std::abs(x);
  dpar::device_vector<float> da(a);
  float got = dpar::reduce(dpar::gpu, da, 0.0f);
  // float rounding over a reduction tree and per-thread runs of a few thousand terms
  CHECK(std::abs(got - exact) <= 1e-4 * magnitude);
  float ordered = dpar::reduce(dpar::gpu, da, 0.0f, [] __host__ __device__(float x, float y) { return x + y; });
  CHECK(std::abs(ordered - exact) <= 1e-4 * magnitude);
}

TEST_CASE("gpu takes thrust::device_vector and fancy iterators", "[gpu]") {
  for (std::size_t n : {std::size_t{1}, std::size_t{1009}, std::size_t{1} << 20}) {
    INFO("n = " << n);
    auto a = random_values<int>(n, n + 8);
    thrust::device_vector<int> ta(a.begin(), a.end()), tout(n);
    CHECK(dpar::reduce(dpar::gpu, ta.begin(), ta.end(), 0) == dpar::reduce(dpar::seq, a, 0));
    CHECK(dpar::reduce(dpar::gpu, ta, 3) == dpar::reduce(dpar::seq, a, 3));  // as a range
    auto twice = [] __host__ __device__(int x) { return 2 * x; };
    dpar::transform(dpar::gpu, ta.begin(), ta.end(), tout.begin(), twice);
    std::vector<int> want(n), got(n);
    dpar::transform(dpar::seq, a, want.begin(), twice);
    thrust::copy(tout.begin(), tout.end(), got.begin());
    CHECK(got == want);
    dpar::inclusive_scan(dpar::gpu, ta.begin(), ta.end(), tout.begin());
    dpar::inclusive_scan(dpar::seq, a.begin(), a.end(), want.begin());
    thrust::copy(tout.begin(), tout.end(), got.begin());
    CHECK(got == want);

    // counting_iterator: 0 + 1 + ... + (n-1), in 64 bits
    thrust::counting_iterator<long long> first(0);
    auto nn = static_cast<long long>(n);
    CHECK(dpar::reduce(dpar::gpu, first, first + nn, 0LL) == nn * (nn - 1) / 2);
    // transform_iterator over device memory, non-commutative path. (Its functor
    // is a struct: a C++20 iterator must be default constructible, and a
    // lambda's closure type is not.)
    auto squares = thrust::make_transform_iterator(ta.begin(), square_int{});
    long long want_sq = 0;
    for (int x : a) want_sq += static_cast<long long>(x) * x;
    CHECK(dpar::reduce(dpar::gpu, squares, squares + nn, 0LL,
                       [] __host__ __device__(long long x, long long y) { return x + y; }) == want_sq);
  }
}

TEST_CASE("gpu on device 0 and a user stream", "[gpu]") {
  const std::size_t n = 100003;
  auto a = random_values<int>(n, 9);
  std::vector<int> want(n);
  dpar::inclusive_scan(dpar::seq, a.begin(), a.end(), want.begin());
  {
    auto policy = dpar::gpu.on(0);
    CHECK(policy.device() == 0);
    dpar::device_vector<int> da(a, 0), out(n, 0);
    CHECK(dpar::reduce(policy, da, 0) == dpar::reduce(dpar::seq, a, 0));
    dpar::inclusive_scan(policy, da, out.begin());
    policy.synchronize();
    CHECK(out.to_host() == want);
  }
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  {
    auto policy = dpar::gpu.on(0, stream);
    CHECK(policy.stream() == stream);
    dpar::device_vector<int> da(a, 0), out(n, 0);
    // queued back to back on the stream, then waited for once
    dpar::transform(policy, da, da.begin(), [] __host__ __device__(int x) { return x + 1; });
    dpar::inclusive_scan(policy, da, out.begin());
    dpar::transform(policy, out, out.begin(), [] __host__ __device__(int x) { return x - 1; });
    policy.synchronize();
    std::vector<int> shifted(n);
    for (std::size_t i = 0; i < n; ++i) shifted[i] = want[i] + static_cast<int>(i);
    CHECK(out.to_host() == shifted);
    // reduce waits for the stream by itself
    CHECK(dpar::reduce(policy, out, 0) == dpar::reduce(dpar::seq, shifted, 0));
  }
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("gpu non-commutative reduce of a 288-byte type (6x6 matrices)", "[gpu]") {
  mat6 identity6{};
  for (int i = 0; i < 6; ++i) identity6.m[i][i] = 1;
  const mat6 init = random_mat6s(1, 99)[0];
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{31}, std::size_t{257},
                        std::size_t{1031}, std::size_t{10007}, std::size_t{65537}}) {
    INFO("n = " << n);
    auto a = random_mat6s(n, n + 20);
    dpar::device_vector<mat6> da(a);
    CHECK(dpar::reduce(dpar::gpu, da, init, mat6_mul{}) == dpar::reduce(dpar::seq, a, init, mat6_mul{}));
    CHECK(dpar::reduce(dpar::gpu, da, identity6, mat6_mul{}) == dpar::reduce(dpar::seq, a, identity6, mat6_mul{}));
    CHECK(dpar::transform_reduce(dpar::gpu, da, init, mat6_mul{}, mat6_transpose{}) ==
          dpar::transform_reduce(dpar::seq, a, init, mat6_mul{}, mat6_transpose{}));
  }
}

TEST_CASE("gpu for_each with a T& function on thrust::device_vector iterators and ranges", "[gpu]") {
  // thrust::device_vector's own reference type is thrust::device_reference<int>,
  // which does not bind to int&; dpar::gpu passes the unwrapped element.
  static_assert(std::is_same_v<std::iter_reference_t<thrust::device_vector<int>::iterator>,
                               thrust::device_reference<int>>);
  static_assert(std::is_same_v<dpar::detail::element_reference_t<dpar::gpu_policy, thrust::device_vector<int>::iterator>,
                               int&>);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1009}, std::size_t{65537}}) {
    INFO("n = " << n);
    auto a = random_values<int>(n, n + 21);
    thrust::device_vector<int> ta(a.begin(), a.end());
    dpar::for_each(dpar::gpu, ta.begin(), ta.end(), add_in_place{3});
    dpar::for_each(dpar::gpu, ta, [] __host__ __device__(int& x) { x *= 2; });  // as a range
    dpar::for_each(dpar::gpu, ta.begin(), ta.end(), add_in_place{-1});
    dpar::gpu.synchronize();
    std::vector<int> want = a, got(n);
    dpar::for_each(dpar::seq, want, [](int& x) { x = (x + 3) * 2 - 1; });
    thrust::copy(ta.begin(), ta.end(), got.begin());
    CHECK(got == want);
  }
}

TEST_CASE("gpu cudaStreamPerThread from several host threads at once", "[gpu]") {
  // Each scan frees its temporary storage right after queuing. With storage
  // cached per stream handle, another thread's scan on "the same" handle
  // (cudaStreamPerThread means a different stream in each thread) could take
  // it while the first scan still runs, and both would read each other's
  // tile states: wrong sums, or a hang, which the watchdog turns into a failure.
  const std::size_t n = 300007, scans = 8;
  const int threads = 4, rounds = 5;
  std::vector<std::vector<int>> inputs, wants;
  for (int t = 0; t < threads; ++t) {
    inputs.push_back(random_values<int>(n, 100 + static_cast<std::uint64_t>(t)));
    wants.emplace_back(n);
    dpar::inclusive_scan(dpar::seq, inputs.back().begin(), inputs.back().end(), wants.back().begin());
  }
  std::vector<int> wrong(threads, 0);
  dpar_test::on_host_threads(threads, 120, "gpu scans on cudaStreamPerThread from 4 threads", [&](int t) {
    auto policy = dpar::gpu.on(0, cudaStreamPerThread);
    dpar::device_vector<int> in(inputs[t], 0);
    std::vector<dpar::device_vector<int>> outs;
    for (std::size_t i = 0; i < scans; ++i) outs.emplace_back(n, 0);
    for (int round = 0; round < rounds; ++round) {
      for (auto& out : outs) dpar::inclusive_scan(policy, in, out.begin());  // queued back to back
      policy.synchronize();
      for (auto& out : outs) wrong[t] += out.to_host() != wants[t];
    }
  });
  for (int t = 0; t < threads; ++t) {
    INFO("thread " << t);
    CHECK(wrong[t] == 0);
  }
}

TEST_CASE("gpu errors: bad device, host memory, device_vector sizes", "[gpu]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(dpar::gpu.on(9999), Contains("invalid device 9999"));
  CHECK_THROWS_AS(dpar::gpu.on(-1), dpar::cuda_error);
  CHECK_THROWS_WITH(dpar::device_vector<int>(10, 9999), Contains("9999"));
  std::vector<int> host(1000, 1);
  int pageable = 0;
  REQUIRE(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, 0) == cudaSuccess);
  if (!pageable) {
    CHECK_THROWS_WITH(dpar::reduce(dpar::gpu, host.data(), host.data() + host.size(), 0),
                      Contains("host memory") && Contains("dpar::reduce"));
    dpar::device_vector<int> out(host.size());
    CHECK_THROWS_WITH(dpar::transform(dpar::gpu, out.begin(), out.end(), host.data(),
                                      [] __host__ __device__(int x) { return x; }),
                      Contains("output") && Contains("host memory"));
  }
  dpar::device_vector<int> d(10);
  std::vector<int> wrong(11);
  CHECK_THROWS_WITH(d.copy_from_host(wrong), Contains("11") && Contains("10"));
  // the device still works after the refused calls
  CHECK(dpar::reduce(dpar::gpu, d, 5) == 5);
}

TEST_CASE("gpu 2^27 elements", "[gpu][big]") {
  auto a = random_values<int>(big, 10);
  dpar::device_vector<int> da(a), out(big);
  CHECK(dpar::reduce(dpar::gpu, da, 0) == dpar::reduce(dpar::seq, a, 0));
  std::vector<int> want(big);
  dpar::inclusive_scan(dpar::seq, a.begin(), a.end(), want.begin());
  dpar::inclusive_scan(dpar::gpu, da, out.begin());
  CHECK(out.to_host() == want);

  std::vector<float> af(a.begin(), a.end()), wantf(big);
  dpar::device_vector<float> df(af), outf(big);
  CHECK(dpar::reduce(dpar::gpu, df, 0.0f) == dpar::reduce(dpar::seq, af, 0.0f));
  auto f = [] __host__ __device__(float x) { return x * 3 - 1; };
  dpar::transform(dpar::gpu, df, outf.begin(), f);
  dpar::transform(dpar::seq, af, wantf.begin(), f);
  CHECK(outf.to_host() == wantf);

  auto m = random_matrices(big, 11);
  dpar::device_vector<mat2> dm(m);
  CHECK(dpar::reduce(dpar::gpu, dm, identity, mat_mul{}) == dpar::reduce(dpar::seq, m, identity, mat_mul{}));
}

TEST_CASE("no GPU or a bad device gives cuda_error", "[nodevice]") {
  using Catch::Matchers::Contains;
  int count = 0;
  bool have_device = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  (void)cudaGetLastError();
  if (!have_device) {
    float* p = nullptr;
    CHECK_THROWS_WITH(dpar::reduce(dpar::gpu, p, p, 0.0f), Contains("no CUDA device"));
    CHECK_THROWS_AS(dpar::reduce(dpar::gpu, p, p, 0.0f), dpar::cuda_error);
    CHECK_THROWS_WITH(dpar::inclusive_scan(dpar::gpu, p, p, p), Contains("no CUDA device"));
    CHECK_THROWS_WITH(dpar::gpu.on(0), Contains("no CUDA device"));
    CHECK_THROWS_WITH(dpar::gpu.synchronize(), Contains("no CUDA device"));
    CHECK_THROWS_WITH(dpar::device_vector<int>(10), Contains("no CUDA device"));
    try {
      dpar::gpu.on(0);
    } catch (const dpar::cuda_error& e) {
      CHECK(e.operation() == "cudaGetDeviceCount");
      CHECK(e.code() != cudaSuccess);
    }
  } else {
    CHECK_THROWS_WITH(dpar::gpu.on(9999), Contains("invalid device 9999"));
    CHECK_THROWS_AS(dpar::gpu.on(count), dpar::cuda_error);
  }
}

// ---- sort (issue 21): CUB's radix sort for arithmetic keys with std::less /
// std::greater, its merge sort otherwise; against std::stable_sort ----
namespace {
struct keyed_record {
  std::int64_t key;
  std::int64_t order;  // tells equal keys apart: stability
  bool operator==(const keyed_record&) const = default;
};
struct record_key_less {
  __host__ __device__ bool operator()(const keyed_record& a, const keyed_record& b) const { return a.key < b.key; }
};
}  // namespace

TEST_CASE("gpu sort, stable_sort and sort_by_key match std::stable_sort", "[gpu][sort]") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1009}, std::size_t{300007}}) {
    INFO("n = " << n);
    std::mt19937_64 rng(n);
    std::vector<int> ints(n);
    std::vector<float> floats(n);
    std::vector<keyed_record> records(n);
    std::vector<std::int64_t> positions(n);
    for (std::size_t i = 0; i < n; ++i) {
      ints[i] = static_cast<int>(rng());
      const auto r = rng() % 4;
      floats[i] = r == 0 ? -0.0f : r == 1 ? 0.0f : static_cast<float>(static_cast<int>(rng() % 200) - 100);
      records[i] = {static_cast<std::int64_t>(rng() % 50), static_cast<std::int64_t>(i)};
      positions[i] = static_cast<std::int64_t>(i);
    }
    auto want_ints = ints;
    std::sort(want_ints.begin(), want_ints.end());
    auto want_floats = floats;
    std::stable_sort(want_floats.begin(), want_floats.end(), std::greater<>{});
    auto want_records = records;
    std::stable_sort(want_records.begin(), want_records.end(), record_key_less{});
    auto want_positions = positions;  // positions stably sorted by their int key
    std::stable_sort(want_positions.begin(), want_positions.end(),
                     [&](std::int64_t a, std::int64_t b) { return ints[static_cast<std::size_t>(a)] < ints[static_cast<std::size_t>(b)]; });

    dpar::device_vector<int> di(ints);
    dpar::sort(dpar::gpu, di.begin(), di.end());
    CHECK(host_of(di) == want_ints);

    dpar::device_vector<float> df(floats);
    dpar::stable_sort(dpar::gpu, df.begin(), df.end(), std::greater<>{});
    const auto got_floats = host_of(df);
    bool same = got_floats.size() == want_floats.size();
    for (std::size_t i = 0; same && i < n; ++i) same = same_bits(got_floats[i], want_floats[i]);
    CHECK(same);  // -0.0 and +0.0 kept in input order

    dpar::device_vector<keyed_record> dr(records);
    dpar::stable_sort(dpar::gpu, dr.begin(), dr.end(), record_key_less{});
    CHECK(host_of(dr) == want_records);
    dpar::device_vector<keyed_record> dr2(records);
    dpar::sort(dpar::gpu, dr2.begin(), dr2.end(), record_key_less{});
    const auto got_records = host_of(dr2);
    CHECK(std::is_sorted(got_records.begin(), got_records.end(), record_key_less{}));

    dpar::device_vector<int> dk(ints);
    dpar::device_vector<std::int64_t> dv(positions);
    dpar::sort_by_key(dpar::gpu, dk.begin(), dk.end(), dv.begin());
    CHECK(host_of(dv) == want_positions);
    CHECK(host_of(dk) == want_ints);

    dpar::device_vector<keyed_record> rk(records);
    dpar::device_vector<std::int64_t> rv(positions);
    dpar::sort_by_key(dpar::gpu, rk.begin(), rk.end(), rv.begin(), record_key_less{});
    CHECK(host_of(rk) == want_records);
    const auto moved = host_of(rv);
    bool follows = moved.size() == n;
    for (std::size_t i = 0; follows && i < n; ++i) follows = moved[i] == want_records[i].order;
    CHECK(follows);
  }
}
