#pragma once
// Sorting over MPI ranks: the sequence is the concatenation of the ranks'
// local ranges; afterwards rank r holds the r-th part of the sorted sequence,
// as many elements as it had. Sample sort with exact splitters:
//
// 1. Each rank sorts its range on the inner policy.
// 2. The ranks choose, together, where each sorted range splits between the
//    destination ranks so that rank r receives exactly its own count: for
//    every boundary between ranks, a multi-sequence selection. Elements are
//    ordered by (key, rank, position), which makes them distinct and keeps
//    equal keys in rank order. Each rank keeps a window of its range where the
//    split may lie; every round the ranks all-gather a regular sample of their
//    windows (8 elements each), all take the same weighted quantiles of it
//    as pivots, count their elements below each pivot and sum the counts
//    (MPI_Allreduce); the pivots that bracket the boundary's global position
//    cut every window, to about an eighth and by at least a quarter of what
//    is left. All boundaries are searched at once, each round two small
//    collectives, about log8 of the longest range rounds.
// 3. One MPI_Alltoallv of the keys (and one of the values): every rank
//    receives its part as runs from the ranks in rank order, and sorts it
//    stably on the inner policy, which keeps equal keys in rank order.
//
// Keys and values cross ranks as bytes: they must be trivially copyable, and
// local ranges contiguous. A comparator that throws on one rank makes the call
// throw on every rank (that rank its own exception, the others a
// dpar::collective_error naming it).

#include "mpi_h.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../../execution.hpp"
#include "../sort_backend.hpp"
#include "../threads/sort.hpp"
#include "backend.hpp"
#include "error.hpp"
#include "ordered_op.hpp"

namespace dpar::detail::mpi {

// Samples each rank draws from its window per boundary and round: the
// pivots between them cut every window to about 1/samples of it.
inline constexpr std::size_t samples_per_window = 8;

// One sample: a key's bytes, its position in its rank's sorted range, and how
// many elements of the window it stands for (0: no sample).
template <class K>
struct sample {
  std::array<std::byte, sizeof(K)> key;
  std::uint64_t position;
  std::uint64_t weight;
};

// Where the sorted local range `keys` (n elements, this rank `me` of `ranks`)
// splits between destination ranks: split[r] is the first local position
// that goes to rank r or later (split[0] = 0, split[ranks] = n). Rank r must
// end with the elements of global positions [offsets[r], offsets[r + 1]).
template <class K, class Comp>
std::vector<std::size_t> exact_splits(MPI_Comm comm, const K* keys, std::size_t n, int me, int ranks,
                                      const std::vector<std::size_t>& offsets, Comp& comp) {
  constexpr std::size_t s = samples_per_window, pivots = s - 1;
  const std::size_t boundaries = static_cast<std::size_t>(ranks) - 1;
  // The split for boundary b lies in [lo[b], hi[b]] of this rank's range.
  std::vector<std::size_t> lo(boundaries, 0), hi(boundaries, n);
  std::vector<sample<K>> mine(boundaries * s), all(mine.size() * static_cast<std::size_t>(ranks));
  // per boundary and pivot: this rank's elements before the pivot; last: failures
  std::vector<unsigned long long> counts(boundaries * pivots + 1), sums(counts.size());
  std::vector<int> pivot_rank(boundaries * pivots);
  std::vector<bool> open(boundaries);
  const MPI_Datatype sample_type = byte_datatype<sample<K>>();
  std::exception_ptr error;

  // Elements in (key, rank, position) order: distinct, equal keys in rank order.
  struct candidate {
    K key;
    int rank;
    std::uint64_t position, weight;
  };
  auto before = [&](const candidate& a, const candidate& b) {
    if (comp(a.key, b.key)) return true;
    if (comp(b.key, a.key)) return false;
    return a.rank != b.rank ? a.rank < b.rank : a.position < b.position;
  };
  // This rank's elements before c in that order.
  auto count_before = [&](const candidate& c) -> std::size_t {
    if (c.rank == me) return c.position;
    if (c.rank < me) return static_cast<std::size_t>(std::lower_bound(keys, keys + n, c.key, comp) - keys);
    return static_cast<std::size_t>(std::upper_bound(keys, keys + n, c.key, comp) - keys);
  };
  std::vector<candidate> candidates;

  for (;;) {
    // s evenly spaced samples of each window (fewer where the window is smaller)
    for (std::size_t b = 0; b < boundaries; ++b) {
      const std::size_t w = hi[b] - lo[b];
      for (std::size_t j = 0; j < s; ++j) {
        sample<K>& x = mine[b * s + j];
        x = {};
        const std::size_t from = lo[b] + even_split_begin(w, s, j), to = lo[b] + even_split_begin(w, s, j + 1);
        if (to == from) continue;
        x.position = from + (to - from) / 2;
        x.key = std::bit_cast<std::array<std::byte, sizeof(K)>>(keys[x.position]);
        x.weight = to - from;
      }
    }
    check(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), sample_type, all.data(),
                        static_cast<int>(mine.size()), sample_type, comm),
          "MPI_Allgather");
    // Every rank sees the same samples: all stop together when no window is left.
    bool any_open = false;
    for (std::size_t b = 0; b < boundaries; ++b) {
      open[b] = false;
      for (int r = 0; r < ranks; ++r)
        for (std::size_t j = 0; j < s; ++j)
          open[b] = open[b] || all[(static_cast<std::size_t>(r) * boundaries + b) * s + j].weight != 0;
      any_open = any_open || open[b];
    }
    if (!any_open) break;
    std::fill(counts.begin(), counts.end(), 0);
    try {
      for (std::size_t b = 0; b < boundaries; ++b) {
        if (!open[b]) continue;
        candidates.clear();
        std::uint64_t total = 0;
        for (int r = 0; r < ranks; ++r)
          for (std::size_t j = 0; j < s; ++j) {
            const sample<K>& x = all[(static_cast<std::size_t>(r) * boundaries + b) * s + j];
            if (x.weight == 0) continue;
            candidates.push_back({std::bit_cast<K>(x.key), r, x.position, x.weight});
            total += x.weight;
          }
        std::sort(candidates.begin(), candidates.end(), before);
        // Pivot q: the first sample at which the weight so far reaches q/s of
        // the total (q = s/2: the weighted median, which alone shrinks the
        // windows by a quarter each round).
        auto pivot = candidates.begin();
        std::uint64_t through = pivot->weight;
        for (std::size_t q = 1; q <= pivots; ++q) {
          while (through * s < q * total) through += (++pivot)->weight;
          pivot_rank[b * pivots + q - 1] = pivot->rank;
          counts[b * pivots + q - 1] = count_before(*pivot);
        }
      }
    } catch (...) {
      error = std::current_exception();
      counts.back() = 1;  // the sums tell every rank to stop
    }
    check(MPI_Allreduce(counts.data(), sums.data(), static_cast<int>(counts.size()), MPI_UNSIGNED_LONG_LONG, MPI_SUM,
                        comm),
          "MPI_Allreduce");
    if (sums.back() != 0) break;
    // Pivots below the boundary's global position go left with everything
    // before them; pivots at or above it go right with everything after.
    for (std::size_t b = 0; b < boundaries; ++b) {
      if (!open[b]) continue;
      const std::size_t target = offsets[b + 1];
      for (std::size_t q = 0; q < pivots; ++q) {
        const std::size_t at = b * pivots + q;
        if (sums[at] < target) lo[b] = std::max<std::size_t>(lo[b], counts[at] + (pivot_rank[at] == me ? 1 : 0));
        else hi[b] = std::min<std::size_t>(hi[b], counts[at]);
        if (sums[at] == target) lo[b] = counts[at];
      }
    }
  }
  agree_on_failure(comm, error, nullptr);
  std::vector<std::size_t> split(static_cast<std::size_t>(ranks) + 1, n);
  split[0] = 0;
  for (std::size_t b = 0; b < boundaries; ++b) split[b + 1] = lo[b];
  return split;
}

// Runs a local step that every rank takes; if it throws anywhere, it throws on every rank.
template <class Step>
void on_every_rank(MPI_Comm comm, Step&& step) {
  std::exception_ptr error;
  try {
    step();
  } catch (...) {
    error = std::current_exception();
  }
  agree_on_failure(comm, error, nullptr);
}

// The counts and displacements of one MPI_Alltoallv, in elements.
struct exchange_plan {
  std::vector<int> send_counts, send_displs, recv_counts, recv_displs;
};

// Sends plan.send_counts[r] elements of `range` to every rank r and puts what
// every rank sends here, in rank order, in its place.
template <class It>
void exchange(MPI_Comm comm, It range, std::size_t n, const exchange_plan& plan) {
  using T = std::iter_value_t<It>;
  threads::scratch<T> received(n, 0);  // raw storage that MPI fills with trivially copyable T
  const MPI_Datatype type = byte_datatype<T>();
  check(MPI_Alltoallv(std::to_address(range), plan.send_counts.data(), plan.send_displs.data(), type,
                      received.data(), plan.recv_counts.data(), plan.recv_displs.data(), type, comm),
        "MPI_Alltoallv");
  std::copy(received.data(), received.data() + n, range);
}

// Sample sort of the concatenation of the ranks' ranges (see the top of this
// file); values_first: nullptr, or the values that follow their keys.
template <bool Stable, class P, class Keys, class Values, class Comp>
void sample_sort(const P& policy, Keys first, Keys last, Values values_first, Comp& comp) {
  using K = std::iter_value_t<Keys>;
  constexpr bool by_key = !std::is_same_v<Values, std::nullptr_t>;
  static_assert(std::contiguous_iterator<Keys>, "dpar::mpi sorts contiguous local ranges (vectors, arrays, spans)");
  static_assert(std::is_trivially_copyable_v<K>,
                "dpar::mpi sorts: keys cross ranks as bytes and must be trivially copyable");
  using inner = sorting<backend_of<typename P::inner_type>>;
  auto sort_locally = [&] {
    if constexpr (by_key) inner::sort_by_key(policy.inner(), first, last, values_first, comp);
    else inner::template sort<Stable>(policy.inner(), first, last, comp);
  };
  const MPI_Comm comm = private_comm(policy.comm());
  on_every_rank(comm, sort_locally);
  const int ranks = size_of(comm), me = rank_of(comm);
  if (ranks == 1) return;

  const auto n = static_cast<std::size_t>(last - first);
  std::vector<unsigned long long> sizes(static_cast<std::size_t>(ranks));
  const unsigned long long mine = n;
  check(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, sizes.data(), 1, MPI_UNSIGNED_LONG_LONG, comm),
        "MPI_Allgather");
  std::vector<std::size_t> offsets{0};
  for (int r = 0; r < ranks; ++r) {
    const auto size = sizes[static_cast<std::size_t>(r)];
    if (size > static_cast<unsigned long long>(INT_MAX))  // every rank sees it: all throw
      throw std::length_error("dpar::mpi sort: rank " + std::to_string(r) + " holds " + std::to_string(size) +
                              " elements, more than MPI_Alltoallv's int counts reach (" + std::to_string(INT_MAX) +
                              ")");
    offsets.push_back(offsets.back() + static_cast<std::size_t>(size));
  }
  if (offsets.back() == 0) return;

  const K* keys = std::to_address(first);
  const std::vector<std::size_t> split = exact_splits(comm, keys, n, me, ranks, offsets, comp);
  const auto count = static_cast<std::size_t>(ranks);
  exchange_plan plan{std::vector<int>(count), std::vector<int>(count), std::vector<int>(count),
                     std::vector<int>(count)};
  for (std::size_t r = 0; r < count; ++r) {
    plan.send_counts[r] = static_cast<int>(split[r + 1] - split[r]);
    plan.send_displs[r] = static_cast<int>(split[r]);
  }
  check(MPI_Alltoall(plan.send_counts.data(), 1, MPI_INT, plan.recv_counts.data(), 1, MPI_INT, comm),
        "MPI_Alltoall");
  for (std::size_t r = 1; r < count; ++r) plan.recv_displs[r] = plan.recv_displs[r - 1] + plan.recv_counts[r - 1];

  // The received runs, in rank order, replace the local range, and a stable
  // local sort merges them (equal keys stay in rank order).
  exchange(comm, first, n, plan);
  if constexpr (by_key) {
    static_assert(std::contiguous_iterator<Values>, "dpar::mpi sort_by_key: values must be contiguous");
    static_assert(std::is_trivially_copyable_v<std::iter_value_t<Values>>,
                  "dpar::mpi sort_by_key: values cross ranks as bytes and must be trivially copyable");
    exchange(comm, values_first, n, plan);
  }
  on_every_rank(comm, sort_locally);
}

}  // namespace dpar::detail::mpi

namespace dpar::detail {

template <>
struct sorting<mpi::backend> {
  template <bool Stable, class P, class It, class Comp>
  static void sort(const P& policy, It first, It last, Comp comp) {
    mpi::sample_sort<Stable>(policy, first, last, nullptr, comp);
  }
  template <class P, class Keys, class Values, class Comp>
  static void sort_by_key(const P& policy, Keys keys_first, Keys keys_last, Values values_first, Comp comp) {
    mpi::sample_sort<true>(policy, keys_first, keys_last, values_first, comp);
  }
};

}  // namespace dpar::detail
