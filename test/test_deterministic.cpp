// dpar::deterministic: float and double sums are correctly rounded (equal to
// an independent exact reference, bit for bit) for seq and every pool size;
// other ops, scans and all_reduce give the same bits whatever the pool size.
#include "collective_common.hpp"
#include "common.hpp"
#include "exact_reference.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

using dpar_test::exact_reference;
using dpar_test::mat2;
using dpar_test::mat2_mul;

namespace {

const std::vector<std::size_t> sizes =
    dpar_test::sizes_up_to_cap({0, 1, 2, 3, 7, 13, 97, 1009, 16411, 65537, (std::size_t{1} << 20) + 3});

// seq and every pool of common.hpp, each wrapped in dpar::deterministic.
template <class Body>
void for_each_deterministic(Body&& body) {
  dpar_test::for_each_policy(
      [&](auto policy, const std::string& name) { body(dpar::deterministic(policy), "deterministic(" + name + ")"); });
}

template <class T>
auto bits(T x) {
  return std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(x);
}

// NaNs compare by kind, everything else by bits.
template <class T>
bool same_bits(T a, T b) {
  return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b);
}

#define CHECK_BITS(got, expected)                                                              \
  do {                                                                                         \
    auto got_ = (got);                                                                         \
    auto expected_ = (expected);                                                               \
    INFO("got " << got_ << " expected " << expected_);                                         \
    CHECK(same_bits(got_, static_cast<decltype(got_)>(expected_)));                            \
  } while (0)

// Sums of v with init, as T, through every policy: correctly rounded.
template <class T, class E>
void check_sum(const std::vector<E>& v, T init, const std::string& what) {
  exact_reference exact;
  for (E x : v) exact.add(static_cast<double>(x));
  exact.add(static_cast<double>(init));
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(what << " n=" << v.size() << " " << name);
    T got = dpar::reduce(p, v, init);
    CHECK_BITS(got, exact.rounded(got));
    CHECK_BITS(dpar::reduce(p, v.begin(), v.end(), init, std::plus<T>{}), got);
    // transform_reduce with the identity: the same terms
    CHECK_BITS(dpar::transform_reduce(p, v, init, std::plus<>{}, [](E x) { return x; }), got);
  });
}

template <class T>
void check_sums_of(std::vector<T> (*make)(std::size_t, std::uint64_t), const std::string& what) {
  for (std::size_t n : sizes) {
    auto v = make(n, n + 11);
    check_sum<T>(v, T(0), what);
    check_sum<T>(v, T(1e-3), what + " init 1e-3");
    if constexpr (std::is_same_v<T, float>) check_sum<double>(v, 0.5, what + " into double");
  }
}

}  // namespace

TEST_CASE("deterministic sums of wide-range floats and doubles are correctly rounded", "[deterministic]") {
  check_sums_of<double>(dpar_test::random_vector<double>, "uniform doubles");
  check_sums_of<float>(dpar_test::random_vector<float>, "uniform floats");
  check_sums_of<double>(dpar_test::wide_range<double>, "wide-range doubles");
  check_sums_of<float>(dpar_test::wide_range<float>, "wide-range floats");
}

TEST_CASE("deterministic sums with heavy cancellation and subnormals are correctly rounded", "[deterministic]") {
  check_sums_of<double>(dpar_test::cancelling<double>, "cancelling doubles");
  check_sums_of<float>(dpar_test::cancelling<float>, "cancelling floats");
  check_sums_of<double>(dpar_test::subnormal<double>, "subnormal doubles");
  check_sums_of<float>(dpar_test::subnormal<float>, "subnormal floats");
  // the residue survives a huge cancellation
  std::vector<double> v = {1e300, 1e-300, -1e300, 0x1p-1074};
  CHECK_BITS(dpar::reduce(dpar::deterministic(dpar::seq), v, 0.0), 1e-300 + 0x1p-1074);
  // ties go to even: 1 + 2^-53 + 2^-53 * 2^-60 rounds up, 1 + 2^-53 alone to 1
  std::vector<double> tie = {1.0, 0x1p-53};
  CHECK_BITS(dpar::reduce(dpar::deterministic(dpar::seq), tie, 0.0), 1.0);
  tie.push_back(0x1p-113);
  CHECK_BITS(dpar::reduce(dpar::deterministic(dpar::seq), tie, 0.0), 1.0 + 0x1p-52);
}

TEST_CASE("deterministic sums with inf, NaN, overflow and signed zeros", "[deterministic]") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const double max = std::numeric_limits<double>::max();
  auto big = dpar_test::wide_range<double>(100003, 5);
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    auto with = [&](std::initializer_list<double> extra) {
      auto v = big;
      std::size_t at = 17;
      for (double x : extra) v[at] = x, at += 40000;
      return dpar::reduce(p, v, 0.0);
    };
    CHECK(with({inf}) == inf);
    CHECK(with({-inf, -inf}) == -inf);
    CHECK(std::isnan(with({inf, -inf})));
    CHECK(std::isnan(with({nan})));
    CHECK(std::isnan(with({1.0, nan, inf})));
    // the exact sum overflows, or does not although a running sum would
    CHECK(with({max, max}) == inf);
    CHECK(with({-max, -max}) == -inf);
    std::vector<double> back = {max, max, -max};
    CHECK(dpar::reduce(p, back, 0.0) == max);
    std::vector<float> floats = {3e38f, 3e38f, -3e38f, 1.0f};
    CHECK(dpar::reduce(p, floats, 0.0f) == 3e38f);
    // an exact zero is -0 only when every term is -0
    std::vector<double> negative_zeros(70001, -0.0);
    CHECK(std::signbit(dpar::reduce(p, negative_zeros, -0.0)));
    CHECK(!std::signbit(dpar::reduce(p, negative_zeros, 0.0)));
    std::vector<double> cancel = {1.5, -1.5};
    CHECK(!std::signbit(dpar::reduce(p, cancel, -0.0)));
  });
}

TEST_CASE("deterministic sums of products are correctly rounded with exact products", "[deterministic]") {
  for (std::size_t n : sizes) {
    auto a = dpar_test::wide_range<double>(n, 3 * n + 1), b = dpar_test::wide_range<double>(n, 3 * n + 2);
    if (n > 10) a[3] = 0x1p-1000, b[3] = 0x1p-60;  // product underflows: e = fma(...) would not be exact
    if (n > 10) a[5] = 0x1p600, b[5] = 0x1p500;    // product overflows, and comes back below
    if (n > 10) a[7] = -0x1p600, b[7] = 0x1p500;
    if (n > 100)  // uniform values in most tiles: the fast path
      for (std::size_t i = 100; i < n; ++i) a[i] = std::ldexp(a[i], -std::ilogb(a[i])) - 1.5;
    auto fa = dpar_test::wide_range<float>(n, 3 * n + 3), fb = dpar_test::cancelling<float>(n, 3 * n + 4);
    exact_reference exact, exact_float;
    for (std::size_t i = 0; i < n; ++i) exact.add_product(a[i], b[i]), exact_float.add_product(fa[i], fb[i]);
    exact.add(0.25);
    exact_float.add(0.25);
    for_each_deterministic([&](auto p, const std::string& name) {
      INFO("n=" << n << " " << name);
      double got = dpar::transform_reduce(p, a.begin(), a.end(), b.begin(), 0.25);
      CHECK_BITS(got, exact.rounded(got));
      float got_float = dpar::transform_reduce(p, fa.begin(), fa.end(), fb.begin(), 0.25f);
      CHECK_BITS(got_float, exact_float.rounded(got_float));
      double got_wide = dpar::transform_reduce(p, fa, fb.begin(), 0.25);
      CHECK_BITS(got_wide, exact_float.rounded(got_wide));
    });
  }
}

TEST_CASE("deterministic sums of exact products (no error terms)", "[deterministic]") {
  std::vector<double> a(300007), b(300007);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<double>(i % 4) - 1.5, b[i] = static_cast<double>(i % 3) - 1;
  std::vector<double> zeros(5000, 0.0), negative(5000, -1.0);
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    double expected = 0;
    for (std::size_t i = 0; i < a.size(); ++i) expected += a[i] * b[i];  // exact: small multiples of 1/2
    CHECK_BITS(dpar::transform_reduce(p, a.begin(), a.end(), b.begin(), 0.0), expected);
    CHECK(std::signbit(dpar::transform_reduce(p, zeros.begin(), zeros.end(), negative.begin(), -0.0)));
    CHECK(!std::signbit(dpar::transform_reduce(p, zeros.begin(), zeros.end(), negative.begin(), 0.0)));
  });
}

TEST_CASE("deterministic transform_reduce sums what the transform returns", "[deterministic]") {
  auto v = dpar_test::wide_range<double>(200003, 9);
  auto to_float = [](double x) { return static_cast<float>(x * 3); };
  exact_reference exact;
  for (double x : v) exact.add(static_cast<double>(to_float(x)));
  exact.add(1.0);
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    double got = dpar::transform_reduce(p, v, 1.0, std::plus<>{}, to_float);
    CHECK_BITS(got, exact.rounded(got));
  });
}

TEST_CASE("deterministic: other ops and types give the same bits for seq and every pool", "[deterministic]") {
  for (std::size_t n : dpar_test::sizes_up_to_cap({0, 1, 1009, 40009, 300007})) {
    auto doubles = dpar_test::random_vector<double>(n, n + 1);
    for (auto& x : doubles) x = 1 + x * 1e-3;  // products stay finite
    auto ints = dpar_test::random_vector<long long>(n, n + 2);
    auto mats = dpar_test::random_mat2s(n, n + 3);
    const auto seq = dpar::deterministic(dpar::seq);
    const double product = dpar::reduce(seq, doubles, 1.0, std::multiplies<>{});
    const double smallest = dpar::reduce(seq, doubles, 2.0, dpar::minimum<>{});
    auto lambda_sum = [](double a, double b) { return a + b; };  // not std::plus: a user op
    const double user_sum = dpar::reduce(seq, doubles, 0.0, lambda_sum);
    const double squares = dpar::transform_reduce(seq, doubles, 0.0, lambda_sum, [](double x) { return x * x; });
    mat2 expected_mat = std::accumulate(mats.begin(), mats.end(), dpar_test::mat2_identity, mat2_mul{});
    CHECK(dpar::reduce(seq, mats, dpar_test::mat2_identity, mat2_mul{}) == expected_mat);
    CHECK(std::abs(user_sum - std::accumulate(doubles.begin(), doubles.end(), 0.0)) <= 1e-9 * (n + 1.0));
    for_each_deterministic([&](auto p, const std::string& name) {
      INFO("n=" << n << " " << name);
      CHECK_BITS(dpar::reduce(p, doubles, 1.0, std::multiplies<>{}), product);
      CHECK_BITS(dpar::reduce(p, doubles, 2.0, dpar::minimum<>{}), smallest);
      CHECK_BITS(dpar::reduce(p, doubles, 0.0, lambda_sum), user_sum);
      CHECK_BITS(dpar::transform_reduce(p, doubles, 0.0, lambda_sum, [](double x) { return x * x; }), squares);
      CHECK(dpar::reduce(p, ints, 7LL) == std::accumulate(ints.begin(), ints.end(), 7LL));
      // elements that are prvalues
      std::vector<bool> flags(n);
      for (std::size_t i = 0; i < n; i += 3) flags[i] = true;
      CHECK(dpar::reduce(p, flags, 0) == static_cast<int>((n + 2) / 3));
#if !(defined(__clang__) && __clang_major__ < 15)  // clang 14 cannot compile libstdc++ 12's views
      CHECK(dpar::reduce(p, std::views::iota(std::size_t{0}, n), std::size_t{3}) == n * (n - (n > 0)) / 2 + 3);
      auto halves = std::views::transform(doubles, [](double x) { return x / 2; });
      CHECK_BITS(dpar::reduce(p, halves, 0.0), dpar::reduce(seq, doubles, 0.0) / 2);
#endif
      CHECK(dpar::reduce(p, mats, dpar_test::mat2_identity, mat2_mul{}) == expected_mat);
      std::vector<double> twice(n);
      dpar::transform(p, doubles, twice.begin(), [](double x) { return 2 * x; });
      CHECK(twice == [&] {
        std::vector<double> t(n);
        std::transform(doubles.begin(), doubles.end(), t.begin(), [](double x) { return 2 * x; });
        return t;
      }());
    });
  }
}

TEST_CASE("deterministic scans give the same bits for seq and every pool", "[deterministic]") {
  for (std::size_t n : sizes) {
    auto doubles = dpar_test::wide_range<double>(n, n + 21);
    auto floats = dpar_test::random_vector<float>(n, n + 22);
    auto mats = dpar_test::random_mat2s(std::min<std::size_t>(n, 20000), n + 23);
    const auto seq = dpar::deterministic(dpar::seq);
    std::vector<double> inc(n), exc(n);
    std::vector<float> inc_f(n), exc_f(n);
    std::vector<mat2> inc_m(mats.size()), exc_m(mats.size());
    dpar::inclusive_scan(seq, doubles, inc.begin());
    dpar::exclusive_scan(seq, doubles, exc.begin(), 0.5);
    dpar::inclusive_scan(seq, floats, inc_f.begin(), std::plus<>{}, 1.0f);
    dpar::exclusive_scan(seq, floats, exc_f.begin(), 0.0f);
    dpar::inclusive_scan(seq, mats, inc_m.begin(), mat2_mul{});
    dpar::exclusive_scan(seq, mats, exc_m.begin(), mat2{1, 2, 3, 4}, mat2_mul{});
    // close to the sequential scan, and exact for the matrices
    std::vector<float> reference(n);
    std::inclusive_scan(floats.begin(), floats.end(), reference.begin(), std::plus<>{}, 1.0f);
    for (std::size_t i = 0; i < n; i += 997) CHECK(std::abs(inc_f[i] - reference[i]) <= 1e-3f * (1.0f + i * 1e-2f));
    std::vector<mat2> reference_m(mats.size());
    std::inclusive_scan(mats.begin(), mats.end(), reference_m.begin(), mat2_mul{});
    CHECK(inc_m == reference_m);
    std::exclusive_scan(mats.begin(), mats.end(), reference_m.begin(), mat2{1, 2, 3, 4}, mat2_mul{});
    CHECK(exc_m == reference_m);
    for_each_deterministic([&](auto p, const std::string& name) {
      INFO("n=" << n << " " << name);
      std::vector<double> out(n);
      dpar::inclusive_scan(p, doubles, out.begin());
      CHECK(std::equal(out.begin(), out.end(), inc.begin(), [](double a, double b) { return bits(a) == bits(b); }));
      dpar::exclusive_scan(p, doubles, out.begin(), 0.5);
      CHECK(std::equal(out.begin(), out.end(), exc.begin(), [](double a, double b) { return bits(a) == bits(b); }));
      std::vector<float> in_place = floats;  // in place
      dpar::inclusive_scan(p, in_place, in_place.begin(), std::plus<>{}, 1.0f);
      CHECK(std::equal(in_place.begin(), in_place.end(), inc_f.begin(), [](float a, float b) { return bits(a) == bits(b); }));
      std::vector<float> out_f(n);
      dpar::exclusive_scan(p, floats, out_f.begin(), 0.0f);
      CHECK(std::equal(out_f.begin(), out_f.end(), exc_f.begin(), [](float a, float b) { return bits(a) == bits(b); }));
      std::vector<mat2> out_m(mats.size());
      dpar::inclusive_scan(p, mats, out_m.begin(), mat2_mul{});
      CHECK(out_m == inc_m);
      dpar::exclusive_scan(p, mats, out_m.begin(), mat2{1, 2, 3, 4}, mat2_mul{});
      CHECK(out_m == exc_m);
    });
  }
}

namespace {

// all_reduce and all_reduce_mean of K buffers through every policy: each
// element correctly rounded, every buffer the same.
template <class T>
void check_all_reduce(const std::vector<std::vector<T>>& buffers, const std::string& what) {
  const std::size_t k = buffers.size(), n = buffers[0].size();
  std::vector<exact_reference> exact(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t r = 0; r < k; ++r) exact[i].add(static_cast<double>(buffers[r][i]));
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(what << " K=" << k << " n=" << n << " " << name);
    auto sums = buffers;
    dpar::all_reduce(p, sums);
    auto means = buffers;
    dpar::all_reduce_mean(p, means);
    std::size_t wrong = 0, unequal = 0;
    for (std::size_t i = 0; i < n; ++i) {
      wrong += !same_bits(sums[0][i], exact[i].rounded(sums[0][i]));
      for (std::size_t r = 0; r < k; ++r) {
        unequal += !same_bits(sums[r][i], sums[0][i]);
        unequal += !same_bits(means[r][i], static_cast<T>(sums[0][i] / static_cast<T>(k)));
      }
    }
    CHECK(wrong == 0);
    CHECK(unequal == 0);
  });
}

template <class T>
std::vector<std::vector<T>> buffers_of(std::size_t k, std::size_t n, std::uint64_t seed, bool adversarial) {
  std::vector<std::vector<T>> b;
  for (std::size_t r = 0; r < k; ++r)
    b.push_back(adversarial ? dpar_test::wide_range<T>(n, seed + r) : dpar_test::random_vector<T>(n, seed + r));
  if (adversarial && k >= 2)  // x, -x and a residue in some columns; specials in others
    for (std::size_t i = 0; i + 7 < n; i += 7) {
      b[1][i] = -b[0][i];
      if (k >= 3) b[2][i] = std::numeric_limits<T>::denorm_min();
      if (i % 5 == 0) b[0][i + 1] = std::numeric_limits<T>::infinity();
      if (i % 35 == 0) b[k - 1][i + 1] = -std::numeric_limits<T>::infinity();
      if (i % 77 == 0) b[k - 1][i + 2] = std::numeric_limits<T>::quiet_NaN();
    }
  return b;
}

}  // namespace

TEST_CASE("deterministic all_reduce is correctly rounded for K = 1..5", "[deterministic][collective]") {
  dpar_test::within_seconds(600, "deterministic all_reduce", [] {
    for (std::size_t k = 1; k <= 5; ++k)
      for (std::size_t n : dpar_test::sizes_up_to_cap({0, 1, 13, 1009, dpar_test::under_sanitizer ? 5003 : 70001})) {
        check_all_reduce(buffers_of<float>(k, n, 100 * k + n, false), "random floats");
        check_all_reduce(buffers_of<double>(k, n, 200 * k + n, false), "random doubles");
        check_all_reduce(buffers_of<float>(k, n, 300 * k + n, true), "adversarial floats");
        check_all_reduce(buffers_of<double>(k, n, 400 * k + n, true), "adversarial doubles");
      }
  });
}

TEST_CASE("deterministic all_reduce: other ops as before, bad input named", "[deterministic][collective]") {
  auto mats = std::vector<std::vector<mat2>>{dpar_test::random_mat2s(1009, 1), dpar_test::random_mat2s(1009, 2),
                                             dpar_test::random_mat2s(1009, 3)};
  auto expected = mats;
  dpar::all_reduce(dpar::seq, expected, mat2_mul{});
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    auto got = mats;
    dpar::all_reduce(p, got, mat2_mul{});
    CHECK(got == expected);
    std::vector<std::vector<double>> uneven = {std::vector<double>(10), std::vector<double>(11)};
    CHECK_THROWS_WITH(dpar::all_reduce(p, uneven), Catch::Contains("buffer 1 has 11 elements"));
    // exact zeros: -0 only when every replica's value is -0
    std::vector<std::vector<double>> zeros(3, std::vector<double>(1000, -0.0));
    zeros[1][7] = 0.0;
    dpar::all_reduce(p, zeros);
    CHECK((std::signbit(zeros[2][0]) && !std::signbit(zeros[2][7])));
    std::vector<std::vector<float>> float_zeros(2, std::vector<float>(1000, -0.0f));
    dpar::all_reduce(p, float_zeros);
    CHECK(std::signbit(float_zeros[1][999]));
  });
}

TEST_CASE("deterministic: exceptions reach the caller; nested calls work", "[deterministic]") {
  auto v = dpar_test::wide_range<double>(300007, 31);
  exact_reference exact;
  for (double x : v) exact.add(x);
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    auto throwing = [](double x) {
      if (x > 0 && std::ilogb(x) == 7) throw std::runtime_error("bad element");
      return x;
    };
    CHECK_THROWS_WITH(dpar::transform_reduce(p, v, 0.0, std::plus<>{}, throwing), "bad element");
    // the per-thread tables are clean again
    double got = dpar::reduce(p, v, 0.0);
    CHECK_BITS(got, exact.rounded(got));
    // a transform that itself sums deterministically
    std::vector<int> rows(40);
    std::iota(rows.begin(), rows.end(), 0);
    auto row_sum = [&](int r) {
      return dpar::reduce(dpar::deterministic(dpar::par), v.begin() + r * 7000, v.begin() + r * 7000 + 7000, 0.0);
    };
    exact_reference nested;
    for (std::size_t i = 0; i < 40 * 7000; ++i) nested.add(v[i]);
    double total = 0;
    for (int r : rows) total += row_sum(r);  // reference for the nested sum: row sums added in double
    exact_reference of_rows;
    for (int r : rows) of_rows.add(row_sum(r));
    double got_nested = dpar::transform_reduce(p, rows, 0.0, std::plus<>{}, row_sum);
    CHECK_BITS(got_nested, of_rows.rounded(got_nested));
    (void)total;
  });
}

TEST_CASE("deterministic wraps once", "[deterministic]") {
  auto p = dpar::deterministic(dpar::deterministic(dpar::par));
  static_assert(std::is_same_v<decltype(p), dpar::deterministic_policy<dpar::parallel_policy>>);
  static_assert(dpar::execution_policy<decltype(p)>);
  std::vector<double> v = {1, 2, 3};
  CHECK(dpar::reduce(p, v, 0.0) == 6);
}

// Issue 27, item 13: a subnormal result is rounded once, at T's subnormal unit.
TEST_CASE("deterministic sums with subnormal results are rounded once", "[deterministic]") {
  const auto seq = dpar::deterministic(dpar::seq);
  // the reported product: rounding at 2^-1075 and again at 2^-1074 gave ...106dc
  std::vector<double> x = {0x1.e94ec2d2b9936p-539}, y = {0x1.130d84f91bf15p-520};
  CHECK_BITS(dpar::transform_reduce(seq, x.begin(), x.end(), y.begin(), 0.0), 0x0.00000000106ddp-1022);
  // one product at a time: a quarter of them were mis-rounded
  auto one_by_one = [&]<class T>(T) {
    auto [a, b] = dpar_test::subnormal_products<T>(4000, sizeof(T));
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      exact_reference exact;
      exact.add_product(a[i], b[i]);
      const T got = dpar::transform_reduce(seq, a.begin() + i, a.begin() + i + 1, b.begin() + i, T(0));
      wrong += !same_bits(got, exact.rounded(got));
    }
    INFO(sizeof(T) << "-byte products");
    CHECK(wrong == 0);
  };
  one_by_one(0.0);
  one_by_one(0.0f);
  // many terms, through every policy and every exact-sum front door
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{13}, std::size_t{1009}, std::size_t{70001}}) {
    const auto doubles = dpar_test::subnormal_products<double>(n, n);  // not structured bindings: lambdas capture them
    const auto floats = dpar_test::subnormal_products<float>(n, n + 1);
    const auto &a = doubles.first, &b = doubles.second;
    const auto &fa = floats.first, &fb = floats.second;
    // doubles whose sums are subnormal floats, and their images under a transform
    auto tiny = dpar_test::binade_range(n, -160, -126, n + 2);
    auto scaled = [](double t) { return std::ldexp(t, -900); };  // exact: doubles that sum to a subnormal double
    exact_reference products, float_products, tiny_sum, scaled_sum;
    for (std::size_t i = 0; i < n; ++i) {
      products.add_product(a[i], b[i]);
      float_products.add_product(fa[i], fb[i]);
      tiny_sum.add(tiny[i]);
      scaled_sum.add(scaled(tiny[i]));
    }
    for_each_deterministic([&](auto p, const std::string& name) {
      INFO("n=" << n << " " << name);
      const double got = dpar::transform_reduce(p, a.begin(), a.end(), b.begin(), 0.0);
      CHECK_BITS(got, products.rounded(got));
      const float got_float = dpar::transform_reduce(p, fa.begin(), fa.end(), fb.begin(), 0.0f);
      CHECK_BITS(got_float, float_products.rounded(got_float));
      const float got_reduce = dpar::reduce(p, tiny, 0.0f);
      CHECK_BITS(got_reduce, tiny_sum.rounded(got_reduce));
      const double got_transform = dpar::transform_reduce(p, tiny, 0.0, std::plus<>{}, scaled);
      CHECK_BITS(got_transform, scaled_sum.rounded(got_transform));
      const float got_transform_float =
          dpar::transform_reduce(p, tiny, 0.0f, std::plus<>{}, [](double t) { return t; });
      CHECK_BITS(got_transform_float, tiny_sum.rounded(got_transform_float));
    });
  }
  // all_reduce: subnormal columns (their exact sums are subnormal multiples of the unit)
  std::vector<std::vector<double>> columns;
  std::vector<std::vector<float>> float_columns;
  for (std::size_t r = 0; r < 3; ++r) {
    columns.push_back(dpar_test::subnormal<double>(1009, 50 + r));
    float_columns.push_back(dpar_test::subnormal<float>(1009, 60 + r));
  }
  check_all_reduce(columns, "subnormal doubles");
  check_all_reduce(float_columns, "subnormal floats");
}

// What the mutation run of issue 27 found untested in exact_sum.hpp,
// extraction.hpp and the K-buffer all-reduce.
TEST_CASE("deterministic rounding: the sticky bit below the half bit", "[deterministic]") {
  // 1 + 2^-53 is a tie (to even: 1); 2^-54 below the half bit breaks it upwards
  std::vector<double> v = {1.0, 0x1p-53, 0x1p-54};
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    CHECK_BITS(dpar::reduce(p, v, 0.0), 1.0 + 0x1p-52);
    std::vector<float> f = {1.0f, 0x1p-24f, 0x1p-25f};
    CHECK_BITS(dpar::reduce(p, f, 0.0f), 1.0f + 0x1p-23f);
  });
}

TEST_CASE("deterministic sums of -0: one +0 in any thread's part makes +0", "[deterministic]") {
  std::vector<double> zeros(70001, -0.0);
  for (std::size_t at : {std::size_t{0}, std::size_t{35000}, std::size_t{70000}}) {
    auto v = zeros;
    v[at] = 0.0;
    for (std::size_t threads : {2, 3}) {
      INFO("+0 at " << at << ", pool(" << threads << ")");
      CHECK(!std::signbit(dpar::reduce(dpar::deterministic(dpar::par.on(dpar_test::pool(threads))), v, -0.0)));
    }
  }
}

TEST_CASE("deterministic sums of tiles in rising binades (extraction bounds)", "[deterministic]") {
  // 8 tiles of 2048 same-sign doubles, tile t in binade [2^t, 2^(t+1)): each
  // tile's bound is one above the previous one's, the case where a bound one
  // binade off would lose bits
  std::size_t wrong = 0;
  for (std::uint64_t seed = 1; seed <= 150; ++seed) {
    std::vector<double> v;
    const double sign = seed % 2 ? 1.0 : -1.0;
    const int base = static_cast<int>(seed % 40) - 20;
    for (int t = 0; t < 8; ++t)
      for (double x : dpar_test::binade_range(2048, base + t, base + t + 1, seed * 8 + t))
        v.push_back(sign * std::fabs(x));
    exact_reference exact;
    for (double x : v) exact.add(x);
    const double got = dpar::reduce(dpar::deterministic(dpar::seq), v, 0.0);
    wrong += !same_bits(got, exact.rounded(got));
  }
  CHECK(wrong == 0);
}

TEST_CASE("deterministic all_reduce: the error terms of a short column", "[deterministic][collective]") {
  // 1 + 2^-53 + 2^-53: each step alone rounds back to 1; the error terms sum to 2^-52
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    std::vector<std::vector<double>> buffers = {{1.0}, {0x1p-53}, {0x1p-53}};
    dpar::all_reduce(p, buffers);
    for (const auto& b : buffers) CHECK_BITS(b[0], 1.0 + 0x1p-52);
  });
}

// The direct path (extraction.hpp, direct_sum): a tile whose nonzero values
// lie within 18 (floats) or 15 (doubles) binades of its largest is summed as
// it is; one more binade, and the tile must take extraction instead. Tiles
// here are 2048 values of one sign (the largest sums) spanning `span` binades,
// at both edges, near the top of the double range, and with a subnormal whose
// high 32 bits are zero hidden among ones.
TEST_CASE("deterministic sums at the edges of the direct path", "[deterministic]") {
  auto check_tiles = [&]<class T>(T, int top, int span, std::uint64_t seed) {
    std::vector<T> v;
    for (int t = 0; t < 3; ++t)
      for (double x : dpar_test::binade_range(2048, top - span, top + 1, seed * 3 + t))
        v.push_back(static_cast<T>(seed % 2 ? std::fabs(x) : -std::fabs(x)));
    // the lowest and the highest binade present in every tile
    for (std::size_t at = 0; at < v.size(); at += 2048) {
      v[at] = static_cast<T>(std::ldexp(seed % 2 ? 1.9 : -1.9, top));
      v[at + 1] = static_cast<T>(std::ldexp(seed % 2 ? 1.0 + 0x1p-20 : -1.0 - 0x1p-20, top - span));
    }
    v.resize(v.size() + 5, T(0.75));  // a partial tile
    exact_reference exact;
    for (T x : v) exact.add(static_cast<double>(x));
    for_each_deterministic([&](auto p, const std::string& name) {
      INFO(sizeof(T) << "-byte values in 2^" << top - span << " .. 2^" << top + 1 << ", " << name);
      const T got = dpar::reduce(p, v, T(0));
      CHECK_BITS(got, exact.rounded(got));
    });
  };
  for (int span : {14, 15, 16, 17, 18, 19, 20, 40}) {
    check_tiles(0.0f, 3, span, static_cast<std::uint64_t>(span));
    check_tiles(0.0f, -100, span, static_cast<std::uint64_t>(span) + 1);
    check_tiles(0.0, 3, span, static_cast<std::uint64_t>(span) + 2);
    check_tiles(0.0, 1000, span, static_cast<std::uint64_t>(span) + 3);  // sums near 2^1018
    check_tiles(0.0, 1006, span, static_cast<std::uint64_t>(span) + 4);  // exponent field 2029
    check_tiles(0.0, 1010, span, static_cast<std::uint64_t>(span) + 5);  // beyond the direct path's range
    check_tiles(0.0, -1000, span, static_cast<std::uint64_t>(span) + 6);
  }
  // sums that overflow, from tiles each of which alone does not
  std::vector<double> big(3 * 2048, std::ldexp(1.5, 1012));
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    CHECK(dpar::reduce(p, big, 0.0) == std::numeric_limits<double>::infinity());
  });

  // ones and one 2^-1070, whose high 32 bits are all zero
  std::vector<double> ones(4096, 1.0);
  ones[3000] = 0x1p-1070;
  ones[3001] = -0.0;
  ones[5] = 0.0;
  exact_reference with_tiny;
  for (double x : ones) with_tiny.add(x);
  // uniform values (direct tiles) with inf, NaN and zeros of both signs inside
  auto uniform = dpar_test::random_vector<float>(10007, 7);
  const float inf = std::numeric_limits<float>::infinity();
  for_each_deterministic([&](auto p, const std::string& name) {
    INFO(name);
    const double got = dpar::reduce(p, ones, 0.0);
    CHECK_BITS(got, with_tiny.rounded(got));
    auto v = uniform;
    v[4100] = inf;
    CHECK(dpar::reduce(p, v, 0.0f) == inf);
    v[9000] = -inf;
    CHECK(std::isnan(dpar::reduce(p, v, 0.0f)));
    v = uniform;
    v[2] = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(dpar::reduce(p, v, 0.0f)));
    std::vector<double> d(uniform.begin(), uniform.end());
    d[6000] = -std::numeric_limits<double>::infinity();
    CHECK(dpar::reduce(p, d, 0.0) == -std::numeric_limits<double>::infinity());
    // zeros of both signs among values that cancel exactly: +0
    std::vector<float> cancel(4099, -0.0f);
    for (std::size_t i = 0; i < 2048; ++i) cancel[i] = uniform[i], cancel[4095 - i] = -uniform[i];
    cancel[4097] = 0.0f;
    CHECK(!std::signbit(dpar::reduce(p, cancel, -0.0f)));
    CHECK(dpar::reduce(p, cancel, -0.0f) == 0.0f);
  });
}

// The exact all-reduce of floats sums each element's k values in double and
// checks only that their nonzero magnitudes lie within 29 - ceil(log2 k)
// binades: then the double sum is exact. Values near the top of a binade
// with one value that many binades (and one more, and one fewer) below, so
// that the sums need all 53 bits: every sum the check lets through is exact,
// and spreads within the limit are always let through.
TEST_CASE("deterministic all_reduce of floats: the binade check of the double sums", "[deterministic][collective]") {
  std::mt19937_64 gen(2026);
  for (std::size_t k : {2, 3, 4, 5, 8, 9, 17}) {
    const int limit = 29 - static_cast<int>(std::bit_width(k - 1));
    std::size_t passed_inexact = 0, flagged_within = 0, passed_beyond = 0;
    for (int trial = 0; trial < 400; ++trial) {
      const int below = limit - 1 + trial % 3;  // the lowest value's binade, under the others'
      std::vector<std::vector<float>> columns(k, std::vector<float>(37));
      for (std::size_t r = 0; r < k; ++r)
        for (float& x : columns[r]) {
          const float fraction = std::ldexp(static_cast<float>(gen() % (1u << 16)), -23);
          const float sign = gen() % 8 ? 1.0f : -1.0f;
          x = r + 1 < k ? sign * (1.34f + fraction)  // sums that need all 53 bits
                        : sign * std::ldexp(1.5f + std::ldexp(static_cast<float>(gen() % (1u << 22)), -23), -below);
        }
      std::vector<const float*> in;
      for (const auto& c : columns) in.push_back(c.data());
      double sums[37];
      const bool flagged = dpar::detail::deterministic::sum_in_double<0>(k, in.data(), sums, 37);
      bool exact = true;
      for (std::size_t i = 0; i < 37; ++i) {
        exact_reference difference;  // the exact sum minus the double one
        for (const auto& c : columns) difference.add(static_cast<double>(c[i]));
        difference.add(-sums[i]);
        exact &= difference.rounded(0.0) == 0.0;
      }
      passed_inexact += !flagged && !exact;
      flagged_within += flagged && below < limit;
      passed_beyond += !flagged && below > limit;
    }
    INFO("k = " << k << ", limit " << limit << " binades");
    CHECK(passed_inexact == 0);
    CHECK(flagged_within == 0);
    CHECK(passed_beyond == 0);
  }
}
