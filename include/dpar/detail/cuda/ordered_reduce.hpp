#pragma once
// Reduction that combines operands strictly in sequence order, for ops that
// are associative but not known to be commutative. cub::DeviceReduce does not
// promise that order, so this path has its own two-level kernel:
//
//  1. Block b reduces the contiguous chunk [b*chunk, (b+1)*chunk) tile by tile.
//     In a tile, thread t folds items [t*items, (t+1)*items) left to right, and
//     cub::BlockReduce with BLOCK_REDUCE_WARP_REDUCTIONS (documented to support
//     non-commutative operators: each warp reduces its lanes in lane order by
//     shuffles, then thread 0 appends the warps' totals in warp order) joins
//     the threads; thread 0 appends each tile's value to the block's running
//     value. Blocks write one partial each, in block order.
//     WARP_REDUCTIONS needs shared memory for one value per warp (9 values),
//     BLOCK_REDUCE_RAKING for about one per thread plus padding (288), which
//     is past the 48 KiB of static shared memory for values over ~170 bytes
//     (a 6x6 double matrix).
//  2. One block reduces the partials the same way and puts init on the left.
//
// Only order is preserved, not a fixed tree, so ops must be associative.

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cstddef>
#include <memory>

#include "../../gpu/memory.hpp"
#include "../../gpu/error.hpp"

namespace dpar::detail::cuda {

// elem(i) = it[i]
template <class It>
struct read_at {
  It it;
  __host__ __device__ decltype(auto) operator()(std::size_t i) const {
    return it[static_cast<typename std::iterator_traits<It>::difference_type>(i)];
  }
};

// elem(i) = f(it[i])
template <class It, class F>
struct transform_at {
  It it;
  F f;
  __host__ __device__ decltype(auto) operator()(std::size_t i) const {
    return f(it[static_cast<typename std::iterator_traits<It>::difference_type>(i)]);
  }
};

// elem(i) = f(it1[i], it2[i]); also the transform of CUB's two-input
// transform_reduce, over a counting iterator.
template <class It1, class It2, class F>
struct transform2_at {
  It1 it1;
  It2 it2;
  F f;
  template <class Index>
  __host__ __device__ decltype(auto) operator()(Index i) const {
    return f(it1[static_cast<typename std::iterator_traits<It1>::difference_type>(i)],
             it2[static_cast<typename std::iterator_traits<It2>::difference_type>(i)]);
  }
};

inline constexpr int ordered_threads = 256;
inline constexpr int ordered_items = 4;
inline constexpr std::size_t ordered_tile = std::size_t{ordered_threads} * ordered_items;

// Reduces [blockIdx.x * chunk, min(n, (blockIdx.x + 1) * chunk)), which is
// not empty, and writes the result (with init on its left if with_init) to
// out[blockIdx.x].
template <class T, class Elem, class Op>
__global__ void __launch_bounds__(ordered_threads)
    ordered_reduce_kernel(Elem elem, std::size_t n, std::size_t chunk, Op op, T* out, T init, bool with_init) {
  using block_reduce = cub::BlockReduce<T, ordered_threads, cub::BLOCK_REDUCE_WARP_REDUCTIONS>;
  __shared__ typename block_reduce::TempStorage shared;
  const std::size_t lo = blockIdx.x * chunk;
  const std::size_t hi = lo + chunk < n ? lo + chunk : n;
  T running{};  // meaningful in thread 0 only
  for (std::size_t tile = lo; tile < hi; tile += ordered_tile) {
    const std::size_t tile_end = tile + ordered_tile < hi ? tile + ordered_tile : hi;
    const int valid_threads = static_cast<int>((tile_end - tile + ordered_items - 1) / ordered_items);
    const std::size_t mine = tile + std::size_t(threadIdx.x) * ordered_items;
    T value{};
    if (static_cast<int>(threadIdx.x) < valid_threads) {
      const std::size_t mine_end = mine + ordered_items < tile_end ? mine + ordered_items : tile_end;
      value = T(elem(mine));
      for (std::size_t i = mine + 1; i < mine_end; ++i) value = T(op(value, elem(i)));
    }
    T tile_value = valid_threads == ordered_threads ? block_reduce(shared).Reduce(value, op)
                                                     : block_reduce(shared).Reduce(value, op, valid_threads);
    __syncthreads();  // `shared` is reused by the next tile
    if (threadIdx.x == 0) running = tile == lo ? tile_value : T(op(running, tile_value));
  }
  if (threadIdx.x == 0) out[blockIdx.x] = with_init ? T(op(init, running)) : running;
}

// Queues (init op) elem(0) op ... op elem(n-1), in that order, for n > 0, on
// `stream` of `device` (already current); without init (null) the result is
// the elements' reduction alone. The result lands at ->as<T>() of the returned
// storage once the stream gets there. The multi-GPU backend queues one per
// shard before waiting for any.
template <class T, class Elem, class Op>
std::unique_ptr<temp_buffer> ordered_reduce_enqueue(int device, cudaStream_t stream, std::size_t n, const T* init,
                                                    const Op& op, const Elem& elem) {
  const std::size_t tiles = (n + ordered_tile - 1) / ordered_tile;
  const std::size_t max_blocks = std::size_t(4) * static_cast<std::size_t>(std::max(1, info(device).multiprocessors));
  std::size_t blocks = std::min(tiles, max_blocks);
  const std::size_t chunk = (tiles + blocks - 1) / blocks * ordered_tile;  // whole tiles per block
  blocks = (n + chunk - 1) / chunk;                                        // no empty block

  const bool with_init = init != nullptr;
  const T init_value = with_init ? *init : T{};
  const std::size_t slot = result_slot<T>;
  auto buffer = std::make_unique<temp_buffer>(device, slot + (blocks > 1 ? blocks * sizeof(T) : 0), stream);
  T* result = buffer->as<T>();
  if (blocks == 1) {
    ordered_reduce_kernel<<<1, ordered_threads, 0, stream>>>(elem, n, n, op, result, init_value, with_init);
    check(cudaGetLastError(), "launching dpar's ordered reduction kernel", device);
  } else {
    T* partials = buffer->as<T>(slot);
    ordered_reduce_kernel<<<static_cast<unsigned>(blocks), ordered_threads, 0, stream>>>(elem, n, chunk, op,
                                                                                          partials, init_value, false);
    check(cudaGetLastError(), "launching dpar's ordered reduction kernel", device);
    ordered_reduce_kernel<<<1, ordered_threads, 0, stream>>>(read_at<const T*>{partials}, blocks, blocks, op,
                                                             result, init_value, with_init);
    check(cudaGetLastError(), "launching dpar's ordered reduction kernel (partials)", device);
  }
  return buffer;
}

}  // namespace dpar::detail::cuda
