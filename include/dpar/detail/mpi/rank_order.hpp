#pragma once
// Element-wise all-reduce in rank order with MPI's fast algorithms. For
// floating-point sums and products the grouping changes the bits, and MPI
// chooses it (MPI_SUM may add rank 2 to rank 1 before rank 0), while a
// non-commutative user op, which keeps the order, makes OpenMPI fall back to
// a far slower algorithm (9 ms against 1.5 ms for 1 MB on 2 ranks). So the
// ranks move the data with MPI and combine it themselves:
//   - short buffers (length x ranks <= small_all_reduce): one MPI_Allgather,
//     then every rank folds all ranks' values in rank order;
//   - long ones: a reduce-scatter by hand (MPI_Alltoallv, then each rank
//     folds its slice of all ranks' buffers in rank order) and an
//     MPI_Allgatherv: the traffic of a ring all-reduce. Those two halves
//     are also callable alone (reduce_scatter_in_rank_order,
//     all_gather_slices), for work done on each rank's slice in between
//     (dpar::nn's optimizer update sharded over ranks).
// Every rank gets data = op(...op(op(d0, d1), d2)..., d[p-1]), the same bits.

#include "mpi_h.hpp"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <span>
#include <vector>

#include "../../partition.hpp"
#include "error.hpp"
#include "types.hpp"

namespace dpar::detail::mpi {

// Up to this many elements gathered (length x ranks), an all-reduce gathers
// whole buffers: one collective instead of two.
inline constexpr std::size_t small_all_reduce = 4096;

// The receive buffer, kept per thread between calls: allocating (and
// faulting in) a gradient-sized buffer every training step costs more than
// the combining itself.
template <class T>
std::vector<T>& rank_order_scratch() {
  thread_local std::vector<T> scratch;
  return scratch;
}

// The slice of an n-element buffer that rank r owns in the reduce-scatter and
// all-gather below (and in all_reduce_in_rank_order's long path): [0, n) cut
// by dpar::even_split, the same split wherever dpar cuts.
inline index_range rank_slice(std::size_t n, int ranks, int r) {
  return even_split(n, static_cast<std::size_t>(ranks), static_cast<std::size_t>(r));
}

// The slices' lengths and offsets for MPI (ints: n fits in an int, callers check).
inline void slice_counts(std::size_t n, int ranks, std::vector<int>& counts, std::vector<int>& offsets) {
  counts.resize(static_cast<std::size_t>(ranks));
  offsets.resize(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    const index_range s = rank_slice(n, ranks, r);
    offsets[static_cast<std::size_t>(r)] = static_cast<int>(s.begin);
    counts[static_cast<std::size_t>(r)] = static_cast<int>(s.size());
  }
}

// out[i] = op(...op(op(b[i], b[c + i]), b[2c + i])..., b[(p-1)c + i]) for i < c:
// p blocks of c values, one per rank in rank order, folded in rank order.
// (out may not overlap the blocks.)
template <class T, class Op>
void fold_in_rank_order(const T* blocks, std::size_t c, std::size_t p, T* out, Op& op) {
  std::copy(blocks, blocks + c, out);
  for (std::size_t r = 1; r < p; ++r) {
    const T* from = blocks + r * c;
    for (std::size_t i = 0; i < c; ++i) out[i] = T(op(out[i], from[i]));
  }
}

// This rank's slice of data (rank_slice) becomes the element-wise op over
// every rank's data there, in rank order; the rest of data is left as it
// was. One MPI_Alltoallv (each rank sends every other rank that rank's
// slice), then this rank folds the p copies of its slice. T has an MPI
// datatype; op cannot throw; every rank passes the same length, at most
// INT_MAX. Collective.
template <class T, class Op>
void reduce_scatter_in_rank_order(MPI_Comm comm, std::span<T> data, Op& op) {
  const int ranks = size_of(comm), me = rank_of(comm);
  if (ranks == 1 || data.empty()) return;
  const std::size_t p = static_cast<std::size_t>(ranks);
  std::vector<int> counts, offsets, mine(p), at_r(p);
  slice_counts(data.size(), ranks, counts, offsets);
  const std::size_t c = static_cast<std::size_t>(counts[static_cast<std::size_t>(me)]);
  for (std::size_t r = 0; r < p; ++r) mine[r] = static_cast<int>(c), at_r[r] = static_cast<int>(r * c);
  std::vector<T>& scratch = rank_order_scratch<T>();
  scratch.resize(c * p);
  check(MPI_Alltoallv(data.data(), counts.data(), offsets.data(), datatype<T>(), scratch.data(), mine.data(),
                      at_r.data(), datatype<T>(), comm),
        "MPI_Alltoallv");
  fold_in_rank_order(scratch.data(), c, p, data.data() + offsets[static_cast<std::size_t>(me)], op);
}

// Every rank's slice r of data (rank_slice) becomes a copy of rank r's, for
// every r: one MPI_Allgatherv in place. Same length on every rank, at most
// INT_MAX. Collective.
template <class T>
void all_gather_slices(MPI_Comm comm, std::span<T> data) {
  const int ranks = size_of(comm);
  if (ranks == 1 || data.empty()) return;
  std::vector<int> counts, offsets;
  slice_counts(data.size(), ranks, counts, offsets);
  check(MPI_Allgatherv(MPI_IN_PLACE, 0, datatype<T>(), data.data(), counts.data(), offsets.data(), datatype<T>(),
                       comm),
        "MPI_Allgatherv");
}

// data = the element-wise op over every rank's data, in rank order. T has an
// MPI datatype; op cannot throw (built-in kinds on arithmetic types); every
// rank passes the same length (callers check it). Collective.
template <class T, class Op>
void all_reduce_in_rank_order(MPI_Comm comm, std::span<T> data, Op& op) {
  const int ranks = size_of(comm);
  if (ranks == 1 || data.empty()) return;
  const std::size_t p = static_cast<std::size_t>(ranks);
  // MPI counts and displacements are int: pieces whose whole fits.
  const std::size_t most = static_cast<std::size_t>(INT_MAX) / 2;
  std::vector<T>& scratch = rank_order_scratch<T>();
  for (std::size_t at = 0; at < data.size(); at += most) {
    std::span<T> piece = data.subspan(at, std::min(most, data.size() - at));
    const std::size_t n = piece.size();
    if (n * p <= small_all_reduce) {
      scratch.resize(n * p);
      check(MPI_Allgather(piece.data(), static_cast<int>(n), datatype<T>(), scratch.data(), static_cast<int>(n),
                          datatype<T>(), comm),
            "MPI_Allgather");
      fold_in_rank_order(scratch.data(), n, p, piece.data(), op);
      continue;
    }
    reduce_scatter_in_rank_order(comm, piece, op);
    all_gather_slices(comm, piece);
  }
}

// Floating-point sums and products: where MPI's own grouping would change the bits.
template <class Op, class T>
inline constexpr bool needs_rank_order_v =
    builtin_v<Op, T> && std::is_floating_point_v<T> && (op_kind_v<Op, T> == op_kind::sum || op_kind_v<Op, T> == op_kind::product);

}  // namespace dpar::detail::mpi
