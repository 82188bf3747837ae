#pragma once
// Sorting on one GPU (dpar::gpu), on the policy's device and stream:
//   arithmetic keys with std::less / std::greater   cub::DeviceRadixSort (stable;
//       -0.0 and +0.0 equal, NaNs by bit pattern, as CUB documents)
//   anything else                                    cub::DeviceMergeSort
//       (StableSort* for stable_sort and sort_by_key)
// The radix sort ping-pongs between the range and a buffer of the same size
// (cub::DoubleBuffer); where it ends in the buffer, the result is copied back.

#include <cub/device/device_merge_sort.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/util_type.cuh>

#include <cstddef>
#include <iterator>
#include <type_traits>

#include "../sort_backend.hpp"
#include "../threads/sort.hpp"
#include "../../gpu/memory.hpp"
#include "backend.hpp"
#include "../../gpu/error.hpp"
#include "iterators.hpp"
#include "../../gpu/policy.hpp"

namespace dpar::detail::cuda {

// Keys CUB radix-sorts in the order of Comp (bool aside: CUB's radix key traits
// do not promise it).
template <class K, class Comp>
inline constexpr bool cub_radix_v = threads::radix_sortable_v<K, Comp> && !std::is_same_v<K, bool>;

// A radix sort's ping-pong buffers: the range and a scratch buffer of the
// same size. CUB leaves the result where buffers.Current() points.
template <class T>
struct ping_pong {
  ping_pong(const launch& l, T* range, std::size_t n)
      : range(range), n(n), alternate(l.device, n * sizeof(T), l.stream), buffers(range, alternate.as<T>()) {}
  // Copies the result into the range where the sort left it in the scratch buffer.
  void settle(const launch& l) {
    if (buffers.Current() != range)
      check(cudaMemcpyAsync(range, buffers.Current(), n * sizeof(T), cudaMemcpyDeviceToDevice, l.stream),
            "cudaMemcpyAsync (sorted elements back)", l.device);
  }
  T* range;
  std::size_t n;
  temp_buffer alternate;
  cub::DoubleBuffer<T> buffers;
};

template <bool Stable, class It, class Comp>
void sort_on_gpu(const gpu_policy& p, It first, It last, Comp comp) {
  DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
  const launch l(p, Stable ? "dpar::stable_sort" : "dpar::sort");
  const auto n = static_cast<std::size_t>(last - first);
  if (n < 2) return;
  auto keys = l.arg(first, "range");
  using K = std::iter_value_t<decltype(keys)>;
  if constexpr (cub_radix_v<K, Comp> && std::is_pointer_v<decltype(keys)>) {
    constexpr bool descending = threads::descending_v<std::remove_cvref_t<Comp>, K>;
    ping_pong<K> keys_(l, keys, n);
    l.run_with_storage(n, descending ? "cub::DeviceRadixSort::SortKeysDescending" : "cub::DeviceRadixSort::SortKeys",
                       [&](void* temp, std::size_t& bytes, auto count) {
                         if constexpr (descending)
                           return cub::DeviceRadixSort::SortKeysDescending(temp, bytes, keys_.buffers, count, 0,
                                                                           int(sizeof(K) * 8), l.stream);
                         else
                           return cub::DeviceRadixSort::SortKeys(temp, bytes, keys_.buffers, count, 0,
                                                                 int(sizeof(K) * 8), l.stream);
                       });
    keys_.settle(l);
  } else {
    l.run_with_storage(n, Stable ? "cub::DeviceMergeSort::StableSortKeys" : "cub::DeviceMergeSort::SortKeys",
                       [&](void* temp, std::size_t& bytes, auto count) {
                         if constexpr (Stable)
                           return cub::DeviceMergeSort::StableSortKeys(temp, bytes, keys, count, comp, l.stream);
                         else
                           return cub::DeviceMergeSort::SortKeys(temp, bytes, keys, count, comp, l.stream);
                       });
  }
}

template <class Keys, class Values, class Comp>
void sort_by_key_on_gpu(const gpu_policy& p, Keys keys_first, Keys keys_last, Values values_first, Comp comp) {
  DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Keys);
  DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Values);
  const launch l(p, "dpar::sort_by_key");
  const auto n = static_cast<std::size_t>(keys_last - keys_first);
  if (n < 2) return;
  auto keys = l.arg(keys_first, "keys");
  auto values = l.arg(values_first, "values");
  using K = std::iter_value_t<decltype(keys)>;
  using V = std::iter_value_t<decltype(values)>;
  if constexpr (cub_radix_v<K, Comp> && std::is_pointer_v<decltype(keys)> && std::is_pointer_v<decltype(values)>) {
    constexpr bool descending = threads::descending_v<std::remove_cvref_t<Comp>, K>;
    ping_pong<K> keys_(l, keys, n);
    ping_pong<V> values_(l, values, n);
    l.run_with_storage(n, descending ? "cub::DeviceRadixSort::SortPairsDescending" : "cub::DeviceRadixSort::SortPairs",
                       [&](void* temp, std::size_t& bytes, auto count) {
                         if constexpr (descending)
                           return cub::DeviceRadixSort::SortPairsDescending(temp, bytes, keys_.buffers,
                                                                            values_.buffers, count, 0,
                                                                            int(sizeof(K) * 8), l.stream);
                         else
                           return cub::DeviceRadixSort::SortPairs(temp, bytes, keys_.buffers, values_.buffers, count,
                                                                  0, int(sizeof(K) * 8), l.stream);
                       });
    keys_.settle(l);
    values_.settle(l);
  } else {
    l.run_with_storage(n, "cub::DeviceMergeSort::StableSortPairs", [&](void* temp, std::size_t& bytes, auto count) {
      return cub::DeviceMergeSort::StableSortPairs(temp, bytes, keys, values, count, comp, l.stream);
    });
  }
}

}  // namespace dpar::detail::cuda

namespace dpar::detail {

template <>
struct sorting<cuda::backend> {
  template <bool Stable, class It, class Comp>
  static void sort(const gpu_policy& p, It first, It last, Comp comp) {
    cuda::sort_on_gpu<Stable>(p, first, last, comp);
  }
  template <class Keys, class Values, class Comp>
  static void sort_by_key(const gpu_policy& p, Keys keys_first, Keys keys_last, Values values_first, Comp comp) {
    cuda::sort_by_key_on_gpu(p, keys_first, keys_last, values_first, comp);
  }
};

}  // namespace dpar::detail
