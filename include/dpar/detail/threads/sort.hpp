#pragma once
// Sorting on the CPU, for the sequential and the thread backends: every
// function takes a thread_pool* that is null to run in the calling thread.
//
// - Arithmetic keys with the default order (std::less / std::greater, plain or
//   std::ranges::) in contiguous memory: LSD radix sort, 8 bits a pass, the
//   passes whose digit all keys share skipped. Each pass counts the digits of
//   every part of the input (two parts per thread), turns the counts into
//   each part's output offsets, and scatters the parts in parallel. Radix sort
//   is stable, so it serves sort, stable_sort and sort_by_key alike.
//   Floating-point keys are ordered by their bit patterns, negatives
//   reversed; -0.0 gets +0.0's key (they compare equal, so stable_sort keeps
//   their input order). NaNs are not ordered by <; here they go to the ends by
//   sign bit: NaNs with the sign bit set first, the others last.
// - Anything else: merge sort. Runs (a power of two of them, at least one per
//   thread) are moved into a scratch buffer and sorted there with std::sort
//   (std::stable_sort for stable_sort) in parallel, then merged pairwise in
//   rounds, buffer to range to buffer..., an odd number of rounds so that the
//   last lands in the range; every merge is cut into pieces along its merge
//   path, so all threads work in every round. Equal elements are taken from
//   the left run first: stable when the runs were sorted stably.
// - sort_by_key sorts (key, index) pairs by radix, or indices by comparing
//   their keys, stably in both cases, then moves keys and values into that order.
//
// Element types need not be default-constructible: scratch buffers are raw
// storage holding only what was moved into them. A comparator (or a move) that
// throws reaches the caller; the range then holds its elements in an
// unspecified order, some possibly moved-from.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../execution.hpp"
#include "../../thread_pool.hpp"
#include "../kernels.hpp"
#include "../sort_backend.hpp"

namespace dpar::detail::threads {

// ---- running parts on a pool, or inline --------------------------------------

// The pool to sort on, null where a job would run on one thread anyway (nested
// in a pool job, or a pool of one).
inline thread_pool* sorting_pool(thread_pool& pool) { return pool.concurrency() > 1 ? &pool : nullptr; }

inline std::size_t thread_count(const thread_pool* pool) { return pool ? pool->concurrency() : 1; }

// Calls body(part) for every part in [0, parts): inline without a pool, else on
// whichever of its threads are free, each claiming the next part.
template <class Body>
void for_each_part(thread_pool* pool, std::size_t parts, Body&& body) {
  if (pool == nullptr || parts <= 1) {
    for (std::size_t p = 0; p < parts; ++p) body(p);
    return;
  }
  std::atomic<std::size_t> next{0};
  pool->run_available([&](std::size_t, std::size_t) {
    for (std::size_t p; (p = next.fetch_add(1, std::memory_order_relaxed)) < parts;) body(p);
  });
}

// Parts for a pass that moves n elements once: one per thread, of at least
// 16384 elements (fewer cost more to fork than they save).
inline std::size_t parts_for(const thread_pool* pool, std::size_t n) {
  return std::max<std::size_t>(1, std::min(thread_count(pool), n / 16384));
}

// ---- scratch storage ---------------------------------------------------------

// Raw storage for n elements of T, filled part by part; the parts filled are
// destroyed with it (also when a later step threw).
template <class T>
class scratch {
 public:
  scratch(std::size_t n, std::size_t parts) : data_(std::allocator<T>{}.allocate(n)), n_(n), filled_(parts) {}
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
  ~scratch() {
    if constexpr (!std::is_trivially_destructible_v<T>)
      for (auto [lo, hi] : filled_) std::destroy(data_ + lo, data_ + hi);
    std::allocator<T>{}.deallocate(data_, n_);
  }

  T* data() const noexcept { return data_; }

  // Move-constructs elements [lo, hi) from source[lo, hi), as part `part`.
  template <class It>
  void fill(std::size_t part, It source, std::size_t lo, std::size_t hi) {
    std::uninitialized_move(source + static_cast<std::iter_difference_t<It>>(lo),
                            source + static_cast<std::iter_difference_t<It>>(hi), data_ + lo);
    filled_[part] = {lo, hi};
  }

  // Move-constructs element i from f(i) for i in [lo, hi), as part `part`.
  template <class F>
  void fill_with(std::size_t part, std::size_t lo, std::size_t hi, F&& f) {
    std::size_t i = lo;
    try {
      for (; i < hi; ++i) ::new (static_cast<void*>(data_ + i)) T(f(i));
    } catch (...) {
      std::destroy(data_ + lo, data_ + i);
      throw;
    }
    filled_[part] = {lo, hi};
  }

 private:
  T* data_;
  std::size_t n_;
  std::vector<std::pair<std::size_t, std::size_t>> filled_;  // per part; written by the thread filling it
};

// Calls body(i) for every i in [0, n), in parts_for(pool, n) parts.
template <class Body>
void for_each_index(thread_pool* pool, std::size_t n, Body&& body) {
  const std::size_t parts = parts_for(pool, n);
  for_each_part(pool, parts, [&](std::size_t p) {
    for (std::size_t i = even_split_begin(n, parts, p), end = even_split_begin(n, parts, p + 1); i < end; ++i) body(i);
  });
}

// Moves source[i] into target[i] for every i in [0, n).
template <class From, class To>
void move_all(thread_pool* pool, From source, To target, std::size_t n) {
  for_each_index(pool, n, [&](std::size_t i) { at(target, i) = std::move(at(source, i)); });
}

// ---- merge sort --------------------------------------------------------------

// Below this many elements per run, a merge round costs more than it saves.
inline constexpr std::size_t min_run = 4096;

// How many of A's elements are among the first d of the stable merge of A (m
// elements) and B (l elements): A's element goes first unless B's is less.
template <class A, class B, class Comp>
std::size_t merge_path(A a, std::size_t m, B b, std::size_t l, std::size_t d, Comp& comp) {
  std::size_t lo = d > l ? d - l : 0, hi = std::min(d, m);
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (!comp(at(b, d - 1 - mid), at(a, mid))) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Moves the stable merge of a[0, m) and b[0, l) into out.
template <class A, class B, class Out, class Comp>
void merge_into(A a, std::size_t m, B b, std::size_t l, Out out, Comp& comp) {
  std::size_t i = 0, j = 0, k = 0;
  while (i < m && j < l) {
    if (comp(at(b, j), at(a, i))) at(out, k++) = std::move(at(b, j++));
    else at(out, k++) = std::move(at(a, i++));
  }
  for (; i < m; ++i) at(out, k++) = std::move(at(a, i));
  for (; j < l; ++j) at(out, k++) = std::move(at(b, j));
}

// One round: the sorted runs of `from` merged pairwise into `to`. Run r spans
// [begin(r), begin(r + 1)); the pairs' outputs are cut into pieces of about
// `piece` elements, which threads claim in turn. Every piece's merge path is
// found before any piece moves elements out of `from` (a moved-from element
// may read differently).
template <class From, class To, class Begin, class Comp>
void merge_round(thread_pool* pool, From from, To to, std::size_t pairs, Begin& begin, std::size_t piece,
                 Comp& comp) {
  struct task {
    std::size_t pair, out_lo, out_hi;
    std::size_t left_taken;  // elements of the pair's left run before out_lo in the merge
  };
  std::vector<task> tasks;
  for (std::size_t p = 0; p < pairs; ++p) {
    const std::size_t lo = begin(2 * p), hi = begin(2 * p + 2);
    const std::size_t count = std::max<std::size_t>(1, (hi - lo) / piece);
    for (std::size_t k = 0; k < count; ++k)
      tasks.push_back({p, even_split_begin(hi - lo, count, k) + lo, even_split_begin(hi - lo, count, k + 1) + lo, 0});
  }
  auto left = [&](const task& job) { return from + static_cast<std::iter_difference_t<From>>(begin(2 * job.pair)); };
  auto right = [&](const task& job) {
    return from + static_cast<std::iter_difference_t<From>>(begin(2 * job.pair + 1));
  };
  auto left_size = [&](const task& job) { return begin(2 * job.pair + 1) - begin(2 * job.pair); };
  auto right_size = [&](const task& job) { return begin(2 * job.pair + 2) - begin(2 * job.pair + 1); };
  for_each_part(pool, tasks.size(), [&](std::size_t t) {
    task& job = tasks[t];
    job.left_taken = merge_path(left(job), left_size(job), right(job), right_size(job),
                                job.out_lo - begin(2 * job.pair), comp);
  });
  for_each_part(pool, tasks.size(), [&](std::size_t t) {
    const task& job = tasks[t];
    const bool last_of_pair = t + 1 == tasks.size() || tasks[t + 1].pair != job.pair;
    const std::size_t i0 = job.left_taken, i1 = last_of_pair ? left_size(job) : tasks[t + 1].left_taken;
    const std::size_t d0 = job.out_lo - begin(2 * job.pair), d1 = job.out_hi - begin(2 * job.pair);
    merge_into(left(job) + static_cast<std::iter_difference_t<From>>(i0), i1 - i0,
               right(job) + static_cast<std::iter_difference_t<From>>(d0 - i0), (d1 - i1) - (d0 - i0),
               to + static_cast<std::iter_difference_t<To>>(job.out_lo), comp);
  });
}

template <bool Stable, class It, class Comp>
void sort_sequential(It first, It last, Comp& comp) {
  if constexpr (Stable) std::stable_sort(first, last, std::ref(comp));
  else std::sort(first, last, std::ref(comp));
}

template <bool Stable, class It, class Comp>
void merge_sort(thread_pool* pool, It first, std::size_t n, Comp& comp) {
  const std::size_t threads = thread_count(pool);
  // An odd number of rounds, so that the last one merges into the range.
  std::size_t rounds = static_cast<std::size_t>(std::bit_width(threads - 1));
  if (rounds % 2 == 0) ++rounds;
  while (rounds > 1 && (n >> rounds) < min_run) rounds -= 2;
  if (threads == 1 || (n >> rounds) < min_run) {
    sort_sequential<Stable>(first, first + static_cast<std::iter_difference_t<It>>(n), comp);
    return;
  }
  const std::size_t runs = std::size_t{1} << rounds;
  using T = std::iter_value_t<It>;
  scratch<T> buffer(n, runs);
  T* const buf = buffer.data();
  for_each_part(pool, runs, [&](std::size_t r) {
    const std::size_t lo = even_split_begin(n, runs, r), hi = even_split_begin(n, runs, r + 1);
    buffer.fill(r, first, lo, hi);
    sort_sequential<Stable>(buf + lo, buf + hi, comp);
  });
  const std::size_t piece = std::max<std::size_t>(min_run, n / (4 * threads));
  for (std::size_t round = 0; round < rounds; ++round) {
    // after `round` rounds a run is 2^round base runs
    auto begin = [&](std::size_t r) { return even_split_begin(n, runs, std::min(runs, r << round)); };
    const std::size_t pairs = runs >> (round + 1);
    if (round % 2 == 0) merge_round(pool, buf, first, pairs, begin, piece, comp);
    else merge_round(pool, first, buf, pairs, begin, piece, comp);
  }
}

// ---- radix sort --------------------------------------------------------------

template <class T>
inline constexpr bool radix_key_type_v =
    (std::is_integral_v<T> && sizeof(T) <= 8) || std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class Comp, class T>
inline constexpr bool ascending_v = std::is_same_v<Comp, std::less<>> || std::is_same_v<Comp, std::less<T>> ||
                                    std::is_same_v<Comp, std::ranges::less>;
template <class Comp, class T>
inline constexpr bool descending_v = std::is_same_v<Comp, std::greater<>> || std::is_same_v<Comp, std::greater<T>> ||
                                     std::is_same_v<Comp, std::ranges::greater>;

// Whether keys of type T compared with Comp are radix-sorted: their order is
// that of an unsigned integer made from their bits.
template <class T, class Comp>
inline constexpr bool radix_sortable_v =
    radix_key_type_v<T> && (ascending_v<std::remove_cvref_t<Comp>, T> || descending_v<std::remove_cvref_t<Comp>, T>);

template <std::size_t Bytes>
using unsigned_of_size =
    std::conditional_t<Bytes == 1, std::uint8_t,
                       std::conditional_t<Bytes == 2, std::uint16_t,
                                          std::conditional_t<Bytes == 4, std::uint32_t, std::uint64_t>>>;

// The unsigned integer whose order is the order of x under Comp; equal under
// Comp, equal keys (-0.0 and +0.0 included).
template <class Comp, class T>
auto radix_key(T x) noexcept {
  using U = unsigned_of_size<sizeof(T)>;
  constexpr U sign = static_cast<U>(U{1} << (8 * sizeof(T) - 1));
  U u;
  if constexpr (std::is_floating_point_v<T>) {
    u = std::bit_cast<U>(x);
    if (u == sign) u = 0;  // -0.0 == +0.0
    u = (u & sign) ? static_cast<U>(~u) : static_cast<U>(u | sign);
  } else if constexpr (std::is_signed_v<T>) {
    u = static_cast<U>(static_cast<U>(x) ^ sign);
  } else {
    u = static_cast<U>(x);
  }
  if constexpr (descending_v<std::remove_cvref_t<Comp>, T>) u = static_cast<U>(~u);
  return u;
}

// Below this many elements radix sort's counting costs more than it saves.
inline constexpr std::size_t min_radix = 2048;
// Elements per part of a parallel radix pass.
inline constexpr std::size_t min_radix_part = 32768;

// Sorts data[0, n) stably by key(item), an unsigned integer, with a buffer of n
// items; the result ends in data.
template <class Item, class Key>
void radix_sort(thread_pool* pool, Item* data, Item* buffer, std::size_t n, Key key) {
  using U = decltype(key(data[0]));
  constexpr std::size_t digits = sizeof(U), radix = 256;
  using histogram = std::array<std::size_t, radix>;
  const std::size_t parts = std::max<std::size_t>(1, std::min(2 * thread_count(pool), n / min_radix_part));
  auto part_begin = [&](std::size_t p) { return even_split_begin(n, parts, p); };

  // Every digit's counts per part in one read, to find the digits all keys share.
  std::vector<std::array<histogram, digits>> counts(parts);
  for_each_part(pool, parts, [&](std::size_t p) {
    auto& c = counts[p];
    for (auto& h : c) h.fill(0);
    for (std::size_t i = part_begin(p), end = part_begin(p + 1); i < end; ++i) {
      const U k = key(data[i]);
      for (std::size_t d = 0; d < digits; ++d) ++c[d][(k >> (8 * d)) & 0xff];
    }
  });

  // A digit that all keys share needs no pass (the totals do not depend on the order).
  std::array<bool, digits> shared{};
  for (std::size_t d = 0; d < digits; ++d) {
    const std::size_t v = (key(data[0]) >> (8 * d)) & 0xff;
    std::size_t total = 0;
    for (std::size_t p = 0; p < parts; ++p) total += counts[p][d][v];
    shared[d] = total == n;
  }

  Item* from = data;
  Item* to = buffer;
  bool counted = true;  // counts[p][d] describe `from` as it is
  std::vector<histogram> offsets(parts);
  for (std::size_t d = 0; d < digits; ++d) {
    if (shared[d]) continue;
    const unsigned shift = static_cast<unsigned>(8 * d);
    if (!counted) {
      for_each_part(pool, parts, [&](std::size_t p) {
        auto& h = counts[p][d];
        h.fill(0);
        for (std::size_t i = part_begin(p), end = part_begin(p + 1); i < end; ++i) ++h[(key(from[i]) >> shift) & 0xff];
      });
    }
    // Part p writes digit v from offset: all smaller digits, then digit v of the parts before p.
    std::size_t offset = 0;
    for (std::size_t v = 0; v < radix; ++v)
      for (std::size_t p = 0; p < parts; ++p) {
        offsets[p][v] = offset;
        offset += counts[p][d][v];
      }
    for_each_part(pool, parts, [&](std::size_t p) {
      histogram next = offsets[p];
      for (std::size_t i = part_begin(p), end = part_begin(p + 1); i < end; ++i) {
        const Item& item = from[i];
        to[next[(key(item) >> shift) & 0xff]++] = item;
      }
    });
    std::swap(from, to);
    counted = false;
  }
  if (from != data) move_all(pool, from, data, n);
}

// ---- the algorithms ----------------------------------------------------------

template <bool Stable, class It, class Comp>
void sort(thread_pool* pool, It first, It last, Comp comp) {
  using T = std::iter_value_t<It>;
  const auto n = static_cast<std::size_t>(last - first);
  if constexpr (std::contiguous_iterator<It> && radix_sortable_v<T, Comp>) {
    if (n >= min_radix) {
      auto buffer = std::make_unique_for_overwrite<T[]>(n);
      radix_sort(pool, std::to_address(first), buffer.get(), n, [](T x) { return radix_key<Comp>(x); });
      return;
    }
  }
  if (n < 2) return;
  merge_sort<Stable>(pool, first, n, comp);
}

// Calls f(Index{}) with the narrowest of uint32_t and size_t that indexes n elements.
template <class F>
decltype(auto) with_index_type(std::size_t n, F&& f) {
  if (n <= std::numeric_limits<std::uint32_t>::max()) return f(std::uint32_t{});
  return f(std::size_t{});
}

// Moves the elements of first[0, n) so that element i is the one that was at
// first[index(i)] (index a permutation).
template <class It, class Index>
void permute(thread_pool* pool, It first, std::size_t n, Index&& index) {
  using T = std::iter_value_t<It>;
  const std::size_t parts = parts_for(pool, n);
  scratch<T> buffer(n, parts);
  for_each_part(pool, parts, [&](std::size_t p) {
    buffer.fill_with(p, even_split_begin(n, parts, p), even_split_begin(n, parts, p + 1),
                     [&](std::size_t i) -> T&& { return std::move(at(first, index(i))); });
  });
  move_all(pool, buffer.data(), first, n);
}

template <class Keys, class Values, class Comp>
void sort_by_key(thread_pool* pool, Keys keys, Keys keys_last, Values values, Comp comp) {
  using K = std::iter_value_t<Keys>;
  const auto n = static_cast<std::size_t>(keys_last - keys);
  if (n < 2) return;
  with_index_type(n, [&](auto index_type) {
    using Index = decltype(index_type);
    if constexpr (radix_sortable_v<K, Comp>) {
      if (n >= min_radix) {
        struct keyed {
          K key;
          Index index;
        };
        auto pairs = std::make_unique_for_overwrite<keyed[]>(n), buffer = std::make_unique_for_overwrite<keyed[]>(n);
        for_each_index(pool, n, [&](std::size_t i) { pairs[i] = {at(keys, i), static_cast<Index>(i)}; });
        radix_sort(pool, pairs.get(), buffer.get(), n, [](const keyed& x) { return radix_key<Comp>(x.key); });
        for_each_index(pool, n, [&](std::size_t i) { at(keys, i) = pairs[i].key; });
        permute(pool, values, n, [&](std::size_t i) { return pairs[i].index; });
        return;
      }
    }
    auto order = std::make_unique_for_overwrite<Index[]>(n);
    for_each_index(pool, n, [&](std::size_t i) { order[i] = static_cast<Index>(i); });
    auto by_key = [&](Index a, Index b) -> bool { return comp(at(keys, a), at(keys, b)); };
    merge_sort<true>(pool, order.get(), n, by_key);
    auto index = [&](std::size_t i) { return order[i]; };
    permute(pool, keys, n, index);
    permute(pool, values, n, index);
  });
}

}  // namespace dpar::detail::threads

namespace dpar::detail {

template <>
struct sorting<threads::backend> {
  template <bool Stable, class It, class Comp>
  static void sort(const parallel_policy& policy, It first, It last, Comp comp) {
    threads::sort<Stable>(threads::sorting_pool(policy.pool()), first, last, std::move(comp));
  }
  template <class Keys, class Values, class Comp>
  static void sort_by_key(const parallel_policy& policy, Keys keys_first, Keys keys_last, Values values_first,
                          Comp comp) {
    threads::sort_by_key(threads::sorting_pool(policy.pool()), keys_first, keys_last, values_first, std::move(comp));
  }
};

}  // namespace dpar::detail
