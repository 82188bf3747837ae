#pragma once
// Function objects and the traits that tell a backend what it may do with an op.

#include <algorithm>
#include <functional>
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

namespace detail {
// A reduction of T values with Op that may be reordered and vectorized.
template <class Op, class T>
inline constexpr bool reorderable_v = is_commutative_v<Op> && std::is_arithmetic_v<T>;
}  // namespace detail

}  // namespace dpar
