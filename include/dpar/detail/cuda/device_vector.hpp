#pragma once
// dpar::device_vector<T>: an owning array in one device's memory, with copies
// to and from the host. Its iterators are raw device pointers, so it is a
// range that every dpar::gpu algorithm takes directly, and CUB sees pointers.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "error.hpp"

namespace dpar {

template <class T>
class device_vector {
  static_assert(std::is_trivially_copyable_v<T>, "dpar::device_vector<T> needs a trivially copyable T");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using iterator = T*;
  using const_iterator = const T*;

  device_vector() noexcept = default;

  // n elements, all bytes zero, on `device` (default: the current device).
  explicit device_vector(std::size_t n, int device = -1) : device_vector(allocate_tag{}, n, device) {
    if (n_ != 0) {
      detail::cuda::device_scope scope(device_);
      detail::cuda::check(cudaMemset(data_, 0, bytes()), "cudaMemset", device_);
      finish_default_stream();
    }
  }

  // A copy of `host` on `device` (default: the current device).
  explicit device_vector(std::span<const T> host, int device = -1)
      : device_vector(allocate_tag{}, host.size(), device) {
    copy_from_host(host);
  }
  explicit device_vector(const std::vector<T>& host, int device = -1)
      : device_vector(std::span<const T>(host), device) {}

  device_vector(const device_vector& other) : device_vector(allocate_tag{}, other.n_, other.device_) {
    if (n_ != 0) {
      detail::cuda::device_scope scope(device_);
      detail::cuda::check(cudaMemcpy(data_, other.data_, bytes(), cudaMemcpyDeviceToDevice),
                          "cudaMemcpy (device to device)", device_);
      finish_default_stream();
    }
  }
  device_vector(device_vector&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), n_(std::exchange(other.n_, 0)), device_(other.device_) {}
  device_vector& operator=(device_vector other) noexcept {
    std::swap(data_, other.data_);
    std::swap(n_, other.n_);
    std::swap(device_, other.device_);
    return *this;
  }
  ~device_vector() {
    if (data_) {
      int previous = 0;
      (void)cudaGetDevice(&previous);
      (void)cudaSetDevice(device_);
      (void)cudaFree(data_);
      (void)cudaSetDevice(previous);
    }
  }

  std::size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  int device() const noexcept { return device_; }
  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + n_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + n_; }

  // Copies; they return when the copy is complete. Work queued on a stream of
  // your own that writes or reads these elements must be finished first
  // (policy.synchronize()).
  void copy_from_host(std::span<const T> host) {
    if (host.size() != n_)
      throw std::invalid_argument("dpar::device_vector::copy_from_host: " + std::to_string(host.size()) +
                                  " host elements for a device_vector of " + std::to_string(n_));
    if (n_ == 0) return;
    detail::cuda::device_scope scope(device_);
    detail::cuda::check(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice),
                        "cudaMemcpy (host to device)", device_);
    finish_default_stream();
  }
  void copy_to_host(std::span<T> host) const {
    if (host.size() != n_)
      throw std::invalid_argument("dpar::device_vector::copy_to_host: " + std::to_string(host.size()) +
                                  " host elements for a device_vector of " + std::to_string(n_));
    if (n_ == 0) return;
    detail::cuda::device_scope scope(device_);
    detail::cuda::check(cudaMemcpy(host.data(), data_, bytes(), cudaMemcpyDeviceToHost),
                        "cudaMemcpy (device to host)", device_);
  }
  std::vector<T> to_host() const {
    std::vector<T> host(n_);
    copy_to_host(host);
    return host;
  }

 private:
  struct allocate_tag {};
  device_vector(allocate_tag, std::size_t n, int device) : n_(n) {
    device_ = device >= 0 ? device : detail::cuda::current_device();
    detail::cuda::validate_device(device_, "dpar::device_vector");
    if (n == 0) return;
    detail::cuda::device_scope scope(device_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes());
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      n_ = 0;
      throw cuda_error("cudaMalloc of " + std::to_string(n) + " elements (" + std::to_string(n * sizeof(T)) +
                           " bytes) for dpar::device_vector",
                       device_, e);
    }
    data_ = static_cast<T*>(p);
  }
  std::size_t bytes() const noexcept { return n_ * sizeof(T); }
  // cudaMemset and host-to-device cudaMemcpy may return before the device has
  // finished; wait, so that work on any stream (non-blocking ones included)
  // sees the data.
  void finish_default_stream() const {
    detail::cuda::check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize (default stream)", device_);
  }

  T* data_ = nullptr;
  std::size_t n_ = 0;
  int device_ = -1;
};

}  // namespace dpar
