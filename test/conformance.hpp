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

// A call that throws on every participant: "bad element" on the one that
// holds the bad element, the failure-elsewhere error on the others.
template <class A, class Call>
void throws_everywhere(bool holder, Call& call) {
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
      auto everywhere = [&](auto&& call) { throws_everywhere<A>(holder, call); };
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


// ---- the algorithms derived from the primitives (dpar/algorithm/) ----------
// Compaction is per participant (each writes its own elements that the
// global rule keeps); counts and tests are global; an iterator result points
// at the element on the participant that holds it, `last` elsewhere.

// This participant's elements of `global` whose global flag is set.
template <class A, class T>
std::vector<T> kept_here(const std::vector<T>& global, const std::vector<char>& keep) {
  std::vector<T> local = mine<A>(global), want;
  std::vector<char> flags = mine<A>(keep);
  for (std::size_t i = 0; i < local.size(); ++i)
    if (flags[i]) want.push_back(local[i]);
  return want;
}

// Where this participant expects an iterator result: local index of global
// position g if it holds it, else its local length.
template <class A>
std::size_t local_index_of(std::size_t g, std::size_t n) {
  std::vector<std::size_t> position(n);
  std::iota(position.begin(), position.end(), std::size_t{0});
  position = mine<A>(position);
  auto at = std::find(position.begin(), position.end(), g);
  return static_cast<std::size_t>(at - position.begin());
}

template <class T>
struct is_even {
  bool operator()(const T& x) const { return x % 2 == 0; }
};

template <class A>
void derived_compaction() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      if (n > 65537) continue;
      INFO(name << ", n = " << n);
      std::vector<int> ga = random_vector<int>(n, 7 * n + 1);
      for (auto& x : ga) x %= 3;  // runs of equal values for unique
      auto a = A::place(ga);
      const auto local = A::host(a);
      std::vector<char> even(n), odd(n), first_of_run(n);
      for (std::size_t i = 0; i < n; ++i) {
        even[i] = ga[i] % 2 == 0;
        odd[i] = !even[i];
        first_of_run[i] = i == 0 || ga[i] != ga[i - 1];
      }
      std::vector<int> out(local.size(), 99), out2(local.size(), 99);
      auto prefix = [](const std::vector<int>& v, std::ptrdiff_t k) { return std::vector<int>(v.begin(), v.begin() + k); };

      auto e = dpar::copy_if(policy, a.begin(), a.end(), out.begin(), is_even<int>{});
      CHECK(prefix(out, e - out.begin()) == kept_here<A>(ga, even));
      e = dpar::copy_if(policy, a, out.begin(), is_even<int>{});
      CHECK(prefix(out, e - out.begin()) == kept_here<A>(ga, even));
      e = dpar::remove_copy_if(policy, a, out.begin(), is_even<int>{});
      CHECK(prefix(out, e - out.begin()) == kept_here<A>(ga, odd));
      auto [t, f] = dpar::partition_copy(policy, a, out.begin(), out2.begin(), is_even<int>{});
      CHECK(prefix(out, t - out.begin()) == kept_here<A>(ga, even));
      CHECK(prefix(out2, f - out2.begin()) == kept_here<A>(ga, odd));
      e = dpar::unique_copy(policy, a, out.begin());
      CHECK(prefix(out, e - out.begin()) == kept_here<A>(ga, first_of_run));
      e = dpar::unique_copy(policy, a.begin(), a.end(), out.begin(), std::equal_to<>{});
      CHECK(prefix(out, e - out.begin()) == kept_here<A>(ga, first_of_run));

      // in place
      auto b = a;
      auto end = dpar::remove_if(policy, b, is_even<int>{});
      CHECK(std::vector<int>(b.begin(), end) == kept_here<A>(ga, odd));
      b = a;
      end = dpar::unique(policy, b.begin(), b.end());
      CHECK(std::vector<int>(b.begin(), end) == kept_here<A>(ga, first_of_run));
      b = a;
      end = dpar::stable_partition(policy, b, is_even<int>{});
      std::vector<int> want = local;
      std::stable_partition(want.begin(), want.end(), is_even<int>{});
      CHECK(b == want);
      CHECK(end - b.begin() == std::count_if(local.begin(), local.end(), is_even<int>{}));
    }
  });
}

template <class A>
void derived_search() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      if (n > 65537) continue;
      INFO(name << ", n = " << n);
      const std::vector<long long> ga = random_vector<long long>(n, 11 * n + 1);
      auto a = A::place(ga);
      const std::size_t here = A::host(a).size();
      auto index_of = [&](auto it) { return static_cast<std::size_t>(it - a.begin()); };
      auto expect_at = [&](std::vector<long long>::const_iterator g) {
        return local_index_of<A>(static_cast<std::size_t>(g - ga.begin()), n);
      };
      const is_even<long long> even;
      CHECK(dpar::count_if(policy, a.begin(), a.end(), even) == std::count_if(ga.begin(), ga.end(), even));
      CHECK(dpar::count(policy, a, 7LL) == std::count(ga.begin(), ga.end(), 7LL));
      CHECK(dpar::any_of(policy, a, even) == std::any_of(ga.begin(), ga.end(), even));
      CHECK(dpar::all_of(policy, a, even) == std::all_of(ga.begin(), ga.end(), even));
      CHECK(dpar::none_of(policy, a.begin(), a.end(), even) == std::none_of(ga.begin(), ga.end(), even));
      auto big = [](long long x) { return x > 990; };
      CHECK(dpar::all_of(policy, a, [](long long x) { return x <= 1000; }));
      CHECK(index_of(dpar::find_if(policy, a, big)) == expect_at(std::find_if(ga.begin(), ga.end(), big)));
      CHECK(index_of(dpar::find(policy, a.begin(), a.end(), -3LL)) == expect_at(std::find(ga.begin(), ga.end(), -3LL)));
      CHECK(index_of(dpar::find(policy, a, 5000LL)) == here);
      // first smallest / first largest; minmax: first smallest, last largest
      CHECK(index_of(dpar::min_element(policy, a)) == expect_at(std::min_element(ga.begin(), ga.end())));
      CHECK(index_of(dpar::max_element(policy, a.begin(), a.end())) == expect_at(std::max_element(ga.begin(), ga.end())));
      auto by_abs = [](long long x, long long y) { return std::abs(x) < std::abs(y); };
      CHECK(index_of(dpar::max_element(policy, a, by_abs)) == expect_at(std::max_element(ga.begin(), ga.end(), by_abs)));
      auto [lo, hi] = dpar::minmax_element(policy, a, by_abs);
      auto [glo, ghi] = std::minmax_element(ga.begin(), ga.end(), by_abs);
      CHECK(index_of(lo) == expect_at(glo));
      CHECK(index_of(hi) == expect_at(ghi));

      auto c = a;
      CHECK(dpar::equal(policy, a, c));
      CHECK(dpar::equal(policy, a.begin(), a.end(), c.begin()));
      CHECK(dpar::mismatch(policy, a, c).first == a.end());
      std::vector<long long> gc = ga;
      if (n > 0) gc[n / 2] += 1;
      c = A::place(gc);
      CHECK(dpar::equal(policy, a.begin(), a.end(), c.begin(), std::equal_to<>{}) == (n == 0));
      auto [m1, m2] = dpar::mismatch(policy, a.begin(), a.end(), c.begin());
      CHECK(index_of(m1) == local_index_of<A>(n == 0 ? 0 : n / 2, n));
      CHECK(m2 - c.begin() == m1 - a.begin());
      auto shorter = A::place(std::vector<long long>(ga.begin(), ga.begin() + static_cast<std::ptrdiff_t>(n / 2)));
      CHECK(dpar::equal(policy, a.begin(), a.end(), shorter.begin(), shorter.end()) == (n / 2 == n));
    }
  });
}

template <class A>
void derived_movement() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      if (n > 10007) continue;  // above the thread cut-offs; larger sizes add time, not cases
      INFO(name << ", n = " << n);
      const std::vector<long long> ga = random_vector<long long>(n, 13 * n + 1);
      auto a = A::place(ga), got = A::place(std::vector<long long>(n, 5));
      std::vector<long long> want(n);

      dpar::fill(policy, got, -2LL);
      check_equal<A>(A::host(got), std::vector<long long>(n, -2));
      dpar::fill(policy, got.begin(), got.end(), 3LL);
      check_equal<A>(A::host(got), std::vector<long long>(n, 3));
      CHECK(dpar::copy(policy, a, got.begin()) == got.end());
      check_equal<A>(A::host(got), ga);
      std::iota(want.begin(), want.end(), -7LL);
      dpar::iota(policy, got.begin(), got.end(), -7LL);
      check_equal<A>(A::host(got), want);
      dpar::iota(policy, got, -7LL);
      check_equal<A>(A::host(got), want);
      CHECK(dpar::for_each_n(policy, got.begin(), got.size(), add5_in_place<long long>{}) == got.end());
      std::transform(want.begin(), want.end(), want.begin(), add5<long long>{});
      check_equal<A>(A::host(got), want);

      std::adjacent_difference(ga.begin(), ga.end(), want.begin());
      CHECK(dpar::adjacent_difference(policy, a, got.begin()) == got.end());
      check_equal<A>(A::host(got), want);
      std::adjacent_difference(ga.begin(), ga.end(), want.begin(), twice_plus<long long>{});
      dpar::adjacent_difference(policy, a.begin(), a.end(), got.begin(), twice_plus<long long>{});
      check_equal<A>(A::host(got), want);

      const square<long long> sq;
      std::transform_inclusive_scan(ga.begin(), ga.end(), want.begin(), std::plus<>{}, sq);
      CHECK(dpar::transform_inclusive_scan(policy, a.begin(), a.end(), got.begin(), std::plus<>{}, sq) == got.end());
      check_equal<A>(A::host(got), want);
      std::transform_inclusive_scan(ga.begin(), ga.end(), want.begin(), larger<long long>{}, sq, 4LL);
      dpar::transform_inclusive_scan(policy, a, got.begin(), larger<long long>{}, sq, 4LL);
      check_equal<A>(A::host(got), want);
      std::transform_exclusive_scan(ga.begin(), ga.end(), want.begin(), 3LL, std::plus<>{}, sq);
      dpar::transform_exclusive_scan(policy, a, got.begin(), 3LL, std::plus<>{}, sq);
      check_equal<A>(A::host(got), want);
      got = a;  // in place
      dpar::transform_exclusive_scan(policy, got.begin(), got.end(), got.begin(), 3LL, std::plus<>{}, sq);
      check_equal<A>(A::host(got), want);

      // gather and scatter index each participant's own memory
      const auto local = A::host(a);
      const std::size_t m = local.size();
      std::vector<int> reversed(m);
      for (std::size_t i = 0; i < m; ++i) reversed[i] = static_cast<int>(m - 1 - i);
      std::vector<long long> out(m), local_want(local.rbegin(), local.rend());
      CHECK(dpar::gather(policy, reversed.begin(), reversed.end(), local.begin(), out.begin()) == out.end());
      CHECK(out == local_want);
      std::fill(out.begin(), out.end(), 0);
      dpar::scatter(policy, local.begin(), local.end(), reversed.begin(), out.begin());
      CHECK(out == local_want);

      // many needles, one sorted haystack (each participant's whole copy)
      std::vector<long long> haystack = random_vector<long long>(n / 3 + 1, n);
      std::sort(haystack.begin(), haystack.end());
      std::vector<std::ptrdiff_t> glo(n), ghi(n);
      std::vector<char> gfound(n);
      for (std::size_t i = 0; i < n; ++i) {
        glo[i] = std::lower_bound(haystack.begin(), haystack.end(), ga[i]) - haystack.begin();
        ghi[i] = std::upper_bound(haystack.begin(), haystack.end(), ga[i]) - haystack.begin();
        gfound[i] = std::binary_search(haystack.begin(), haystack.end(), ga[i]);
      }
      std::vector<std::ptrdiff_t> at(m);
      std::vector<char> found(m);
      dpar::lower_bound(policy, haystack.begin(), haystack.end(), a.begin(), a.end(), at.begin());
      CHECK(at == mine<A>(glo));
      dpar::upper_bound(policy, haystack.begin(), haystack.end(), a.begin(), a.end(), at.begin(), std::less<>{});
      CHECK(at == mine<A>(ghi));
      dpar::binary_search(policy, haystack.begin(), haystack.end(), a.begin(), a.end(), found.begin());
      CHECK(found == mine<A>(gfound));
    }
  });
}

// By key, with 2x2 matrix products (associative, not commutative) as the op.
template <class A>
void derived_by_key() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : A::sizes) {
      if (n > 10007) continue;  // above the thread cut-offs; larger sizes add time, not cases
      INFO(name << ", n = " << n);
      std::vector<int> gkeys = random_vector<int>(n, 17 * n + 1);
      for (auto& k : gkeys) k = k / 12;  // runs of equal keys
      const auto gvals = dpar_test::random_mat2s(n, n + 3);
      auto keys = A::place(gkeys);
      auto vals = A::place(gvals);
      auto got = A::place(std::vector<mat2>(n));
      const mat2 init = n > 0 ? gvals[n - 1] : dpar_test::mat2_identity;
      std::vector<mat2> incl(n), excl(n);
      std::vector<int> run_keys;
      std::vector<mat2> run_totals;
      std::vector<long long> run_lengths, run_at(n, -1);  // run_at: the run each head starts
      for (std::size_t i = 0; i < n; ++i) {
        const bool head = i == 0 || gkeys[i] != gkeys[i - 1];
        incl[i] = head ? gvals[i] : mat2_mul{}(incl[i - 1], gvals[i]);
        excl[i] = head ? init : mat2_mul{}(excl[i - 1], gvals[i - 1]);
        if (head) {
          run_at[i] = static_cast<long long>(run_keys.size());
          run_keys.push_back(gkeys[i]);
          run_totals.push_back(gvals[i]);
          run_lengths.push_back(1);
        } else {
          run_totals.back() = mat2_mul{}(run_totals.back(), gvals[i]);
          ++run_lengths.back();
        }
      }
      CHECK(dpar::inclusive_scan_by_key(policy, keys.begin(), keys.end(), vals.begin(), got.begin(), std::equal_to<>{},
                                        mat2_mul{}) == got.end());
      CHECK(A::host(got) == mine<A>(incl));
      dpar::exclusive_scan_by_key(policy, keys.begin(), keys.end(), vals.begin(), got.begin(), init, std::equal_to<>{},
                                  mat2_mul{});
      CHECK(A::host(got) == mine<A>(excl));
      // sums with the defaults, in place
      std::vector<long long> gsum(n), gone(n, 1);
      for (std::size_t i = 0; i < n; ++i) gsum[i] = (i == 0 || gkeys[i] != gkeys[i - 1]) ? 1 : gsum[i - 1] + 1;
      auto ones = A::place(gone);
      dpar::inclusive_scan_by_key(policy, keys.begin(), keys.end(), ones.begin(), ones.begin());
      CHECK(A::host(ones) == mine<A>(gsum));
      // reduce_by_key: a participant writes the runs that start in its part, reduced whole
      std::vector<int> want_keys;
      std::vector<mat2> want_totals;
      std::vector<long long> want_lengths;
      for (long long r : mine<A>(run_at))
        if (r >= 0) {
          want_keys.push_back(run_keys[static_cast<std::size_t>(r)]);
          want_totals.push_back(run_totals[static_cast<std::size_t>(r)]);
          want_lengths.push_back(run_lengths[static_cast<std::size_t>(r)]);
        }
      std::vector<int> key_out(n, -1);
      std::vector<mat2> val_out(n);
      auto [ke, ve] = dpar::reduce_by_key(policy, keys.begin(), keys.end(), vals.begin(), key_out.begin(),
                                          val_out.begin(), std::equal_to<>{}, mat2_mul{});
      CHECK(std::vector<int>(key_out.begin(), ke) == want_keys);
      CHECK(std::vector<mat2>(val_out.begin(), ve) == want_totals);
      std::vector<long long> counts(n);
      auto ends = dpar::reduce_by_key(policy, keys.begin(), keys.end(), gone.begin(), key_out.begin(), counts.begin());
      CHECK(std::vector<long long>(counts.begin(), ends.second) == want_lengths);
    }
  });
}

// Custom types: no default constructor, a comparison given.
template <class A>
void derived_custom_type() {
  A::for_each_policy([](const auto& policy, const std::string& name) {
    for (std::size_t n : {0, 1, 4099, 65537}) {
      INFO(name << ", n = " << n);
      std::vector<money> ga;
      for (std::size_t i = 0; i < n; ++i) ga.emplace_back(static_cast<long>((i * 7919) % 101));
      auto a = A::place(ga);
      auto local = A::host(a);
      auto cheaper = [](const money& x, const money& y) { return x.cents < y.cents; };
      auto round = [](const money& m) { return m.cents % 10 == 0; };
      std::vector<money> out(local.size(), money(-1)), want;
      std::copy_if(local.begin(), local.end(), std::back_inserter(want), round);
      auto e = dpar::copy_if(policy, a, out.begin(), round);
      CHECK(std::vector<money>(out.begin(), e) == want);
      auto b = a;
      auto end = dpar::stable_partition(policy, b, round);
      CHECK(std::vector<money>(b.begin(), end) == want);
      auto g = std::min_element(ga.begin(), ga.end(), cheaper);
      CHECK(static_cast<std::size_t>(dpar::min_element(policy, a, cheaper) - a.begin()) ==
            local_index_of<A>(static_cast<std::size_t>(g - ga.begin()), n));
      CHECK(dpar::count_if(policy, a, round) == std::count_if(ga.begin(), ga.end(), round));
    }
  });
}

// A user function that throws: local for compaction, everywhere for counts and searches.
template <class A>
void derived_exceptions() {
  const std::size_t n = 100003;
  std::vector<long> index(n);
  std::iota(index.begin(), index.end(), 0L);
  auto v = A::place(index), out = A::place(std::vector<long>(n, 0));
  A::for_each_policy([&](const auto& policy, const std::string& name) {
    for (long bad : {0L, static_cast<long>(n / 2 + 1), static_cast<long>(n - 1)}) {
      INFO(name << ", throwing at element " << bad);
      const bool holder = std::find(v.begin(), v.end(), bad) != v.end();
      auto pred = [bad](const long& x) {
        if (x == bad) throw std::runtime_error("bad element");
        return x % 3 == 0;
      };
      auto everywhere = [&](auto&& call) { throws_everywhere<A>(holder, call); };
      if (holder) CHECK_THROWS_WITH(dpar::copy_if(policy, v, out.begin(), pred), "bad element");
      else CHECK_NOTHROW(dpar::copy_if(policy, v, out.begin(), pred));
      auto w = v;
      if (holder) CHECK_THROWS_WITH(dpar::remove_if(policy, w, pred), "bad element");
      everywhere([&] { dpar::count_if(policy, v, pred); });
      // no match before the bad element: a search stops at its first match
      everywhere([&] { dpar::find_if(policy, v, [&](long x) { return pred(x) && x > static_cast<long>(n); }); });
      everywhere([&] {
        dpar::min_element(policy, v, [&](long x, long y) {
          pred(x);  // every element meets a comparison
          pred(y);
          return x < y;
        });
      });
      CHECK(dpar::count_if(policy, v, [](long x) { return x % 3 == 0; }) == static_cast<long>((n + 2) / 3));
    }
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

#define DPAR_CONFORMANCE_DERIVED(A, BACKEND)                                                              \
  TEST_CASE(DPAR_CONFORMANCE_CASE("compaction matches std per participant, also in place", BACKEND,      \
                                  "[algorithms][derived]")) {                                             \
    conformance::derived_compaction<A>();                                                                \
  }                                                                                                       \
  TEST_CASE(DPAR_CONFORMANCE_CASE("counts, tests and searches match std", BACKEND, "[algorithms][derived]")) { \
    conformance::derived_search<A>();                                                                    \
  }                                                                                                       \
  TEST_CASE(DPAR_CONFORMANCE_CASE("fill, copy, iota, adjacent_difference, transform scans, gather, scatter, " \
                                  "bounds match std",                                                     \
                                  BACKEND, "[algorithms][derived]")) {                                    \
    conformance::derived_movement<A>();                                                                  \
  }                                                                                                       \
  TEST_CASE(DPAR_CONFORMANCE_CASE("by key with a non-commutative op matches a sequential reference", BACKEND, \
                                  "[algorithms][derived][order]")) {                                      \
    conformance::derived_by_key<A>();                                                                    \
  }                                                                                                       \
  TEST_CASE(DPAR_CONFORMANCE_CASE("derived algorithms on types without a default constructor", BACKEND,  \
                                  "[types][derived]")) {                                                  \
    conformance::derived_custom_type<A>();                                                               \
  }                                                                                                       \
  TEST_CASE(DPAR_CONFORMANCE_CASE("derived algorithms: an exception reaches its caller", BACKEND,        \
                                  "[exceptions][derived]")) {                                             \
    conformance::derived_exceptions<A>();                                                                \
  }
