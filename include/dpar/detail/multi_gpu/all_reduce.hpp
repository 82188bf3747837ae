#pragma once
// dpar::all_reduce over one device buffer per multi_gpu entry.
//
// NCCL path: distinct devices, an op NCCL has (sum, prod, min, max) and a type
// NCCL has, except floating-point sums and products unless the policy opts
// into NCCL's order (multi_gpu_policy::with_nccl_order(): NCCL combines the
// entries in an order of its own, which changes the rounding). One
// ncclAllReduce per entry in one group, on the communicators of the policy's
// SET of devices (nccl_plan.hpp), created once and destroyed at exit. Needs
// DPAR_HAVE_NCCL (CMake target dpar::nccl defines it and links libnccl).
//
// Otherwise (a device listed twice, which NCCL refuses with "Duplicate GPU
// detected"; float sums in entry order; other ops; no NCCL): staged through
// buffer 0, in entry order: buffer 0 = op(buffer 0, buffer r) for r = 1..K-1
// (peer copy into a scratch buffer when buffer r lives on another device),
// then buffer 0 is copied to the others. Right for non-commutative ops too.
//
// Both are ordered after the work queued on the entries' streams and on the
// devices' default streams (legacy and the calling thread's per-thread one),
// and return when every buffer holds the result.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(DPAR_HAVE_NCCL)
#include <nccl.h>
#endif

#include "../../collective.hpp"
#include "../../errors.hpp"
#include "../../functional.hpp"
#include "../../gpu/memory.hpp"
#include "../cuda/backend.hpp"
#include "../../gpu/error.hpp"
#include "nccl_plan.hpp"
#include "../../gpu/multi_gpu_policy.hpp"

namespace dpar {


namespace detail::multi_gpu {

// The buffers as device spans, checked before any communication: one per
// entry, equal lengths, each in memory of its entry's device, no two overlapping.
template <class Buffers>
auto device_spans(const multi_gpu_policy& p, Buffers& buffers, const char* who) {
  using element = std::remove_reference_t<decltype(*std::ranges::data(*std::ranges::begin(buffers)))>;
  static_assert(!std::is_const_v<element>, "dpar::all_reduce needs writable buffers");
  std::vector<std::span<element>> spans;
  for (auto&& b : buffers) spans.emplace_back(std::ranges::data(b), std::ranges::size(b));
  if (spans.size() != p.size())
    throw std::invalid_argument(std::string(who) + ": " + std::to_string(spans.size()) +
                                " buffers for a multi_gpu policy of " + std::to_string(p.size()) +
                                " entries; pass one device buffer per entry");
  for (std::size_t r = 1; r < spans.size(); ++r)
    if (spans[r].size() != spans[0].size())
      throw std::invalid_argument(std::string(who) + ": buffer " + std::to_string(r) + " (device " +
                                  std::to_string(p.device(r)) + ") has " + std::to_string(spans[r].size()) +
                                  " elements but buffer 0 has " + std::to_string(spans[0].size()) +
                                  "; all buffers must have the same length");
  if (!spans.empty() && !spans[0].empty()) {
    for (std::size_t r = 0; r < spans.size(); ++r) {
      cudaPointerAttributes a{};
      cuda::check(cudaPointerGetAttributes(&a, spans[r].data()), "cudaPointerGetAttributes", p.device(r));
      if (a.type != cudaMemoryTypeDevice || a.device != p.device(r))
        throw std::invalid_argument(std::string(who) + ": buffer " + std::to_string(r) +
                                    " is not device memory of device " + std::to_string(p.device(r)) + " (entry " +
                                    std::to_string(r) + " of the policy)");
    }
    auto address = [](const auto* q) { return reinterpret_cast<std::uintptr_t>(q); };
    for (std::size_t r = 0; r < spans.size(); ++r)
      for (std::size_t s = r + 1; s < spans.size(); ++s)
        if (p.device(r) == p.device(s) && address(spans[r].data()) < address(spans[s].data() + spans[s].size()) &&
            address(spans[s].data()) < address(spans[r].data() + spans[r].size()))
          throw std::invalid_argument(std::string(who) + ": buffers " + std::to_string(r) + " and " +
                                      std::to_string(s) + " overlap; each entry needs its own buffer");
  }
  return spans;
}

// Makes `stream` wait for the work queued so far on the default streams of
// each distinct device in `devices`: the legacy default stream (dpar::gpu.on(d)
// and plain kernel launches) and the calling thread's per-thread default
// stream (the same in --default-stream per-thread builds). The entries' own
// streams are ordered with the legacy stream of their device only, and
// cudaMemcpyPeerAsync with nothing on the other device.
inline void wait_for_default_streams(const std::vector<int>& devices, cudaStream_t stream) {
  std::vector<int> seen;
  for (int d : devices) {
    if (std::find(seen.begin(), seen.end(), d) != seen.end()) continue;
    seen.push_back(d);
    for (cudaStream_t s : {cudaStreamLegacy, cudaStreamPerThread})
      cuda::stream_wait(stream, d, s, "ordering dpar::all_reduce after the device's default streams");
  }
}

#if defined(DPAR_HAVE_NCCL)
inline void nccl_check(ncclResult_t r, const char* operation) {
  if (r != ncclSuccess)
    throw nccl_error(std::string("dpar::multi_gpu: ") + operation + " failed: " + ncclGetErrorString(r),
                     static_cast<int>(r));
}

// The communicators of each set of devices used so far, rank i on devices[i]
// of the sorted list (nccl_plan.hpp). Destroyed at exit by a handler
// registered right after the first ncclCommInitAll: handlers run in the
// reverse order of registration, so it runs before the CUDA runtime and NCCL,
// which registered theirs when they started, tear down. Never destroyed
// otherwise: a later all-reduce on the same devices reuses them.
struct communicator_sets {
  std::mutex m;
  std::map<std::vector<int>, std::vector<ncclComm_t>> sets;
  bool freed_at_exit = false;
};
inline communicator_sets& communicator_cache() {
  static auto* cache = new communicator_sets();  // outlives static destruction; destroy_communicators empties it
  return *cache;
}
// Finalizing several communicators from one thread needs them in one group.
inline void destroy_communicators() noexcept {
  auto& cache = communicator_cache();
  std::lock_guard lock(cache.m);
  for (auto& [devices, comms] : cache.sets) {
    (void)ncclGroupStart();
    for (ncclComm_t c : comms) (void)ncclCommFinalize(c);
    (void)ncclGroupEnd();
    for (ncclComm_t c : comms) (void)ncclCommDestroy(c);
  }
  cache.sets.clear();
}
inline const std::vector<ncclComm_t>& communicators(const std::vector<int>& sorted_devices) {
  auto& cache = communicator_cache();
  std::lock_guard lock(cache.m);
  auto it = cache.sets.find(sorted_devices);
  if (it != cache.sets.end()) return it->second;
  std::vector<ncclComm_t> comms(sorted_devices.size());
  nccl_check(ncclCommInitAll(comms.data(), static_cast<int>(comms.size()), sorted_devices.data()), "ncclCommInitAll");
  it = cache.sets.emplace(sorted_devices, std::move(comms)).first;
  if (!cache.freed_at_exit) cache.freed_at_exit = std::atexit(destroy_communicators) == 0;
  return it->second;
}

template <class T>
constexpr int nccl_type() {  // -1: NCCL has no such type
  if constexpr (std::is_same_v<T, float>)
    return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return ncclFloat64;
  else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) == 1)
    return std::is_signed_v<T> ? ncclInt8 : ncclUint8;
  else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) == 4)
    return std::is_signed_v<T> ? ncclInt32 : ncclUint32;
  else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) == 8)
    return std::is_signed_v<T> ? ncclInt64 : ncclUint64;
  else
    return -1;
}

// The NCCL op for Op's kind on T (functional.hpp); -1: none.
template <class Op, class T>
constexpr int nccl_op() {
  switch (op_kind_v<Op, T>) {
    case op_kind::sum: return ncclSum;
    case op_kind::product: return ncclProd;
    case op_kind::min: return ncclMin;
    case op_kind::max: return ncclMax;
    default: return -1;
  }
}

// Holds one lock per device of a list, taken in increasing device order (so
// two holders never wait for each other), from before ncclGroupStart until the
// streams are synchronized. NCCL forbids using a communicator from two host
// threads at once ({0,1} and {1,0} share one set), and kernels of two
// communicator sets that share devices ({0,1} and {1,2}) could be queued in
// opposite orders on a device they share and wait for each other forever.
class nccl_device_locks {
 public:
  explicit nccl_device_locks(std::vector<int> devices) : devices_(std::move(devices)) {
    std::sort(devices_.begin(), devices_.end());
    for (int d : devices_) mutex_of(d).lock();
  }
  nccl_device_locks(const nccl_device_locks&) = delete;
  nccl_device_locks& operator=(const nccl_device_locks&) = delete;
  ~nccl_device_locks() {
    for (auto d = devices_.rbegin(); d != devices_.rend(); ++d) mutex_of(*d).unlock();
  }

 private:
  static std::mutex& mutex_of(int device) {
    static std::mutex m;
    static auto* mutexes = new std::map<int, std::mutex>();  // nodes never move
    std::lock_guard lock(m);
    return (*mutexes)[device];
  }
  std::vector<int> devices_;
};

template <class T, class Op>
void nccl_all_reduce(const multi_gpu_policy& p, std::vector<std::span<T>>& spans) {
  const nccl_ranks ranks = nccl_ranks_of(p.devices());
  const auto& comms = communicators(ranks.devices);
  const std::size_t n = spans[0].size();
  nccl_device_locks lock(p.devices());
  // NCCL is ordered after each entry's own stream; its device's default
  // streams, which may still be writing the buffer, come first too.
  for (std::size_t r = 0; r < spans.size(); ++r) wait_for_default_streams({p.device(r)}, p.stream(r));
  // One thread drives every GPU: the calls must be one group, or the first
  // would wait for peers that are never launched.
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  ncclResult_t failed = ncclSuccess;
  for (std::size_t r = 0; r < spans.size() && failed == ncclSuccess; ++r)
    failed = ncclAllReduce(spans[r].data(), spans[r].data(), n, static_cast<ncclDataType_t>(nccl_type<T>()),
                           static_cast<ncclRedOp_t>(nccl_op<Op, T>()), comms[ranks.rank_of[r]], p.stream(r));
  ncclResult_t ended = ncclGroupEnd();
  nccl_check(failed, "ncclAllReduce");
  nccl_check(ended, "ncclGroupEnd");
  p.synchronize();
}
#endif

// buffer 0 = op(...op(op(b0, b1), b2)..., b[K-1]), then copied to the others;
// all on entry 0's stream.
template <class T, class Op>
void staged_all_reduce(const multi_gpu_policy& p, std::vector<std::span<T>>& spans, Op& op) {
  const std::size_t n = spans[0].size();
  if (n == 0 || spans.size() == 1) return;
  p.synchronize();  // work already queued on any entry's stream comes first
  const int d0 = p.device(0);
  cudaStream_t s0 = p.stream(0);
  const std::size_t bytes = n * sizeof(T);
  // ... and so does work on the devices' default streams, which may still be
  // writing (or reading) the buffers
  wait_for_default_streams(p.devices(), s0);
  cuda::device_scope scope(d0);
  std::unique_ptr<cuda::temp_buffer> scratch;
  T* acc = spans[0].data();
  for (std::size_t r = 1; r < spans.size(); ++r) {
    const T* src = spans[r].data();
    if (p.device(r) != d0) {
      if (!scratch) scratch = std::make_unique<cuda::temp_buffer>(d0, bytes, s0);
      cuda::check(cudaMemcpyPeerAsync(scratch->as<T>(), d0, src, p.device(r), bytes, s0), "cudaMemcpyPeerAsync", d0);
      src = scratch->as<T>();
    }
    cuda::backend::transform(p.entry(0), acc, acc + n, src, acc, op);
  }
  wait_for_default_streams(p.devices(), s0);  // again, for what was queued there meanwhile
  for (std::size_t r = 1; r < spans.size(); ++r)
    cuda::check(cudaMemcpyPeerAsync(spans[r].data(), p.device(r), acc, d0, bytes, s0), "cudaMemcpyPeerAsync", d0);
  cuda::check(cudaStreamSynchronize(s0), "cudaStreamSynchronize", d0);
}

template <class T>
struct divide_by_count {
  T k;
  __host__ __device__ T operator()(const T& x) const { return static_cast<T>(x / k); }
};

struct device_all_reduce {
  template <class Buffers, class Op>
  static void all_reduce(const multi_gpu_policy& p, Buffers& buffers, Op& op) {
    auto spans = device_spans(p, buffers, "dpar::all_reduce");
    using T = typename decltype(spans)::value_type::element_type;
    cuda::require_device_value<T>();
    if (spans[0].empty()) return;
#if defined(DPAR_HAVE_NCCL)
    if constexpr (nccl_type<T>() >= 0 && nccl_op<Op, T>() >= 0) {
      if (distinct_devices(p.devices()) && (!order_changes_bits<Op, T> || p.uses_nccl_order())) {
        nccl_all_reduce<T, Op>(p, spans);
        return;
      }
    }
#endif
    staged_all_reduce(p, spans, op);
  }

  template <class Buffers>
  static void all_reduce_mean(const multi_gpu_policy& p, Buffers& buffers) {
    std::plus<> sum;
    all_reduce(p, buffers, sum);
    auto spans = device_spans(p, buffers, "dpar::all_reduce_mean");
    using T = typename decltype(spans)::value_type::element_type;
    const T k = static_cast<T>(spans.size());
    for (std::size_t r = 0; r < spans.size(); ++r)
      if (!spans[r].empty())
        cuda::backend::transform(p.entry(r), spans[r].data(), spans[r].data() + spans[r].size(), spans[r].data(),
                                 divide_by_count<T>{k});
    p.synchronize();
  }
};

}  // namespace detail::multi_gpu
}  // namespace dpar

namespace dpar::detail {

// dpar::all_reduce(multi_gpu_policy, buffers, op): one device buffer per entry
// (dpar::device_vector<T>, std::span<T> over device memory, ...).
template <>
struct collective_backend<multi_gpu_policy> {
  template <class Buffers, class Op>
  static void all_reduce(const multi_gpu_policy& p, Buffers& buffers, Op& op) {
    multi_gpu::device_all_reduce::all_reduce(p, buffers, op);
  }
  template <class Buffers>
  static void all_reduce_mean(const multi_gpu_policy& p, Buffers& buffers) {
    multi_gpu::device_all_reduce::all_reduce_mean(p, buffers);
  }
};
}  // namespace dpar::detail
