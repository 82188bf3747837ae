// The backends' shared host helpers: the splits of partition.hpp, and reduce-then-scan's fold of part totals into carries,
// used by the thread, MPI and multi-GPU scans.

#include <dpar/dpar.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

TEST_CASE("even split: n / k each, the remainder on the first parts", "[kernels][partition]") {
  for (std::size_t k = 1; k <= 5; ++k)
    for (std::size_t n : {0, 1, 2, 3, 4, 7, 10, 1009}) {
      INFO("n = " << n << ", k = " << k);
      CHECK(dpar::even_split_begin(n, k, 0) == 0);
      CHECK(dpar::even_split_begin(n, k, k) == n);
      for (std::size_t i = 0; i < k; ++i) {
        const dpar::index_range piece = dpar::even_split(n, k, i);
        CHECK(piece.begin == dpar::even_split_begin(n, k, i));
        CHECK(piece.size() == n / k + (i < n % k ? 1 : 0));
      }
    }
}

TEST_CASE("block count: ceil(n / block), at least one, independent of anything but n", "[kernels][partition]") {
  CHECK(dpar::block_count(0, 8) == 1);
  CHECK(dpar::block_count(1, 8) == 1);
  CHECK(dpar::block_count(8, 8) == 1);
  CHECK(dpar::block_count(9, 8) == 2);
  CHECK(dpar::block_count(17, 8) == 3);
  CHECK(dpar::block_count(1009, 1) == 1009);
}

TEST_CASE("aligned split: whole groups per piece, covering [0, n) in order", "[kernels][partition]") {
  for (std::size_t align : {1, 16})
    for (std::size_t parts = 1; parts <= 5; ++parts)
      for (std::size_t n : {0, 1, 15, 16, 17, 100, 1009}) {
        INFO("n = " << n << ", parts = " << parts << ", align = " << align);
        CHECK(dpar::aligned_split_begin(n, parts, align, 0) == 0);
        CHECK(dpar::aligned_split_begin(n, parts, align, parts) == n);
        const std::size_t groups = (n + align - 1) / align;
        for (std::size_t i = 0; i < parts; ++i) {
          const std::size_t lo = dpar::aligned_split_begin(n, parts, align, i);
          const std::size_t hi = dpar::aligned_split_begin(n, parts, align, i + 1);
          CHECK(lo <= hi);
          if (hi < n) CHECK(hi % align == 0);  // only the end of the data is not a group boundary
          CHECK((hi - lo + align - 1) / align <= groups / parts + 1);
        }
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
