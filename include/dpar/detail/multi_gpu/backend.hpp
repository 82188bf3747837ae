#pragma once
// Multi-GPU backend. Every shard's work is queued on its own stream, all
// shards before any wait, so the shards run concurrently; values are combined
// on the host in shard order.
//
//   transform, for_each  shard-local, through the single-GPU backend
//   reduce               one partial per shard (CUB, or dpar's ordered kernel
//                        for ops not known to be commutative), then
//                        init op p0 op p1 ... on the host
//   scans                1. totals of shards 0..k-2 (the last one is never needed)
//                        2. host: carry[0] = init, carry[s+1] = op(carry[s], total[s])
//                        3. per shard, CUB's scan with carry[s] as its init, which
//                           CUB puts on the left: op(carry, x). Right for
//                           non-commutative ops.
//
// The same functions on host iterators scatter the input into a
// sharded_vector, compute, and gather the output.

#include <thrust/iterator/counting_iterator.h>

#include <cstddef>
#include <cub/device/device_reduce.cuh>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../functional.hpp"
#include "../../gpu/memory.hpp"
#include "../cuda/backend.hpp"
#include "../../gpu/error.hpp"
#include "../cuda/iterators.hpp"
#include "../cuda/ordered_reduce.hpp"
#include "../../gpu/multi_gpu_policy.hpp"
#include "../../gpu/sharded_vector.hpp"

namespace dpar::detail::multi_gpu {

// A shard reduces with CUB (which wants an init) where dpar knows op's identity
// on T (functional.hpp), without putting the caller's init in every shard.
template <class Op, class T>
inline constexpr bool cub_partial_v = reorderable_v<Op, T> && has_identity<Op, T>;

// A shard's partial reduction, queued on its stream; ->fetch<T>() waits for it.
using queued_partial = std::unique_ptr<cuda::temp_buffer>;

// Queues the reduction, without init, of elem(0..n-1) (n > 0) with op.
// cub_call(temp, bytes, out, count, identity) runs the matching CUB reduction.
template <class T, class Op, class Elem, class CubCall>
queued_partial queue_partial(int device, cudaStream_t stream, std::size_t n, const Op& op, const Elem& elem,
                             CubCall cub_call) {
  cuda::device_scope scope(device);
  if constexpr (cub_partial_v<Op, T>) {
    const T id = op_identity<std::remove_cvref_t<Op>, T>::value();
    return cuda::queue_reduction<T>(device, stream, n, "cub::DeviceReduce",
                                    [&](void* temp, std::size_t& bytes, T* out, auto count) {
                                      return cub_call(temp, bytes, out, count, id);
                                    });
  } else {
    return cuda::ordered_reduce_enqueue<T>(device, stream, n, nullptr, op, elem);
  }
}

// A sharded_vector used with a policy must have been made with it (same
// streams), and inputs and outputs must have the same length.
template <class T>
void check_layout(const multi_gpu_policy& p, const sharded_vector<T>& v, const char* who, const char* what) {
  if (!(v.policy() == p))
    throw std::invalid_argument(std::string(who) + ": the " + what +
                                " sharded_vector was made with another dpar::multi_gpu policy; use the policy it was "
                                "made with (or a copy of it), so that each shard's work stays on one stream");
}
template <class T, class U>
void check_same_layout(const multi_gpu_policy& p, const sharded_vector<T>& in, const sharded_vector<U>& out,
                       const char* who, const char* in_name = "input", const char* out_name = "output") {
  check_layout(p, in, who, in_name);
  check_layout(p, out, who, out_name);
  if (in.size() != out.size())
    throw std::invalid_argument(std::string(who) + ": the " + out_name + " sharded_vector has " +
                                std::to_string(out.size()) + " elements but the " + in_name + " has " +
                                std::to_string(in.size()) +
                                "; they must have the same length (and so the same shards)");
}

// Host iterators only: device memory is the business of sharded_vector.
template <class It>
void require_host(It it, const char* who) {
  static_assert(!std::is_convertible_v<thrust::iterator_system_t<It>, thrust::device_system_tag> ||
                    std::is_same_v<thrust::iterator_system_t<It>, thrust::any_system_tag> || std::is_pointer_v<It>,
                "dpar::multi_gpu takes host iterators (scatter, compute, gather) or dpar::sharded_vector; this is a "
                "device iterator");
  if constexpr (std::is_pointer_v<It>) {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, static_cast<const void*>(it)) != cudaSuccess)
      (void)cudaGetLastError();
    else if (a.type == cudaMemoryTypeDevice)
      throw std::invalid_argument(std::string(who) +
                                  ": a pointer to device memory was passed with a dpar::multi_gpu policy, which takes "
                                  "host iterators or dpar::sharded_vector");
  }
}

struct backend {
  // ---- on sharded_vectors -------------------------------------------------

  template <class T, class U, class F>
  static void sharded_transform(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<U>& out, F f) {
    check_same_layout(p, in, out, "dpar::transform");
    for (std::size_t i = 0; i < in.shard_count(); ++i) {
      const auto& s = in.shard_at(i);
      if (s.size) cuda::backend::transform(p.entry(i), s.begin(), s.end(), out.shard_at(i).begin(), f);
    }
  }

  template <class T1, class T2, class U, class F>
  static void sharded_transform(const multi_gpu_policy& p, const sharded_vector<T1>& in1, const sharded_vector<T2>& in2,
                                sharded_vector<U>& out, F f) {
    check_same_layout(p, in1, out, "dpar::transform", "first input");
    check_same_layout(p, in2, out, "dpar::transform", "second input");
    for (std::size_t i = 0; i < in1.shard_count(); ++i) {
      const auto& s = in1.shard_at(i);
      if (s.size)
        cuda::backend::transform(p.entry(i), s.begin(), s.end(), in2.shard_at(i).begin(), out.shard_at(i).begin(), f);
    }
  }

  template <class T, class F>
  static void sharded_for_each(const multi_gpu_policy& p, sharded_vector<T>& v, F f) {
    check_layout(p, v, "dpar::for_each", "range");
    for (std::size_t i = 0; i < v.shard_count(); ++i) {
      const auto& s = v.shard_at(i);
      if (s.size) cuda::backend::for_each(p.entry(i), s.begin(), s.end(), f);
    }
  }

  template <class T, class V, class Op>
  static V sharded_reduce(const multi_gpu_policy& p, const sharded_vector<T>& v, V init, Op op) {
    check_layout(p, v, "dpar::reduce", "input");
    return combine_in_order<V>(p, v.shards(), std::move(init), op, [&](const shard<T>& s) {
      const T* in = s.data;
      return queue_partial<V>(s.device, s.stream, s.size, op, cuda::read_at<const T*>{in},
                              [&](void* temp, std::size_t& bytes, V* out, auto count, V id) {
                                return cub::DeviceReduce::Reduce(temp, bytes, in, out, count, op, id, s.stream);
                              });
    });
  }

  template <class T, class V, class R, class U>
  static V sharded_transform_reduce(const multi_gpu_policy& p, const sharded_vector<T>& v, V init, R r, U t) {
    check_layout(p, v, "dpar::transform_reduce", "input");
    return combine_in_order<V>(p, v.shards(), std::move(init), r, [&](const shard<T>& s) {
      const T* in = s.data;
      return queue_partial<V>(s.device, s.stream, s.size, r, cuda::transform_at<const T*, U>{in, t},
                              [&](void* temp, std::size_t& bytes, V* out, auto count, V id) {
                                return cub::DeviceReduce::TransformReduce(temp, bytes, in, out, count, r, t, id,
                                                                          s.stream);
                              });
    });
  }

  template <class T1, class T2, class V, class R, class U>
  static V sharded_transform_reduce(const multi_gpu_policy& p, const sharded_vector<T1>& v1,
                                    const sharded_vector<T2>& v2, V init, R r, U t) {
    check_same_layout(p, v1, v2, "dpar::transform_reduce", "first input", "second input");
    return combine_in_order<V>(p, v1.shards(), std::move(init), r, [&](const shard<T1>& s) {
      const T1* in1 = s.data;
      const T2* in2 = v2.shard_at(static_cast<std::size_t>(&s - v1.shards().data())).data;
      using pair_at = cuda::transform2_at<const T1*, const T2*, U>;
      return queue_partial<V>(s.device, s.stream, s.size, r, pair_at{in1, in2, t},
                              [&](void* temp, std::size_t& bytes, V* out, auto count, V id) {
                                thrust::counting_iterator<decltype(count)> index(0);
                                return cub::DeviceReduce::TransformReduce(temp, bytes, index, out, count, r,
                                                                          pair_at{in1, in2, t}, id, s.stream);
                              });
    });
  }

  // out = inclusive scan of in (in place allowed); init, if any, on the left.
  template <class V, class T, class Op>
  static void sharded_inclusive_scan(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<V>& out,
                                     Op op, std::optional<V> init) {
    check_same_layout(p, in, out, "dpar::inclusive_scan");
    std::vector<std::optional<V>> carry = carries<V>(p, in, op, std::move(init));
    for (std::size_t i = 0; i < in.shard_count(); ++i) {
      const auto& s = in.shard_at(i);
      if (s.size)
        cuda::backend::inclusive_scan<V>(p.entry(i), s.begin(), s.end(), out.shard_at(i).begin(), op, carry[i]);
    }
  }

  template <class V, class T, class Op>
  static void sharded_exclusive_scan(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<V>& out,
                                     V init, Op op) {
    check_same_layout(p, in, out, "dpar::exclusive_scan");
    std::vector<std::optional<V>> carry = carries<V>(p, in, op, std::optional<V>(std::move(init)));
    for (std::size_t i = 0; i < in.shard_count(); ++i) {
      const auto& s = in.shard_at(i);
      if (s.size) cuda::backend::exclusive_scan(p.entry(i), s.begin(), s.end(), out.shard_at(i).begin(), *carry[i], op);
    }
  }

  // ---- on host iterators: scatter, compute, gather --------------------------

  template <class In, class Out, class F>
  static Out transform(const multi_gpu_policy& p, In first, In last, Out d_first, F f) {
    require_host(first, "dpar::transform");
    using T = std::iter_value_t<In>;
    using U = std::remove_cvref_t<std::invoke_result_t<F&, const T&>>;
    if (first == last) return d_first;
    sharded_vector<T> in(p, first, last);
    sharded_vector<U> out(p, in.size(), no_fill_t{});
    sharded_transform(p, in, out, f);
    return out.copy_to_host(d_first);
  }

  template <class In1, class In2, class Out, class F>
  static Out transform(const multi_gpu_policy& p, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
    require_host(first1, "dpar::transform");
    require_host(first2, "dpar::transform");
    using T1 = std::iter_value_t<In1>;
    using T2 = std::iter_value_t<In2>;
    using U = std::remove_cvref_t<std::invoke_result_t<F&, const T1&, const T2&>>;
    if (first1 == last1) return d_first;
    sharded_vector<T1> in1(p, first1, last1);
    sharded_vector<T2> in2(p, first2, first2 + (last1 - first1));
    sharded_vector<U> out(p, in1.size(), no_fill_t{});
    sharded_transform(p, in1, in2, out, f);
    return out.copy_to_host(d_first);
  }

  // The elements are copied to the devices, changed there and copied back.
  template <class It, class F>
  static void for_each(const multi_gpu_policy& p, It first, It last, F f) {
    require_host(first, "dpar::for_each");
    using T = std::iter_value_t<It>;
    if (first == last) return;
    sharded_vector<T> v(p, first, last);
    sharded_for_each(p, v, f);
    v.copy_to_host(first);
  }

  template <class It, class V, class Op>
  static V reduce(const multi_gpu_policy& p, It first, It last, V init, Op op) {
    require_host(first, "dpar::reduce");
    if (first == last) return init;
    return sharded_reduce(p, sharded_vector<std::iter_value_t<It>>(p, first, last), std::move(init), op);
  }

  template <class It, class V, class R, class U>
  static V transform_reduce(const multi_gpu_policy& p, It first, It last, V init, R r, U t) {
    require_host(first, "dpar::transform_reduce");
    if (first == last) return init;
    return sharded_transform_reduce(p, sharded_vector<std::iter_value_t<It>>(p, first, last), std::move(init), r, t);
  }

  template <class It1, class It2, class V, class R, class U>
  static V transform_reduce(const multi_gpu_policy& p, It1 first1, It1 last1, It2 first2, V init, R r, U t) {
    require_host(first1, "dpar::transform_reduce");
    require_host(first2, "dpar::transform_reduce");
    if (first1 == last1) return init;
    sharded_vector<std::iter_value_t<It1>> v1(p, first1, last1);
    sharded_vector<std::iter_value_t<It2>> v2(p, first2, first2 + (last1 - first1));
    return sharded_transform_reduce(p, v1, v2, std::move(init), r, t);
  }

  template <class V, class In, class Out, class Op>
  static Out inclusive_scan(const multi_gpu_policy& p, In first, In last, Out d_first, Op op, std::optional<V> init) {
    require_host(first, "dpar::inclusive_scan");
    if (first == last) return d_first;
    sharded_vector<std::iter_value_t<In>> in(p, first, last);
    sharded_vector<V> out(p, in.size(), no_fill_t{});
    sharded_inclusive_scan<V>(p, in, out, op, std::move(init));
    return out.copy_to_host(d_first);
  }

  template <class In, class Out, class V, class Op>
  static Out exclusive_scan(const multi_gpu_policy& p, In first, In last, Out d_first, V init, Op op) {
    require_host(first, "dpar::exclusive_scan");
    if (first == last) return d_first;
    sharded_vector<std::iter_value_t<In>> in(p, first, last);
    sharded_vector<V> out(p, in.size(), no_fill_t{});
    sharded_exclusive_scan<V>(p, in, out, std::move(init), op);
    return out.copy_to_host(d_first);
  }

 private:
  // Queues one partial per non-empty shard (queue(shard) -> queued_partial),
  // all before waiting for any, then folds init op p0 op p1 ... on the host.
  template <class V, class T, class Op, class Queue>
  static V combine_in_order(const multi_gpu_policy&, std::span<const shard<T>> shards, V init, Op& op, Queue queue) {
    cuda::require_device_value<V>();
    std::vector<queued_partial> partials;
    partials.reserve(shards.size());
    for (const auto& s : shards)
      if (s.size) partials.push_back(queue(s));
    V result = std::move(init);
    for (const auto& q : partials) result = static_cast<V>(op(std::move(result), q->template fetch<V>()));
    return result;
  }

  // carry[i]: what shard i's scan starts from (none: shard 0 of an inclusive
  // scan without init). Phase 1 queues the totals of shards 0..k-2, each
  // accumulated in V, phase 2 folds them in order on the host.
  template <class V, class T, class Op>
  static std::vector<std::optional<V>> carries(const multi_gpu_policy&, const sharded_vector<T>& in, Op& op,
                                               std::optional<V> init) {
    cuda::require_device_value<V>();
    const std::size_t k = in.shard_count();
    std::vector<queued_partial> totals(k);
    for (std::size_t i = 0; i + 1 < k; ++i) {
      const auto& s = in.shard_at(i);
      if (s.size == 0) continue;
      const T* data = s.data;
      totals[i] = queue_partial<V>(s.device, s.stream, s.size, op, cuda::read_at<const T*>{data},
                                   [&](void* temp, std::size_t& bytes, V* out, auto count, V id) {
                                     return cub::DeviceReduce::Reduce(temp, bytes, data, out, count, op, id, s.stream);
                                   });
    }
    std::vector<std::optional<V>> carry(k);
    carry[0] = std::move(init);
    for (std::size_t i = 0; i + 1 < k; ++i)
      if (totals[i]) carry[i + 1] = totals[i]->template fetch<V>();  // none for an empty shard
    totals_to_carries(carry, op);
    return carry;
  }
};

}  // namespace dpar::detail::multi_gpu
