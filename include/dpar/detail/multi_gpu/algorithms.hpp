#pragma once
// The algorithms of dpar/algorithm/ that dpar::multi_gpu runs on
// dpar::sharded_vector (public overloads in sharded_algorithms.hpp). Each
// shard runs dpar::gpu's call (detail/cuda/algorithms.hpp) on its device and
// stream, every shard queued before any wait; the host combines the shards'
// results in shard order (detail/shard_combine.hpp, tested on the CPU).
//
//   fill, iota, copy          shard-local (iota counts from the shard's offset)
//   count, count_if,          one count per shard (the backend's transform_reduce),
//   any_of, all_of, none_of     summed
//   find, find_if,            one least index per shard (CUB's TransformReduce over
//   mismatch, equal             indices); the first shard that has one wins
//   copy_if, remove_copy_if,  each shard selects into a scratch buffer on its device
//   unique_copy                 (cub::DeviceSelect::If, Flagged) and counts; the counts
//                               give every shard's place in the output (exclusive
//                               offsets), and each shard copies its kept elements there
//                               (cudaMemcpyPeerAsync on its stream), so they sit at the
//                               front of the output in input order
//   partition_copy,           as copy_if, two selections per shard (kept, rejected),
//   stable_partition            all queued before any count is read; stable_partition
//                               places the rejected ones after all the kept
//   min_element, max_element, one extreme index per shard (dpar's ordered reduce over
//   minmax_element              indices, so ties go as std's); their elements read to
//                               the host and compared in shard order
//   adjacent_difference       per shard, each shard's first element then fixed up with
//                               the previous shard's last (copied to its device)
//   transform scans           the transform per shard into the output, then the
//                               sharded scan in place (sharded_algorithms.hpp)
//   inclusive_scan_by_key     per shard (cub::DeviceScan::InclusiveScanByKey), with its
//                               first segment head and last result; the host carries
//                               segments across shards in order (the carry on the left,
//                               op need not be commutative) and the shards that continue
//                               one fix up their elements before their first head
//   exclusive_scan_by_key     the inclusive one into scratch, then init op the previous
//                               element's (init at every segment's start)
//   reduce_by_key             the inclusive one into scratch; the values at segment ends
//                               packed as copy_if's, the first keys as unique_copy's
//   gather, scatter,          each shard's device gets a copy of the whole sharded
//   lower_bound, upper_bound,   vector it looks up (gather: the input; scatter: the input
//   binary_search               and the map; the searches: the haystack) and works on it
//                               alone: simple and one pass, at the cost of K copies of
//                               that vector moved and held (cudaMemcpyPeerAsync)
//
// Never run on a GPU: compile-checked under nvcc only.

#include <thrust/iterator/counting_iterator.h>

#include <array>
#include <cstddef>
#include <cub/device/device_reduce.cuh>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../../functional.hpp"
#include "../../gpu/error.hpp"
#include "../../gpu/memory.hpp"
#include "../../gpu/multi_gpu_policy.hpp"
#include "../../gpu/sharded_vector.hpp"
#include "../cuda/algorithms.hpp"
#include "../shard_combine.hpp"
#include "backend.hpp"

namespace dpar::detail::multi_gpu {

template <class Pred>
struct one_if {
  Pred pred;
  template <class X>
  __host__ __device__ std::size_t operator()(const X& x) const {
    return pred(x) ? 1 : 0;
  }
};

// scatter: out[map[i] - lo] = in[i] for the map entries in [lo, hi), the
// output shard's global positions.
template <class T, class I>
struct scatter_into {
  const T* in;
  const I* map;
  T* out;
  std::size_t lo, hi;
  __host__ __device__ void operator()(std::size_t i) const {
    const auto m = static_cast<std::size_t>(map[i]);
    if (m >= lo && m < hi) out[m - lo] = in[i];
  }
};

// x = op(carry, x): a shard's elements in the segment that the shards before
// it began.
template <class V, class Op>
struct carry_left {
  V carry;
  Op op;
  __host__ __device__ void operator()(V& x) const { x = static_cast<V>(op(carry, x)); }
};

// The exclusive scan by key from the inclusive one (incl, carried across the
// shards): init where a segment starts, else init op incl[j - 1]; a shard's
// first element continues the shards before it when it has a carry (their
// segment's reduction so far).
template <class K, class V, class KeyEq, class Op>
struct exclusive_from_inclusive {
  const K* keys;
  const V* incl;
  KeyEq key_eq;
  Op op;
  V init, carry;
  bool carried;
  __host__ __device__ V operator()(std::size_t j) const {
    if (j == 0) return carried ? static_cast<V>(op(init, carry)) : init;
    return key_eq(keys[j - 1], keys[j]) ? static_cast<V>(op(init, incl[j - 1])) : init;
  }
};

struct algorithms {
  template <class T, class U>
  static void fill(const multi_gpu_policy& p, sharded_vector<T>& v, const U& value) {
    check_layout(p, v, "dpar::fill", "range");
    for (std::size_t i = 0; i < v.shard_count(); ++i) {
      const auto& s = v.shard_at(i);
      if (s.size) cuda::algorithms::fill(p.entry(i), s.begin(), s.end(), value);
    }
  }

  // v[i] = value + i over the whole vector.
  template <class T>
  static void iota(const multi_gpu_policy& p, sharded_vector<T>& v, const T& value) {
    check_layout(p, v, "dpar::iota", "range");
    for (std::size_t i = 0; i < v.shard_count(); ++i) {
      const auto& s = v.shard_at(i);
      if (s.size) cuda::algorithms::iota(p.entry(i), s.begin(), s.end(), value, s.offset);
    }
  }

  template <class T, class Pred>
  static std::size_t count_if(const multi_gpu_policy& p, const sharded_vector<T>& v, Pred pred) {
    return backend::sharded_transform_reduce(p, v, std::size_t{0}, std::plus<std::size_t>{}, one_if<Pred>{pred});
  }

  // The global position of the first element pred holds for, v.size() if none.
  template <class T, class Pred>
  static std::size_t find_if(const multi_gpu_policy& p, const sharded_vector<T>& v, Pred pred) {
    check_layout(p, v, "dpar::find_if", "input");
    return first_index(v.shards(), [&](const shard<T>& s, std::size_t) {
      return cuda::index_if<const T*, Pred>{s.data, pred, s.size};
    });
  }

  // The global position of the first pair pred fails for, a.size() if none.
  template <class T1, class T2, class Pred>
  static std::size_t mismatch(const multi_gpu_policy& p, const sharded_vector<T1>& a, const sharded_vector<T2>& b,
                              Pred pred) {
    check_same_layout(p, a, b, "dpar::mismatch or dpar::equal", "first input", "second input");
    return first_index(a.shards(), [&](const shard<T1>& s, std::size_t i) {
      return cuda::index_unless_equal<const T1*, const T2*, Pred>{s.data, b.shard_at(i).data, pred, s.size};
    });
  }

  // The global positions of the extremes `want` under comp (v.size() for an
  // empty v): each shard's own by dpar's ordered reduce over its indices
  // (pick_extreme; the order kept, so ties go as std's), all queued before
  // any is read; then their elements are read to the host and compared there
  // in shard order (extreme_position).
  template <std::size_t W, class T, class Comp>
  static std::array<std::size_t, W> extreme_elements(const multi_gpu_policy& p, const sharded_vector<T>& v, Comp comp,
                                                     std::array<derived::extreme, W> want) {
    cuda::require_device_value<T>();
    check_layout(p, v, "dpar::min_element, max_element or minmax_element", "input");
    const std::size_t k = v.shard_count();
    std::vector<std::array<queued_partial, W>> found(k);
    for (std::size_t i = 0; i < k; ++i) {
      const auto& s = v.shard_at(i);
      if (s.size == 0) continue;
      cuda::device_scope scope(s.device);
      for (std::size_t w = 0; w < W; ++w)
        found[i][w] = cuda::ordered_reduce_enqueue<std::size_t>(
            s.device, s.stream, s.size, nullptr, cuda::pick_extreme<const T*, Comp>{s.data, comp, want[w]},
            cuda::same_index{});
    }
    const auto sizes = sizes_of(v.shards());
    std::array<std::size_t, W> result{};
    for (std::size_t w = 0; w < W; ++w) {
      std::vector<std::size_t> local(k);
      std::vector<T> values(k);
      for (std::size_t i = 0; i < k; ++i) {
        if (sizes[i] == 0) continue;
        local[i] = found[i][w]->template fetch<std::size_t>();
        values[i] = element_at(v.shard_at(i), local[i]);
      }
      result[w] = shards::extreme_position<T>(local, values, sizes, comp, want[w].largest, want[w].last);
    }
    return result;
  }

  // The elements pred holds for (fails for, if `negate`) to the front of
  // out, in order; returns how many. out keeps its length; the elements
  // past the kept ones are left as they were. out may be in.
  template <class T, class Pred>
  static std::size_t copy_if(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<T>& out,
                             Pred pred, bool negate, const char* algorithm) {
    check_same_layout(p, in, out, algorithm);
    auto chosen = select_each(p, in, pred, negate, algorithm);
    return place(in, out, chosen, 0);
  }

  // in's elements pred holds for to the front of out_true, the others to the
  // front of out_false, each in order; returns both counts. Both selections
  // of every shard are queued before any count is read. The three
  // sharded_vectors must differ.
  template <class T, class Pred>
  static std::pair<std::size_t, std::size_t> partition_copy(const multi_gpu_policy& p, const sharded_vector<T>& in,
                                                            sharded_vector<T>& out_true, sharded_vector<T>& out_false,
                                                            Pred pred) {
    const char* const name = "dpar::partition_copy";
    check_same_layout(p, in, out_true, name, "input", "output for true");
    check_same_layout(p, in, out_false, name, "input", "output for false");
    if (same(in, out_true) || same(in, out_false) || same(out_true, out_false))
      throw std::invalid_argument(std::string(name) + ": the input and the two outputs must be different sharded_vectors");
    auto yes = select_each(p, in, pred, false, name), no = select_each(p, in, pred, true, name);
    return {place(in, out_true, yes, 0), place(in, out_false, no, 0)};
  }

  // In place: the elements pred holds for to the front of v, in order, the
  // others after them, in order; returns how many hold. Each shard selects
  // both into scratch buffers (twice its size in temporary storage), and
  // every count is read before anything is copied back.
  template <class T, class Pred>
  static std::size_t stable_partition(const multi_gpu_policy& p, sharded_vector<T>& v, Pred pred) {
    check_layout(p, v, "dpar::stable_partition", "range");
    auto yes = select_each(p, v, pred, false, "dpar::stable_partition");
    auto no = select_each(p, v, pred, true, "dpar::stable_partition");
    yes.wait();
    no.wait();
    const std::size_t kept = place(v, v, yes, 0);
    place(v, v, no, kept);
    return kept;
  }

  // The first element of each run of equal ones to the front of out, as
  // copy_if; a shard's first element is compared with the last of the
  // nearest earlier shard holding any.
  template <class T, class Pred>
  static std::size_t unique_copy(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<T>& out,
                                 Pred pred) {
    check_same_layout(p, in, out, "dpar::unique or dpar::unique_copy");
    const auto before = neighbours(in.shards(), false);
    return pack(p, in, out, "dpar::unique or dpar::unique_copy", [&](std::size_t i, const shard<T>& s, T* scratch) {
      return cuda::algorithms::queue_unique_copy(p.entry(i), s.data, s.size, scratch, pred,
                                                 before[i] ? before[i]->template as<T>() : nullptr);
    });
  }

  // out[i] = op(in[i], in[i - 1]), out[0] = in[0] over the whole vector:
  // each shard's first element is fixed up with the last of the nearest
  // earlier shard holding any. in and out must differ (as std's ranges).
  template <class T, class U, class Op>
  static void adjacent_difference(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<U>& out,
                                  Op op) {
    check_same_layout(p, in, out, "dpar::adjacent_difference");
    if (same(in, out))
      throw std::invalid_argument("dpar::adjacent_difference: the input and output sharded_vectors must differ");
    const auto before = neighbours(in.shards(), false);
    for (std::size_t i = 0; i < in.shard_count(); ++i) {
      const auto &s = in.shard_at(i), &o = out.shard_at(i);
      if (s.size == 0) continue;
      cuda::algorithms::adjacent_difference(p.entry(i), s.begin(), s.end(), o.begin(), op);
      if (before[i])  // out[0] = op(in[0], the previous shard's last)
        cuda::backend::transform(p.entry(i), s.data, s.data + 1, before[i]->template as<T>(), o.data, op);
    }
  }

  // out[i] = input[map[i]], where the indices are global positions in input:
  // each map shard's device gets a copy of the whole input (replicas) and
  // gathers from it. input and out must differ.
  template <class I, class T>
  static void gather(const multi_gpu_policy& p, const sharded_vector<I>& map, const sharded_vector<T>& input,
                     sharded_vector<T>& out) {
    check_same_layout(p, map, out, "dpar::gather", "map", "output");
    check_layout(p, input, "dpar::gather", "input");
    if (same(input, out)) throw std::invalid_argument("dpar::gather: the input and output sharded_vectors must differ");
    const auto whole = replicas(input, map.shards());
    for (std::size_t i = 0; i < map.shard_count(); ++i) {
      const auto& m = map.shard_at(i);
      if (m.size)
        cuda::algorithms::gather(p.entry(i), m.begin(), m.end(), whole[i]->template as<const T>(),
                                 out.shard_at(i).begin());
    }
  }

  // out[map[i]] = in[i], where the indices are global positions in out: each
  // output shard's device gets copies of the whole of in and map (replicas)
  // and writes the entries that fall in its shard. in and out must differ.
  template <class T, class I>
  static void scatter(const multi_gpu_policy& p, const sharded_vector<T>& in, const sharded_vector<I>& map,
                      sharded_vector<T>& out) {
    check_same_layout(p, in, map, "dpar::scatter", "input", "map");
    check_layout(p, out, "dpar::scatter", "output");
    if (same(in, out)) throw std::invalid_argument("dpar::scatter: the input and output sharded_vectors must differ");
    if (in.empty()) return;
    const auto values = replicas(in, out.shards()), indices = replicas(map, out.shards());
    for (std::size_t i = 0; i < out.shard_count(); ++i) {
      const auto& o = out.shard_at(i);
      if (o.size == 0) continue;
      thrust::counting_iterator<std::size_t> index(0);
      cuda::backend::for_each(p.entry(i), index, index + in.size(),
                              scatter_into<T, I>{values[i]->template as<const T>(),
                                                 indices[i]->template as<const I>(), o.data, o.offset,
                                                 o.offset + o.size});
    }
  }

  // For every needle its answer in the whole sorted haystack (lower_bound,
  // upper_bound: a global position; binary_search: whether it is there):
  // each needle shard's device gets a copy of the whole haystack (replicas)
  // and runs Thrust's vectorized search on it.
  template <derived::search_kind Kind, class T, class U, class R, class Comp>
  static void search(const multi_gpu_policy& p, const sharded_vector<T>& haystack, const sharded_vector<U>& needles,
                     sharded_vector<R>& out, Comp comp) {
    const char* const name = cuda::search_name<Kind>;
    check_layout(p, haystack, name, "haystack");
    check_same_layout(p, needles, out, name, "needles", "output");
    const auto whole = replicas(haystack, needles.shards());
    for (std::size_t i = 0; i < needles.shard_count(); ++i) {
      const auto& s = needles.shard_at(i);
      if (s.size == 0) continue;
      const T* hay = whole[i]->template as<const T>();
      cuda::algorithms::search<Kind>(p.entry(i), hay, hay + haystack.size(), s.begin(), s.end(),
                                     out.shard_at(i).begin(), comp);
    }
  }

  // out = the inclusive scan by key of values: segments are runs of keys
  // equal under key_eq and may cross shards; op need not be commutative.
  // 1. per shard, CUB's scan by key, its first global head (the least index
  //    where run_head holds, its first key compared with the previous
  //    shard's last) and a copy of its last result, all queued before any
  //    wait; 2. the host folds those in shard order (segment_carries); 3. a
  //    shard that continues the segment of the shards before it puts its
  //    carry on the left of its elements before its head. Returns the carries.
  template <class K, class V, class KeyEq, class Op>
  static std::vector<std::optional<V>> inclusive_scan_by_key(const multi_gpu_policy& p, const sharded_vector<K>& keys,
                                                             const sharded_vector<V>& values, sharded_vector<V>& out,
                                                             KeyEq key_eq, Op op, const char* algorithm) {
    cuda::require_device_value<V>();
    check_same_layout(p, keys, values, algorithm, "keys", "values");
    check_same_layout(p, keys, out, algorithm, "keys", "output");
    const std::size_t k = keys.shard_count();
    const auto before = neighbours(keys.shards(), false);
    std::vector<std::unique_ptr<cuda::temp_buffer>> last(k);
    for (std::size_t i = 0; i < k; ++i) {
      const auto& s = keys.shard_at(i);
      const auto& o = out.shard_at(i);
      if (s.size == 0) continue;
      cuda::algorithms::scan_by_key<true>(p.entry(i), s.begin(), s.end(), values.shard_at(i).begin(), o.begin(), V{},
                                          key_eq, op);
      last[i] = copy_of(o, o.size - 1);
    }
    using heads = cuda::index_if<thrust::counting_iterator<std::size_t>, cuda::run_head<const K*, KeyEq>>;
    const auto head = first_indices(keys.shards(), [&](const shard<K>& s, std::size_t i) {
      return heads{thrust::counting_iterator<std::size_t>(0),
                   {s.data, key_eq, before[i] ? before[i]->template as<K>() : nullptr},
                   s.size};
    });
    std::vector<V> lasts(k);
    for (std::size_t i = 0; i < k; ++i)
      if (last[i]) lasts[i] = last[i]->template fetch<V>();
    auto carry = shards::segment_carries<V>(head, sizes_of(keys.shards()), lasts, op);
    for (std::size_t i = 0; i < k; ++i) {
      const auto& o = out.shard_at(i);
      if (carry[i]) cuda::backend::for_each(p.entry(i), o.data, o.data + head[i], carry_left<V, Op>{*carry[i], op});
    }
    return carry;
  }

  // The exclusive scan by key, init at the start of every segment: the
  // inclusive one into a scratch sharded_vector, then per shard
  // exclusive_from_inclusive into out.
  template <class K, class V, class KeyEq, class Op>
  static void exclusive_scan_by_key(const multi_gpu_policy& p, const sharded_vector<K>& keys,
                                    const sharded_vector<V>& values, sharded_vector<V>& out, V init, KeyEq key_eq,
                                    Op op) {
    const char* const name = "dpar::exclusive_scan_by_key";
    check_same_layout(p, keys, out, name, "keys", "output");
    sharded_vector<V> incl(p, keys.size(), no_fill_t{});
    const auto carry = inclusive_scan_by_key(p, keys, values, incl, key_eq, op, name);
    for (std::size_t i = 0; i < keys.shard_count(); ++i) {
      const auto& s = keys.shard_at(i);
      if (s.size == 0) continue;
      thrust::counting_iterator<std::size_t> index(0);
      cuda::backend::transform(p.entry(i), index, index + s.size, out.shard_at(i).begin(),
                               exclusive_from_inclusive<K, V, KeyEq, Op>{s.data, incl.shard_at(i).data, key_eq, op,
                                                                         init, carry[i].value_or(init),
                                                                         carry[i].has_value()});
    }
  }

  // Each segment's first key to the front of keys_out and its reduction to
  // the front of values_out, in order; returns the number of segments. The
  // inclusive scan by key into a scratch sharded_vector, whose values at the
  // segments' ends (run_tail, a shard's last key compared with the next
  // shard's first) are packed as copy_if's; the keys are unique_copy's.
  template <class K, class V, class KeyEq, class Op>
  static std::size_t reduce_by_key(const multi_gpu_policy& p, const sharded_vector<K>& keys,
                                   const sharded_vector<V>& values, sharded_vector<K>& keys_out,
                                   sharded_vector<V>& values_out, KeyEq key_eq, Op op) {
    const char* const name = "dpar::reduce_by_key";
    check_same_layout(p, keys, keys_out, name, "keys", "keys output");
    check_same_layout(p, keys, values_out, name, "keys", "values output");
    sharded_vector<V> incl(p, keys.size(), no_fill_t{});
    inclusive_scan_by_key(p, keys, values, incl, key_eq, op, name);
    const auto after = neighbours(keys.shards(), true);
    const std::size_t segments = pack(p, incl, values_out, name, [&](std::size_t i, const shard<V>& s, V* scratch) {
      return cuda::algorithms::queue_run_tails(p.entry(i), s.data, s.size, keys.shard_at(i).data, key_eq,
                                               after[i] ? after[i]->template as<K>() : nullptr, scratch);
    });
    unique_copy(p, keys, keys_out, key_eq);
    return segments;
  }

 private:
  // What every shard selected: its kept elements in a scratch buffer on its
  // device and, once wait() has read them, how many.
  struct selection {
    std::vector<std::unique_ptr<cuda::temp_buffer>> kept, counted;
    std::vector<std::size_t> counts;
    // Reading a count waits for its shard's stream, so all selections
    // queued on the shards before are done too (out may be in).
    void wait() {
      if (counts.size() == kept.size()) return;
      counts.assign(kept.size(), 0);
      for (std::size_t i = 0; i < kept.size(); ++i)
        if (counted[i]) counts[i] = cuda::algorithms::selected_count(*counted[i]);
    }
  };

  // select(i, shard, scratch) queues shard i's selection into scratch (on
  // its device, room for the shard) and returns its count (queue_copy_if's);
  // every shard's is queued before any count is read.
  template <class T, class Select>
  static selection select_with(const sharded_vector<T>& in, Select select) {
    const std::size_t k = in.shard_count();
    selection chosen{std::vector<std::unique_ptr<cuda::temp_buffer>>(k),
                     std::vector<std::unique_ptr<cuda::temp_buffer>>(k), {}};
    for (std::size_t i = 0; i < k; ++i) {
      const auto& s = in.shard_at(i);
      if (s.size == 0) continue;
      chosen.kept[i] = std::make_unique<cuda::temp_buffer>(s.device, s.size * sizeof(T), s.stream);
      chosen.counted[i] = select(i, s, chosen.kept[i]->template as<T>());
    }
    return chosen;
  }

  // The elements pred holds for (fails for, if `negate`), per shard.
  template <class T, class Pred>
  static selection select_each(const multi_gpu_policy& p, const sharded_vector<T>& in, Pred pred, bool negate,
                               const char* algorithm) {
    return select_with(in, [&](std::size_t i, const shard<T>& s, T* scratch) {
      return cuda::algorithms::queue_copy_if(p.entry(i), s.data, s.size, scratch, pred, negate, algorithm);
    });
  }

  // Packs what every shard selected (wait() first) into out from global
  // position `start` on, in shard order; returns how many. The counts place
  // every shard's elements (packing_pieces), and each shard copies its
  // pieces with cudaMemcpyPeerAsync on its stream after the destination's
  // stream, which then waits for it.
  template <class T>
  static std::size_t place(const sharded_vector<T>& in, sharded_vector<T>& out, selection& chosen,
                           std::size_t start) {
    chosen.wait();
    const auto pieces = shards::packing_pieces(chosen.counts, sizes_of(out.shards()), start);
    for (const shards::piece& c : pieces) {
      const auto &from = in.shard_at(c.from), &to = out.shard_at(c.to);
      if (to.stream != from.stream)
        cuda::stream_wait(from.stream, to.device, to.stream, "ordering a compaction's copy after its destination's work");
      cuda::device_scope scope(from.device);
      cuda::check(cudaMemcpyPeerAsync(to.data + c.to_at, to.device, chosen.kept[c.from]->template as<T>() + c.from_at,
                                      from.device, c.count * sizeof(T), from.stream),
                  "cudaMemcpyPeerAsync (kept elements)", from.device);
    }
    for (const shards::piece& c : pieces) {
      const auto &from = in.shard_at(c.from), &to = out.shard_at(c.to);
      if (to.stream != from.stream)
        cuda::stream_wait(to.stream, from.device, from.stream, "ordering work on a shard after a compaction's copies");
    }
    std::size_t total = 0;
    for (std::size_t c : chosen.counts) total += c;
    return total;  // the caller's selection frees its scratch in the order of its shards' streams, after the copies
  }

  // Packs what every shard selects (select_with) at the front of out.
  template <class T, class Select>
  static std::size_t pack(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<T>& out,
                          const char* algorithm, Select select) {
    check_same_layout(p, in, out, algorithm);
    auto chosen = select_with(in, select);
    return place(in, out, chosen, 0);
  }

  template <class T, class U>
  static bool same(const sharded_vector<T>& a, const sharded_vector<U>& b) {
    return static_cast<const void*>(&a) == static_cast<const void*>(&b);
  }

  template <class T>
  static std::vector<std::size_t> sizes_of(std::span<const shard<T>> shards) {
    std::vector<std::size_t> sizes;
    for (const auto& s : shards) sizes.push_back(s.size);
    return sizes;
  }

  // Element `at` of a shard, read to the host after the shard's queued work.
  template <class T>
  static T element_at(const shard<T>& s, std::size_t at) {
    cuda::device_scope scope(s.device);
    T value{};
    cuda::check(cudaMemcpyAsync(&value, s.data + at, sizeof(T), cudaMemcpyDeviceToHost, s.stream),
                "cudaMemcpyAsync (an element to the host)", s.device);
    cuda::check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize", s.device);
    return value;
  }

  // A copy of element `at` of a shard in temporary storage on its device,
  // queued on its stream (->fetch<T>() waits for it).
  template <class T>
  static std::unique_ptr<cuda::temp_buffer> copy_of(const shard<T>& s, std::size_t at) {
    auto copy = std::make_unique<cuda::temp_buffer>(s.device, sizeof(T), s.stream);
    cuda::device_scope scope(s.device);
    cuda::check(cudaMemcpyAsync(copy->template as<T>(), s.data + at, sizeof(T), cudaMemcpyDeviceToDevice, s.stream),
                "cudaMemcpyAsync (an element of a shard)", s.device);
    return copy;
  }

  // For each shard, a copy on its device of the element before its first
  // (the last of the nearest earlier shard holding any; previous_nonempty)
  // or, with `after`, of the one after its last (the first of the nearest
  // later one; next_nonempty), or none: copied on the shard's stream after
  // the source's stream.
  template <class T>
  static std::vector<std::unique_ptr<cuda::temp_buffer>> neighbours(std::span<const shard<T>> shards, bool after) {
    const auto sizes = sizes_of(shards);
    const auto source = after ? shards::next_nonempty(sizes) : shards::previous_nonempty(sizes);
    std::vector<std::unique_ptr<cuda::temp_buffer>> copies(shards.size());
    for (std::size_t i = 0; i < shards.size(); ++i) {
      if (!source[i]) continue;
      const shard<T>&from = shards[*source[i]], &to = shards[i];
      copies[i] = std::make_unique<cuda::temp_buffer>(to.device, sizeof(T), to.stream);
      if (from.stream != to.stream)
        cuda::stream_wait(to.stream, from.device, from.stream, "ordering the copy of a neighbouring shard's element");
      cuda::device_scope scope(to.device);
      cuda::check(cudaMemcpyPeerAsync(copies[i]->as<T>(), to.device, after ? from.data : from.data + from.size - 1,
                                      from.device, sizeof(T), to.stream),
                  "cudaMemcpyPeerAsync (a neighbouring shard's element)", to.device);
    }
    return copies;
  }

  // A copy of the whole of v on the device of each shard of `at` that holds
  // any element (none for the others), queued on that shard's stream after
  // v's streams; v's streams then wait for the copies, so that later work on
  // v cannot overwrite what they still read. The cost: v.size() elements of
  // temporary storage on each such device and every shard of v copied to
  // each (cudaMemcpyPeerAsync), so a call moves about K times v.
  template <class T, class U>
  static std::vector<std::unique_ptr<cuda::temp_buffer>> replicas(const sharded_vector<T>& v,
                                                                  std::span<const shard<U>> at) {
    std::vector<std::unique_ptr<cuda::temp_buffer>> whole(at.size());
    for (std::size_t i = 0; i < at.size(); ++i) {
      const shard<U>& to = at[i];
      if (to.size == 0) continue;
      whole[i] = std::make_unique<cuda::temp_buffer>(to.device, v.size() * sizeof(T), to.stream);
      for (const shard<T>& from : v.shards()) {
        if (from.size == 0) continue;
        if (from.stream != to.stream)
          cuda::stream_wait(to.stream, from.device, from.stream, "ordering a copy of a sharded_vector after its work");
        cuda::device_scope scope(to.device);
        cuda::check(cudaMemcpyPeerAsync(whole[i]->template as<T>() + from.offset, to.device, from.data, from.device,
                                        from.size * sizeof(T), to.stream),
                    "cudaMemcpyPeerAsync (a copy of a whole sharded_vector)", to.device);
      }
    }
    for (const shard<T>& from : v.shards())
      for (std::size_t i = 0; i < at.size(); ++i)
        if (whole[i] && from.size && at[i].stream != from.stream)
          cuda::stream_wait(from.stream, at[i].device, at[i].stream, "ordering work on a shard after copies of it");
    return whole;
  }

  // Per shard, the first index that its functor, make(shard, i), maps to
  // less than the shard's size, or the size if none: all queued before any
  // is read.
  template <class T, class Make>
  static std::vector<std::size_t> first_indices(std::span<const shard<T>> shards, Make make) {
    std::vector<queued_partial> found(shards.size());
    for (std::size_t i = 0; i < shards.size(); ++i) {
      const shard<T>& s = shards[i];
      if (s.size == 0) continue;
      const auto f = make(s, i);
      found[i] = queue_partial<std::size_t>(s.device, s.stream, s.size, minimum<std::size_t>{}, f,
                                            [&](void* temp, std::size_t& bytes, std::size_t* out, auto count,
                                                std::size_t id) {
                                              thrust::counting_iterator<decltype(count)> index(0);
                                              return cub::DeviceReduce::TransformReduce(
                                                  temp, bytes, index, out, count, minimum<std::size_t>{}, f, id,
                                                  s.stream);
                                            });
    }
    std::vector<std::size_t> local(shards.size());
    for (std::size_t i = 0; i < shards.size(); ++i) local[i] = found[i] ? found[i]->fetch<std::size_t>() : 0;
    return local;
  }

  // The global position of the first such index; the sum of the sizes if none.
  template <class T, class Make>
  static std::size_t first_index(std::span<const shard<T>> shards, Make make) {
    return shards::first_match(first_indices(shards, make), sizes_of(shards));
  }
};

}  // namespace dpar::detail::multi_gpu
