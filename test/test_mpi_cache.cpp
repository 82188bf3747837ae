// dpar::mpi's cached MPI handles (detail/mpi/handle_cache.hpp): datatypes
// and ordered MPI_Ops made once per value size and op type, freed at
// MPI_Finalize. The op object of the current call must reach the cached op,
// in every thread; ops that throw must still raise on every rank.
#include <dpar/mpi.hpp>

#include "mpi_common.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using dpar_test::mat2;
using dpar_test::mat2_mul;

using namespace dpar_test_mpi;

// Counts the handles this program makes and frees: its definitions stand in
// for the library's (the MPI profiling interface) and pass on to PMPI.
namespace {
std::atomic<int> types_made{0}, types_freed{0}, ops_made{0}, ops_freed{0}, comms_made{0}, comms_freed{0};

int handles_made() { return types_made.load() + ops_made.load(); }
int handles_freed() { return types_freed.load() + ops_freed.load(); }
}  // namespace

extern "C" {
int MPI_Type_contiguous(int count, MPI_Datatype old_type, MPI_Datatype* new_type) {
  ++types_made;
  return PMPI_Type_contiguous(count, old_type, new_type);
}
int MPI_Type_free(MPI_Datatype* type) {
  ++types_freed;
  return PMPI_Type_free(type);
}
int MPI_Op_create(MPI_User_function* function, int commute, MPI_Op* op) {
  ++ops_made;
  return PMPI_Op_create(function, commute, op);
}
int MPI_Op_free(MPI_Op* op) {
  ++ops_freed;
  return PMPI_Op_free(op);
}
// Communicators: the tests' own and dpar's duplicates of them.
int MPI_Comm_dup(MPI_Comm comm, MPI_Comm* new_comm) {
  const int code = PMPI_Comm_dup(comm, new_comm);
  if (code == MPI_SUCCESS) ++comms_made;
  return code;
}
int MPI_Comm_split(MPI_Comm comm, int color, int key, MPI_Comm* new_comm) {
  const int code = PMPI_Comm_split(comm, color, key, new_comm);
  if (code == MPI_SUCCESS && *new_comm != MPI_COMM_NULL) ++comms_made;
  return code;
}
int MPI_Comm_free(MPI_Comm* comm) {
  const int code = PMPI_Comm_free(comm);
  if (code == MPI_SUCCESS) ++comms_freed;
  return code;
}
// MPI_Finalize must free every cached handle and dpar's duplicate of
// MPI_COMM_WORLD (through MPI_COMM_SELF's attributes), and the tests free
// their communicators; a leak fails the program.
int MPI_Finalize() {
  const int code = PMPI_Finalize();
  if (types_made != types_freed || ops_made != ops_freed || comms_made != comms_freed) {
    std::fprintf(stderr,
                 "test_mpi: %d datatypes made, %d freed; %d ops made, %d freed; %d communicators made, %d freed "
                 "by MPI_Finalize\n",
                 types_made.load(), types_freed.load(), ops_made.load(), ops_freed.load(), comms_made.load(),
                 comms_freed.load());
    std::_Exit(3);
  }
  return code;
}
}

namespace {
// a + b + offset: associative, and its result shows which object ran: any
// grouping of m operands gives their sum + (m - 1) * offset.
struct offset_plus {
  long long offset;
  long long operator()(long long a, long long b) const { return a + b + offset; }
};

// Trivially copyable, 24 bytes: another size than the other values here.
struct triple {
  long long x, y, z;
  friend bool operator==(const triple&, const triple&) = default;
};
struct triple_add {
  triple operator()(const triple& a, const triple& b) const { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
};

// The global data (the same on every rank) and this rank's uneven part of it.
template <class T>
struct spread {
  std::vector<T> global, mine;
  explicit spread(std::vector<T> all) : global(std::move(all)), mine(mpi_adaptor::place(global)) {}
  std::size_t below() const {  // global elements on lower ranks
    return uneven_cut(global.size(), world_size())[static_cast<std::size_t>(world_rank())];
  }
};

// Reduces, transform_reduces and scans with built-in and user ops over
// several value types and sizes, each checked against the whole array.
void mixed_round(int round) {
  const auto seed = static_cast<std::uint64_t>(round);
  spread<double> reals(dpar_test::random_vector<double>(37, 10 + seed));
  spread<long long> longs(dpar_test::random_vector<long long>(41, 20 + seed));
  spread<int> ints(dpar_test::random_vector<int>(29, 30 + seed));
  spread<short> shorts(dpar_test::random_vector<short>(23, 40 + seed));
  spread<mat2> mats(random_mats(19, 50 + seed));
  std::vector<triple> triples_all(17);
  for (std::size_t i = 0; i < triples_all.size(); ++i)
    triples_all[i] = {static_cast<long long>(i), round * 2LL, -static_cast<long long>(i) * round};
  spread<triple> triples(triples_all);

  for_each_mpi_policy([&](auto policy, const std::string& name) {
    INFO(name << " round " << round);
    const double real_sum = std::accumulate(reals.global.begin(), reals.global.end(), 0.25);
    CHECK(dpar_test::close(dpar::reduce(policy, reals.mine, 0.25), real_sum, 37.0, 1e-12));
    CHECK(dpar::reduce(policy, longs.mine, 1000LL, dpar::minimum<>{}) ==
          std::min(1000LL, *std::min_element(longs.global.begin(), longs.global.end())));
    CHECK(dpar::reduce(policy, ints.mine, round, [](int a, int b) { return a + b; }) ==
          std::accumulate(ints.global.begin(), ints.global.end(), round));
    CHECK(dpar::reduce(policy, shorts.mine, short{0}, std::bit_or<>{}) ==
          std::accumulate(shorts.global.begin(), shorts.global.end(), short{0}, std::bit_or<>{}));
    CHECK(dpar::reduce(policy, mats.mine, dpar_test::mat2_identity, mat2_mul{}) ==
          std::accumulate(mats.global.begin(), mats.global.end(), dpar_test::mat2_identity, mat2_mul{}));
    CHECK(dpar::reduce(policy, triples.mine, triple{1, 1, 1}, triple_add{}) ==
          std::accumulate(triples.global.begin(), triples.global.end(), triple{1, 1, 1}, triple_add{}));
    CHECK(dpar::transform_reduce(policy, longs.mine, 0LL, std::bit_xor<>{}, [](long long x) { return x * 3; }) ==
          std::transform_reduce(longs.global.begin(), longs.global.end(), 0LL, std::bit_xor<>{},
                                [](long long x) { return x * 3; }));
    CHECK(dpar::transform_reduce(policy, ints.mine, 1LL, std::multiplies<>{}, [](int x) { return x % 2 ? 1LL : 2LL; }) ==
          std::transform_reduce(ints.global.begin(), ints.global.end(), 1LL, std::multiplies<>{},
                                [](int x) { return x % 2 ? 1LL : 2LL; }));

    std::vector<mat2> mat_out(mats.mine.size()), mat_ref(mats.global.size());
    dpar::inclusive_scan(policy, mats.mine, mat_out.begin(), mat2_mul{});
    std::inclusive_scan(mats.global.begin(), mats.global.end(), mat_ref.begin(), mat2_mul{});
    CHECK(std::equal(mat_out.begin(), mat_out.end(), mat_ref.begin() + static_cast<std::ptrdiff_t>(mats.below())));
    std::vector<long long> long_out(longs.mine.size()), long_ref(longs.global.size());
    dpar::exclusive_scan(policy, longs.mine, long_out.begin(), 5LL, dpar::maximum<>{});
    std::exclusive_scan(longs.global.begin(), longs.global.end(), long_ref.begin(), 5LL, dpar::maximum<>{});
    CHECK(std::equal(long_out.begin(), long_out.end(), long_ref.begin() + static_cast<std::ptrdiff_t>(longs.below())));

    // all_reduce of one buffer per rank through a user op, and a built-in one
    std::vector<triple> buffer(5, triple{world_rank(), 1, round});
    dpar::all_reduce(policy, buffer, triple_add{});
    const long long ranks = world_size();
    CHECK(buffer == std::vector<triple>(5, triple{ranks * (ranks - 1) / 2, ranks, ranks * round}));
  });
}
}  // namespace

TEST_CASE("mpi: many calls in a row over value types and ops each get the right cached handles", "[mpi][cache]") {
  dpar_test::within_seconds(120, "mixed calls", [] {
    for (int round = 0; round < 6; ++round) mixed_round(round);
  });
}

TEST_CASE("mpi: after the first call of a kind, calls make and free no datatype or op", "[mpi][cache]") {
  std::vector<long long> mine(static_cast<std::size_t>(world_rank()) + 3, 2), out(mine.size());
  std::vector<mat2> mats = random_mats(4, 9 + static_cast<std::uint64_t>(world_rank())), mat_out(mats.size());
  auto calls = [&] {
    for_each_mpi_policy([&](auto policy, const std::string&) {
      dpar::reduce(policy, mine, 0LL, offset_plus{1});
      dpar::reduce(policy, mats, dpar_test::mat2_identity, mat2_mul{});
      dpar::transform_reduce(policy, mine, 0.0, std::plus<>{}, [](long long x) { return 0.5 * static_cast<double>(x); });
      dpar::inclusive_scan(policy, mats, mat_out.begin(), mat2_mul{});
      dpar::exclusive_scan(policy, mine, out.begin(), 0LL, offset_plus{2});
      std::vector<mat2> buffer(3, mats.front());
      dpar::all_reduce(policy, buffer, mat2_mul{});
    });
  };
  calls();  // the first use of each kind makes its handles
  const int made = handles_made(), freed = handles_freed();
  for (int i = 0; i < 20; ++i) calls();
  CHECK(handles_made() == made);
  CHECK(handles_freed() == freed);
}

// The cached MPI_Op is one per op type; the object it runs must be this
// call's, whose state differs from call to call.
TEST_CASE("mpi: a stateful user op's current object runs in every call", "[mpi][cache]") {
  spread<long long> data(dpar_test::random_vector<long long>(53, 77));
  const long long n = static_cast<long long>(data.global.size());
  const long long total = std::accumulate(data.global.begin(), data.global.end(), 0LL);
  std::vector<long long> out(data.mine.size());
  for_each_mpi_policy([&](auto policy, const std::string& name) {
    for (long long k = -3; k <= 3; ++k) {
      INFO(name << " offset " << k);
      const offset_plus op{k};
      // n elements and init: n + 1 operands, n ops
      CHECK(dpar::reduce(policy, data.mine, 7LL, op) == 7 + total + n * k);
      CHECK(dpar::transform_reduce(policy, data.mine, 0LL, op, [](long long x) { return 2 * x; }) == 2 * total + n * k);
      dpar::inclusive_scan(policy, data.mine, out.begin(), op);
      const auto below = static_cast<std::ptrdiff_t>(data.below());
      long long prefix = std::accumulate(data.global.begin(), data.global.begin() + below, 0LL);
      bool right = true;
      for (std::size_t i = 0, g = data.below(); i < out.size(); ++i, ++g) {
        prefix += data.global[g];
        right = right && out[i] == prefix + static_cast<long long>(g) * k;
      }
      CHECK(right);
      dpar::exclusive_scan(policy, data.mine, out.begin(), 100LL, op);
      prefix = 100 + std::accumulate(data.global.begin(), data.global.begin() + below, 0LL);
      right = true;
      for (std::size_t i = 0, g = data.below(); i < out.size(); ++i, ++g) {
        right = right && out[i] == prefix + static_cast<long long>(g) * k;
        prefix += data.global[g];
      }
      CHECK(right);
      std::vector<long long> buffer(4, world_rank() + 1LL);
      dpar::all_reduce(policy, buffer, op);
      const long long ranks = world_size();
      CHECK(buffer == std::vector<long long>(4, ranks * (ranks + 1) / 2 + (ranks - 1) * k));
    }
  });
}

// An op that throws on one rank (in its local phase), then one that throws
// wherever it runs (inside MPI too): every rank raises; then the same op
// types (the same cached MPI_Ops) work again.
TEST_CASE("mpi: an op that throws raises on every rank, and the cached op works after it", "[mpi][cache][errors]") {
  dpar_test::within_seconds(60, "throwing ops", [] {
    const int me = world_rank(), ranks = world_size();
    for (int round = 0; round < 4; ++round) {
      const int bad = round % ranks;
      INFO("round " << round << ", throwing on rank " << bad << ", this is rank " << me);
      std::vector<long long> mine(me == bad ? 3 : 1, me + 1LL), out(mine.size()), one{me + 1LL}, one_out(1);
      bool on_bad = true, everywhere = false;
      auto op = [&](long long a, long long b) -> long long {
        if ((on_bad && world_rank() == bad) || everywhere) throw std::overflow_error("armed");
        return a + b;
      };
      auto policy = dpar::mpi(MPI_COMM_WORLD);
      std::vector<long long> buffer(3, 1);
      CHECK_THROWS(dpar::reduce(policy, mine, 0LL, op));
      CHECK_THROWS(dpar::transform_reduce(policy, mine, 0LL, op, [](long long x) { return x; }));
      // all_reduce has no local phase: the op runs inside MPI only, where
      // rank `bad` may not combine anything (on 3 ranks); the ranks agree
      // either way, and the sum is right where none threw.
      bool threw = true;
      try {
        dpar::all_reduce(policy, buffer, op);
        threw = false;
      } catch (const std::exception&) {
      }
      CHECK(same_on_every_rank(threw));
      if (ranks == 2) CHECK(threw);  // both ranks combine there
      if (!threw) CHECK(buffer == std::vector<long long>(3, ranks));
      CHECK_THROWS(dpar::inclusive_scan(policy, mine, out.begin(), op));
      CHECK_THROWS(dpar::exclusive_scan(policy, mine, out.begin(), 0LL, op));
      on_bad = false;
      everywhere = true;  // one element per rank: the op first runs across ranks
      CHECK_THROWS(dpar::reduce(policy, one, 0LL, op));
      CHECK_THROWS(dpar::inclusive_scan(policy, one, one_out.begin(), op));
      everywhere = false;
      long long total = 0, through_me = 0;
      for (int r = 0; r < ranks; ++r) {
        total += (r == bad ? 3 : 1) * (r + 1LL);
        if (r == me) through_me = total;
      }
      CHECK(dpar::reduce(policy, mine, 0LL, op) == total);
      buffer.assign(3, 1);  // a failed all_reduce leaves it unspecified
      dpar::all_reduce(policy, buffer, op);
      CHECK(buffer == std::vector<long long>(3, ranks));
      dpar::inclusive_scan(policy, mine, out.begin(), op);
      CHECK(out.back() == through_me);
    }
  });
}

// Two threads at once, each on its own communicator (concurrent collectives
// on one communicator are not allowed), with the same op type and
// different state: each thread's calls must run its own object.
TEST_CASE("mpi: two threads calling at once each get their own op object", "[mpi][cache][threads]") {
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  if (level < MPI_THREAD_MULTIPLE) {
    WARN("MPI gives no MPI_THREAD_MULTIPLE here: skipped");
    return;
  }
  dpar_test::within_seconds(120, "two threads", [] {
    MPI_Comm comms[2];
    for (auto& c : comms) MPI_Comm_dup(MPI_COMM_WORLD, &c);
    const long long ranks = world_size(), me = world_rank();
    std::atomic<int> wrong[2] = {0, 0};
    auto work = [&](int t) {
      auto policy = dpar::mpi(comms[t]);
      std::vector<long long> mine(static_cast<std::size_t>(me) + 1, 1), out(mine.size());
      const long long n = ranks * (ranks + 1) / 2;  // elements in all
      for (int i = 0; i < 300; ++i) {
        const offset_plus op{(t + 1) * 1000LL + i};
        if (dpar::reduce(policy, mine, 0LL, op) != n + n * op.offset) ++wrong[t];
        dpar::inclusive_scan(policy, mine, out.begin(), op);
        const long long before = me * (me + 1) / 2;  // elements on lower ranks
        for (std::size_t j = 0; j < out.size(); ++j) {
          const long long g = before + static_cast<long long>(j);
          if (out[j] != g + 1 + g * op.offset) ++wrong[t];
        }
        std::vector<mat2> mats(2, mat2{1, 1, 0, 1});
        dpar::all_reduce(policy, mats, mat2_mul{});
        if (mats[0] != mat2{1, static_cast<std::uint64_t>(ranks), 0, 1}) ++wrong[t];
      }
    };
    std::thread other(work, 1);
    work(0);
    other.join();
    for (auto& c : comms) MPI_Comm_free(&c);
    CHECK(wrong[0] == 0);
    CHECK(wrong[1] == 0);
  });
}

// ---- No failure flag where nothing can fail; dpar's own communicator ----

namespace {
// An affine map x -> m x + c on unsigned 64-bit integers (wrapping):
// composition is associative and not commutative, so it shows the order.
struct affine {
  std::uint64_t m, c;
  friend bool operator==(const affine&, const affine&) = default;
};
// then(f, g): f first, then g.
struct then {
  affine operator()(const affine& f, const affine& g) const noexcept { return {g.m * f.m, g.m * f.c + g.c}; }
};
affine to_affine(long long x) noexcept {
  return {static_cast<std::uint64_t>(x) * 2 + 1, static_cast<std::uint64_t>(x) ^ 0x9e3779b97f4a7c15ULL};
}
auto keep_right = [](double, double b) noexcept { return b; };
auto noexcept_plus = [](double a, double b) noexcept { return a + b; };
auto may_throw_plus = [](double a, double b) { return a + b; };

using seq_policy = dpar::mpi_policy<dpar::sequenced_policy>;
using par_policy = dpar::mpi_policy<dpar::parallel_policy>;
using vec_it = std::vector<double>::iterator;
using ll_it = std::vector<long long>::iterator;
namespace dm = dpar::detail::mpi;

// Which calls send the value alone: decided at compile time.
static_assert(dm::cannot_fail_v<seq_policy, double, std::plus<>, double&, vec_it>);
static_assert(dm::cannot_fail_v<seq_policy, long long, std::plus<>, long long&, ll_it>);
static_assert(dm::cannot_fail_v<seq_policy, double, decltype(noexcept_plus), double&, vec_it>);
static_assert(dm::cannot_fail_v<seq_policy, double, dpar::minimum<>, double&, vec_it>);
static_assert(dm::cannot_fail_v<seq_policy, affine, then, affine, ll_it>);
static_assert(dm::cannot_fail_v<seq_policy, double, std::plus<>, double, const double*>);
// ... and which keep the failure flag: an op that may throw, an inner policy
// that may, an input whose iterator is the user's code.
static_assert(!dm::cannot_fail_v<seq_policy, double, decltype(may_throw_plus), double&, vec_it>);
static_assert(!dm::cannot_fail_v<par_policy, double, std::plus<>, double&, vec_it>);
static_assert(!dm::cannot_fail_v<seq_policy, dpar_test::mat2, dpar_test::mat2_mul, dpar_test::mat2&,
                                 std::vector<dpar_test::mat2>::iterator>);
static_assert(!dm::cannot_fail_v<seq_policy, double, std::plus<>, double, std::deque<double>::iterator>);

// MPI_COMM_WORLD's first `ranks` ranks (MPI_COMM_NULL on the others).
MPI_Comm first_ranks(int ranks) {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < ranks ? 0 : MPI_UNDEFINED, world_rank(), &comm);
  return comm;
}

// This rank's part of `global` under uneven_cut over `ranks` ranks (rank 1
// empty on 3 or more).
template <class T>
std::vector<T> part_of(const std::vector<T>& global, int ranks, int me, std::size_t& below) {
  const auto cut = uneven_cut(global.size(), ranks);
  below = cut[static_cast<std::size_t>(me)];
  return std::vector<T>(global.begin() + static_cast<std::ptrdiff_t>(cut[static_cast<std::size_t>(me)]),
                        global.begin() + static_cast<std::ptrdiff_t>(cut[static_cast<std::size_t>(me) + 1]));
}

template <class T>
bool same_as_slice(const std::vector<T>& out, const std::vector<T>& whole, std::size_t below) {
  return std::equal(out.begin(), out.end(), whole.begin() + static_cast<std::ptrdiff_t>(below));
}

template <class Policy>
void check_nothrow_forms(Policy policy, int ranks, int me, std::size_t n, std::uint64_t seed) {
  // Small integers as doubles: sums are exact, so any grouping gives the same bits.
  std::vector<double> reals(n);
  std::vector<long long> longs = dpar_test::random_vector<long long>(n, seed);
  std::vector<short> shorts(n);
  for (std::size_t i = 0; i < n; ++i) {
    reals[i] = static_cast<double>(longs[i] % 1000);
    shorts[i] = static_cast<short>(longs[i] % 100);
  }
  std::size_t below = 0;
  const auto my_reals = part_of(reals, ranks, me, below);
  const auto my_longs = part_of(longs, ranks, me, below);
  const auto my_shorts = part_of(shorts, ranks, me, below);

  CHECK(dpar::reduce(policy, my_reals, 0.5) == std::accumulate(reals.begin(), reals.end(), 0.5));
  CHECK(dpar::reduce(policy, my_reals, 0.5, noexcept_plus) == std::accumulate(reals.begin(), reals.end(), 0.5));
  CHECK(dpar::reduce(policy, my_reals, -1.0, keep_right) == (n ? reals.back() : -1.0));
  CHECK(dpar::reduce(policy, my_reals, 1e9, dpar::minimum<>{}) ==
        std::accumulate(reals.begin(), reals.end(), 1e9, dpar::minimum<>{}));
  CHECK(dpar::reduce(policy, my_longs, 3LL) == std::accumulate(longs.begin(), longs.end(), 3LL));
  CHECK(dpar::reduce(policy, my_longs, 0LL, std::bit_xor<>{}) ==
        std::accumulate(longs.begin(), longs.end(), 0LL, std::bit_xor<>{}));
  CHECK(dpar::reduce(policy, my_shorts, short{0}) ==
        std::accumulate(shorts.begin(), shorts.end(), short{0}, [](short a, short b) { return short(a + b); }));
  const affine id{1, 0};
  CHECK(dpar::transform_reduce(policy, my_longs, id, then{}, to_affine) ==
        std::transform_reduce(longs.begin(), longs.end(), id, then{}, to_affine));
  auto half = [](double x) noexcept { return 0.5 * x; };
  CHECK(dpar::transform_reduce(policy, my_reals, 0.0, noexcept_plus, half) ==
        std::transform_reduce(reals.begin(), reals.end(), 0.0, noexcept_plus, half));
  CHECK(dpar::transform_reduce(policy, my_reals.begin(), my_reals.end(), my_reals.begin(), 0.0) ==
        std::transform_reduce(reals.begin(), reals.end(), reals.begin(), 0.0));

  std::vector<double> out(my_reals.size()), whole(n);
  dpar::inclusive_scan(policy, my_reals, out.begin());
  std::inclusive_scan(reals.begin(), reals.end(), whole.begin());
  CHECK(same_as_slice(out, whole, below));
  dpar::inclusive_scan(policy, my_reals, out.begin(), noexcept_plus, 7.0);
  std::inclusive_scan(reals.begin(), reals.end(), whole.begin(), noexcept_plus, 7.0);
  CHECK(same_as_slice(out, whole, below));
  dpar::inclusive_scan(policy, my_reals, out.begin(), keep_right);
  std::inclusive_scan(reals.begin(), reals.end(), whole.begin(), keep_right);
  CHECK(same_as_slice(out, whole, below));
  dpar::exclusive_scan(policy, my_reals, out.begin(), -2.0, noexcept_plus);
  std::exclusive_scan(reals.begin(), reals.end(), whole.begin(), -2.0, noexcept_plus);
  CHECK(same_as_slice(out, whole, below));
  dpar::exclusive_scan(policy, my_reals, out.begin(), 1e9, dpar::minimum<>{});
  std::exclusive_scan(reals.begin(), reals.end(), whole.begin(), 1e9, dpar::minimum<>{});
  CHECK(same_as_slice(out, whole, below));
  std::vector<long long> long_out(my_longs.size()), long_whole(n);
  dpar::exclusive_scan(policy, my_longs, long_out.begin(), 5LL);
  std::exclusive_scan(longs.begin(), longs.end(), long_whole.begin(), 5LL);
  CHECK(same_as_slice(long_out, long_whole, below));
  dpar::inclusive_scan(policy, my_longs, long_out.begin(), std::bit_xor<>{});
  std::inclusive_scan(longs.begin(), longs.end(), long_whole.begin(), std::bit_xor<>{});
  CHECK(same_as_slice(long_out, long_whole, below));
}
}  // namespace

TEST_CASE("mpi: noexcept and built-in ops give the right values on 1 to 4 ranks; a throwing op raises on all",
          "[mpi][nothrow]") {
  dpar_test::within_seconds(120, "nothrow forms", [] {
    for (int ranks = 1; ranks <= world_size(); ++ranks) {
      MPI_Comm comm = first_ranks(ranks);
      if (comm != MPI_COMM_NULL) {
        int me = 0;
        MPI_Comm_rank(comm, &me);
        for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{1000}}) {
          INFO(ranks << " ranks, " << n << " elements, rank " << me);
          check_nothrow_forms(dpar::mpi(comm), ranks, me, n, 7 + n);
          check_nothrow_forms(dpar::mpi(comm, dpar::par), ranks, me, n, 7 + n);  // the flag path
        }
        // An op that may throw, and does on the last rank: every rank raises,
        // then the communicator works on.
        std::vector<double> mine{me + 1.0, 1.0}, out(2);
        const int bad = ranks - 1;
        auto op = [&](double a, double b) -> double {
          if (me == bad) throw std::domain_error("armed");
          return a + b;
        };
        auto policy = dpar::mpi(comm);
        CHECK_THROWS(dpar::reduce(policy, mine, 0.0, op));
        CHECK_THROWS(dpar::transform_reduce(policy, mine, 0.0, op, [](double x) noexcept { return x; }));
        CHECK_THROWS(dpar::inclusive_scan(policy, mine, out.begin(), op));
        CHECK_THROWS(dpar::exclusive_scan(policy, mine, out.begin(), 0.0, op));
        CHECK(dpar::reduce(policy, mine, 0.0, noexcept_plus) == ranks * (ranks + 1) / 2.0 + ranks);
        MPI_Comm_free(&comm);
      }
      MPI_Barrier(MPI_COMM_WORLD);
    }
  });
}

TEST_CASE("mpi: the caller's error handler is the same after dpar's calls", "[mpi][comm]") {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_ARE_FATAL);
  for (MPI_Comm c : {MPI_COMM_WORLD, comm}) {
    MPI_Errhandler before = MPI_ERRHANDLER_NULL, after = MPI_ERRHANDLER_NULL;
    MPI_Comm_get_errhandler(c, &before);
    auto policy = dpar::mpi(c);
    std::vector<double> mine{1.0, 2.0}, out(2);
    std::vector<int> keys{3, 1, 2};
    std::vector<float> buffer(4, 1.0f);
    dpar::reduce(policy, mine, 0.0);
    dpar::reduce(policy, mine, 0.0, may_throw_plus);
    dpar::inclusive_scan(policy, mine, out.begin());
    dpar::all_reduce(policy, buffer);
    dpar::sort(policy, keys);
    CHECK_THROWS_AS(dpar::reduce(policy, mine, 0.0, [](double, double) -> double { throw std::domain_error("x"); }),
                    std::domain_error);
    MPI_Comm_get_errhandler(c, &after);
    CHECK(before == after);
    MPI_Errhandler_free(&before);
    MPI_Errhandler_free(&after);
  }
  MPI_Comm_free(&comm);
}

TEST_CASE("mpi: dpar makes one duplicate per communicator and frees it with the communicator", "[mpi][comm]") {
  std::vector<long long> mine{world_rank() + 1LL};
  const long long ranks = world_size();
  for (int round = 0; round < 3; ++round) {
    const int made = comms_made.load(), freed = comms_freed.load();
    MPI_Comm comm = first_ranks(world_size());  // a handle MPI may reuse from the last round
    REQUIRE(comms_made == made + 1);
    for (int i = 0; i < 10; ++i) CHECK(dpar::reduce(dpar::mpi(comm), mine, 0LL) == ranks * (ranks + 1) / 2);
    CHECK(dpar::reduce(dpar::mpi(comm), mine, 0LL, offset_plus{1}) == ranks * (ranks + 1) / 2 + ranks);  // ranks ops: init and ranks elements
    CHECK(comms_made == made + 2);  // the split and dpar's duplicate of it
    MPI_Comm_free(&comm);
    CHECK(comms_freed == freed + 2);  // the user's and, from its delete callback, dpar's
  }
}
