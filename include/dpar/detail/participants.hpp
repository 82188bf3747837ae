#pragma once
// Who holds the data of a policy: the few facts about its participants that
// the derived algorithms (detail/derived.hpp) need beyond the backend's
// primitives. One process (seq, par) holds all of it; under MPI each rank
// holds its local range of the sequence, the concatenation of the ranks'
// ranges in rank order (detail/mpi/participants.hpp). Policies without a
// specialization (the GPU ones) do not run the derived algorithms.

#include <cstddef>
#include <optional>
#include <utility>

#include "../deterministic.hpp"
#include "../execution.hpp"

namespace dpar::detail {

template <class P>
struct participants {
  static constexpr bool host = false;
};

// All of the data in this process, in host memory.
template <class P>
struct one_participant {
  static constexpr bool host = true, distributed = false;
  // The policy that runs on this participant's own elements.
  static const P& local(const P& policy) noexcept { return policy; }
  // How many elements the participants before this one hold.
  static std::size_t offset(const P&, std::size_t) noexcept { return 0; }
  // The element before this participant's first: the last one of the nearest
  // earlier participant holding any.
  template <class T, class It>
  static std::optional<T> previous_element(const P&, It, It) {
    return std::nullopt;
  }
  // Runs local(), which gives this participant's candidate (or none), and
  // returns it if it is the best of all participants' candidates, where
  // better(a, b) says a beats b and an earlier participant wins ties.
  template <class V, class Local, class Better>
  static std::optional<V> best_here(const P&, Local&& local, Better&&) {
    return local();
  }
  // Runs local(), which gives this participant's value (or none), then
  // returns finish(later), where later is the values of the participants
  // after this one combined in order by op (none where there are none or all
  // are empty). Every participant throws if either step threw on any.
  template <class V, class Local, class Op, class Finish>
  static auto from_later(const P&, Local&& local, Op&, Finish&& finish) {
    local();
    return finish(std::optional<V>());
  }
};

template <>
struct participants<sequenced_policy> : one_participant<sequenced_policy> {};
template <>
struct participants<parallel_policy> : one_participant<parallel_policy> {};

// deterministic(p) has p's participants, each running deterministic(its local policy).
template <class Inner>
struct participants<deterministic_policy<Inner>> {
  using inner = participants<Inner>;
  static constexpr bool host = inner::host, distributed = inner::distributed;
  static auto local(const deterministic_policy<Inner>& policy) { return dpar::deterministic(inner::local(policy.inner())); }
  static std::size_t offset(const deterministic_policy<Inner>& policy, std::size_t n) {
    return inner::offset(policy.inner(), n);
  }
  template <class T, class It>
  static std::optional<T> previous_element(const deterministic_policy<Inner>& policy, It first, It last) {
    return inner::template previous_element<T>(policy.inner(), first, last);
  }
  template <class V, class Local, class Better>
  static std::optional<V> best_here(const deterministic_policy<Inner>& policy, Local&& local, Better&& better) {
    return inner::template best_here<V>(policy.inner(), std::forward<Local>(local), std::forward<Better>(better));
  }
  template <class V, class Local, class Op, class Finish>
  static auto from_later(const deterministic_policy<Inner>& policy, Local&& local, Op& op, Finish&& finish) {
    return inner::template from_later<V>(policy.inner(), std::forward<Local>(local), op,
                                         std::forward<Finish>(finish));
  }
};

template <class P>
using participants_of = participants<std::remove_cvref_t<P>>;

// Whether the algorithms derived from the primitives run on P: they keep
// temporaries and call user functions in host memory.
template <class P>
inline constexpr bool runs_derived_v = participants_of<P>::host;

template <class P>
constexpr void require_host_policy() {
  static_assert(runs_derived_v<P>,
                "dpar: this algorithm runs on seq, par, par.on(pool), mpi(comm, seq or par) and deterministic(...) "
                "of those, and dpar::gpu; on multi_gpu, on sharded_vector (dpar/sharded_algorithms.hpp)");
}

}  // namespace dpar::detail
