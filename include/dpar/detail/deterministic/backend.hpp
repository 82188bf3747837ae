#pragma once
// Backend of dpar::deterministic(policy) (deterministic.hpp). Float and double
// sums are summed exactly (extraction.hpp, then exact_sum.hpp) and rounded once;
// everything else runs over blocks whose bounds depend on the length only
// (never on the thread count) and combines their results in block order.
// Element-wise algorithms have nothing to reorder and run on the inner policy.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../collective.hpp"
#include "../../deterministic.hpp"
#include "../../execution.hpp"
#include "../../thread_pool.hpp"
#include "../collective/kernels.hpp"
#include "../backend_concept.hpp"
#include "../elementwise_on_inner.hpp"
#include "../kernels.hpp"
#include "../threads/all_reduce.hpp"
#include "../threads/backend.hpp"
#include "exact_sum.hpp"
#include "extraction.hpp"

namespace dpar::detail::deterministic {

// ---- which sums are exact --------------------------------------------------

// A sum of values of type V (after any transform) into T with op: correctly
// rounded when T and V are float or double and op is +.
template <class Op, class T, class V>
inline constexpr bool exact_sum_v = op_kind_v<Op, T> == op_kind::sum && is_float_or_double_v<T> &&
                                    is_float_or_double_v<std::remove_cvref_t<V>>;

// The type each term is added as: std::plus<T> converts it to T first.
template <class Op, class T, class V>
using summand_t =
    std::conditional_t<std::is_same_v<std::remove_cvref_t<Op>, std::plus<T>>, T, std::remove_cvref_t<V>>;

// ---- one process: seq and par ----------------------------------------------

template <>
struct site<sequenced_policy> {
  static constexpr bool supported = true, distributed = false;
  static thread_pool* pool(const sequenced_policy&) { return nullptr; }
  static void combine(const sequenced_policy&, exact_sum&) {}
};

template <>
struct site<parallel_policy> {
  static constexpr bool supported = true, distributed = false;
  static thread_pool* pool(const parallel_policy& policy) { return &policy.pool(); }
  static void combine(const parallel_policy&, exact_sum&) {}
};

// Calls body(block, lo, hi) for every block of `cut`: in the calling thread
// without a pool, else on whichever pool threads are free.
template <class Body>
void for_each_block(thread_pool* pool, const threads::blocks& cut, Body&& body) {
  if (pool == nullptr) {
    for (std::size_t b = 0; b < cut.count; ++b) body(b, cut.begin(b), cut.begin(b + 1));
  } else {
    threads::for_each_block(*pool, cut, body);
  }
}

// [0, n) cut into blocks of `block` elements: a function of n alone.
inline threads::blocks fixed_blocks(std::size_t n, std::size_t block) { return {n, block_count(n, block)}; }

template <class Op, class T>
inline constexpr std::size_t fixed_block = reorderable_v<Op, T> ? threads::min_block_arithmetic : threads::min_block;

// op(init, elem(0), ..., elem(n-1)) over fixed blocks, combined in order.
template <class T, class Op, class Elem>
T fixed_fold(thread_pool* pool, T init, std::size_t n, Op& op, Elem& elem) {
  const threads::blocks cut = fixed_blocks(n, fixed_block<Op, T>);
  return threads::fold_blocks(cut, std::move(init), op, elem, [&](auto&& body) { for_each_block(pool, cut, body); });
}

// Reduce-then-scan over fixed blocks: each block's total, the carries in
// block order, then every block scans from its carry. All totals are read
// before any output is written, so in-place is fine.
template <bool Inclusive, class V, class In, class Out, class Op>
void fixed_scan(thread_pool* pool, In first, std::size_t n, Out d_first, Op& op, std::optional<V> init) {
  if (n == 0) return;
  const std::size_t start = start_from_first(first, d_first, 0, init);
  const threads::blocks cut = fixed_blocks(n - start, fixed_block<Op, V>);
  std::vector<std::optional<V>> carry(cut.count);
  carry[0] = std::move(init);
  auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };
  if (cut.count > 1) {
    for_each_block(pool, cut, [&](std::size_t b, std::size_t lo, std::size_t hi) {
      if (b + 1 < cut.count) carry[b + 1].emplace(fold_nonempty<V>(start + lo, start + hi, op, elem));
    });
    totals_to_carries(carry, op);
  }
  for_each_block(pool, cut, [&](std::size_t b, std::size_t lo, std::size_t hi) {
    if constexpr (reorderable_v<Op, V>)
      interleaved_scan_range<Inclusive, V>(first, d_first, start + lo, start + hi, op, *carry[b]);
    else if constexpr (Inclusive)
      inclusive_scan_range<V>(first, d_first, start + lo, start + hi, op, std::move(carry[b]));
    else
      exclusive_scan_range<V>(first, d_first, start + lo, start + hi, op, std::move(*carry[b]));
  });
}

// ---- exact sums -----------------------------------------------------------

// Blocks of terms that a thread claims at a time: a function of nothing.
// Small enough that a thread that joins late (a wake-up takes about 0.5 us,
// a block 0.5-1 us) leaves few to the others.
inline constexpr std::size_t exact_block = 4096;

// Bytes of terms below which one thread sums them all: 128 KiB take about
// 4 us, of which a fork and join (the worker's late start, the merge) would
// save little (2^14 floats: 0.20 of the default's speed forked, 0.23 not).
inline constexpr std::size_t smallest_shared_exact_sum = 128 * 1024;

// The exact sum of the terms that feed(table, lo, hi, into) adds for every
// block of [0, n), one exact_sum per thread. The blocks run on the threads'
// own runs (threads::for_each_block_on_threads): repeated sums over the same
// data find it in the same core's cache.
template <class S, class Feed>
exact_sum local_exact_sum(thread_pool* pool, std::size_t n, Feed&& feed) {
  const threads::blocks cut = fixed_blocks(n, exact_block);
  if (pool == nullptr || pool->concurrency() == 1 || n * sizeof(S) < smallest_shared_exact_sum) {
    exact_sum total;
    binned_loan<S> table;
    for (std::size_t b = 0; b < cut.count; ++b) feed(*table, cut.begin(b), cut.begin(b + 1), total);
    table->flush(total);
    return total;
  }
  std::vector<exact_sum> part(pool->size());
  threads::for_each_block_on_threads(*pool, cut, [&](std::size_t thread, std::size_t, std::size_t lo, std::size_t hi) {
    binned_loan<S> table;
    feed(*table, lo, hi, part[thread]);
    table->flush(part[thread]);
  });
  for (std::size_t t = 1; t < part.size(); ++t) part[0].merge(part[t]);
  return std::move(part[0]);
}

// init + the exact sum, combined over the ranks if any, rounded once to T.
template <class T, class Inner>
T round_total(const Inner& inner, exact_sum& total, const T& init) {
  site<Inner>::combine(inner, total);
  total.add(static_cast<double>(init));
  return total.template round<T>();
}

// sum[i] = in[0][i] + ... + in[k-1][i] in double, for i in [0, count); returns
// true if that may not be the correctly rounded sum of some element. K is k
// when known at compile time (the loop then keeps everything in registers),
// else 0.
//
// Floats: k floats add exactly in double, in any order, when the nonzero
// ones lie within 53 - 24 - ceil(log2 k) binades of each other: they are
// multiples of the smallest one's unit, and every partial sum stays below
// 2^53 such units. That is checked on the magnitude bits in integer
// lanes beside the adds: four integer operations per term, where a TwoSum
// took eight floating-point ones. Zeros drop out of the check; inf and NaN
// pass it only where the double sum is what an exact sum gives too.
template <std::size_t K>
bool sum_in_double(std::size_t k, const float* const* in, double* sum, std::size_t count) {
  if constexpr (K != 0) k = K;
  // |x| < 2^(f-126) for exponent field f, a multiple of 2^(max(f,1)-150): a
  // spread of the magnitude bits below L * 2^23 keeps the fields within L
  using format = tile_format<float>;
  const int binades = std::numeric_limits<double>::digits - std::numeric_limits<float>::digits -
                      static_cast<int>(std::bit_width(k - 1));
  const std::int32_t most_spread = binades < 0 ? -1 : binades << format::fraction_bits;
  constexpr std::size_t lanes = vector_bytes / sizeof(float), half = lanes / 2;
  typedef double dvec __attribute__((vector_size(vector_bytes)));
  typedef std::int32_t ivec __attribute__((vector_size(vector_bytes)));
  typedef std::uint32_t uvec __attribute__((vector_size(vector_bytes)));
  auto load_double = [&](std::size_t r, std::size_t at) {
    double lane[half];
    for (std::size_t j = 0; j < half; ++j) lane[j] = static_cast<double>(in[r][at + j]);
    dvec v;
    std::memcpy(&v, lane, sizeof v);
    return v;
  };
  ivec flagged = {};
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes) {
    // the magnitude bits minus one: a zero's become -1 (signed, below every
    // other) and all ones (unsigned, above every other). Named zeros: nvcc's
    // front end crashes on ivec{} here.
    ivec top = {};
    uvec least = {};
    top -= 1;
    least = ~least;
    dvec low = load_double(0, i), high = load_double(0, i + half);  // not 0 + x: -0 must stay -0
    for (std::size_t r = 0; r < k; ++r) {
      uvec u;
      std::memcpy(&u, in[r] + i, sizeof u);
      const uvec below = (u & format::magnitude_mask) - 1u;
      ivec signed_below;
      std::memcpy(&signed_below, &below, sizeof below);
      top = signed_below > top ? signed_below : top;
      least = below < least ? below : least;
      if (r > 0) low += load_double(r, i), high += load_double(r, i + half);
    }
    ivec signed_least;
    std::memcpy(&signed_least, &least, sizeof least);
    flagged |= top - signed_least > most_spread;
    std::memcpy(sum + i, &low, sizeof low);
    std::memcpy(sum + i + half, &high, sizeof high);
  }
  bool tail_flagged = false;
  for (; i < count; ++i) {
    std::int32_t top = -1;
    std::uint32_t least = ~0u;
    double s = in[0][i];
    for (std::size_t r = 0; r < k; ++r) {
      const std::uint32_t below = (std::bit_cast<std::uint32_t>(in[r][i]) & format::magnitude_mask) - 1u;
      top = std::max(top, static_cast<std::int32_t>(below));
      least = std::min(least, below);
      if (r > 0) s += static_cast<double>(in[r][i]);
    }
    tail_flagged |= top - static_cast<std::int32_t>(least) > most_spread;
    sum[i] = s;
  }
  for (std::size_t j = 0; j < lanes; ++j) tail_flagged |= flagged[j] != 0;
  return tail_flagged;
}

// Doubles: with TwoSum, s + (the sum of the error terms), correctly rounded
// when that sum was exact.
template <std::size_t K>
bool sum_in_double(std::size_t k, const double* const* in, double* sum, std::size_t count) {
  if constexpr (K != 0) k = K;
  // One step: s + x, its error term summed and that sum's error checked.
  auto step = [](auto& s, auto x, auto& errors, auto& flagged) {
    const auto t = s + x, bp = t - s, e = (s - (t - bp)) + (x - bp);
    const auto u = errors + e, bq = u - errors;
    flagged |= ((errors - (u - bq)) + (e - bq)) != 0;  // also NaN, from inf and NaN terms
    errors = u;
    s = t;
  };
  constexpr std::size_t lanes = vector_bytes / sizeof(double);
  typedef double vec __attribute__((vector_size(vector_bytes)));
  typedef std::int64_t mask __attribute__((vector_size(vector_bytes)));
  auto load = [&](std::size_t r, std::size_t at) {
    vec v;
    std::memcpy(&v, in[r] + at, sizeof v);
    return v;
  };
  mask flagged = {};
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes) {
    vec s = load(0, i), errors = {};
    for (std::size_t r = 1; r < k; ++r) step(s, load(r, i), errors, flagged);
    // a zero sum of error terms, made -0, leaves s (and the sign of a zero s) alone
    mask bits;
    std::memcpy(&bits, &errors, sizeof bits);
    bits |= (errors == 0) & std::numeric_limits<std::int64_t>::min();
    std::memcpy(&errors, &bits, sizeof bits);
    s += errors;
    std::memcpy(sum + i, &s, sizeof s);
  }
  bool tail_flagged = false;
  for (; i < count; ++i) {
    double s = in[0][i], errors = 0;
    for (std::size_t r = 1; r < k; ++r) step(s, in[r][i], errors, tail_flagged);
    sum[i] = errors == 0 ? s : s + errors;
  }
  for (std::size_t j = 0; j < lanes; ++j) tail_flagged |= flagged[j] != 0;
  return tail_flagged;
}

// The K-buffer exact all-reduce kernel: out[i] = the correctly rounded sum of
// column(r)[i] over r in [0, k), for i in [lo, hi). out may be column(0).
// Fast path: sum_in_double; an element it cannot vouch for goes through
// exact_sum.
template <class T, class Column>
void exact_columns(std::size_t k, Column& column, T* out, std::size_t lo, std::size_t hi, exact_sum& scratch) {
  if (k == 2) {
    // IEEE addition of two values is their correctly rounded exact sum (a
    // float's, too, is float(double(a) + double(b)): 53 >= 2 * 24 + 2 bits).
    const T *a = column(0), *b = column(1);
    for (std::size_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
    return;
  }
  constexpr std::size_t chunk = 512;
  double sum[chunk];
  std::vector<const T*> in(k);
  for (std::size_t c = lo; c < hi; c += chunk) {
    const std::size_t count = std::min(chunk, hi - c);
    for (std::size_t r = 0; r < k; ++r) in[r] = column(r) + c;
    bool check = false;
    switch (k) {
      case 1: check = sum_in_double<1>(k, in.data(), sum, count); break;
      case 3: check = sum_in_double<3>(k, in.data(), sum, count); break;
      case 4: check = sum_in_double<4>(k, in.data(), sum, count); break;
      case 8: check = sum_in_double<8>(k, in.data(), sum, count); break;
      default: check = sum_in_double<0>(k, in.data(), sum, count);
    }
    if (check)  // rare: find the elements, and sum them exactly
      for (std::size_t i = 0; i < count; ++i) {
        const T* one[64];
        if (k <= 64) {
          for (std::size_t r = 0; r < k; ++r) one[r] = in[r] + i;
          double again;
          if (!sum_in_double<0>(k, one, &again, 1)) continue;
        }
        scratch.clear();
        for (std::size_t r = 0; r < k; ++r) scratch.add(static_cast<double>(in[r][i]));
        sum[i] = static_cast<double>(scratch.round<T>());
      }
    for (std::size_t i = 0; i < count; ++i) out[c + i] = static_cast<T>(sum[i]);
  }
}

// Runs exact_columns over [0, n) in slices on the pool (if any), and
// after(lo, hi) on each piece of a slice as soon as it is summed, while the
// piece is still in cache (after() divides for the mean, copies to the other
// buffers: on a whole slice it would read the sums back from memory).
template <class T, class Column, class After>
void exact_column_sums(thread_pool* pool, std::size_t k, std::size_t n, Column column, T* out, After after) {
  if (k == 0 || n == 0) return;
  constexpr std::size_t piece = 4096;
  collective::for_each_slice<T>(pool, k, n, [&](std::size_t lo, std::size_t hi) {
    exact_sum scratch;
    for (std::size_t c = lo; c < hi; c += piece) {
      const std::size_t end = std::min(hi, c + piece);
      exact_columns<T>(k, column, out, c, end, scratch);
      after(c, end);
    }
  });
}

// K host buffers: buffer 0 gets the sums (then divided by K for the mean),
// then the others get copies.
template <class Buffers>
void host_exact_all_reduce(thread_pool* pool, Buffers& buffers, bool mean, const char* who) {
  auto spans = collective::checked_spans(buffers, who);
  using T = typename decltype(spans)::value_type::element_type;
  const std::size_t k = spans.size();
  if (k == 0) return;
  auto column = [&](std::size_t r) -> const T* { return spans[r].data(); };
  exact_column_sums<T>(pool, k, spans[0].size(), column, spans[0].data(), [&](std::size_t lo, std::size_t hi) {
    if (mean) collective::divide_by{k}(spans[0].data() + lo, hi - lo);
    for (std::size_t r = 1; r < k; ++r) std::copy(spans[0].data() + lo, spans[0].data() + hi, spans[r].data() + lo);
  });
}

template <class Buffers>
using host_element_t = typename collective::buffer_span_t<Buffers>::element_type;

// ---- the backend ------------------------------------------------------------

struct backend : elementwise_on_inner {
  template <class P, class It, class T, class Op>
  static T reduce(const P& policy, It first, It last, T init, Op op) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return at(first, i); };
    auto over_ranks = [&](const auto& ranks, T init) {
      return backend_of<decltype(ranks)>::reduce(ranks, first, last, std::move(init), op);
    };
    const auto n = static_cast<std::size_t>(last - first);
    if constexpr (std::contiguous_iterator<It>)
      return sum_or_fold(policy, n, std::move(init), op, elem, over_ranks,
                         n ? static_cast<const std::iter_value_t<It>*>(std::to_address(first)) : nullptr);
    else
      return sum_or_fold(policy, n, std::move(init), op, elem, over_ranks);
  }

  template <class P, class It, class T, class R, class U>
  static T transform_reduce(const P& policy, It first, It last, T init, R reduce, U transform) {
    auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first, i)); };
    return sum_or_fold(policy, static_cast<std::size_t>(last - first), std::move(init), reduce, elem,
                       [&](const auto& ranks, T init) {
                         return backend_of<decltype(ranks)>::transform_reduce(ranks, first, last, std::move(init),
                                                                              reduce, transform);
                       });
  }

  // The two-range form (sum of products): exact products when summed exactly.
  template <class P, class It1, class It2, class T, class R, class U>
  static T transform_reduce(const P& policy, It1 first1, It1 last1, It2 first2, T init, R reduce, U transform) {
    using Inner = typename P::inner_type;
    using A = std::iter_value_t<It1>;
    using B = std::iter_value_t<It2>;
    const auto n = static_cast<std::size_t>(last1 - first1);
    if constexpr (exact_sum_v<R, T, A> && exact_sum_v<R, T, B> &&
                  std::is_same_v<std::remove_cvref_t<U>, std::multiplies<>>) {
      // products of floats stay floats, any double makes both doubles
      using F = std::conditional_t<std::is_same_v<A, float> && std::is_same_v<B, float>, float, double>;
      auto factors = [&](std::size_t i) {
        return std::pair<F, F>(static_cast<F>(at(first1, i)), static_cast<F>(at(first2, i)));
      };
      exact_sum total = local_exact_sum<double>(site<Inner>::pool(policy.inner()), n,
                                                [&](binned_sum<double>& table, std::size_t lo, std::size_t hi,
                                                    exact_sum& into) { add_products(lo, hi, factors, table, into); });
      return round_total(policy.inner(), total, init);
    } else {
      auto elem = [&](std::size_t i) -> decltype(auto) { return transform(at(first1, i), at(first2, i)); };
      return sum_or_fold(policy, n, std::move(init), reduce, elem, [&](const auto& ranks, T init) {
        return backend_of<decltype(ranks)>::transform_reduce(ranks, first1, last1, first2, std::move(init), reduce,
                                                             transform);
      });
    }
  }

  template <class V, class P, class In, class Out, class Op>
  static Out inclusive_scan(const P& policy, In first, In last, Out d_first, Op op, std::optional<V> init) {
    return scan<true>(policy, first, last, d_first, op, std::move(init), [&](auto ranks, std::optional<V> from) {
      return backend_of<decltype(ranks)>::inclusive_scan(ranks, first, last, d_first, std::move(op), std::move(from));
    });
  }

  template <class P, class In, class Out, class T, class Op>
  static Out exclusive_scan(const P& policy, In first, In last, Out d_first, T init, Op op) {
    return scan<false>(policy, first, last, d_first, op, std::optional<T>(std::move(init)),
                       [&](auto ranks, std::optional<T> from) {
                         return backend_of<decltype(ranks)>::exclusive_scan(ranks, first, last, d_first,
                                                                            std::move(*from), std::move(op));
                       });
  }

 private:
  // A scan over ranks is the distributed backend's, over_ranks(ranks, init);
  // in one process, fixed blocks on the inner policy's pool (the same cut for
  // any thread count).
  template <bool Inclusive, class P, class In, class Out, class Op, class V, class OverRanks>
  static Out scan(const P& policy, In first, In last, Out d_first, Op& op, std::optional<V> init,
                  OverRanks over_ranks) {
    using Inner = typename P::inner_type;
    if constexpr (site<Inner>::distributed) {
      return over_ranks(site<Inner>::over_ranks(policy.inner()), std::move(init));
    } else {
      fixed_scan<Inclusive, V>(site<Inner>::pool(policy.inner()), first, static_cast<std::size_t>(last - first),
                               d_first, op, std::move(init));
      return d_first + (last - first);
    }
  }

  // init + elem(0) + ... + elem(n-1) with op: exact for float and double sums;
  // else over_ranks(policy, init) under MPI, else fixed blocks on this process.
  // data: the elements in contiguous memory, if they are (else nullptr).
  template <class P, class T, class Op, class Elem, class OverRanks, class Data = std::nullptr_t>
  static T sum_or_fold(const P& policy, std::size_t n, T init, Op& op, Elem& elem, OverRanks over_ranks,
                       Data data = nullptr) {
    using Inner = typename P::inner_type;
    using V = decltype(elem(std::size_t{}));
    if constexpr (exact_sum_v<Op, T, V>) {
      using S = summand_t<Op, T, V>;
      // terms that are S values in contiguous memory are read in place
      const S* values = nullptr;
      if constexpr (std::is_same_v<Data, const S*>) values = data;
      exact_sum total = local_exact_sum<S>(site<Inner>::pool(policy.inner()), n,
                                           [&](binned_sum<S>& table, std::size_t lo, std::size_t hi,
                                               exact_sum& into) { add_terms<S>(lo, hi, elem, table, into, values); });
      return round_total(policy.inner(), total, init);
    } else if constexpr (site<Inner>::distributed) {
      return over_ranks(site<Inner>::over_ranks(policy.inner()), std::move(init));
    } else {
      return fixed_fold(site<Inner>::pool(policy.inner()), std::move(init), n, op, elem);
    }
  }
};

// The collectives of a deterministic policy (detail::collective_backend below).
struct collectives {
  // all_reduce with + on float or double buffers is exact; any other op or
  // type already combines in replica order on the inner policy.
  template <class P, class Buffers, class Op>
  static void all_reduce(const P& policy, Buffers& buffers, Op& op) {
    using Inner = typename P::inner_type;
    if constexpr (site<Inner>::distributed) {
      if constexpr (exact_sum_v<Op, typename site<Inner>::template element_t<Buffers>,
                                typename site<Inner>::template element_t<Buffers>>)
        site<Inner>::exact_all_reduce(policy.inner(), buffers, false);
      else
        dpar::all_reduce(policy.inner(), buffers, op);
    } else if constexpr (exact_sum_v<Op, host_element_t<Buffers>, host_element_t<Buffers>>) {
      host_exact_all_reduce(site<Inner>::pool(policy.inner()), buffers, false, "dpar::all_reduce");
    } else {
      dpar::all_reduce(policy.inner(), buffers, op);
    }
  }

  template <class P, class Buffers>
  static void all_reduce_mean(const P& policy, Buffers& buffers) {
    using Inner = typename P::inner_type;
    if constexpr (site<Inner>::distributed) {
      if constexpr (is_float_or_double_v<typename site<Inner>::template element_t<Buffers>>)
        site<Inner>::exact_all_reduce(policy.inner(), buffers, true);
      else
        dpar::all_reduce_mean(policy.inner(), buffers);
    } else if constexpr (is_float_or_double_v<host_element_t<Buffers>>) {
      host_exact_all_reduce(site<Inner>::pool(policy.inner()), buffers, true, "dpar::all_reduce_mean");
    } else {
      dpar::all_reduce_mean(policy.inner(), buffers);
    }
  }
};

}  // namespace dpar::detail::deterministic

namespace dpar::detail {
template <class Inner>
struct collective_backend<deterministic_policy<Inner>> : deterministic::collectives {};

static_assert(backend_for<deterministic::backend, deterministic_policy<sequenced_policy>>);
static_assert(backend_for<deterministic::backend, deterministic_policy<parallel_policy>>);
}  // namespace dpar::detail
