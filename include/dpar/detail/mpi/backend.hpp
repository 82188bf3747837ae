#pragma once
// MPI backend: the data is the concatenation of the ranks' local ranges, in
// rank order. Element-wise algorithms (transform, for_each) are rank-local
// and run on the inner policy. Reductions reduce the local range with the
// inner policy, then combine the ranks' partial results in rank order; scans
// reduce the local range, take the carry from the lower ranks with
// MPI_Exscan, and scan locally from that carry. Arithmetic types with a
// standard op use MPI's built-in datatypes and ops; anything else goes through
// an ordered (non-commutative) user op, so the order guarantee holds.

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../execution.hpp"
#include "error.hpp"
#include "ordered_op.hpp"
#include "types.hpp"

namespace dpar::detail::mpi {

// MPI counts are int: calls body(offset, count) over [0, n) in pieces that fit.
template <class Body>
void for_each_piece(std::size_t n, Body&& body) {
  constexpr std::size_t most = INT_MAX / 2;
  for (std::size_t offset = 0; offset < n; offset += most) body(offset, static_cast<int>(std::min(most, n - offset)));
}

inline int rank_of(MPI_Comm comm) {
  int rank = 0;
  check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  return rank;
}
inline int size_of(MPI_Comm comm) {
  int size = 0;
  check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  return size;
}

// The reduction of the ranks' partial results in rank order; an empty local
// range contributes nothing (nullopt). nullopt if all are empty (user ops).
template <class T, class Op>
std::optional<T> combine_partials(MPI_Comm comm, std::optional<T> local, Op& op) {
  if constexpr (builtin_v<Op, T>) {
    using b = builtin<std::remove_cvref_t<Op>, T>;
    // Empty ranges contribute the identity, which changes nothing.
    T mine = local ? *local : b::identity(), all = mine;
    check(MPI_Allreduce(&mine, &all, 1, datatype<T>(), b::op(), comm), "MPI_Allreduce");
    return all;
  } else {
    static_assert(std::is_trivially_copyable_v<T>,
                  "dpar::mpi: partial results combined across ranks with a user op must be trivially copyable");
    auto combine = [&](const std::optional<T>& a, const std::optional<T>& b) -> std::optional<T> {
      if (!a) return b;
      if (!b) return a;
      return std::optional<T>(std::in_place, op(*a, *b));
    };
    std::optional<T> all = local;
    byte_type<std::optional<T>> type;
    ordered_op<std::optional<T>, decltype(combine)> ordered(combine);
    int code = MPI_Allreduce(&local, &all, 1, type.get(), ordered.get(), comm);
    ordered.rethrow_any(comm);
    check(code, "MPI_Allreduce");
    return all;
  }
}

// The reduction of the partial results of the ranks below this one, in rank
// order (nullopt on rank 0 and when all of them are empty).
template <class T, class Op>
std::optional<T> carry_from_lower_ranks(MPI_Comm comm, std::optional<T> local, Op& op) {
  const bool first = rank_of(comm) == 0;
  if constexpr (builtin_v<Op, T>) {
    using b = builtin<std::remove_cvref_t<Op>, T>;
    T mine = local ? *local : b::identity(), below = mine;
    check(MPI_Exscan(&mine, &below, 1, datatype<T>(), b::op(), comm), "MPI_Exscan");
    if (first) return std::nullopt;  // MPI leaves rank 0's result undefined
    return below;
  } else {
    static_assert(std::is_trivially_copyable_v<T>,
                  "dpar::mpi: scan carries passed across ranks with a user op must be trivially copyable");
    auto combine = [&](const std::optional<T>& a, const std::optional<T>& b) -> std::optional<T> {
      if (!a) return b;
      if (!b) return a;
      return std::optional<T>(std::in_place, op(*a, *b));
    };
    std::optional<T> below;
    byte_type<std::optional<T>> type;
    ordered_op<std::optional<T>, decltype(combine)> ordered(combine);
    int code = MPI_Exscan(&local, &below, 1, type.get(), ordered.get(), comm);
    ordered.rethrow_any(comm);
    check(code, "MPI_Exscan");
    if (first) return std::nullopt;
    return below;
  }
}

// op(left, right) where either may be absent.
template <class T, class Op>
std::optional<T> join(std::optional<T> left, std::optional<T> right, Op& op) {
  if (!left) return right;
  if (!right) return left;
  return std::optional<T>(std::in_place, op(std::move(*left), std::move(*right)));
}

// Throws collective_error on every rank if the ranks' lengths differ, naming
// the first rank that differs from rank 0. One MPI_Allgather of a size_t.
inline void check_same_length(MPI_Comm comm, std::size_t length, const char* who) {
  std::vector<unsigned long long> lengths(static_cast<std::size_t>(size_of(comm)));
  unsigned long long mine = length;
  check(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, lengths.data(), 1, MPI_UNSIGNED_LONG_LONG, comm),
        "MPI_Allgather");
  for (std::size_t r = 1; r < lengths.size(); ++r)
    if (lengths[r] != lengths[0])
      throw collective_error(std::string(who) + ": rank " + std::to_string(r) + " has " + std::to_string(lengths[r]) +
                             " elements but rank 0 has " + std::to_string(lengths[0]) +
                             "; every rank must pass the same length");
}

template <class Buffer>
auto local_span(Buffer& buffer) {
  auto s = std::span(buffer);
  using T = typename decltype(s)::element_type;
  static_assert(!std::is_const_v<T>, "dpar::all_reduce over MPI writes the buffer; pass a non-const one");
  return std::span<T>(s);
}

struct backend {
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

  template <class P, class It, class T, class Op>
  static T reduce(const P& policy, It first, It last, T init, Op op) {
    errors_return guard(policy.comm());
    std::optional<T> local;
    if (first != last)
      local.emplace(backend_of<typename P::inner_type>::reduce(policy.inner(), first + 1, last, T(*first), op));
    return finish(policy.comm(), std::move(init), std::move(local), op);
  }

  template <class P, class It, class T, class R, class U>
  static T transform_reduce(const P& policy, It first, It last, T init, R reduce, U transform) {
    errors_return guard(policy.comm());
    std::optional<T> local;
    if (first != last)
      local.emplace(backend_of<typename P::inner_type>::transform_reduce(policy.inner(), first + 1, last,
                                                                         T(transform(*first)), reduce, transform));
    return finish(policy.comm(), std::move(init), std::move(local), reduce);
  }

  template <class P, class It1, class It2, class T, class R, class U>
  static T transform_reduce(const P& policy, It1 first1, It1 last1, It2 first2, T init, R reduce, U transform) {
    errors_return guard(policy.comm());
    std::optional<T> local;
    if (first1 != last1)
      local.emplace(backend_of<typename P::inner_type>::transform_reduce(
          policy.inner(), first1 + 1, last1, first2 + 1, T(transform(*first1, *first2)), reduce, transform));
    return finish(policy.comm(), std::move(init), std::move(local), reduce);
  }

  template <class V, class P, class In, class Out, class Op>
  static Out inclusive_scan(const P& policy, In first, In last, Out d_first, Op op, std::optional<V> init) {
    errors_return guard(policy.comm());
    std::optional<V> carry =
        join(std::move(init), carry_from_lower_ranks(policy.comm(), local_total<V>(policy, first, last, op), op), op);
    return backend_of<typename P::inner_type>::inclusive_scan(policy.inner(), first, last, d_first, op,
                                                              std::move(carry));
  }

  template <class P, class In, class Out, class T, class Op>
  static Out exclusive_scan(const P& policy, In first, In last, Out d_first, T init, Op op) {
    errors_return guard(policy.comm());
    std::optional<T> below = carry_from_lower_ranks(policy.comm(), local_total<T>(policy, first, last, op), op);
    T carry = below ? T(op(std::move(init), std::move(*below))) : std::move(init);
    return backend_of<typename P::inner_type>::exclusive_scan(policy.inner(), first, last, d_first,
                                                              std::move(carry), op);
  }

  // One buffer per rank; afterwards every rank's holds the element-wise
  // reduction over the ranks in rank order.
  template <class P, class Buffer, class Op>
  static void all_reduce(const P& policy, Buffer& buffer, Op& op) {
    auto data = local_span(buffer);
    using T = typename decltype(data)::element_type;
    errors_return guard(policy.comm());
    check_same_length(policy.comm(), data.size(), "dpar::all_reduce over MPI");
    if constexpr (builtin_v<Op, T>) {
      for_each_piece(data.size(), [&](std::size_t offset, int count) {
        check(MPI_Allreduce(MPI_IN_PLACE, data.data() + offset, count, datatype<T>(),
                            builtin<std::remove_cvref_t<Op>, T>::op(), policy.comm()),
              "MPI_Allreduce");
      });
    } else {
      auto combine = [&](const T& a, const T& b) -> T { return op(a, b); };
      byte_type<T> type;
      ordered_op<T, decltype(combine)> ordered(combine);
      int code = MPI_SUCCESS;
      for_each_piece(data.size(), [&](std::size_t offset, int count) {
        if (code == MPI_SUCCESS)
          code = MPI_Allreduce(MPI_IN_PLACE, data.data() + offset, count, type.get(), ordered.get(), policy.comm());
      });
      ordered.rethrow_any(policy.comm());
      check(code, "MPI_Allreduce");
    }
  }

  template <class P, class Buffer>
  static void all_reduce_mean(const P& policy, Buffer& buffer) {
    auto data = local_span(buffer);
    using T = typename decltype(data)::element_type;
    std::plus<> sum;
    all_reduce(policy, buffer, sum);
    const T ranks = static_cast<T>(size_of(policy.comm()));
    backend_of<typename P::inner_type>::for_each(policy.inner(), data.begin(), data.end(),
                                                 [ranks](T& x) { x = static_cast<T>(x / ranks); });
  }

 private:
  template <class T, class Op>
  static T finish(MPI_Comm comm, T init, std::optional<T> local, Op& op) {
    std::optional<T> all = combine_partials(comm, std::move(local), op);
    return all ? T(op(std::move(init), std::move(*all))) : init;
  }

  template <class V, class P, class In, class Op>
  static std::optional<V> local_total(const P& policy, In first, In last, Op& op) {
    if (first == last) return std::nullopt;
    return backend_of<typename P::inner_type>::reduce(policy.inner(), first + 1, last, V(*first), op);
  }
};

}  // namespace dpar::detail::mpi
