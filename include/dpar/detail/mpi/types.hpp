#pragma once
// Which C++ types and ops MPI can reduce by itself: built-in datatypes for
// arithmetic types, built-in ops for the standard function objects. Anything
// else goes through an ordered user op (ordered_op.hpp).

#include <mpi.h>

#include <functional>
#include <limits>
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

// builtin<Op, T>: whether MPI has Op for T (value), its MPI_Op (op()) and the
// op's identity (what an empty local range contributes).
template <class Op, class T, class = void>
struct builtin {
  static constexpr bool value = false;
};

#define DPAR_DETAIL_MPI_BUILTIN(Functor, Condition, MpiOp, Identity)                                   \
  template <class T>                                                                                   \
  struct builtin<Functor<>, T, std::enable_if_t<has_datatype_v<T> && (Condition)>> {                    \
    static constexpr bool value = true;                                                                \
    static MPI_Op op() { return MpiOp; }                                                               \
    static T identity() { return Identity; }                                                           \
  };                                                                                                   \
  template <class T>                                                                                   \
  struct builtin<Functor<T>, T, std::enable_if_t<has_datatype_v<T> && (Condition)>> : builtin<Functor<>, T> {};

template <class T>
constexpr T largest() {
  if constexpr (std::numeric_limits<T>::has_infinity) return std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::max();
}
template <class T>
constexpr T smallest() {
  if constexpr (std::numeric_limits<T>::has_infinity) return -std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::lowest();
}

DPAR_DETAIL_MPI_BUILTIN(std::plus, true, MPI_SUM, T(0))
DPAR_DETAIL_MPI_BUILTIN(std::multiplies, true, MPI_PROD, T(1))
DPAR_DETAIL_MPI_BUILTIN(dpar::minimum, true, MPI_MIN, largest<T>())
DPAR_DETAIL_MPI_BUILTIN(dpar::maximum, true, MPI_MAX, smallest<T>())
DPAR_DETAIL_MPI_BUILTIN(std::bit_and, std::is_integral_v<T>, MPI_BAND, static_cast<T>(~T(0)))
DPAR_DETAIL_MPI_BUILTIN(std::bit_or, std::is_integral_v<T>, MPI_BOR, T(0))
DPAR_DETAIL_MPI_BUILTIN(std::bit_xor, std::is_integral_v<T>, MPI_BXOR, T(0))
#undef DPAR_DETAIL_MPI_BUILTIN

template <class Op, class T>
inline constexpr bool builtin_v = builtin<std::remove_cvref_t<Op>, std::remove_cv_t<T>>::value;

}  // namespace dpar::detail::mpi
