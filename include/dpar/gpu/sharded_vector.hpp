#pragma once
// dpar::sharded_vector<T>: n elements split over the entries of a multi_gpu
// policy, shard i holding elements [begin(i), begin(i+1)) on entry i's device.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "memory.hpp"
#include "error.hpp"
#include "../partition.hpp"
#include "multi_gpu_policy.hpp"

namespace dpar {

namespace detail::multi_gpu {
struct no_fill_t {};  // internal: leave the elements uninitialized
}  // namespace detail::multi_gpu

// One shard: `size` elements at `data` on `device`, elements [offset,
// offset + size) of the whole vector, ordered on `stream`.
template <class T>
struct shard {
  int device;
  T* data;
  std::size_t size;
  std::size_t offset;
  cudaStream_t stream;
  T* begin() const noexcept { return data; }
  T* end() const noexcept { return data + size; }
};

template <detail::cuda::device_copyable T>
class sharded_vector {
 public:
  using value_type = T;
  using size_type = std::size_t;

  // n elements, all bytes zero, split over the policy's entries.
  sharded_vector(const multi_gpu_policy& policy, std::size_t n) : sharded_vector(policy, n, no_fill) {
    for (auto& s : storage_.shards) {
      if (s.size == 0) continue;
      detail::cuda::device_scope scope(s.device);
      detail::cuda::check(cudaMemsetAsync(s.data, 0, s.size * sizeof(T), s.stream), "cudaMemsetAsync", s.device);
    }
    synchronize();
  }

  // A copy of the host elements [first, last) (random access; contiguous
  // ranges of T are copied straight from their memory).
  template <std::random_access_iterator It>
  sharded_vector(const multi_gpu_policy& policy, It first, It last)
      : sharded_vector(policy, static_cast<std::size_t>(last - first), no_fill) {
    if constexpr (std::contiguous_iterator<It> && std::is_same_v<std::iter_value_t<It>, T>) {
      copy_from_host(std::span<const T>(std::to_address(first), size_));
    } else {
      std::vector<T> staged(first, last);
      copy_from_host(std::span<const T>(staged));
    }
  }
  sharded_vector(const multi_gpu_policy& policy, std::span<const T> host)
      : sharded_vector(policy, host.begin(), host.end()) {}
  sharded_vector(const multi_gpu_policy& policy, const std::vector<T>& host)
      : sharded_vector(policy, host.begin(), host.end()) {}

  // Internal: the layout without initializing the elements.
  sharded_vector(const multi_gpu_policy& policy, std::size_t n, detail::multi_gpu::no_fill_t)
      : policy_(policy), size_(n) {
    const std::size_t k = policy.size();
    storage_.shards.reserve(k);
    for (std::size_t i = 0; i < k; ++i) {
      const std::size_t lo = even_split_begin(n, k, i), hi = even_split_begin(n, k, i + 1);
      shard<T> s{policy.device(i), nullptr, hi - lo, lo, policy.stream(i)};
      // on failure storage_ frees the shards allocated so far
      if (s.size != 0)
        s.data = detail::cuda::allocate_elements<T>(
            s.device, s.size, "shard " + std::to_string(i) + " of a dpar::sharded_vector of " + std::to_string(n));
      storage_.shards.push_back(s);  // reserved: cannot throw
    }
  }

  sharded_vector(const sharded_vector&) = delete;
  sharded_vector& operator=(const sharded_vector&) = delete;
  sharded_vector(sharded_vector&&) noexcept = default;
  sharded_vector& operator=(sharded_vector&&) noexcept = default;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t shard_count() const noexcept { return storage_.shards.size(); }
  const shard<T>& shard_at(std::size_t i) const { return storage_.shards.at(i); }
  std::span<const shard<T>> shards() const noexcept { return storage_.shards; }
  const multi_gpu_policy& policy() const noexcept { return policy_; }

  // Copies to and from the host; they wait for the shards' streams, so queued
  // work on this vector is finished first.
  void copy_from_host(std::span<const T> host) {
    detail::cuda::check_host_length(host.size(), size_, "sharded_vector", "copy_from_host");
    for (auto& s : storage_.shards) {
      if (s.size == 0) continue;
      detail::cuda::device_scope scope(s.device);
      detail::cuda::check(
          cudaMemcpyAsync(s.data, host.data() + s.offset, s.size * sizeof(T), cudaMemcpyHostToDevice, s.stream),
          "cudaMemcpyAsync (host to shard)", s.device);
    }
    synchronize();
  }
  void copy_to_host(std::span<T> host) const {
    detail::cuda::check_host_length(host.size(), size_, "sharded_vector", "copy_to_host");
    // Queue every shard's copy first (pinned memory would overlap them;
    // pageable memory makes each wait for its shard's stream in turn).
    for (auto& s : storage_.shards) {
      if (s.size == 0) continue;
      detail::cuda::device_scope scope(s.device);
      detail::cuda::check(
          cudaMemcpyAsync(host.data() + s.offset, s.data, s.size * sizeof(T), cudaMemcpyDeviceToHost, s.stream),
          "cudaMemcpyAsync (shard to host)", s.device);
    }
    synchronize();
  }
  // Gathers into any random-access output; returns d_first + size().
  template <std::random_access_iterator Out>
  Out copy_to_host(Out d_first) const {
    if constexpr (std::is_same_v<Out, T*> ||
                  (std::contiguous_iterator<Out> && std::is_same_v<std::iter_value_t<Out>, T>)) {
      if (size_ != 0) copy_to_host(std::span<T>(std::to_address(d_first), size_));
      return d_first + static_cast<std::iter_difference_t<Out>>(size_);
    } else {
      std::vector<T> host = to_host();
      return std::copy(host.begin(), host.end(), d_first);
    }
  }
  std::vector<T> to_host() const {
    std::vector<T> host(size_);
    copy_to_host(std::span<T>(host));
    return host;
  }

  // Waits for every shard's stream.
  void synchronize() const {
    for (auto& s : storage_.shards) {
      detail::cuda::device_scope scope(s.device);
      detail::cuda::check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize", s.device);
    }
  }

 private:
  static constexpr detail::multi_gpu::no_fill_t no_fill{};

  // Frees every shard, also when a constructor throws half-way.
  struct storage {
    std::vector<shard<T>> shards;
    storage() = default;
    storage(storage&&) noexcept = default;
    storage& operator=(storage&& other) noexcept {
      std::swap(shards, other.shards);
      return *this;
    }
    ~storage() {
      for (auto& s : shards) detail::cuda::free_elements(s.device, s.data);
    }
  };

  multi_gpu_policy policy_;
  std::size_t size_ = 0;
  storage storage_;
};

}  // namespace dpar
