#pragma once
// The algorithms of dpar/algorithm/ that dpar::gpu runs (see README's table),
// each a CUB or Thrust call on the policy's device and stream, with the checks
// of the other GPU algorithms (device iterators, memory the device can use).
// User functions (predicates, comparators, ops) must be __host__ __device__.
//
//   copy_if, remove_copy_if               cub::DeviceSelect::If
//   partition_copy                        cub::DeviceSelect::If twice (kept, then the rest)
//   remove_if, stable_partition, unique   into a scratch buffer (DeviceSelect::If, Flagged),
//                                           copied back with the backend's transform
//   unique_copy                           cub::DeviceSelect::Flagged, flags computed from the
//                                           pairs of neighbours (CUB's Unique takes no predicate)
//   count, count_if, find, find_if,       one reduce over the indices (cub::DeviceReduce::
//   any_of, all_of, none_of                 TransformReduce, the backend's)
//   min_element, max_element,             an ordered reduce over the indices keeping the
//   minmax_element                          first (last) extreme under comp (the backend's)
//   equal, mismatch                       the least index of a differing pair (as find_if)
//   reduce_by_key                         thrust::reduce_by_key (CUB's ReduceByKey takes no key
//                                           predicate)
//   inclusive/exclusive_scan_by_key       cub::DeviceScan::InclusiveScanByKey / ExclusiveScanByKey
//   lower_bound, upper_bound,             thrust's vectorized searches
//   binary_search
//   copy, iota, gather                    the backend's transform (cub::DeviceTransform), iota
//                                           and gather over indices
//   fill, scatter                         the backend's for_each (cub::DeviceFor), scatter
//                                           over indices
//   adjacent_difference                   cub::DeviceAdjacentDifference::SubtractLeftCopy
//   transform_inclusive_scan,             the backend's scans (cub::DeviceScan) over a
//   transform_exclusive_scan                thrust::transform_iterator
// Ops need not be commutative: CUB's scans by key and Thrust's reduce_by_key
// keep operand order.

#include <cub/device/device_adjacent_difference.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/binary_search.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/reduce.h>
#include <thrust/system/system_error.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "../../functional.hpp"
#include "../../gpu/error.hpp"
#include "../../gpu/memory.hpp"
#include "../../gpu/policy.hpp"
#include "../derived.hpp"
#include "../shard_combine.hpp"
#include "backend.hpp"
#include "iterators.hpp"

namespace dpar::detail::cuda {

// ---- device functors over element indices ---------------------------------

template <class Pred>
struct keep_if {  // pred(x), or !pred(x) if `negate`
  Pred pred;
  bool negate;
  template <class X>
  __host__ __device__ bool operator()(const X& x) const {
    return bool(pred(x)) != negate;
  }
};

template <class It, class Pred>
struct count_one {  // 1 where pred holds at index i
  It in;
  Pred pred;
  __host__ __device__ std::size_t operator()(std::size_t i) const { return pred(in[i]) ? 1 : 0; }
};

template <class It, class Pred>
struct index_if {  // i where pred holds, else n (the least is the first)
  It in;
  Pred pred;
  std::size_t n;
  __host__ __device__ std::size_t operator()(std::size_t i) const { return pred(in[i]) ? i : n; }
};

template <class T>
struct equal_to_value {
  T value;
  template <class X>
  __host__ __device__ bool operator()(const X& x) const {
    return x == value;
  }
};

template <class It1, class It2, class Pred>
struct index_unless_equal {  // i where the pair differs, else n (the least is the first)
  It1 in1;
  It2 in2;
  Pred pred;
  std::size_t n;
  __host__ __device__ std::size_t operator()(std::size_t i) const { return pred(in1[i], in2[i]) ? n : i; }
};

template <class It, class Pred>
struct run_head {  // whether element i is not a repeat of the one before it
  It in;
  Pred pred;
  const std::iter_value_t<It>* before;  // the element before in[0] (multi_gpu: the previous shard's last), or null
  template <class I>
  __host__ __device__ bool operator()(I i) const {
    if (i == 0) return before == nullptr || !pred(*before, in[0]);
    return !pred(in[i - 1], in[i]);
  }
};

template <class It, class Pred>
struct run_tail {  // whether element i ends a run of equal ones (under pred)
  It in;
  Pred pred;
  std::size_t n;
  const std::iter_value_t<It>* after;  // the element after in[n - 1] (multi_gpu: the next shard's first), or null
  template <class I>
  __host__ __device__ bool operator()(I i) const {
    const auto j = static_cast<std::size_t>(i);
    if (j + 1 == n) return after == nullptr || !pred(in[j], *after);
    return !pred(in[j], in[j + 1]);
  }
};

template <class T>
struct assign_value {
  T value;
  template <class X>
  __host__ __device__ void operator()(X& x) const {
    x = value;
  }
};

template <class T>
struct value_plus_index {  // iota: value + i, where i counts from the shard's offset
  T value;
  __host__ __device__ T operator()(std::size_t i) const { return static_cast<T>(value + static_cast<T>(i)); }
};

template <class It>
struct gather_from {
  It in;
  template <class M>
  __host__ __device__ std::iter_value_t<It> operator()(const M& m) const {
    return in[m];
  }
};

template <class In, class Map, class Out>
struct scatter_to {
  In in;
  Map map;
  Out out;
  __host__ __device__ void operator()(std::size_t i) const { out[map[i]] = in[i]; }
};

struct same_index {
  __host__ __device__ std::size_t operator()(std::size_t i) const { return i; }
};

// Of indices a < b (a fold in sequence order), the one whose element wins as
// `want` says under comp.
template <class It, class Comp>
struct pick_extreme {
  It in;
  Comp comp;
  derived::extreme want;
  __host__ __device__ std::size_t operator()(std::size_t a, std::size_t b) const {
    return shards::later_wins(comp, in[a], in[b], want.largest, want.last) ? b : a;
  }
};

template <derived::search_kind Kind>
inline constexpr const char* search_name = Kind == derived::search_kind::lower_bound   ? "dpar::lower_bound"
                                           : Kind == derived::search_kind::upper_bound ? "dpar::upper_bound"
                                                                                       : "dpar::binary_search";

// Thrust reports errors as thrust::system_error; dpar's are cuda_error,
// naming the algorithm and the device.
template <class F>
decltype(auto) thrust_call(const launch& l, const char* name, F&& f) {
  try {
    return f(thrust::cuda::par_nosync.on(l.stream));
  } catch (const thrust::system_error& e) {
    throw cuda_error(name, l.device, static_cast<cudaError_t>(e.code().value()), e.what());
  }
}

struct algorithms {
  template <class In, class Out, class Pred>
  static Out copy_if(const gpu_policy& p, In first, In last, Out d_first, Pred pred, bool negate,
                     const char* algorithm) {
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return d_first;
    return advance(d_first, selected_count(*queue_copy_if(p, first, n, d_first, pred, negate, algorithm)));
  }

  // copy_if's selection of n > 0 elements, queued on the policy's stream; the
  // count lands in the returned buffer (selected_count waits for it), so
  // that multi_gpu queues every shard's before waiting for any.
  template <class In, class Out, class Pred>
  static std::unique_ptr<temp_buffer> queue_copy_if(const gpu_policy& p, In first, std::size_t n, Out d_first,
                                                    Pred pred, bool negate, const char* algorithm) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const launch l(p, algorithm);
    auto in = l.arg(first, "input");
    auto out = l.arg(d_first, "output");
    auto selected = std::make_unique<temp_buffer>(l.device, sizeof(std::int64_t), l.stream);
    keep_if<Pred> keep{pred, negate};
    l.with_storage("cub::DeviceSelect::If", [&](void* temp, std::size_t& bytes) {
      return cub::DeviceSelect::If(temp, bytes, in, out, selected->as<std::int64_t>(), static_cast<std::int64_t>(n),
                                   keep, l.stream);
    });
    return selected;
  }

  // How many elements a selection kept (waits for it).
  static std::size_t selected_count(const temp_buffer& selected) {
    return static_cast<std::size_t>(selected.fetch<std::int64_t>());
  }

  // The kept elements to out_true, the others to out_false, each in order:
  // two selections (the predicate runs twice per element, as std's parallel
  // forms allow), the same CUB instantiation as copy_if's.
  template <class In, class OutTrue, class OutFalse, class Pred>
  static std::pair<OutTrue, OutFalse> partition_copy(const gpu_policy& p, In first, In last, OutTrue out_true,
                                                     OutFalse out_false, Pred pred) {
    const OutTrue true_end = copy_if(p, first, last, out_true, pred, false, "dpar::partition_copy");
    return {true_end, copy_if(p, first, last, out_false, pred, true, "dpar::partition_copy")};
  }

  // The first element of each run of equal ones (under pred) to out.
  template <class In, class Out, class Pred>
  static Out unique_copy(const gpu_policy& p, In first, In last, Out d_first, Pred pred) {
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return d_first;
    return advance(d_first, selected_count(*queue_unique_copy(p, first, n, d_first, pred, nullptr)));
  }

  // unique_copy's selection of n > 0 elements, queued as queue_copy_if's;
  // `before` (device memory, or null) is the element before the first.
  template <class In, class Out, class Pred>
  static std::unique_ptr<temp_buffer> queue_unique_copy(const gpu_policy& p, In first, std::size_t n, Out d_first,
                                                        Pred pred, const std::iter_value_t<In>* before) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const launch l(p, "dpar::unique or dpar::unique_copy");
    auto in = l.arg(first, "input");
    auto heads = thrust::make_transform_iterator(thrust::counting_iterator<std::int64_t>(0),
                                                 run_head<decltype(in), Pred>{in, pred, before});
    return queue_flagged(l, in, heads, n, l.arg(d_first, "output"));
  }

  // The values (n > 0) at the ends of runs of equal keys (under key_eq;
  // `after`, in device memory or null, is the key after the last) to out,
  // queued as queue_copy_if's: multi_gpu's reduce_by_key takes the segments'
  // reductions from the inclusive scan by key.
  template <class V, class K, class KeyEqual>
  static std::unique_ptr<temp_buffer> queue_run_tails(const gpu_policy& p, const V* values, std::size_t n,
                                                      const K* keys, KeyEqual key_eq, const K* after, V* out) {
    const launch l(p, "dpar::reduce_by_key");
    auto tails = thrust::make_transform_iterator(thrust::counting_iterator<std::int64_t>(0),
                                                 run_tail<const K*, KeyEqual>{keys, key_eq, n, after});
    return queue_flagged(l, l.arg(values, "values"), tails, n, l.arg(out, "output"));
  }

  // cub::DeviceSelect::Flagged of n elements on l's stream; the count lands
  // in the returned buffer.
  template <class In, class Flags, class Out>
  static std::unique_ptr<temp_buffer> queue_flagged(const launch& l, In in, Flags flags, std::size_t n, Out out) {
    auto selected = std::make_unique<temp_buffer>(l.device, sizeof(std::int64_t), l.stream);
    l.with_storage("cub::DeviceSelect::Flagged", [&](void* temp, std::size_t& bytes) {
      return cub::DeviceSelect::Flagged(temp, bytes, in, flags, out, selected->as<std::int64_t>(),
                                        static_cast<std::int64_t>(n), l.stream);
    });
    return selected;
  }

  // remove_if, stable_partition and unique in place: compact(scratch) writes
  // the kept elements (stable_partition: then the rest) into a scratch buffer
  // and returns {kept, written}; the written ones are copied back by the
  // backend's transform. The same CUB instantiations as copy_if and
  // unique_copy, where CUB's in-place selections would each add their own
  // (and its partition would leave the rest reversed).
  template <class It, class Compact>
  static It compact_in_place(const gpu_policy& p, It first, It last, const char* algorithm, Compact compact) {
    using V = std::iter_value_t<It>;
    require_device_value<V>();
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return first;
    const launch l(p, algorithm);
    temp_buffer scratch(l.device, n * sizeof(V), l.stream);  // freed in the order of the stream
    V* const from = scratch.as<V>();
    const auto [kept, moved] = compact(from);
    backend::transform(p, from, from + moved, first, std::identity{});
    return advance(first, kept);
  }

  template <class It, class Pred>
  static It remove_if(const gpu_policy& p, It first, It last, Pred pred) {
    return compact_in_place(p, first, last, "dpar::remove_if", [&](auto* scratch) {
      const auto kept = static_cast<std::size_t>(copy_if(p, first, last, scratch, pred, true, "dpar::remove_if") - scratch);
      return std::pair{kept, kept};
    });
  }

  template <class It, class Pred>
  static It stable_partition(const gpu_policy& p, It first, It last, Pred pred) {
    return compact_in_place(p, first, last, "dpar::stable_partition", [&](auto* scratch) {
      auto* const true_end = copy_if(p, first, last, scratch, pred, false, "dpar::stable_partition");
      copy_if(p, first, last, true_end, pred, true, "dpar::stable_partition");
      return std::pair{static_cast<std::size_t>(true_end - scratch), static_cast<std::size_t>(last - first)};
    });
  }

  template <class It, class Pred>
  static It unique(const gpu_policy& p, It first, It last, Pred pred) {
    return compact_in_place(p, first, last, "dpar::unique", [&](auto* scratch) {
      const auto kept = static_cast<std::size_t>(unique_copy(p, first, last, scratch, pred) - scratch);
      return std::pair{kept, kept};
    });
  }

  // The op-reduction, from init, of f(i) over the indices i of [first, last),
  // where f = make(in) and in is the checked device input: each index is
  // reduced with what it holds (count_if, find_if).
  template <class It, class T, class Op, class Make>
  static T reduce_indices(const gpu_policy& p, const char* what, It first, It last, T init, Op op, Make make) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    const launch l(p, what);
    const auto n = static_cast<std::size_t>(last - first);
    auto in = l.arg(first, "input");
    thrust::counting_iterator<std::size_t> index(0);
    return backend::transform_reduce(p, index, index + n, init, op, make(in));
  }

  // The number of elements pred holds for.
  template <class It, class Pred>
  static std::size_t count_if(const gpu_policy& p, It first, It last, Pred pred) {
    return reduce_indices(p, "dpar::count_if", first, last, std::size_t{0}, std::plus<std::size_t>{},
                          [&](auto in) { return count_one<decltype(in), Pred>{in, pred}; });
  }

  template <class It, class T>
  static std::size_t count_value(const gpu_policy& p, It first, It last, const T& value) {
    require_device_value<T>();
    return count_if(p, first, last, equal_to_value<T>{value});
  }

  template <class It, class T>
  static std::size_t find_value(const gpu_policy& p, It first, It last, const T& value) {
    require_device_value<T>();
    return find_if(p, first, last, equal_to_value<T>{value});
  }

  // The first index pred holds for, or n.
  template <class It, class Pred>
  static std::size_t find_if(const gpu_policy& p, It first, It last, Pred pred) {
    const auto n = static_cast<std::size_t>(last - first);
    return reduce_indices(p, "dpar::find_if", first, last, n, minimum<std::size_t>{},
                          [&](auto in) { return index_if<decltype(in), Pred>{in, pred, n}; });
  }

  // The first index i < n where pred(first1[i], first2[i]) fails, or n.
  template <class It1, class It2, class Pred>
  static std::size_t mismatch(const gpu_policy& p, It1 first1, It2 first2, std::size_t n, Pred pred) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It1);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It2);
    const launch l(p, "dpar::equal or dpar::mismatch");
    if (n == 0) return 0;
    auto in1 = l.arg(first1, "first input");
    auto in2 = l.arg(first2, "second input");
    thrust::counting_iterator<std::size_t> index(0);
    return backend::transform_reduce(p, index, index + n, n, minimum<std::size_t>{},
                                     index_unless_equal<decltype(in1), decltype(in2), Pred>{in1, in2, pred, n});
  }

  template <class It, class T>
  static void fill(const gpu_policy& p, It first, It last, const T& value) {
    require_device_value<T>();
    backend::for_each(p, first, last, assign_value<T>{value});
  }

  // first[i] = value + (offset + i): offset is a shard's start under multi_gpu.
  template <class It, class T>
  static void iota(const gpu_policy& p, It first, It last, const T& value, std::size_t offset = 0) {
    require_device_value<T>();
    thrust::counting_iterator<std::size_t> index(offset);
    backend::transform(p, index, index + (last - first), first, value_plus_index<T>{value});
  }

  template <class Map, class In, class Out>
  static Out gather(const gpu_policy& p, Map map_first, Map map_last, In input_first, Out out) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    const launch l(p, "dpar::gather");
    if (map_first == map_last) return out;
    auto in = l.arg(input_first, "input");
    return backend::transform(p, map_first, map_last, out, gather_from<decltype(in)>{in});
  }

  template <class In, class Map, class Out>
  static void scatter(const gpu_policy& p, In first, In last, Map map_first, Out out) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Map);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const launch l(p, "dpar::scatter");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return;
    auto in = l.arg(first, "input");
    auto map = l.arg(map_first, "map");
    auto result = l.arg(out, "output");
    thrust::counting_iterator<std::size_t> index(0);
    backend::for_each(p, index, index + n,
                      scatter_to<decltype(in), decltype(map), decltype(result)>{in, map, result});
  }

  template <class In, class Out, class Op>
  static Out adjacent_difference(const gpu_policy& p, In first, In last, Out d_first, Op op) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const launch l(p, "dpar::adjacent_difference");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return d_first;
    auto in = l.arg(first, "input");
    auto out = l.arg(d_first, "output");
    l.run_with_storage(n, "cub::DeviceAdjacentDifference::SubtractLeftCopy",
                       [&](void* temp, std::size_t& bytes, auto count) {
                         return cub::DeviceAdjacentDifference::SubtractLeftCopy(temp, bytes, in, out, count, op,
                                                                                l.stream);
                       });
    return advance(d_first, n);
  }

  // The transform scans: the backend's scans of unary(first[i]), read
  // through a transform iterator over the indices that reads the checked
  // input (so unary gets the elements as transform_reduce's transform does,
  // T& and not Thrust's device_reference on device_vector iterators).
  template <class V, class In, class Out, class Op, class Unary>
  static Out transform_inclusive_scan(const gpu_policy& p, In first, In last, Out d_first, Op op, Unary unary,
                                      std::optional<V> init) {
    if (first == last) return d_first;
    auto in = transformed(p, first, unary, "dpar::transform_inclusive_scan");
    return backend::inclusive_scan<V>(p, in, in + (last - first), d_first, op, std::move(init));
  }

  template <class In, class Out, class T, class Op, class Unary>
  static Out transform_exclusive_scan(const gpu_policy& p, In first, In last, Out d_first, T init, Op op,
                                      Unary unary) {
    if (first == last) return d_first;
    auto in = transformed(p, first, unary, "dpar::transform_exclusive_scan");
    return backend::exclusive_scan(p, in, in + (last - first), d_first, std::move(init), op);
  }

  template <class In, class Unary>
  static auto transformed(const gpu_policy& p, In first, Unary unary, const char* algorithm) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    const launch l(p, algorithm);
    auto in = l.arg(first, "input");
    return thrust::make_transform_iterator(thrust::counting_iterator<std::size_t>(0),
                                           transform_at<decltype(in), Unary>{in, unary});
  }

  // The index of the extreme `want` under comp, or n for an empty range.
  template <class It, class Comp>
  static std::size_t extreme_element(const gpu_policy& p, It first, It last, Comp comp, derived::extreme want) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    const launch l(p, "dpar::min_element, max_element or minmax_element");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return 0;
    auto in = l.arg(first, "input");
    thrust::counting_iterator<std::size_t> index(1);
    return backend::transform_reduce(p, index, index + (n - 1), std::size_t{0},
                                     pick_extreme<decltype(in), Comp>{in, comp, want}, same_index{});
  }

  template <derived::search_kind Kind, class It, class Needles, class Out, class Comp>
  static Out search(const gpu_policy& p, It first, It last, Needles needles_first, Needles needles_last, Out out,
                    Comp comp) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Needles);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    using kind = derived::search_kind;
    const char* const name = search_name<Kind>;
    const launch l(p, name);
    const auto n = static_cast<std::size_t>(needles_last - needles_first);
    if (n == 0) return out;
    auto hay = l.arg(first, "haystack");
    auto hay_end = advance(hay, static_cast<std::size_t>(last - first));
    auto needles = l.arg(needles_first, "needles");
    auto result = l.arg(out, "output");
    thrust_call(l, name, [&](auto on) {
      if constexpr (Kind == kind::lower_bound)
        thrust::lower_bound(on, hay, hay_end, needles, advance(needles, n), result, comp);
      else if constexpr (Kind == kind::upper_bound)
        thrust::upper_bound(on, hay, hay_end, needles, advance(needles, n), result, comp);
      else thrust::binary_search(on, hay, hay_end, needles, advance(needles, n), result, comp);
      return 0;
    });
    return advance(out, n);
  }

  template <class KeyIt, class ValueIt, class KeyOut, class ValueOut, class KeyEqual, class Op>
  static std::pair<KeyOut, ValueOut> reduce_by_key(const gpu_policy& p, KeyIt keys_first, KeyIt keys_last,
                                                   ValueIt values_first, KeyOut keys_out, ValueOut values_out,
                                                   KeyEqual key_eq, Op op) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(KeyIt);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(ValueIt);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(KeyOut);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(ValueOut);
    const launch l(p, "dpar::reduce_by_key");
    const auto n = static_cast<std::size_t>(keys_last - keys_first);
    if (n == 0) return {keys_out, values_out};
    auto keys = l.arg(keys_first, "keys");
    auto values = l.arg(values_first, "values");
    auto k_out = l.arg(keys_out, "keys output");
    auto v_out = l.arg(values_out, "values output");
    auto ends = thrust_call(l, "thrust::reduce_by_key", [&](auto on) {
      return thrust::reduce_by_key(on, keys, advance(keys, n), values, k_out, v_out, key_eq, op);
    });
    const auto segments = static_cast<std::size_t>(ends.first - k_out);
    return {advance(keys_out, segments), advance(values_out, segments)};
  }

  // With init: exclusive, init at the start of every run of keys.
  template <bool Inclusive, class KeyIt, class ValueIt, class Out, class T, class KeyEqual, class Op>
  static Out scan_by_key(const gpu_policy& p, KeyIt keys_first, KeyIt keys_last, ValueIt values_first, Out out,
                         const T& init, KeyEqual key_eq, Op op) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(KeyIt);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(ValueIt);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    require_device_value<T>();
    const launch l(p, Inclusive ? "dpar::inclusive_scan_by_key" : "dpar::exclusive_scan_by_key");
    const auto n = static_cast<std::size_t>(keys_last - keys_first);
    if (n == 0) return out;
    auto keys = l.arg(keys_first, "keys");
    auto values = l.arg(values_first, "values");
    auto result = l.arg(out, "output");
    l.run_with_storage(n, Inclusive ? "cub::DeviceScan::InclusiveScanByKey" : "cub::DeviceScan::ExclusiveScanByKey",
                       [&](void* temp, std::size_t& bytes, auto count) {
                         if constexpr (Inclusive)
                           return cub::DeviceScan::InclusiveScanByKey(temp, bytes, keys, values, result, op, count,
                                                                      key_eq, l.stream);
                         else
                           return cub::DeviceScan::ExclusiveScanByKey(temp, bytes, keys, values, result, op, init,
                                                                      count, key_eq, l.stream);
                       });
    return advance(out, n);
  }
};

}  // namespace dpar::detail::cuda

namespace dpar::detail::derived {

// What the front doors in dpar/algorithm/ call for dpar::gpu.
template <>
struct native_algorithms<cuda::backend> {
  static constexpr bool available = true;
  using run = cuda::algorithms;
};

}  // namespace dpar::detail::derived
