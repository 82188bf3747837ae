#pragma once
// MPI backend: the data is the concatenation of the ranks' local ranges, in
// rank order. Element-wise algorithms (transform, for_each) are rank-local
// and run on the inner policy. Reductions reduce the local range with the
// inner policy, then combine the ranks' partial results in rank order (one
// MPI_Allreduce through an ordered user op); scans reduce the local range,
// take the carry from the lower ranks (one MPI_Exscan, or one MPI_Allgather
// where a rank's part may fail), and scan locally from that carry. Every
// collective runs on dpar's own duplicate of the policy's communicator
// (private_comm.hpp). all_reduce uses MPI's built-in datatypes and ops for
// arithmetic types with a standard op, except floating-point sums and
// products, whose grouping MPI would choose (rank_order.hpp); anything else
// goes through an ordered (non-commutative) user op, so the order guarantee
// holds.

#include "mpi_h.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <new>
#include <optional>
#include <memory>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../collective.hpp"
#include "../../execution.hpp"
#include "../../partition.hpp"
#include "../elementwise_on_inner.hpp"
#include "../collective/checks.hpp"
#include "../collective/kernels.hpp"
#include "../kernels.hpp"
#include "error.hpp"
#include "ordered_op.hpp"
#include "private_comm.hpp"
#include "rank_order.hpp"
#include "rank_order_async.hpp"
#include "types.hpp"

namespace dpar::detail::mpi {

// MPI counts are int: calls body(offset, count) over [0, n) in pieces that fit.
template <class Body>
void for_each_piece(std::size_t n, Body&& body) {
  constexpr std::size_t most = INT_MAX / 2;
  for (std::size_t offset = 0; offset < n; offset += most) body(offset, static_cast<int>(std::min(most, n - offset)));
}

// Whether op on T values cannot throw: a scan then needs no agreement after
// its last phase. Built-in kinds on arithmetic types, or a noexcept op.
template <class Op, class T>
inline constexpr bool op_cannot_throw_v = builtin_v<Op, T> || std::is_nothrow_invocable_v<Op&, const T&, const T&>;

// Whether op combines T values, and a T with E (what the local fold takes
// from the input), without throwing, in every way dpar calls it: one of
// dpar's built-in ops on arithmetic types (the op-kind table,
// functional.hpp), or an op that is noexcept for those operands.
template <class Op, class T, class E>
inline constexpr bool combines_nothrow_v =
    (builtin_v<Op, T> && std::is_arithmetic_v<std::remove_cvref_t<E>>) ||
    (std::is_nothrow_invocable_r_v<T, Op&, const T&, const T&> && std::is_nothrow_invocable_r_v<T, Op&, T, T> &&
     std::is_nothrow_invocable_r_v<T, Op&, const T&, T> && std::is_nothrow_invocable_r_v<T, Op&, T, E>);

// Whether no rank's part of a reduction or scan can throw, so no rank can
// fail while the others wait in the collective. Then the value crosses the
// ranks alone (8 bytes for a double) with no failure flag beside it: the
// flag made the message 16-24 bytes, 11-23% slower at 8 (bench/RESULTS.md,
// session 6). Decided here only, at compile time, and only where it is
// certain:
//   - the inner policy is seq (par's pool allocates per call and may start
//     its threads: std::bad_alloc, std::system_error; GPU calls throw on
//     CUDA errors);
//   - the input is contiguous memory of arithmetic values (no iterator code
//     of the user's runs);
//   - E, what the fold takes (the element, or a nothrow-invocable
//     transform's result), converts to T without throwing;
//   - op combines without throwing (combines_nothrow_v).
// T crosses ranks as bytes, so it is trivially copyable: copies cannot throw.
template <class P, class T, class Op, class E, class... It>
inline constexpr bool cannot_fail_v =
    std::is_same_v<typename P::inner_type, sequenced_policy> && std::is_trivially_copyable_v<T> &&
    ((std::contiguous_iterator<It> && std::is_arithmetic_v<std::iter_value_t<It>>) && ...) &&
    std::is_nothrow_constructible_v<T, E> && combines_nothrow_v<Op, T, E>;

// Op's identity on T is exact: op(id, x) == op(x, id) == x for every x,
// NaNs included (not so for floating-point min and max, where min(+inf,
// NaN) may give +inf), so an empty rank may send it for "no value".
template <class Op, class T>
inline constexpr bool exact_identity_v =
    builtin_v<Op, T> && (std::is_integral_v<std::remove_cv_t<T>> || op_kind_v<Op, T> == op_kind::sum ||
                         op_kind_v<Op, T> == op_kind::product);

// One rank's part of a reduction or scan as it crosses the ranks: nothing
// (an empty local range), a value, or a failure (its failure_code, error.hpp),
// in max(sizeof(T), sizeof(int)) + 1 bytes: T's bytes or the code, then
// which of the three. std::optional<double> alone takes 16 bytes, with the
// failure ranks beside it 24; OpenMPI's shared-memory path moves 8 or 9
// bytes alike but 12 or more 12-22% slower (bench/RESULTS.md, session 6).
template <class T>
class wire_value {
  static_assert(std::is_trivially_copyable_v<T>, "dpar::mpi: values that cross ranks must be trivially copyable");
  enum : unsigned char { absent, present, failed };
  static constexpr std::size_t payload = std::max(sizeof(T), sizeof(int));
  unsigned char bytes_[payload + 1] = {};

 public:
  wire_value() noexcept = default;
  explicit wire_value(const std::optional<T>& value) noexcept {
    if (!value) return;
    std::memcpy(bytes_, &*value, sizeof(T));
    bytes_[payload] = present;
  }
  static wire_value failure(int code) noexcept {
    wire_value w;
    std::memcpy(w.bytes_, &code, sizeof(int));
    w.bytes_[payload] = failed;
    return w;
  }
  // What this rank sends: its value, or the failure of its local phase.
  static wire_value of(const std::optional<T>& local, const std::exception_ptr& local_error,
                       const ranked_comm& comm) noexcept {
    return local_error ? failure(failure_code::of(comm.rank, comm.size, local_error, nullptr)) : wire_value(local);
  }

  bool is_failure() const noexcept { return bytes_[payload] == failed; }
  // failure_code::none unless a failure.
  int code() const noexcept {
    int c = failure_code::none;
    if (is_failure()) std::memcpy(&c, bytes_, sizeof(int));
    return c;
  }
  std::optional<T> value() const noexcept {
    if (bytes_[payload] != present) return std::nullopt;
    alignas(T) unsigned char aligned[sizeof(T)];
    std::memcpy(aligned, bytes_, sizeof(T));
    return *std::launder(reinterpret_cast<const T*>(aligned));
  }
};

// One value per rank through `collective` (MPI_Allreduce: the ranks' values
// in rank order; MPI_Exscan: those of the ranks below, undefined on rank 0)
// where nothing can fail (cannot_fail_v): only the value crosses. Integers
// under a built-in kind take MPI's own op on its own datatype (any grouping
// gives the same result); other values an ordered op (rank order), on T
// itself where an empty rank can send the identity, else on wire_value
// (the value and whether there is one).
template <class T, class Op>
std::optional<T> across_ranks_nothrow(decltype(&MPI_Allreduce) collective, const char* name, MPI_Comm comm,
                                      std::optional<T> local, Op& op) {
  if constexpr (exact_identity_v<Op, T>) {
    T mine = local ? *local : op_identity<std::remove_cvref_t<Op>, T>::value(), all = mine;
    if constexpr (std::is_integral_v<std::remove_cv_t<T>>) {
      check(collective(&mine, &all, 1, datatype<T>(), builtin_op(op_kind_v<Op, T>), comm), name);
    } else {
      auto combine = [&](const T& a, const T& b) noexcept -> T { return op(a, b); };
      ordered_op<T, decltype(combine)> ordered(combine);
      check(collective(&mine, &all, 1, byte_datatype<T>(), ordered.get(), comm), name);
    }
    return all;
  } else {
    using wire = wire_value<T>;
    auto combine = [&](const wire& a, const wire& b) noexcept { return wire(join(a.value(), b.value(), op)); };
    wire mine(local), all = mine;
    ordered_op<wire, decltype(combine)> ordered(combine);
    check(collective(&mine, &all, 1, byte_datatype<wire>(), ordered.get(), comm), name);
    return all.value();
  }
}

// Small reductions pay per collective call, so each of reduce,
// transform_reduce and the scans makes ONE: the value and the failure
// agreement travel together, in a wire_value. (An MPI_Exscan would show a
// rank only the failures below it, so scans that may fail gather instead.)

// The reduction of every rank's value (absent: an empty local range) in rank
// order, and the agreement on failures, in one MPI_Allreduce. A rank whose
// local phase failed sends its failure in place of its value; op runs inside
// MPI through an ordered user op (rank order), and where it throws the
// partial result becomes that failure, which travels on to every rank like
// the rest (the lowest code wins). So every rank throws when any failed: its
// own exception if it failed itself, else collective_error naming the lowest
// failed rank, or mpi_error for an op that threw inside MPI elsewhere. (An op
// that throws on some ranks and not on others for the same operands, one that
// depends on the rank, may go unseen by ranks that did not run that
// combination.)
template <class T, class Op>
std::optional<T> all_ranks_ordered(const ranked_comm& comm, std::optional<T> local, std::exception_ptr local_error,
                                   Op& op) {
  using wire = wire_value<T>;
  const int me = comm.rank, ranks = comm.size;
  std::exception_ptr op_error;
  auto combine = [&](const wire& a, const wire& b) noexcept {
    // after a failure the value is discarded anyway: skip the op
    if (a.is_failure() || b.is_failure()) return wire::failure(std::min(a.code(), b.code()));
    try {
      return wire(join(a.value(), b.value(), op));
    } catch (...) {
      if (!op_error) op_error = std::current_exception();
      return wire::failure(failure_code::of(me, ranks, nullptr, op_error));
    }
  };
  wire mine = wire::of(local, local_error, comm), all = mine;
  ordered_op<wire, decltype(combine)> ordered(combine);
  const int code = MPI_Allreduce(&mine, &all, 1, byte_datatype<wire>(), ordered.get(), comm.comm);
  if (local_error) std::rethrow_exception(local_error);
  if (op_error) std::rethrow_exception(op_error);
  check(code, "MPI_Allreduce");
  failure_code::raise(all.code(), ranks, nullptr, nullptr);
  return all.value();
}

// The same for every T and op; integers under an order-free built-in kind
// (types.hpp) take MPI's own op, which gives the same result.
template <class T, class Op>
std::optional<T> all_ranks(const ranked_comm& comm, std::optional<T> local, std::exception_ptr local_error, Op& op) {
  if constexpr (order_free_v<Op, T>) {
    // MPI's own op on its own datatype, with the failure flag as a second
    // element; only when some rank failed, a second call names the lowest.
    using flags = order_free_flags<op_kind_v<Op, T>, T>;
    T mine[2] = {local ? *local : op_identity<std::remove_cvref_t<Op>, T>::value(),
                 local_error ? flags::failed : flags::ok};
    T all[2] = {mine[0], mine[1]};
    const int code = MPI_Allreduce(mine, all, 2, datatype<T>(), builtin_op(op_kind_v<Op, T>), comm.comm);
    if (code != MPI_SUCCESS && local_error) std::rethrow_exception(local_error);
    check(code, "MPI_Allreduce");
    if (all[1] != flags::ok) agree_on_failure(comm.comm, local_error, nullptr);  // throws on every rank
    return all[0];
  } else {
    return all_ranks_ordered(comm, std::move(local), std::move(local_error), op);
  }
}

// The reduction of the values of the ranks below this one (Above: above
// it), in rank order (none where there are none or they are all empty),
// and the agreement on failures of the local phase, in one MPI_Allgather:
// every rank gets every rank's value and failure, and folds all the values
// (from the left, or from the right for Above). The fold runs the same op
// calls on every rank (also past its own rank), so an op that throws there
// throws on every rank; an op that depends on the rank may not, so its
// exception goes to fold_error, for the caller's last agreement
// (last_phase). Memory: a value per rank.
template <bool Above = false, class T, class Op>
std::optional<T> beside_this_rank(const ranked_comm& comm, std::optional<T> local, std::exception_ptr local_error,
                                  Op& op, std::exception_ptr& fold_error) {
  using wire = wire_value<T>;
  const int me = comm.rank, ranks = comm.size;
  const wire mine = wire::of(local, local_error, comm);
  // On the stack for a few ranks: a heap allocation per call was a tenth of
  // a small scan's latency.
  constexpr std::size_t few = sizeof(wire) <= 64 ? 8 : 0;
  std::array<wire, few> on_stack;
  std::vector<wire> on_heap;
  if (static_cast<std::size_t>(ranks) > few) on_heap.resize(static_cast<std::size_t>(ranks));
  const std::span<wire> all(on_heap.empty() ? on_stack.data() : on_heap.data(), static_cast<std::size_t>(ranks));
  const int code = MPI_Allgather(&mine, static_cast<int>(sizeof(wire)), MPI_BYTE, all.data(),
                                 static_cast<int>(sizeof(wire)), MPI_BYTE, comm.comm);
  if (local_error) std::rethrow_exception(local_error);
  check(code, "MPI_Allgather");
  int lowest = failure_code::none;
  for (const wire& w : all) lowest = std::min(lowest, w.code());
  failure_code::raise(lowest, ranks, nullptr, nullptr);
  std::optional<T> beside, total;
  try {
    for (int i = 0; i < ranks; ++i) {
      const int r = Above ? ranks - 1 - i : i;
      if (r == me) beside = total;
      std::optional<T> value = all[static_cast<std::size_t>(r)].value();
      total = Above ? join(value, std::move(total), op) : join(total, std::move(value), op);
    }
  } catch (...) {
    fold_error = std::current_exception();
  }
  return beside;
}

// A last local phase after a collective that agreed on failures: it may
// throw where the earlier phases did not (other operands), so one more
// agreement keeps the ranks in step, also on an earlier fold's error
// (fold_error); a phase that cannot throw (CannotThrow) needs none.
template <bool CannotThrow, class Phase>
auto last_phase(MPI_Comm comm, std::exception_ptr fold_error, Phase&& phase) {
  if constexpr (CannotThrow) {
    if (fold_error) std::rethrow_exception(fold_error);
    return phase();
  } else {
    std::exception_ptr error = fold_error;
    std::optional<decltype(phase())> end;
    if (!error) {
      try {
        end.emplace(phase());
      } catch (...) {
        error = std::current_exception();
      }
    }
    agree_on_failure(comm, error, nullptr);
    return *end;
  }
}

// Runs a rank's local phase, which may throw: its result, or its exception.
template <class T, class Local>
std::optional<T> run_local(Local&& local, std::exception_ptr& error) {
  try {
    return local();
  } catch (...) {
    error = std::current_exception();
    return std::nullopt;
  }
}

// Throws collective_error on every rank if the ranks' lengths differ, naming
// the first rank that differs from rank 0. One MPI_Allgather of a size_t.
inline void check_same_length(MPI_Comm comm, std::size_t length, const char* who) {
  std::vector<unsigned long long> lengths(static_cast<std::size_t>(size_of(comm)));
  unsigned long long mine = length;
  check(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, lengths.data(), 1, MPI_UNSIGNED_LONG_LONG, comm),
        "MPI_Allgather");
  collective::check_same_lengths<collective_error>(lengths, who, "rank");
}

// Throws std::length_error for a buffer one MPI call cannot take whole
// (counts and displacements are int); every rank with the same length throws.
inline void check_fits_int(std::size_t length, const char* who) {
  if (length > static_cast<std::size_t>(INT_MAX))
    throw std::length_error(std::string(who) + ": " + std::to_string(length) + " values; at most " +
                            std::to_string(INT_MAX) + " in one call");
}

template <class Buffer>
auto local_span(Buffer& buffer) {
  auto s = std::span(buffer);
  using T = typename decltype(s)::element_type;
  static_assert(!std::is_const_v<T>, "dpar::all_reduce over MPI writes the buffer; pass a non-const one");
  return std::span<T>(s);
}

struct backend : elementwise_on_inner {
  template <class P, class It, class T, class Op>
  static T reduce(const P& policy, It first, It last, T init, Op op) {
    constexpr bool no_fail = cannot_fail_v<P, T, Op, std::iter_reference_t<It>, It>;
    return reduce_across<no_fail>(policy, std::move(init), op, [&] {
      return local_total<T>(policy, first, last, op);
    });
  }

  template <class P, class It, class T, class R, class U>
  static T transform_reduce(const P& policy, It first, It last, T init, R reduce, U transform) {
    using E = std::invoke_result_t<U&, std::iter_reference_t<It>>;
    constexpr bool no_fail =
        std::is_nothrow_invocable_v<U&, std::iter_reference_t<It>> && cannot_fail_v<P, T, R, E, It>;
    return reduce_across<no_fail>(policy, std::move(init), reduce, [&]() -> std::optional<T> {
      if (first == last) return std::nullopt;
      return backend_of<typename P::inner_type>::transform_reduce(policy.inner(), first + 1, last,
                                                                  T(transform(*first)), reduce, transform);
    });
  }

  template <class P, class It1, class It2, class T, class R, class U>
  static T transform_reduce(const P& policy, It1 first1, It1 last1, It2 first2, T init, R reduce, U transform) {
    using E = std::invoke_result_t<U&, std::iter_reference_t<It1>, std::iter_reference_t<It2>>;
    constexpr bool no_fail = std::is_nothrow_invocable_v<U&, std::iter_reference_t<It1>, std::iter_reference_t<It2>> &&
                             cannot_fail_v<P, T, R, E, It1, It2>;
    return reduce_across<no_fail>(policy, std::move(init), reduce, [&]() -> std::optional<T> {
      if (first1 == last1) return std::nullopt;
      return backend_of<typename P::inner_type>::transform_reduce(
          policy.inner(), first1 + 1, last1, first2 + 1, T(transform(*first1, *first2)), reduce, transform);
    });
  }

  template <class V, class P, class In, class Out, class Op>
  static Out inclusive_scan(const P& policy, In first, In last, Out d_first, Op op, std::optional<V> init) {
    std::exception_ptr fold_error;
    std::optional<V> below = carry_from_lower_ranks<V>(policy, first, last, op, fold_error);
    return scan_locally<V>(policy, op, fold_error, [&] {
      return backend_of<typename P::inner_type>::inclusive_scan(policy.inner(), first, last, d_first, op,
                                                                join(init, std::move(below), op));
    });
  }

  template <class P, class In, class Out, class T, class Op>
  static Out exclusive_scan(const P& policy, In first, In last, Out d_first, T init, Op op) {
    std::exception_ptr fold_error;
    std::optional<T> below = carry_from_lower_ranks<T>(policy, first, last, op, fold_error);
    return scan_locally<T>(policy, op, fold_error, [&] {
      T carry = below ? T(op(std::move(init), std::move(*below))) : std::move(init);
      return backend_of<typename P::inner_type>::exclusive_scan(policy.inner(), first, last, d_first,
                                                                std::move(carry), op);
    });
  }

 private:
  // init op (the ranks' local results in rank order); local() is this
  // rank's. NoFail: cannot_fail_v, so no failure flag.
  template <bool NoFail, class P, class T, class Op, class Local>
  static T reduce_across(const P& policy, T init, Op& op, Local&& local) {
    const ranked_comm comm = private_ranked_comm(policy.comm());
    std::optional<T> all;
    if constexpr (NoFail) {
      all = across_ranks_nothrow(MPI_Allreduce, "MPI_Allreduce", comm.comm, std::optional<T>(local()), op);
    } else {
      std::exception_ptr error;
      std::optional<T> mine = run_local<T>(local, error);
      all = all_ranks(comm, std::move(mine), error, op);
    }
    return all ? T(op(std::move(init), std::move(*all))) : init;
  }

  // The reduction of the local ranges of the ranks below this one (none on rank 0 or if they are all empty).
  template <class V, class P, class In, class Op>
  static std::optional<V> carry_from_lower_ranks(const P& policy, In first, In last, Op& op,
                                                 std::exception_ptr& fold_error) {
    const ranked_comm comm = private_ranked_comm(policy.comm());
    if constexpr (cannot_fail_v<P, V, Op, std::iter_reference_t<In>, In>) {
      // No failures to agree on: a rank needs only the ranks below it.
      std::optional<V> below =
          across_ranks_nothrow(MPI_Exscan, "MPI_Exscan", comm.comm, local_total<V>(policy, first, last, op), op);
      if (comm.rank == 0) return std::nullopt;  // MPI leaves rank 0's result undefined
      return below;
    } else {
      std::exception_ptr error;
      std::optional<V> mine = run_local<V>([&] { return local_total<V>(policy, first, last, op); }, error);
      return beside_this_rank(comm, std::move(mine), error, op, fold_error);
    }
  }

  // A scan's last phase, from the carry: it calls op on other values than the
  // first phase (the carry; a range's first element), so it may throw where
  // that did not.
  template <class V, class P, class Op, class Scan>
  static auto scan_locally(const P& policy, Op&, std::exception_ptr fold_error, Scan&& scan) {
    return last_phase<op_cannot_throw_v<Op, V>>(private_comm(policy.comm()), std::move(fold_error), scan);
  }

  template <class V, class P, class In, class Op>
  static std::optional<V> local_total(const P& policy, In first, In last, Op& op) {
    if (first == last) return std::nullopt;
    return backend_of<typename P::inner_type>::reduce(policy.inner(), first + 1, last, V(*first), op);
  }
};

// The collectives over MPI ranks (collective.hpp), one buffer
// per rank; afterwards every rank's holds the element-wise reduction over the
// ranks in rank order.
struct collectives {
  template <class P, class Buffer, class Op>
  static void all_reduce(const P& policy, Buffer& buffer, Op& op) {
    auto data = local_span(buffer);
    using T = typename decltype(data)::element_type;
    const MPI_Comm comm = private_comm(policy.comm());
    check_same_length(comm, data.size(), "dpar::all_reduce over MPI");
    if constexpr (needs_rank_order_v<Op, T>) {
      all_reduce_in_rank_order(comm, data, op);
    } else if constexpr (builtin_v<Op, T>) {
      for_each_piece(data.size(), [&](std::size_t offset, int count) {
        check(MPI_Allreduce(MPI_IN_PLACE, data.data() + offset, count, datatype<T>(),
                            builtin_op(op_kind_v<Op, T>), comm),
              "MPI_Allreduce");
      });
    } else {
      auto combine = [&](const T& a, const T& b) -> T { return op(a, b); };
      const MPI_Datatype type = byte_datatype<T>();
      ordered_op<T, decltype(combine)> ordered(combine);
      int code = MPI_SUCCESS;
      for_each_piece(data.size(), [&](std::size_t offset, int count) {
        if (code == MPI_SUCCESS)
          code = MPI_Allreduce(MPI_IN_PLACE, data.data() + offset, count, type, ordered.get(), comm);
      });
      agree_on_failure(comm, nullptr, ordered.take_failure());
      check(code, "MPI_Allreduce");
    }
  }

  template <class P, class Buffer>
  static void all_reduce_mean(const P& policy, Buffer& buffer) {
    auto data = local_span(buffer);
    std::plus<> sum;
    all_reduce(policy, buffer, sum);
    backend_of<typename P::inner_type>::for_each(
        policy.inner(), data.begin(), data.end(),
        collective::divide_by{static_cast<std::size_t>(size_of(policy.comm()))});
  }

  // What dpar::nn's group of ranks needs besides all_reduce; collective.

  // Every rank's `data` becomes a copy of rank `root`'s.
  template <class P>
  static void broadcast(const P& policy, std::span<std::byte> data, int root) {
    const MPI_Comm comm = private_comm(policy.comm());
    for_each_piece(data.size(), [&](std::size_t offset, int count) {
      check(MPI_Bcast(data.data() + offset, count, MPI_BYTE, root, comm), "MPI_Bcast");
    });
  }

  template <class P>
  static void barrier(const P& policy) {
    const MPI_Comm comm = private_comm(policy.comm());
    check(MPI_Barrier(comm), "MPI_Barrier");
  }

  // Every rank's `mine`, in rank order.
  template <class P>
  static std::vector<unsigned long long> all_gather(const P& policy, unsigned long long mine) {
    const MPI_Comm comm = private_comm(policy.comm());
    std::vector<unsigned long long> all(static_cast<std::size_t>(size_of(comm)));
    check(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all.data(), 1, MPI_UNSIGNED_LONG_LONG, comm),
          "MPI_Allgather");
    return all;
  }

  // The two halves of all_reduce's sum over long buffers, for work that each
  // rank does on its own slice in between (dpar::nn's optimizer update
  // sharded over ranks). slice(): the part of an n-element buffer this rank
  // owns (dpar::even_split over the ranks, in rank order). reduce_scatter_sum:
  // this rank's slice of data becomes the sum over every rank's data there,
  // in rank order (the bits all_reduce gives there); the rest is left as it
  // was. all_gather: every rank's slice r becomes rank r's. Float or double;
  // the same length on every rank (reduce_scatter_sum checks it), at most
  // INT_MAX (MPI's counts are int).
  template <class P>
  static index_range slice(const P& policy, std::size_t n) {
    const MPI_Comm comm = private_comm(policy.comm());
    return rank_slice(n, size_of(comm), rank_of(comm));
  }
  template <class P, class T>
  static void reduce_scatter_sum(const P& policy, std::span<T> data) {
    static_assert(std::is_floating_point_v<T>, "dpar::mpi reduce_scatter_sum: float or double");
    const MPI_Comm comm = private_comm(policy.comm());
    check_same_length(comm, data.size(), "dpar::mpi reduce_scatter_sum");
    check_fits_int(data.size(), "dpar::mpi reduce_scatter_sum");
    std::plus<> sum;
    reduce_scatter_in_rank_order(comm, data, sum);
  }
  template <class P, class T>
  static void all_gather(const P& policy, std::span<T> data) {
    const MPI_Comm comm = private_comm(policy.comm());
    check_fits_int(data.size(), "dpar::mpi all_gather");
    all_gather_slices(comm, data);
  }

  // Blocks of varying sizes from every rank to every rank (MPI_Alltoallv):
  // send_counts[r] values from send + send_at[r] to rank r, recv_counts[r]
  // from rank r into recv + recv_at[r].
  template <class P, class T>
  static void all_to_all(const P& policy, const T* send, const int* send_counts, const int* send_at, T* recv,
                         const int* recv_counts, const int* recv_at) {
    const MPI_Comm comm = private_comm(policy.comm());
    check(MPI_Alltoallv(send, send_counts, send_at, datatype<T>(), recv, recv_counts, recv_at, datatype<T>(),
                        comm),
          "MPI_Alltoallv");
  }

  // Sums over the policy's ranks started now and completed later
  // (rank_order_async.hpp), on dpar's duplicate of its communicator.
  template <class T, class P>
  static std::unique_ptr<rank_order_sums<T>> async_sums(const P& policy) {
    return std::make_unique<rank_order_sums<T>>(private_comm(policy.comm()));
  }

  // MPI's thread support level (MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE).
  static int thread_level() {
    int level = MPI_THREAD_SINGLE;
    check(MPI_Query_thread(&level), "MPI_Query_thread");
    return level;
  }
};

}  // namespace dpar::detail::mpi

namespace dpar {

// The policy over ranks, defined in mpi.hpp (which includes this backend); the
// backends name it only in templates, so its declaration is enough here.
template <class Inner>
class mpi_policy;

template <class Inner>
struct detail::collective_backend<mpi_policy<Inner>> : detail::mpi::collectives {};

}  // namespace dpar
