// dpar over MPI ranks, run by CTest under mpiexec -n 2 and -n 4: all_reduce
// and failures across ranks (the conformance suite is in
// test_mpi_conformance.cpp). Every rank compares its results with
// single-process references computed on the whole array (mpi_common.hpp).
#include <dpar/mpi.hpp>

#include "mpi_common.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <random>
#include <type_traits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

using dpar_test::mat2;
using dpar_test::mat2_mul;

using namespace dpar_test_mpi;

// The suite runs its algorithms on long long; reals take MPI_DOUBLE.
TEST_CASE("mpi reduce of doubles equals the single-process sum", "[mpi]") {
  for (std::size_t n : global_sizes) {
    auto reals = dpar_test::random_vector<double>(n, n + 2);
    auto mine = mpi_adaptor::place(reals);
    for_each_mpi_policy([&](auto policy, const std::string& name) {
      INFO(name << " n=" << n);
      double sum = std::accumulate(reals.begin(), reals.end(), 0.5);
      CHECK(dpar_test::close(dpar::reduce(policy, mine, 0.5), sum, static_cast<double>(n), 1e-12));
    });
  }
}

TEST_CASE("mpi all_reduce over one buffer per rank", "[mpi][collective]") {
  const int ranks = world_size(), me = world_rank();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{97}, std::size_t{100003}}) {
    std::vector<std::vector<double>> reals;
    std::vector<std::vector<int>> ints;
    std::vector<std::vector<mat2>> mats;
    for (int r = 0; r < ranks; ++r) {
      reals.push_back(dpar_test::random_vector<double>(n, 100 + static_cast<std::uint64_t>(r)));
      ints.push_back(dpar_test::random_vector<int>(n, 200 + static_cast<std::uint64_t>(r)));
      mats.push_back(random_mats(n, 300 + static_cast<std::uint64_t>(r)));
    }
    for_each_mpi_policy([&](auto policy, const std::string& name) {
      INFO(name << " n=" << n);
      auto sum = reals[me];
      dpar::all_reduce(policy, sum);
      auto sum_ref = dpar_test::reference_all_reduce(reals, std::plus<>{});
      for (std::size_t i = 0; i < n; ++i) REQUIRE(dpar_test::close(sum[i], sum_ref[i], ranks, 1e-14));
      auto mean = reals[me];
      dpar::all_reduce_mean(policy, mean);
      for (std::size_t i = 0; i < n; ++i) REQUIRE(dpar_test::close(mean[i], sum_ref[i] / ranks, ranks, 1e-14));
      auto mins = ints[me], maxs = ints[me], prods = ints[me];
      dpar::all_reduce(policy, mins, dpar::minimum<>{});
      dpar::all_reduce(policy, maxs, dpar::maximum<>{});
      dpar::all_reduce(policy, prods, std::multiplies<>{});
      CHECK(mins == dpar_test::reference_all_reduce(ints, dpar::minimum<>{}));
      CHECK(maxs == dpar_test::reference_all_reduce(ints, dpar::maximum<>{}));
      CHECK(prods == dpar_test::reference_all_reduce(ints, std::multiplies<>{}));
      auto product = mats[me];
      dpar::all_reduce(policy, product, mat2_mul{});
      CHECK(product == dpar_test::reference_all_reduce(mats, mat2_mul{}));
      // "keep the left operand": associative, not commutative; gives rank 0's buffer
      std::vector<int> first = ints[me];
      dpar::all_reduce(policy, std::span<int>(first), [](int a, int) { return a; });
      CHECK(first == ints[0]);
    });
  }
}

namespace {
// Rank r's contribution to element i: magnitudes from 1e-8 to 1e16, both
// signs, so that another grouping of the ranks' values rounds differently;
// the first three elements are the 1, 1e16, -1e16 kind outright.
template <class T>
std::vector<T> cancelling(std::size_t n, int r) {
  std::mt19937_64 rng(1000 + static_cast<std::uint64_t>(r));
  std::uniform_real_distribution<double> mantissa(1, 2);
  std::uniform_int_distribution<int> exponent(-8, 16), sign(0, 1);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>((sign(rng) ? -1 : 1) * mantissa(rng) * std::pow(10.0, exponent(rng)));
  const T big = static_cast<T>(std::is_same_v<T, float> ? 1e8 : 1e16);
  // by rank % 3; left to right element 0 gives (1 + big) - big = 0, grouped the other way 1
  const T pattern[3][3] = {{1, big, -big}, {-big, big, 1}, {big, -big, 1}};
  for (std::size_t i = 0; i < std::min<std::size_t>(n, 3); ++i) v[i] = pattern[i][r % 3];
  return v;
}

template <class T>
using bits_of = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <class T, class Op>
void check_rank_order(std::size_t n, Op op) {
  const int ranks = world_size();
  std::vector<std::vector<T>> all;
  for (int r = 0; r < ranks; ++r) all.push_back(cancelling<T>(n, r));
  std::vector<T> fold = all[0];  // the sequential left fold, rank 0 first
  for (int r = 1; r < ranks; ++r)
    for (std::size_t i = 0; i < n; ++i) fold[i] = op(fold[i], all[static_cast<std::size_t>(r)][i]);
  if (dpar::op_kind_v<Op, T> == dpar::op_kind::sum && ranks >= 3) {  // the data tells groupings apart
    T other = op(all[0][0], op(all[1][0], all[2][0]));
    REQUIRE(std::bit_cast<bits_of<T>>(other) !=
            std::bit_cast<bits_of<T>>(op(op(all[0][0], all[1][0]), all[2][0])));
  }
  auto mine = all[static_cast<std::size_t>(world_rank())];
  dpar::all_reduce(dpar::mpi(MPI_COMM_WORLD), mine, op);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < n; ++i)
    differ += std::bit_cast<bits_of<T>>(mine[i]) != std::bit_cast<bits_of<T>>(fold[i]);
  CHECK(differ == 0);
}
}  // namespace

// backend.hpp's promise for std::plus on reals: rank order, not MPI_SUM's
// grouping. Both paths: gathered whole (short) and reduce-scatter (long).
TEST_CASE("mpi all_reduce of floats and doubles adds the ranks in rank order, bitwise", "[mpi][collective][rank_order]") {
  for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{97}, std::size_t{5003}, std::size_t{65537}}) {
    INFO("n=" << n);
    check_rank_order<float>(n, std::plus<>{});
    check_rank_order<double>(n, std::plus<>{});
    check_rank_order<double>(n, std::plus<double>{});
    check_rank_order<double>(n, std::multiplies<>{});
  }
}

TEST_CASE("mpi all_reduce reports lengths that differ on every rank", "[mpi][errors]") {
  const int me = world_rank();
  std::vector<float> mine(me == world_size() - 1 ? 3 : 8, 1.0f);
  CHECK_THROWS_WITH(dpar::all_reduce(dpar::mpi(MPI_COMM_WORLD), mine),
                    Catch::Contains("rank " + std::to_string(world_size() - 1) + " has 3 elements but rank 0 has 8"));
  CHECK_THROWS_AS(dpar::all_reduce_mean(dpar::mpi(MPI_COMM_WORLD), mine), dpar::collective_error);
}

TEST_CASE("mpi: a user op that throws on one rank is an error on every rank", "[mpi][errors]") {
  std::vector<long long> mine(1000, world_rank() + 1);
  auto throws_on_big = [](long long a, long long b) -> long long {
    if (a + b > 2) throw std::overflow_error("too big");
    return a + b;
  };
  // MPI runs the op wherever it combines; every rank must still throw.
  CHECK_THROWS_AS(dpar::all_reduce(dpar::mpi(MPI_COMM_WORLD), mine, throws_on_big), std::exception);
  CHECK_THROWS_AS(dpar::reduce(dpar::mpi(MPI_COMM_WORLD), mine, 0LL, throws_on_big), std::exception);
  // An op that throws on rank 0 only, inside MPI (one buffer per rank: no
  // local phase). Whether rank 0 runs the op depends on MPI's algorithm for
  // the rank count: on 2 ranks it does (the root of an ordered reduction),
  // on 3 Open MPI combines elsewhere. Either way the ranks agree: rank 0 gets
  // its own exception and every other rank an error that names rank 0, or no
  // rank throws and the sum is right.
  auto throws_on_rank0 = [](long long a, long long b) -> long long {
    if (world_rank() == 0) throw std::overflow_error("op failed on rank 0");
    return a + b;
  };
  std::vector<long long> fresh(1000, world_rank() + 1);
  bool threw = true;
  try {
    dpar::all_reduce(dpar::mpi(MPI_COMM_WORLD), fresh, throws_on_rank0);
    threw = false;
  } catch (const std::overflow_error& e) {
    CHECK(world_rank() == 0);
    CHECK(std::string(e.what()) == "op failed on rank 0");
  } catch (const dpar::mpi_error& e) {
    INFO(e.what());
    CHECK(world_rank() != 0);
    CHECK_THAT(e.what(), Catch::Contains("the reduction op threw on rank 0"));
  }
  CHECK(same_on_every_rank(threw));
  if (world_size() == 2) CHECK(threw);
  const long long ranks = world_size();
  if (!threw) CHECK(fresh == std::vector<long long>(1000, ranks * (ranks + 1) / 2));
  // and the communicator still works afterwards
  std::vector<long long> ok(10, 1);
  dpar::all_reduce(dpar::mpi(MPI_COMM_WORLD), ok);
  CHECK(ok == std::vector<long long>(10, world_size()));
}

namespace {
// A number whose product throws on rank fragile_rank (for the sum of products).
int fragile_rank = -1;
struct fragile {
  long long v;
  operator long long() const { return v; }
  friend fragile operator*(fragile a, fragile b) {
    if (world_rank() == fragile_rank) throw std::domain_error("poisoned");
    return {a.v * b.v};
  }
};

// Each form, throwing on rank `bad` only: that rank gets its own exception,
// every other one a collective_error naming it.
void check_local_throw_fails_everywhere(int bad) {
  const int me = world_rank();
  std::vector<long long> mine(1000, 1), out(1000);
  auto poisoned = [&](long long x) {
    if (me == bad) throw std::domain_error("poisoned");
    return x;
  };
  auto poisoned_plus = [&](long long a, long long b) { return poisoned(a) + b; };
  auto fails_everywhere = [&](const char* what, auto&& call) {
    INFO(what << ", throwing on rank " << bad << ", this is rank " << me);
    try {
      call();
      FAIL("no exception");
    } catch (const std::domain_error&) {
      CHECK(me == bad);
    } catch (const dpar::collective_error& e) {
      CHECK(me != bad);
      CHECK_THAT(e.what(), Catch::Contains("threw on rank " + std::to_string(bad)));
    }
  };
  for_each_mpi_policy([&](auto policy, const std::string& name) {
    INFO(name);
    // built-in MPI op (+ on long long) and ordered user ops
    fails_everywhere("transform_reduce", [&] { dpar::transform_reduce(policy, mine, 0LL, std::plus<>{}, poisoned); });
    fails_everywhere("transform_reduce, two ranges", [&] {
      dpar::transform_reduce(policy, mine.begin(), mine.end(), mine.begin(), 0LL, std::plus<>{},
                             [&](long long a, long long b) { return poisoned(a) * b; });
    });
    fails_everywhere("transform_reduce, sum of products", [&] {
      fragile_rank = bad;
      std::vector<fragile> f(100, fragile{2});
      dpar::transform_reduce(policy, f.begin(), f.end(), f.begin(), 0LL);
    });
    fails_everywhere("reduce", [&] { dpar::reduce(policy, mine, 0LL, poisoned_plus); });
    fails_everywhere("inclusive_scan", [&] { dpar::inclusive_scan(policy, mine, out.begin(), poisoned_plus); });
    fails_everywhere("exclusive_scan", [&] { dpar::exclusive_scan(policy, mine, out.begin(), 0LL, poisoned_plus); });
    // one segment over every rank (equal keys)
    fails_everywhere("reduce_by_key", [&] {
      dpar::reduce_by_key(policy, mine.begin(), mine.end(), mine.begin(), out.begin(), out.begin(),
                          std::equal_to<>{}, poisoned_plus);
    });
  });
}
}  // namespace

TEST_CASE("mpi: a user function that throws in one rank's local phase is an error on every rank", "[mpi][errors]") {
  // Before the fix the other ranks waited in MPI_Allreduce forever: fail fast instead.
  dpar_test::within_seconds(60, "a throw in one rank's local phase", [] {
    check_local_throw_fails_everywhere(0);
    check_local_throw_fails_everywhere(world_size() - 1);
    // every rank is back in step: the communicator still works
    std::vector<long long> ok(10, 1);
    dpar::all_reduce(dpar::mpi(MPI_COMM_WORLD), ok);
    CHECK(ok == std::vector<long long>(10, world_size()));
  });
}

// Counts this program's collective calls: its definitions of the MPI
// functions stand in for the library's (the MPI profiling interface) and pass
// on to the PMPI ones.
namespace {
std::atomic<int> collective_calls{0};
std::atomic<int> largest_message{0};  // bytes this rank sent in one call

void sent(int count, MPI_Datatype type) {
  int size = 0;
  MPI_Type_size(type, &size);
  int seen = largest_message.load();
  while (count * size > seen && !largest_message.compare_exchange_weak(seen, count * size)) {
  }
}

template <class Call>
int collectives_in(Call&& call) {
  const int before = collective_calls.load();
  call();
  return collective_calls.load() - before;
}

// The most bytes this rank sent in one collective call during call().
template <class Call>
int largest_message_in(Call&& call) {
  largest_message = 0;
  call();
  return largest_message.load();
}
}  // namespace

extern "C" {
int MPI_Allreduce(const void* send, void* receive, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  ++collective_calls;
  sent(count, type);
  return PMPI_Allreduce(send, receive, count, type, op, comm);
}
int MPI_Allgather(const void* send, int send_count, MPI_Datatype send_type, void* receive, int receive_count,
                  MPI_Datatype receive_type, MPI_Comm comm) {
  ++collective_calls;
  sent(send_count, send_type);
  return PMPI_Allgather(send, send_count, send_type, receive, receive_count, receive_type, comm);
}
int MPI_Exscan(const void* send, void* receive, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  ++collective_calls;
  sent(count, type);
  return PMPI_Exscan(send, receive, count, type, op, comm);
}
int MPI_Scan(const void* send, void* receive, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  ++collective_calls;
  return PMPI_Scan(send, receive, count, type, op, comm);
}
int MPI_Reduce(const void* send, void* receive, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm) {
  ++collective_calls;
  return PMPI_Reduce(send, receive, count, type, op, root, comm);
}
int MPI_Bcast(void* data, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  ++collective_calls;
  return PMPI_Bcast(data, count, type, root, comm);
}
int MPI_Barrier(MPI_Comm comm) {
  ++collective_calls;
  return PMPI_Barrier(comm);
}
}

// Latency: small reductions and scans pay per collective call, so each makes
// one, with the failure agreement inside it. A scan whose op may throw makes
// a second call after its last phase (the only way other ranks learn of it).
TEST_CASE("mpi reduce, transform_reduce and scans make one collective call each", "[mpi][latency]") {
  const int me = world_rank();
  std::vector<long long> mine(me == 1 ? 0 : 5 + static_cast<std::size_t>(me), me + 1), out(mine.size());
  std::vector<mat2> mats = random_mats(mine.size(), 7 + static_cast<std::uint64_t>(me)), mat_out(mats.size());
  auto plus_noexcept = [](long long a, long long b) noexcept { return a + b; };
  auto plus_may_throw = [](long long a, long long b) { return a + b; };
  for_each_mpi_policy([&](auto policy, const std::string& name) {
    INFO(name);
    CHECK(collectives_in([&] { dpar::reduce(policy, mine, 0LL); }) == 1);
    CHECK(collectives_in([&] { dpar::reduce(policy, mine, 0LL, plus_may_throw); }) == 1);
    CHECK(collectives_in([&] { dpar::reduce(policy, mats.begin(), mats.end(), mat2{}, mat2_mul{}); }) == 1);
    CHECK(collectives_in([&] { dpar::transform_reduce(policy, mine, 0LL, std::plus<>{}, [](long long x) { return 2 * x; }); }) == 1);
    CHECK(collectives_in([&] { dpar::transform_reduce(policy, mine.begin(), mine.end(), mine.begin(), 0LL); }) == 1);
    CHECK(collectives_in([&] { dpar::inclusive_scan(policy, mine, out.begin()); }) == 1);
    CHECK(collectives_in([&] { dpar::inclusive_scan(policy, mine, out.begin(), plus_noexcept); }) == 1);
    CHECK(collectives_in([&] { dpar::exclusive_scan(policy, mine, out.begin(), 0LL); }) == 1);
    CHECK(collectives_in([&] { dpar::exclusive_scan(policy, mine, out.begin(), 0LL, plus_noexcept); }) == 1);
    CHECK(collectives_in([&] { dpar::inclusive_scan(policy, mine, out.begin(), plus_may_throw); }) == 2);
    CHECK(collectives_in([&] { dpar::inclusive_scan(policy, mats, mat_out.begin(), mat2_mul{}); }) == 2);
    // min_element: the rank holding the least, and the agreement, in one call
    CHECK(collectives_in([&] { dpar::min_element(policy, mine); }) == 1);
    // reduce_by_key: the lower rank's last key, the higher ranks' values, an agreement if op may throw
    CHECK(collectives_in([&] {
            dpar::reduce_by_key(policy, mine.begin(), mine.end(), mine.begin(), out.begin(), out.begin(),
                                std::equal_to<>{}, plus_noexcept);
          }) == 2);
    CHECK(collectives_in([&] {
            dpar::reduce_by_key(policy, mine.begin(), mine.end(), mats.begin(), out.begin(), mat_out.begin(),
                                std::equal_to<>{}, mat2_mul{});
          }) == 3);
  });
}

// What crosses the ranks in those calls: a double and one byte that says
// whether there is a value, or that some rank failed and which (OpenMPI's
// shared-memory path moves 12 bytes or more 12-22% slower than 8 or 9).
TEST_CASE("mpi reduce and scans send a double and one status byte, also where the op may throw", "[mpi][latency]") {
  const int me = world_rank();
  std::vector<double> reals(me == 1 ? 0 : 3, 0.5), out(reals.size());
  auto plus_may_throw = [](double a, double b) { return a + b; };
  auto twice_may_throw = [](double x) { return 2 * x; };
  for_each_mpi_policy([&](auto policy, const std::string& name) {
    INFO(name);
    CHECK(largest_message_in([&] { dpar::reduce(policy, reals, 0.0); }) <= 9);
    CHECK(largest_message_in([&] { dpar::reduce(policy, reals, 0.0, plus_may_throw); }) == 9);
    CHECK(largest_message_in([&] { dpar::transform_reduce(policy, reals, 0.0, std::plus<>{}, twice_may_throw); }) == 9);
    CHECK(largest_message_in([&] { dpar::inclusive_scan(policy, reals, out.begin(), plus_may_throw); }) <= 9);
    CHECK(largest_message_in([&] { dpar::exclusive_scan(policy, reals, out.begin(), 0.0, plus_may_throw); }) <= 9);
    // and the results are the sums
    CHECK(dpar::reduce(policy, reals, 0.0, plus_may_throw) == 0.5 * 3 * (world_size() - (world_size() > 1)));
  });
}

// With one element per rank the op first runs across ranks: inside MPI for a
// reduce, in every rank's fold of the gathered values for a scan. It throws
// there; every rank must raise.
TEST_CASE("mpi: an op that throws across ranks raises on every rank", "[mpi][errors]") {
  const int me = world_rank();
  std::vector<long long> one{me + 1}, out(1);
  auto throws_on_big = [](long long a, long long b) -> long long {
    if (a + b > 2) throw std::overflow_error("too big");
    return a + b;
  };
  for_each_mpi_policy([&](auto policy, const std::string& name) {
    INFO(name);
    CHECK_THROWS_AS(dpar::reduce(policy, one, 0LL, throws_on_big), std::exception);
    CHECK_THROWS_AS(dpar::inclusive_scan(policy, one, out.begin(), throws_on_big), std::overflow_error);
    CHECK_THROWS_AS(dpar::exclusive_scan(policy, one, out.begin(), 0LL, throws_on_big), std::overflow_error);
    // One segment over every rank: its values meet in every rank's fold of
    // the gathered ones (3+ ranks), or in rank 0's last phase only (2 ranks).
    std::vector<long long> same_key{0}, key_out(1);
    try {
      dpar::reduce_by_key(policy, same_key.begin(), same_key.end(), one.begin(), key_out.begin(), out.begin(),
                          std::equal_to<>{}, throws_on_big);
      FAIL("no exception on rank " << me);
    } catch (const std::overflow_error&) {
      CHECK((me == 0 || world_size() > 2));
    } catch (const dpar::collective_error& e) {
      CHECK(me != 0);
      CHECK_THAT(e.what(), Catch::Contains("threw on rank 0"));
    }
    std::vector<long long> ok(3, 1);
    CHECK(dpar::reduce(policy, ok, 0LL) == 3LL * world_size());
  });
}

TEST_CASE("mpi errors carry MPI's message; a null communicator is rejected", "[mpi][errors]") {
  CHECK_THROWS_AS(dpar::mpi(MPI_COMM_NULL), std::invalid_argument);
  try {
    dpar::detail::mpi::check(MPI_ERR_COUNT, "MPI_Allreduce");
    FAIL("no exception");
  } catch (const dpar::mpi_error& e) {
    CHECK(e.code() == MPI_ERR_COUNT);
    CHECK_THAT(e.what(), Catch::Contains("MPI_Allreduce failed: ") &&
                             Catch::Contains(dpar::detail::mpi::error_string(MPI_ERR_COUNT)));
  }
  // A real failure from MPI itself: a negative count is caught by MPI's argument checks.
  dpar::detail::mpi::errors_return guard(MPI_COMM_WORLD);
  int x = 0;
  CHECK_THROWS_AS(dpar::detail::mpi::check(MPI_Bcast(&x, -1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast"), dpar::mpi_error);
}
