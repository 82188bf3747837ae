#pragma once
// Temporary device storage for CUB calls and dpar's own kernels, allocated and
// freed in stream order (cudaMallocFromPoolAsync / cudaFreeAsync) from one
// memory pool per device that keeps up to 1 GiB of freed memory: after
// warm-up, no call reaches the driver's allocator.
//
// Stream order, not a cache keyed by stream handle (cub::CachingDeviceAllocator):
// the runtime resolves cudaStreamPerThread, the legacy stream and
// --default-stream per-thread builds to the real stream, and reuses a freed
// block on another stream only after the free is done, so a handle that means
// different streams (several host threads, a destroyed and recreated stream)
// never gets a block that is still in use.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "error.hpp"

namespace dpar::detail::cuda {

// dpar's pool on `device`, created on first use; null where the device has no
// stream-ordered allocator (cudaDevAttrMemoryPoolsSupported is 0). Never
// destroyed: at process exit the CUDA runtime may already be gone.
inline cudaMemPool_t memory_pool(int device) {
  static std::mutex m;
  static std::vector<cudaMemPool_t> pools;
  static std::vector<bool> known;
  std::lock_guard lock(m);
  if (pools.empty()) {
    pools.resize(static_cast<std::size_t>(device_count()));
    known.resize(pools.size());
  }
  const auto i = static_cast<std::size_t>(device);
  if (!known[i]) {
    int supported = 0;
    check(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device),
          "cudaDeviceGetAttribute(MemoryPoolsSupported)", device);
    if (supported) {
      cudaMemPoolProps props{};
      props.allocType = cudaMemAllocationTypePinned;
      props.location.type = cudaMemLocationTypeDevice;
      props.location.id = device;
      check(cudaMemPoolCreate(&pools[i], &props), "cudaMemPoolCreate", device);
      std::uint64_t keep = std::uint64_t{1} << 30;  // freed memory the pool holds on to instead of releasing at a sync
      check(cudaMemPoolSetAttribute(pools[i], cudaMemPoolAttrReleaseThreshold, &keep),
            "cudaMemPoolSetAttribute(ReleaseThreshold)", device);
    }
    known[i] = true;
  }
  return pools[i];
}

// `bytes` of device memory on `device`, allocated and freed in the order of
// `stream` (a stream of that device, or a special handle such as 0 or
// cudaStreamPerThread): the buffer may be released right after queuing the
// work that uses it. Without a pool (old or unusual devices) it is plain
// cudaMalloc, and the release waits for the stream before cudaFree.
class temp_buffer {
 public:
  temp_buffer(int device, std::size_t bytes, cudaStream_t stream) : device_(device), stream_(stream) {
    if (bytes == 0) bytes = 1;
    device_scope scope(device);
    pool_ = memory_pool(device);
    cudaError_t e = pool_ ? cudaMallocFromPoolAsync(&data_, bytes, pool_, stream) : cudaMalloc(&data_, bytes);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw cuda_error("allocating " + std::to_string(bytes) + " bytes of temporary storage", device, e);
    }
  }
  temp_buffer(const temp_buffer&) = delete;
  temp_buffer& operator=(const temp_buffer&) = delete;
  // Errors are dropped: a destructor must not throw, and a failed stream
  // reports its error at the next call that waits for it.
  ~temp_buffer() {
    int previous = device_;
    (void)cudaGetDevice(&previous);
    if (previous != device_) (void)cudaSetDevice(device_);  // special stream handles mean this device's stream
    if (pool_) {
      (void)cudaFreeAsync(data_, stream_);
    } else {
      (void)cudaStreamSynchronize(stream_);
      (void)cudaFree(data_);
    }
    if (previous != device_) (void)cudaSetDevice(previous);
  }

  void* data() const noexcept { return data_; }
  template <class T>
  T* as(std::size_t byte_offset = 0) const noexcept {
    return reinterpret_cast<T*>(static_cast<char*>(data_) + byte_offset);
  }

 private:
  int device_;
  cudaStream_t stream_;
  cudaMemPool_t pool_ = nullptr;
  void* data_ = nullptr;
};

}  // namespace dpar::detail::cuda
