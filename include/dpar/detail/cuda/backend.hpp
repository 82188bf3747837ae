#pragma once
// Single-GPU backend: every algorithm is one or two CUB device-wide calls on
// the policy's device and stream (a `launch`), with temporary storage from the
// stream-ordered allocator.
//
//   transform            cub::DeviceTransform::Transform
//   for_each             cub::DeviceFor::ForEachN
//   reduce               cub::DeviceReduce::Reduce           (commutative op, arithmetic type)
//   transform_reduce     cub::DeviceReduce::TransformReduce  (commutative op, arithmetic type)
//   reduce, other ops    ordered_reduce (ordered_reduce.hpp): sequence order kept
//   inclusive_scan       cub::DeviceScan::InclusiveScan / InclusiveScanInit
//   exclusive_scan       cub::DeviceScan::ExclusiveScan
//
// CUB's scans keep operand order (documented to support non-commutative
// operators) and work in place when input and output are the same.

#include <cub/device/device_for.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_transform.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>

#include "../../functional.hpp"
#include "../../gpu/memory.hpp"
#include "../../gpu/error.hpp"
#include "iterators.hpp"
#include "ordered_reduce.hpp"
#include "../../gpu/policy.hpp"

namespace dpar::detail::cuda {

// Calls f with n as a 32-bit count when it fits (CUB's faster kernels) and
// as a 64-bit count otherwise.
template <class F>
void with_count(std::size_t n, F&& f) {
  if (n <= static_cast<std::size_t>(INT32_MAX)) f(static_cast<std::int32_t>(n));
  else f(static_cast<std::int64_t>(n));
}

// The iterator as CUB takes it (a raw pointer where it can be), after checking
// that it points to memory the policy's device can use.
template <class It>
auto device_arg(It it, int device, const char* operation, const char* argument) {
  auto raw = unwrap(it);
  check_accessible(raw, device, operation, argument);
  return raw;
}

template <class T>
void require_device_value() {
  static_assert(std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>,
                "dpar::gpu: values that cross between host and device (init, results, element types of "
                "reductions) must be trivially copyable and default constructible");
}

template <class V>
struct convert_to {
  template <class X>
  __host__ __device__ V operator()(const X& x) const {
    return static_cast<V>(x);
  }
};

template <class Out>
Out advance(Out it, std::size_t n) {
  return it + static_cast<std::iter_difference_t<Out>>(n);
}

// Queues a CUB reduction, call(temp, bytes, out, count), on `stream` of
// `device` (already current); its result lands at ->as<T>() of the returned
// storage, in front of the scratch (the multi-GPU backend queues one per
// shard before waiting for any).
template <class T, class Call>
std::unique_ptr<temp_buffer> queue_reduction(int device, cudaStream_t stream, std::size_t n, const char* name,
                                             Call call) {
  std::unique_ptr<temp_buffer> buffer;
  with_count(n, [&](auto count) {
    std::size_t bytes = 0;
    check(call(nullptr, bytes, static_cast<T*>(nullptr), count), name, device);
    buffer = std::make_unique<temp_buffer>(device, result_slot<T> + bytes, stream);
    check(call(buffer->template as<void>(result_slot<T>), bytes, buffer->template as<T>(), count), name, device);
  });
  return buffer;
}

// One algorithm's call on the policy's device, made current while the call
// lasts: the checks and the errors that name the algorithm, and CUB calls with
// n as a 32- or 64-bit count.
class launch {
 public:
  launch(const gpu_policy& p, const char* algorithm)
      : device(p.device()), stream(p.stream()), algorithm_(algorithm), scope_(device) {}

  // The iterator as CUB takes it, checked to point to memory the device can use.
  template <class It>
  auto arg(It it, const char* argument) const {
    return device_arg(it, device, algorithm_, argument);
  }

  // call(count): a CUB call that needs no temporary storage.
  template <class Call>
  void run(std::size_t n, const char* name, Call call) const {
    with_count(n, [&](auto count) { check(call(count), name, device); });
  }

  // call(temp, bytes, count): a CUB call in two steps, asking for the
  // temporary storage, then running with it.
  template <class Call>
  void run_with_storage(std::size_t n, const char* name, Call call) const {
    with_count(n, [&](auto count) {
      with_storage(name, [&](void* temp, std::size_t& bytes) { return call(temp, bytes, count); });
    });
  }

  // call(temp, bytes): the same for a CUB call that takes a 64-bit count
  // whatever n is (DeviceSelect), so that it is instantiated once.
  template <class Call>
  void with_storage(const char* name, Call call) const {
    std::size_t bytes = 0;
    check(call(nullptr, bytes), name, device);
    temp_buffer buffer(device, bytes, stream);
    check(call(buffer.data(), bytes), name, device);
  }

  // call(temp, bytes, out, count): a CUB reduction, its result waited for.
  template <class T, class Call>
  T reduce(std::size_t n, const char* name, Call call) const {
    return queue_reduction<T>(device, stream, n, name, call)->template fetch<T>();
  }

  const int device;
  const cudaStream_t stream;

 private:
  const char* algorithm_;
  device_scope scope_;
};

struct backend {
  template <class In, class Out, class F>
  static Out transform(const gpu_policy& p, In first, In last, Out d_first, F f) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const launch l(p, "dpar::transform");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return d_first;
    auto in = l.arg(first, "input");
    auto out = l.arg(d_first, "output");
    l.run(n, "cub::DeviceTransform::Transform",
          [&](auto count) { return cub::DeviceTransform::Transform(in, out, count, f, l.stream); });
    return advance(d_first, n);
  }

  template <class In1, class In2, class Out, class F>
  static Out transform(const gpu_policy& p, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In1);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In2);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const launch l(p, "dpar::transform");
    const auto n = static_cast<std::size_t>(last1 - first1);
    if (n == 0) return d_first;
    auto in1 = l.arg(first1, "first input");
    auto in2 = l.arg(first2, "second input");
    auto out = l.arg(d_first, "output");
    l.run(n, "cub::DeviceTransform::Transform", [&](auto count) {
      return cub::DeviceTransform::Transform(::cuda::std::make_tuple(in1, in2), out, count, f, l.stream);
    });
    return advance(d_first, n);
  }

  template <class It, class F>
  static void for_each(const gpu_policy& p, It first, It last, F f) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    const launch l(p, "dpar::for_each");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return;
    auto it = l.arg(first, "range");
    l.run(n, "cub::DeviceFor::ForEachN", [&](auto count) { return cub::DeviceFor::ForEachN(it, count, f, l.stream); });
  }

  template <class It, class T, class Op>
  static T reduce(const gpu_policy& p, It first, It last, T init, Op op) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    require_device_value<T>();
    const launch l(p, "dpar::reduce");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return init;
    auto in = l.arg(first, "input");
    if constexpr (reorderable_v<Op, T>) {
      return l.reduce<T>(n, "cub::DeviceReduce::Reduce", [&](void* temp, std::size_t& bytes, T* out, auto count) {
        return cub::DeviceReduce::Reduce(temp, bytes, in, out, count, op, init, l.stream);
      });
    } else {
      return ordered_reduce(l, n, init, op, read_at<decltype(in)>{in});
    }
  }

  template <class It, class T, class R, class U>
  static T transform_reduce(const gpu_policy& p, It first, It last, T init, R reduce, U transform) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    require_device_value<T>();
    const launch l(p, "dpar::transform_reduce");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return init;
    auto in = l.arg(first, "input");
    if constexpr (reorderable_v<R, T>) {
      return l.reduce<T>(n, "cub::DeviceReduce::TransformReduce",
                         [&](void* temp, std::size_t& bytes, T* out, auto count) {
                           return cub::DeviceReduce::TransformReduce(temp, bytes, in, out, count, reduce, transform,
                                                                     init, l.stream);
                         });
    } else {
      return ordered_reduce(l, n, init, reduce, transform_at<decltype(in), U>{in, transform});
    }
  }

  template <class It1, class It2, class T, class R, class U>
  static T transform_reduce(const gpu_policy& p, It1 first1, It1 last1, It2 first2, T init, R reduce,
                            U transform) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It1);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It2);
    require_device_value<T>();
    const launch l(p, "dpar::transform_reduce");
    const auto n = static_cast<std::size_t>(last1 - first1);
    if (n == 0) return init;
    auto in1 = l.arg(first1, "first input");
    auto in2 = l.arg(first2, "second input");
    using pair_at = transform2_at<decltype(in1), decltype(in2), U>;
    if constexpr (reorderable_v<R, T>) {
      // CUB reduces f(a[i], b[i]) over the indices i of a counting iterator.
      return l.reduce<T>(n, "cub::DeviceReduce::TransformReduce",
                         [&](void* temp, std::size_t& bytes, T* out, auto count) {
                           thrust::counting_iterator<decltype(count)> index(0);
                           return cub::DeviceReduce::TransformReduce(temp, bytes, index, out, count, reduce,
                                                                     pair_at{in1, in2, transform}, init, l.stream);
                         });
    } else {
      return ordered_reduce(l, n, init, reduce, pair_at{in1, in2, transform});
    }
  }

  // With an init, it is combined on the left of the first element.
  template <class V, class In, class Out, class Op>
  static Out inclusive_scan(const gpu_policy& p, In first, In last, Out d_first, Op op, std::optional<V> init) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    require_device_value<V>();
    const launch l(p, "dpar::inclusive_scan");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return d_first;
    auto in = l.arg(first, "input");
    auto out = l.arg(d_first, "output");
    if (init) {
      l.run_with_storage(n, "cub::DeviceScan::InclusiveScanInit", [&](void* temp, std::size_t& bytes, auto count) {
        return cub::DeviceScan::InclusiveScanInit(temp, bytes, in, out, op, *init, count, l.stream);
      });
    } else {
      // CUB accumulates in the input's value type here; read the input as V
      // so that the scan accumulates in V, as with an init (the multi-GPU
      // backend scans shard 0 without init and the others with one).
      auto in_v = [&] {
        if constexpr (std::is_same_v<std::iter_value_t<decltype(in)>, V>) return in;
        else return thrust::make_transform_iterator(in, convert_to<V>{});
      }();
      l.run_with_storage(n, "cub::DeviceScan::InclusiveScan", [&](void* temp, std::size_t& bytes, auto count) {
        return cub::DeviceScan::InclusiveScan(temp, bytes, in_v, out, op, count, l.stream);
      });
    }
    return advance(d_first, n);
  }

  template <class In, class Out, class T, class Op>
  static Out exclusive_scan(const gpu_policy& p, In first, In last, Out d_first, T init, Op op) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    require_device_value<T>();
    const launch l(p, "dpar::exclusive_scan");
    const auto n = static_cast<std::size_t>(last - first);
    if (n == 0) return d_first;
    auto in = l.arg(first, "input");
    auto out = l.arg(d_first, "output");
    l.run_with_storage(n, "cub::DeviceScan::ExclusiveScan", [&](void* temp, std::size_t& bytes, auto count) {
      return cub::DeviceScan::ExclusiveScan(temp, bytes, in, out, op, init, count, l.stream);
    });
    return advance(d_first, n);
  }

 private:
  // init op elem(0) op ... op elem(n-1) in sequence order (dpar's kernel), waited for.
  template <class T, class Op, class Elem>
  static T ordered_reduce(const launch& l, std::size_t n, const T& init, const Op& op, const Elem& elem) {
    return ordered_reduce_enqueue(l.device, l.stream, n, &init, op, elem)->template fetch<T>();
  }
};

}  // namespace dpar::detail::cuda
