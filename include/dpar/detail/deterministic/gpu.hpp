#pragma once
// dpar::deterministic(dpar::gpu...) and deterministic(dpar::multi_gpu(...)):
// included by <dpar/cuda.hpp>.
//
// Float and double sums are staged through the host and summed there by the
// host deterministic backend, so they are the same bits as deterministic(seq)
// on the same data: the terms are made on the device where a user function
// must run there (transform_reduce's transform, written into a temporary device
// buffer of the summand type), copied to the host on the policy's stream, and
// summed exactly. The cost is a device-to-host copy of the n terms per sum.
// The exact all_reduce over multi_gpu copies every entry's buffer to the host,
// sums each element's column exactly there, and copies the result back.
// Everything else (scans, other ops and types, transform, for_each) runs on
// the wrapped GPU policy: CUB's reductions and scans are run-to-run
// deterministic on one device for a given problem.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../collective.hpp"
#include "../../deterministic.hpp"
#include "../../gpu/memory.hpp"
#include "../cuda/backend.hpp"
#include "../../gpu/error.hpp"
#include "../../gpu/policy.hpp"
#include "../elementwise_on_inner.hpp"
#include "../multi_gpu/all_reduce.hpp"
#include "../multi_gpu/backend.hpp"
#include "../../gpu/multi_gpu_policy.hpp"
#include "backend.hpp"

namespace dpar::detail::deterministic {

// The host policy that sums staged terms: any host policy gives the same bits.
inline deterministic_policy<parallel_policy> host_sum() { return deterministic_policy<parallel_policy>(par); }

// f(x) converted to the summand type S, on the device.
template <class S, class F>
struct as_summand {
  F f;
  template <class X>
  __host__ __device__ S operator()(X&& x) const {
    return static_cast<S>(f(static_cast<X&&>(x)));
  }
};

struct unchanged {
  template <class X>
  __host__ __device__ X&& operator()(X&& x) const {
    return static_cast<X&&>(x);
  }
};

// f(first[i]) as S for i in [0, n), made on p's device and copied to the host.
template <class S, class It, class F>
std::vector<S> terms_on_host(const gpu_policy& p, It first, std::size_t n, F f) {
  std::vector<S> host(n);
  if (n == 0) return host;
  const int device = p.device();
  cuda::device_scope scope(device);
  cuda::temp_buffer terms(device, n * sizeof(S), p.stream());
  cuda::backend::transform(p, first, first + static_cast<std::iter_difference_t<It>>(n), terms.as<S>(),
                           as_summand<S, F>{f});
  cuda::check(cudaMemcpyAsync(host.data(), terms.as<S>(), n * sizeof(S), cudaMemcpyDeviceToHost, p.stream()),
              "cudaMemcpyAsync (terms to host)", device);
  cuda::check(cudaStreamSynchronize(p.stream()), "cudaStreamSynchronize", device);
  return host;
}

// multi_gpu takes host iterators: f runs on the shards' devices, the output
// is gathered to the host.
template <class S, class It, class F>
std::vector<S> terms_on_host(const multi_gpu_policy& p, It first, std::size_t n, F f) {
  std::vector<S> host(n);
  multi_gpu::backend::transform(p, first, std::next(first, static_cast<std::iter_difference_t<It>>(n)), host.begin(),
                                as_summand<S, F>{f});
  return host;
}

// The backend of deterministic(gpu) and deterministic(multi_gpu).
struct gpu_backend : elementwise_on_inner {
  template <class P, class It, class T, class Op>
  static T reduce(const P& policy, It first, It last, T init, Op op) {
    using Inner = typename P::inner_type;
    using V = std::iter_value_t<It>;
    if constexpr (exact_sum_v<Op, T, V>) {
      if constexpr (std::is_same_v<Inner, multi_gpu_policy>) {
        multi_gpu::require_host(first, "dpar::reduce");
        return backend::reduce(host_sum(), first, last, std::move(init), op);  // already on the host
      } else {
        const auto terms = terms_on_host<summand_t<Op, T, V>>(policy.inner(), first, count(first, last), unchanged{});
        return backend::reduce(host_sum(), terms.begin(), terms.end(), std::move(init), op);
      }
    } else {
      return backend_of<Inner>::reduce(policy.inner(), first, last, std::move(init), std::move(op));
    }
  }

  template <class P, class It, class T, class R, class U>
  static T transform_reduce(const P& policy, It first, It last, T init, R reduce, U transform) {
    using Inner = typename P::inner_type;
    using V = std::invoke_result_t<U&, element_reference_t<Inner, It>>;
    if constexpr (exact_sum_v<R, T, V>) {
      const auto terms = terms_on_host<summand_t<R, T, V>>(policy.inner(), first, count(first, last), transform);
      return backend::reduce(host_sum(), terms.begin(), terms.end(), std::move(init), reduce);
    } else {
      return backend_of<Inner>::transform_reduce(policy.inner(), first, last, std::move(init), std::move(reduce),
                                                 std::move(transform));
    }
  }

  // The sum of products: both inputs on the host, where the products are exact.
  template <class P, class It1, class It2, class T, class R, class U>
  static T transform_reduce(const P& policy, It1 first1, It1 last1, It2 first2, T init, R reduce, U transform) {
    using Inner = typename P::inner_type;
    using A = std::iter_value_t<It1>;
    using B = std::iter_value_t<It2>;
    if constexpr (exact_sum_v<R, T, A> && exact_sum_v<R, T, B> &&
                  std::is_same_v<std::remove_cvref_t<U>, std::multiplies<>>) {
      if constexpr (std::is_same_v<Inner, multi_gpu_policy>) {
        multi_gpu::require_host(first1, "dpar::transform_reduce");
        multi_gpu::require_host(first2, "dpar::transform_reduce");
        return backend::transform_reduce(host_sum(), first1, last1, first2, std::move(init), reduce, transform);
      } else {
        const std::size_t n = count(first1, last1);
        const auto a = terms_on_host<A>(policy.inner(), first1, n, unchanged{});
        const auto b = terms_on_host<B>(policy.inner(), first2, n, unchanged{});
        return backend::transform_reduce(host_sum(), a.begin(), a.end(), b.begin(), std::move(init), reduce,
                                         transform);
      }
    } else {
      return backend_of<Inner>::transform_reduce(policy.inner(), first1, last1, first2, std::move(init),
                                                 std::move(reduce), std::move(transform));
    }
  }

  template <class V, class P, class In, class Out, class Op>
  static Out inclusive_scan(const P& policy, In first, In last, Out d_first, Op op, std::optional<V> init) {
    return backend_of<typename P::inner_type>::template inclusive_scan<V>(policy.inner(), first, last, d_first,
                                                                          std::move(op), std::move(init));
  }

  template <class P, class In, class Out, class T, class Op>
  static Out exclusive_scan(const P& policy, In first, In last, Out d_first, T init, Op op) {
    return backend_of<typename P::inner_type>::exclusive_scan(policy.inner(), first, last, d_first, std::move(init),
                                                              std::move(op));
  }

 private:
  template <class It>
  static std::size_t count(It first, It last) {
    return static_cast<std::size_t>(last - first);
  }
};

template <>
struct backend_select<gpu_policy> {
  using type = gpu_backend;
  static constexpr bool supported = true;
};

template <>
struct backend_select<multi_gpu_policy> {
  using type = gpu_backend;
  static constexpr bool supported = true;
};

// One device buffer per entry: every buffer gets the correctly rounded sum of
// the entries' elements (divided by the entry count for the mean), computed on
// the host. Each copy is ordered on its entry's stream, after the work queued
// there and on its device's default streams.
template <class Buffers>
void device_exact_all_reduce(const multi_gpu_policy& p, Buffers& buffers, bool mean, const char* who) {
  auto spans = multi_gpu::device_spans(p, buffers, who);
  using T = typename decltype(spans)::value_type::element_type;
  const std::size_t n = spans[0].size(), bytes = n * sizeof(T);
  if (n == 0) return;
  std::vector<std::vector<T>> host(spans.size(), std::vector<T>(n));
  for (std::size_t r = 0; r < spans.size(); ++r) {
    multi_gpu::wait_for_default_streams({p.device(r)}, p.stream(r));
    cuda::device_scope scope(p.device(r));
    cuda::check(cudaMemcpyAsync(host[r].data(), spans[r].data(), bytes, cudaMemcpyDeviceToHost, p.stream(r)),
                "cudaMemcpyAsync (buffer to host)", p.device(r));
  }
  p.synchronize();
  host_exact_all_reduce(&par.pool(), host, mean, who);
  for (std::size_t r = 0; r < spans.size(); ++r) {
    cuda::device_scope scope(p.device(r));
    cuda::check(cudaMemcpyAsync(spans[r].data(), host[r].data(), bytes, cudaMemcpyHostToDevice, p.stream(r)),
                "cudaMemcpyAsync (result to device)", p.device(r));
  }
  p.synchronize();
}

template <class Buffers>
using device_element_t = std::remove_reference_t<decltype(*std::ranges::data(*std::ranges::begin(std::declval<Buffers&>())))>;

}  // namespace dpar::detail::deterministic

namespace dpar::detail {
// all_reduce with + on float or double device buffers is exact (staged through
// the host); any other op or type runs on multi_gpu, which combines in entry
// order.
template <>
struct collective_backend<deterministic_policy<multi_gpu_policy>> {
  template <class Buffers, class Op>
  static void all_reduce(const deterministic_policy<multi_gpu_policy>& policy, Buffers& buffers, Op& op) {
    using T = deterministic::device_element_t<Buffers>;
    if constexpr (deterministic::exact_sum_v<Op, T, T>)
      deterministic::device_exact_all_reduce(policy.inner(), buffers, false, "dpar::all_reduce");
    else
      dpar::all_reduce(policy.inner(), buffers, op);
  }

  template <class Buffers>
  static void all_reduce_mean(const deterministic_policy<multi_gpu_policy>& policy, Buffers& buffers) {
    if constexpr (deterministic::is_float_or_double_v<deterministic::device_element_t<Buffers>>)
      deterministic::device_exact_all_reduce(policy.inner(), buffers, true, "dpar::all_reduce_mean");
    else
      dpar::all_reduce_mean(policy.inner(), buffers);
  }
};

static_assert(backend_for<deterministic::gpu_backend, deterministic_policy<gpu_policy>>);
}  // namespace dpar::detail
