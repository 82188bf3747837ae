#pragma once
// The shared-memory all-reduce kernel behind the K-buffer form (seq and par)
// and the SPMD communicator. Each worker owns one slice of the element range
// and, chunk by chunk, folds the K buffers into buffer 0 in replica order
// (reduce-scatter), then copies the result into the other K-1 buffers
// (all-gather). Every element is op(...op(op(b0, b1), b2)..., b[K-1]) however
// the range is sliced, so the result does not depend on the thread count.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../kernels.hpp"

namespace dpar::detail::collective {

// Slice boundaries fall on multiples of a cache line's worth of elements, so
// two workers never write the same line (for 64-byte aligned buffers).
template <class T>
inline constexpr std::size_t line_elements = sizeof(T) >= 64 ? 1 : 64 / sizeof(T);

// Chunk small enough that buffer 0's part stays in L1 while the other K-1
// buffers stream past it.
template <class T>
inline constexpr std::size_t chunk_elements = sizeof(T) >= 8192 ? 1 : 8192 / sizeof(T);

// [0, n) cut into `parts` slices of whole cache lines, in order.
template <class T>
struct slices {
  std::size_t n;
  std::size_t parts;
  std::size_t begin(std::size_t s) const noexcept { return aligned_split_begin(n, parts, line_elements<T>, s); }
};

// acc[i] = op(acc[i], in[i]) for i in [0, count).
template <class T, class Op>
void combine(T* __restrict acc, const T* __restrict in, std::size_t count, Op& op) {
  if constexpr (std::is_arithmetic_v<T>) {
    for (std::size_t i = 0; i < count; ++i) acc[i] = static_cast<T>(op(acc[i], in[i]));
  } else {
    for (std::size_t i = 0; i < count; ++i) acc[i] = op(std::move(acc[i]), in[i]);
  }
}

// No transformation of the reduced values (plain all-reduce).
struct keep {
  template <class T>
  void operator()(T*, std::size_t) const noexcept {}
};

// Divides the reduced values by K (mean of the replicas' values).
struct divide_by {
  std::size_t k;
  template <class T>
  void operator()(T& x) const {
    x = static_cast<T>(x / static_cast<T>(k));
  }
  template <class T>
  void operator()(T* data, std::size_t count) const {
    for (std::size_t i = 0; i < count; ++i) (*this)(data[i]);
  }
};

// All-reduce of elements [lo, hi) over K buffers; buffer(r) gives replica r's T*.
template <class T, class Buffer, class Op, class Finish>
void all_reduce_slice(std::size_t k, Buffer& buffer, std::size_t lo, std::size_t hi, Op& op, Finish& finish) {
  T* acc = buffer(0);
  for (std::size_t c = lo; c < hi; c += chunk_elements<T>) {
    std::size_t count = std::min(hi - c, chunk_elements<T>);
    for (std::size_t r = 1; r < k; ++r) combine(acc + c, static_cast<const T*>(buffer(r)) + c, count, op);
    finish(acc + c, count);
    for (std::size_t r = 1; r < k; ++r) std::copy(acc + c, acc + c + count, buffer(r) + c);
  }
}

// Reduce-scatter of elements [lo, hi) over K buffers into buffer(into) only:
// the same rank-order fold as all_reduce_slice, through a chunk-sized
// accumulator, so the other buffers are only read.
template <class T, class Buffer, class Op>
void reduce_slice_into(std::size_t k, Buffer& buffer, std::size_t into, std::size_t lo, std::size_t hi, Op& op) {
  if (lo == hi) return;
  std::vector<T> acc;
  acc.reserve(std::min(hi - lo, chunk_elements<T>));
  for (std::size_t c = lo; c < hi; c += chunk_elements<T>) {
    std::size_t count = std::min(hi - c, chunk_elements<T>);
    const T* first = buffer(0) + c;
    acc.assign(first, first + count);
    for (std::size_t r = 1; r < k; ++r) combine(acc.data(), static_cast<const T*>(buffer(r)) + c, count, op);
    std::move(acc.begin(), acc.end(), buffer(into) + c);
  }
}

}  // namespace dpar::detail::collective
