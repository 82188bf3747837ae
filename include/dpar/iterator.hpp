#pragma once
// Iterators for the algorithms: dpar::counting_iterator<T> (the values
// start, start + 1, ... without memory) and dpar::zip(ranges...) (the ranges
// side by side; its elements read and write as tuples). Both are C++20 random
// access iterators, so every dpar algorithm takes them, and std::views::iota
// and std::views::transform work as well on the CPU policies.

#include <compare>
#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>

namespace dpar {

// ---- counting_iterator -----------------------------------------------------

// *it == start + (it - counting_iterator(start)): T is integral, or any type
// with + and - of a difference (std::ptrdiff_t).
template <class T>
class counting_iterator {
 public:
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  using reference = T;
  using iterator_concept = std::random_access_iterator_tag;
  using iterator_category = std::input_iterator_tag;  // its reference is a value

  constexpr counting_iterator() = default;
  constexpr explicit counting_iterator(T value) : value_(value) {}

  constexpr T operator*() const { return value_; }
  constexpr T operator[](difference_type n) const { return static_cast<T>(value_ + static_cast<T>(n)); }

  constexpr counting_iterator& operator++() { return *this += 1; }
  constexpr counting_iterator operator++(int) {
    auto old = *this;
    ++*this;
    return old;
  }
  constexpr counting_iterator& operator--() { return *this -= 1; }
  constexpr counting_iterator operator--(int) {
    auto old = *this;
    --*this;
    return old;
  }
  constexpr counting_iterator& operator+=(difference_type n) {
    value_ = static_cast<T>(value_ + static_cast<T>(n));
    return *this;
  }
  constexpr counting_iterator& operator-=(difference_type n) {
    value_ = static_cast<T>(value_ - static_cast<T>(n));
    return *this;
  }
  friend constexpr counting_iterator operator+(counting_iterator it, difference_type n) { return it += n; }
  friend constexpr counting_iterator operator+(difference_type n, counting_iterator it) { return it += n; }
  friend constexpr counting_iterator operator-(counting_iterator it, difference_type n) { return it -= n; }
  friend constexpr difference_type operator-(const counting_iterator& a, const counting_iterator& b) {
    return static_cast<difference_type>(a.value_ - b.value_);
  }
  friend constexpr bool operator==(const counting_iterator& a, const counting_iterator& b) {
    return a.value_ == b.value_;
  }
  friend constexpr auto operator<=>(const counting_iterator& a, const counting_iterator& b) {
    return a.value_ <=> b.value_;
  }

 private:
  T value_{};
};

// ---- zip ---------------------------------------------------------------------

// The element of a zip: references to one element of each range. Reads as
// (converts to) a std::tuple of values or references, assigns through to the
// elements (also when itself const, as proxies must for std::indirectly_writable),
// and is tuple-like: auto [a, b] = *it; get<0>(ref), std::get<0>(ref) (it derives
// from the std::tuple of its references).
template <class... R>
class zip_reference : public std::tuple<R...> {
 public:
  constexpr explicit zip_reference(R... refs) : std::tuple<R...>(std::forward<R>(refs)...) {}
  // From a tuple of values, binding to its elements (the common reference of a
  // zip's reference and its value_type&, as the iterator concepts require).
  template <class... V>
    requires(sizeof...(V) == sizeof...(R) && (std::convertible_to<V&, R> && ...))
  constexpr zip_reference(std::tuple<V...>& values)
      : zip_reference(std::apply([](V&... v) { return zip_reference(R(v)...); }, values)) {}
  template <class... V>
    requires(sizeof...(V) == sizeof...(R) && (std::convertible_to<const V&, R> && ...))
  constexpr zip_reference(const std::tuple<V...>& values)
      : zip_reference(std::apply([](const V&... v) { return zip_reference(R(v)...); }, values)) {}
  // From a zip_reference whose references convert to these (int& to const int&).
  template <class... S>
    requires(sizeof...(S) == sizeof...(R) && !std::is_same_v<zip_reference<S...>, zip_reference> &&
             (std::convertible_to<S, R> && ...))
  constexpr zip_reference(const zip_reference<S...>& other)
      : zip_reference(std::apply([](S... s) { return zip_reference(R(std::forward<S>(s))...); }, other.refs())) {}
  constexpr zip_reference(const zip_reference&) = default;

  // Assignment writes through to the elements.
  template <class... V>
    requires(sizeof...(V) == sizeof...(R) && (std::is_assignable_v<R, const V&> && ...))
  constexpr const zip_reference& operator=(const std::tuple<V...>& values) const {
    assign(values);
    return *this;
  }
  template <class... V>
    requires(sizeof...(V) == sizeof...(R) && (std::is_assignable_v<R, V> && ...))
  constexpr const zip_reference& operator=(std::tuple<V...>&& values) const {
    assign(std::move(values));
    return *this;
  }
  template <class... S>
    requires(sizeof...(S) == sizeof...(R) && (std::is_assignable_v<R, S> && ...))
  constexpr const zip_reference& operator=(const zip_reference<S...>& other) const {
    assign(other.refs());
    return *this;
  }
  constexpr const zip_reference& operator=(const zip_reference& other) const
    requires(std::is_assignable_v<R, R> && ...)
  {
    assign(other.refs());
    return *this;
  }

  // The elements as a tuple of values (or of any types they convert to).
  template <class... V>
    requires(sizeof...(V) == sizeof...(R) && (std::constructible_from<V, R> && ...))
  constexpr operator std::tuple<V...>() const {
    return std::apply([](auto&&... r) { return std::tuple<V...>(static_cast<R>(r)...); }, refs());
  }

  constexpr const std::tuple<R...>& refs() const noexcept { return *this; }

  template <std::size_t I>
  friend constexpr std::tuple_element_t<I, std::tuple<R...>> get(const zip_reference& z) noexcept {
    return static_cast<std::tuple_element_t<I, std::tuple<R...>>>(std::get<I>(z.refs()));
  }

  template <class... V>
    requires(sizeof...(V) == sizeof...(R))
  friend constexpr bool operator==(const zip_reference& a, const std::tuple<V...>& b) {
    return a.refs() == b;
  }
  friend constexpr bool operator==(const zip_reference& a, const zip_reference& b) { return a.refs() == b.refs(); }

 private:
  template <class Tuple>
  constexpr void assign(Tuple&& values) const {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((static_cast<R>(std::get<I>(refs())) = std::get<I>(std::forward<Tuple>(values))), ...);
    }(std::index_sequence_for<R...>{});
  }
};

template <class... It>
class zip_iterator {
 public:
  using value_type = std::tuple<std::iter_value_t<It>...>;
  using reference = zip_reference<std::iter_reference_t<It>...>;
  using difference_type = std::common_type_t<std::iter_difference_t<It>...>;
  using iterator_concept = std::random_access_iterator_tag;
  using iterator_category = std::input_iterator_tag;  // its reference is a proxy

  constexpr zip_iterator() = default;
  constexpr explicit zip_iterator(It... its) : its_(its...) {}

  constexpr reference operator*() const {
    return std::apply([](const It&... it) { return reference(*it...); }, its_);
  }
  constexpr reference operator[](difference_type n) const { return *(*this + n); }

  constexpr zip_iterator& operator+=(difference_type n) {
    std::apply([n](It&... it) { ((it += static_cast<std::iter_difference_t<It>>(n)), ...); }, its_);
    return *this;
  }
  constexpr zip_iterator& operator-=(difference_type n) { return *this += -n; }
  constexpr zip_iterator& operator++() { return *this += 1; }
  constexpr zip_iterator operator++(int) {
    auto old = *this;
    ++*this;
    return old;
  }
  constexpr zip_iterator& operator--() { return *this -= 1; }
  constexpr zip_iterator operator--(int) {
    auto old = *this;
    --*this;
    return old;
  }
  friend constexpr zip_iterator operator+(zip_iterator it, difference_type n) { return it += n; }
  friend constexpr zip_iterator operator+(difference_type n, zip_iterator it) { return it += n; }
  friend constexpr zip_iterator operator-(zip_iterator it, difference_type n) { return it -= n; }
  // The ranges advance together: the first iterators tell the distance.
  friend constexpr difference_type operator-(const zip_iterator& a, const zip_iterator& b) {
    return static_cast<difference_type>(std::get<0>(a.its_) - std::get<0>(b.its_));
  }
  friend constexpr bool operator==(const zip_iterator& a, const zip_iterator& b) {
    return std::get<0>(a.its_) == std::get<0>(b.its_);
  }
  friend constexpr auto operator<=>(const zip_iterator& a, const zip_iterator& b) {
    return std::get<0>(a.its_) <=> std::get<0>(b.its_);
  }

  // iter_move gives the same proxy: its elements are still references.
  friend constexpr reference iter_move(const zip_iterator& it) { return *it; }

 private:
  std::tuple<It...> its_;
};

// The ranges side by side, as long as the shortest. A view that holds only
// iterators (so also a borrowed range); view_base rather than view_interface,
// whose members clang 14 cannot check against libstdc++ 12.
template <class... It>
class zip_view : public std::ranges::view_base {
 public:
  constexpr zip_view() = default;
  constexpr zip_view(std::ptrdiff_t size, It... firsts) : first_(firsts...), size_(size) {}
  constexpr zip_iterator<It...> begin() const { return first_; }
  constexpr zip_iterator<It...> end() const { return first_ + size_; }
  constexpr std::size_t size() const noexcept { return static_cast<std::size_t>(size_); }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr typename zip_iterator<It...>::reference operator[](std::ptrdiff_t i) const { return first_[i]; }

 private:
  zip_iterator<It...> first_;
  std::ptrdiff_t size_ = 0;
};

// zip(a, b, ...): random access, read-only over const ranges, writable over
// others. The ranges must outlive the view (lvalues or borrowed ranges).
template <std::ranges::random_access_range... R>
  requires(sizeof...(R) > 0 && (std::ranges::sized_range<R> && ...) && (std::ranges::borrowed_range<R> && ...))
constexpr auto zip(R&&... ranges) {
  const std::ptrdiff_t size = std::min({static_cast<std::ptrdiff_t>(std::ranges::size(ranges))...});
  return zip_view<std::ranges::iterator_t<R>...>(size, std::ranges::begin(ranges)...);
}

}  // namespace dpar

template <class... It>
inline constexpr bool std::ranges::enable_borrowed_range<dpar::zip_view<It...>> = true;

// zip_reference is tuple-like (structured bindings), and it and std::tuple
// have a common reference (what C++20's iterator concepts ask of a proxy).
template <class... R>
struct std::tuple_size<dpar::zip_reference<R...>> : std::integral_constant<std::size_t, sizeof...(R)> {};
template <std::size_t I, class... R>
struct std::tuple_element<I, dpar::zip_reference<R...>> {
  using type = std::tuple_element_t<I, std::tuple<R...>>;
};

template <class... R, class... V, template <class> class RQual, template <class> class VQual>
  requires(sizeof...(R) == sizeof...(V))
struct std::basic_common_reference<dpar::zip_reference<R...>, std::tuple<V...>, RQual, VQual> {
  using type = dpar::zip_reference<std::common_reference_t<R, VQual<V>>...>;
};
template <class... V, class... R, template <class> class VQual, template <class> class RQual>
  requires(sizeof...(R) == sizeof...(V))
struct std::basic_common_reference<std::tuple<V...>, dpar::zip_reference<R...>, VQual, RQual> {
  using type = dpar::zip_reference<std::common_reference_t<VQual<V>, R>...>;
};
template <class... R, class... S, template <class> class RQual, template <class> class SQual>
  requires(sizeof...(R) == sizeof...(S))
struct std::basic_common_reference<dpar::zip_reference<R...>, dpar::zip_reference<S...>, RQual, SQual> {
  using type = dpar::zip_reference<std::common_reference_t<R, S>...>;
};
