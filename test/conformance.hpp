#pragma once
// The conformance suite: what every policy must do, written once. Each body
// builds global inputs from fixed seeds, computes the std:: answer on them, and
// checks what this participant sees. An adaptor A says where the data lives:
//
//   A::for_each_policy(body)  body(policy, name) for each policy under test
//   A::sizes                  the global sizes to try
//   A::place(global)          this participant's part of a global input (a
//                             container the algorithms take as a range)
//   A::host(part)             a placed container's elements as a std::vector
//   A::any_value_type         element types that are not trivially copyable
//                             (std::string) and std::deque inputs are supported
//   A::is_failure_elsewhere(e)  whether e is what a participant gets when a
//                             user function threw on another one
//   (the last two: for DPAR_CONFORMANCE_HOST only)
//
// A single process holds all of the data (place and host are the identity, or
// copies to and from a device); under MPI each rank holds an uneven slice and
// reductions return the global result on every rank. The user functions are
// named functors callable on host and device, so the bodies also compile for
// device policies under nvcc.
//
// DPAR_CONFORMANCE_ALGORITHMS(A, "name", types...), DPAR_CONFORMANCE_TYPES(A,
// "name") and DPAR_CONFORMANCE_HOST(A, "name") define the test cases for one
// adaptor. The last group is what only host code can do: user functions that
// throw or call dpar::par, element types without a default constructor or not
// trivially copyable. Device policies leave it out (CUDA cannot carry an
// exception out of a kernel, and CUB needs T{}).

#include <dpar/dpar.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "mat2.hpp"

namespace conformance {

using dpar_test::mat2;
using dpar_test::mat2_mul;
using dpar_test::random_vector;

// An adaptor's place and host where one process holds all of the data in
// host vectors, as given.
struct all_data_in_host_vectors {
  template <class T>
  static std::vector<T> place(const std::vector<T>& global) {
    return global;
  }
  template <class T>
  static const std::vector<T>& host(const std::vector<T>& part) {
    return part;
  }
};

// For an element-wise global result: this participant's part of it.
template <class A, class T>
std::vector<T> mine(const std::vector<T>& global) {
  return A::host(A::place(global));
}

// Exact for integers; for floating point, within rounding of the scan: the
// element at global position g may differ by rounding of a sum over g + 1
// terms of magnitude <= 1.
template <class A, class T>
void check_equal(const std::vector<T>& got, const std::vector<T>& global_want) {
  std::vector<T> want = mine<A>(global_want);
  REQUIRE(got.size() == want.size());
  if constexpr (std::is_floating_point_v<T>) {
    std::vector<std::size_t> position(global_want.size());
    std::iota(position.begin(), position.end(), std::size_t{0});
    position = mine<A>(position);
    for (std::size_t i = 0; i < got.size(); ++i)
      if (!dpar_test::close(got[i], want[i], static_cast<double>(position[i] + 1), 1e-12 * (sizeof(T) == 4 ? 1e7 : 1)))
        FAIL("element " << position[i] << ": " << got[i] << " != " << want[i]);
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

// The bodies' user functions (named, for nvcc: __host__ __device__).
template <class T>
struct times3_minus1 {
  DPAR_TEST_HOST_DEVICE T operator()(T x) const { return static_cast<T>(x * 3 - 1); }
};
template <class T>
struct twice_plus {
  DPAR_TEST_HOST_DEVICE T operator()(T x, T y) const { return static_cast<T>(x * 2 + y); }
};
template <class T>
struct add5 {
  DPAR_TEST_HOST_DEVICE T operator()(T x) const { return static_cast<T>(x + 5); }
};
template <class T>
struct add5_in_place {
  DPAR_TEST_HOST_DEVICE void operator()(T& x) const { x = static_cast<T>(x + 5); }
};
template <class T>
struct square {
  DPAR_TEST_HOST_DEVICE T operator()(T x) const { return static_cast<T>(x * x); }
};
template <class T>
struct difference {
  DPAR_TEST_HOST_DEVICE T operator()(T x, T y) const { return static_cast<T>(x - y); }
};
// max, written out: not a known op anywhere
template <class T>
struct larger {
  DPAR_TEST_HOST_DEVICE T operator()(T x, T y) const { return x < y ? y : x; }
};
template <class T>
struct identity_of {
  DPAR_TEST_HOST_DEVICE T operator()(T x) const { return x; }
};
struct mat2_square {
  DPAR_TEST_HOST_DEVICE mat2 operator()(const mat2& x) const { return mat2_mul{}(x, x); }
};

// No default constructor: algorithms must never need one.
struct money {
  explicit money(long c) : cents(c) {}
  long cents;
  friend money operator+(const money& a, const money& b) { return money(a.cents + b.cents); }
  friend bool operator==(const money&, const money&) = default;
};

template <class A, class T>
void transform_and_for_each() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      INFO(name << ", n = " << n);
      auto ga = random_vector<T>(n, n + 1), gb = random_vector<T>(n, n + 2);
      auto a = A::place(ga), b = A::place(gb), got = A::place(std::vector<T>(n, T(7)));
      const auto sevens = got;
      const times3_minus1<T> f;
      const twice_plus<T> g;
      std::vector<T> want(n);

      std::transform(ga.begin(), ga.end(), want.begin(), f);
      CHECK(dpar::transform(policy, a.begin(), a.end(), got.begin(), f) == got.end());
      check_equal<A>(A::host(got), want);
      got = sevens;
      CHECK(dpar::transform(policy, a, got.begin(), f) == got.end());
      check_equal<A>(A::host(got), want);

      std::transform(ga.begin(), ga.end(), gb.begin(), want.begin(), g);
      CHECK(dpar::transform(policy, a.begin(), a.end(), b.begin(), got.begin(), g) == got.end());
      check_equal<A>(A::host(got), want);
      got = sevens;
      CHECK(dpar::transform(policy, a, b.begin(), got.begin(), g) == got.end());
      check_equal<A>(A::host(got), want);

      // in place
      got = a;
      dpar::transform(policy, got.begin(), got.end(), got.begin(), f);
      std::transform(ga.begin(), ga.end(), want.begin(), f);
      check_equal<A>(A::host(got), want);

      got = a;
      dpar::for_each(policy, got.begin(), got.end(), add5_in_place<T>{});
      std::transform(ga.begin(), ga.end(), want.begin(), add5<T>{});
      check_equal<A>(A::host(got), want);
      got = a;
      dpar::for_each(policy, got, add5_in_place<T>{});
      check_equal<A>(A::host(got), want);
    }
  });
}

template <class A, class T>
void reductions() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      INFO(name << ", n = " << n);
      auto ga = random_vector<T>(n, 3 * n + 1), gb = random_vector<T>(n, 3 * n + 2);
      auto a = A::place(ga), b = A::place(gb);
      long double sum = 5, dot = 5, sq = 1;
      T mn = std::numeric_limits<T>::max(), mx = std::numeric_limits<T>::lowest(), max_diff = mx;
      for (std::size_t i = 0; i < n; ++i) {
        sum += ga[i];
        dot += static_cast<long double>(ga[i]) * gb[i];
        sq += static_cast<long double>(ga[i]) * ga[i];
        mn = std::min(mn, ga[i]);
        mx = std::max(mx, ga[i]);
        max_diff = std::max(max_diff, static_cast<T>(ga[i] - gb[i]));
      }
      check_scalar(dpar::reduce(policy, a.begin(), a.end(), T(5)), sum, n);
      check_scalar(dpar::reduce(policy, a, T(5)), sum, n);
      check_scalar(dpar::reduce(policy, a.begin(), a.end(), T(5), std::plus<T>{}), sum, n);
      check_scalar(dpar::reduce(policy, a, T(5), std::plus<>{}), sum, n);
      CHECK(dpar::reduce(policy, a, std::numeric_limits<T>::max(), dpar::minimum<>{}) == mn);
      CHECK(dpar::reduce(policy, a, std::numeric_limits<T>::lowest(), dpar::maximum<T>{}) == mx);
      // an op dpar does not know (the ordered path on every backend)
      CHECK(dpar::reduce(policy, a, std::numeric_limits<T>::lowest(), larger<T>{}) == mx);
      // The forms std has and the backends derive from others: types add
      // nothing there but compile time, so one integer and one real type.
      if constexpr (std::is_same_v<T, long long> || std::is_same_v<T, double>) {
        // std::reduce without init: from T{} with +
        check_scalar(dpar::reduce(policy, a.begin(), a.end()), sum - 5, n);
        check_scalar(dpar::reduce(policy, a), sum - 5, n);
        // the two-range transform_reduce with ops of the caller's choosing
        const difference<T> diff;
        CHECK(dpar::transform_reduce(policy, a.begin(), a.end(), b.begin(), std::numeric_limits<T>::lowest(),
                                     dpar::maximum<>{}, diff) == max_diff);
        CHECK(dpar::transform_reduce(policy, a, b.begin(), std::numeric_limits<T>::lowest(), dpar::maximum<>{},
                                     diff) == max_diff);
      }
      check_scalar(dpar::transform_reduce(policy, a.begin(), a.end(), b.begin(), T(5)), dot, n);
      check_scalar(dpar::transform_reduce(policy, a, b.begin(), T(5)), dot, n);
      check_scalar(dpar::transform_reduce(policy, a.begin(), a.end(), T(1), std::plus<>{}, square<T>{}), sq, n);
      check_scalar(dpar::transform_reduce(policy, a, T(1), std::plus<>{}, square<T>{}), sq, n);
      if constexpr (std::is_integral_v<T>) {
        T x = std::accumulate(ga.begin(), ga.end(), T(0), std::bit_xor<>{});
        CHECK(dpar::reduce(policy, a, T(0), std::bit_xor<>{}) == x);
      }
    }
  });
}

template <class A, class T>
void scans() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      INFO(name << ", n = " << n);
      auto ga = random_vector<T>(n, 5 * n + 1);
      auto a = A::place(ga), got = A::place(std::vector<T>(n, T(9)));
      const auto nines = got;
      std::vector<T> want(n);
      auto check = [&] { check_equal<A>(A::host(got), want); };

      std::inclusive_scan(ga.begin(), ga.end(), want.begin());
      CHECK(dpar::inclusive_scan(policy, a.begin(), a.end(), got.begin()) == got.end());
      check();
      got = nines;
      CHECK(dpar::inclusive_scan(policy, a, got.begin()) == got.end());
      check();

      std::inclusive_scan(ga.begin(), ga.end(), want.begin(), dpar::maximum<>{});
      CHECK(dpar::inclusive_scan(policy, a.begin(), a.end(), got.begin(), dpar::maximum<>{}) == got.end());
      check();
      CHECK(dpar::inclusive_scan(policy, a, got.begin(), dpar::maximum<>{}) == got.end());
      check();

      std::inclusive_scan(ga.begin(), ga.end(), want.begin(), std::plus<>{}, T(11));
      CHECK(dpar::inclusive_scan(policy, a.begin(), a.end(), got.begin(), std::plus<>{}, T(11)) == got.end());
      check();
      CHECK(dpar::inclusive_scan(policy, a, got.begin(), std::plus<>{}, T(11)) == got.end());
      check();

      std::exclusive_scan(ga.begin(), ga.end(), want.begin(), T(-4));
      CHECK(dpar::exclusive_scan(policy, a.begin(), a.end(), got.begin(), T(-4)) == got.end());
      check();
      CHECK(dpar::exclusive_scan(policy, a, got.begin(), T(-4)) == got.end());
      check();

      std::exclusive_scan(ga.begin(), ga.end(), want.begin(), T(-4), dpar::minimum<>{});
      CHECK(dpar::exclusive_scan(policy, a.begin(), a.end(), got.begin(), T(-4), dpar::minimum<>{}) == got.end());
      check();
      CHECK(dpar::exclusive_scan(policy, a, got.begin(), T(-4), dpar::minimum<>{}) == got.end());
      check();

      // in place, inclusive and exclusive
      got = a;
      std::inclusive_scan(ga.begin(), ga.end(), want.begin());
      CHECK(dpar::inclusive_scan(policy, got.begin(), got.end(), got.begin()) == got.end());
      check();
      got = a;
      std::exclusive_scan(ga.begin(), ga.end(), want.begin(), T(2));
      CHECK(dpar::exclusive_scan(policy, got, got.begin(), T(2)) == got.end());
      check();
    }
  });
}

template <class A>
void empty_input() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    INFO(name);
    auto empty = A::place(std::vector<int>{});
    auto out = A::place(std::vector<int>{42});
    CHECK(dpar::reduce(policy, empty, 17) == 17);
    CHECK(dpar::reduce(policy, empty) == 0);
    CHECK(dpar::transform_reduce(policy, empty, empty.begin(), 3) == 3);
    CHECK(dpar::transform_reduce(policy, empty, empty.begin(), 3, std::plus<>{}, std::minus<>{}) == 3);
    CHECK(dpar::inclusive_scan(policy, empty, out.begin()) == out.begin());
    CHECK(dpar::exclusive_scan(policy, empty, out.begin(), 5) == out.begin());
    CHECK(dpar::transform(policy, empty, out.begin(), identity_of<int>{}) == out.begin());
    CHECK(A::host(out) == mine<A>(std::vector<int>{42}));  // nothing written
  });
}

// 2x2 matrices mod p: associative, not commutative, so any reordering shows.
template <class A>
void non_commutative() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      if (n > 65537) continue;
      INFO(name << ", n = " << n);
      auto ga = dpar_test::random_mat2s(n, n), gb = dpar_test::random_mat2s(n, n + 1);
      auto a = A::place(ga), b = A::place(gb), got = A::place(std::vector<mat2>(n, mat2{}));
      const mat2 identity = dpar_test::mat2_identity;
      CHECK(dpar::reduce(policy, a, identity, mat2_mul{}) == std::accumulate(ga.begin(), ga.end(), identity, mat2_mul{}));
      const mat2 left = ga.empty() ? identity : ga[0];
      CHECK(dpar::reduce(policy, a, left, mat2_mul{}) == std::accumulate(ga.begin(), ga.end(), left, mat2_mul{}));

      std::vector<mat2> want(n);
      std::inclusive_scan(ga.begin(), ga.end(), want.begin(), mat2_mul{});
      dpar::inclusive_scan(policy, a, got.begin(), mat2_mul{});
      CHECK(A::host(got) == mine<A>(want));
      std::inclusive_scan(ga.begin(), ga.end(), want.begin(), mat2_mul{}, left);
      dpar::inclusive_scan(policy, a, got.begin(), mat2_mul{}, left);
      CHECK(A::host(got) == mine<A>(want));
      std::exclusive_scan(ga.begin(), ga.end(), want.begin(), left, mat2_mul{});
      dpar::exclusive_scan(policy, a, got.begin(), left, mat2_mul{});
      CHECK(A::host(got) == mine<A>(want));
      // in place
      got = a;
      dpar::exclusive_scan(policy, got.begin(), got.end(), got.begin(), left, mat2_mul{});
      CHECK(A::host(got) == mine<A>(want));

      const mat2_square square;
      mat2 squares = identity, pairs = identity;
      for (std::size_t i = 0; i < n; ++i) {
        squares = mat2_mul{}(squares, square(ga[i]));
        pairs = mat2_mul{}(pairs, mat2_mul{}(ga[i], gb[i]));
      }
      CHECK(dpar::transform_reduce(policy, a, identity, mat2_mul{}, square) == squares);
      // two ranges, both ops non-commutative: the product of a[i] * b[i] in order
      CHECK(dpar::transform_reduce(policy, a.begin(), a.end(), b.begin(), identity, mat2_mul{}, mat2_mul{}) == pairs);
      CHECK(dpar::transform_reduce(policy, a, b.begin(), identity, mat2_mul{}, mat2_mul{}) == pairs);
    }
  });
}

// A custom type without a default constructor.
template <class A>
void custom_type() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : {0, 1, 4099, 65537}) {
      INFO(name << ", n = " << n);
      std::vector<money> ga;
      for (std::size_t i = 0; i < n; ++i) ga.emplace_back(static_cast<long>(i % 100));
      auto a = A::place(ga), got = A::place(std::vector<money>(n, money(-1)));
      long total = 0;
      for (auto& m : ga) total += m.cents;
      CHECK(dpar::reduce(policy, a, money(3)).cents == total + 3);
      CHECK(dpar::reduce(policy, a.begin(), a.end(), money(0), std::plus<>{}).cents == total);

      std::vector<money> want(n, money(-1));
      std::inclusive_scan(ga.begin(), ga.end(), want.begin());
      dpar::inclusive_scan(policy, a, got.begin());
      CHECK(A::host(got) == mine<A>(want));
      std::exclusive_scan(ga.begin(), ga.end(), want.begin(), money(7));
      dpar::exclusive_scan(policy, a, got.begin(), money(7));
      CHECK(A::host(got) == mine<A>(want));
      std::transform(ga.begin(), ga.end(), want.begin(), [](const money& m) { return money(m.cents * 2); });
      dpar::transform(policy, a, got.begin(), [](const money& m) { return money(m.cents * 2); });
      CHECK(A::host(got) == mine<A>(want));
    }
  });
}

// Strings (concatenation keeps sequence order) and std::deque (random access,
// not contiguous): host-only element types and containers.
template <class A>
void host_types() {
  if constexpr (A::any_value_type) {
    A::for_each_policy([](const auto& policy, const std::string& name) {
      for (std::size_t n : {0, 1, 3, 4099, 5003}) {  // scans of strings are quadratic in memory
        INFO(name << ", strings, n = " << n);
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
      for (std::size_t n : {0, 1, 4099, 100003}) {
        INFO(name << ", deque, n = " << n);
        auto v = random_vector<long>(n, n);
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
}

// A user function that throws at one element: the participant holding it gets
// the exception; element-wise algorithms are local to each participant, and
// reductions and scans throw on every participant. Afterwards the policy
// still works.
template <class A>
void exceptions() {
  const std::size_t n = 100003;
  std::vector<long> index(n);
  std::iota(index.begin(), index.end(), 0L);
  auto v = A::place(index), out = A::place(std::vector<long>(n, 0));
  A::for_each_policy([&](const auto& policy, const std::string& name) {
    for (long bad : {0L, static_cast<long>(n / 3), static_cast<long>(n / 2 + 1), static_cast<long>(n - 1)}) {
      INFO(name << ", throwing at element " << bad);
      const bool holder = std::find(v.begin(), v.end(), bad) != v.end();
      auto f = [bad](const long& x) {
        if (x == bad) throw std::runtime_error("bad element");
        return x;
      };
      auto op = [f](long acc, const long& x) { return acc + f(x); };
      auto local = [&](auto&& call) {
        if (holder) CHECK_THROWS_WITH(call(), "bad element");
        else CHECK_NOTHROW(call());
      };
      auto everywhere = [&](auto&& call) {
        if (holder) {
          CHECK_THROWS_WITH(call(), "bad element");
        } else {
          try {
            call();
            FAIL("no exception on a participant that does not hold the element");
          } catch (const std::exception& e) {
            CHECK(A::is_failure_elsewhere(e));
          }
        }
      };
      local([&] { dpar::transform(policy, v, out.begin(), f); });
      local([&] { dpar::for_each(policy, v, [&](const long& x) { f(x); }); });
      everywhere([&] { dpar::transform_reduce(policy, v, 0L, std::plus<>{}, f); });
      everywhere([&] { dpar::exclusive_scan(policy, v, out.begin(), 0L, op); });
      everywhere([&] { dpar::inclusive_scan(policy, v, out.begin(), op, 0L); });
      // still works
      CHECK(dpar::reduce(policy, v, 0L) == static_cast<long>(n) * (static_cast<long>(n) - 1) / 2);
    }
  });
}

// A user function may call dpar::par itself.
template <class A>
void nested() {
  std::vector<int> row(5000, 2);
  std::vector<int> gidx(4100);  // enough for the outer call to fork on every pool
  std::iota(gidx.begin(), gidx.end(), 0);
  auto idx = A::place(gidx);
  A::for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    auto sums = A::place(std::vector<long>(gidx.size(), 0));
    dpar::transform(policy, idx, sums.begin(), [&](int) { return dpar::reduce(dpar::par, row, 0L); });
    auto host_sums = A::host(sums);
    CHECK(std::all_of(host_sums.begin(), host_sums.end(), [](long s) { return s == 10000; }));
    // Deeper: a reduce whose transform itself runs a scan on dpar::par.
    long total = dpar::transform_reduce(policy, idx, 0L, std::plus<>{}, [](int i) {
      std::vector<int> tmp(100, i % 3), scanned(100);
      dpar::inclusive_scan(dpar::par, tmp, scanned.begin());
      return static_cast<long>(scanned.back());
    });
    long want = 0;
    for (int i = 0; i < 4100; ++i) want += 100L * (i % 3);
    CHECK(total == want);
  });
}

}  // namespace conformance

// The suite's test cases for adaptor A, in two groups (two translation units
// build in parallel); the algorithms run for each element type listed after
// BACKEND (each costs compile time). BACKEND names the adaptor: "cpu" gives names ending in " on cpu"
// and the tag [cpu]. (A tag in a test's name would be read as a filter when
// CTest runs the test by name.)
#define DPAR_CONFORMANCE_CASE(what, BACKEND, tags) what " on " BACKEND, "[" BACKEND "]" tags

#define DPAR_CONFORMANCE_ALGORITHMS(A, BACKEND, ...)                                                       \
  TEMPLATE_TEST_CASE(DPAR_CONFORMANCE_CASE("transform and for_each match std", BACKEND, "[algorithms]"), \
                     __VA_ARGS__) {                                                                      \
    conformance::transform_and_for_each<A, TestType>();                                                 \
  }                                                                                                      \
  TEMPLATE_TEST_CASE(DPAR_CONFORMANCE_CASE("reduce and transform_reduce match a long double reference",  \
                                           BACKEND, "[algorithms]"),                                     \
                     __VA_ARGS__) {                                                                      \
    conformance::reductions<A, TestType>();                                                             \
  }                                                                                                      \
  TEMPLATE_TEST_CASE(DPAR_CONFORMANCE_CASE("scans match std also in place", BACKEND, "[algorithms][scan]"), \
                     __VA_ARGS__) {                                                                      \
    conformance::scans<A, TestType>();                                                                  \
  }                                                                                                      \
  TEST_CASE(DPAR_CONFORMANCE_CASE("empty input: reduce returns init and scans write nothing", BACKEND,   \
                                  "[algorithms]")) {                                                     \
    conformance::empty_input<A>();                                                                      \
  }

#define DPAR_CONFORMANCE_TYPES(A, BACKEND)                                                               \
  TEST_CASE(DPAR_CONFORMANCE_CASE("non-commutative op: 2x2 matrix products give the sequential answer", \
                                  BACKEND, "[types][order]")) {                                          \
    conformance::non_commutative<A>();                                                                  \
  }

#define DPAR_CONFORMANCE_HOST(A, BACKEND)                                                                \
  TEST_CASE(DPAR_CONFORMANCE_CASE("types without a default constructor", BACKEND, "[types]")) {         \
    conformance::custom_type<A>();                                                                      \
  }                                                                                                      \
  TEST_CASE(DPAR_CONFORMANCE_CASE("an exception from any element reaches its caller and the policy is reused", \
                                  BACKEND, "[exceptions]")) {                                            \
    conformance::exceptions<A>();                                                                       \
  }                                                                                                      \
  TEST_CASE(DPAR_CONFORMANCE_CASE("nested dpar::par calls from inside a user function", BACKEND, "[nested]")) { \
    conformance::nested<A>();                                                                           \
  }                                                                                                      \
  TEST_CASE(DPAR_CONFORMANCE_CASE("host-only types: strings keep sequence order, deques are random access", \
                                  BACKEND, "[types]")) {                                                 \
    conformance::host_types<A>();                                                                       \
  }
