// The backends' shared host helpers (detail/kernels.hpp): the even split of n
// items over k parts, and reduce-then-scan's fold of part totals into carries,
// used by the thread, MPI and multi-GPU scans.

#include <dpar/dpar.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

TEST_CASE("even split: n / k each, the remainder on the first parts", "[kernels]") {
  using dpar::detail::even_split_begin;
  for (std::size_t k = 1; k <= 5; ++k)
    for (std::size_t n : {0, 1, 2, 3, 4, 7, 10, 1009}) {
      INFO("n = " << n << ", k = " << k);
      CHECK(even_split_begin(n, k, 0) == 0);
      CHECK(even_split_begin(n, k, k) == n);
      for (std::size_t i = 0; i < k; ++i)
        CHECK(even_split_begin(n, k, i + 1) - even_split_begin(n, k, i) == n / k + (i < n % k ? 1 : 0));
    }
}

TEST_CASE("totals_to_carries: every carry is init and the earlier totals, in order", "[kernels][scan]") {
  using parts = std::vector<std::optional<std::string>>;
  auto concat = std::plus<>{};
  SECTION("init and every total present: a non-commutative op keeps the order") {
    parts p = {"<", "a", "b", "c"};
    dpar::detail::totals_to_carries(p, concat);
    CHECK(p == parts{"<", "<a", "<ab", "<abc"});
  }
  SECTION("no init (an inclusive scan without one): the first carry stays absent") {
    parts p = {std::nullopt, "a", "b"};
    dpar::detail::totals_to_carries(p, concat);
    CHECK(p == parts{std::nullopt, "a", "ab"});
  }
  SECTION("empty parts have no total: the carry passes through them") {
    parts p = {std::nullopt, std::nullopt, "a", std::nullopt, "b", std::nullopt};
    dpar::detail::totals_to_carries(p, concat);
    CHECK(p == parts{std::nullopt, std::nullopt, "a", "a", "ab", "ab"});
  }
  SECTION("one part: nothing to fold") {
    parts p = {"x"};
    dpar::detail::totals_to_carries(p, concat);
    CHECK(p == parts{"x"});
  }
  SECTION("carries accumulate in the totals' type (int64 totals of int-sized parts do not wrap)") {
    std::vector<std::optional<std::int64_t>> p = {std::nullopt, std::int64_t{1} << 30, std::int64_t{1} << 31,
                                                  std::int64_t{1} << 31};
    auto plus = std::plus<>{};
    dpar::detail::totals_to_carries(p, plus);
    CHECK(*p[3] == (std::int64_t{1} << 30) + (std::int64_t{1} << 32));
  }
}
