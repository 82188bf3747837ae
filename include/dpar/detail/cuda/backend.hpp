#pragma once
// Single-GPU backend: every algorithm is one or two CUB device-wide calls on
// the policy's device and stream, with temporary storage from the caching
// allocator.
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
#include <optional>
#include <type_traits>

#include "../../functional.hpp"
#include "allocator.hpp"
#include "error.hpp"
#include "iterators.hpp"
#include "ordered_reduce.hpp"
#include "policy.hpp"

namespace dpar::detail::cuda {

// Calls f with n as a 32-bit count when it fits (CUB's faster kernels) and
// as a 64-bit count otherwise.
template <class F>
void with_count(std::size_t n, F&& f) {
  if (n <= static_cast<std::size_t>(INT32_MAX)) f(static_cast<std::int32_t>(n));
  else f(static_cast<std::int64_t>(n));
}

// A CUB call in two steps: ask for the temporary storage, then run with it.
template <class Call>
void run_cub(int device, cudaStream_t stream, const char* name, Call call) {
  std::size_t bytes = 0;
  check(call(nullptr, bytes), name, device);
  temp_buffer buffer(device, bytes, stream);
  check(call(buffer.data(), bytes), name, device);
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

struct backend {
  template <class In, class Out, class F>
  static Out transform(const gpu_policy& p, In first, In last, Out d_first, F f) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const auto n = static_cast<std::size_t>(last - first);
    const int device = p.device();
    if (n == 0) return d_first;
    device_scope scope(device);
    auto in = device_arg(first, device, "dpar::transform", "input");
    auto out = device_arg(d_first, device, "dpar::transform", "output");
    with_count(n, [&](auto count) {
      check(cub::DeviceTransform::Transform(in, out, count, f, p.stream()), "cub::DeviceTransform::Transform",
            device);
    });
    return advance(d_first, n);
  }

  template <class In1, class In2, class Out, class F>
  static Out transform(const gpu_policy& p, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In1);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In2);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    const auto n = static_cast<std::size_t>(last1 - first1);
    const int device = p.device();
    if (n == 0) return d_first;
    device_scope scope(device);
    auto in1 = device_arg(first1, device, "dpar::transform", "first input");
    auto in2 = device_arg(first2, device, "dpar::transform", "second input");
    auto out = device_arg(d_first, device, "dpar::transform", "output");
    with_count(n, [&](auto count) {
      check(cub::DeviceTransform::Transform(::cuda::std::make_tuple(in1, in2), out, count, f, p.stream()),
            "cub::DeviceTransform::Transform", device);
    });
    return advance(d_first, n);
  }

  template <class It, class F>
  static void for_each(const gpu_policy& p, It first, It last, F f) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    const auto n = static_cast<std::size_t>(last - first);
    const int device = p.device();
    if (n == 0) return;
    device_scope scope(device);
    auto it = device_arg(first, device, "dpar::for_each", "range");
    with_count(n, [&](auto count) {
      check(cub::DeviceFor::ForEachN(it, count, f, p.stream()), "cub::DeviceFor::ForEachN", device);
    });
  }

  template <class It, class T, class Op>
  static T reduce(const gpu_policy& p, It first, It last, T init, Op op) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    require_device_value<T>();
    const auto n = static_cast<std::size_t>(last - first);
    const int device = p.device();
    if (n == 0) return init;
    device_scope scope(device);
    auto in = device_arg(first, device, "dpar::reduce", "input");
    if constexpr (reorderable_v<Op, T>) {
      return fast_reduce<T>(device, p.stream(), n, "cub::DeviceReduce::Reduce",
                            [&](auto count, void* temp, std::size_t& bytes, T* out) {
                              return cub::DeviceReduce::Reduce(temp, bytes, in, out, count, op, init, p.stream());
                            });
    } else {
      return ordered_reduce(device, p.stream(), n, init, op, read_at<decltype(in)>{in});
    }
  }

  template <class It, class T, class R, class U>
  static T transform_reduce(const gpu_policy& p, It first, It last, T init, R reduce, U transform) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It);
    require_device_value<T>();
    const auto n = static_cast<std::size_t>(last - first);
    const int device = p.device();
    if (n == 0) return init;
    device_scope scope(device);
    auto in = device_arg(first, device, "dpar::transform_reduce", "input");
    if constexpr (reorderable_v<R, T>) {
      return fast_reduce<T>(device, p.stream(), n, "cub::DeviceReduce::TransformReduce",
                            [&](auto count, void* temp, std::size_t& bytes, T* out) {
                              return cub::DeviceReduce::TransformReduce(temp, bytes, in, out, count, reduce,
                                                                        transform, init, p.stream());
                            });
    } else {
      return ordered_reduce(device, p.stream(), n, init, reduce, transform_at<decltype(in), U>{in, transform});
    }
  }

  template <class It1, class It2, class T, class R, class U>
  static T transform_reduce(const gpu_policy& p, It1 first1, It1 last1, It2 first2, T init, R reduce,
                            U transform) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It1);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(It2);
    require_device_value<T>();
    const auto n = static_cast<std::size_t>(last1 - first1);
    const int device = p.device();
    if (n == 0) return init;
    device_scope scope(device);
    auto in1 = device_arg(first1, device, "dpar::transform_reduce", "first input");
    auto in2 = device_arg(first2, device, "dpar::transform_reduce", "second input");
    using pair_at = transform2_at<decltype(in1), decltype(in2), U>;
    if constexpr (reorderable_v<R, T>) {
      // CUB reduces f(a[i], b[i]) over the indices i of a counting iterator.
      return fast_reduce<T>(device, p.stream(), n, "cub::DeviceReduce::TransformReduce",
                            [&](auto count, void* temp, std::size_t& bytes, T* out) {
                              thrust::counting_iterator<decltype(count)> index(0);
                              return cub::DeviceReduce::TransformReduce(temp, bytes, index, out, count, reduce,
                                                                        pair_at{in1, in2, transform}, init,
                                                                        p.stream());
                            });
    } else {
      return ordered_reduce(device, p.stream(), n, init, reduce, pair_at{in1, in2, transform});
    }
  }

  // With an init, it is combined on the left of the first element.
  template <class V, class In, class Out, class Op>
  static Out inclusive_scan(const gpu_policy& p, In first, In last, Out d_first, Op op, std::optional<V> init) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    require_device_value<V>();
    const auto n = static_cast<std::size_t>(last - first);
    const int device = p.device();
    if (n == 0) return d_first;
    device_scope scope(device);
    auto in = device_arg(first, device, "dpar::inclusive_scan", "input");
    auto out = device_arg(d_first, device, "dpar::inclusive_scan", "output");
    cudaStream_t s = p.stream();
    with_count(n, [&](auto count) {
      if (init) {
        run_cub(device, s, "cub::DeviceScan::InclusiveScanInit", [&](void* temp, std::size_t& bytes) {
          return cub::DeviceScan::InclusiveScanInit(temp, bytes, in, out, op, *init, count, s);
        });
      } else {
        // CUB accumulates in the input's value type here; read the input as V
        // so that the scan accumulates in V, as with an init (the multi-GPU
        // backend scans shard 0 without init and the others with one).
        auto in_v = [&] {
          if constexpr (std::is_same_v<std::iter_value_t<decltype(in)>, V>) return in;
          else return thrust::make_transform_iterator(in, convert_to<V>{});
        }();
        run_cub(device, s, "cub::DeviceScan::InclusiveScan", [&](void* temp, std::size_t& bytes) {
          return cub::DeviceScan::InclusiveScan(temp, bytes, in_v, out, op, count, s);
        });
      }
    });
    return advance(d_first, n);
  }

  template <class In, class Out, class T, class Op>
  static Out exclusive_scan(const gpu_policy& p, In first, In last, Out d_first, T init, Op op) {
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(In);
    DPAR_CUDA_REQUIRE_DEVICE_ITERATOR(Out);
    require_device_value<T>();
    const auto n = static_cast<std::size_t>(last - first);
    const int device = p.device();
    if (n == 0) return d_first;
    device_scope scope(device);
    auto in = device_arg(first, device, "dpar::exclusive_scan", "input");
    auto out = device_arg(d_first, device, "dpar::exclusive_scan", "output");
    cudaStream_t s = p.stream();
    with_count(n, [&](auto count) {
      run_cub(device, s, "cub::DeviceScan::ExclusiveScan", [&](void* temp, std::size_t& bytes) {
        return cub::DeviceScan::ExclusiveScan(temp, bytes, in, out, op, init, count, s);
      });
    });
    return advance(d_first, n);
  }

 private:
  // A CUB reduction whose result lands in a device slot in front of its
  // temporary storage; copies it back and waits for the stream.
  template <class T, class Call>
  static T fast_reduce(int device, cudaStream_t stream, std::size_t n, const char* name, Call call) {
    T host{};
    with_count(n, [&](auto count) {
      std::size_t bytes = 0;
      check(call(count, nullptr, bytes, static_cast<T*>(nullptr)), name, device);
      const std::size_t slot = (sizeof(T) + 255) / 256 * 256;
      temp_buffer buffer(device, slot + bytes, stream);
      check(call(count, buffer.as<void>(slot), bytes, buffer.as<T>()), name, device);
      check(cudaMemcpyAsync(&host, buffer.as<T>(), sizeof(T), cudaMemcpyDeviceToHost, stream),
            "cudaMemcpyAsync (result)", device);
      check(cudaStreamSynchronize(stream), "cudaStreamSynchronize", device);
    });
    return host;
  }
};

}  // namespace dpar::detail::cuda
