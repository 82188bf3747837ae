// The conformance suite over MPI ranks (part of test_mpi, whose main is in
// mpi_main.cpp).
#include "mpi_common.hpp"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using dpar_test_mpi::mpi_adaptor;

// One element type: the MPI backend treats every arithmetic type alike (a
// built-in datatype), each type costs compile time, and the CPU suite covers
// int, long long, float and double; mat2 and money below take the ordered
// user-op path.
DPAR_CONFORMANCE_ALGORITHMS(mpi_adaptor, "mpi", long long)
DPAR_CONFORMANCE_TYPES(mpi_adaptor, "mpi")
DPAR_CONFORMANCE_HOST(mpi_adaptor, "mpi")
DPAR_CONFORMANCE_DERIVED(mpi_adaptor, "mpi")

// deterministic(mpi(...)) runs the derived algorithms as mpi(...) does.
struct deterministic_mpi_adaptor : mpi_adaptor {
  template <class Body>
  static void for_each_policy(Body&& body) {
    dpar_test::within_seconds(120, "an MPI conformance case", [&] {
      body(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD)), std::string("deterministic(mpi(seq))"));
      body(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD, dpar::par)), std::string("deterministic(mpi(par))"));
    });
  }
};
DPAR_CONFORMANCE_DERIVED(deterministic_mpi_adaptor, "deterministic_mpi")

// reduce_by_key over ranks, where segments run across ranks: each rank gets
// the segments that start on it, reduced whole, also those that run through
// an empty rank and a rank of one element into later ones. Keys are equal
// under key_eq by k / 4, so a segment's keys differ and keys_out must hold
// its first; values are 2x2 matrices, whose product depends on order.
TEST_CASE("mpi reduce_by_key: a rank writes the segments that start on it, reduced whole", "[mpi][by_key]") {
  using dpar_test::mat2;
  using dpar_test::mat2_mul;
  using namespace dpar_test_mpi;
  dpar_test::within_seconds(120, "mpi reduce_by_key", [] {
    const int ranks = world_size(), me = world_rank();
    auto same_group = [](int a, int b) { return a / 4 == b / 4; };
    for (std::size_t n : {0, 1, 2, 3, 7, 13, 101, 1009, 10007})
      for (std::size_t longest : {n / 2 + 1, n / 8 + 1, std::size_t{3}}) {
        INFO("n = " << n << ", runs of at most " << longest);
        std::mt19937_64 rng(n * 31 + longest);
        std::vector<int> gkeys(n);
        int group = 0;
        for (std::size_t i = 0, left = 0; i < n; ++i, --left) {
          if (left == 0) {  // a new segment
            group += 1 + static_cast<int>(rng() % 3);
            left = 1 + rng() % longest;
          }
          gkeys[i] = group * 4 + static_cast<int>(rng() % 4);
        }
        const auto gvals = dpar_test::random_mat2s(n, n + longest);
        // rank 1 empty, rank 2 one element (where there are enough ranks), the rest even
        std::vector<std::size_t> cut{0};
        for (int r = 0; r < ranks; ++r) {
          const std::size_t even = n / static_cast<std::size_t>(ranks);
          const std::size_t share = r == 1 && ranks > 2 ? 0 : r == 2 && ranks > 3 ? 1 : even;
          cut.push_back(r + 1 == ranks ? n : std::min(n, cut.back() + share));
        }
        const auto lo = static_cast<std::ptrdiff_t>(cut[static_cast<std::size_t>(me)]);
        const auto hi = static_cast<std::ptrdiff_t>(cut[static_cast<std::size_t>(me) + 1]);
        // the one-process result's segments that start in [lo, hi)
        std::vector<int> want_keys;
        std::vector<mat2> want_totals;
        for (auto i = static_cast<std::size_t>(lo); i < n; ++i) {
          const bool head = i == 0 || !same_group(gkeys[i - 1], gkeys[i]);
          if (head && i >= static_cast<std::size_t>(hi)) break;
          if (head) {
            want_keys.push_back(gkeys[i]);
            want_totals.push_back(gvals[i]);
          } else if (!want_totals.empty()) {
            want_totals.back() = mat2_mul{}(want_totals.back(), gvals[i]);
          }
        }
        const std::vector<int> keys(gkeys.begin() + lo, gkeys.begin() + hi);
        const std::vector<mat2> vals(gvals.begin() + lo, gvals.begin() + hi);
        for_each_mpi_policy([&](const auto& policy, const std::string& name) {
          INFO(name);
          std::vector<int> key_out(keys.size() + 1, -1);
          std::vector<mat2> val_out(keys.size() + 1, mat2{});
          auto [ke, ve] = dpar::reduce_by_key(policy, keys.begin(), keys.end(), vals.begin(), key_out.begin(),
                                              val_out.begin(), same_group, mat2_mul{});
          CHECK(std::vector<int>(key_out.begin(), ke) == want_keys);
          CHECK(std::vector<mat2>(val_out.begin(), ve) == want_totals);
          CHECK(std::all_of(ke, key_out.end(), [](int k) { return k == -1; }));  // nothing written past the end
        });
      }
  });
}
