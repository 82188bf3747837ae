#pragma once
// dpar::deterministic(policy): the same bits whatever the number of threads,
// ranks or how the data is split over them.
//
//   auto p = dpar::deterministic(dpar::par);          // or seq, par.on(pool), mpi(comm, inner)
//   double s = dpar::reduce(p, v, 0.0);               // the exact sum, rounded once
//
// - Sums of float and double (reduce and transform_reduce with std::plus<> or
//   std::plus<T>, the two-range transform_reduce, all_reduce and
//   all_reduce_mean with +) are correctly rounded: the exact value of
//   init + the terms (for the two-range form, exact products) rounded once to
//   the result type, to nearest even. So they are the same bits for seq, any
//   pool size, any number of MPI ranks and any split of the data. inf and NaN
//   terms give what a sequential sum would. all_reduce_mean divides that
//   correctly rounded sum by the replica count (a second rounding).
// - Everything else (scans, other ops and types) runs over chunks of a fixed
//   size, whatever the thread count, and combines the chunks' results in
//   order: the same bits for seq and any pool size. Under MPI they combine the
//   ranks' results in rank order, so they depend on the split over ranks.
// - The GPU policies (dpar::gpu, dpar::multi_gpu; include <dpar/cuda.hpp>)
//   give the same correctly rounded sums by staging through the host: the
//   terms (transform_reduce's transform runs on the device) are copied to the
//   host, a device-to-host copy of n values per sum, and summed there as
//   deterministic(seq) would (detail/deterministic/gpu.hpp). Everything else
//   runs on the GPU policy itself.

#include <type_traits>
#include <utility>

#include "execution.hpp"

namespace dpar {

template <class Inner>
class deterministic_policy;

namespace detail::deterministic {
struct backend;

// Where a deterministic policy's work runs: specialized for seq and par here
// (detail/deterministic/backend.hpp) and for MPI in detail/deterministic/mpi.hpp.
template <class Inner>
struct site {
  static constexpr bool supported = false;
};

// The backend of deterministic_policy<Inner>: `backend` for the host policies
// (those with a site); detail/deterministic/gpu.hpp, reached only from
// <dpar/cuda.hpp>, specializes it for the GPU policies.
template <class Inner>
struct backend_select {
  using type = backend;
  static constexpr bool supported = site<Inner>::supported;
};

template <class P>
inline constexpr bool is_deterministic_v = false;
template <class Inner>
inline constexpr bool is_deterministic_v<deterministic_policy<Inner>> = true;
}  // namespace detail::deterministic

template <class Inner>
class deterministic_policy {
 public:
  using backend = typename detail::deterministic::backend_select<Inner>::type;
  using inner_type = Inner;

  constexpr explicit deterministic_policy(Inner inner) : inner_(std::move(inner)) {}
  const Inner& inner() const noexcept { return inner_; }

 private:
  Inner inner_;
};

template <class Inner>
struct is_execution_policy<deterministic_policy<Inner>> : std::true_type {};

// Wraps `policy`; wrapping a deterministic policy again changes nothing.
template <execution_policy P>
auto deterministic(P&& policy) {
  using Inner = std::remove_cvref_t<P>;
  if constexpr (detail::deterministic::is_deterministic_v<Inner>) {
    return Inner(std::forward<P>(policy));
  } else {
    static_assert(detail::deterministic::backend_select<Inner>::supported,
                  "dpar::deterministic: this policy has no deterministic backend; seq, par, par.on(pool), "
                  "mpi(comm, seq or par) (include <dpar/mpi.hpp>), dpar::gpu and dpar::multi_gpu (include "
                  "<dpar/cuda.hpp>) have one");
    return deterministic_policy<Inner>(std::forward<P>(policy));
  }
}

}  // namespace dpar

