// Every algorithm and overload against its std:: counterpart, on random data,
// for every policy and size in common.hpp.
#include "common.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>

using dpar_test::for_each_policy;
using dpar_test::random_vector;
using dpar_test::sizes;

namespace {

// Exact for integers; for floating point, within rounding of the reduction.
template <class T>
void check_equal(const std::vector<T>& got, const std::vector<T>& want) {
  REQUIRE(got.size() == want.size());
  if constexpr (std::is_floating_point_v<T>) {
    // scans: element i may differ by rounding of a sum over i + 1 terms of magnitude <= 1
    for (std::size_t i = 0; i < got.size(); ++i)
      if (!dpar_test::close(got[i], want[i], static_cast<double>(i + 1), 1e-12 * (sizeof(T) == 4 ? 1e7 : 1)))
        FAIL("element " << i << ": " << got[i] << " != " << want[i]);
  } else {
    CHECK(got == want);
  }
}

template <class T>
void check_scalar(T got, long double want, std::size_t n) {
  if constexpr (std::is_floating_point_v<T>)
    CHECK(dpar_test::close(static_cast<double>(got), static_cast<double>(want), static_cast<double>(n),
                           sizeof(T) == 4 ? 1e-5 : 1e-12));
  else
    CHECK(static_cast<long double>(got) == want);
}

}  // namespace

TEMPLATE_TEST_CASE("transform and for_each match std", "[algorithms]", int, long long, float, double) {
  using T = TestType;
  for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : sizes) {
      INFO(name << ", n = " << n);
      auto a = random_vector<T>(n, n + 1), b = random_vector<T>(n, n + 2);
      auto f = [](T x) { return static_cast<T>(x * 3 - 1); };
      auto g = [](T x, T y) { return static_cast<T>(x * 2 + y); };

      std::vector<T> want(n), got(n);
      std::transform(a.begin(), a.end(), want.begin(), f);
      CHECK(dpar::transform(policy, a.begin(), a.end(), got.begin(), f) == got.end());
      check_equal(got, want);
      std::fill(got.begin(), got.end(), T(7));
      CHECK(dpar::transform(policy, a, got.begin(), f) == got.end());
      check_equal(got, want);

      std::transform(a.begin(), a.end(), b.begin(), want.begin(), g);
      CHECK(dpar::transform(policy, a.begin(), a.end(), b.begin(), got.begin(), g) == got.end());
      check_equal(got, want);
      std::fill(got.begin(), got.end(), T(7));
      CHECK(dpar::transform(policy, a, b.begin(), got.begin(), g) == got.end());
      check_equal(got, want);

      // in place
      got = a;
      dpar::transform(policy, got.begin(), got.end(), got.begin(), f);
      std::transform(a.begin(), a.end(), want.begin(), f);
      check_equal(got, want);

      got = a;
      dpar::for_each(policy, got.begin(), got.end(), [](T& x) { x = static_cast<T>(x + 5); });
      std::transform(a.begin(), a.end(), want.begin(), [](T x) { return static_cast<T>(x + 5); });
      check_equal(got, want);
      got = a;
      dpar::for_each(policy, got, [](T& x) { x = static_cast<T>(x + 5); });
      check_equal(got, want);
    }
  });
}

TEMPLATE_TEST_CASE("reduce and transform_reduce match a long double reference", "[algorithms]", int, long long,
                   float, double) {
  using T = TestType;
  for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : sizes) {
      INFO(name << ", n = " << n);
      auto a = random_vector<T>(n, 3 * n + 1), b = random_vector<T>(n, 3 * n + 2);
      long double sum = 5, dot = 5, sq = 1;
      T mn = std::numeric_limits<T>::max(), mx = std::numeric_limits<T>::lowest();
      for (std::size_t i = 0; i < n; ++i) {
        sum += a[i];
        dot += static_cast<long double>(a[i]) * b[i];
        sq += static_cast<long double>(a[i]) * a[i];
        mn = std::min(mn, a[i]);
        mx = std::max(mx, a[i]);
      }
      check_scalar(dpar::reduce(policy, a.begin(), a.end(), T(5)), sum, n);
      check_scalar(dpar::reduce(policy, a, T(5)), sum, n);
      check_scalar(dpar::reduce(policy, a.begin(), a.end(), T(5), std::plus<T>{}), sum, n);
      check_scalar(dpar::reduce(policy, a, T(5), std::plus<>{}), sum, n);
      CHECK(dpar::reduce(policy, a, std::numeric_limits<T>::max(), dpar::minimum<>{}) == mn);
      CHECK(dpar::reduce(policy, a, std::numeric_limits<T>::lowest(), dpar::maximum<T>{}) == mx);
      CHECK(dpar::reduce(policy, a, std::numeric_limits<T>::lowest(),
                         [](T x, T y) { return std::max(x, y); }) == mx);
      // std::reduce without init: from T{} with +
      check_scalar(dpar::reduce(policy, a.begin(), a.end()), sum - 5, n);
      check_scalar(dpar::reduce(policy, a), sum - 5, n);
      // the two-range transform_reduce with ops of the caller's choosing
      T max_diff = std::numeric_limits<T>::lowest();
      for (std::size_t i = 0; i < n; ++i) max_diff = std::max(max_diff, static_cast<T>(a[i] - b[i]));
      auto diff = [](T x, T y) { return static_cast<T>(x - y); };
      CHECK(dpar::transform_reduce(policy, a.begin(), a.end(), b.begin(), std::numeric_limits<T>::lowest(),
                                   dpar::maximum<>{}, diff) == max_diff);
      CHECK(dpar::transform_reduce(policy, a, b.begin(), std::numeric_limits<T>::lowest(), dpar::maximum<>{}, diff) ==
            max_diff);
      check_scalar(dpar::transform_reduce(policy, a.begin(), a.end(), b.begin(), T(5)), dot, n);
      check_scalar(dpar::transform_reduce(policy, a, b.begin(), T(5)), dot, n);
      auto square = [](T x) { return x * x; };
      check_scalar(dpar::transform_reduce(policy, a.begin(), a.end(), T(1), std::plus<>{}, square), sq, n);
      check_scalar(dpar::transform_reduce(policy, a, T(1), std::plus<>{}, square), sq, n);
      if constexpr (std::is_integral_v<T>) {
        T x = std::accumulate(a.begin(), a.end(), T(0), std::bit_xor<>{});
        CHECK(dpar::reduce(policy, a, T(0), std::bit_xor<>{}) == x);
      }
    }
  });
}

TEMPLATE_TEST_CASE("scans match std also in place", "[algorithms][scan]", int, long long, float, double) {
  using T = TestType;
  for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : sizes) {
      INFO(name << ", n = " << n);
      auto a = random_vector<T>(n, 5 * n + 1);
      std::vector<T> want(n), got(n, T(9));

      std::inclusive_scan(a.begin(), a.end(), want.begin());
      CHECK(dpar::inclusive_scan(policy, a.begin(), a.end(), got.begin()) == got.end());
      check_equal(got, want);
      std::fill(got.begin(), got.end(), T(9));
      CHECK(dpar::inclusive_scan(policy, a, got.begin()) == got.end());
      check_equal(got, want);

      std::inclusive_scan(a.begin(), a.end(), want.begin(), dpar::maximum<>{});
      CHECK(dpar::inclusive_scan(policy, a.begin(), a.end(), got.begin(), dpar::maximum<>{}) == got.end());
      check_equal(got, want);
      CHECK(dpar::inclusive_scan(policy, a, got.begin(), dpar::maximum<>{}) == got.end());
      check_equal(got, want);

      std::inclusive_scan(a.begin(), a.end(), want.begin(), std::plus<>{}, T(11));
      CHECK(dpar::inclusive_scan(policy, a.begin(), a.end(), got.begin(), std::plus<>{}, T(11)) == got.end());
      check_equal(got, want);
      CHECK(dpar::inclusive_scan(policy, a, got.begin(), std::plus<>{}, T(11)) == got.end());
      check_equal(got, want);

      std::exclusive_scan(a.begin(), a.end(), want.begin(), T(-4));
      CHECK(dpar::exclusive_scan(policy, a.begin(), a.end(), got.begin(), T(-4)) == got.end());
      check_equal(got, want);
      CHECK(dpar::exclusive_scan(policy, a, got.begin(), T(-4)) == got.end());
      check_equal(got, want);

      std::exclusive_scan(a.begin(), a.end(), want.begin(), T(-4), dpar::minimum<>{});
      CHECK(dpar::exclusive_scan(policy, a.begin(), a.end(), got.begin(), T(-4), dpar::minimum<>{}) == got.end());
      check_equal(got, want);
      CHECK(dpar::exclusive_scan(policy, a, got.begin(), T(-4), dpar::minimum<>{}) == got.end());
      check_equal(got, want);

      // in place, inclusive and exclusive
      got = a;
      std::inclusive_scan(a.begin(), a.end(), want.begin());
      CHECK(dpar::inclusive_scan(policy, got.begin(), got.end(), got.begin()) == got.end());
      check_equal(got, want);
      got = a;
      std::exclusive_scan(a.begin(), a.end(), want.begin(), T(2));
      CHECK(dpar::exclusive_scan(policy, got, got.begin(), T(2)) == got.end());
      check_equal(got, want);
    }
  });
}

TEST_CASE("empty input: reduce returns init and scans write nothing", "[algorithms]") {
  for_each_policy([](const auto& policy, const std::string& name) {
    INFO(name);
    std::vector<int> empty;
    std::vector<int> out{42};
    CHECK(dpar::reduce(policy, empty, 17) == 17);
    CHECK(dpar::reduce(policy, empty) == 0);
    CHECK(dpar::transform_reduce(policy, empty, empty.begin(), 3, std::plus<>{}, std::minus<>{}) == 3);
    CHECK(dpar::transform_reduce(policy, empty, empty.begin(), 3) == 3);
    CHECK(dpar::inclusive_scan(policy, empty, out.begin()) == out.begin());
    CHECK(dpar::exclusive_scan(policy, empty, out.begin(), 5) == out.begin());
    CHECK(dpar::transform(policy, empty, out.begin(), [](int x) { return x; }) == out.begin());
    CHECK(out[0] == 42);
  });
}

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
