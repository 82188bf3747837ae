// dpar::sort, stable_sort and sort_by_key over MPI ranks (part of test_mpi):
// every rank builds the same global data, holds a slice of it, and after the
// sort must hold the same slice positions of std::stable_sort's result. Run
// on sub-communicators of 1 to world-size ranks, so that one mpiexec run of 4
// covers 1, 2, 3 and 4 ranks; the slices include empty ranks and one rank
// holding everything.
#include "mpi_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct record {
  std::int32_t key;
  std::int32_t position;  // in the global sequence: tells equal keys apart
  friend bool operator==(const record&, const record&) = default;
};
struct by_key {
  bool operator()(const record& a, const record& b) const { return a.key < b.key; }
};

// The first `ranks` ranks of the world, or MPI_COMM_NULL on the others.
struct sub_communicator {
  explicit sub_communicator(int ranks) {
    const int me = dpar_test_mpi::world_rank();
    MPI_Comm_split(MPI_COMM_WORLD, me < ranks ? 0 : MPI_UNDEFINED, me, &comm);
  }
  ~sub_communicator() {
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
  sub_communicator(const sub_communicator&) = delete;
  sub_communicator& operator=(const sub_communicator&) = delete;
  MPI_Comm comm = MPI_COMM_NULL;
};

// How n elements are cut over `ranks` ranks: [cut[r], cut[r + 1]) is rank r's.
std::vector<std::vector<std::size_t>> cuts(std::size_t n, int ranks) {
  std::vector<std::vector<std::size_t>> all;
  all.push_back(dpar_test_mpi::uneven_cut(n, ranks));  // rank 1 empty from 3 ranks
  std::vector<std::size_t> last_holds_all(static_cast<std::size_t>(ranks), 0);
  last_holds_all.push_back(n);
  all.push_back(last_holds_all);
  std::vector<std::size_t> first_holds_all{0};
  for (int r = 0; r < ranks; ++r) first_holds_all.push_back(n);
  all.push_back(first_holds_all);
  return all;
}

template <class T>
std::vector<T> slice(const std::vector<T>& global, const std::vector<std::size_t>& cut, int rank) {
  return {global.begin() + static_cast<std::ptrdiff_t>(cut[static_cast<std::size_t>(rank)]),
          global.begin() + static_cast<std::ptrdiff_t>(cut[static_cast<std::size_t>(rank) + 1])};
}

// Calls body(policy, name, cut, rank) for sub-communicators of 1 .. world size
// ranks, each cut of n elements, and mpi over seq, over par, and deterministic.
template <class Body>
void for_each_setting(std::size_t n, Body&& body) {
  for (int ranks = 1; ranks <= dpar_test_mpi::world_size(); ++ranks) {
    sub_communicator sub(ranks);
    if (sub.comm == MPI_COMM_NULL) continue;
    int rank = 0;
    MPI_Comm_rank(sub.comm, &rank);
    for (const auto& cut : cuts(n, ranks)) {
      const std::string where = std::to_string(ranks) + " ranks, " + std::to_string(n) + " elements";
      body(dpar::mpi(sub.comm), "mpi(seq), " + where, cut, rank);
      body(dpar::mpi(sub.comm, dpar::par), "mpi(par), " + where, cut, rank);
      body(dpar::deterministic(dpar::mpi(sub.comm, dpar::par)), "deterministic(mpi(par)), " + where, cut, rank);
    }
  }
}

const std::size_t mpi_sort_sizes[] = {0, 1, 7, 1009, 9001};  // 9001: parallel merges within a rank

}  // namespace

TEST_CASE("mpi sort and stable_sort: each rank gets its slice of the sorted sequence", "[mpi][sort]") {
  dpar_test::within_seconds(120, "mpi sort", [] {
    for (std::size_t n : mpi_sort_sizes) {
      std::mt19937_64 rng(n);
      std::vector<int> ints(n);
      std::vector<double> doubles(n);
      std::vector<record> records(n);
      for (std::size_t i = 0; i < n; ++i) {
        ints[i] = static_cast<int>(rng());
        const auto r = rng() % 5;
        doubles[i] = r == 0 ? -0.0 : r == 1 ? 0.0 : std::ldexp(static_cast<double>(rng() % 1000) - 500, -3);
        records[i] = {static_cast<std::int32_t>(rng() % 37), static_cast<std::int32_t>(i)};
      }
      auto sorted_ints = ints;
      auto sorted_doubles = doubles;
      auto sorted_records = records;
      std::sort(sorted_ints.begin(), sorted_ints.end(), std::greater<>{});
      std::stable_sort(sorted_doubles.begin(), sorted_doubles.end());
      std::stable_sort(sorted_records.begin(), sorted_records.end(), by_key{});
      for_each_setting(n, [&](const auto& policy, const std::string& name, const auto& cut, int rank) {
        INFO(name);
        auto mine = slice(ints, cut, rank);
        dpar::sort(policy, mine, std::greater<>{});
        CHECK(mine == slice(sorted_ints, cut, rank));
        auto d = slice(doubles, cut, rank);
        dpar::stable_sort(policy, d.begin(), d.end());
        const auto want = slice(sorted_doubles, cut, rank);
        bool same_bits = d.size() == want.size();
        for (std::size_t i = 0; same_bits && i < d.size(); ++i)
          same_bits = d[i] == want[i] && std::signbit(d[i]) == std::signbit(want[i]);
        CHECK(same_bits);  // -0.0 and +0.0 in their global input order
        auto r = slice(records, cut, rank);
        dpar::stable_sort(policy, r, by_key{});
        CHECK(r == slice(sorted_records, cut, rank));
        r = slice(records, cut, rank);
        dpar::sort(policy, r, by_key{});
        const auto want_r = slice(sorted_records, cut, rank);
        CHECK(std::equal(r.begin(), r.end(), want_r.begin(), want_r.end(),
                         [](const record& a, const record& b) { return a.key == b.key; }));
      });
    }
  });
}

TEST_CASE("mpi sort_by_key: stable across ranks, values follow their keys", "[mpi][sort][by_key]") {
  dpar_test::within_seconds(120, "mpi sort_by_key", [] {
    for (std::size_t n : mpi_sort_sizes) {
      std::mt19937_64 rng(n + 1);
      std::vector<float> keys(n);
      for (auto& k : keys) k = static_cast<float>(rng() % 50) - 25;
      std::vector<std::int64_t> positions(n);
      std::iota(positions.begin(), positions.end(), std::int64_t{0});
      auto want = positions;
      std::stable_sort(want.begin(), want.end(), [&](auto a, auto b) { return keys[static_cast<std::size_t>(a)] < keys[static_cast<std::size_t>(b)]; });
      for_each_setting(n, [&](const auto& policy, const std::string& name, const auto& cut, int rank) {
        INFO(name);
        auto k = slice(keys, cut, rank);
        auto v = slice(positions, cut, rank);
        dpar::sort_by_key(policy, k, v);
        CHECK(v == slice(want, cut, rank));
        CHECK(std::is_sorted(k.begin(), k.end()));
      });
    }
  });
}

TEST_CASE("mpi sort: a comparator that throws on one rank throws on every rank", "[mpi][sort][errors]") {
  dpar_test::within_seconds(60, "mpi sort with a throwing comparator", [] {
    const int me = dpar_test_mpi::world_rank(), last = dpar_test_mpi::world_size() - 1;
    std::vector<record> mine(5000);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = {static_cast<std::int32_t>((i * 7919) % 1000), 0};
    for (int failing : {0, last}) {
      auto comp = [&](const record& a, const record& b) {
        if (me == failing) throw std::runtime_error("comparator failed on rank " + std::to_string(me));
        return a.key < b.key;
      };
      for (bool stable : {false, true}) {
        auto v = mine;
        try {
          if (stable) dpar::stable_sort(dpar::mpi(MPI_COMM_WORLD, dpar::par), v, comp);
          else dpar::sort(dpar::mpi(MPI_COMM_WORLD), v, comp);
          FAIL("no exception on rank " << me);
        } catch (const dpar::collective_error& e) {
          CHECK(me != failing);
          CHECK_THAT(e.what(), Catch::Contains("rank " + std::to_string(failing)));
        } catch (const std::runtime_error& e) {
          CHECK(me == failing);
          CHECK_THAT(e.what(), Catch::Contains("comparator failed"));
        }
      }
    }
    // the ranks are in step afterwards
    auto v = mine;
    dpar::sort(dpar::mpi(MPI_COMM_WORLD), v, by_key{});
    CHECK(std::is_sorted(v.begin(), v.end(), by_key{}));
  });
}
