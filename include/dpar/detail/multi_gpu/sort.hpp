#pragma once
// Sorting with dpar::multi_gpu: dpar::sort / stable_sort / sort_by_key on
// dpar::sharded_vector (public overloads in sharded_algorithms.hpp) and on host iterators (copied
// into a sharded_vector, sorted, copied back). The shards are gathered on the
// first entry's device (peer copies on its stream, after each shard's stream),
// sorted there as dpar::gpu sorts (detail/cuda/sort.hpp), and copied back into
// the shards, whose sizes stay as they were; each shard's stream then waits for
// the sort. So the first device needs room for the whole vector, and the sort
// itself runs on that one device: a sample sort across the devices is not
// implemented.

#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../../gpu/memory.hpp"
#include "../../gpu/error.hpp"
#include "../cuda/sort.hpp"
#include "../sort_backend.hpp"
#include "backend.hpp"
#include "../../gpu/multi_gpu_policy.hpp"
#include "../../gpu/sharded_vector.hpp"

namespace dpar::detail::multi_gpu {

// Copies the shards of v into `gathered` (v.size() elements on the first
// entry's device) on the first entry's stream, or back with to_shards.
template <class T>
void copy_shards(const multi_gpu_policy& p, const sharded_vector<T>& v, T* gathered, bool to_shards) {
  const int home = p.device(0);
  const cudaStream_t stream = p.stream(0);
  cuda::device_scope scope(home);
  for (const auto& s : v.shards()) {
    if (s.size == 0) continue;
    if (!to_shards) cuda::stream_wait(stream, s.device, s.stream, "ordering the sort after a shard's stream");
    T* const there = gathered + s.offset;
    cuda::check(to_shards ? cudaMemcpyPeerAsync(s.data, s.device, there, home, s.size * sizeof(T), stream)
                          : cudaMemcpyPeerAsync(there, home, s.data, s.device, s.size * sizeof(T), stream),
                "cudaMemcpyPeerAsync (sort)", home);
  }
  if (to_shards)
    for (const auto& s : v.shards())
      if (s.size) cuda::stream_wait(s.stream, home, stream, "ordering a shard's stream after the sort");
}

// sort_in_place(gpu_policy, pointers...) sorts the gathered copies of `vectors` on the first entry.
template <class SortInPlace, class... T>
void sort_gathered(const multi_gpu_policy& p, SortInPlace&& sort_in_place, const sharded_vector<T>&... vectors) {
  const std::size_t n = std::get<0>(std::forward_as_tuple(vectors...)).size();
  if (n < 2) return;
  // freed in the order of the first entry's stream, after the copies back
  auto gathered = std::make_tuple(std::make_unique<cuda::temp_buffer>(p.device(0), n * sizeof(T), p.stream(0))...);
  std::apply(
      [&](auto&... buffers) {
        (copy_shards(p, vectors, buffers->template as<T>(), false), ...);
        sort_in_place(p.entry(0), buffers->template as<T>()...);
        (copy_shards(p, vectors, buffers->template as<T>(), true), ...);
      },
      gathered);
}

// The sorts of dpar::sort(policy, sharded_vector) (sharded_algorithms.hpp).
template <class T, class Comp>
void sort_sharded(const multi_gpu_policy& policy, sharded_vector<T>& v, Comp comp) {
  sort_gathered(
      policy, [&](const gpu_policy& g, T* data) { cuda::sort_on_gpu<false>(g, data, data + v.size(), comp); },
      v);
}

template <class T, class Comp>
void stable_sort_sharded(const multi_gpu_policy& policy, sharded_vector<T>& v, Comp comp) {
  sort_gathered(
      policy, [&](const gpu_policy& g, T* data) { cuda::sort_on_gpu<true>(g, data, data + v.size(), comp); },
      v);
}

// keys and values: sharded_vectors of the same length made with this policy.
template <class K, class V, class Comp>
void sort_by_key_sharded(const multi_gpu_policy& policy, sharded_vector<K>& keys, sharded_vector<V>& values,
                         Comp comp) {
  if (values.size() != keys.size())
    throw std::invalid_argument("dpar::sort_by_key: " + std::to_string(keys.size()) + " keys but " +
                                std::to_string(values.size()) + " values");
  sort_gathered(
      policy,
      [&](const gpu_policy& g, K* k, V* v) { cuda::sort_by_key_on_gpu(g, k, k + keys.size(), v, comp); },
      keys, values);
}

}  // namespace dpar::detail::multi_gpu

namespace dpar::detail {

// Host iterators: into a sharded_vector, sorted there, and back.
template <>
struct sorting<multi_gpu::backend> {
  template <class It, class Comp>
  static void sort(const multi_gpu_policy& p, It first, It last, Comp comp) {
    multi_gpu::require_host(first, "dpar::sort");
    sharded_vector<std::iter_value_t<It>> v(p, first, last);
    multi_gpu::sort_sharded(p, v, comp);
    v.copy_to_host(first);
  }
  template <class It, class Comp>
  static void stable_sort(const multi_gpu_policy& p, It first, It last, Comp comp) {
    multi_gpu::require_host(first, "dpar::stable_sort");
    sharded_vector<std::iter_value_t<It>> v(p, first, last);
    multi_gpu::stable_sort_sharded(p, v, comp);
    v.copy_to_host(first);
  }
  template <class Keys, class Values, class Comp>
  static void sort_by_key(const multi_gpu_policy& p, Keys keys_first, Keys keys_last, Values values_first, Comp comp) {
    multi_gpu::require_host(keys_first, "dpar::sort_by_key");
    multi_gpu::require_host(values_first, "dpar::sort_by_key");
    sharded_vector<std::iter_value_t<Keys>> keys(p, keys_first, keys_last);
    sharded_vector<std::iter_value_t<Values>> values(p, values_first, values_first + (keys_last - keys_first));
    multi_gpu::sort_by_key_sharded(p, keys, values, comp);
    keys.copy_to_host(keys_first);
    values.copy_to_host(values_first);
  }
};

}  // namespace dpar::detail
