#pragma once
// Device memory: the device containers' elements, and temporary device
// storage for CUB calls and dpar's own kernels. Temporary storage is allocated and
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
#include <stdexcept>
#include <string>
#include <type_traits>
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
      cudaMemPool_t pool = nullptr;
      check(cudaMemPoolCreate(&pool, &props), "cudaMemPoolCreate", device);
      std::uint64_t keep = std::uint64_t{1} << 30;  // freed memory the pool holds on to instead of releasing at a sync
      cudaError_t e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
      if (e != cudaSuccess) {
        (void)cudaMemPoolDestroy(pool);  // the next call tries again
        check(e, "cudaMemPoolSetAttribute(ReleaseThreshold)", device);
      }
      pools[i] = pool;
    }
    known[i] = true;
  }
  return pools[i];
}

// ---- the device containers' memory (device_vector, sharded_vector) ----

// Their element types: copied between host and devices as bytes.
template <class T>
concept device_copyable = std::is_trivially_copyable_v<T>;

// n elements of T in device memory on `device` (made current here); a
// cuda_error naming `what` where there is not enough.
template <class T>
T* allocate_elements(int device, std::size_t n, const std::string& what) {
  device_scope scope(device);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, n * sizeof(T));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw cuda_error("cudaMalloc of " + std::to_string(n) + " elements (" + std::to_string(n * sizeof(T)) +
                         " bytes) for " + what,
                     device, e);
  }
  return static_cast<T*>(p);
}

// Frees what allocate_elements gave, whatever device is current; never throws
// (for destructors). cudaFree waits for work on the memory, on any stream.
inline void free_elements(int device, void* p) noexcept {
  if (!p) return;
  int previous = 0;
  (void)cudaGetDevice(&previous);
  (void)cudaSetDevice(device);
  (void)cudaFree(p);
  (void)cudaSetDevice(previous);
}

// A host copy must have as many elements as the container.
inline void check_host_length(std::size_t host, std::size_t size, const char* container, const char* who) {
  if (host != size)
    throw std::invalid_argument("dpar::" + std::string(container) + "::" + who + ": " + std::to_string(host) +
                                " host elements for a " + container + " of " + std::to_string(size));
}

// ---- temporary storage ----

// Bytes in front of a reduction's scratch storage that hold its result of type
// T (a multiple of 256, so that the scratch stays aligned as CUB wants).
template <class T>
inline constexpr std::size_t result_slot = (sizeof(T) + 255) / 256 * 256;

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

  // Waits for the stream and returns the T at the front (a reduction's
  // result; the scratch behind it starts at result_slot<T>).
  template <class T>
  T fetch() const {
    device_scope scope(device_);
    T value{};
    check(cudaMemcpyAsync(&value, as<T>(), sizeof(T), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (result)",
          device_);
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", device_);
    return value;
  }

 private:
  int device_;
  cudaStream_t stream_;
  cudaMemPool_t pool_ = nullptr;
  void* data_ = nullptr;
};

}  // namespace dpar::detail::cuda
