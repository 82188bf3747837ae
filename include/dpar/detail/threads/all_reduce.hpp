#pragma once
// K-buffer all-reduce for CPU replicas (dpar::seq and dpar::par): the element
// range is cut into one slice per pool thread and every thread runs the
// reduce-scatter / all-gather kernel on its slice of all K buffers.

#include <cstddef>
#include <functional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../execution.hpp"
#include "../../thread_pool.hpp"
#include "../../collective.hpp"
#include "../collective/checks.hpp"
#include "../collective/kernels.hpp"

namespace dpar::detail::collective {

// The std::span type that an element of the buffer range converts to.
template <class Buffers>
using buffer_span_t =
    std::span<typename decltype(std::span(std::declval<std::ranges::range_reference_t<Buffers>>()))::element_type>;

template <class Buffers>
concept buffer_range = std::ranges::input_range<Buffers> &&
                       requires { typename buffer_span_t<Buffers>; } &&
                       !std::is_const_v<typename buffer_span_t<Buffers>::element_type>;

// The buffers as spans, checked: equal lengths and no two overlapping (an
// element must belong to exactly one replica).
template <class Buffers>
std::vector<buffer_span_t<Buffers>> checked_spans(Buffers& buffers, const char* who) {
  static_assert(buffer_range<Buffers>,
                "dpar::all_reduce on CPU replicas takes a range of buffers that convert to std::span<T> of non-const T");
  using span_t = buffer_span_t<Buffers>;
  std::vector<span_t> spans;
  for (auto&& b : buffers) spans.push_back(span_t(std::span(b)));
  std::vector<std::size_t> lengths;
  for (const auto& s : spans) lengths.push_back(s.size());
  check_same_lengths<std::invalid_argument>(lengths, who, "buffer");
  check_disjoint<std::invalid_argument>(spans, who);
  return spans;
}

// Below this many bytes per thread (summed over the K buffers), forking costs
// more than it saves.
inline constexpr std::size_t min_slice_bytes = 128 * 1024;

// Calls slice(lo, hi) over [0, n), elements of T in each of K buffers: in
// one piece without a pool or where forking costs more than it saves, else
// in slices run on the pool's threads.
template <class T, class Slice>
void for_each_slice(thread_pool* pool, std::size_t k, std::size_t n, Slice&& slice) {
  const std::size_t parts = pool ? std::min(pool->concurrency(), k * n * sizeof(T) / min_slice_bytes) : 1;
  if (pool == nullptr || parts <= 1) {
    slice(std::size_t{0}, n);
    return;
  }
  slices<T> cut{n, parts};
  pool->run([&](std::size_t thread, std::size_t threads) {
    for (std::size_t s = thread; s < parts; s += threads) slice(cut.begin(s), cut.begin(s + 1));
  });
}

// All-reduce of the K spans on the threads of `pool` (none if null).
template <class T, class Op, class Finish>
void all_reduce_spans(thread_pool* pool, std::vector<std::span<T>>& spans, Op& op, Finish finish) {
  const std::size_t k = spans.size();
  if (k == 0) return;
  auto buffer = [&](std::size_t r) { return spans[r].data(); };
  for_each_slice<T>(pool, k, spans[0].size(),
                    [&](std::size_t lo, std::size_t hi) { all_reduce_slice<T>(k, buffer, lo, hi, op, finish); });
}

// all_reduce and all_reduce_mean for the CPU policies; `pool` is null for seq.
struct host_all_reduce {
  template <class Buffers, class Op>
  static void all_reduce(thread_pool* pool, Buffers& buffers, Op& op) {
    auto spans = checked_spans(buffers, "dpar::all_reduce");
    all_reduce_spans(pool, spans, op, keep{});
  }

  template <class Buffers>
  static void all_reduce_mean(thread_pool* pool, Buffers& buffers) {
    auto spans = checked_spans(buffers, "dpar::all_reduce_mean");
    std::plus<> op;
    all_reduce_spans(pool, spans, op, divide_by{spans.size()});
  }
};

}  // namespace dpar::detail::collective

namespace dpar::detail {

// The CPU policies. collectives (collective.hpp).
template <>
struct collective_backend<sequenced_policy> {
  template <class Buffers, class Op>
  static void all_reduce(const sequenced_policy&, Buffers& buffers, Op& op) {
    collective::host_all_reduce::all_reduce(nullptr, buffers, op);
  }
  template <class Buffers>
  static void all_reduce_mean(const sequenced_policy&, Buffers& buffers) {
    collective::host_all_reduce::all_reduce_mean(nullptr, buffers);
  }
};

template <>
struct collective_backend<parallel_policy> {
  template <class Buffers, class Op>
  static void all_reduce(const parallel_policy& policy, Buffers& buffers, Op& op) {
    collective::host_all_reduce::all_reduce(&policy.pool(), buffers, op);
  }
  template <class Buffers>
  static void all_reduce_mean(const parallel_policy& policy, Buffers& buffers) {
    collective::host_all_reduce::all_reduce_mean(&policy.pool(), buffers);
  }
};

}  // namespace dpar::detail
