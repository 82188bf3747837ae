#pragma once
// Which C++ types and ops MPI can reduce by itself: built-in datatypes for
// arithmetic types, built-in ops for the known kinds of op. Anything
// else goes through an ordered user op (ordered_op.hpp).

#include "mpi_h.hpp"

#include <type_traits>

#include "../../functional.hpp"

namespace dpar::detail::mpi {

template <class T>
MPI_Datatype datatype() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, char>) return std::is_signed_v<char> ? MPI_SIGNED_CHAR : MPI_UNSIGNED_CHAR;
  else if constexpr (std::is_same_v<U, signed char>) return MPI_SIGNED_CHAR;
  else if constexpr (std::is_same_v<U, unsigned char>) return MPI_UNSIGNED_CHAR;
  else if constexpr (std::is_same_v<U, short>) return MPI_SHORT;
  else if constexpr (std::is_same_v<U, unsigned short>) return MPI_UNSIGNED_SHORT;
  else if constexpr (std::is_same_v<U, int>) return MPI_INT;
  else if constexpr (std::is_same_v<U, unsigned>) return MPI_UNSIGNED;
  else if constexpr (std::is_same_v<U, long>) return MPI_LONG;
  else if constexpr (std::is_same_v<U, unsigned long>) return MPI_UNSIGNED_LONG;
  else if constexpr (std::is_same_v<U, long long>) return MPI_LONG_LONG;
  else if constexpr (std::is_same_v<U, unsigned long long>) return MPI_UNSIGNED_LONG_LONG;
  else if constexpr (std::is_same_v<U, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<U, double>) return MPI_DOUBLE;
  else return MPI_LONG_DOUBLE;
}

template <class T>
inline constexpr bool has_datatype_v = std::is_arithmetic_v<T> && !std::is_same_v<std::remove_cv_t<T>, bool>;

// The MPI op for a kind of op (functional.hpp): MPI reduces T with Op by itself
// when T has a datatype and dpar knows Op's kind and identity on T (the
// identity is what an empty local range contributes).
template <class Op, class T>
inline constexpr bool builtin_v =
    has_datatype_v<std::remove_cv_t<T>> && op_kind_v<Op, T> != op_kind::other && has_identity<Op, T>;

// Integers under a built-in kind that gives the same result in any grouping
// and order, so MPI's own op may combine them; a rank's failure travels as
// a flag beside the value under the same op (order_free_flags). Not xor (a
// flag's parity loses two failures) and not sums of types narrower than int
// (their flags could wrap around with many ranks).
template <class Op, class T>
inline constexpr bool order_free_v =
    builtin_v<Op, T> && std::is_integral_v<std::remove_cv_t<T>> && op_kind_v<Op, T> != op_kind::bit_xor &&
    (op_kind_v<Op, T> != op_kind::sum || sizeof(T) >= sizeof(int));

// The flag an ok rank and a failed rank send beside the value: combining
// the ranks' flags with the kind's op gives `ok` only if every rank sent it.
template <op_kind Kind, class T>
struct order_free_flags {
  static constexpr bool ok_is_zero = Kind == op_kind::sum || Kind == op_kind::max || Kind == op_kind::bit_or;
  static constexpr T ok = ok_is_zero ? T(0) : Kind == op_kind::bit_and ? static_cast<T>(~T(0)) : T(1);
  static constexpr T failed = ok_is_zero ? T(1) : T(0);
};

inline MPI_Op builtin_op(op_kind kind) {
  switch (kind) {
    case op_kind::sum: return MPI_SUM;
    case op_kind::product: return MPI_PROD;
    case op_kind::min: return MPI_MIN;
    case op_kind::max: return MPI_MAX;
    case op_kind::bit_and: return MPI_BAND;
    case op_kind::bit_or: return MPI_BOR;
    case op_kind::bit_xor: return MPI_BXOR;
    default: return MPI_OP_NULL;
  }
}

}  // namespace dpar::detail::mpi
