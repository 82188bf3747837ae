#pragma once
// Building blocks of the algorithms derived from a backend's primitives
// (transform, for_each, transform_reduce, the scans): iterators over indices,
// compaction by counts, the first index that satisfies a test, and the
// segment heads of by-key algorithms. The front doors in dpar/algorithm/
// combine them; every backend whose participants are known (participants.hpp)
// runs them.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstring>
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
#include "kernels.hpp"
#include "participants.hpp"

namespace dpar::detail::derived {

// Algorithms a backend runs with its own library instead of deriving them
// from its primitives: `available`, and `run`, a class of static functions
// (detail/cuda/algorithms.hpp for dpar::gpu). The front doors in
// dpar/algorithm/ call them where available.
template <class Backend>
struct native_algorithms {
  static constexpr bool available = false;
};
template <class P>
inline constexpr bool native_v = native_algorithms<backend_of<P>>::available;
template <class P>
using native = typename native_algorithms<backend_of<P>>::run;

// Which of Thrust's vectorized searches: a template argument, so that a
// backend instantiates only the one asked for.
enum class search_kind { lower_bound, upper_bound, binary_search };

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

// How many contiguous pieces the derived algorithms cut n elements into: up to
// 4096 elements each (enough to amortize a piece's bookkeeping), at least 64
// pieces where n allows, so that costly elements still reach every thread.
inline std::size_t piece_size(std::size_t n) noexcept { return std::clamp<std::size_t>(n / 64, 1, 4096); }

// The first i in [0, n) with test(i), or n; on one participant's elements.
// Pieces run in parallel, each in order; a piece starting past an index
// already found is skipped, so the search stops soon after a hit.
template <class L, class Test>
std::size_t first_index(const L& local, std::size_t n, const Test& test) {
  const std::size_t piece = piece_size(n);
  std::atomic<std::size_t> found{n};
  for_each_index(local, (n + piece - 1) / piece, [&](std::size_t c) {
    const std::size_t end = std::min(n, (c + 1) * piece);
    for (std::size_t lo = c * piece; lo < end; lo += 256) {
      if (lo >= found.load(std::memory_order_relaxed)) return;
      for (std::size_t i = lo, hi = std::min(end, lo + 256); i < hi; ++i)
        if (test(i)) {
          std::size_t seen = found.load(std::memory_order_relaxed);
          while (i < seen && !found.compare_exchange_weak(seen, i, std::memory_order_relaxed)) {
          }
          return;
        }
    }
  });
  return found.load(std::memory_order_relaxed);
}

// Whether test(i) holds for some i in [0, n) of any participant: global.
template <class P, class Test>
bool any_index(const P& p, std::size_t n, const Test& test) {
  using parts = participants_of<P>;
  if constexpr (!parts::distributed) {
    return first_index(p, n, test) != n;
  } else {
    // one element per participant, its local answer: the backend's reduce
    // combines them and carries an exception on one participant to all
    return fold_indices(p, 1, std::size_t{0}, std::plus<>{}, [&](std::size_t) -> std::size_t {
             return first_index(parts::local(p), n, test) != n ? 1 : 0;
           }) != 0;
  }
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

// ---- extremes of arithmetic values under < or > ---------------------------
// min_element and the others on arithmetic values ordered by < or > (the
// default comparators) take one vectorized pass: each chunk of the range
// yields its smallest and largest value, a fold over chunks in order keeps
// the first (or last) chunk holding the extreme, and a search of that one
// chunk gives the element's position.

// 1 if comp orders arithmetic V as < does, -1 as > does, 0 otherwise.
template <class Comp, class V>
inline constexpr int plain_order_v =
    !std::is_arithmetic_v<V> ? 0
    : (std::is_same_v<Comp, std::ranges::less> || std::is_same_v<Comp, std::less<>> ||
       std::is_same_v<Comp, std::less<V>>)
        ? 1
    : (std::is_same_v<Comp, std::ranges::greater> || std::is_same_v<Comp, std::greater<>> ||
       std::is_same_v<Comp, std::greater<V>>)
        ? -1
        : 0;

template <class T>
struct low_high {
  T low, high;
};

// The smallest (if Low) and largest (if High) of x[0..n), n > 0, by <, in
// independent vector accumulators (vector selects compile to vector min and
// max; an array of scalar lanes is not vectorized).
template <bool Low, bool High, class T>
low_high<T> low_high_of(const T* x, std::size_t n) {
  low_high<T> r{x[0], x[0]};
  std::size_t i = 1;
  if constexpr (!std::is_same_v<T, bool>) {
    constexpr std::size_t width = vector_bytes / sizeof(T), chains = 4, step = chains * width;
    typedef T vec __attribute__((vector_size(vector_bytes)));
    if (n >= 2 * step) {
      vec lo[chains], hi[chains];
      for (std::size_t c = 0; c < chains; ++c) std::memcpy(&lo[c], x + c * width, sizeof(vec)), hi[c] = lo[c];
      for (i = step; i + step <= n; i += step)
        for (std::size_t c = 0; c < chains; ++c) {
          vec v;
          std::memcpy(&v, x + i + c * width, sizeof(vec));
          if constexpr (Low) lo[c] = v < lo[c] ? v : lo[c];
          if constexpr (High) hi[c] = hi[c] < v ? v : hi[c];
        }
      for (std::size_t c = 0; c < chains; ++c)
        for (std::size_t k = 0; k < width; ++k) {
          if (lo[c][k] < r.low) r.low = lo[c][k];
          if (r.high < hi[c][k]) r.high = hi[c][k];
        }
    }
  }
  for (; i < n; ++i) {
    if (x[i] < r.low) r.low = x[i];
    if (r.high < x[i]) r.high = x[i];
  }
  return r;
}

// Which element an extreme search wants: the smallest or largest value by <,
// the first or the last of its occurrences.
struct extreme {
  bool largest;
  bool last;
};

// For each of Want, the position of that extreme of x[0..n) by <, on the
// participant that holds it (none elsewhere, or for an empty sequence).
template <extreme... Want, class P, class T>
std::array<std::optional<std::size_t>, sizeof...(Want)> arithmetic_extremes_here(const P& p, const T* x,
                                                                                 std::size_t n) {
  using parts = participants_of<P>;
  constexpr std::size_t k = sizeof...(Want), chunk = 16384 / sizeof(T), none = std::size_t(-1);
  constexpr extreme want[k] = {Want...};
  constexpr bool low = (!Want.largest || ...), high = (Want.largest || ...);
  struct best {
    T value[k];
    std::size_t chunk[k];
  };
  // Whether b (later in sequence) replaces a as extreme w.
  auto later_wins = [&](std::size_t w, const T& a, const T& b) {
    return (want[w].largest ? a < b : b < a) || (want[w].last && !(a < b) && !(b < a));
  };
  auto combine = [&](best a, const best& b) {
    if (a.chunk[0] == none) return b;
    for (std::size_t w = 0; w < k; ++w)
      if (later_wins(w, a.value[w], b.value[w])) a.value[w] = b.value[w], a.chunk[w] = b.chunk[w];
    return a;
  };
  auto of_chunk = [&](std::size_t c) {
    const low_high<T> r = low_high_of<low, high>(x + c * chunk, std::min(chunk, n - c * chunk));
    best b;
    for (std::size_t w = 0; w < k; ++w) b.value[w] = want[w].largest ? r.high : r.low, b.chunk[w] = c;
    return b;
  };
  best none_yet;
  for (std::size_t w = 0; w < k; ++w) none_yet.value[w] = T{}, none_yet.chunk[w] = none;
  const best found = n == 0 ? none_yet : fold_indices(parts::local(p), (n + chunk - 1) / chunk, none_yet, combine, of_chunk);
  std::array<std::optional<std::size_t>, k> at;
  for (std::size_t w = 0; w < k; ++w) {
    std::optional<indexed<T>> mine;
    if (n != 0) {
      // The extreme's first (last) occurrence in its chunk; the chunk's start
      // if there is none (a NaN, not ordered by <).
      const T v = found.value[w];
      const std::size_t lo = found.chunk[w] * chunk, hi = std::min(n, lo + chunk);
      std::size_t i = lo;
      if (want[w].last) {
        for (std::size_t j = hi; j-- > lo;)
          if (x[j] == v) {
            i = j;
            break;
          }
      } else {
        i = static_cast<std::size_t>(std::find(x + lo, x + hi, v) - x);
        if (i == hi) i = lo;
      }
      mine = indexed<T>{i, x[i]};
    }
    auto wins = [&](const indexed<T>& later, const indexed<T>& earlier) { return later_wins(w, earlier.value, later.value); };
    auto best_here = parts::template best_here<indexed<T>>(p, [&] { return mine; }, wins);
    if (best_here) at[w] = best_here->index;
  }
  return at;
}

// Compaction on one participant's elements: calls emit(i, kept_before, kept)
// for every i in [0, n) (kept_before: how many j < i have keep(j)), and
// returns how many were kept. keep(i) may be called more than once per i
// (std's parallel overloads allow a predicate O(n) calls).
//
// Short ranges: pieces count their kept elements in parallel, timed by the
// backend (so that costly predicates on few elements reach every thread), a
// scan of the counts gives each piece its start, and the pieces emit.
// From one_pass_compaction elements: one exclusive scan of the 0/1 counts on
// the backend, whose output calls emit. The threads backend runs it in one
// pass over memory (look-back over cache-sized tiles), where two passes would
// read the input twice, the second time often from another core's cache
// (bench/RESULTS.md, session 7: 0.8-0.95 of std::copy_if(par_unseq) against
// 1.05-1.40).
inline constexpr std::size_t one_pass_compaction = 32768;

template <class L, class Keep, class Emit>
std::size_t compact(const L& local, std::size_t n, const Keep& keep, const Emit& emit) {
  if (n == 0) return 0;
  if (n >= one_pass_compaction) {
    auto count = [&keep](std::size_t i) -> std::size_t { return keep(i) ? 1 : 0; };
    std::size_t total = 0;  // written by the call for the last element only
    auto emit_one = [&](std::size_t i, std::size_t before) {
      const bool kept = keep(i);
      emit(i, before, kept);
      if (i + 1 == n) total = before + (kept ? 1 : 0);
    };
    index_iterator counts(count);
    backend_of<L>::exclusive_scan(local, counts, counts + static_cast<std::ptrdiff_t>(n), sink_iterator(emit_one),
                                  std::size_t{0}, std::plus<>{});
    return total;
  }
  const std::size_t piece = piece_size(n), pieces = (n + piece - 1) / piece;
  std::vector<std::size_t> start(pieces + 1);
  tabulate(
      local, pieces,
      [&](std::size_t c) {
        std::size_t count = 0;
        for (std::size_t i = c * piece, end = std::min(n, i + piece); i < end; ++i) count += keep(i) ? 1 : 0;
        return count;
      },
      start.begin() + 1);
  std::inclusive_scan(start.begin(), start.end(), start.begin());
  for_each_index(local, pieces, [&](std::size_t c) {
    // local copies: the compiler keeps what they hold in registers across the writes
    const Keep keep_here = keep;
    const Emit emit_here = emit;
    std::size_t before = start[c];
    for (std::size_t i = c * piece, end = std::min(n, i + piece); i < end; ++i) {
      const bool kept = keep_here(i);
      emit_here(i, before, kept);
      before += kept ? 1 : 0;
    }
  });
  return start[pieces];
}

// Moves first[i] for kept i to the front, in order, others after them in
// order if `keep_rest` (a stable partition), on one participant's elements;
// returns how many were kept. Through a buffer: pieces write where others read.
template <class L, class It, class Keep>
std::size_t compact_in_place(const L& local, It first, std::size_t n, const Keep& keep, bool keep_rest) {
  using V = std::iter_value_t<It>;
  std::unique_ptr<std::optional<V>[]> moved(new std::optional<V>[n]);
  // where the others start: after every kept element
  const std::size_t kept_total =
      keep_rest && n != 0
          ? fold_indices(local, n, std::size_t{0}, std::plus<>{}, [&](std::size_t i) -> std::size_t { return keep(i) ? 1 : 0; })
          : 0;
  const std::size_t total = compact(local, n, keep, [&](std::size_t i, std::size_t before, bool kept) {
    if (kept) moved[before].emplace(std::move(first[i]));
    else if (keep_rest) moved[kept_total + i - before].emplace(std::move(first[i]));
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
