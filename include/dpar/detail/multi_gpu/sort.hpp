#pragma once
// Sorting with dpar::multi_gpu: dpar::sort / stable_sort / sort_by_key on
// dpar::sharded_vector (public overloads in sharded_algorithms.hpp) and on
// host iterators (copied into a sharded_vector, sorted, copied back). A sample
// sort across the devices that keeps every shard's size:
//
// 1. Each shard is sorted on its own device and stream (detail/cuda/sort.hpp).
// 2. Exact splits (detail/sort_splits.hpp, host code that knows no CUDA): for
//    every boundary between shards, where each sorted shard splits so that
//    shard d ends with the elements of global sorted positions [offset_d,
//    offset_d + size_d), in (key, shard, position) order. Its probes read one
//    key from a device (a copy to the host) and count, on every other shard's
//    device, the keys before it in a window of that shard (a one-thread
//    binary search kernel), each waited for: at most about shards x
//    log2(shard size) probes a boundary, each a key copy and one kernel per
//    shard, so the round trips grow as shards^2 x log2(n) a boundary
//    (latency, not bandwidth; never measured).
// 3. Every destination shard copies its runs, in shard order, from the
//    source shards into a buffer on its device (cudaMemcpyPeerAsync on its
//    stream, after the source's stream), keys and values alike.
// 4. Each destination sorts its buffer (stably for stable_sort and
//    sort_by_key, so equal keys stay in shard order, which is the global
//    input order for the stable forms) and copies it into its shard once every
//    stream that reads that shard has done so. A destination whose shard keeps
//    all of its own elements moves nothing; one that receives a single run
//    does not sort it again.
//
// A device needs room for its shard, the runs it receives (as many elements)
// and the sort's scratch (a third copy for radix sorts). A comparator that is
// no strict weak order (NaNs under std::less) still leaves every shard its
// size, but the result may then not be sorted across shards. This file has never run on a
// GPU: it is compile-checked under nvcc only, and its splits are tested on the
// CPU (test_sort, "[splits]").

#include <array>
#include <bit>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../gpu/memory.hpp"
#include "../../gpu/error.hpp"
#include "../cuda/sort.hpp"
#include "../sort_backend.hpp"
#include "../sort_splits.hpp"
#include "backend.hpp"
#include "../../gpu/multi_gpu_policy.hpp"
#include "../../gpu/sharded_vector.hpp"

namespace dpar::detail::multi_gpu {

// The first position in [lo, hi) of sorted keys whose key is after `key`
// (upper) or not before it (lower), hi if none: one thread, a few dozen
// dependent reads, launched once per probe and shard.
template <class K, class Comp>
__global__ void bound_kernel(const K* keys, std::size_t lo, std::size_t hi, K key, Comp comp, bool upper,
                             std::size_t* out) {
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (upper ? !comp(key, keys[mid]) : comp(keys[mid], key)) lo = mid + 1;
    else hi = mid;
  }
  *out = lo;
}

// A sorted shard as exact_splits asks for it: keys read and counted on the
// shard's device, in the order of its stream, each answer waited for.
template <class K, class Comp>
class device_shard {
 public:
  device_shard(const shard<K>& s, Comp comp)
      : s_(s), comp_(comp), result_(std::make_unique<cuda::temp_buffer>(s.device, sizeof(std::size_t), s.stream)) {}
  std::size_t size() const { return s_.size; }
  K key_at(std::size_t pos) const {
    cuda::device_scope scope(s_.device);
    std::array<std::byte, sizeof(K)> bytes;  // K need not be default-constructible
    cuda::check(cudaMemcpyAsync(bytes.data(), s_.data + pos, sizeof(K), cudaMemcpyDeviceToHost, s_.stream),
                "cudaMemcpyAsync (a sort splitter's key)", s_.device);
    cuda::check(cudaStreamSynchronize(s_.stream), "cudaStreamSynchronize", s_.device);
    return std::bit_cast<K>(bytes);
  }
  std::size_t lower_bound(const K& key, std::size_t lo, std::size_t hi) const { return bound(key, lo, hi, false); }
  std::size_t upper_bound(const K& key, std::size_t lo, std::size_t hi) const { return bound(key, lo, hi, true); }

 private:
  std::size_t bound(const K& key, std::size_t lo, std::size_t hi, bool upper) const {
    if (lo == hi) return lo;
    cuda::device_scope scope(s_.device);
    bound_kernel<<<1, 1, 0, s_.stream>>>(s_.data, lo, hi, key, comp_, upper, result_->as<std::size_t>());
    cuda::check(cudaGetLastError(), "launching dpar's sort splitter search", s_.device);
    return result_->fetch<std::size_t>();
  }

  shard<K> s_;
  Comp comp_;
  std::unique_ptr<cuda::temp_buffer> result_;  // freed in the order of the shard's stream
};

// Copies destination d's runs out of the sorted shards `from` into `into`
// (on d's device), in shard order, on d's stream after each source's stream.
template <class T>
void gather_runs(std::span<const shard<T>> from, const std::vector<std::vector<std::size_t>>& splits, std::size_t d,
                 const shard<T>& to, T* into) {
  std::size_t at = 0;
  for (std::size_t s = 0; s < from.size(); ++s) {
    const std::size_t first = splits[s][d], count = splits[s][d + 1] - first;
    if (count == 0) continue;
    if (from[s].stream != to.stream)
      cuda::stream_wait(to.stream, from[s].device, from[s].stream, "ordering a sort's copy after its source shard");
    cuda::device_scope scope(to.device);
    cuda::check(cudaMemcpyPeerAsync(into + at, to.device, from[s].data + first, from[s].device, count * sizeof(T),
                                    to.stream),
                "cudaMemcpyPeerAsync (sort runs)", to.device);
    at += count;
  }
}

// The sample sort (top of this file) of `keys`, and of `values` with them
// (sort_by_key: sharded_vectors of the same layout, made with this policy).
template <bool Stable, class K, class Comp, class... V>
void sample_sort(const multi_gpu_policy& policy, Comp comp, sharded_vector<K>& keys, sharded_vector<V>&... values) {
  static_assert(sizeof...(V) <= 1);
  constexpr bool by_key = sizeof...(V) == 1;
  const std::span<const shard<K>> shards = keys.shards();
  (
      [&](const sharded_vector<V>& vals) {
        const auto vs = vals.shards();
        bool same = vs.size() == shards.size();
        for (std::size_t i = 0; same && i < vs.size(); ++i)
          same = vs[i].device == shards[i].device && vs[i].size == shards[i].size && vs[i].stream == shards[i].stream;
        if (!same)
          throw std::invalid_argument("dpar::sort_by_key: the keys' and values' sharded_vectors are sharded "
                                      "differently (make both with the same policy)");
      }(values),
      ...);
  // sorts n elements of keys (and values) on entry i's device and stream
  auto sort_on = [&](std::size_t i, K* k, std::size_t n, V*... v) {
    if (n < 2) return;
    if constexpr (by_key) cuda::sort_by_key_on_gpu(policy.entry(i), k, k + n, v..., comp);
    else cuda::sort_on_gpu<Stable>(policy.entry(i), k, k + n, comp);
  };
  for (std::size_t i = 0; i < shards.size(); ++i)
    sort_on(i, shards[i].data, shards[i].size, values.shards()[i].data...);
  if (shards.size() < 2 || keys.size() < 2) return;

  std::vector<std::size_t> sizes;
  std::vector<device_shard<K, Comp>> readers;
  for (const auto& s : shards) {
    sizes.push_back(s.size);
    readers.emplace_back(s, comp);
  }
  const auto splits = exact_splits(readers, sizes);
  readers.clear();

  const std::size_t count = shards.size();
  auto runs_into = [&](std::size_t d) {
    std::size_t runs = 0;
    for (std::size_t s = 0; s < count; ++s) runs += splits[s][d + 1] > splits[s][d] ? 1 : 0;
    return runs;
  };
  // keeps_own[d]: shard d ends as it is (all of its own elements, nothing else)
  std::vector<bool> keeps_own(count);
  for (std::size_t d = 0; d < count; ++d)
    keeps_own[d] = shards[d].size == 0 || (splits[d][d] == 0 && splits[d][d + 1] == shards[d].size);

  // 3. runs into per-destination buffers, freed in the order of d's stream after the copies back
  std::vector<std::unique_ptr<cuda::temp_buffer>> key_buffers(count);
  std::vector<std::unique_ptr<cuda::temp_buffer>> value_buffers(by_key ? count : 0);
  for (std::size_t d = 0; d < count; ++d) {
    if (keeps_own[d]) continue;
    const shard<K>& to = shards[d];
    key_buffers[d] = std::make_unique<cuda::temp_buffer>(to.device, to.size * sizeof(K), to.stream);
    gather_runs(shards, splits, d, to, key_buffers[d]->template as<K>());
    (
        [&](const sharded_vector<V>& vals) {
          value_buffers[d] = std::make_unique<cuda::temp_buffer>(to.device, to.size * sizeof(V), to.stream);
          gather_runs(vals.shards(), splits, d, vals.shards()[d], value_buffers[d]->template as<V>());
        }(values),
        ...);
  }
  // A shard is overwritten only after every copy out of it: its stream waits
  // for the streams that read it (recorded now, before their sorts are queued).
  for (std::size_t d = 0; d < count; ++d) {
    if (keeps_own[d]) continue;
    for (std::size_t e = 0; e < count; ++e)
      if (e != d && !keeps_own[e] && splits[d][e + 1] > splits[d][e] && shards[e].stream != shards[d].stream)
        cuda::stream_wait(shards[d].stream, shards[e].device, shards[e].stream,
                          "ordering a sort's write after the copies out of its shard");
  }
  // 4. each destination sorts its runs (a single run is sorted already) and takes them
  for (std::size_t d = 0; d < count; ++d) {
    if (keeps_own[d]) continue;
    const shard<K>& to = shards[d];
    K* const k = key_buffers[d]->template as<K>();
    if (runs_into(d) > 1) sort_on(d, k, to.size, value_buffers[d]->template as<V>()...);
    cuda::device_scope scope(to.device);
    cuda::check(cudaMemcpyAsync(to.data, k, to.size * sizeof(K), cudaMemcpyDeviceToDevice, to.stream),
                "cudaMemcpyAsync (sorted keys into their shard)", to.device);
    (
        [&](const sharded_vector<V>& vals) {
          const auto& into = vals.shards()[d];
          cuda::check(cudaMemcpyAsync(into.data, value_buffers[d]->template as<V>(), to.size * sizeof(V),
                                      cudaMemcpyDeviceToDevice, into.stream),
                      "cudaMemcpyAsync (sorted values into their shard)", to.device);
        }(values),
        ...);
  }
}

// The sorts of dpar::sort / stable_sort(policy, sharded_vector) (sharded_algorithms.hpp).
template <bool Stable, class T, class Comp>
void sort_sharded(const multi_gpu_policy& policy, sharded_vector<T>& v, Comp comp) {
  sample_sort<Stable>(policy, comp, v);
}

// keys and values: sharded_vectors of the same length made with this policy.
template <class K, class V, class Comp>
void sort_by_key_sharded(const multi_gpu_policy& policy, sharded_vector<K>& keys, sharded_vector<V>& values,
                         Comp comp) {
  if (values.size() != keys.size())
    throw std::invalid_argument("dpar::sort_by_key: " + std::to_string(keys.size()) + " keys but " +
                                std::to_string(values.size()) + " values");
  sample_sort<true>(policy, comp, keys, values);
}

}  // namespace dpar::detail::multi_gpu

namespace dpar::detail {

// Host iterators: into a sharded_vector, sorted there, and back.
template <>
struct sorting<multi_gpu::backend> {
  template <bool Stable, class It, class Comp>
  static void sort(const multi_gpu_policy& p, It first, It last, Comp comp) {
    multi_gpu::require_host(first, Stable ? "dpar::stable_sort" : "dpar::sort");
    sharded_vector<std::iter_value_t<It>> v(p, first, last);
    multi_gpu::sort_sharded<Stable>(p, v, comp);
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
