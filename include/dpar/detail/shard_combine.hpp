#pragma once
// How dpar::multi_gpu combines per-shard results on the host, in shard order
// (detail/multi_gpu/algorithms.hpp): the first match over the shards, the
// extremes, which shard's last element comes before a shard's first (and
// which first element follows a shard's last), where the elements each shard
// keeps go when they are packed into a sequence sharded like the input, and
// the carries of scans by key whose segments cross shards. Plain C++ that
// knows no CUDA, so the CPU tests run it (test_gpu_host_logic, "[shards]").

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

// For each shard, the nearest later shard that holds any element (its first
// element follows the shard's last); none for empty shards and the last that
// holds any.
inline std::vector<std::optional<std::size_t>> next_nonempty(std::span<const std::size_t> sizes) {
  std::vector<std::optional<std::size_t>> after(sizes.size());
  std::optional<std::size_t> next;
  for (std::size_t i = sizes.size(); i-- > 0;) {
    if (sizes[i] == 0) continue;
    after[i] = next;
    next = i;
  }
  return after;
}

// Whether b, later in the sequence than a, replaces a as the extreme: the
// first smallest (largest) under comp or, with `last`, the last one.
template <class Comp, class T>
constexpr bool later_wins(const Comp& comp, const T& a, const T& b, bool largest, bool last) {
  return largest ? (last ? !comp(b, a) : bool(comp(a, b))) : (last ? !comp(a, b) : bool(comp(b, a)));
}

// The global position of the extreme over the shards: shard i's own extreme
// (the same kind) is at its position local[i], element values[i] (both
// ignored for empty shards). Ties go to the earlier shard, or with `last` to
// the later one. The sum of the sizes (0) for an empty sequence.
template <class T, class Comp>
std::size_t extreme_position(std::span<const std::size_t> local, std::span<const T> values,
                             std::span<const std::size_t> sizes, const Comp& comp, bool largest, bool last) {
  std::optional<std::size_t> best;  // the winning shard so far
  std::size_t offset = 0, at = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] != 0 && (!best || later_wins(comp, values[*best], values[i], largest, last))) {
      best = i;
      at = offset + local[i];
    }
    offset += sizes[i];
  }
  return best ? at : offset;
}

// count elements copied from shard `from` (starting at its position
// from_at) to shard `to` (at to_at).
struct piece {
  std::size_t from, from_at, to, to_at, count;
  friend bool operator==(const piece&, const piece&) = default;
};

// Where the kept elements go: shard s keeps counts[s] elements (packed at the
// front of its scratch), which take the global positions [start + offset_s,
// start + offset_s + counts[s]) of a sequence whose shards have `sizes`
// (offset_s: the sum of the earlier counts), so the kept elements of all
// shards follow position `start` (stable_partition's rejected ones follow the
// kept) in shard order. The pieces in source order, each within one
// destination shard; none empty. start plus the counts must not exceed the
// sum of the sizes.
inline std::vector<piece> packing_pieces(std::span<const std::size_t> counts, std::span<const std::size_t> sizes,
                                         std::size_t start = 0) {
  std::vector<piece> pieces;
  std::size_t to = 0, to_at = start;  // the next free position: shard `to`, position to_at in it
  for (std::size_t from = 0; from < counts.size(); ++from) {
    for (std::size_t from_at = 0; from_at < counts[from];) {
      while (to_at >= sizes[to]) to_at -= sizes[to++];  // skips full and empty shards
      const std::size_t count = std::min(counts[from] - from_at, sizes[to] - to_at);
      pieces.push_back({from, from_at, to, to_at, count});
      from_at += count;
      to_at += count;
    }
  }
  return pieces;
}

// What each shard's part of a scan by key starts from, where segments may
// cross shards. Shard s (size sizes[s]) was scanned alone; head[s] is its
// first position that starts a segment of the whole sequence (its first
// element is compared with the last of the nearest earlier shard holding
// any), sizes[s] if none, and last[s] its own scan's last element (the
// reduction of its last segment's values in it). A shard whose head is not 0
// continues the segment that ends the shards before it: its elements before
// its head take carry[s], that segment's reduction so far, on the left
// (op(carry, x), so op need not be commutative). None for the others.
template <class V, class Op>
std::vector<std::optional<V>> segment_carries(std::span<const std::size_t> head, std::span<const std::size_t> sizes,
                                              std::span<const V> last, Op op) {
  std::vector<std::optional<V>> carry(sizes.size());
  std::optional<V> running;  // the reduction of the segment that ends the shards so far
  for (std::size_t s = 0; s < sizes.size(); ++s) {
    if (sizes[s] == 0) continue;
    if (head[s] != 0) carry[s] = running;  // never without running: a shard's first element has a predecessor
    running = carry[s] && head[s] == sizes[s] ? static_cast<V>(op(*carry[s], last[s])) : last[s];
  }
  return carry;
}

}  // namespace dpar::detail::shards
