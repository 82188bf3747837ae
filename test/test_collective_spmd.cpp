// dpar::communicator: K participants in their own threads call the collectives
// together. Results must match the replica-order reference; failures (throws,
// early returns, mismatched calls) must reach every participant, never hang.
#include "collective_common.hpp"
#include "common.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using dpar_test::mat2;
using dpar_test::mat2_mul;
using dpar_test::within_seconds;

namespace {

const std::vector<std::size_t> replica_counts = {1, 2, 3, 4, 8};
const std::vector<std::size_t> lengths = {0, 1, 2, 13, 97, 1009, 10007, 65537};

// Every participant's error message, indexed by rank ("" if it did not throw).
struct messages {
  std::mutex m;
  std::vector<std::string> by_rank;
  explicit messages(std::size_t k) : by_rank(k) {}
  void record(std::size_t rank, const std::string& what) {
    std::lock_guard lock(m);
    by_rank[rank] = what;
  }
};

// Catch2's assertions are not thread-safe, so participants check with this:
// a failed expectation throws, and run() / pool.run rethrow it to the test.
inline void expect(bool ok, const std::string& what) {
  if (!ok) throw std::logic_error("expectation failed: " + what);
}

// The message of the exception that f throws, or "" if it returns.
template <class F>
std::string thrown_message(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("communicator rejects zero participants", "[communicator][errors]") {
  CHECK_THROWS_AS(dpar::communicator(0), std::invalid_argument);
  CHECK(dpar::communicator(3).size() == 3);
}

TEST_CASE("communicator::all_reduce equals the rank-order reference", "[communicator]") {
  for (std::size_t k : replica_counts) {
    dpar::thread_pool pool(k);
    dpar::communicator comm(k);
    for (std::size_t n : lengths) {
      std::vector<std::vector<double>> sums, prods;
      std::vector<std::vector<int>> mins;
      std::vector<std::vector<mat2>> mats(k, std::vector<mat2>(n));
      std::uint64_t state = n * 17 + k;
      for (std::size_t r = 0; r < k; ++r) {
        sums.push_back(dpar_test::random_vector<double>(n, 3 * n + r));
        prods.push_back(dpar_test::random_vector<double>(n, 5 * n + r));
        mins.push_back(dpar_test::random_vector<int>(n, 7 * n + r));
        for (auto& m : mats[r]) m = dpar_test::random_mat2(state);
      }
      auto sum_ref = dpar_test::reference_all_reduce(sums, std::plus<>{});
      auto prod_ref = dpar_test::reference_all_reduce(prods, std::multiplies<>{});
      auto min_ref = dpar_test::reference_all_reduce(mins, dpar::minimum<>{});
      auto mat_ref = dpar_test::reference_all_reduce(mats, mat2_mul{});
      within_seconds(60, "communicator all_reduce", [&] {
        comm.run(pool, [&](std::size_t rank, std::size_t size) {
          expect(size == k, "size");
          comm.all_reduce(rank, std::span<double>(sums[rank]));
          comm.all_reduce(rank, std::span<double>(prods[rank]), std::multiplies<>{});
          comm.all_reduce(rank, std::span<int>(mins[rank]), dpar::minimum<>{});
          comm.all_reduce(rank, std::span<mat2>(mats[rank]), mat2_mul{});
        });
      });
      for (std::size_t r = 0; r < k; ++r) {
        INFO("K=" << k << " n=" << n << " rank " << r);
        REQUIRE(sums[r] == sum_ref);
        REQUIRE(prods[r] == prod_ref);
        REQUIRE(mins[r] == min_ref);
        REQUIRE(mats[r] == mat_ref);
      }
    }
  }
}

TEST_CASE("communicator: many rounds of all_reduce, broadcast and barrier", "[communicator]") {
  for (std::size_t k : replica_counts) {
    dpar::thread_pool pool(k);
    dpar::communicator comm(k);
    const std::size_t n = 1000;
    std::vector<std::vector<float>> data(k, std::vector<float>(n));
    std::vector<int> after_barrier(k, 0);
    std::atomic<int> phase{0};
    within_seconds(60, "communicator rounds", [&] {
      comm.run(pool, [&](std::size_t rank, std::size_t) {
        std::vector<float>& mine = data[rank];
        for (int round = 0; round < 50; ++round) {
          // broadcast the root's values, then sum: everyone ends with k * root's values
          std::size_t root = static_cast<std::size_t>(round) % k;
          for (std::size_t i = 0; i < n; ++i) mine[i] = static_cast<float>(rank == root ? round + i : -1.0f);
          comm.broadcast(rank, std::span<float>(mine), root);
          comm.all_reduce(rank, std::span<float>(mine));
          for (std::size_t i = 0; i < n; ++i)
            expect(mine[i] == static_cast<float>(k) * static_cast<float>(round + i), "broadcast + all_reduce value");
          // barrier: nobody sees the phase counter before everyone bumped it
          phase.fetch_add(1);
          comm.barrier(rank);
          expect(phase.load() >= static_cast<int>(k) * (round + 1), "barrier lets nobody through early");
          comm.barrier(rank);
        }
      });
    });
  }
}

TEST_CASE("communicator works with pool.run and abort_guard, the trainer's pattern", "[communicator]") {
  const std::size_t k = 4;
  dpar::thread_pool pool(k);
  dpar::communicator comm(k);
  std::vector<std::vector<float>> grads(k, std::vector<float>(333));
  pool.run([&](std::size_t rank, std::size_t threads) {
    expect(threads == k, "threads");
    dpar::communicator::abort_guard guard(comm, rank);
    std::fill(grads[rank].begin(), grads[rank].end(), static_cast<float>(rank + 1));
    comm.all_reduce(rank, std::span<float>(grads[rank]), std::plus<>{});
  });
  for (auto& g : grads) CHECK(g == std::vector<float>(333, 10.0f));
}

TEST_CASE("communicator: mismatched lengths are reported on every rank, naming the ranks", "[communicator][errors]") {
  for (std::size_t k : {2, 3, 4}) {
    dpar::thread_pool pool(k);
    dpar::communicator comm(k);
    messages seen(k);
    within_seconds(30, "mismatched lengths", [&] {
      comm.run(pool, [&](std::size_t rank, std::size_t) {
        std::vector<double> mine(rank == k - 1 ? 5 : 7, 1.0);
        try {
          comm.all_reduce(rank, std::span<double>(mine));
        } catch (const dpar::collective_error& e) {
          seen.record(rank, e.what());
        }
        // The communicator is still usable after a consistent error.
        std::vector<double> ok(3, 1.0);
        comm.all_reduce(rank, std::span<double>(ok));
        expect(ok == std::vector<double>(3, static_cast<double>(k)), "all_reduce after a mismatch");
      });
    });
    for (std::size_t r = 0; r < k; ++r) {
      INFO("rank " << r);
      CHECK_THAT(seen.by_rank[r], Catch::Contains("rank " + std::to_string(k - 1) + " passed 5 elements but rank 0 passed 7"));
    }
  }
}

TEST_CASE("communicator: mismatched collectives and roots are errors, not hangs", "[communicator][errors]") {
  dpar::thread_pool pool(3);
  dpar::communicator comm(3);
  messages seen(3);
  within_seconds(30, "mismatched collectives", [&] {
    comm.run(pool, [&](std::size_t rank, std::size_t) {
      std::vector<int> v(4, 1);
      try {
        if (rank == 1) comm.barrier(rank);
        else comm.all_reduce(rank, std::span<int>(v));
      } catch (const dpar::collective_error& e) {
        seen.record(rank, e.what());
      }
      std::string roots = thrown_message([&] { comm.broadcast(rank, std::span<int>(v), rank == 2 ? 1 : 0); });
      expect(roots.find("rank 2 named root 1 but rank 0 named root 0") != std::string::npos, roots);
      std::string range = thrown_message([&] { comm.broadcast(rank, std::span<int>(v), 7); });
      expect(range.find("root 7 is out of range") != std::string::npos, range);
    });
  });
  for (auto& m : seen.by_rank) CHECK_THAT(m, Catch::Contains("rank 1 called barrier while rank 0 called all_reduce"));
}

TEST_CASE("communicator: a participant that throws releases the others", "[communicator][exceptions]") {
  for (std::size_t k : {2, 3, 4, 8})
    for (std::size_t thrower = 0; thrower < k; thrower += k - 1) {
      dpar::thread_pool pool(k);
      dpar::communicator comm(k);
      messages seen(k);
      within_seconds(30, "throwing participant", [&] {
        CHECK_THROWS_WITH(comm.run(pool,
                                   [&](std::size_t rank, std::size_t) {
                                     std::vector<float> g(100, 1.0f);
                                     comm.all_reduce(rank, std::span<float>(g));  // one good round first
                                     if (rank == thrower) throw std::runtime_error("bad batch");
                                     try {
                                       comm.all_reduce(rank, std::span<float>(g));
                                     } catch (const dpar::collective_error& e) {
                                       seen.record(rank, e.what());
                                       throw;
                                     }
                                   }),
                          "bad batch");  // run() rethrows the original error
      });
      CHECK(comm.aborted());
      for (std::size_t r = 0; r < k; ++r) {
        if (r == thrower) continue;
        INFO("K=" << k << " rank " << r);
        CHECK_THAT(seen.by_rank[r], Catch::Contains("rank " + std::to_string(thrower) + " failed: bad batch"));
      }
      // Later calls fail at once too.
      std::vector<float> g(1);
      CHECK_THROWS_AS(comm.all_reduce(0, std::span<float>(g)), dpar::collective_error);
    }
}

TEST_CASE("communicator: a throwing op inside all_reduce aborts the others", "[communicator][exceptions]") {
  dpar::thread_pool pool(4);
  dpar::communicator comm(4);
  within_seconds(30, "throwing op", [&] {
    CHECK_THROWS_AS(comm.run(pool,
                             [&](std::size_t rank, std::size_t) {
                               std::vector<int> v(4000, static_cast<int>(rank));
                               comm.all_reduce(rank, std::span<int>(v), [rank](int a, int b) {
                                 if (rank == 2) throw std::domain_error("op on rank 2");
                                 return a + b;
                               });
                             }),
                    std::domain_error);
  });
  CHECK(comm.aborted());
}

TEST_CASE("communicator: pool.run with abort_guard releases the others", "[communicator][exceptions]") {
  dpar::thread_pool pool(3);
  dpar::communicator comm(3);
  within_seconds(30, "abort_guard", [&] {
    CHECK_THROWS(pool.run([&](std::size_t rank, std::size_t) {
      dpar::communicator::abort_guard guard(comm, rank);
      if (rank == 0) throw std::runtime_error("rank 0 gives up");
      comm.barrier(rank);
    }));
  });
  CHECK(comm.aborted());
  // explicit abort from outside wakes nobody twice and keeps the first error
  comm.abort(1, std::make_exception_ptr(std::runtime_error("second")));
  CHECK_THROWS_WITH(comm.barrier(1), Catch::Contains("rank 0 left by an exception"));
}

TEST_CASE("communicator: a participant that returns early does not hang the others", "[communicator][exceptions]") {
  dpar::thread_pool pool(3);
  dpar::communicator comm(3);
  within_seconds(30, "early return", [&] {
    CHECK_THROWS_WITH(comm.run(pool,
                               [&](std::size_t rank, std::size_t) {
                                 if (rank == 1) return;  // forgets the collective
                                 comm.barrier(rank);
                               }),
                      Catch::Contains("rank(s) 1 returned"));
  });
  // After a clean run (every rank returns) the communicator is reusable.
  dpar::communicator fresh(3);
  for (int i = 0; i < 3; ++i)
    fresh.run(pool, [&](std::size_t rank, std::size_t) { fresh.barrier(rank); });
  CHECK_FALSE(fresh.aborted());
}

TEST_CASE("communicator: bad rank and wrong pool size are clear errors", "[communicator][errors]") {
  dpar::thread_pool pool(2);
  dpar::communicator comm(3);
  CHECK_THROWS_WITH(comm.run(pool, [](std::size_t, std::size_t) {}),
                    Catch::Contains("the pool runs 2 threads concurrently here but the communicator has 3"));
  std::vector<int> v(1);
  CHECK_THROWS_WITH(comm.all_reduce(5, std::span<int>(v)), Catch::Contains("rank 5 is out of range for 3"));
  CHECK(comm.aborted());
}

// Issue 14, fault 6: the poison of a bad rank carries the original error, so
// run() rethrows invalid_argument every time, not collective_error.
TEST_CASE("communicator::run rethrows a participant's out-of-range rank error, every time", "[communicator][errors]") {
  dpar::thread_pool pool(3);
  for (int round = 0; round < 100; ++round) {
    dpar::communicator comm(3);
    within_seconds(30, "out-of-range rank in run", [&] {
      CHECK_THROWS_AS(comm.run(pool,
                               [&](std::size_t rank, std::size_t) {
                                 std::vector<int> v(8, 1);
                                 comm.all_reduce(rank == 1 ? 99 : rank, std::span<int>(v));
                               }),
                      std::invalid_argument);
    });
  }
}

// Issue 14, fault 7: participants on threads of their own, each with an
// abort_guard. One returns without joining the collective: the others are
// released with collective_error naming it instead of waiting forever.
TEST_CASE("abort_guard: a participant on a raw thread that returns early releases the others", "[communicator][exceptions]") {
  for (std::size_t leaver : {0, 2}) {
    dpar::communicator comm(3);
    messages seen(3);
    within_seconds(30, "raw threads, one returns early", [&] {
      std::vector<std::thread> threads;
      for (std::size_t rank = 0; rank < 3; ++rank)
        threads.emplace_back([&, rank] {
          dpar::communicator::abort_guard guard(comm, rank);
          if (rank == leaver) return;
          try {
            comm.barrier(rank);
          } catch (const dpar::collective_error& e) {
            seen.record(rank, e.what());
          }
        });
      for (auto& t : threads) t.join();
    });
    for (std::size_t r = 0; r < 3; ++r) {
      INFO("leaver " << leaver << ", rank " << r);
      if (r == leaver) CHECK(seen.by_rank[r].empty());
      else CHECK_THAT(seen.by_rank[r], Catch::Contains("rank(s) " + std::to_string(leaver) + " returned"));
    }
  }
}

TEST_CASE("abort_guard: raw threads that all finish normally leave the communicator reusable", "[communicator]") {
  dpar::communicator comm(4);
  std::vector<std::vector<int>> data(4, std::vector<int>(1000));
  within_seconds(30, "raw threads, clean runs", [&] {
    for (int run = 0; run < 20; ++run) {
      std::vector<std::thread> threads;
      for (std::size_t rank = 0; rank < 4; ++rank)
        threads.emplace_back([&, rank] {
          dpar::communicator::abort_guard guard(comm, rank);
          std::fill(data[rank].begin(), data[rank].end(), static_cast<int>(rank));
          comm.all_reduce(rank, std::span<int>(data[rank]));
          comm.barrier(rank);
        });
      for (auto& t : threads) t.join();
    }
  });
  CHECK_FALSE(comm.aborted());
  for (auto& d : data) CHECK(d == std::vector<int>(1000, 6));
  CHECK_THROWS_WITH(dpar::communicator::abort_guard(comm, 4), Catch::Contains("rank 4 is out of range for 4"));
}

TEST_CASE("abort_guard inside communicator::run defers to run", "[communicator]") {
  dpar::thread_pool pool(3);
  dpar::communicator comm(3);
  within_seconds(30, "abort_guard inside run", [&] {
    for (int i = 0; i < 10; ++i)
      comm.run(pool, [&](std::size_t rank, std::size_t) {
        dpar::communicator::abort_guard guard(comm, rank);
        comm.barrier(rank);
      });
    CHECK_FALSE(comm.aborted());
    // run still rethrows the original error, not the guard's.
    CHECK_THROWS_WITH(comm.run(pool,
                               [&](std::size_t rank, std::size_t) {
                                 dpar::communicator::abort_guard guard(comm, rank);
                                 if (rank == 2) throw std::runtime_error("original");
                                 comm.barrier(rank);
                               }),
                      "original");
  });
}

TEST_CASE("communicator::run waits for a pool that another thread's job occupies", "[communicator]") {
  dpar::thread_pool pool(2);
  dpar::communicator comm(2);
  dpar_test::pool_holder holder(pool);
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    holder.release();
  });
  std::vector<std::vector<int>> data(2, std::vector<int>(10, 1));
  within_seconds(30, "run on a busy pool", [&] {
    comm.run(pool, [&](std::size_t rank, std::size_t) { comm.all_reduce(rank, std::span<int>(data[rank])); });
  });
  releaser.join();
  for (auto& d : data) CHECK(d == std::vector<int>(10, 2));
}

// Issue 15: the two halves of all_reduce on their own, for a sharded optimizer.
TEST_CASE("communicator::slice cuts any length into contiguous slices in rank order", "[communicator]") {
  for (std::size_t k : replica_counts) {
    dpar::communicator comm(k);
    for (std::size_t n : lengths) {
      std::size_t expected_first = 0;
      for (std::size_t r = 0; r < k; ++r) {
        auto [first, last] = comm.slice<double>(r, n);
        INFO("K=" << k << " n=" << n << " rank " << r);
        REQUIRE(first == expected_first);
        REQUIRE(first <= last);
        REQUIRE((first % 8 == 0 || first == n));  // whole 64-byte lines of doubles
        expected_first = last;
      }
      REQUIRE(expected_first == n);
    }
    CHECK_THROWS_WITH(comm.slice<float>(k, 10), Catch::Contains("rank " + std::to_string(k) + " is out of range"));
  }
}

TEST_CASE("communicator::reduce_scatter and all_gather equal the rank-order reference, slice by slice", "[communicator]") {
  for (std::size_t k : replica_counts) {
    dpar::thread_pool pool(k);
    dpar::communicator comm(k);
    for (std::size_t n : lengths) {
      std::vector<std::vector<double>> sums, gathered;
      std::vector<std::vector<mat2>> mats(k, std::vector<mat2>(n));
      std::uint64_t state = n * 31 + k;
      for (std::size_t r = 0; r < k; ++r) {
        sums.push_back(dpar_test::random_vector<double>(n, 11 * n + r));
        gathered.push_back(dpar_test::random_vector<double>(n, 13 * n + r));
        for (auto& m : mats[r]) m = dpar_test::random_mat2(state);
      }
      const auto sums_before = sums, gathered_before = gathered;
      const auto mats_before = mats;
      auto sum_ref = dpar_test::reference_all_reduce(sums, std::plus<>{});
      auto mat_ref = dpar_test::reference_all_reduce(mats, mat2_mul{});
      // reduce_scatter then all_gather is all_reduce.
      auto round_trip = mats;
      within_seconds(60, "reduce_scatter and all_gather", [&] {
        comm.run(pool, [&](std::size_t rank, std::size_t) {
          comm.reduce_scatter(rank, std::span<double>(sums[rank]));
          comm.reduce_scatter(rank, std::span<mat2>(mats[rank]), mat2_mul{});
          comm.all_gather(rank, std::span<double>(gathered[rank]));
          comm.reduce_scatter(rank, std::span<mat2>(round_trip[rank]), mat2_mul{});
          comm.all_gather(rank, std::span<mat2>(round_trip[rank]));
        });
      });
      for (std::size_t r = 0; r < k; ++r) {
        INFO("K=" << k << " n=" << n << " rank " << r);
        // Its own slice reduced; the rest of its buffer left as it was.
        auto sum_expected = sums_before[r];
        auto [first, last] = comm.slice<double>(r, n);
        std::copy(sum_ref.begin() + first, sum_ref.begin() + last, sum_expected.begin() + first);
        REQUIRE(sums[r] == sum_expected);
        auto mat_expected = mats_before[r];
        auto [mfirst, mlast] = comm.slice<mat2>(r, n);
        std::copy(mat_ref.begin() + mfirst, mat_ref.begin() + mlast, mat_expected.begin() + mfirst);
        REQUIRE(mats[r] == mat_expected);
        // Every slice a copy of its owner's.
        std::vector<double> gather_expected(n);
        for (std::size_t owner = 0; owner < k; ++owner) {
          auto [lo, hi] = comm.slice<double>(owner, n);
          std::copy(gathered_before[owner].begin() + lo, gathered_before[owner].begin() + hi, gather_expected.begin() + lo);
        }
        REQUIRE(gathered[r] == gather_expected);
        REQUIRE(round_trip[r] == mat_ref);
      }
    }
  }
}

TEST_CASE("communicator: reduce_scatter and all_gather report mismatches on every rank", "[communicator][errors]") {
  dpar::thread_pool pool(3);
  dpar::communicator comm(3);
  messages lengths_seen(3), kinds_seen(3);
  within_seconds(30, "mismatched reduce_scatter", [&] {
    comm.run(pool, [&](std::size_t rank, std::size_t) {
      std::vector<float> v(rank == 2 ? 5 : 40, 1.0f);
      lengths_seen.record(rank, thrown_message([&] { comm.reduce_scatter(rank, std::span<float>(v)); }));
      kinds_seen.record(rank, thrown_message([&] {
                          if (rank == 1) comm.all_gather(rank, std::span<float>(v));
                          else comm.reduce_scatter(rank, std::span<float>(v));
                        }));
      std::vector<float> ok(40, static_cast<float>(rank));
      comm.reduce_scatter(rank, std::span<float>(ok));  // still usable after consistent errors
      comm.all_gather(rank, std::span<float>(ok));
      expect(ok == std::vector<float>(40, 3.0f), "reduce_scatter + all_gather after mismatches");
    });
  });
  for (std::size_t r = 0; r < 3; ++r) {
    INFO("rank " << r);
    CHECK_THAT(lengths_seen.by_rank[r], Catch::Contains("reduce_scatter: rank 2 passed 5 elements but rank 0 passed 40"));
    CHECK_THAT(kinds_seen.by_rank[r], Catch::Contains("rank 1 called all_gather while rank 0 called reduce_scatter"));
  }
}

TEST_CASE("communicator: a participant that throws releases the others from reduce_scatter and all_gather",
          "[communicator][exceptions]") {
  for (bool gather : {false, true})
    for (std::size_t k : {2, 3, 8})
      for (std::size_t thrower : {std::size_t{0}, k - 1}) {
        dpar::thread_pool pool(k);
        dpar::communicator comm(k);
        messages seen(k);
        within_seconds(30, "throwing participant, sharded collectives", [&] {
          CHECK_THROWS_WITH(comm.run(pool,
                                     [&](std::size_t rank, std::size_t) {
                                       std::vector<float> g(1000, 1.0f);
                                       comm.reduce_scatter(rank, std::span<float>(g));  // one good round first
                                       if (rank == thrower) throw std::runtime_error("bad shard");
                                       try {
                                         if (gather) comm.all_gather(rank, std::span<float>(g));
                                         else comm.reduce_scatter(rank, std::span<float>(g));
                                       } catch (const dpar::collective_error& e) {
                                         seen.record(rank, e.what());
                                         throw;
                                       }
                                     }),
                            "bad shard");
        });
        CHECK(comm.aborted());
        for (std::size_t r = 0; r < k; ++r) {
          if (r == thrower) continue;
          INFO("K=" << k << " rank " << r << (gather ? " all_gather" : " reduce_scatter"));
          CHECK_THAT(seen.by_rank[r], Catch::Contains("rank " + std::to_string(thrower) + " failed: bad shard"));
        }
        std::vector<float> g(1);
        CHECK_THROWS_AS(comm.all_gather(0, std::span<float>(g)), dpar::collective_error);
      }
}

TEST_CASE("communicator: a throwing op inside reduce_scatter aborts the others", "[communicator][exceptions]") {
  dpar::thread_pool pool(3);
  dpar::communicator comm(3);
  within_seconds(30, "throwing op in reduce_scatter", [&] {
    CHECK_THROWS_AS(comm.run(pool,
                             [&](std::size_t rank, std::size_t) {
                               std::vector<int> v(4000, static_cast<int>(rank));
                               comm.reduce_scatter(rank, std::span<int>(v), [rank](int a, int b) {
                                 if (rank == 1) throw std::domain_error("op on rank 1");
                                 return a + b;
                               });
                               comm.all_gather(rank, std::span<int>(v));
                             }),
                    std::domain_error);
  });
  CHECK(comm.aborted());
}
