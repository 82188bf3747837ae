#pragma once
// Function objects and the traits that tell a backend what it may do with an op.

#include <algorithm>
#include <concepts>
#include <functional>
#include <limits>
#include <type_traits>

namespace dpar {

// Binary min and max as function objects (std has none), like std::plus.
template <class T = void>
struct minimum {
  constexpr T operator()(const T& a, const T& b) const { return b < a ? b : a; }
};
template <>
struct minimum<void> {
  template <class A, class B>
  constexpr auto operator()(const A& a, const B& b) const -> std::common_type_t<A, B> {
    return b < a ? b : a;
  }
};
template <class T = void>
struct maximum {
  constexpr T operator()(const T& a, const T& b) const { return a < b ? b : a; }
};
template <>
struct maximum<void> {
  template <class A, class B>
  constexpr auto operator()(const A& a, const B& b) const -> std::common_type_t<A, B> {
    return a < b ? b : a;
  }
};

// True for ops whose operands may be combined in any order. Backends use it,
// together with an arithmetic value type, to take vectorized paths that
// reorder operands; every other op is combined strictly in sequence order.
// Specialize it for your own commutative ops.
template <class Op>
struct is_commutative : std::false_type {};

#define DPAR_DETAIL_COMMUTATIVE(op)                        \
  template <class T>                                       \
  struct is_commutative<op<T>> : std::true_type {};
DPAR_DETAIL_COMMUTATIVE(std::plus)
DPAR_DETAIL_COMMUTATIVE(std::multiplies)
DPAR_DETAIL_COMMUTATIVE(std::bit_and)
DPAR_DETAIL_COMMUTATIVE(std::bit_or)
DPAR_DETAIL_COMMUTATIVE(std::bit_xor)
DPAR_DETAIL_COMMUTATIVE(minimum)
DPAR_DETAIL_COMMUTATIVE(maximum)
#undef DPAR_DETAIL_COMMUTATIVE
template <>
struct is_commutative<std::remove_cvref_t<decltype(std::ranges::min)>> : std::true_type {};
template <>
struct is_commutative<std::remove_cvref_t<decltype(std::ranges::max)>> : std::true_type {};

template <class Op>
inline constexpr bool is_commutative_v = is_commutative<std::remove_cvref_t<Op>>::value;

// What a known op computes on T: backends map the kind to their library's op
// (MPI_SUM, ncclSum, ...) and take its identity from reduction_identity<T>.
// The std function objects and minimum / maximum have a kind as <> or <T>;
// specialize op_kind_of for your own op on T that computes one of these.
enum class op_kind { other, sum, product, min, max, bit_and, bit_or, bit_xor };

template <class Op, class T>
struct op_kind_of : std::integral_constant<op_kind, op_kind::other> {};

#define DPAR_DETAIL_OP_KIND(op, kind)                                                     \
  template <class T>                                                                       \
  struct op_kind_of<op<>, T> : std::integral_constant<op_kind, op_kind::kind> {};         \
  template <class T>                                                                       \
  struct op_kind_of<op<T>, T> : std::integral_constant<op_kind, op_kind::kind> {};
DPAR_DETAIL_OP_KIND(std::plus, sum)
DPAR_DETAIL_OP_KIND(std::multiplies, product)
DPAR_DETAIL_OP_KIND(minimum, min)
DPAR_DETAIL_OP_KIND(maximum, max)
DPAR_DETAIL_OP_KIND(std::bit_and, bit_and)
DPAR_DETAIL_OP_KIND(std::bit_or, bit_or)
DPAR_DETAIL_OP_KIND(std::bit_xor, bit_xor)
#undef DPAR_DETAIL_OP_KIND

template <class Op, class T>
inline constexpr op_kind op_kind_v = op_kind_of<std::remove_cvref_t<Op>, std::remove_cv_t<T>>::value;

// The identity of T under each kind of op (x op id == id op x == x), like
// Kokkos::reduction_identity: defined here for arithmetic types; specialize it
// for your own T to give its ops identities. -0.0 for floating-point sums:
// -0.0 + x == x for every x, +0.0 included.
template <class T>
struct reduction_identity {
  static constexpr T sum()
    requires std::is_arithmetic_v<T>
  {
    return std::is_floating_point_v<T> ? T(-0.0) : T(0);
  }
  static constexpr T product()
    requires std::is_arithmetic_v<T>
  {
    return T(1);
  }
  static constexpr T min()
    requires std::is_arithmetic_v<T>
  {
    return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
  }
  static constexpr T max()
    requires std::is_arithmetic_v<T>
  {
    return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::lowest();
  }
  static constexpr T bit_and()
    requires std::is_integral_v<T>
  {
    return static_cast<T>(~T(0));
  }
  static constexpr T bit_or()
    requires std::is_integral_v<T>
  {
    return T(0);
  }
  static constexpr T bit_xor()
    requires std::is_integral_v<T>
  {
    return T(0);
  }
};

// op_identity<Op, T>::value(): the identity of Op on T, where its kind and
// reduction_identity<T> give one. Specialize it for an op of kind `other`
// that has an identity; backends then take their identity-based fast paths.
namespace detail {
template <op_kind K, class T>
concept kind_has_identity = (K == op_kind::sum && requires { reduction_identity<T>::sum(); }) ||
                            (K == op_kind::product && requires { reduction_identity<T>::product(); }) ||
                            (K == op_kind::min && requires { reduction_identity<T>::min(); }) ||
                            (K == op_kind::max && requires { reduction_identity<T>::max(); }) ||
                            (K == op_kind::bit_and && requires { reduction_identity<T>::bit_and(); }) ||
                            (K == op_kind::bit_or && requires { reduction_identity<T>::bit_or(); }) ||
                            (K == op_kind::bit_xor && requires { reduction_identity<T>::bit_xor(); });
}  // namespace detail

template <class Op, class T>
struct op_identity {
  static constexpr T value()
    requires detail::kind_has_identity<op_kind_v<Op, T>, T>
  {
    using id = reduction_identity<T>;
    constexpr op_kind kind = op_kind_v<Op, T>;
    if constexpr (kind == op_kind::sum) return id::sum();
    else if constexpr (kind == op_kind::product) return id::product();
    else if constexpr (kind == op_kind::min) return id::min();
    else if constexpr (kind == op_kind::max) return id::max();
    else if constexpr (kind == op_kind::bit_and) return id::bit_and();
    else if constexpr (kind == op_kind::bit_or) return id::bit_or();
    else return id::bit_xor();
  }
};

// Whether dpar knows an identity of Op on T.
template <class Op, class T>
concept has_identity = requires {
  { op_identity<std::remove_cvref_t<Op>, std::remove_cv_t<T>>::value() } -> std::convertible_to<T>;
};

namespace detail {
// A reduction of T values with Op that may be reordered and vectorized.
template <class Op, class T>
inline constexpr bool reorderable_v = is_commutative_v<Op> && std::is_arithmetic_v<T>;
}  // namespace detail

}  // namespace dpar
