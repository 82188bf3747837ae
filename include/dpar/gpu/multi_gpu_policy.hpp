#pragma once
// dpar::multi_gpu: work sharded over a list of CUDA devices, one shard and one
// stream per entry. A device may be listed more than once: each entry is its
// own shard with its own stream, so every multi-device path runs on one GPU.

#include <cuda_runtime_api.h>

#include <concepts>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../execution.hpp"
#include "error.hpp"
#include "policy.hpp"

namespace dpar {

namespace detail::multi_gpu {
struct backend;

// One stream per entry, created on the entry's device and destroyed with the
// last policy (or sharded_vector) that shares them.
class stream_set {
 public:
  explicit stream_set(std::vector<int> devices) : devices_(std::move(devices)) {
    if (devices_.empty())
      throw std::invalid_argument(
          "dpar::multi_gpu: the device list is empty; name at least one device, e.g. dpar::multi_gpu({0}), "
          "or take every visible device with dpar::multi_gpu_all()");
    for (std::size_t i = 0; i < devices_.size(); ++i)
      cuda::validate_device(devices_[i], "dpar::multi_gpu: entry " + std::to_string(i) + " of the device list");
    streams_.reserve(devices_.size());
    try {
      for (int d : devices_) {
        cuda::device_scope scope(d);
        cudaStream_t s = nullptr;
        // A blocking stream: it stays ordered with the legacy default stream,
        // which dpar::device_vector's copies and plain thrust calls use.
        cuda::check(cudaStreamCreateWithFlags(&s, cudaStreamDefault), "cudaStreamCreateWithFlags", d);
        streams_.push_back(s);  // reserved: cannot throw
      }
    } catch (...) {
      destroy();  // the destructor does not run for a constructor that throws
      throw;
    }
  }
  stream_set(const stream_set&) = delete;
  stream_set& operator=(const stream_set&) = delete;
  ~stream_set() { destroy(); }
  const std::vector<int>& devices() const noexcept { return devices_; }
  cudaStream_t stream(std::size_t i) const noexcept { return streams_[i]; }

 private:
  void destroy() noexcept {
    for (std::size_t i = 0; i < streams_.size(); ++i) {
      int previous = 0;
      (void)cudaGetDevice(&previous);
      (void)cudaSetDevice(devices_[i]);
      (void)cudaStreamDestroy(streams_[i]);
      (void)cudaSetDevice(previous);
    }
    streams_.clear();
  }

  std::vector<int> devices_;
  std::vector<cudaStream_t> streams_;
};
}  // namespace detail::multi_gpu

// Shards work over devices()[0], devices()[1], ..., each entry with its own
// stream. Copies share the streams; sharded_vectors made with a policy must be
// used with it (or a copy of it), which keeps all work on a shard on one stream.
//
// Like dpar::gpu: values (reduce) wait for all shards; sharded_vector results
// (transform, for_each, scans on sharded_vectors) are queued and returned at
// once: call synchronize(), or copy the result to the host, before reading it.
// Algorithms on host iterators scatter, compute and gather, and return when
// the output is on the host.
class multi_gpu_policy {
 public:
  using backend = detail::multi_gpu::backend;

  // Throws std::invalid_argument for an empty list and cuda_error for a device
  // that does not exist (or when there is no CUDA device at all).
  explicit multi_gpu_policy(std::vector<int> devices)
      : streams_(std::make_shared<const detail::multi_gpu::stream_set>(std::move(devices))) {}

  std::size_t size() const noexcept { return streams_->devices().size(); }
  const std::vector<int>& devices() const noexcept { return streams_->devices(); }
  int device(std::size_t entry) const { return streams_->devices().at(entry); }
  cudaStream_t stream(std::size_t entry) const {
    (void)device(entry);  // range check
    return streams_->stream(entry);
  }
  // Entry `entry` as a single-GPU policy on its device and stream.
  gpu_policy entry(std::size_t entry) const { return gpu.on(device(entry), stream(entry)); }

  // The opt-in to NCCL's order: a copy (same streams) whose dpar::all_reduce
  // may sum or multiply float and double buffers on distinct devices through
  // NCCL, which combines the entries in an order of its own (ring, tree or
  // NVLS, chosen by size and topology): NCCL's bandwidth, rounding that is not
  // entry order's. Without it such calls take the ordered staged path, so
  // every buffer holds the reduction in entry order, as for any other type.
  multi_gpu_policy with_nccl_order() const {
    multi_gpu_policy p = *this;
    p.nccl_order_ = true;
    return p;
  }
  bool uses_nccl_order() const noexcept { return nccl_order_; }

  // Waits for all entries' streams; throws cuda_error if any work failed.
  void synchronize() const {
    for (std::size_t i = 0; i < size(); ++i) {
      detail::cuda::device_scope scope(device(i));
      detail::cuda::check(cudaStreamSynchronize(stream(i)), "cudaStreamSynchronize", device(i));
    }
  }

  // Same streams: the same policy object or copies of it.
  friend bool operator==(const multi_gpu_policy& a, const multi_gpu_policy& b) noexcept {
    return a.streams_ == b.streams_;
  }

 private:
  std::shared_ptr<const detail::multi_gpu::stream_set> streams_;
  bool nccl_order_ = false;
};

// dpar::multi_gpu({0, 1}), dpar::multi_gpu({0, 0}) (two shards on device 0).
inline multi_gpu_policy multi_gpu(std::vector<int> devices) { return multi_gpu_policy(std::move(devices)); }

// Every visible CUDA device once (CUDA_VISIBLE_DEVICES decides which).
inline multi_gpu_policy multi_gpu_all() {
  std::vector<int> all(static_cast<std::size_t>(detail::cuda::device_count()));
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  return multi_gpu_policy(std::move(all));
}

template <>
struct is_execution_policy<multi_gpu_policy> : std::true_type {};

// Policies of this type: the sharded_vector overloads take only these.
template <class P>
concept multi_gpu_execution_policy = std::same_as<std::remove_cvref_t<P>, multi_gpu_policy>;

}  // namespace dpar
