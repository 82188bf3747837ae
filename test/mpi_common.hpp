#pragma once
// Helpers of the MPI tests: every rank builds the same global data from a
// fixed seed and owns an uneven (sometimes empty) slice of it; the
// conformance suite's adaptor for dpar::mpi.

#include <dpar/mpi.hpp>

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "collective_common.hpp"
#include "common.hpp"
#include "conformance.hpp"

namespace dpar_test_mpi {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Whether every rank passed the same flag (collective: every rank calls it).
inline bool same_on_every_rank(bool flag) {
  int mine = flag ? 1 : 0, lowest = 0, highest = 0;
  MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&mine, &highest, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return lowest == highest;
}

inline const std::vector<std::size_t> global_sizes = {0, 1, 2, 13, 1009, 100003};

// Rank r owns [cut[r], cut[r+1]) of n elements: uneven, rank 1 empty when there are 3+ ranks.
inline std::vector<std::size_t> uneven_cut(std::size_t n, int ranks) {
  std::vector<std::size_t> cut{0};
  for (int r = 0; r < ranks; ++r) {
    std::size_t share = (r == 1 && ranks > 2) ? 0 : n * static_cast<std::size_t>(r + 1) * 2 / (static_cast<std::size_t>(ranks) * (ranks + 1));
    cut.push_back(std::min(n, cut.back() + share));
  }
  cut.back() = n;
  return cut;
}

template <class T>
std::vector<T> my_part(const std::vector<T>& global, const std::vector<std::size_t>& cut) {
  int r = world_rank();
  return std::vector<T>(global.begin() + static_cast<std::ptrdiff_t>(cut[r]),
                        global.begin() + static_cast<std::ptrdiff_t>(cut[r + 1]));
}

inline std::vector<dpar_test::mat2> random_mats(std::size_t n, std::uint64_t seed) {
  std::vector<dpar_test::mat2> v(n);
  for (auto& m : v) m = dpar_test::random_mat2(seed);
  return v;
}

// Calls body(policy, name) for MPI over seq and over par.
template <class Body>
void for_each_mpi_policy(Body&& body) {
  body(dpar::mpi(MPI_COMM_WORLD), std::string("mpi(seq)"));
  body(dpar::mpi(MPI_COMM_WORLD, dpar::par), std::string("mpi(par)"));
}

// The conformance suite with each rank holding an uneven slice of the data.
struct mpi_adaptor {
  static constexpr bool any_value_type = false;  // values cross ranks as bytes
  static inline const std::vector<std::size_t> sizes = global_sizes;
  template <class Body>
  static void for_each_policy(Body&& body) {
    dpar_test::within_seconds(120, "an MPI conformance case", [&] { for_each_mpi_policy(body); });
  }
  template <class T>
  static std::vector<T> place(const std::vector<T>& global) {
    return my_part(global, uneven_cut(global.size(), world_size()));
  }
  template <class T>
  static const std::vector<T>& host(const std::vector<T>& part) {
    return part;
  }
  static bool is_failure_elsewhere(const std::exception& e) {
    return dynamic_cast<const dpar::collective_error*>(&e) != nullptr;
  }
};

}  // namespace dpar_test_mpi
