#pragma once
// Execution policies. The policy's type picks the backend at compile time:
// each policy names its backend as a nested type `backend`, a struct whose
// static member functions implement the algorithms.

#include <cstddef>
#include <iterator>
#include <type_traits>

#include "thread_pool.hpp"

namespace dpar {

namespace detail::seq {
struct backend;
}
namespace detail::threads {
struct backend;
}

// Runs in the calling thread.
struct sequenced_policy {
  using backend = detail::seq::backend;
};

// Runs on a thread_pool: the global pool unless .on(pool) names another.
class parallel_policy {
 public:
  using backend = detail::threads::backend;

  constexpr parallel_policy() noexcept = default;
  // A policy that runs on `pool`, which must outlive the calls made with it.
  constexpr parallel_policy on(thread_pool& pool) const noexcept {
    parallel_policy p = *this;
    p.pool_ = &pool;
    return p;
  }
  thread_pool& pool() const { return pool_ ? *pool_ : thread_pool::global(); }

  // A policy whose calls cut their range into tasks of at least `elements`
  // elements each (one task if the range is shorter), which threads claim as they come:
  // for users who know their elements' cost. 0, the default, lets the backend
  // choose: by count, and by timing the first elements where the count alone
  // would leave threads idle (detail/threads/backend.hpp).
  constexpr parallel_policy with_grain(std::size_t elements) const noexcept {
    parallel_policy p = *this;
    p.grain_ = elements;
    return p;
  }
  constexpr std::size_t grain() const noexcept { return grain_; }

 private:
  thread_pool* pool_ = nullptr;
  std::size_t grain_ = 0;
};

inline constexpr sequenced_policy seq{};
inline constexpr parallel_policy par{};

// Specialize to true for every policy type; other backends add theirs.
template <class T>
struct is_execution_policy : std::false_type {};
template <>
struct is_execution_policy<sequenced_policy> : std::true_type {};
template <>
struct is_execution_policy<parallel_policy> : std::true_type {};

template <class T>
inline constexpr bool is_execution_policy_v = is_execution_policy<std::remove_cvref_t<T>>::value;

template <class P>
concept execution_policy = is_execution_policy_v<P>;

namespace detail {
template <execution_policy P>
using backend_of = typename std::remove_cvref_t<P>::backend;

// What a backend passes to user functions for an element of It: *it, unless
// the backend unwraps proxy iterators first (the CUDA backend hands
// thrust::device_vector elements over as T&, not thrust::device_reference<T>;
// detail/cuda/iterators.hpp specializes this for it).
template <class Backend, class It>
struct element_reference {
  using type = std::iter_reference_t<It>;
};
template <execution_policy P, class It>
using element_reference_t = typename element_reference<backend_of<P>, It>::type;
}

}  // namespace dpar
