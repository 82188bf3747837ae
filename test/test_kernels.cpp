// The backends' shared host helpers: the splits of partition.hpp, and reduce-then-scan's fold of part totals into carries,
// used by the thread, MPI and multi-GPU scans.

#include <dpar/dpar.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <deque>
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

// Large transforms write whole cache lines with non-temporal stores
// (stream_range); the thread backend takes that path from 32 MiB of output
// on, too large for a test, so the kernel is tested here at every alignment
// and length around a line, and the choice of path on its own.
TEST_CASE("stream_range writes every element once, at any alignment and length", "[kernels]") {
  auto check = [&]<class T>(T) {
    for (std::size_t offset = 0; offset < 20; ++offset)
      for (std::size_t n : {0, 1, 7, 15, 16, 17, 31, 33, 64, 100, 257}) {
        std::vector<T> out(offset + n + 20, T(-1));
        auto value = [](std::size_t i) { return static_cast<T>(3 * i + 1); };
        const std::size_t lo = offset, hi = offset + n;
        if constexpr (dpar::detail::streamable_v<T>)
          dpar::detail::stream_range(out.data(), lo, hi, value);
        else
          for (std::size_t i = lo; i < hi; ++i) out[i] = value(i);
        INFO(sizeof(T) << "-byte elements, [" << lo << ", " << hi << ")");
        for (std::size_t i = 0; i < out.size(); ++i) CHECK(out[i] == (i >= lo && i < hi ? value(i) : T(-1)));
      }
  };
  check(float{});
  check(double{});
  check(std::int32_t{});
  check(std::int64_t{});
  // in place: each line's inputs are read before it is written
  std::vector<float> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  auto next = [&](std::size_t i) { return v[i] + 1; };
  if constexpr (dpar::detail::streamable_v<float>) {
    dpar::detail::stream_range(v.data(), 3, 997, next);
    for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == static_cast<float>(i) + (i >= 3 && i < 997 ? 1 : 0));
  }
}

TEST_CASE("transforms stream only arithmetic outputs from and to contiguous memory, from 32 MiB on", "[kernels]") {
  using dpar::detail::threads::streams_output;
  constexpr std::size_t limit = dpar::detail::streaming_store_bytes;
  const bool streams = dpar::detail::streamable_v<float>;  // false where the target has no SSE2
  CHECK(streams_output<float*, const float*>(limit / sizeof(float)) == streams);
  CHECK(streams_output<std::vector<double>::iterator, const int*, std::vector<float>::iterator>(limit / sizeof(double)) ==
        streams);
  CHECK_FALSE(streams_output<float*, const float*>(limit / sizeof(float) - 1));
  CHECK_FALSE(streams_output<std::deque<float>::iterator, const float*>(limit));
  CHECK_FALSE(streams_output<float*, std::deque<float>::iterator>(limit));  // inputs elsewhere: derived iterators
  CHECK_FALSE(streams_output<std::vector<bool>::iterator, const float*>(8 * limit));
  CHECK_FALSE(streams_output<std::string*, const std::string*>(limit));
}
