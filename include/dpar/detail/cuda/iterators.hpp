#pragma once
// Which iterators dpar::gpu takes, and how they are handed to CUB.
//
// Taken: raw pointers (to device, managed or pinned memory: the type cannot
// tell, so it is checked at run time), thrust::device_vector / device_ptr
// iterators, and fancy iterators that belong to the device or to any system
// (thrust::counting_iterator, and transform/zip iterators over device ones).
// Host iterators (std::vector<T>::iterator, thrust::host_vector iterators, ...)
// are a compile error. Wrap a raw pointer in thrust::device_pointer_cast(p)
// before building a fancy iterator on it, so that the iterator says "device".

#include <thrust/iterator/iterator_traits.h>
#include <thrust/type_traits/is_contiguous_iterator.h>
#include <thrust/type_traits/unwrap_contiguous_iterator.h>

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <type_traits>
#include <utility>

#include "../../execution.hpp"
#include "../../gpu/error.hpp"

namespace dpar::detail::cuda {

template <class It>
inline constexpr bool device_iterator_v =
    std::is_pointer_v<It> || std::is_same_v<thrust::iterator_system_t<It>, thrust::any_system_tag> ||
    std::is_convertible_v<thrust::iterator_system_t<It>, thrust::device_system_tag>;

#define DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It)                                                               \
  static_assert(::dpar::detail::cuda::device_iterator_v<It>,                                                \
                "dpar::gpu takes device iterators only: raw device pointers, dpar::device_vector or "       \
                "thrust::device_vector iterators, or thrust fancy iterators over them. This is a host "     \
                "iterator (e.g. std::vector<T>::iterator): copy the data to a dpar::device_vector first.")

// Contiguous device iterators become raw pointers: CUB's fastest paths
// (vectorized loads, bulk copies) need them.
template <class It>
auto unwrap(It it) {
  if constexpr (std::is_pointer_v<It>) return it;
  else return thrust::try_unwrap_contiguous_iterator(it);
}

// A raw pointer must be memory that `device` can read: device memory of that
// device, managed or pinned memory, or any host memory where the device reads
// pageable memory (HMM/ATS). Anything else would end in an illegal-address
// fault, which destroys the CUDA context, so it is refused here instead.
template <class It>
void check_accessible(It it, int device, const char* operation, const char* argument) {
  if constexpr (std::is_pointer_v<It>) {
    const void* p = static_cast<const void*>(it);
    cudaPointerAttributes a{};
    check(cudaPointerGetAttributes(&a, p), "cudaPointerGetAttributes", device);
    char where[32];
    std::snprintf(where, sizeof where, "%p", p);
    std::string what = std::string(argument) + " (" + where + ")";
    if (a.type == cudaMemoryTypeUnregistered && !info(device).pageable_memory_access)
      throw cuda_error(operation, device, cudaErrorInvalidValue,
                       what + " points to host memory; dpar::gpu needs device memory (dpar::device_vector, "
                              "thrust::device_vector, cudaMalloc)");
    if (a.type == cudaMemoryTypeDevice && a.device != device)
      throw cuda_error(operation, device, cudaErrorInvalidDevice,
                       what + " points to memory of device " + std::to_string(a.device) +
                           ", but the policy runs on device " + std::to_string(device));
  }
}

struct backend;

}  // namespace dpar::detail::cuda

// The CUDA backend calls user functions on elements of the unwrapped iterator,
// so a functor taking T& works on thrust::device_vector iterators and ranges
// (whose own reference type is the proxy thrust::device_reference<T>).
namespace dpar::detail {
template <class It>
struct element_reference<cuda::backend, It> {
  using type = std::iter_reference_t<decltype(cuda::unwrap(std::declval<It>()))>;
};
}  // namespace dpar::detail
