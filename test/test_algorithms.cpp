// The conformance suite's algorithms on the CPU policies (test_types.cpp has
// its element types), plus what only the CPU policies take: views and the
// op-traits table.
#include "conformance_cpu.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

using dpar_test::for_each_policy;
using dpar_test::random_vector;

DPAR_CONFORMANCE_ALGORITHMS(cpu_adaptor, "cpu", int, long long, float, double)
DPAR_CONFORMANCE_DERIVED(cpu_adaptor, "cpu")

// clang 14 cannot compile libstdc++ 12's views (a known incompatibility of the
// two, not of dpar); containers as ranges are covered above on every compiler.
#if !defined(__clang__) || __clang_major__ >= 15
TEST_CASE("range overloads accept views", "[algorithms][ranges]") {
  auto v = dpar_test::random_vector<int>(100003, 9);
  auto evens = std::views::iota(0, 100003);
  long long want = std::accumulate(v.begin(), v.end(), 0LL);
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    CHECK(dpar::reduce(policy, std::views::all(v), 0LL) == want);
    CHECK(dpar::reduce(policy, evens, 0LL) == 100002LL * 100003LL / 2);
    CHECK(dpar::reduce(policy, v | std::views::take(10), 0LL) == std::accumulate(v.begin(), v.begin() + 10, 0LL));
  });
}
#endif

namespace {
// A user op that declares itself a sum: it gets + on T's identity, and the
// backends' library ops (MPI_SUM, ncclSum) through its kind.
struct declared_sum {
  template <class A>
  A operator()(A a, A b) const {
    return a + b;
  }
};
}  // namespace
template <class T>
struct dpar::op_kind_of<declared_sum, T> : std::integral_constant<dpar::op_kind, dpar::op_kind::sum> {};

TEST_CASE("op traits: kinds and identities of known ops, user ops by specialization", "[functional]") {
  using dpar::op_kind;
  STATIC_REQUIRE(dpar::op_kind_v<std::plus<>, double> == op_kind::sum);
  STATIC_REQUIRE(dpar::op_kind_v<const std::multiplies<int>&, int> == op_kind::product);
  STATIC_REQUIRE(dpar::op_kind_v<std::plus<int>, double> == op_kind::other);  // would truncate: not a sum on double
  STATIC_REQUIRE(dpar::op_kind_v<std::bit_xor<>, unsigned> == op_kind::bit_xor);
  STATIC_REQUIRE(dpar::op_identity<dpar::minimum<>, float>::value() == std::numeric_limits<float>::infinity());
  STATIC_REQUIRE(dpar::op_identity<dpar::maximum<>, int>::value() == std::numeric_limits<int>::lowest());
  STATIC_REQUIRE(dpar::op_identity<std::bit_and<>, unsigned char>::value() == 0xff);
  STATIC_REQUIRE(!dpar::has_identity<std::bit_and<>, double>);
  STATIC_REQUIRE(!dpar::has_identity<std::plus<>, std::string>);
  STATIC_REQUIRE(dpar::has_identity<declared_sum, long>);
  // -0.0 is the identity of floating-point sums: it keeps the sign of -0.0 + -0.0
  CHECK(std::signbit(dpar::op_identity<std::plus<>, double>::value() + -0.0));
  auto v = random_vector<long>(10007, 4);
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    CHECK(dpar::reduce(policy, v, 3L, declared_sum{}) == std::accumulate(v.begin(), v.end(), 3L));
  });
}

// -0.0 is the identity of floating-point sums, so a sum is -0.0 exactly when
// init and every term are (as std::accumulate gives), however the policy cuts
// and vectorizes it: the sizes cross the vector loop's 8 x width and the
// parallel blocks.
TEMPLATE_TEST_CASE("floating-point sums keep the sign of zero on every CPU policy", "[algorithms][reduce]", float,
                   double) {
  using T = TestType;
  for (std::size_t n : dpar_test::sizes_up_to_cap({0, 1, 2, 127, 128, 129, 16411, 70001, 262147})) {
    std::vector<T> zeros(n, T(-0.0)), ones(n, T(1));
    std::vector<T> positive(n, T(0.0));
    for_each_policy([&](const auto& policy, const std::string& name) {
      INFO(name << " n=" << n);
      CHECK(std::signbit(dpar::reduce(policy, zeros, T(-0.0))));
      CHECK(!std::signbit(dpar::reduce(policy, zeros, T(0.0))));
      CHECK(std::signbit(dpar::transform_reduce(policy, zeros.begin(), zeros.end(), ones.begin(), T(-0.0))));
      CHECK(std::signbit(
          dpar::transform_reduce(policy, positive.begin(), positive.end(), T(-0.0), std::plus<>{}, std::negate<>{})));
      if (n == 0) return;
      for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
        std::vector<T> one_positive = zeros;
        one_positive[at] = T(0.0);
        INFO("+0.0 at " << at);
        CHECK(!std::signbit(dpar::reduce(policy, one_positive, T(-0.0))));
        CHECK(dpar::reduce(policy, one_positive, T(-0.0)) == T(0));
      }
    });
  }
}

// The vectorized extremes of arithmetic values (one pass over chunks, then a
// search of the winning chunk): ties across and within chunks, the last
// largest of minmax_element, and > as the comparator.
TEMPLATE_TEST_CASE("min/max/minmax_element of arithmetic values keep std's occurrence", "[algorithms][derived]",
                   int, float, double, unsigned char) {
  for (std::size_t n : dpar_test::sizes_up_to_cap({0, 1, 2, 31, 4095, 4096, 4097, 16411, 65537})) {
    for (int range : {1, 3, 200}) {
      std::vector<TestType> v(n);
      for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<TestType>((i * 7919 + i / 5) % static_cast<std::size_t>(range));
      if (n > 10) v[n - 3] = static_cast<TestType>(range - 1);  // a late largest: ties across chunks
      for_each_policy([&](const auto& policy, const std::string& name) {
        INFO(name << " n=" << n << " range=" << range);
        auto b = v.begin(), e = v.end();
        CHECK(dpar::min_element(policy, v) == std::min_element(b, e));
        CHECK(dpar::max_element(policy, b, e) == std::max_element(b, e));
        CHECK(dpar::minmax_element(policy, b, e) == std::minmax_element(b, e));
        CHECK(dpar::min_element(policy, b, e, std::greater<>{}) == std::min_element(b, e, std::greater<>{}));
        CHECK(dpar::max_element(policy, b, e, std::ranges::greater{}) == std::max_element(b, e, std::greater<>{}));
        CHECK(dpar::minmax_element(policy, b, e, std::greater<TestType>{}) ==
              std::minmax_element(b, e, std::greater<TestType>{}));
      });
    }
  }
}

// find_if and the tests stop soon after a hit: pieces past the first match
// are skipped (the answer is still the first match).
TEST_CASE("find_if, any_of and mismatch stop early", "[algorithms][derived]") {
  const std::size_t n = 100000;
  std::vector<int> v(n, 0);
  v[500] = 1;
  v[90000] = 1;
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    std::atomic<std::size_t> calls{0};
    auto hit = [&](int x) {
      calls.fetch_add(1, std::memory_order_relaxed);
      return x == 1;
    };
    CHECK(dpar::find_if(policy, v, hit) == v.begin() + 500);
    CHECK(calls.load() < n / 2);
    calls = 0;
    CHECK(dpar::any_of(policy, v, hit));
    CHECK(!dpar::all_of(policy, v, [&](int x) { return !hit(x); }));
    CHECK(calls.load() < n);
    std::vector<int> w = v;
    w[700] = 2;
    CHECK(dpar::mismatch(policy, v, w).first == v.begin() + 700);
    CHECK(!dpar::equal(policy, v, w));
  });
}
