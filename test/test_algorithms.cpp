// The conformance suite's algorithms on the CPU policies (test_types.cpp has
// its element types), plus what only the CPU policies take: views and the
// op-traits table.
#include "conformance_cpu.hpp"

#include <algorithm>
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
