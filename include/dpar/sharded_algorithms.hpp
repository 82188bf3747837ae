#pragma once
// The algorithms on dpar::sharded_vector, for a multi_gpu policy (public; reached
// through dpar/cuda.hpp). The front
// doors of algorithm.hpp take random-access ranges; a sharded_vector is not
// one (its shards live on several devices), so it gets these thin overloads,
// each forwarding to the multi-GPU backend (the algorithms of dpar/algorithm/
// to detail/multi_gpu/algorithms.hpp). Outputs are sharded_vectors made with
// the same policy, of the input's length (gather: the map's; the searches: the
// needles') and in place allowed unless said below; they are queued on the
// shards' streams (policy.synchronize() or copy_to_host to wait).

#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "detail/multi_gpu/algorithms.hpp"
#include "detail/multi_gpu/all_reduce.hpp"
#include "detail/multi_gpu/backend.hpp"
#include "detail/multi_gpu/sort.hpp"
#include "gpu/sharded_vector.hpp"

namespace dpar {

template <multi_gpu_execution_policy P, class T, class U, class F>
sharded_vector<U>& transform(P&& policy, const sharded_vector<T>& in, sharded_vector<U>& out, F f) {
  detail::multi_gpu::backend::sharded_transform(policy, in, out, f);
  return out;
}

template <multi_gpu_execution_policy P, class T1, class T2, class U, class F>
sharded_vector<U>& transform(P&& policy, const sharded_vector<T1>& in1, const sharded_vector<T2>& in2,
                             sharded_vector<U>& out, F f) {
  detail::multi_gpu::backend::sharded_transform(policy, in1, in2, out, f);
  return out;
}

template <multi_gpu_execution_policy P, class T, class F>
void for_each(P&& policy, sharded_vector<T>& v, F f) {
  detail::multi_gpu::backend::sharded_for_each(policy, v, f);
}

template <multi_gpu_execution_policy P, class T, class V, class Op = std::plus<>>
requires reduction_op<Op, V, const T&> V reduce(P&& policy, const sharded_vector<T>& v, V init, Op op = {}) {
  return detail::multi_gpu::backend::sharded_reduce(policy, v, std::move(init), op);
}

template <multi_gpu_execution_policy P, class T, class V, class R, class U>
requires std::invocable<U&, const T&> && reduction_op<R, V, std::invoke_result_t<U&, const T&>> V
transform_reduce(P&& policy, const sharded_vector<T>& v, V init, R r, U t) {
  return detail::multi_gpu::backend::sharded_transform_reduce(policy, v, std::move(init), r, t);
}

// Sum of products.
template <multi_gpu_execution_policy P, class T1, class T2, class V>
V transform_reduce(P&& policy, const sharded_vector<T1>& v1, const sharded_vector<T2>& v2, V init) {
  return detail::multi_gpu::backend::sharded_transform_reduce(policy, v1, v2, std::move(init), std::plus<>{},
                                                              std::multiplies<>{});
}

template <multi_gpu_execution_policy P, class T, class V, class Op = std::plus<>>
requires reduction_op<Op, V, const T&> sharded_vector<V>
&inclusive_scan(P&& policy, const sharded_vector<T>& in, sharded_vector<V>& out, Op op = {}) {
  detail::multi_gpu::backend::sharded_inclusive_scan<V>(policy, in, out, op, std::optional<V>());
  return out;
}

template <multi_gpu_execution_policy P, class T, class V, class Op>
requires reduction_op<Op, V, const T&> sharded_vector<V>
&inclusive_scan(P&& policy, const sharded_vector<T>& in, sharded_vector<V>& out, Op op, V init) {
  detail::multi_gpu::backend::sharded_inclusive_scan<V>(policy, in, out, op, std::optional<V>(std::move(init)));
  return out;
}

template <multi_gpu_execution_policy P, class T, class V, class Op = std::plus<>>
requires reduction_op<Op, V, const T&> sharded_vector<V>
&exclusive_scan(P&& policy, const sharded_vector<T>& in, sharded_vector<V>& out, V init, Op op = {}) {
  detail::multi_gpu::backend::sharded_exclusive_scan<V>(policy, in, out, std::move(init), op);
  return out;
}

// ---- sort, stable_sort, sort_by_key (detail/multi_gpu/sort.hpp) -------------

template <multi_gpu_execution_policy P, class T, class Comp = std::less<>>
void sort(P&& policy, sharded_vector<T>& v, Comp comp = {}) {
  detail::multi_gpu::sort_sharded<false>(policy, v, std::move(comp));
}

template <multi_gpu_execution_policy P, class T, class Comp = std::less<>>
void stable_sort(P&& policy, sharded_vector<T>& v, Comp comp = {}) {
  detail::multi_gpu::sort_sharded<true>(policy, v, std::move(comp));
}

// keys and values: sharded_vectors of the same length made with this policy.
template <multi_gpu_execution_policy P, class K, class V, class Comp = std::less<>>
void sort_by_key(P&& policy, sharded_vector<K>& keys, sharded_vector<V>& values, Comp comp = {}) {
  detail::multi_gpu::sort_by_key_sharded(policy, keys, values, std::move(comp));
}

// ---- more of dpar/algorithm/ (detail/multi_gpu/algorithms.hpp) -------------
// Functions must be __host__ __device__. Without iterators into a
// sharded_vector, the searches return global positions (the vector's size
// for none) where std returns iterators.

template <multi_gpu_execution_policy P, class T, class U>
void fill(P&& policy, sharded_vector<T>& v, const U& value) {
  detail::multi_gpu::algorithms::fill(policy, v, value);
}

// v[i] = value + i.
template <multi_gpu_execution_policy P, class T>
void iota(P&& policy, sharded_vector<T>& v, T value) {
  detail::multi_gpu::algorithms::iota(policy, v, value);
}

template <multi_gpu_execution_policy P, class T, class U>
sharded_vector<U>& copy(P&& policy, const sharded_vector<T>& in, sharded_vector<U>& out) {
  detail::multi_gpu::backend::sharded_transform(policy, in, out, std::identity{});
  return out;
}

template <multi_gpu_execution_policy P, class T, class Pred>
std::size_t count_if(P&& policy, const sharded_vector<T>& v, Pred pred) {
  return detail::multi_gpu::algorithms::count_if(policy, v, pred);
}

template <multi_gpu_execution_policy P, class T, class U>
std::size_t count(P&& policy, const sharded_vector<T>& v, const U& value) {
  detail::cuda::require_device_value<U>();
  return detail::multi_gpu::algorithms::count_if(policy, v, detail::cuda::equal_to_value<U>{value});
}

template <multi_gpu_execution_policy P, class T, class Pred>
std::size_t find_if(P&& policy, const sharded_vector<T>& v, Pred pred) {
  return detail::multi_gpu::algorithms::find_if(policy, v, pred);
}

template <multi_gpu_execution_policy P, class T, class U>
std::size_t find(P&& policy, const sharded_vector<T>& v, const U& value) {
  detail::cuda::require_device_value<U>();
  return detail::multi_gpu::algorithms::find_if(policy, v, detail::cuda::equal_to_value<U>{value});
}

template <multi_gpu_execution_policy P, class T, class Pred>
bool any_of(P&& policy, const sharded_vector<T>& v, Pred pred) {
  return detail::multi_gpu::algorithms::find_if(policy, v, pred) != v.size();
}

template <multi_gpu_execution_policy P, class T, class Pred>
bool none_of(P&& policy, const sharded_vector<T>& v, Pred pred) {
  return !dpar::any_of(policy, v, std::move(pred));
}

template <multi_gpu_execution_policy P, class T, class Pred>
bool all_of(P&& policy, const sharded_vector<T>& v, Pred pred) {
  return detail::multi_gpu::algorithms::count_if(policy, v, pred) == v.size();
}

// The position of the first pair that differs (a.size() if none); a and b of the same length.
template <multi_gpu_execution_policy P, class T1, class T2, class Pred = std::equal_to<>>
std::size_t mismatch(P&& policy, const sharded_vector<T1>& a, const sharded_vector<T2>& b, Pred pred = {}) {
  return detail::multi_gpu::algorithms::mismatch(policy, a, b, pred);
}

// false for different lengths, as std's four-iterator form.
template <multi_gpu_execution_policy P, class T1, class T2, class Pred = std::equal_to<>>
bool equal(P&& policy, const sharded_vector<T1>& a, const sharded_vector<T2>& b, Pred pred = {}) {
  return a.size() == b.size() && detail::multi_gpu::algorithms::mismatch(policy, a, b, pred) == a.size();
}

// The transform scans: unary per shard into out, then the sharded scan in
// place (its carries cross the shards).
template <multi_gpu_execution_policy P, class T, class V, class BinaryOp, class UnaryOp>
sharded_vector<V>& transform_inclusive_scan(P&& policy, const sharded_vector<T>& in, sharded_vector<V>& out,
                                            BinaryOp binary_op, UnaryOp unary_op) {
  detail::multi_gpu::backend::sharded_transform(policy, in, out, unary_op);
  detail::multi_gpu::backend::sharded_inclusive_scan<V>(policy, out, out, binary_op, std::optional<V>());
  return out;
}

template <multi_gpu_execution_policy P, class T, class V, class BinaryOp, class UnaryOp>
sharded_vector<V>& transform_inclusive_scan(P&& policy, const sharded_vector<T>& in, sharded_vector<V>& out,
                                            BinaryOp binary_op, UnaryOp unary_op, V init) {
  detail::multi_gpu::backend::sharded_transform(policy, in, out, unary_op);
  detail::multi_gpu::backend::sharded_inclusive_scan<V>(policy, out, out, binary_op, std::optional<V>(std::move(init)));
  return out;
}

template <multi_gpu_execution_policy P, class T, class V, class BinaryOp, class UnaryOp>
sharded_vector<V>& transform_exclusive_scan(P&& policy, const sharded_vector<T>& in, sharded_vector<V>& out, V init,
                                            BinaryOp binary_op, UnaryOp unary_op) {
  detail::multi_gpu::backend::sharded_transform(policy, in, out, unary_op);
  detail::multi_gpu::backend::sharded_exclusive_scan<V>(policy, out, out, std::move(init), binary_op);
  return out;
}

// The kept elements to the front of out, in input order, across the shards
// (out keeps its length and shards; the rest of it is left as it was; out may
// be in); returns how many.
template <multi_gpu_execution_policy P, class T, class Pred>
std::size_t copy_if(P&& policy, const sharded_vector<T>& in, sharded_vector<T>& out, Pred pred) {
  return detail::multi_gpu::algorithms::copy_if(policy, in, out, pred, false, "dpar::copy_if");
}

template <multi_gpu_execution_policy P, class T, class Pred>
std::size_t remove_copy_if(P&& policy, const sharded_vector<T>& in, sharded_vector<T>& out, Pred pred) {
  return detail::multi_gpu::algorithms::copy_if(policy, in, out, pred, true, "dpar::remove_copy_if");
}

// In place: the kept elements to the front of v; returns how many.
template <multi_gpu_execution_policy P, class T, class Pred>
std::size_t remove_if(P&& policy, sharded_vector<T>& v, Pred pred) {
  return detail::multi_gpu::algorithms::copy_if(policy, v, v, pred, true, "dpar::remove_if");
}

// The first element of each run of equal ones (under pred), as copy_if.
template <multi_gpu_execution_policy P, class T, class Pred = std::equal_to<>>
std::size_t unique_copy(P&& policy, const sharded_vector<T>& in, sharded_vector<T>& out, Pred pred = {}) {
  return detail::multi_gpu::algorithms::unique_copy(policy, in, out, pred);
}

template <multi_gpu_execution_policy P, class T, class Pred = std::equal_to<>>
std::size_t unique(P&& policy, sharded_vector<T>& v, Pred pred = {}) {
  return detail::multi_gpu::algorithms::unique_copy(policy, v, v, pred);
}

// out[0] = in[0], out[i] = op(in[i], in[i - 1]) across the shards; out must not be in.
template <multi_gpu_execution_policy P, class T, class U, class Op = std::minus<>>
sharded_vector<U>& adjacent_difference(P&& policy, const sharded_vector<T>& in, sharded_vector<U>& out, Op op = {}) {
  detail::multi_gpu::algorithms::adjacent_difference(policy, in, out, op);
  return out;
}

// In the range, the elements pred holds for to the front of out_true, the
// others to the front of out_false, each in order; returns how many of each.
// The three sharded_vectors must differ.
template <multi_gpu_execution_policy P, class T, class Pred>
std::pair<std::size_t, std::size_t> partition_copy(P&& policy, const sharded_vector<T>& in, sharded_vector<T>& out_true,
                                                   sharded_vector<T>& out_false, Pred pred) {
  return detail::multi_gpu::algorithms::partition_copy(policy, in, out_true, out_false, pred);
}

// The elements pred holds for first, then the others, each in order; returns
// how many hold.
template <multi_gpu_execution_policy P, class T, class Pred>
std::size_t stable_partition(P&& policy, sharded_vector<T>& v, Pred pred) {
  return detail::multi_gpu::algorithms::stable_partition(policy, v, pred);
}

// The positions of the first smallest, the first largest, and (minmax) the
// first smallest and the last largest under comp; v.size() (0) if v is empty.
template <multi_gpu_execution_policy P, class T, class Comp = std::less<>>
std::size_t min_element(P&& policy, const sharded_vector<T>& v, Comp comp = {}) {
  using detail::derived::extreme;
  return detail::multi_gpu::algorithms::extreme_elements<1>(policy, v, comp, {extreme{false, false}})[0];
}

template <multi_gpu_execution_policy P, class T, class Comp = std::less<>>
std::size_t max_element(P&& policy, const sharded_vector<T>& v, Comp comp = {}) {
  using detail::derived::extreme;
  return detail::multi_gpu::algorithms::extreme_elements<1>(policy, v, comp, {extreme{true, false}})[0];
}

template <multi_gpu_execution_policy P, class T, class Comp = std::less<>>
std::pair<std::size_t, std::size_t> minmax_element(P&& policy, const sharded_vector<T>& v, Comp comp = {}) {
  using detail::derived::extreme;
  const auto [low, high] =
      detail::multi_gpu::algorithms::extreme_elements<2>(policy, v, comp, {extreme{false, false}, extreme{true, true}});
  return {low, high};
}

// out[i] = input[map[i]]: map and out of the same length, the indices global
// positions in input (any length); input and out must differ. Every map
// shard's device holds a copy of the whole input during the call.
template <multi_gpu_execution_policy P, class I, class T>
sharded_vector<T>& gather(P&& policy, const sharded_vector<I>& map, const sharded_vector<T>& input,
                          sharded_vector<T>& out) {
  detail::multi_gpu::algorithms::gather(policy, map, input, out);
  return out;
}

// out[map[i]] = in[i]: in and map of the same length, the indices global
// positions in out (any length); in and out must differ. Every out shard's
// device holds copies of the whole of in and map during the call.
template <multi_gpu_execution_policy P, class T, class I>
void scatter(P&& policy, const sharded_vector<T>& in, const sharded_vector<I>& map, sharded_vector<T>& out) {
  detail::multi_gpu::algorithms::scatter(policy, in, map, out);
}

// Each segment's (run of keys equal under key_eq) first key to the front of
// keys_out and the op-reduction of its values, in order, to the front of
// values_out (both of the keys' length); returns the number of segments.
// Segments may cross shards; op need not be commutative.
template <multi_gpu_execution_policy P, class K, class V, class KeyEq = std::equal_to<>, class Op = std::plus<>>
std::size_t reduce_by_key(P&& policy, const sharded_vector<K>& keys, const sharded_vector<V>& values,
                          sharded_vector<K>& keys_out, sharded_vector<V>& values_out, KeyEq key_eq = {}, Op op = {}) {
  return detail::multi_gpu::algorithms::reduce_by_key(policy, keys, values, keys_out, values_out, key_eq, op);
}

template <multi_gpu_execution_policy P, class K, class V, class KeyEq = std::equal_to<>, class Op = std::plus<>>
sharded_vector<V>& inclusive_scan_by_key(P&& policy, const sharded_vector<K>& keys, const sharded_vector<V>& values,
                                         sharded_vector<V>& out, KeyEq key_eq = {}, Op op = {}) {
  detail::multi_gpu::algorithms::inclusive_scan_by_key(policy, keys, values, out, key_eq, op,
                                                       "dpar::inclusive_scan_by_key");
  return out;
}

// init at the start of every segment.
template <multi_gpu_execution_policy P, class K, class V, class KeyEq = std::equal_to<>, class Op = std::plus<>>
sharded_vector<V>& exclusive_scan_by_key(P&& policy, const sharded_vector<K>& keys, const sharded_vector<V>& values,
                                         sharded_vector<V>& out, V init, KeyEq key_eq = {}, Op op = {}) {
  detail::multi_gpu::algorithms::exclusive_scan_by_key(policy, keys, values, out, std::move(init), key_eq, op);
  return out;
}

// For each needle, its answer in the whole sorted haystack (by comp):
// lower_bound and upper_bound write global positions, binary_search whether
// it is there, to out (the needles' length). Every needle shard's device
// holds a copy of the whole haystack during the call.
template <multi_gpu_execution_policy P, class T, class U, class R, class Comp = std::less<>>
sharded_vector<R>& lower_bound(P&& policy, const sharded_vector<T>& haystack, const sharded_vector<U>& needles,
                               sharded_vector<R>& out, Comp comp = {}) {
  using detail::derived::search_kind;
  detail::multi_gpu::algorithms::search<search_kind::lower_bound>(policy, haystack, needles, out, comp);
  return out;
}

template <multi_gpu_execution_policy P, class T, class U, class R, class Comp = std::less<>>
sharded_vector<R>& upper_bound(P&& policy, const sharded_vector<T>& haystack, const sharded_vector<U>& needles,
                               sharded_vector<R>& out, Comp comp = {}) {
  using detail::derived::search_kind;
  detail::multi_gpu::algorithms::search<search_kind::upper_bound>(policy, haystack, needles, out, comp);
  return out;
}

template <multi_gpu_execution_policy P, class T, class U, class R, class Comp = std::less<>>
sharded_vector<R>& binary_search(P&& policy, const sharded_vector<T>& haystack, const sharded_vector<U>& needles,
                                 sharded_vector<R>& out, Comp comp = {}) {
  using detail::derived::search_kind;
  detail::multi_gpu::algorithms::search<search_kind::binary_search>(policy, haystack, needles, out, comp);
  return out;
}

}  // namespace dpar
