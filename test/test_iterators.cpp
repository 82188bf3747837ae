// dpar::counting_iterator and dpar::zip: the C++20 iterator concepts (also
// read-only over const ranges), reading and writing through the algorithms on
// every CPU policy; and std::views::iota / views::transform as inputs. Also
// the derived algorithms' conformance cases through dpar::deterministic.
#include "common.hpp"
#include "conformance_cpu.hpp"

#include <algorithm>
#include <functional>
#include <iterator>
#include <numeric>
#include <ranges>
#include <tuple>
#include <vector>

using dpar_test::for_each_policy;
using dpar_test::random_vector;

namespace {
using counting = dpar::counting_iterator<long>;
using vec_it = std::vector<int>::iterator;
using const_vec_it = std::vector<int>::const_iterator;
using zip_it = dpar::zip_iterator<vec_it, std::vector<double>::iterator>;
using const_zip_it = dpar::zip_iterator<const_vec_it, std::vector<double>::const_iterator>;
}  // namespace

TEST_CASE("counting_iterator and zip satisfy the C++20 iterator concepts", "[iterators]") {
  STATIC_REQUIRE(std::random_access_iterator<counting>);
  STATIC_REQUIRE(std::sized_sentinel_for<counting, counting>);
  STATIC_REQUIRE(std::random_access_iterator<zip_it>);
  STATIC_REQUIRE(std::random_access_iterator<const_zip_it>);  // read-only: tuple<const int&, ...> references
  STATIC_REQUIRE(std::indirectly_writable<zip_it, std::tuple<int, double>>);
  STATIC_REQUIRE(std::indirectly_copyable<const_zip_it, zip_it>);
  STATIC_REQUIRE(!std::indirectly_writable<const_zip_it, std::tuple<int, double>>);
  std::vector<int> a{1, 2, 3};
  std::vector<double> b{0.5, 1.5};
  STATIC_REQUIRE(std::ranges::random_access_range<decltype(dpar::zip(a, b))>);
  STATIC_REQUIRE(std::ranges::view<decltype(dpar::zip(a, b))>);
  CHECK(dpar::zip(a, b).size() == 2);  // the shortest
  auto z = dpar::zip(std::as_const(a), b);
  auto [x, y] = z[1];
  CHECK(x == 2);
  CHECK(y == 1.5);
  std::tuple<int, double> t = *(z.begin() + 1);
  CHECK(t == std::tuple<int, double>(2, 1.5));
  CHECK(get<0>(*z.begin()) == 1);
  CHECK(std::get<1>(*z.begin()) == 0.5);  // std::get too, as on Thrust's and std::views::zip's tuples
  dpar::zip(a, b)[0] = std::tuple(7, 8.5);
  CHECK(a[0] == 7);
  CHECK(b[0] == 8.5);
  std::get<1>(dpar::zip(a, b)[0]) = 9.5;  // writes through
  CHECK(b[0] == 9.5);
  counting c(10);
  CHECK(c[5] == 15);
  CHECK(counting(20) - c == 10);
  CHECK(*std::ranges::find(counting(0), counting(100), 42) == 42);
}

TEST_CASE("counting_iterator and zip through the algorithms on every CPU policy", "[iterators][algorithms]") {
  for (std::size_t n : dpar_test::sizes) {
    if (n > 10007) continue;  // above the thread cut-offs; larger sizes add time, not cases
    const auto a = random_vector<int>(n, n + 5);
    const auto b = random_vector<double>(n, n + 6);
    for_each_policy([&](const auto& policy, const std::string& name) {
      INFO(name << ", n = " << n);
      // sum of i for i < n, without memory
      const long count = static_cast<long>(n);
      CHECK(dpar::reduce(policy, counting(0), counting(count), 0L) == count * (count - 1) / 2);
      std::vector<long> idx(n);
      CHECK(dpar::copy(policy, counting(3), counting(3 + count), idx.begin()) == idx.end());
      CHECK((n == 0 || (idx.front() == 3 && idx.back() == count + 2)));

      // read a const zip, write a zip: (a + b, a * b)
      std::vector<double> sums(n), products(n);
      auto out = dpar::zip(sums, products);
      auto f = [](const auto& ab) {
        auto [x, y] = ab;
        return std::tuple<double, double>(x + y, x * y);
      };
      CHECK(dpar::transform(policy, dpar::zip(a, b), out.begin(), f) == out.end());
      for (std::size_t i = 0; i < n; ++i) {
        CHECK(sums[i] == a[i] + b[i]);
        CHECK(products[i] == a[i] * b[i]);
      }
      // write through a zip's references in place
      auto ca = a;
      auto cb = b;
      dpar::for_each(policy, dpar::zip(ca, cb), [](auto ab) {
        auto [x, y] = ab;
        x = -x;
        y = y * 2;
      });
      CHECK((n == 0 || (ca.back() == -a.back() && cb.back() == 2 * b.back())));
      // compaction of pairs, and a reduction over a zip
      std::vector<int> keep_a(n);
      std::vector<double> keep_b(n);
      auto kept = dpar::zip(keep_a, keep_b);
      auto positive = [](const auto& ab) { return get<0>(ab) > 0; };
      auto end = dpar::copy_if(policy, dpar::zip(a, b), kept.begin(), positive);
      const auto want = std::count_if(a.begin(), a.end(), [](int x) { return x > 0; });
      CHECK(end - kept.begin() == want);
      CHECK(std::all_of(keep_a.begin(), keep_a.begin() + want, [](int x) { return x > 0; }));
      double dot = dpar::transform_reduce(policy, dpar::zip(a, b), 0.0, std::plus<>{},
                                          [](const auto& ab) { return get<0>(ab) * get<1>(ab); });
      CHECK(dot == Approx(std::transform_reduce(a.begin(), a.end(), b.begin(), 0.0)).margin(1e-9));
    });
  }
}

// clang 14 cannot compile libstdc++ 12's views (as in test_algorithms.cpp).
#if !defined(__clang__) || __clang_major__ >= 15
TEST_CASE("std::views::iota and views::transform work as inputs on every CPU policy", "[iterators][ranges]") {
  const int n = 100003;
  auto iota = std::views::iota(0, n);
  auto squares = iota | std::views::transform([](int i) { return static_cast<long>(i) * i; });
  long want = 0;
  for (long i = 0; i < n; ++i) want += i * i;
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    CHECK(dpar::reduce(policy, squares, 0L) == want);
    CHECK(dpar::count_if(policy, iota, [](int i) { return i % 7 == 0; }) == (n + 6) / 7);
    CHECK(*dpar::find_if(policy, squares, [](long s) { return s > 1000; }) == 32 * 32);
    CHECK(*dpar::max_element(policy, squares) == static_cast<long>(n - 1) * (n - 1));
    std::vector<int> multiples(n);
    auto end = dpar::copy_if(policy, iota, multiples.begin(), [](int i) { return i % 1000 == 0; });
    CHECK(end - multiples.begin() == 101);
    CHECK(multiples[100] == 100000);
    std::vector<long> scanned(n);
    dpar::inclusive_scan(policy, squares, scanned.begin());
    CHECK(scanned.back() == want);
  });
}
#endif

// deterministic(policy) runs the derived algorithms as its inner policy does.
struct deterministic_adaptor : cpu_adaptor {
  template <class Body>
  static void for_each_policy(Body&& body) {
    body(dpar::deterministic(dpar::seq), std::string("deterministic(seq)"));
    body(dpar::deterministic(dpar::par.on(dpar_test::pool(3))), std::string("deterministic(par.on(pool(3)))"));
  }
};
DPAR_CONFORMANCE_DERIVED(deterministic_adaptor, "deterministic")
