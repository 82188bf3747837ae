// K-buffer dpar::all_reduce on CPU replicas (seq, par): every buffer must equal
// the sequential reference combined in replica order, bit for bit.
#include "collective_common.hpp"
#include "common.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

using dpar_test::mat2;
using dpar_test::mat2_mul;

namespace {

const std::vector<std::size_t> replica_counts = {1, 2, 3, 4, 8};
const std::vector<std::size_t> lengths = {0, 1, 2, 13, 97, 1009, 10007, 65537};

template <class T>
std::vector<std::vector<T>> random_buffers(std::size_t k, std::size_t n, std::uint64_t seed) {
  std::vector<std::vector<T>> buffers;
  for (std::size_t r = 0; r < k; ++r) buffers.push_back(dpar_test::random_vector<T>(n, seed * 131 + r));
  return buffers;
}

// all_reduce with every policy on fresh copies of `buffers`; each result must equal the reference.
template <class T, class Op>
void check_all_policies(const std::vector<std::vector<T>>& buffers, Op op, const std::string& what) {
  const std::vector<T> expected = dpar_test::reference_all_reduce(buffers, op);
  dpar_test::for_each_policy([&](auto policy, const std::string& name) {
    auto work = buffers;
    dpar::all_reduce(policy, work, op);
    for (std::size_t r = 0; r < work.size(); ++r) {
      INFO(what << " policy " << name << " K=" << buffers.size() << " n=" << expected.size() << " buffer " << r);
      REQUIRE(work[r] == expected);
    }
  });
}

}  // namespace

TEST_CASE("all_reduce with sum, min, max and prod equals the replica-order reference", "[collective]") {
  for (std::size_t k : replica_counts)
    for (std::size_t n : lengths) {
      check_all_policies(random_buffers<double>(k, n, n + k), std::plus<>{}, "double sum");
      check_all_policies(random_buffers<float>(k, n, n + 2 * k), std::plus<>{}, "float sum");
      check_all_policies(random_buffers<int>(k, n, n + 3 * k), dpar::minimum<>{}, "int min");
      check_all_policies(random_buffers<std::int64_t>(k, n, n + 4 * k), dpar::maximum<>{}, "int64 max");
      check_all_policies(random_buffers<double>(k, n, n + 5 * k), std::multiplies<>{}, "double prod");
    }
}

TEST_CASE("all_reduce of a large buffer over 8 replicas", "[collective]") {
  check_all_policies(random_buffers<float>(8, (1 << 20) + 7, 99), std::plus<>{}, "float sum large");
}

TEST_CASE("all_reduce with a non-commutative op combines in replica order", "[collective][noncommutative]") {
  for (std::size_t k : replica_counts)
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{97}, std::size_t{4099}, std::size_t{20011}}) {
      std::uint64_t state = k * 1000 + n;
      std::vector<std::vector<mat2>> buffers(k, std::vector<mat2>(n));
      for (auto& b : buffers)
        for (auto& m : b) m = dpar_test::random_mat2(state);
      check_all_policies(buffers, mat2_mul{}, "mat2 product");
    }
}

TEST_CASE("all_reduce on non-trivially-copyable elements (string concatenation)", "[collective][types]") {
  for (std::size_t k : replica_counts) {
    std::vector<std::vector<std::string>> buffers(k);
    for (std::size_t r = 0; r < k; ++r)
      for (std::size_t i = 0; i < 3001; ++i) buffers[r].push_back(std::to_string(r) + ":" + std::to_string(i % 7) + ";");
    check_all_policies(buffers, std::plus<>{}, "string concat");
  }
}

TEST_CASE("all_reduce takes spans, arrays of vectors and user ops", "[collective][types]") {
  std::array<std::vector<int>, 3> arrays{std::vector<int>{1, 2, 3}, std::vector<int>{10, 20, 30},
                                         std::vector<int>{100, 200, 300}};
  dpar::all_reduce(dpar::par, arrays);
  for (auto& a : arrays) CHECK(a == std::vector<int>{111, 222, 333});

  std::vector<int> x{5, 1}, y{2, 7};
  std::vector<std::span<int>> spans{std::span<int>(x), std::span<int>(y)};
  dpar::all_reduce(dpar::seq, spans, [](int a, int b) { return a - b; });  // non-commutative: b0 - b1
  CHECK(x == std::vector<int>{3, -6});
  CHECK(y == std::vector<int>{3, -6});

  std::vector<std::vector<int>> none;
  dpar::all_reduce(dpar::par, none);  // K = 0: nothing to do
}

TEST_CASE("all_reduce_mean averages the replicas", "[collective]") {
  for (std::size_t k : replica_counts)
    for (std::size_t n : lengths) {
      auto buffers = random_buffers<float>(k, n, 7 * n + k);
      auto expected = dpar_test::reference_all_reduce(buffers, std::plus<>{});
      for (auto& e : expected) e /= static_cast<float>(k);
      dpar_test::for_each_policy([&](auto policy, const std::string& name) {
        auto work = buffers;
        dpar::all_reduce_mean(policy, work);
        for (std::size_t r = 0; r < k; ++r) {
          INFO("policy " << name << " K=" << k << " n=" << n << " buffer " << r);
          REQUIRE(work[r] == expected);
        }
      });
    }
}

TEST_CASE("all_reduce rejects buffers of different lengths, naming them", "[collective][errors]") {
  std::vector<std::vector<double>> buffers{std::vector<double>(10), std::vector<double>(10), std::vector<double>(9)};
  dpar_test::for_each_policy([&](auto policy, const std::string&) {
    CHECK_THROWS_WITH(dpar::all_reduce(policy, buffers),
                      Catch::Contains("buffer 2 has 9 elements but buffer 0 has 10"));
    CHECK_THROWS_AS(dpar::all_reduce_mean(policy, buffers), std::invalid_argument);
  });
}

TEST_CASE("all_reduce rejects overlapping buffers", "[collective][errors]") {
  std::vector<int> storage(20);
  std::vector<std::span<int>> spans{std::span<int>(storage).first(10), std::span<int>(storage).subspan(5, 10)};
  CHECK_THROWS_WITH(dpar::all_reduce(dpar::par, spans), Catch::Contains("buffers 0 and 1 overlap"));
}

TEST_CASE("an op that throws reaches the caller and the pool stays usable", "[collective][exceptions]") {
  auto buffers = random_buffers<double>(4, 200003, 5);
  dpar::thread_pool& pool = dpar_test::pool(8);
  auto throwing = [](double a, double b) -> double {
    if (b > 0.9999) throw std::runtime_error("op failed");
    return a + b;
  };
  CHECK_THROWS_WITH(dpar::all_reduce(dpar::par.on(pool), buffers, throwing), "op failed");
  check_all_policies(random_buffers<double>(4, 20011, 6), std::plus<>{}, "after exception");
}
