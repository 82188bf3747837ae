#pragma once
// The algorithms of dpar/algorithm/ that dpar::gpu runs (see README's table),
// each a CUB or Thrust call on the policy's device and stream, with the checks
// of the other GPU algorithms (device iterators, memory the device can use).
// User functions (predicates, comparators, ops) must be __host__ __device__.
//
//   copy_if, remove_copy_if               cub::DeviceSelect::If
//   count, count_if, find, find_if,       one reduce over the indices (cub::DeviceReduce::
//   any_of, all_of, none_of                 TransformReduce, the backend's)
//   min_element, max_element,             an ordered reduce over the indices keeping the
//   minmax_element                          first (last) extreme under comp (the backend's)
//   reduce_by_key                         thrust::reduce_by_key (CUB's ReduceByKey takes no key
//                                           predicate)
//   inclusive/exclusive_scan_by_key       cub::DeviceScan::InclusiveScanByKey / ExclusiveScanByKey
//   lower_bound, upper_bound,             thrust's vectorized searches
//   binary_search
//   fill, copy                            the backend's transform
// Ops need not be commutative: CUB's scans by key and Thrust's reduce_by_key
// keep operand order.

#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/binary_search.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/reduce.h>
#include <thrust/system/system_error.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <utility>

#include "../../functional.hpp"
#include "../../gpu/error.hpp"
#include "../../gpu/memory.hpp"
#include "../../gpu/policy.hpp"
#include "../derived.hpp"
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
    const bool later_wins = want.largest ? (want.last ? !comp(in[b], in[a]) : bool(comp(in[a], in[b])))
                                         : (want.last ? !comp(in[a], in[b]) : bool(comp(in[b], in[a])));
    return later_wins ? b : a;
  }
};

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
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const launch l(p, algorithm);
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return d_first;
    auto in = l.arg(first, "input");
    auto out = l.arg(d_first, "output");
    temp_buffer selected(l.device, sizeof(std::int64_t), l.stream);
    keep_if<Pred> keep{pred, negate};
    l.run_with_storage(n, "cub::DeviceSelect::If", [&](void* temp, std::size_t& bytes, auto count) {
      auto* kept = selected.as<decltype(count)>();
      return cub::DeviceSelect::If(temp, bytes, in, out, kept, count, keep, l.stream);
    });
    std::int64_t kept = 0;
    with_count(n, [&](auto count) { kept = static_cast<std::int64_t>(selected.fetch<decltype(count)>()); });
    return advance(d_first, static_cast<std::size_t>(kept));
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
    const char* const name = Kind == kind::lower_bound   ? "dpar::lower_bound"
                             : Kind == kind::upper_bound ? "dpar::upper_bound"
                                                         : "dpar::binary_search";
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
