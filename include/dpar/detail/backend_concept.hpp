#pragma once
// What a backend provides: a struct of static functions, one per algorithm,
// each taking its policy first (the forms the front doors in algorithm.hpp
// call). Each backend header checks itself with
//   static_assert(dpar::detail::backend_for<Backend, Policy>);
// so a new backend that misses a function gets an error naming the group it
// belongs to. reduce is optional: the front door derives it from
// transform_reduce, and the sum of products from the two-range form.

#include <concepts>
#include <optional>
#include <utility>

namespace dpar::detail {

namespace probe {
// Stand-ins for user arguments: int* iterators and functions on int
// (declared only; the checks are unevaluated).
struct unary {
  int operator()(int) const;
};
struct binary {
  int operator()(int, int) const;
};
}  // namespace probe

template <class B, class P>
concept backend_transform = requires(const P& p, int* it, probe::unary f, probe::binary g) {
  { B::transform(p, it, it, it, f) } -> std::same_as<int*>;
  { B::transform(p, it, it, it, it, g) } -> std::same_as<int*>;
};

template <class B, class P>
concept backend_for_each = requires(const P& p, int* it, probe::unary f) { B::for_each(p, it, it, f); };

template <class B, class P>
concept backend_transform_reduce = requires(const P& p, int* it, probe::unary f, probe::binary g) {
  { B::transform_reduce(p, it, it, 0, g, f) } -> std::same_as<int>;
  { B::transform_reduce(p, it, it, it, 0, g, g) } -> std::same_as<int>;
};

// inclusive_scan takes its init as std::optional (none: start from the first element).
template <class B, class P>
concept backend_scans = requires(const P& p, int* it, probe::binary g, std::optional<int> init) {
  { B::inclusive_scan(p, it, it, it, g, init) } -> std::same_as<int*>;
  { B::exclusive_scan(p, it, it, it, 0, g) } -> std::same_as<int*>;
};

template <class B, class P>
concept backend_for =
    backend_transform<B, P> && backend_for_each<B, P> && backend_transform_reduce<B, P> && backend_scans<B, P>;

// Whether backend B has its own reduce for these arguments.
template <class B, class P, class It, class T, class Op>
concept has_reduce = requires(const P& p, It it, T init, Op op) {
  B::reduce(p, it, it, std::move(init), std::move(op));
};

}  // namespace dpar::detail
