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

#include "memory.hpp"
#include "error.hpp"

namespace dpar {

template <detail::cuda::device_copyable T>
class device_vector {
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
  ~device_vector() { detail::cuda::free_elements(device_, data_); }

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
    detail::cuda::check_host_length(host.size(), n_, "device_vector", "copy_from_host");
    if (n_ == 0) return;
    detail::cuda::device_scope scope(device_);
    detail::cuda::check(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice),
                        "cudaMemcpy (host to device)", device_);
    finish_default_stream();
  }
  void copy_to_host(std::span<T> host) const {
    detail::cuda::check_host_length(host.size(), n_, "device_vector", "copy_to_host");
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
    if (n != 0) data_ = detail::cuda::allocate_elements<T>(device_, n, "dpar::device_vector");
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
