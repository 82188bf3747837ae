// Non-trivial element types, non-commutative ops, non-contiguous iterators,
// exceptions from user code, and nested parallel calls.
#include "common.hpp"
#include "mat2.hpp"

#include <array>
#include <deque>
#include <numeric>
#include <stdexcept>

using dpar_test::for_each_policy;

namespace {

using dpar_test::mat2;
using mat_mul = dpar_test::mat2_mul;
constexpr mat2 identity = dpar_test::mat2_identity;
std::vector<mat2> random_matrices(std::size_t n, std::uint64_t seed) { return dpar_test::random_mat2s(n, seed); }

// No default constructor: algorithms must never need one.
struct money {
  explicit money(long c) : cents(c) {}
  long cents;
  friend money operator+(const money& a, const money& b) { return money(a.cents + b.cents); }
  friend bool operator==(const money&, const money&) = default;
};

}  // namespace

TEST_CASE("non-commutative op: 2x2 matrix products give the sequential answer", "[types][order]") {
  for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : {0, 1, 2, 5, 4099, 10007, 65537}) {
      INFO(name << ", n = " << n);
      auto a = random_matrices(n, n);
      CHECK(dpar::reduce(policy, a, identity, mat_mul{}) == std::accumulate(a.begin(), a.end(), identity, mat_mul{}));
      mat2 left = a.empty() ? identity : a[0];
      CHECK(dpar::reduce(policy, a, left, mat_mul{}) == std::accumulate(a.begin(), a.end(), left, mat_mul{}));

      std::vector<mat2> want(n), got(n);
      std::inclusive_scan(a.begin(), a.end(), want.begin(), mat_mul{});
      dpar::inclusive_scan(policy, a, got.begin(), mat_mul{});
      CHECK(got == want);
      std::inclusive_scan(a.begin(), a.end(), want.begin(), mat_mul{}, left);
      dpar::inclusive_scan(policy, a, got.begin(), mat_mul{}, left);
      CHECK(got == want);
      std::exclusive_scan(a.begin(), a.end(), want.begin(), left, mat_mul{});
      dpar::exclusive_scan(policy, a, got.begin(), left, mat_mul{});
      CHECK(got == want);
      // in place
      got = a;
      dpar::exclusive_scan(policy, got.begin(), got.end(), got.begin(), left, mat_mul{});
      CHECK(got == want);
      auto square = [](const mat2& x) { return mat_mul{}(x, x); };
      mat2 sq = identity;
      for (auto& x : a) sq = mat_mul{}(sq, square(x));
      CHECK(dpar::transform_reduce(policy, a, identity, mat_mul{}, square) == sq);
      // two ranges, both ops non-commutative: the product of a[i] * b[i] in order
      auto b = random_matrices(n, n + 1);
      mat2 pairs = identity;
      for (std::size_t i = 0; i < n; ++i) pairs = mat_mul{}(pairs, mat_mul{}(a[i], b[i]));
      CHECK(dpar::transform_reduce(policy, a.begin(), a.end(), b.begin(), identity, mat_mul{}, mat_mul{}) == pairs);
      CHECK(dpar::transform_reduce(policy, a, b.begin(), identity, mat_mul{}, mat_mul{}) == pairs);
    }
  });
}

TEST_CASE("strings: concatenation keeps sequence order", "[types][order]") {
  for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : {0, 1, 3, 4099, 5003}) {  // scans of strings are quadratic in memory
      INFO(name << ", n = " << n);
      std::vector<std::string> words(n);
      for (std::size_t i = 0; i < n; ++i) words[i] = std::to_string(i) + ",";
      std::string want = std::accumulate(words.begin(), words.end(), std::string(">"));
      CHECK(dpar::reduce(policy, words, std::string(">")) == want);
      CHECK(dpar::reduce(policy, words) == want.substr(1));  // from std::string{}
      std::vector<std::string> got(n, "x"), expected(n);
      std::inclusive_scan(words.begin(), words.end(), expected.begin());
      dpar::inclusive_scan(policy, words, got.begin());
      CHECK(got == expected);
      std::exclusive_scan(words.begin(), words.end(), expected.begin(), std::string("<"));
      dpar::exclusive_scan(policy, words.begin(), words.end(), got.begin(), std::string("<"));
      CHECK(got == expected);
      auto len = [](const std::string& s) { return s.size(); };
      std::size_t total = 0;
      for (auto& w : words) total += w.size();
      CHECK(dpar::transform_reduce(policy, words, std::size_t{0}, std::plus<>{}, len) == total);
    }
  });
}

TEST_CASE("types without a default constructor", "[types]") {
  for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : {0, 1, 4099, 65537}) {
      INFO(name << ", n = " << n);
      std::vector<money> a;
      for (std::size_t i = 0; i < n; ++i) a.emplace_back(static_cast<long>(i % 100));
      long want = 0;
      for (auto& m : a) want += m.cents;
      CHECK(dpar::reduce(policy, a, money(3)).cents == want + 3);
      CHECK(dpar::reduce(policy, a.begin(), a.end(), money(0), std::plus<>{}).cents == want);

      std::vector<money> got(n, money(-1)), expected(n, money(-1));
      std::inclusive_scan(a.begin(), a.end(), expected.begin());
      dpar::inclusive_scan(policy, a, got.begin());
      CHECK(got == expected);
      std::exclusive_scan(a.begin(), a.end(), expected.begin(), money(7));
      dpar::exclusive_scan(policy, a, got.begin(), money(7));
      CHECK(got == expected);
      dpar::transform(policy, a, got.begin(), [](const money& m) { return money(m.cents * 2); });
      CHECK((n == 0 || got.back().cents == a.back().cents * 2));
    }
  });
}

TEST_CASE("random-access but not contiguous: std::deque", "[types][iterators]") {
  for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : {0, 1, 4099, 100003}) {
      INFO(name << ", n = " << n);
      auto v = dpar_test::random_vector<long>(n, n);
      std::deque<long> d(v.begin(), v.end()), out(n);
      CHECK(dpar::reduce(policy, d, 0L) == std::accumulate(v.begin(), v.end(), 0L));
      std::vector<long> want(n);
      std::inclusive_scan(v.begin(), v.end(), want.begin());
      dpar::inclusive_scan(policy, d, out.begin());
      CHECK(std::equal(out.begin(), out.end(), want.begin()));
      dpar::inclusive_scan(policy, d.begin(), d.end(), d.begin());  // in place
      CHECK(std::equal(d.begin(), d.end(), want.begin()));
      dpar::transform(policy, d, out.begin(), [](long x) { return -x; });
      CHECK((n == 0 || out.back() == -want.back()));
    }
  });
}

TEST_CASE("an exception from any element reaches the caller and the pool is reused", "[exceptions]") {
  const std::size_t n = 100003;
  std::vector<int> v(n, 1), out(n);
  for_each_policy([&](const auto& policy, const std::string& name) {
    for (std::size_t bad : {std::size_t{0}, n / 3, n / 2 + 1, n - 1}) {
      INFO(name << ", throwing at " << bad);
      auto f = [&](const int& x) {
        if (&x - v.data() == static_cast<std::ptrdiff_t>(bad)) throw std::runtime_error("bad element");
        return x;
      };
      auto op = [&](int acc, const int& x) { return acc + f(x); };
      CHECK_THROWS_WITH(dpar::transform(policy, v, out.begin(), f), "bad element");
      CHECK_THROWS_WITH(dpar::for_each(policy, v, [&](const int& x) { f(x); }), "bad element");
      CHECK_THROWS_WITH(dpar::transform_reduce(policy, v, 0, std::plus<>{}, f), "bad element");
      CHECK_THROWS_WITH(dpar::exclusive_scan(policy, v, out.begin(), 0, op), "bad element");
      CHECK_THROWS_WITH(dpar::inclusive_scan(policy, v, out.begin(), op, 0), "bad element");
      // the pool still works
      CHECK(dpar::reduce(policy, v, 0) == static_cast<int>(n));
    }
  });
}

TEST_CASE("nested dpar::par calls from inside a worker", "[nested]") {
  std::vector<int> row(5000, 2);
  std::vector<int> idx(4100);  // enough for the outer call to fork on every pool
  std::iota(idx.begin(), idx.end(), 0);
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    std::vector<long> sums(idx.size());
    dpar::transform(policy, idx, sums.begin(), [&](int) { return dpar::reduce(dpar::par, row, 0L); });
    CHECK(std::all_of(sums.begin(), sums.end(), [](long s) { return s == 10000; }));
    // Deeper: a reduce whose transform itself runs a scan on dpar::par.
    long total = dpar::transform_reduce(policy, idx, 0L, std::plus<>{}, [](int i) {
      std::vector<int> tmp(100, i % 3), out(100);
      dpar::inclusive_scan(dpar::par, tmp, out.begin());
      return static_cast<long>(out.back());
    });
    long want = 0;
    for (int i = 0; i < 4100; ++i) want += 100L * (i % 3);
    CHECK(total == want);
  });
}
