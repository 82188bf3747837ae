#pragma once
// CPU-thread backend: each algorithm cuts its range into a few contiguous
// blocks per pool thread, which threads claim (each its own run of blocks
// first) and run the sequential kernel on, and combines the blocks' results
// in block order, so non-commutative ops give the sequential answer.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "../../execution.hpp"
#include "../backend_concept.hpp"
#include "../kernels.hpp"
#include "../../thread_pool.hpp"

namespace dpar::detail::threads {

// Below this many elements per block, forking costs more than it saves. A
// fork-join costs a few microseconds, in which a vectorized loop over
// arithmetic values gets through tens of thousands of elements; elements of
// other types (or user functions on them) are assumed to cost more.
inline constexpr std::size_t min_block = 2048;
inline constexpr std::size_t min_block_arithmetic = 16384;

template <class... T>
inline constexpr std::size_t min_block_for =
    (std::is_arithmetic_v<std::remove_cvref_t<T>> && ...) ? min_block_arithmetic : min_block;

// Reductions that the kernels vectorize take the larger blocks.
template <class Op, class T>
inline constexpr std::size_t smallest_fold = reorderable_v<Op, T> ? min_block_arithmetic : min_block;

// Blocks per thread: threads claim blocks as they come, so a thread that the OS
// delays (or that started late) leaves its share to the others.
inline constexpr std::size_t blocks_per_thread = 4;

// Where the count alone would leave threads idle, the first elements run as
// probe blocks ending at 1, 16, 256 and 4096 elements on the calling thread,
// timed, until they took probe_time; the rest is shared among the threads if
// it is estimated to take fork_worth or more (a fork-join costs a few
// microseconds), else it runs on the calling thread too. The ends are
// multiples of 16, so the blocks after the first two start where vector
// loads of contiguous data stay aligned (misaligned, a dot product of 16384
// floats took 2.2 us on dpar::par against 0.97 on seq).
inline constexpr std::size_t max_probes = 4;
inline constexpr std::chrono::nanoseconds probe_time{1000}, fork_worth{20000};

// [0, n) cut into `count` contiguous blocks: the first `probes` are probe
// blocks, the others' sizes differ by at most one.
struct blocks {
  std::size_t n;
  std::size_t count;
  std::size_t probes = 0;
  static constexpr std::size_t probe_begin(std::size_t b) noexcept { return b == 0 ? 0 : std::size_t{1} << (4 * (b - 1)); }
  std::size_t begin(std::size_t b) const noexcept {
    const std::size_t head = std::min(n, probe_begin(std::min(b, probes)));
    if (b <= probes) return head;
    return head + even_split_begin(n - head, count - probes, b - probes);
  }
};

// How a call may cut its range: blocks of at least `smallest` elements by
// count; `grain` elements per block if the user gave one (parallel_policy::
// with_grain); `timed`: whether elements may be costly (they involve user
// code), so that few of them may be worth sharing.
struct sizing {
  std::size_t smallest = min_block;
  std::size_t grain = 0;
  bool timed = true;
};

inline blocks split(const thread_pool& pool, std::size_t n, std::size_t smallest = min_block) {
  std::size_t threads = pool.concurrency();
  std::size_t count = threads == 1 ? 1 : std::min(threads * blocks_per_thread, n / smallest);
  return {n, count == 0 ? 1 : count};
}

// At most how many blocks for_each_block below cuts [0, n) into.
inline std::size_t most_blocks(const thread_pool& pool, std::size_t n, const sizing& size) {
  if (size.grain > 0) return std::max<std::size_t>(1, n / size.grain);
  return std::max(split(pool, n, size.smallest).count, max_probes + pool.concurrency() * blocks_per_thread);
}

// Whether a call runs as one block on the calling thread without timing (no
// partial results to keep).
inline bool one_untimed_block(const thread_pool& pool, std::size_t n, const sizing& size) {
  return pool.concurrency() == 1 || (size.grain == 0 && !size.timed && split(pool, n, size.smallest).count == 1);
}

// Calls body(thread, block, lo, hi) for blocks from..cut.count-1, on
// whichever pool threads are free (the caller always among them, as thread
// 0; `thread` below pool.size()). The blocks form one run of consecutive
// blocks per thread; thread t claims the blocks of run t first, then what is
// left of the next runs, from counters. So calls over the same range give
// each thread the same data as the last call did, which its core's cache may
// still hold (transform of 2^18 floats took 31 us when any thread claimed any
// block, 16 us in static halves; bench/RESULTS.md), and a thread that the OS
// delays still leaves its blocks to the others.
template <class Body>
void for_each_block_on_threads(thread_pool& pool, const blocks& cut, Body&& body, std::size_t from = 0) {
  const std::size_t count = cut.count - from;
  if (count == 1) {
    body(std::size_t{0}, from, cut.begin(from), cut.n);
    return;
  }
  struct alignas(64) run_counter {  // a cache line each: the threads claim apart
    std::atomic<std::size_t> next;
  };
  const std::size_t runs = std::min(pool.concurrency(), count);
  std::array<run_counter, 8> few;
  std::unique_ptr<run_counter[]> many;
  run_counter* const run = runs <= few.size() ? few.data() : (many = std::make_unique<run_counter[]>(runs)).get();
  auto run_begin = [&](std::size_t r) { return from + even_split_begin(count, runs, r); };
  for (std::size_t r = 0; r < runs; ++r) run[r].next.store(run_begin(r), std::memory_order_relaxed);
  pool.run_available([&](std::size_t thread, std::size_t) {
    for (std::size_t i = 0; i < runs; ++i) {
      const std::size_t r = (thread + i) % runs, end = run_begin(r + 1);
      for (std::size_t b; (b = run[r].next.fetch_add(1, std::memory_order_relaxed)) < end;)
        body(thread, b, cut.begin(b), cut.begin(b + 1));
    }
  });
}

// The same, for a body(block, lo, hi) that does not ask which thread runs it.
template <class Body>
void for_each_block(thread_pool& pool, const blocks& cut, Body&& body, std::size_t from = 0) {
  for_each_block_on_threads(
      pool, cut, [&](std::size_t, std::size_t b, std::size_t lo, std::size_t hi) { body(b, lo, hi); }, from);
}

// Cuts [0, n) as `size` says (by the policy's grain, by count, or by timing
// probe blocks), calls body(block, lo, hi) for every block, and returns the cut.
template <class Body>
blocks for_each_block(thread_pool& pool, std::size_t n, const sizing& size, Body&& body) {
  const std::size_t threads = pool.concurrency();
  blocks cut = threads == 1      ? blocks{n, 1}
               : size.grain > 0 ? blocks{n, most_blocks(pool, n, size)}
                                : split(pool, n, size.smallest);
  if (cut.count >= threads || size.grain > 0 || !size.timed || n < 2) {
    // Once the count alone is worth a fork, elements that may be costly get
    // the full number of claimed blocks: a few costly blocks cannot balance
    // (2^24 floats' min_element folds 4096 chunks of 16 KB: two blocks).
    if (threads > 1 && size.timed && size.grain == 0 && cut.count >= threads)
      cut.count = std::min(n, threads * blocks_per_thread);
    for_each_block(pool, cut, body);
    return cut;
  }
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto now = start;
  std::size_t done = 0, probes = 0;
  double per_element = 0;  // from the last probe, the largest: the least clock overhead per element
  while (done < n && probes < max_probes && now - start < probe_time) {
    const std::size_t end = std::min(n, blocks::probe_begin(probes + 1));
    body(probes++, done, end);
    const auto before = now;
    now = clock::now();
    per_element = static_cast<double>((now - before).count()) / static_cast<double>(end - done);
    done = end;
  }
  if (done == n) return {n, probes, probes};
  const double rest_time = per_element * static_cast<double>(n - done);
  const bool share = rest_time >= static_cast<double>(std::chrono::duration_cast<clock::duration>(fork_worth).count());
  cut = {n, probes + (share ? std::min(n - done, threads * blocks_per_thread) : 1), probes};
  for_each_block(pool, cut, body, probes);
  return cut;
}

// op(init, elem(0), ..., elem(cut.n - 1)) with one partial result per block
// of `cut`, combined in block order; run_blocks(body) calls body(block, lo,
// hi) for every block, on whatever threads it likes.
template <class T, class Op, class Elem, class RunBlocks>
T fold_blocks(const blocks& cut, T init, Op& op, Elem& elem, RunBlocks&& run_blocks) {
  if (cut.count == 1) return detail::fold(std::move(init), 0, cut.n, op, elem);
  std::vector<std::optional<T>> partial(cut.count);
  run_blocks([&](std::size_t b, std::size_t lo, std::size_t hi) { partial[b].emplace(fold_nonempty<T>(lo, hi, op, elem)); });
  for (auto& p : partial) init = op(std::move(init), std::move(*p));
  return init;
}

// op(init, elem(0), ..., elem(n-1)) over the blocks `size` gives.
template <class T, class Op, class Elem>
T parallel_fold(thread_pool& pool, const sizing& size, T init, std::size_t n, Op& op, Elem& elem) {
  if (n == 0) return init;
  if (one_untimed_block(pool, n, size)) return detail::fold(std::move(init), 0, n, op, elem);
  std::vector<std::optional<T>> partial(most_blocks(pool, n, size));
  const blocks cut = for_each_block(pool, n, size, [&](std::size_t b, std::size_t lo, std::size_t hi) {
    partial[b].emplace(fold_nonempty<T>(lo, hi, op, elem));
  });
  for (std::size_t b = 0; b < cut.count; ++b) init = op(std::move(init), std::move(*partial[b]));
  return init;
}

// The sizing of a call on `policy` whose blocks are at least `smallest`.
inline sizing size_for(const parallel_policy& policy, std::size_t smallest, bool timed = true) {
  return {smallest, policy.grain(), timed};
}

// Whether a transform of n elements from contiguous memory (In...) into
// d_first writes with non-temporal stores (kernels.hpp, stream_range):
// arithmetic outputs in contiguous memory, more of them than the caches keep.
// (A concept, so that iterators with only what the backends use, such as the
// derived algorithms' sinks, stop at the first test they fail.)
template <class Out, class... In>
concept streaming_transform = (std::contiguous_iterator<In> && ...) && std::contiguous_iterator<Out> &&
                              std::is_same_v<std::iter_reference_t<Out>, std::iter_value_t<Out>&> &&
                              streamable_v<std::iter_value_t<Out>>;

template <class Out, class... In>
bool streams_output(std::size_t n) {
  if constexpr (streaming_transform<Out, In...>)
    return n * sizeof(std::iter_value_t<Out>) >= streaming_store_bytes;
  else
    return false;
}

struct backend {
  template <class In, class Out, class F>
  static Out transform(const parallel_policy& policy, In first, In last, Out d_first, F f) {
    const auto n = static_cast<std::size_t>(last - first);
    const sizing size =
        size_for(policy, min_block_for<std::iter_reference_t<In>, std::invoke_result_t<F&, std::iter_reference_t<In>>>);
    if constexpr (streaming_transform<Out, In>) {
      if (streams_output<Out, In>(n)) {  // the constexpr test keeps stream_range from other types
        auto value = [&](std::size_t i) { return f(at(first, i)); };
        for_each_block(policy.pool(), n, size, [&](std::size_t, std::size_t lo, std::size_t hi) {
          stream_range(std::to_address(d_first), lo, hi, value);
        });
        return d_first + (last - first);
      }
    }
    for_each_block(policy.pool(), n, size,
                   [&](std::size_t, std::size_t lo, std::size_t hi) { transform_range(first, d_first, lo, hi, f); });
    return d_first + (last - first);
  }

  template <class In1, class In2, class Out, class F>
  static Out transform(const parallel_policy& policy, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
    const auto n = static_cast<std::size_t>(last1 - first1);
    const sizing size = size_for(
        policy, min_block_for<std::iter_reference_t<In1>, std::iter_reference_t<In2>,
                              std::invoke_result_t<F&, std::iter_reference_t<In1>, std::iter_reference_t<In2>>>);
    if constexpr (streaming_transform<Out, In1, In2>) {
      if (streams_output<Out, In1, In2>(n)) {
        auto value = [&](std::size_t i) { return f(at(first1, i), at(first2, i)); };
        for_each_block(policy.pool(), n, size, [&](std::size_t, std::size_t lo, std::size_t hi) {
          stream_range(std::to_address(d_first), lo, hi, value);
        });
        return d_first + (last1 - first1);
      }
    }
    for_each_block(policy.pool(), n, size, [&](std::size_t, std::size_t lo, std::size_t hi) {
      transform_range(first1, first2, d_first, lo, hi, f);
    });
    return d_first + (last1 - first1);
  }

  template <class It, class F>
  static void for_each(const parallel_policy& policy, It first, It last, F f) {
    for_each_block(policy.pool(), static_cast<std::size_t>(last - first), size_for(policy, min_block),
                   [&](std::size_t, std::size_t lo, std::size_t hi) {
                     for (std::size_t i = lo; i < hi; ++i) f(at(first, i));
                   });
  }

  template <class It, class T, class R, class U>
  static T transform_reduce(const parallel_policy& policy, It first, It last, T init, R reduce, U transform) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first, i)); };
    return parallel_fold(policy.pool(), size_for(policy, smallest_fold<R, T>), std::move(init),
                         static_cast<std::size_t>(last - first), reduce, elem);
  }

  template <class It1, class It2, class T, class R, class U>
  static T transform_reduce(const parallel_policy& policy, It1 first1, It1 last1, It2 first2, T init, R reduce,
                            U transform) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first1, i), at(first2, i)); };
    return parallel_fold(policy.pool(), size_for(policy, smallest_fold<R, T>), std::move(init),
                         static_cast<std::size_t>(last1 - first1), reduce, elem);
  }

  template <class It, class T, class Op>
  static T reduce(const parallel_policy& policy, It first, It last, T init, Op op) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };
    // Elements are loads; a known op on arithmetic values is cheap: no timing.
    return parallel_fold(policy.pool(), size_for(policy, smallest_fold<Op, T>, !reorderable_v<Op, T>), std::move(init),
                         static_cast<std::size_t>(last - first), op, elem);
  }

  template <class V, class In, class Out, class Op>
  static Out inclusive_scan(const parallel_policy& policy, In first, In last, Out d_first, Op op,
                            std::optional<V> init) {
    auto n = static_cast<std::size_t>(last - first);
    if constexpr (reorderable_v<Op, V>)
      single_pass_scan<true>(policy.pool(), first, n, d_first, op, std::move(init));
    else
      scan<true>(policy.pool(), size_for(policy, min_block, false), first, n, d_first, op, std::move(init));
    return d_first + (last - first);
  }

  template <class In, class Out, class T, class Op>
  static Out exclusive_scan(const parallel_policy& policy, In first, In last, Out d_first, T init, Op op) {
    auto n = static_cast<std::size_t>(last - first);
    if constexpr (reorderable_v<Op, T>)
      single_pass_scan<false>(policy.pool(), first, n, d_first, op, std::optional<T>(std::move(init)));
    else
      scan<false>(policy.pool(), size_for(policy, min_block, false), first, n, d_first, op,
                  std::optional<T>(std::move(init)));
    return d_first + (last - first);
  }

 private:
  // Scan of cheap arithmetic values in one pass over memory and one fork-join
  // (a CPU take on the decoupled look-back of Merrill and Garland). Threads
  // claim cache-sized tiles in order; each folds its tile (which brings it into
  // cache) and publishes the tile's total, then walks back over the preceding
  // tiles, combining their totals until it meets one whose inclusive prefix is
  // known, publishes its own inclusive prefix, and scans the tile from cache.
  // Memory traffic is one read and one write per element, against two reads
  // and a write for reduce-then-scan.
  template <bool Inclusive, class V, class In, class Out, class Op>
  static void single_pass_scan(thread_pool& pool, In first, std::size_t n, Out d_first, Op& op,
                               std::optional<V> init) {
    if (n == 0) return;
    const std::size_t lo = start_from_first(first, d_first, 0, init);
    const std::size_t threads = pool.concurrency();
    if (threads == 1 || n < 2 * min_block_arithmetic) {
      interleaved_scan_range<Inclusive, V>(first, d_first, lo, n, op, *init);
      return;
    }
    // About 8 tiles per thread to balance, of 4K to 32K elements (in L2).
    const std::size_t tile = std::clamp<std::size_t>((n / (8 * threads) + 63) / 64 * 64, 4096, 32768);
    const std::size_t tiles = (n - lo + tile - 1) / tile;
    enum : int { nothing = 0, total_known = 1, prefix_known = 2 };
    struct alignas(64) tile_state {
      std::atomic<int> flag{nothing};
      V total{};
      V inclusive{};
    };
    std::unique_ptr<tile_state[]> state(new tile_state[tiles]);
    std::atomic<std::size_t> next_tile{0};
    std::atomic<bool> failed{false};
    const V carry0 = *init;
    auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };

    pool.run_available([&](std::size_t, std::size_t) {
      try {
        for (std::size_t t; (t = next_tile.fetch_add(1, std::memory_order_relaxed)) < tiles;) {
          const std::size_t begin = lo + t * tile, end = std::min(n, begin + tile);
          const V total = fold_nonempty<V>(begin, end, op, elem);
          V carry = carry0;
          if (t > 0) {
            state[t].total = total;
            state[t].flag.store(total_known, std::memory_order_release);
            // Tiles before t are all claimed, so each publishes its total soon.
            std::optional<V> behind;  // combination of the tiles between j and t
            for (std::size_t j = t; j-- > 0;) {
              int flag;
              for (int spins = 0; (flag = state[j].flag.load(std::memory_order_acquire)) == nothing; ++spins) {
                if (failed.load(std::memory_order_relaxed)) return;  // its owner threw
                if (spins < 64) cpu_relax();
                else std::this_thread::yield();
              }
              const V& known = flag == prefix_known ? state[j].inclusive : state[j].total;
              behind = behind ? static_cast<V>(op(known, *behind)) : known;
              if (flag == prefix_known) break;
            }
            carry = *behind;
          }
          state[t].inclusive = static_cast<V>(op(carry, total));
          state[t].flag.store(prefix_known, std::memory_order_release);
          interleaved_scan_range<Inclusive, V>(first, d_first, begin, end, op, carry);
        }
      } catch (...) {
        failed.store(true, std::memory_order_relaxed);
        throw;
      }
    });
  }

  // Reduce-then-scan, for any associative op and value type: the blocks' totals, then each block's carry in block
  // order, then every block scans with its carry on the left, op(carry, x). Scans are cut by count (or grain),
  // not timed: one block needs no totals pass, and an op is rarely costly.
  template <bool Inclusive, class V, class In, class Out, class Op>
  static void scan(thread_pool& pool, const sizing& size, In first, std::size_t n, Out d_first, Op& op,
                   std::optional<V> init) {
    if (n == 0) return;
    if (one_untimed_block(pool, n, size)) {
      scan_block<Inclusive, V>(first, d_first, 0, n, op, std::move(init));
      return;
    }
    auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };
    // carry[0] is the init; block b's total lands in carry[b + 1]
    std::vector<std::optional<V>> carry(most_blocks(pool, n, size) + 1);
    carry[0] = std::move(init);
    const blocks cut = for_each_block(pool, n, size, [&](std::size_t b, std::size_t lo, std::size_t hi) {
      carry[b + 1].emplace(fold_nonempty<V>(lo, hi, op, elem));
    });
    carry.resize(cut.count);  // the last block's total is not needed
    totals_to_carries(carry, op);
    for_each_block(pool, cut, [&](std::size_t b, std::size_t lo, std::size_t hi) {
      scan_block<Inclusive, V>(first, d_first, lo, hi, op, std::move(carry[b]));
    });
  }

  template <bool Inclusive, class V, class In, class Out, class Op>
  static void scan_block(In first, Out d_first, std::size_t lo, std::size_t hi, Op& op, std::optional<V> carry) {
    if constexpr (Inclusive)
      inclusive_scan_range<V>(first, d_first, lo, hi, op, std::move(carry));
    else
      exclusive_scan_range<V>(first, d_first, lo, hi, op, std::move(*carry));
  }
};

static_assert(backend_for<backend, parallel_policy>);

}  // namespace dpar::detail::threads
