// dpar::multi_gpu's own interface, sharded_vector, against dpar::seq (the
// CPU) and dpar::gpu (one device), on the device lists [0], [0,0], [0,0,0],
// [0,0,0,0] (each entry its own shard and stream, so this runs on one GPU),
// sizes 0, smaller than the shard count, primes and (tag [big]) 2^24. Ops
// include 2x2 matrix products mod p (associative, not commutative), so a scan
// that put a shard's carry on the wrong side, or a reduce that combined
// partials out of order, fails. Also the device all_reduce against a host
// reference (also after slow kernels on the devices' legacy and per-thread
// default streams, and from several host threads; float sums in entry order
// to the bit unless the policy opts into NCCL's order), int-in/int64-out scans across shards,
// deterministic(multi_gpu) (its exact all_reduce against the host
// deterministic one), and the errors. The algorithms of dpar/algorithm/ on
// sharded_vector against std:: (and host loops for the by-key ones, with the
// matrix product, over runs of keys that cross and fill shards). multi_gpu on host iterators against
// std:: is in the conformance suite (test_gpu_conformance.cu). Run by
// gpu_main.cpp, which skips (exit 77) without a CUDA device; the [nodevice]
// tests run everywhere.
#include <catch2/catch.hpp>

#include "exact_reference.hpp"  // adversarial float data
#include "gpu_common.hpp"       // device_lists, on_host_threads
#include "mat2.hpp"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <dpar/cuda.hpp>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using dpar_test::device_lists;
using dpar_test::name_of;
const std::vector<std::size_t> sizes = {0, 1, 2, 3, 5, 7, 97, 1009, 65537};
constexpr std::size_t big = std::size_t{1} << 24;

std::vector<std::int64_t> random_ints(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(-1000, 1000);
  std::vector<std::int64_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

using dpar_test::mat2;
using mat_mul = dpar_test::mat2_mul;
constexpr mat2 identity = dpar_test::mat2_identity;
inline std::vector<mat2> random_matrices(std::size_t n, std::uint64_t seed) { return dpar_test::random_mat2s(n, seed); }

struct affine {  // x -> 3x + 1, exact in int64 for these inputs
  __host__ __device__ std::int64_t operator()(std::int64_t x) const { return 3 * x + 1; }
};
struct negate_in_place {
  __host__ __device__ void operator()(std::int64_t& x) const { x = -x; }
};
struct positive {
  __host__ __device__ bool operator()(std::int64_t x) const { return x > 0; }
};
struct above_900 {
  __host__ __device__ bool operator()(std::int64_t x) const { return x > 900; }
};

// Sets x = value after spinning `cycles` clock cycles: device work that is
// still running when the host moves on.
struct slow_set {
  std::int64_t value;
  long long cycles;
  __host__ __device__ void operator()(std::int64_t& x) const {
#if defined(__CUDA_ARCH__)
    const long long start = clock64();
    while (clock64() - start < cycles) {
    }
#endif
    x = value;
  }
};
// A sum dpar does not know (so all_reduce takes the staged path on any list).
struct user_sum {
  __host__ __device__ std::int64_t operator()(std::int64_t x, std::int64_t y) const { return x + y; }
};

}  // namespace

TEST_CASE("multi_gpu internals: identities, NCCL mapping", "[multi_gpu][nodevice]") {
  namespace mg = dpar::detail::multi_gpu;
  // -0.0 is the identity of floating-point +: -0.0 + -0.0 keeps the sign
  CHECK(std::signbit(dpar::op_identity<std::plus<>, float>::value()));
  CHECK(dpar::op_identity<std::plus<>, float>::value() == 0.0f);
  CHECK(dpar::op_identity<std::plus<>, int>::value() == 0);
  CHECK(dpar::op_identity<std::multiplies<>, double>::value() == 1.0);
  CHECK(dpar::op_identity<dpar::minimum<>, float>::value() == std::numeric_limits<float>::infinity());
  CHECK(dpar::op_identity<dpar::minimum<>, int>::value() == std::numeric_limits<int>::max());
  CHECK(dpar::op_identity<dpar::maximum<>, double>::value() == -std::numeric_limits<double>::infinity());
  CHECK(dpar::op_identity<dpar::maximum<std::int64_t>, std::int64_t>::value() == std::numeric_limits<std::int64_t>::lowest());
  // maximum<int> on int64 values truncates: no kind, no identity, no CUB partials.
  STATIC_REQUIRE_FALSE(dpar::has_identity<dpar::maximum<int>, std::int64_t>);
  // CUB with an identity only for known commutative ops on arithmetic types
  STATIC_REQUIRE(mg::cub_partial_v<std::plus<>, float>);
  STATIC_REQUIRE(mg::cub_partial_v<dpar::maximum<>, int>);
  STATIC_REQUIRE_FALSE(mg::cub_partial_v<mat_mul, mat2>);
  STATIC_REQUIRE_FALSE(mg::cub_partial_v<std::minus<>, int>);
  STATIC_REQUIRE_FALSE(mg::cub_partial_v<std::plus<>, mat2>);
  CHECK(mg::distinct_devices({0, 1, 2}));
  CHECK_FALSE(mg::distinct_devices({0, 1, 0}));
  CHECK_FALSE(mg::distinct_devices({0, 0}));
#if defined(DPAR_HAVE_NCCL)
  STATIC_REQUIRE(mg::nccl_op<std::plus<>, float>() == ncclSum);
  STATIC_REQUIRE(mg::nccl_op<std::plus<int>, int>() == ncclSum);
  STATIC_REQUIRE(mg::nccl_op<std::multiplies<>, double>() == ncclProd);
  STATIC_REQUIRE(mg::nccl_op<dpar::minimum<>, int>() == ncclMin);
  STATIC_REQUIRE(mg::nccl_op<dpar::maximum<float>, float>() == ncclMax);
  STATIC_REQUIRE(mg::nccl_op<mat_mul, mat2>() < 0);
  STATIC_REQUIRE(mg::nccl_type<float>() == ncclFloat32);
  STATIC_REQUIRE(mg::nccl_type<std::int64_t>() == ncclInt64);
  STATIC_REQUIRE(mg::nccl_type<unsigned>() == ncclUint32);
  STATIC_REQUIRE(mg::nccl_type<bool>() < 0);
  STATIC_REQUIRE(mg::nccl_type<mat2>() < 0);
#endif
}

TEST_CASE("multi_gpu: bad device lists give clear errors", "[multi_gpu][nodevice]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_AS(dpar::multi_gpu({}), std::invalid_argument);
  CHECK_THROWS_WITH(dpar::multi_gpu({}), Contains("device list is empty"));
  int count = 0;
  bool have_device = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  (void)cudaGetLastError();
  if (!have_device) {
    CHECK_THROWS_AS(dpar::multi_gpu({0}), dpar::cuda_error);
    CHECK_THROWS_WITH(dpar::multi_gpu({0, 0}), Contains("no CUDA device"));
    CHECK_THROWS_WITH(dpar::multi_gpu_all(), Contains("no CUDA device"));
  } else {
    CHECK_THROWS_WITH(dpar::multi_gpu({0, count}),
                      Contains("entry 1") && Contains("invalid device " + std::to_string(count)));
    CHECK_THROWS_AS(dpar::multi_gpu({-1}), dpar::cuda_error);
    CHECK(dpar::multi_gpu_all().size() == static_cast<std::size_t>(count));
  }
}

TEST_CASE("sharded_vector: layout, shards, round trip", "[multi_gpu][gpu]") {
  for (const auto& list : device_lists()) {
    auto p = dpar::multi_gpu(list);
    for (std::size_t n : sizes) {
      INFO(name_of(list) << " n = " << n);
      auto a = random_ints(n, n + 1);
      dpar::sharded_vector<std::int64_t> v(p, a);
      REQUIRE(v.shard_count() == list.size());
      std::size_t total = 0;
      for (std::size_t i = 0; i < v.shard_count(); ++i) {
        const auto& s = v.shard_at(i);
        CHECK(s.device == list[i]);
        CHECK(s.stream == p.stream(i));
        CHECK(s.offset == total);
        CHECK(s.size == n / list.size() + (i < n % list.size() ? 1 : 0));
        total += s.size;
      }
      CHECK(total == n);
      CHECK(v.to_host() == a);
      dpar::sharded_vector<std::int64_t> zeros(p, n);
      CHECK(zeros.to_host() == std::vector<std::int64_t>(n, 0));
      // entries on one device have distinct streams
      for (std::size_t i = 0; i < p.size(); ++i)
        for (std::size_t j = i + 1; j < p.size(); ++j) CHECK(p.stream(i) != p.stream(j));
    }
  }
}

TEST_CASE("multi_gpu transform, for_each, reduce, transform_reduce match seq and gpu", "[multi_gpu][gpu]") {
  for (const auto& list : device_lists()) {
    auto p = dpar::multi_gpu(list);
    for (std::size_t n : sizes) {
      INFO(name_of(list) << " n = " << n);
      auto a = random_ints(n, n + 2), b = random_ints(n, n + 3);
      dpar::sharded_vector<std::int64_t> va(p, a), vb(p, b), out(p, n);
      dpar::device_vector<std::int64_t> da(a);

      std::vector<std::int64_t> want(n);
      dpar::transform(dpar::seq, a.begin(), a.end(), want.begin(), affine{});
      dpar::transform(p, va, out, affine{});
      CHECK(out.to_host() == want);
      dpar::transform(dpar::seq, a.begin(), a.end(), b.begin(), want.begin(), std::minus<>{});
      dpar::transform(p, va, vb, out, std::minus<>{});
      CHECK(out.to_host() == want);

      dpar::sharded_vector<std::int64_t> neg(p, a);
      dpar::for_each(p, neg, negate_in_place{});
      for (auto& x : want = a) x = -x;
      CHECK(neg.to_host() == want);

      const auto sum = dpar::reduce(dpar::seq, a, std::int64_t{7});
      CHECK(dpar::reduce(p, va, std::int64_t{7}) == sum);
      CHECK(dpar::reduce(dpar::gpu, da, std::int64_t{7}) == sum);
      CHECK(dpar::reduce(p, va, std::int64_t{-5000}, dpar::maximum<>{}) ==
            dpar::reduce(dpar::seq, a, std::int64_t{-5000}, dpar::maximum<>{}));
      CHECK(dpar::reduce(p, va, std::int64_t{5000}, dpar::minimum<>{}) ==
            dpar::reduce(dpar::seq, a, std::int64_t{5000}, dpar::minimum<>{}));
      // a lambda is not known to be commutative: the ordered per-shard path
      auto add = [] __host__ __device__(std::int64_t x, std::int64_t y) { return x + y; };
      CHECK(dpar::reduce(p, va, std::int64_t{7}, add) == sum);
      CHECK(dpar::transform_reduce(p, va, std::int64_t{1}, std::plus<>{}, affine{}) ==
            dpar::transform_reduce(dpar::seq, a, std::int64_t{1}, std::plus<>{}, affine{}));
      CHECK(dpar::transform_reduce(p, va, vb, std::int64_t{2}) ==
            dpar::transform_reduce(dpar::seq, a.begin(), a.end(), b.begin(), std::int64_t{2}));
      // float sums: -0.0 is the identity of the shards without init
      std::vector<float> minus_zero(n, -0.0f);
      dpar::sharded_vector<float> vz(p, minus_zero);
      CHECK(std::signbit(dpar::reduce(p, vz, -0.0f)));
    }
  }
}

TEST_CASE("multi_gpu counts, searches, fill, iota, copy, compactions, adjacent_difference and transform scans on "
          "sharded_vector match std",
          "[multi_gpu][gpu]") {
  auto at = [](const std::vector<std::int64_t>& v, auto it) { return static_cast<std::size_t>(it - v.begin()); };
  for (const auto& list : device_lists()) {
    auto p = dpar::multi_gpu(list);
    for (std::size_t n : sizes) {
      INFO(name_of(list) << " n = " << n);
      const auto a = random_ints(n, n + 5);
      dpar::sharded_vector<std::int64_t> va(p, a), out(p, n);

      CHECK(dpar::count_if(p, va, positive{}) == static_cast<std::size_t>(std::count_if(a.begin(), a.end(), positive{})));
      const std::int64_t probe = n ? a[n / 2] : 7;
      CHECK(dpar::count(p, va, probe) == static_cast<std::size_t>(std::count(a.begin(), a.end(), probe)));
      CHECK(dpar::find_if(p, va, above_900{}) == at(a, std::find_if(a.begin(), a.end(), above_900{})));
      CHECK(dpar::find(p, va, probe) == at(a, std::find(a.begin(), a.end(), probe)));
      CHECK(dpar::any_of(p, va, above_900{}) == std::any_of(a.begin(), a.end(), above_900{}));
      CHECK(dpar::all_of(p, va, positive{}) == std::all_of(a.begin(), a.end(), positive{}));
      CHECK(dpar::none_of(p, va, above_900{}) == std::none_of(a.begin(), a.end(), above_900{}));

      // one element changed, in a later shard than the first where there are several
      auto c = a;
      if (n) c[n - 1 - n / 3] += 1;
      dpar::sharded_vector<std::int64_t> vc(p, c);
      CHECK(dpar::mismatch(p, va, vc) == at(a, std::mismatch(a.begin(), a.end(), c.begin()).first));
      CHECK(dpar::equal(p, va, va));
      CHECK(dpar::equal(p, va, vc) == (n == 0));

      dpar::fill(p, out, std::int64_t{9});
      CHECK(out.to_host() == std::vector<std::int64_t>(n, 9));
      dpar::iota(p, out, std::int64_t{-4});
      std::vector<std::int64_t> want(n);
      std::iota(want.begin(), want.end(), std::int64_t{-4});
      CHECK(out.to_host() == want);
      CHECK(&dpar::copy(p, va, out) == &out);
      CHECK(out.to_host() == a);

      // the kept elements of every shard packed at the front of out, the rest untouched
      std::vector<std::int64_t> kept;
      std::copy_if(a.begin(), a.end(), std::back_inserter(kept), positive{});
      dpar::fill(p, out, std::int64_t{-1});
      const std::size_t m = dpar::copy_if(p, va, out, positive{});
      CHECK(m == kept.size());
      kept.resize(n, -1);
      CHECK(out.to_host() == kept);
      // in place
      dpar::sharded_vector<std::int64_t> in_place(p, a);
      want = a;
      const std::size_t removed_end = at(want, std::remove_if(want.begin(), want.end(), positive{}));
      CHECK(dpar::remove_copy_if(p, in_place, in_place, positive{}) == removed_end);
      const auto got = in_place.to_host();
      CHECK(std::equal(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(removed_end), want.begin()));

      // unique: runs of equal values that cross shard boundaries
      std::vector<std::int64_t> runs(n);
      for (std::size_t i = 0; i < n; ++i) runs[i] = static_cast<std::int64_t>(i / 3 + (i % 7 == 0 ? 1 : 0));
      dpar::sharded_vector<std::int64_t> vruns(p, runs);
      want.clear();
      std::unique_copy(runs.begin(), runs.end(), std::back_inserter(want));
      dpar::fill(p, out, std::int64_t{-1});
      CHECK(dpar::unique_copy(p, vruns, out) == want.size());
      const std::size_t unique_count = want.size();
      want.resize(n, -1);
      CHECK(out.to_host() == want);
      CHECK(dpar::unique(p, vruns) == unique_count);
      const auto unique_in_place = vruns.to_host();
      CHECK(std::equal(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(unique_count), unique_in_place.begin()));
      // remove_if in place: the elements kept by remove_copy_if above
      dpar::sharded_vector<std::int64_t> removed(p, a);
      CHECK(dpar::remove_if(p, removed, positive{}) == removed_end);
      const auto removed_h = removed.to_host();
      CHECK(std::equal(removed_h.begin(), removed_h.begin() + static_cast<std::ptrdiff_t>(removed_end), got.begin()));

      // adjacent_difference: each shard's first element against the previous shard's last
      std::adjacent_difference(a.begin(), a.end(), want.begin());
      CHECK(&dpar::adjacent_difference(p, va, out) == &out);
      CHECK(out.to_host() == want);

      // transform scans: the carries cross the shards
      std::vector<std::int64_t> want_scan(n);
      std::transform_inclusive_scan(a.begin(), a.end(), want_scan.begin(), std::plus<>{}, affine{});
      dpar::transform_inclusive_scan(p, va, out, std::plus<>{}, affine{});
      CHECK(out.to_host() == want_scan);
      std::transform_inclusive_scan(a.begin(), a.end(), want_scan.begin(), std::plus<>{}, affine{}, std::int64_t{5});
      dpar::transform_inclusive_scan(p, va, out, std::plus<>{}, affine{}, std::int64_t{5});
      CHECK(out.to_host() == want_scan);
      std::transform_exclusive_scan(a.begin(), a.end(), want_scan.begin(), std::int64_t{5}, std::plus<>{}, affine{});
      dpar::transform_exclusive_scan(p, va, out, std::int64_t{5}, std::plus<>{}, affine{});
      CHECK(out.to_host() == want_scan);

      // host iterators: copy and for_each_n are the backend's transform and for_each
      std::vector<std::int64_t> h(n);
      CHECK(dpar::copy(p, a.begin(), a.end(), h.begin()) == h.end());
      CHECK(h == a);
      CHECK(dpar::for_each_n(p, h.begin(), n / 2, negate_in_place{}) == h.begin() + static_cast<std::ptrdiff_t>(n / 2));
      for (std::size_t i = 0; i < n / 2; ++i) CHECK(h[i] == -a[i]);
    }
  }
}

TEST_CASE("multi_gpu extremes, partitions, gather, scatter, searches and the by-key algorithms on sharded_vector "
          "match std",
          "[multi_gpu][gpu]") {
  auto at = [](const auto& v, auto it) { return static_cast<std::size_t>(it - v.begin()); };
  for (const auto& list : device_lists()) {
    auto p = dpar::multi_gpu(list);
    for (std::size_t n : sizes) {
      INFO(name_of(list) << " n = " << n);
      const auto a = random_ints(n, n + 6);  // values in [-1000, 1000]: ties from n ~ 50 on
      dpar::sharded_vector<std::int64_t> va(p, a), out(p, n), rest(p, n);

      // extremes: ties go to the first smallest and largest, minmax's largest to the last
      CHECK(dpar::min_element(p, va) == at(a, std::min_element(a.begin(), a.end())));
      CHECK(dpar::max_element(p, va) == at(a, std::max_element(a.begin(), a.end())));
      const auto [low, high] = std::minmax_element(a.begin(), a.end());
      CHECK(dpar::minmax_element(p, va) == std::pair{at(a, low), at(a, high)});

      // partition_copy and stable_partition: true ones first, in order, across the shards
      std::vector<std::int64_t> yes, no;
      std::partition_copy(a.begin(), a.end(), std::back_inserter(yes), std::back_inserter(no), positive{});
      dpar::fill(p, out, std::int64_t{-1});
      dpar::fill(p, rest, std::int64_t{-1});
      CHECK(dpar::partition_copy(p, va, out, rest, positive{}) == std::pair{yes.size(), no.size()});
      auto padded = [n](std::vector<std::int64_t> v) {
        v.resize(n, -1);
        return v;
      };
      CHECK(out.to_host() == padded(yes));
      CHECK(rest.to_host() == padded(no));
      dpar::sharded_vector<std::int64_t> parted(p, a);
      CHECK(dpar::stable_partition(p, parted, positive{}) == yes.size());
      yes.insert(yes.end(), no.begin(), no.end());
      CHECK(parted.to_host() == yes);

      // gather from an input of another length, scatter by a permutation
      const std::size_t m = n / 2 + 3;
      const auto input = random_ints(m, n + 7);
      std::vector<std::int64_t> map(n), want(n);
      std::mt19937_64 rng(n);
      for (auto& i : map) i = static_cast<std::int64_t>(rng() % m);
      for (std::size_t i = 0; i < n; ++i) want[i] = input[static_cast<std::size_t>(map[i])];
      dpar::sharded_vector<std::int64_t> vinput(p, input), vmap(p, map);
      CHECK(&dpar::gather(p, vmap, vinput, out) == &out);
      CHECK(out.to_host() == want);
      std::iota(map.begin(), map.end(), std::int64_t{0});
      std::shuffle(map.begin(), map.end(), rng);
      for (std::size_t i = 0; i < n; ++i) want[static_cast<std::size_t>(map[i])] = a[i];
      dpar::sharded_vector<std::int64_t> vperm(p, map);
      dpar::scatter(p, va, vperm, out);
      CHECK(out.to_host() == want);

      // vectorized searches: a sorted haystack across the shards, needles in and
      // out of its range (also for an empty haystack)
      auto hay = a;
      std::sort(hay.begin(), hay.end());
      const auto needles = random_ints(m, n + 8);
      dpar::sharded_vector<std::int64_t> vhay(p, hay), vneedles(p, needles);
      dpar::sharded_vector<std::size_t> pos(p, m);
      std::vector<std::size_t> want_pos(m);
      for (std::size_t i = 0; i < m; ++i) want_pos[i] = at(hay, std::lower_bound(hay.begin(), hay.end(), needles[i]));
      CHECK(dpar::lower_bound(p, vhay, vneedles, pos).to_host() == want_pos);
      for (std::size_t i = 0; i < m; ++i) want_pos[i] = at(hay, std::upper_bound(hay.begin(), hay.end(), needles[i]));
      CHECK(dpar::upper_bound(p, vhay, vneedles, pos).to_host() == want_pos);
      const auto found = dpar::binary_search(p, vhay, vneedles, pos).to_host();
      for (std::size_t i = 0; i < m; ++i)
        CHECK((found[i] != 0) == std::binary_search(hay.begin(), hay.end(), needles[i]));

      // by key, with a non-commutative op: short runs, and three long ones
      // that cross (and fill) shards
      const auto values = random_matrices(n, n + 9);
      dpar::sharded_vector<mat2> vvalues(p, values), scanned(p, n), reduced(p, n);
      const mat2 start{2, 1, 1, 1};  // init, not the identity: it must sit on the left
      for (int pattern = 0; pattern < 2; ++pattern) {
        INFO("key pattern " << pattern);
        std::vector<std::int64_t> keys(n);
        for (std::size_t i = 0; i < n; ++i)
          keys[i] = static_cast<std::int64_t>(pattern == 0 ? i / 3 + (i % 7 == 0 ? 1 : 0) : 3 * i / n);
        dpar::sharded_vector<std::int64_t> vkeys(p, keys);
        std::vector<mat2> incl(n), excl(n), sums;
        std::vector<std::int64_t> heads;
        for (std::size_t i = 0; i < n; ++i) {
          const bool starts = i == 0 || keys[i - 1] != keys[i];
          incl[i] = starts ? values[i] : mat_mul{}(incl[i - 1], values[i]);
          excl[i] = starts ? start : mat_mul{}(excl[i - 1], values[i - 1]);
          if (starts) {
            heads.push_back(keys[i]);
            sums.push_back(values[i]);
          } else {
            sums.back() = incl[i];
          }
        }
        CHECK(dpar::inclusive_scan_by_key(p, vkeys, vvalues, scanned, std::equal_to<>{}, mat_mul{}).to_host() == incl);
        CHECK(dpar::exclusive_scan_by_key(p, vkeys, vvalues, scanned, start, std::equal_to<>{}, mat_mul{})
                  .to_host() == excl);
        dpar::fill(p, out, std::int64_t{-1});
        CHECK(dpar::reduce_by_key(p, vkeys, vvalues, out, reduced, std::equal_to<>{}, mat_mul{}) == heads.size());
        auto got_keys = out.to_host();
        auto got_sums = reduced.to_host();
        got_keys.resize(heads.size());
        got_sums.resize(sums.size());
        CHECK(got_keys == heads);
        CHECK(got_sums == sums);
      }
    }
  }
}

TEST_CASE("multi_gpu non-commutative reduce and scans keep shard order", "[multi_gpu][gpu]") {
  for (const auto& list : device_lists()) {
    auto p = dpar::multi_gpu(list);
    for (std::size_t n : sizes) {
      INFO(name_of(list) << " n = " << n);
      auto m = random_matrices(n, n + 4);
      const mat2 init{2, 1, 1, 1};
      dpar::sharded_vector<mat2> vm(p, m), out(p, n);
      dpar::device_vector<mat2> dm(m);

      const mat2 want_reduce = std::accumulate(m.begin(), m.end(), init, mat_mul{});
      CHECK(dpar::reduce(p, vm, init, mat_mul{}) == want_reduce);
      CHECK(dpar::reduce(dpar::gpu, dm, init, mat_mul{}) == want_reduce);

      std::vector<mat2> want(n);
      std::inclusive_scan(m.begin(), m.end(), want.begin(), mat_mul{});
      dpar::inclusive_scan(p, vm, out, mat_mul{});
      CHECK(out.to_host() == want);

      std::inclusive_scan(m.begin(), m.end(), want.begin(), mat_mul{}, init);
      dpar::inclusive_scan(p, vm, out, mat_mul{}, init);
      CHECK(out.to_host() == want);

      std::exclusive_scan(m.begin(), m.end(), want.begin(), init, mat_mul{});
      dpar::exclusive_scan(p, vm, out, init, mat_mul{});
      CHECK(out.to_host() == want);

      // in place
      dpar::sharded_vector<mat2> inplace(p, m);
      dpar::exclusive_scan(p, inplace, inplace, identity, mat_mul{});
      std::exclusive_scan(m.begin(), m.end(), want.begin(), identity, mat_mul{});
      CHECK(inplace.to_host() == want);

      // arithmetic scans (CUB's fast paths for the totals) match seq and gpu
      auto a = random_ints(n, n + 5);
      dpar::sharded_vector<std::int64_t> va(p, a), vs(p, n);
      std::vector<std::int64_t> want_int(n);
      dpar::inclusive_scan(dpar::seq, a.begin(), a.end(), want_int.begin());
      dpar::inclusive_scan(p, va, vs);
      CHECK(vs.to_host() == want_int);
      dpar::exclusive_scan(dpar::seq, a.begin(), a.end(), want_int.begin(), std::int64_t{-3});
      dpar::exclusive_scan(p, va, vs, std::int64_t{-3});
      CHECK(vs.to_host() == want_int);
    }
  }
}

TEST_CASE("multi_gpu inclusive_scan without init accumulates in the output type on every shard",
          "[multi_gpu][gpu]") {
  // int in, int64 out: 2^30 per element overflows int from the second element
  // on, in whichever shard accumulates in int.
  for (const auto& list : device_lists()) {
    auto p = dpar::multi_gpu(list);
    for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{1009}}) {
      INFO(name_of(list) << " n = " << n);
      dpar::sharded_vector<int> in(p, std::vector<int>(n, 1 << 30));
      dpar::sharded_vector<std::int64_t> out(p, n);
      std::vector<std::int64_t> want(n);
      for (std::size_t i = 0; i < n; ++i) want[i] = static_cast<std::int64_t>(i + 1) << 30;
      dpar::inclusive_scan(p, in, out);
      CHECK(out.to_host() == want);
      dpar::inclusive_scan(p, in, out, user_sum{});  // dpar's ordered kernel for the totals
      CHECK(out.to_host() == want);
    }
  }
}

TEST_CASE("multi_gpu all_reduce waits for work on the devices' default streams", "[multi_gpu][gpu]") {
  // Each buffer gets its value from a slow kernel on its device's legacy
  // default stream (dpar::gpu.on(d)) or on this thread's per-thread default
  // stream, not yet finished when all_reduce starts. Peer copies from entry
  // 0's stream (staged path) are not ordered with another device's streams,
  // and no entry stream is ordered with a per-thread stream: without waiting,
  // the staged copies or NCCL (std::plus on distinct devices) would read the
  // old zeros, or the slow kernel would overwrite the result.
  const std::size_t n = 4096;
  auto check = [&](const std::vector<int>& list, cudaStream_t stream, auto op) {
    auto p = dpar::multi_gpu(list);
    const std::size_t k = list.size();
    std::vector<dpar::device_vector<std::int64_t>> buffers;
    for (std::size_t r = 0; r < k; ++r) buffers.emplace_back(n, list[r]);
    for (std::size_t r = 0; r < k; ++r)
      dpar::for_each(dpar::gpu.on(list[r], stream), buffers[r], slow_set{static_cast<std::int64_t>(r + 1), 20'000'000});
    dpar::all_reduce(p, buffers, op);
    const auto want = static_cast<std::int64_t>(k * (k + 1) / 2);
    for (std::size_t r = 0; r < k; ++r) CHECK(buffers[r].to_host() == std::vector<std::int64_t>(n, want));
  };
  for (const auto& list : device_lists()) {
    for (cudaStream_t stream : {cudaStreamLegacy, cudaStreamPerThread}) {
      INFO(name_of(list) << (stream == cudaStreamLegacy ? " legacy" : " per-thread") << " default stream");
      check(list, stream, user_sum{});
      check(list, stream, std::plus<>{});
    }
  }
}

TEST_CASE("multi_gpu all_reduce from several host threads on the same device list", "[multi_gpu][gpu]") {
  // NCCL forbids using a communicator from two threads at once (it can hang):
  // dpar serialises calls that share devices. The watchdog turns a hang into
  // a failure.
  const std::size_t n = 65537;
  const int threads = 3, rounds = 10;
  for (const auto& list : device_lists()) {
    INFO(name_of(list));
    const std::size_t k = list.size();
    std::vector<int> wrong(threads, 0);
    dpar_test::on_host_threads(threads, 120, "all_reduce from 3 host threads", [&](int t) {
      auto p = dpar::multi_gpu(list);  // own streams, shared communicators
      for (int round = 0; round < rounds; ++round) {
        std::vector<dpar::device_vector<std::int64_t>> buffers;
        std::int64_t want = 0;
        for (std::size_t r = 0; r < k; ++r) {
          const auto value = static_cast<std::int64_t>(1000 * t + 10 * round + static_cast<int>(r));
          buffers.emplace_back(std::vector<std::int64_t>(n, value), list[r]);
          want += value;
        }
        dpar::all_reduce(p, buffers, std::plus<>{});
        for (const auto& b : buffers) wrong[t] += b.to_host() != std::vector<std::int64_t>(n, want);
      }
    });
    for (int t = 0; t < threads; ++t) {
      INFO("thread " << t);
      CHECK(wrong[t] == 0);
    }
  }
}

TEST_CASE("multi_gpu at 2^24 matches gpu and seq", "[multi_gpu][gpu][big]") {
  auto a = random_ints(big, 11);
  dpar::device_vector<std::int64_t> da(a), ds(big);
  const auto sum = dpar::reduce(dpar::seq, a, std::int64_t{0});
  std::vector<std::int64_t> want(big);
  dpar::inclusive_scan(dpar::seq, a.begin(), a.end(), want.begin());
  dpar::inclusive_scan(dpar::gpu, da, ds.begin());
  CHECK(ds.to_host() == want);
  for (const auto& list : device_lists()) {
    INFO(name_of(list));
    auto p = dpar::multi_gpu(list);
    dpar::sharded_vector<std::int64_t> va(p, a), vs(p, big);
    CHECK(dpar::reduce(p, va, std::int64_t{0}) == sum);
    dpar::inclusive_scan(p, va, vs);
    CHECK(vs.to_host() == want);
  }
}

TEST_CASE("multi_gpu errors: layouts, host pointers", "[multi_gpu][gpu]") {
  using Catch::Matchers::Contains;
  auto p = dpar::multi_gpu({0, 0});
  auto q = dpar::multi_gpu({0, 0});
  dpar::sharded_vector<int> a(p, 10), b(p, 11), c(q, 10);
  CHECK_THROWS_WITH(dpar::transform(p, a, b, std::negate<>{}), Contains("11 elements") && Contains("10"));
  CHECK_THROWS_WITH(dpar::reduce(p, c, 0), Contains("another dpar::multi_gpu policy"));
  CHECK_THROWS_WITH(dpar::inclusive_scan(p, a, c), Contains("another dpar::multi_gpu policy"));
  auto copy = p;  // copies share the streams
  CHECK(dpar::reduce(copy, a, 0) == 0);
  std::vector<int> host(9);
  CHECK_THROWS_WITH(a.copy_to_host(std::span<int>(host)), Contains("9 host elements"));
  dpar::device_vector<int> d(10);
  CHECK_THROWS_WITH(dpar::reduce(p, d.begin(), d.end(), 0), Contains("device memory"));
}

TEST_CASE("multi_gpu all_reduce matches a host reference", "[multi_gpu][gpu]") {
  for (const auto& list : device_lists()) {
    auto p = dpar::multi_gpu(list);
    const std::size_t k = list.size();
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1009}, std::size_t{65537}}) {
      INFO(name_of(list) << " n = " << n);
      std::vector<std::vector<std::int64_t>> host(k);
      for (std::size_t r = 0; r < k; ++r) host[r] = random_ints(n, 100 * r + n);
      // products of values in [-2, 2]: no int64 overflow for up to 62 entries
      std::vector<std::vector<std::int64_t>> small = host;
      for (auto& v : small)
        for (auto& x : v) x %= 3;
      auto check_op = [&](auto op, const char* what, const std::vector<std::vector<std::int64_t>>& data) {
        INFO(what);
        std::vector<dpar::device_vector<std::int64_t>> buffers;
        for (std::size_t r = 0; r < k; ++r) buffers.emplace_back(data[r], list[r]);
        dpar::all_reduce(p, buffers, op);
        std::vector<std::int64_t> want = data[0];
        for (std::size_t r = 1; r < k; ++r)
          for (std::size_t i = 0; i < n; ++i) want[i] = op(want[i], data[r][i]);
        for (std::size_t r = 0; r < k; ++r) CHECK(buffers[r].to_host() == want);
      };
      check_op(std::plus<>{}, "sum", host);
      check_op(std::multiplies<>{}, "prod", small);
      check_op(dpar::minimum<>{}, "min", host);
      check_op(dpar::maximum<>{}, "max", host);

      // non-commutative: combined in entry order
      std::vector<std::vector<mat2>> hm(k);
      std::vector<dpar::device_vector<mat2>> bm;
      for (std::size_t r = 0; r < k; ++r) bm.emplace_back(hm[r] = random_matrices(n, 7 * r + n), list[r]);
      dpar::all_reduce(p, bm, mat_mul{});
      std::vector<mat2> want = hm[0];
      for (std::size_t r = 1; r < k; ++r)
        for (std::size_t i = 0; i < n; ++i) want[i] = mat_mul{}(want[i], hm[r][i]);
      for (std::size_t r = 0; r < k; ++r) CHECK(bm[r].to_host() == want);

      // mean of floats (small integers: exact)
      std::vector<dpar::device_vector<float>> bf;
      std::vector<float> want_mean(n, 0.0f);
      for (std::size_t r = 0; r < k; ++r) {
        std::vector<float> h(n, static_cast<float>(4 * (r + 1)));
        for (std::size_t i = 0; i < n; ++i) want_mean[i] += h[i];
        bf.emplace_back(h, list[r]);
      }
      for (auto& x : want_mean) x /= static_cast<float>(k);
      dpar::all_reduce_mean(p, bf);
      for (std::size_t r = 0; r < k; ++r) CHECK(bf[r].to_host() == want_mean);
    }
  }
}

// Float sums: entry order to the bit (the host reference adds buffer 0, 1,
// ... in turn), NCCL or not; with_nccl_order() lets NCCL sum in its own order
// on distinct devices: within the rounding of K - 1 additions.
template <class T>
void check_float_sums(const std::vector<int>& list, std::size_t n) {
  const auto p = dpar::multi_gpu(list);
  const std::size_t k = list.size();
  std::vector<std::vector<T>> host(k);
  for (std::size_t r = 0; r < k; ++r) host[r] = dpar_test::wide_range<T>(n, 17 * r + n);
  std::vector<T> want = host[0];
  std::vector<double> magnitude(n, 0.0);
  for (std::size_t r = 0; r < k; ++r)
    for (std::size_t i = 0; i < n; ++i) {
      if (r > 0) want[i] += host[r][i];
      magnitude[i] += std::abs(double(host[r][i]));
    }
  auto same_bits = [](const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
  };
  auto reduce_on = [&](const dpar::multi_gpu_policy& q) {
    std::vector<dpar::device_vector<T>> buffers;
    for (std::size_t r = 0; r < k; ++r) buffers.emplace_back(host[r], list[r]);
    dpar::all_reduce(q, buffers);
    std::vector<std::vector<T>> out;
    for (const auto& b : buffers) out.push_back(b.to_host());
    return out;
  };
  for (const auto& got : reduce_on(p)) CHECK(same_bits(got, want));
  CHECK_FALSE(p.uses_nccl_order());
  const auto nccl = p.with_nccl_order();
  REQUIRE(nccl.uses_nccl_order());
  REQUIRE(nccl == p);  // same streams
  const double eps = std::numeric_limits<T>::epsilon();
  std::size_t far = 0;
  for (const auto& got : reduce_on(nccl))
    for (std::size_t i = 0; i < n; ++i)
      far += std::abs(double(got[i]) - double(want[i])) > 2.0 * double(k) * eps * magnitude[i];
  CHECK(far == 0);
}

TEST_CASE("multi_gpu float sums are in entry order unless the policy opts into NCCL's order", "[multi_gpu][gpu]") {
  for (const auto& list : device_lists())
    for (std::size_t n : {std::size_t{1}, std::size_t{1009}, std::size_t{65537}}) {
      INFO(name_of(list) << " n = " << n);
      check_float_sums<float>(list, n);
      check_float_sums<double>(list, n);
    }
}

// deterministic(multi_gpu): the exact all_reduce (staged through the host) is
// the bits of the host deterministic all_reduce; sums on host iterators are
// deterministic(seq)'s; another op is multi_gpu's own.
template <class T>
void check_deterministic_all_reduce(const std::vector<int>& list, std::size_t n) {
  const auto det = dpar::deterministic(dpar::multi_gpu(list));
  const std::size_t k = list.size();
  std::vector<std::vector<T>> host(k);
  for (std::size_t r = 0; r < k; ++r)
    host[r] = r % 2 ? dpar_test::cancelling<T>(n, 31 * r + n) : dpar_test::wide_range<T>(n, 31 * r + n);
  auto same_bits = [](const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
  };
  for (bool mean : {false, true}) {
    INFO((mean ? "all_reduce_mean" : "all_reduce"));
    std::vector<dpar::device_vector<T>> buffers;
    for (std::size_t r = 0; r < k; ++r) buffers.emplace_back(host[r], list[r]);
    auto want = host;
    if (mean) {
      dpar::all_reduce_mean(det, buffers);
      dpar::all_reduce_mean(dpar::deterministic(dpar::seq), want);
    } else {
      dpar::all_reduce(det, buffers);
      dpar::all_reduce(dpar::deterministic(dpar::seq), want);
    }
    for (std::size_t r = 0; r < k; ++r) CHECK(same_bits(buffers[r].to_host(), want[0]));
  }
  // sums on host iterators: deterministic(seq)'s bits
  const auto& a = host[k - 1];
  const auto& b = host[0];
  auto triple = [] __host__ __device__(T x) { return x * T(3); };
  const auto det_seq = dpar::deterministic(dpar::seq);
  auto bits = [](T x) {
    std::uint64_t u = 0;
    std::memcpy(&u, &x, sizeof x);
    return u;
  };
  CHECK(bits(dpar::reduce(det, a, T(0.5))) == bits(dpar::reduce(det_seq, a, T(0.5))));
  CHECK(bits(dpar::transform_reduce(det, a, T(0.5), std::plus<>{}, triple)) ==
        bits(dpar::transform_reduce(det_seq, a, T(0.5), std::plus<>{}, triple)));
  CHECK(bits(dpar::transform_reduce(det, a, b.begin(), T(0.5))) ==
        bits(dpar::transform_reduce(det_seq, a, b.begin(), T(0.5))));
}

TEST_CASE("deterministic(multi_gpu) all_reduce and sums are the host deterministic bits", "[multi_gpu][gpu]") {
  for (const auto& list : device_lists()) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1009}, std::size_t{65537}}) {
      INFO(name_of(list) << " n = " << n);
      check_deterministic_all_reduce<float>(list, n);
      check_deterministic_all_reduce<double>(list, n);

      // not a float sum: multi_gpu's own all_reduce and scan, in entry and shard order
      const auto det = dpar::deterministic(dpar::multi_gpu(list));
      const std::size_t k = list.size();
      std::vector<std::vector<mat2>> hm(k);
      std::vector<dpar::device_vector<mat2>> bm;
      for (std::size_t r = 0; r < k; ++r) bm.emplace_back(hm[r] = random_matrices(n, 7 * r + n + 1), list[r]);
      dpar::all_reduce(det, bm, mat_mul{});
      std::vector<mat2> want = hm[0];
      for (std::size_t r = 1; r < k; ++r)
        for (std::size_t i = 0; i < n; ++i) want[i] = mat_mul{}(want[i], hm[r][i]);
      for (std::size_t r = 0; r < k; ++r) CHECK(bm[r].to_host() == want);
      std::vector<mat2> scanned(n), expected(n);
      dpar::inclusive_scan(det, hm[0].begin(), hm[0].end(), scanned.begin(), mat_mul{});
      dpar::inclusive_scan(dpar::seq, hm[0].begin(), hm[0].end(), expected.begin(), mat_mul{});
      CHECK(scanned == expected);
    }
  }
}

TEST_CASE("multi_gpu all_reduce rejects bad buffers before communicating", "[multi_gpu][gpu]") {
  using Catch::Matchers::Contains;
  auto p = dpar::multi_gpu({0, 0});
  std::vector<dpar::device_vector<int>> uneven;
  uneven.emplace_back(std::vector<int>(10, 1), 0);
  uneven.emplace_back(std::vector<int>(11, 2), 0);
  CHECK_THROWS_WITH(dpar::all_reduce(p, uneven), Contains("buffer 1") && Contains("11 elements") && Contains("10"));
  CHECK(uneven[0].to_host() == std::vector<int>(10, 1));  // untouched
  std::vector<dpar::device_vector<int>> three;
  for (int r = 0; r < 3; ++r) three.emplace_back(std::vector<int>(4, r), 0);
  CHECK_THROWS_WITH(dpar::all_reduce(p, three), Contains("3 buffers") && Contains("2 entries"));
  std::vector<int> h0(4), h1(4);
  std::vector<std::span<int>> host_spans{h0, h1};
  CHECK_THROWS_WITH(dpar::all_reduce(p, host_spans), Contains("not device memory"));
  dpar::device_vector<int> one(std::vector<int>(4, 1), 0);
  std::vector<std::span<int>> same{std::span<int>(one.data(), 4), std::span<int>(one.data(), 4)};
  CHECK_THROWS_WITH(dpar::all_reduce(p, same), Contains("overlap"));
}

// ---- sort (issue 21): a sharded_vector sorted whole, its shard sizes kept ----
TEST_CASE("multi_gpu sort, stable_sort and sort_by_key on sharded_vector and host iterators", "[multi_gpu][gpu][sort]") {
  for (const auto& list : device_lists()) {
    auto policy = dpar::multi_gpu(list);
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{65537}}) {
      INFO(name_of(list) << ", n = " << n);
      const auto keys = random_ints(n, n + 5);
      std::vector<std::int64_t> positions(n);
      std::iota(positions.begin(), positions.end(), std::int64_t{0});
      auto want = keys;
      std::sort(want.begin(), want.end());
      auto want_positions = positions;
      std::stable_sort(want_positions.begin(), want_positions.end(), [&](std::int64_t a, std::int64_t b) {
        return keys[static_cast<std::size_t>(a)] < keys[static_cast<std::size_t>(b)];
      });

      dpar::sharded_vector<std::int64_t> v(policy, keys);
      std::vector<std::size_t> sizes_before;
      for (const auto& s : v.shards()) sizes_before.push_back(s.size);
      dpar::sort(policy, v);
      CHECK(v.to_host() == want);
      std::vector<std::size_t> sizes_after;
      for (const auto& s : v.shards()) sizes_after.push_back(s.size);
      CHECK(sizes_after == sizes_before);

      dpar::sharded_vector<std::int64_t> k(policy, keys), p(policy, positions);
      dpar::sort_by_key(policy, k, p);
      CHECK(p.to_host() == want_positions);

      auto host = keys;
      dpar::stable_sort(policy, host.begin(), host.end(), std::greater<>{});
      auto want_descending = keys;
      std::stable_sort(want_descending.begin(), want_descending.end(), std::greater<>{});
      CHECK(host == want_descending);
    }
  }
}

// A comparator on the last decimal digit only: few distinct keys, many equal ones.
struct by_last_digit {
  __host__ __device__ bool operator()(std::int64_t a, std::int64_t b) const {
    return (a % 10 + 10) % 10 < (b % 10 + 10) % 10;
  }
};

// The sample sort's paths: input already sorted (every shard keeps its own
// elements), reversed (every element moves), few distinct keys under a user
// comparator (the merge sort; stability across shards by positions as values).
TEST_CASE("multi_gpu sample sort: sorted, reversed and few distinct keys, stable across shards",
          "[multi_gpu][gpu][sort]") {
  for (const auto& list : device_lists()) {
    auto policy = dpar::multi_gpu(list);
    for (std::size_t n : {std::size_t{2}, std::size_t{97}, std::size_t{65537}}) {
      INFO(name_of(list) << ", n = " << n);
      std::vector<std::int64_t> ascending(n), positions(n);
      std::iota(ascending.begin(), ascending.end(), std::int64_t{-5});
      std::iota(positions.begin(), positions.end(), std::int64_t{0});
      const std::vector<std::int64_t> descending(ascending.rbegin(), ascending.rend());
      for (const auto& input : {ascending, descending}) {
        dpar::sharded_vector<std::int64_t> v(policy, input);
        dpar::stable_sort(policy, v);
        CHECK(v.to_host() == ascending);
      }
      const auto keys = random_ints(n, n + 7);
      auto want_positions = positions;
      std::stable_sort(want_positions.begin(), want_positions.end(), [&](std::int64_t a, std::int64_t b) {
        return by_last_digit{}(keys[static_cast<std::size_t>(a)], keys[static_cast<std::size_t>(b)]);
      });
      dpar::sharded_vector<std::int64_t> k(policy, keys), p(policy, positions);
      dpar::sort_by_key(policy, k, p, by_last_digit{});
      CHECK(p.to_host() == want_positions);
      auto stable = keys;
      dpar::stable_sort(policy, stable.begin(), stable.end(), by_last_digit{});
      auto want = keys;
      std::stable_sort(want.begin(), want.end(), by_last_digit{});
      CHECK(stable == want);
    }
  }
}
