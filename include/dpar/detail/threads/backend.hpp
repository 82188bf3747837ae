#pragma once
// CPU-thread backend: each algorithm cuts its range into one contiguous block
// per pool thread, runs the sequential kernel on every block, and combines the
// blocks' results in block order, so non-commutative ops give the sequential
// answer.

#include <iterator>
#include <optional>
#include <vector>

#include "../../execution.hpp"
#include "../kernels.hpp"

namespace dpar::detail::threads {

// Below this many elements per block, forking costs more than it saves.
inline constexpr std::size_t min_block = 2048;

// [0, n) cut into `count` contiguous blocks whose sizes differ by at most one.
struct blocks {
  std::size_t n;
  std::size_t count;
  std::size_t begin(std::size_t b) const noexcept { return b * (n / count) + std::min(b, n % count); }
};

inline blocks split(const thread_pool& pool, std::size_t n) {
  std::size_t count = std::min(pool.concurrency(), n / min_block);
  return {n, count == 0 ? 1 : count};
}

// Calls body(block, lo, hi) for every block, concurrently on the pool.
template <class Body>
void for_each_block(thread_pool& pool, const blocks& cut, Body&& body) {
  if (cut.count == 1) {
    body(std::size_t{0}, std::size_t{0}, cut.n);
    return;
  }
  pool.run([&](std::size_t thread, std::size_t threads) {
    for (std::size_t b = thread; b < cut.count; b += threads) body(b, cut.begin(b), cut.begin(b + 1));
  });
}

// op(init, elem(0), ..., elem(n-1)) with one partial result per block.
template <class T, class Op, class Elem>
T parallel_fold(thread_pool& pool, T init, std::size_t n, Op& op, Elem& elem) {
  blocks cut = split(pool, n);
  if (cut.count == 1) return detail::fold(std::move(init), 0, n, op, elem);
  std::vector<std::optional<T>> partial(cut.count);
  for_each_block(pool, cut, [&](std::size_t b, std::size_t lo, std::size_t hi) {
    partial[b].emplace(fold_nonempty<T>(lo, hi, op, elem));
  });
  for (auto& p : partial) init = op(std::move(init), std::move(*p));
  return init;
}

struct backend {
  template <class In, class Out, class F>
  static Out transform(const parallel_policy& policy, In first, In last, Out d_first, F f) {
    thread_pool& pool = policy.pool();
    for_each_block(pool, split(pool, static_cast<std::size_t>(last - first)),
                   [&](std::size_t, std::size_t lo, std::size_t hi) { transform_range(first, d_first, lo, hi, f); });
    return d_first + (last - first);
  }

  template <class In1, class In2, class Out, class F>
  static Out transform(const parallel_policy& policy, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
    thread_pool& pool = policy.pool();
    for_each_block(pool, split(pool, static_cast<std::size_t>(last1 - first1)),
                   [&](std::size_t, std::size_t lo, std::size_t hi) {
                     transform_range(first1, first2, d_first, lo, hi, f);
                   });
    return d_first + (last1 - first1);
  }

  template <class It, class F>
  static void for_each(const parallel_policy& policy, It first, It last, F f) {
    thread_pool& pool = policy.pool();
    for_each_block(pool, split(pool, static_cast<std::size_t>(last - first)),
                   [&](std::size_t, std::size_t lo, std::size_t hi) {
                     for (std::size_t i = lo; i < hi; ++i) f(at(first, i));
                   });
  }

  template <class It, class T, class R, class U>
  static T transform_reduce(const parallel_policy& policy, It first, It last, T init, R reduce, U transform) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first, i)); };
    return parallel_fold(policy.pool(), std::move(init), static_cast<std::size_t>(last - first), reduce, elem);
  }

  template <class It1, class It2, class T, class R, class U>
  static T transform_reduce(const parallel_policy& policy, It1 first1, It1 last1, It2 first2, T init, R reduce,
                            U transform) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first1, i), at(first2, i)); };
    return parallel_fold(policy.pool(), std::move(init), static_cast<std::size_t>(last1 - first1), reduce, elem);
  }

  template <class It, class T, class Op>
  static T reduce(const parallel_policy& policy, It first, It last, T init, Op op) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };
    return parallel_fold(policy.pool(), std::move(init), static_cast<std::size_t>(last - first), op, elem);
  }

  template <class V, class In, class Out, class Op>
  static Out inclusive_scan(const parallel_policy& policy, In first, In last, Out d_first, Op op,
                            std::optional<V> init) {
    scan<true>(policy.pool(), first, static_cast<std::size_t>(last - first), d_first, op, std::move(init));
    return d_first + (last - first);
  }

  template <class In, class Out, class T, class Op>
  static Out exclusive_scan(const parallel_policy& policy, In first, In last, Out d_first, T init, Op op) {
    scan<false>(policy.pool(), first, static_cast<std::size_t>(last - first), d_first, op,
                std::optional<T>(std::move(init)));
    return d_first + (last - first);
  }

 private:
  // Reduce-then-scan: the blocks' totals, then each block's carry in block
  // order, then every block scans with its carry on the left, op(carry, x).
  template <bool Inclusive, class V, class In, class Out, class Op>
  static void scan(thread_pool& pool, In first, std::size_t n, Out d_first, Op& op, std::optional<V> init) {
    blocks cut = split(pool, n);
    std::vector<std::optional<V>> carry(cut.count);
    carry[0] = std::move(init);
    if (cut.count > 1) {
      auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };
      // total of block b lands in carry[b + 1]; the last block's total is not needed
      for_each_block(pool, cut, [&](std::size_t b, std::size_t lo, std::size_t hi) {
        if (b + 1 < cut.count) carry[b + 1].emplace(fold_nonempty<V>(lo, hi, op, elem));
      });
      for (std::size_t b = 1; b < cut.count; ++b)
        if (carry[b - 1]) carry[b] = op(*carry[b - 1], std::move(*carry[b]));
    }
    for_each_block(pool, cut, [&](std::size_t b, std::size_t lo, std::size_t hi) {
      if constexpr (Inclusive)
        inclusive_scan_range<V>(first, d_first, lo, hi, op, std::move(carry[b]));
      else
        exclusive_scan_range<V>(first, d_first, lo, hi, op, std::move(*carry[b]));
    });
  }
};

}  // namespace dpar::detail::threads
