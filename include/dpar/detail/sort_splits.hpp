#pragma once
// Exact splits of sorted shards between destinations (a multi-sequence
// selection), for sample sorts whose shards live where the host cannot
// compare keys itself (dpar::multi_gpu: keys on devices, comparators that may
// be device-only). The host only moves keys and counts: a shard answers
//   size()                          its length
//   key_at(pos)                     its key at pos (a copy on the host)
//   lower_bound(key, lo, hi)        the first position in [lo, hi) whose key is
//   upper_bound(key, lo, hi)        not before key / after key (hi if none)
// over its sorted keys; the comparisons run wherever the shard runs them.
//
// The elements are ordered by (key, shard, position): distinct, and equal keys
// stay in shard order, so a stable sort of each destination's runs (taken in
// shard order) is stable globally. For each boundary, at global position t,
// every shard keeps a window [lo, hi) in which its split lies; a probe takes
// the middle element of the largest window, asks every shard how many of its
// elements come before it (clamped to the window) and, by the sum, either
// finds the split or cuts that window in half. So a boundary costs at most
// about shards x log2(longest shard) probes, each one count per shard.
// The boundaries are searched in order, each window starting at the split
// before, so the splits never cross, and every destination receives exactly
// its size even if the comparator is not a strict weak order (NaNs under
// std::less): the output is then a permutation, not necessarily sorted.

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpar::detail {

// splits[s][d]: the first position of sorted shard s that goes to destination
// d or later (splits[s][0] = 0, splits[s][D] = shards[s].size()); destination
// d receives the elements of global sorted positions [offset_d, offset_d +
// destination_sizes[d]), which must add up to the shards' total.
template <class Shard>
std::vector<std::vector<std::size_t>> exact_splits(const std::vector<Shard>& shards,
                                                   const std::vector<std::size_t>& destination_sizes) {
  const std::size_t count = shards.size(), destinations = destination_sizes.size();
  std::vector<std::size_t> size(count);
  for (std::size_t s = 0; s < count; ++s) size[s] = shards[s].size();
  const std::size_t total = std::accumulate(size.begin(), size.end(), std::size_t{0});
  const std::size_t wanted = std::accumulate(destination_sizes.begin(), destination_sizes.end(), std::size_t{0});
  if (wanted != total)
    throw std::invalid_argument("dpar: sort splits: the destinations hold " + std::to_string(wanted) +
                                " elements, the shards " + std::to_string(total));
  std::vector<std::vector<std::size_t>> splits(count, std::vector<std::size_t>(destinations + 1, 0));
  if (destinations == 0) return splits;

  std::vector<std::size_t> lo(count, 0), hi(count), ranks(count);
  std::size_t t = 0;
  for (std::size_t d = 0; d + 1 < destinations; ++d) {
    t += destination_sizes[d];
    hi = size;  // lo: the previous boundary's split (or 0)
    for (;;) {
      const std::size_t below = std::accumulate(lo.begin(), lo.end(), std::size_t{0});
      const std::size_t through = std::accumulate(hi.begin(), hi.end(), std::size_t{0});
      if (below == t) break;  // also when every window is empty
      if (through == t) {
        lo = hi;
        break;
      }
      // the pivot: the middle element of the largest window
      std::size_t q = 0;
      for (std::size_t s = 1; s < count; ++s)
        if (hi[s] - lo[s] > hi[q] - lo[q]) q = s;
      const std::size_t m = lo[q] + (hi[q] - lo[q]) / 2;
      const auto key = shards[q].key_at(m);
      // Elements of each shard before the pivot: equal keys of earlier shards
      // come before it, of later shards after. Clamped to the window, the sum
      // still says on which side of position t the pivot lies, and equals t
      // only where the clamped counts are the splits.
      std::size_t sum = 0;
      for (std::size_t s = 0; s < count; ++s) {
        ranks[s] = s == q ? m
                   : s < q ? shards[s].upper_bound(key, lo[s], hi[s])
                           : shards[s].lower_bound(key, lo[s], hi[s]);
        ranks[s] = std::clamp(ranks[s], lo[s], hi[s]);  // a shard that answers out of its window
        sum += ranks[s];
      }
      if (sum == t) {
        lo = ranks;
        break;
      }
      if (sum < t) {  // the pivot and everything before it go left
        lo = ranks;
        ++lo[q];
      } else {  // everything from the pivot on goes right
        hi = ranks;
      }
    }
    for (std::size_t s = 0; s < count; ++s) splits[s][d + 1] = lo[s];
  }
  for (std::size_t s = 0; s < count; ++s) splits[s][destinations] = size[s];
  return splits;
}

}  // namespace dpar::detail
