#pragma once
// How dpar::multi_gpu combines per-shard results on the host, in shard order
// (detail/multi_gpu/algorithms.hpp): the first match over the shards, which
// shard's last element comes before a shard's first, and where the elements
// each shard keeps go when they are packed at the front of a sequence
// sharded like the input. Plain C++ that knows no CUDA, so the
// CPU tests run it (test_gpu_host_logic, "[shards]").

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <vector>

namespace dpar::detail::shards {

// The global position of the first match: local[i] is shard i's first
// matching position, or sizes[i] where it has none. The sum of the sizes
// where no shard has one.
inline std::size_t first_match(std::span<const std::size_t> local, std::span<const std::size_t> sizes) {
  std::size_t offset = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (local[i] < sizes[i]) return offset + local[i];
    offset += sizes[i];
  }
  return offset;
}

// For each shard, the nearest earlier shard that holds any element (its last
// element comes before the shard's first in the sequence); none for empty
// shards and for the first that holds any.
inline std::vector<std::optional<std::size_t>> previous_nonempty(std::span<const std::size_t> sizes) {
  std::vector<std::optional<std::size_t>> before(sizes.size());
  std::optional<std::size_t> last;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] == 0) continue;
    before[i] = last;
    last = i;
  }
  return before;
}

// count elements copied from shard `from` (starting at its position
// from_at) to shard `to` (at to_at).
struct piece {
  std::size_t from, from_at, to, to_at, count;
  friend bool operator==(const piece&, const piece&) = default;
};

// Where the kept elements go: shard s keeps counts[s] elements (packed at the
// front of its scratch), which take the global positions [offset_s, offset_s
// + counts[s]) of a sequence whose shards have `sizes` (offset_s: the sum of
// the earlier counts), so the kept elements of all shards end up at the front
// in shard order. The pieces in source order, each within one destination
// shard; none empty. The counts must not sum to more than the sizes.
inline std::vector<piece> packing_pieces(std::span<const std::size_t> counts, std::span<const std::size_t> sizes) {
  std::vector<piece> pieces;
  std::size_t to = 0, to_at = 0;  // the next free position: shard `to`, position to_at in it
  for (std::size_t from = 0; from < counts.size(); ++from) {
    for (std::size_t from_at = 0; from_at < counts[from];) {
      while (to_at == sizes[to]) ++to, to_at = 0;  // skips full and empty shards
      const std::size_t count = std::min(counts[from] - from_at, sizes[to] - to_at);
      pieces.push_back({from, from_at, to, to_at, count});
      from_at += count;
      to_at += count;
    }
  }
  return pieces;
}

}  // namespace dpar::detail::shards
