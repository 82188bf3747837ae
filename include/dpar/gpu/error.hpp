#pragma once
// dpar::cuda_error and the checks every CUDA call goes through, plus the
// device bookkeeping (how many devices, which one a call runs on).

#include <cuda_runtime_api.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpar {

// A failed CUDA call: names the operation, the device (-1 if none applies) and
// CUDA's own error name and message.
class cuda_error : public std::runtime_error {
 public:
  cuda_error(std::string operation, int device, cudaError_t code, const std::string& detail = {})
      : std::runtime_error(describe(operation, device, code, detail)),
        operation_(std::move(operation)),
        device_(device),
        code_(code) {}

  const std::string& operation() const noexcept { return operation_; }
  int device() const noexcept { return device_; }
  cudaError_t code() const noexcept { return code_; }

 private:
  static std::string describe(const std::string& operation, int device, cudaError_t code,
                              const std::string& detail) {
    std::string s = "dpar::gpu: " + operation;
    if (device >= 0) s += " on device " + std::to_string(device);
    s += " failed: ";
    if (!detail.empty()) s += detail + " (";
    s += std::string(cudaGetErrorName(code)) + ": " + cudaGetErrorString(code);
    if (!detail.empty()) s += ")";
    return s;
  }

  std::string operation_;
  int device_;
  cudaError_t code_;
};

namespace detail::cuda {

inline void check(cudaError_t code, const char* operation, int device) {
  if (code != cudaSuccess) {
    // Clear the error unless it is sticky, so that the next call starts clean.
    (void)cudaGetLastError();
    throw cuda_error(operation, device, code);
  }
}

// Number of CUDA devices; throws cuda_error "no CUDA device" when there is none
// or the driver cannot be used. A success is remembered, a failure is asked
// again next time.
inline int device_count() {
  static std::mutex m;
  static int known = 0;
  std::lock_guard lock(m);
  if (known > 0) return known;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    if (e == cudaSuccess) e = cudaErrorNoDevice;
    throw cuda_error("cudaGetDeviceCount", -1, e, "no CUDA device");
  }
  return known = n;
}

// Checks that `device` names a device of this machine; `who` says who asked.
inline void validate_device(int device, const std::string& who) {
  int n = device_count();
  if (device < 0 || device >= n)
    throw cuda_error(who, device, cudaErrorInvalidDevice,
                     "invalid device " + std::to_string(device) + "; this machine has " + std::to_string(n) +
                         " CUDA device(s), numbered 0 to " + std::to_string(n - 1));
}

inline int current_device() {
  device_count();
  int d = 0;
  check(cudaGetDevice(&d), "cudaGetDevice", -1);
  return d;
}

// Makes `device` current for the lifetime of the scope and restores the
// caller's device afterwards, so that a policy naming a device does not move
// the calling thread to it.
class device_scope {
 public:
  explicit device_scope(int device) : device_(device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice", device);
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice", device);
  }
  device_scope(const device_scope&) = delete;
  device_scope& operator=(const device_scope&) = delete;
  ~device_scope() {
    if (previous_ != device_) (void)cudaSetDevice(previous_);
  }

 private:
  int device_;
  int previous_ = 0;
};

// Makes `waiter` (a stream of any device) wait for the work queued so far on
// `stream` of `device` (an event recorded there); `what` names the ordering in
// the error.
inline void stream_wait(cudaStream_t waiter, int device, cudaStream_t stream, const char* what) {
  device_scope scope(device);  // special handles (cudaStreamLegacy, ...) mean this device's streams
  cudaEvent_t done = nullptr;
  check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags", device);
  cudaError_t e = cudaEventRecord(done, stream);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(waiter, done, 0);
  (void)cudaEventDestroy(done);  // released once the wait is over
  check(e, what, device);
}

// Cached per-device attributes that launch configuration and pointer checks need.
struct device_info {
  int multiprocessors = 0;
  bool pageable_memory_access = false;  // kernels may read plain host memory (HMM/ATS)
};

inline const device_info& info(int device) {
  static std::mutex m;
  static std::vector<device_info> cache;
  static std::vector<bool> known;
  std::lock_guard lock(m);
  if (cache.empty()) {
    cache.resize(static_cast<std::size_t>(device_count()));
    known.resize(cache.size());
  }
  auto i = static_cast<std::size_t>(device);
  if (!known[i]) {
    int sms = 0, pageable = 0;
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
          "cudaDeviceGetAttribute(MultiProcessorCount)", device);
    check(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, device),
          "cudaDeviceGetAttribute(PageableMemoryAccess)", device);
    cache[i] = device_info{sms, pageable != 0};
    known[i] = true;
  }
  return cache[i];
}

}  // namespace detail::cuda
}  // namespace dpar
