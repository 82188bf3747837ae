#pragma once
// How dpar cuts [0, n) into parts: every split of work or data in the library
// (thread blocks, deterministic blocks, collective slices, the shards of a
// sharded_vector, MPI pieces, a global batch over replicas) is one of these,
// so a user who lays out data to match (a rank loading its own rows, a
// replica's share of a batch) can ask the same function.

#include <algorithm>
#include <cstddef>

namespace dpar {

// A half-open range of indices.
struct index_range {
  std::size_t begin = 0, end = 0;
  constexpr std::size_t size() const noexcept { return end - begin; }
  constexpr bool empty() const noexcept { return begin == end; }
  friend constexpr bool operator==(index_range, index_range) = default;
};

// [0, n) in `parts` contiguous pieces whose sizes differ by at most one, the
// first n % parts pieces one longer: the first index of piece i (i = parts
// gives n). parts must be > 0.
constexpr std::size_t even_split_begin(std::size_t n, std::size_t parts, std::size_t i) noexcept {
  return i * (n / parts) + std::min(i, n % parts);
}

constexpr index_range even_split(std::size_t n, std::size_t parts, std::size_t i) noexcept {
  return {even_split_begin(n, parts, i), even_split_begin(n, parts, i + 1)};
}

// [0, n) in blocks of `block` elements, the last one shorter: a count that
// depends on n alone (never on the thread count), which is what makes block
// results reproducible. At least one block, even for n = 0.
constexpr std::size_t block_count(std::size_t n, std::size_t block) noexcept {
  return n <= block ? 1 : (n + block - 1) / block;
}

// [0, n) in `parts` pieces made of whole groups of `align` elements (say, the
// elements of a cache line), as even as whole groups allow; only the last
// non-empty piece may end inside a group. Threads writing neighbouring pieces
// then never share a cache line.
constexpr std::size_t aligned_split_begin(std::size_t n, std::size_t parts, std::size_t align, std::size_t i) noexcept {
  const std::size_t groups = (n + align - 1) / align;
  return std::min(n, even_split_begin(groups, parts, i) * align);
}

}  // namespace dpar
