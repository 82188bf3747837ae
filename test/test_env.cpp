// The global pool from outside a Catch2 process, run by CTest:
//   test_env N            DPAR_NUM_THREADS=N: the global pool has N threads
//   test_env count N      DPAR_NUM_THREADS=N is accepted as N threads (without making them)
//   test_env bad          a bad DPAR_NUM_THREADS: the first dpar::par call throws
//                         std::invalid_argument naming it, and again on retry
//   test_env after_exit   dpar::par from a static object's destructor, after the
//                         global pool was destroyed, runs inline instead of hanging
//   test_env fork         dpar::par in a fork() child of a process whose global
//                         pool has workers runs inline instead of hanging
// The last two would hang without their fix; alarm() turns a hang into a failure.
#include <dpar/dpar.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace {

// Sums with reduce and all_reduce on dpar::par; true if both are right.
bool par_works() {
  std::vector<long> v(100000);
  std::iota(v.begin(), v.end(), 1L);
  long sum = dpar::reduce(dpar::par, v, 0L);
  std::vector<std::vector<double>> buffers(4, std::vector<double>(50000, 0.25));
  dpar::all_reduce(dpar::par, buffers);
  bool ok = sum == 100000L * 100001L / 2;
  for (auto& b : buffers) ok = ok && b.front() == 1.0 && b.back() == 1.0;
  return ok;
}

struct uses_par_at_exit {
  ~uses_par_at_exit() {
    bool ok = par_works();
    std::printf("after the global pool's destruction: %s\n", ok ? "dpar::par ran inline" : "WRONG RESULT");
    std::fflush(stdout);
    if (!ok) std::_Exit(1);
  }
};

int run_bad() {
  std::vector<int> v(100000, 1);
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      dpar::reduce(dpar::par, v, 0);
      std::printf("no exception for DPAR_NUM_THREADS='%s'\n", std::getenv("DPAR_NUM_THREADS"));
      return 1;
    } catch (const std::invalid_argument& e) {
      std::printf("attempt %d: %s\n", attempt, e.what());
      if (std::string(e.what()).find("DPAR_NUM_THREADS") == std::string::npos) return 1;
    }
  }
  // The sequential policy does not touch the global pool and keeps working.
  return dpar::reduce(dpar::seq, v, 0) == 100000 ? 0 : 1;
}

int run_fork() {
  if (!par_works() || dpar::thread_pool::global().size() < 2) {
    std::printf("the parent needs a global pool of at least 2 threads (DPAR_NUM_THREADS)\n");
    return 1;
  }
  // Fork while another thread's job occupies the global pool: in the child
  // that job never ends, and the pool's destructor must not wait for it.
  std::atomic<bool> running{false};
  std::thread occupant([&] {
    dpar::thread_pool::global().run([&](std::size_t i, std::size_t) {
      if (i != 0) return;
      running = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    });
  });
  while (!running) std::this_thread::yield();
  pid_t child = ::fork();
  if (child < 0) return 1;
  if (child == 0) {
    ::alarm(20);  // not inherited: the child's own watchdog
    bool ok = par_works() && dpar::thread_pool::global().concurrency() == 1;
    std::printf("fork child: %s\n", ok ? "dpar::par ran inline" : "WRONG RESULT");
    std::fflush(stdout);
    std::exit(ok ? 0 : 1);  // runs the global pool's destructor in the child too
  }
  occupant.join();
  int status = 0;
  if (::waitpid(child, &status, 0) != child) return 1;
  if (!WIFEXITED(status)) {
    std::printf("fork child did not exit normally (signal %d: hung and killed by its watchdog?)\n",
                WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 1;
  }
  // The parent's pool still has its workers.
  return WEXITSTATUS(status) == 0 && par_works() && dpar::thread_pool::global().concurrency() >= 2 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  ::alarm(30);  // watchdog: SIGALRM ends a hung run with a failure
  if (argc < 2) return 2;
  std::string mode = argv[1];
  if (mode == "bad") return run_bad();
  if (mode == "fork") return run_fork();
  if (mode == "after_exit") {
    static uses_par_at_exit user;  // made before the global pool, so destroyed after it
    return par_works() ? 0 : 1;
  }
  if (mode == "count" && argc == 3) {
    std::size_t n = dpar::detail::default_thread_count();
    std::printf("DPAR_NUM_THREADS gives %zu threads (want %s)\n", n, argv[2]);
    return n == std::stoul(argv[2]) ? 0 : 1;
  }
  std::size_t want = std::stoul(mode);
  std::vector<int> v(100000, 1);
  int sum = dpar::reduce(dpar::par, v, 0);
  std::printf("global pool size %zu (want %zu), sum %d\n", dpar::thread_pool::global().size(), want, sum);
  return dpar::thread_pool::global().size() == want && sum == 100000 ? 0 : 1;
}
