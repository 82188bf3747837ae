#pragma once
// Temporary device storage for CUB calls, from one caching allocator that keeps
// freed blocks per device: after warm-up, no call reaches cudaMalloc.

#include <cub/util_allocator.cuh>

#include <cstddef>
#include <string>

#include "error.hpp"

namespace dpar::detail::cuda {

// Bins of powers of two from 256 B to 1 GiB, at most 1 GiB cached per device.
// Never destroyed: at process exit the CUDA runtime may already be gone, so
// returning blocks then would only produce errors.
inline cub::CachingDeviceAllocator& caching_allocator() {
  static auto* allocator = new cub::CachingDeviceAllocator(2, 8, 30, std::size_t{1} << 30, /*skip_cleanup=*/true);
  return *allocator;
}

// `bytes` of device memory on `device`, ordered on `stream`: the allocator
// hands a freed block to another stream only once the work queued before the
// free has finished, so the buffer may be released right after queuing the
// kernels that use it.
class temp_buffer {
 public:
  temp_buffer(int device, std::size_t bytes, cudaStream_t stream) : device_(device) {
    if (bytes == 0) bytes = 1;
    cudaError_t e = caching_allocator().DeviceAllocate(device, &data_, bytes, stream);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw cuda_error("allocating " + std::to_string(bytes) + " bytes of temporary storage", device, e);
    }
  }
  temp_buffer(const temp_buffer&) = delete;
  temp_buffer& operator=(const temp_buffer&) = delete;
  ~temp_buffer() { (void)caching_allocator().DeviceFree(device_, data_); }

  void* data() const noexcept { return data_; }
  template <class T>
  T* as(std::size_t byte_offset = 0) const noexcept {
    return reinterpret_cast<T*>(static_cast<char*>(data_) + byte_offset);
  }

 private:
  int device_;
  void* data_ = nullptr;
};

}  // namespace dpar::detail::cuda
