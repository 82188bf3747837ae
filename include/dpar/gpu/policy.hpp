#pragma once
// dpar::gpu: one CUDA device and one stream.

#include <cuda_runtime_api.h>

#include <string>
#include <type_traits>

#include "../execution.hpp"
#include "error.hpp"

namespace dpar {

namespace detail::cuda {
struct backend;
}

// Runs on one CUDA device and stream: dpar::gpu is the calling thread's current
// device and its default stream; .on(device) and .on(device, stream) name them.
//
// Results that are values (reduce, transform_reduce) wait for the stream.
// Results that are iterators (transform, for_each, scans) are queued on the
// stream and returned at once: call .synchronize() (or synchronize the stream
// yourself) before reading the output on the host.
class gpu_policy {
 public:
  using backend = detail::cuda::backend;

  constexpr gpu_policy() noexcept = default;

  // The same policy on `device`, default stream. Throws cuda_error if there is
  // no such device.
  gpu_policy on(int device) const {
    detail::cuda::validate_device(device, "dpar::gpu.on(" + std::to_string(device) + ")");
    return gpu_policy(device, cudaStream_t{});
  }

  // The same policy on `device` and `stream`; the stream must belong to that
  // device and outlive the calls made with the policy, and its owner decides
  // when to wait for it.
  gpu_policy on(int device, cudaStream_t stream) const {
    const std::string who = "dpar::gpu.on(" + std::to_string(device) + ", stream)";
    detail::cuda::validate_device(device, who);
    if (stream != nullptr && stream != cudaStreamLegacy && stream != cudaStreamPerThread) {
      int owner = -1;
      detail::cuda::check(cudaStreamGetDevice(stream, &owner), "cudaStreamGetDevice", device);
      if (owner != device)
        throw cuda_error(who, device, cudaErrorInvalidResourceHandle,
                         "the stream belongs to device " + std::to_string(owner));
    }
    return gpu_policy(device, stream);
  }

  // The device this policy runs on: the named one, else the current one.
  int device() const { return device_ >= 0 ? device_ : detail::cuda::current_device(); }
  cudaStream_t stream() const noexcept { return stream_; }

  // Waits for all work queued on this policy's stream; throws cuda_error if any
  // of it failed.
  void synchronize() const {
    int d = device();
    detail::cuda::device_scope scope(d);
    detail::cuda::check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", d);
  }

 private:
  constexpr gpu_policy(int device, cudaStream_t stream) noexcept : device_(device), stream_(stream) {}
  int device_ = -1;  // -1: the calling thread's current device
  cudaStream_t stream_ = nullptr;
};

inline constexpr gpu_policy gpu{};

template <>
struct is_execution_policy<gpu_policy> : std::true_type {};

}  // namespace dpar
