#pragma once
// Building blocks of the algorithms derived from a backend's primitives
// (transform, for_each, transform_reduce, the scans): iterators over indices,
// compaction by counts, the first index that satisfies a test, and the
// segment heads of by-key algorithms. The front doors in dpar/algorithm/
// combine them; every backend whose participants are known (participants.hpp)
// runs them.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <numeric>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "../execution.hpp"
#include "../functional.hpp"
#include "participants.hpp"

namespace dpar::detail::derived {

// it[i] == f(i): an input range computed from indices, [0, n) as
// index_iterator(f) .. index_iterator(f) + n.
template <class F>
class index_iterator {
 public:
  using difference_type = std::ptrdiff_t;
  using reference = std::invoke_result_t<const F&, std::size_t>;
  using value_type = std::remove_cvref_t<reference>;

  explicit index_iterator(const F& f, std::size_t pos = 0) : f_(&f), pos_(pos) {}
  reference operator*() const { return (*f_)(pos_); }
  reference operator[](difference_type n) const { return (*f_)(pos_ + static_cast<std::size_t>(n)); }
  index_iterator& operator+=(difference_type n) {
    pos_ += static_cast<std::size_t>(n);
    return *this;
  }
  index_iterator& operator++() { return *this += 1; }
  friend index_iterator operator+(index_iterator it, difference_type n) { return it += n; }
  friend difference_type operator-(const index_iterator& a, const index_iterator& b) {
    return static_cast<difference_type>(a.pos_ - b.pos_);
  }
  friend bool operator==(const index_iterator& a, const index_iterator& b) { return a.pos_ == b.pos_; }

 private:
  const F* f_;
  std::size_t pos_;
};

// it[i] = v calls sink(i, v): an output that sees where each value goes.
template <class Sink>
class sink_iterator {
 public:
  using difference_type = std::ptrdiff_t;
  struct slot {
    const Sink* sink;
    std::size_t pos;
    template <class V>
    const slot& operator=(V&& v) const {
      (*sink)(pos, std::forward<V>(v));
      return *this;
    }
  };

  explicit sink_iterator(const Sink& sink, std::size_t pos = 0) : sink_(&sink), pos_(pos) {}
  slot operator*() const { return {sink_, pos_}; }
  slot operator[](difference_type n) const { return {sink_, pos_ + static_cast<std::size_t>(n)}; }
  sink_iterator& operator+=(difference_type n) {
    pos_ += static_cast<std::size_t>(n);
    return *this;
  }
  friend sink_iterator operator+(sink_iterator it, difference_type n) { return it += n; }

 private:
  const Sink* sink_;
  std::size_t pos_;
};

// Runs body(i) for every i in [0, n) on policy p (element-wise: local to each participant).
template <class P, class Body>
void for_each_index(const P& p, std::size_t n, const Body& body) {
  auto index = [](std::size_t i) { return i; };
  index_iterator first(index);
  backend_of<P>::for_each(p, first, first + static_cast<std::ptrdiff_t>(n), [&](std::size_t i) { body(i); });
}

// out[i] = f(i) for every i in [0, n) on policy p.
template <class P, class F, class Out>
Out tabulate(const P& p, std::size_t n, const F& f, Out out) {
  index_iterator first(f);
  return backend_of<P>::transform(p, first, first + static_cast<std::ptrdiff_t>(n), out, std::identity{});
}

// op(...op(init, f(0))..., f(n-1)) on policy p: global across participants.
template <class P, class T, class Op, class F>
T fold_indices(const P& p, std::size_t n, T init, Op op, const F& f) {
  index_iterator first(f);
  // by value: std::identity would return a reference to the temporary f(i)
  auto value = [](auto v) { return v; };
  return backend_of<P>::transform_reduce(p, first, first + static_cast<std::ptrdiff_t>(n), std::move(init),
                                         std::move(op), value);
}

// The first i in [0, n) with test(i), or n; on one participant's elements.
template <class L, class Test>
std::size_t first_index(const L& local, std::size_t n, const Test& test) {
  return fold_indices(local, n, n, minimum<>{}, [&](std::size_t i) { return test(i) ? i : n; });
}

// The position of the first i that test(i) holds for over all participants,
// on the participant that holds it; none elsewhere, or if there is none.
template <class P, class Test>
std::optional<std::size_t> first_index_here(const P& p, std::size_t n, const Test& test) {
  using parts = participants_of<P>;
  auto local = [&]() -> std::optional<std::size_t> {
    std::size_t i = first_index(parts::local(p), n, test);
    if (i == n) return std::nullopt;
    return i;
  };
  return parts::template best_here<std::size_t>(p, local, [](std::size_t, std::size_t) { return false; });
}

// An element's position and a copy of it (what crosses participants).
template <class V>
struct indexed {
  std::size_t index;
  V value;
};

// The position of the element that wins over all others under `pick_later`
// (pick_later(a, b): whether element b, later in sequence than a, replaces a),
// on the participant that holds it; none elsewhere or for an empty sequence.
template <class P, class It, class PickLater>
std::optional<std::size_t> select_element_here(const P& p, It first, std::size_t n, PickLater pick_later) {
  using parts = participants_of<P>;
  using candidate = indexed<std::iter_value_t<It>>;
  auto local = [&]() -> std::optional<candidate> {
    if (n == 0) return std::nullopt;
    auto pick = [&](std::size_t a, std::size_t b) { return pick_later(first[a], first[b]) ? b : a; };
    std::size_t i = fold_indices(parts::local(p), n - 1, std::size_t{0}, pick, [](std::size_t j) { return j + 1; });
    return candidate{i, first[i]};
  };
  auto later_wins = [&](const candidate& later, const candidate& earlier) {
    return pick_later(earlier.value, later.value);
  };
  auto best = parts::template best_here<candidate>(p, local, later_wins);
  if (!best) return std::nullopt;
  return best->index;
}

// Compaction on one participant's elements: evaluates keep(i) once for every
// i in [0, n), then calls emit(i, kept_before, kept, total_kept) for every i
// (kept_before: how many j < i were kept), and returns how many were kept.
// Pieces of the range count their kept elements in parallel, a scan of the
// counts gives each piece its start, and the pieces emit in parallel.
template <class L, class Keep, class Emit>
std::size_t compact(const L& local, std::size_t n, const Keep& keep, const Emit& emit) {
  if (n == 0) return 0;
  // Enough pieces for many threads, each large enough to amortize its count.
  const std::size_t piece = std::clamp<std::size_t>(n / 64, 1, 4096);
  const std::size_t pieces = (n + piece - 1) / piece;
  std::unique_ptr<unsigned char[]> kept(new unsigned char[n]);
  std::vector<std::size_t> start(pieces + 1);
  tabulate(
      local, pieces,
      [&](std::size_t c) {
        std::size_t count = 0;
        for (std::size_t i = c * piece, end = std::min(n, i + piece); i < end; ++i) {
          kept[i] = keep(i) ? 1 : 0;
          count += kept[i];
        }
        return count;
      },
      start.begin() + 1);
  std::inclusive_scan(start.begin(), start.end(), start.begin());
  const std::size_t total = start[pieces];
  for_each_index(local, pieces, [&](std::size_t c) {
    std::size_t before = start[c];
    for (std::size_t i = c * piece, end = std::min(n, i + piece); i < end; ++i) {
      emit(i, before, kept[i] != 0, total);
      before += kept[i];
    }
  });
  return total;
}

// Moves first[i] for kept i to the front, in order, others after them in
// order if `keep_rest` (a stable partition), on one participant's elements;
// returns how many were kept. Through a buffer: pieces write where others read.
template <class L, class It, class Keep>
std::size_t compact_in_place(const L& local, It first, std::size_t n, const Keep& keep, bool keep_rest) {
  using V = std::iter_value_t<It>;
  std::unique_ptr<std::optional<V>[]> moved(new std::optional<V>[n]);
  const std::size_t total = compact(local, n, keep, [&](std::size_t i, std::size_t before, bool kept, std::size_t all) {
    if (kept) moved[before].emplace(std::move(first[i]));
    else if (keep_rest) moved[all + i - before].emplace(std::move(first[i]));
  });
  for_each_index(local, keep_rest ? n : total, [&](std::size_t j) { first[j] = std::move(*moved[j]); });
  return total;
}

// Whether element i starts a run of keys (its key differs from the one
// before, under `equal`), where `before_first` is the key before element 0, if
// any (the last key of an earlier participant).
template <class KeyIt, class KeyEqual, class Key>
struct run_heads {
  KeyIt keys;
  const KeyEqual* equal;
  std::optional<Key> before_first;
  bool operator()(std::size_t i) const {
    if (i == 0) return !(before_first && (*equal)(*before_first, keys[0]));
    return !(*equal)(keys[i - 1], keys[i]);
  }
};

// A value with whether a run of keys starts at it: the segmented op
// combines values within a run and restarts at each head. Associative, so
// the backends' scans run it in parallel and across participants.
template <class V>
struct headed {
  bool head;
  V value;
};
template <class V, class Op>
struct segmented {
  Op op;
  headed<V> operator()(const headed<V>& a, const headed<V>& b) const {
    if (b.head) return b;
    return {a.head, static_cast<V>(op(a.value, b.value))};
  }
};

}  // namespace dpar::detail::derived
