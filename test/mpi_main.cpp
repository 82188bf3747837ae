// main() of the MPI test programs (test_mpi, test_deterministic_mpi,
// test_nn_mpi): every rank runs the Catch session; the program fails on every
// rank if a test failed on any. A watchdog aborts the whole job when a case
// hangs (a rank left waiting in MPI) instead of stalling until CTest's
// TIMEOUT: after DPAR_TEST_WATCHDOG_SECONDS (default 120).
#include "catch_run.hpp"

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

int main(int argc, char** argv) {
  // MPI_THREAD_MULTIPLE where MPI has it: the cache tests call from two threads.
  int provided = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;
  const char* limit_text = std::getenv("DPAR_TEST_WATCHDOG_SECONDS");
  const int limit = limit_text ? std::atoi(limit_text) : 120;
  std::thread watchdog([&] {
    std::unique_lock lock(m);
    if (!cv.wait_for(lock, std::chrono::seconds(limit), [&] { return finished; })) {
      std::fprintf(stderr, "%s: rank %d still running after %d s: aborting (a hang)\n", argv[0], rank, limit);
      MPI_Abort(MPI_COMM_WORLD, 3);
      std::_Exit(3);
    }
  });
  int result = dpar_test::run_catch(argc, argv);
  int worst = 0;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  {
    std::lock_guard lock(m);
    finished = true;
  }
  cv.notify_one();
  watchdog.join();
  MPI_Finalize();
  return worst;
}
