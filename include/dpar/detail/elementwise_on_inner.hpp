#pragma once
// The element-wise algorithms of a policy that wraps another (P::inner_type,
// reached by policy.inner()): transform and for_each touch each element once,
// with nothing to combine, so wrappers such as the MPI ranks (each rank's own
// elements) and deterministic(...) run them on the inner policy unchanged.
// Their backends inherit this.

#include <utility>

#include "../execution.hpp"

namespace dpar::detail {

struct elementwise_on_inner {
  template <class P, class In, class Out, class F>
  static Out transform(const P& policy, In first, In last, Out d_first, F f) {
    return backend_of<typename P::inner_type>::transform(policy.inner(), first, last, d_first, std::move(f));
  }

  template <class P, class In1, class In2, class Out, class F>
  static Out transform(const P& policy, In1 first1, In1 last1, In2 first2, Out d_first, F f) {
    return backend_of<typename P::inner_type>::transform(policy.inner(), first1, last1, first2, d_first,
                                                         std::move(f));
  }

  template <class P, class It, class F>
  static void for_each(const P& policy, It first, It last, F f) {
    backend_of<typename P::inner_type>::for_each(policy.inner(), first, last, std::move(f));
  }
};

}  // namespace dpar::detail
