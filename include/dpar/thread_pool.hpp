#pragma once
// dpar::thread_pool: persistent workers behind dpar::par.
//
// A pool of size n runs a job on n threads: the calling thread plus n-1 workers.
// Fork and join go through two atomic counters; idle workers spin for about
// 100 us and then block on the counter (futex), so an idle pool burns no CPU.
// A worker found on its caller's CPU is moved off it (below):
// queued there, it would wait for the caller's time slice, past short jobs.
//
// A job never waits for the pool: a call made inside a pool job, while another
// thread's job occupies the pool (that job may be waiting for this very
// thread), in a fork() child (the workers stayed in the parent) or after the
// global pool was destroyed at exit runs inline on the calling thread.

#include <atomic>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include <pthread.h>

// Waiting on an atomic word: the spin-then-block primitive of the thread pool,
// the communicator and the scans' look-back.

#include <atomic>
#include <chrono>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dpar::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Waits until `word` differs from `old` and returns the new value: spins for
// about 2 us (back-to-back calls find their workers awake), yields until about
// 100 us (on an oversubscribed machine, lets the thread we wait for run), then
// blocks on the word (futex), so an idle pool burns no CPU.
template <class U>
U wait_while_equal(const std::atomic<U>& word, U old) noexcept {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (unsigned i = 1;; ++i) {
    U now = word.load(std::memory_order_acquire);
    if (now != old) return now;
    if (i % 32 != 0) {
      cpu_relax();
      continue;
    }
    auto waited = clock::now() - start;
    if (waited > std::chrono::microseconds(100)) break;
    if (waited > std::chrono::microseconds(2)) std::this_thread::yield();
  }
  for (;;) {
    word.wait(old, std::memory_order_acquire);
    U now = word.load(std::memory_order_acquire);
    if (now != old) return now;
  }
}

}  // namespace dpar::detail

// Keeping pool workers off their caller's CPU.
//
// Why: a worker that sleeps between jobs is woken by the caller's futex wake,
// and the scheduler's wake-affine placement often queues it on the caller's own
// CPU, where it cannot run until the busy caller's time slice ends: long after
// a short job is done. Its next wake-up puts it there again, and a new thread
// often starts there too, so for a whole process run the pool may work on one
// CPU while another is idle (measured: bench/RESULTS.md, issue 15). So a worker
// on the caller's CPU is moved: its allowed CPUs are narrowed to all but that
// one, which migrates it at once, and widened back, so nothing stays pinned and
// the scheduler remains free to place it anywhere later. A worker that runs
// moves itself; one stuck in the queue is moved by its caller.

#include <cstddef>

#if defined(__linux__)
#include <sched.h>
#include <unistd.h>
#endif

namespace dpar::detail {

// The CPU the calling thread runs on, or -1 where that is unknown.
inline int current_cpu() noexcept {
#if defined(__linux__)
  return ::sched_getcpu();
#else
  return -1;
#endif
}

// The calling thread's id for move_off, or 0 where there is none.
inline long current_thread_id() noexcept {
#if defined(__linux__)
  return static_cast<long>(::gettid());
#else
  return 0;
#endif
}

class cpu_placement {
 public:
  // The CPUs the calling thread may run on, as the pool's threads inherit
  // them. Moving only helps when every one of `threads` can have a CPU of its
  // own; in an oversubscribed pool it would only shuffle threads around.
  explicit cpu_placement(std::size_t threads) noexcept {
#if defined(__linux__)
    CPU_ZERO(&allowed_);
    enabled_ = threads > 1 && ::sched_getaffinity(0, sizeof allowed_, &allowed_) == 0 &&
               static_cast<std::size_t>(CPU_COUNT(&allowed_)) >= threads;
#else
    (void)threads;
#endif
  }

  bool enabled() const noexcept { return enabled_; }

  // Migrates thread `tid` (from current_thread_id) to another allowed CPU if
  // it is on `cpu`, or queued there; a thread elsewhere stays where it is.
  // Errors (a thread gone, a cpuset changed under us) leave it as it was.
  void move_off(long tid, int cpu) const noexcept {
#if defined(__linux__)
    if (!enabled_ || tid == 0 || cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed_)) return;
    cpu_set_t others = allowed_;
    CPU_CLR(cpu, &others);
    if (::sched_setaffinity(static_cast<pid_t>(tid), sizeof others, &others) == 0)
      ::sched_setaffinity(static_cast<pid_t>(tid), sizeof allowed_, &allowed_);
#else
    (void)tid;
    (void)cpu;
#endif
  }

 private:
#if defined(__linux__)
  cpu_set_t allowed_;
#endif
  bool enabled_ = false;
};

}  // namespace dpar::detail

namespace dpar {

namespace detail {

inline constexpr std::size_t max_pool_threads = 4096;

// True on a pool worker, and on a thread while it runs its share of a pool job.
// A dpar::par call made there runs inline instead of forking again (nested calls).
inline bool& this_thread_in_pool() noexcept {
  thread_local bool inside = false;
  return inside;
}

// Parses a thread count such as the value of DPAR_NUM_THREADS. `what` names the
// source in the error message.
inline std::size_t parse_thread_count(const char* text, const char* what) {
  auto fail = [&](const char* why) {
    throw std::invalid_argument(std::string(what) + "='" + text + "' " + why);
  };
  std::string_view s(text);
  if (s.empty()) fail("is empty; expected a positive integer");
  std::size_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  bool whole = end == s.data() + s.size();
  if (!whole || (ec != std::errc{} && ec != std::errc::result_out_of_range)) fail("is not a positive integer");
  if (ec == std::errc::result_out_of_range || value > max_pool_threads)
    fail(("is too large; at most " + std::to_string(max_pool_threads) + " threads").c_str());
  if (value == 0) fail("is zero; expected a positive integer");
  return value;
}

// Counts the fork() children this process descends from, so that a pool made
// before a fork knows, in the child, that its workers are gone.
inline std::atomic<std::uint64_t> fork_generation{0};

inline std::uint64_t current_fork_generation() noexcept {
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  return fork_generation.load(std::memory_order_relaxed);
}

// Set when the global pool is destroyed at exit; dpar::par then runs inline.
inline std::atomic<bool> global_pool_destroyed{false};

inline std::size_t default_thread_count() {
  if (const char* env = std::getenv("DPAR_NUM_THREADS")) return parse_thread_count(env, "DPAR_NUM_THREADS");
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : hw;
}

}  // namespace detail

class communicator;

class thread_pool {
 public:
  // A pool that runs each job on `threads` threads, the caller included.
  explicit thread_pool(std::size_t threads)
      : size_(threads), fork_generation_(detail::current_fork_generation()), placement_(threads) {
    if (threads == 0 || threads > detail::max_pool_threads)
      throw std::invalid_argument("dpar::thread_pool: size " + std::to_string(threads) +
                                  " is out of range [1, " + std::to_string(detail::max_pool_threads) + "]");
    workers_.reserve(threads - 1);
    worker_ids_.resize(threads - 1, 0);
    caller_cpu_.store(detail::current_cpu(), std::memory_order_relaxed);
    try {
      for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    } catch (...) {
      stop();
      throw;
    }
    // A new thread often starts queued on its creator's CPU; wait (yielding)
    // until every worker has run and left it, so the first jobs find them apart.
    for (std::uint32_t n = 0; n != threads - 1;) n = detail::wait_while_equal(finished_, n);
  }

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  // Waits for a job that another thread is running on the pool to finish,
  // then stops the workers. (Destroying a pool from inside one of its own
  // jobs, or while another thread is still starting one, is an error.) In a
  // fork() child no job of the parent's threads can finish: nothing to wait for.
  ~thread_pool() {
    if (!forked())
      while (busy_.load(std::memory_order_acquire)) busy_.wait(true, std::memory_order_acquire);
    stop();
  }

  std::size_t size() const noexcept { return size_; }

  // The pool behind dpar::par: DPAR_NUM_THREADS threads if set, else one per
  // hardware thread. A bad DPAR_NUM_THREADS throws std::invalid_argument here.
  // Once it is destroyed at exit (a static object's destructor calling
  // dpar::par), this returns a pool of size 1, which runs jobs inline.
  static thread_pool& global() {
    struct owner {
      thread_pool pool{detail::default_thread_count()};
      ~owner() { detail::global_pool_destroyed.store(true, std::memory_order_release); }
    };
    if (!detail::global_pool_destroyed.load(std::memory_order_acquire)) {
      static owner global;
      return global.pool;
    }
    static thread_pool* const after_exit = new thread_pool(1);  // never destroyed: usable until the end
    return *after_exit;
  }

  // How many threads a job submitted from this thread runs on: 1 inside a pool
  // job (nested calls run inline) or in a fork() child of the process that
  // made the pool, else size(); but a job that finds the pool busy with
  // another thread's job runs inline all the same (run passes `threads`).
  std::size_t concurrency() const noexcept { return detail::this_thread_in_pool() || forked() ? 1 : size_; }

  // Calls f(thread, threads) once for every thread in [0, threads), all running
  // concurrently, the caller as thread 0; returns when all have returned.
  // threads is size(), or 1 where the job runs inline (f(0, 1)): inside a pool
  // job, in a fork() child, or while another thread's job occupies the pool.
  // If any call throws, one of the exceptions is rethrown here after all have
  // finished.
  template <class F>
  void run(F&& f) {
    submit(std::forward<F>(f), /*every_thread=*/true);
  }

  // Like run, but only the caller is sure to take part: a worker joins if it
  // wakes before the caller's own call returns, and one that comes later skips
  // the job. For work that threads claim from a shared counter, so that a
  // worker the OS has not scheduled yet delays nothing. `thread` is unique per
  // call, the caller's is 0; `threads` is an upper bound.
  template <class F>
  void run_available(F&& f) {
    submit(std::forward<F>(f), /*every_thread=*/false);
  }

 private:
  struct job {
    void (*invoke)(void*, std::size_t, std::size_t) = nullptr;
    void* fn = nullptr;
  };

  // entry_ says which job workers may enter and how many did: the job's epoch
  // in the high half, a "closed" bit and the count of entered workers below.
  static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 31;
  static constexpr std::uint64_t count_mask = closed_bit - 1;

  // communicator::run needs all size() threads: it waits for a busy pool
  // instead of running inline.
  friend class communicator;

  template <class F>
  void submit(F&& f, bool every_thread) {
    // An outside thread that finds the pool busy runs its job inline: waiting
    // could deadlock, since the busy job may be waiting for this thread.
    if (concurrency() == 1 || !try_occupy()) {
      f(std::size_t{0}, std::size_t{1});
      return;
    }
    submit_occupied(std::forward<F>(f), every_thread);
  }

  // Waits until the pool is free, then runs the job on all size() threads.
  // For callers that need every thread (communicator::run).
  template <class F>
  void submit_waiting(F&& f) {
    if (forked())
      throw std::logic_error("dpar::thread_pool: this pool was made before fork(); its threads are not in this process");
    for (bool busy = true; !try_occupy();) busy_.wait(busy, std::memory_order_relaxed);
    submit_occupied(std::forward<F>(f), /*every_thread=*/true);
  }

  bool forked() const noexcept {
    return detail::fork_generation.load(std::memory_order_relaxed) != fork_generation_;
  }

  bool try_occupy() noexcept {
    bool free = false;
    return busy_.compare_exchange_strong(free, true, std::memory_order_acquire, std::memory_order_relaxed);
  }

  // Runs the job with the pool occupied by this thread, then frees the pool.
  template <class F>
  void submit_occupied(F&& f, bool every_thread) {
    // The last touch of the pool: a destructor waiting for the job may free it
    // once busy_ is false (notify_all only uses busy_'s address, as a key).
    struct vacate {
      std::atomic<bool>& busy;
      ~vacate() {
        busy.store(false, std::memory_order_release);
        busy.notify_all();
      }
    } vacate_on_exit{busy_};
    using Fn = std::remove_reference_t<F>;
    job_ = job{[](void* fn, std::size_t i, std::size_t n) { (*static_cast<Fn*>(fn))(i, n); },
               const_cast<void*>(static_cast<const void*>(std::addressof(f)))};
    error_ = nullptr;
    failed_.store(false, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    caller_cpu_.store(detail::current_cpu(), std::memory_order_relaxed);
    const std::uint32_t epoch = epoch_.load(std::memory_order_relaxed) + 1;
    entry_.store(std::uint64_t{epoch} << 32, std::memory_order_relaxed);
    epoch_.store(epoch, std::memory_order_release);
    epoch_.notify_all();

    detail::this_thread_in_pool() = true;
    execute(0);
    detail::this_thread_in_pool() = false;

    // Every worker must run the job, or only those that entered before it closes.
    std::uint32_t expected = static_cast<std::uint32_t>(size_ - 1);
    if (!every_thread) {
      expected = static_cast<std::uint32_t>(entry_.fetch_or(closed_bit, std::memory_order_acq_rel) & count_mask);
      count_missing_workers(expected);
    }
    for (std::uint32_t done = finished_.load(std::memory_order_acquire); done != expected;
         done = finished_.load(std::memory_order_acquire))
      detail::wait_while_equal(finished_, done);

    if (failed_.load(std::memory_order_relaxed)) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  // After a run_available job that `entered` workers joined: when some missed
  // `miss_limit_` jobs in a row, a worker may be queued behind the caller on
  // its CPU, so move the workers off that CPU. A worker that was merely asleep
  // is not helped by it, so the limit doubles each time (up to 64 jobs) until
  // all workers join again.
  void count_missing_workers(std::uint32_t entered) noexcept {
    if (!placement_.enabled()) return;
    if (entered == size_ - 1) {
      missed_jobs_ = 0;
      miss_limit_ = 2;
      return;
    }
    if (++missed_jobs_ < miss_limit_) return;
    for (long id : worker_ids_) placement_.move_off(id, caller_cpu_.load(std::memory_order_relaxed));
    missed_jobs_ = 0;
    miss_limit_ = std::min<std::uint32_t>(2 * miss_limit_, 64);
  }

  void execute(std::size_t index) noexcept {
    try {
      job_.invoke(job_.fn, index, size_);
    } catch (...) {
      if (!failed_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
    }
  }

  // Enters the job of `epoch` unless it closed or a newer one replaced it;
  // returns the worker's thread index in the job, 0 if it may not enter.
  std::size_t enter(std::uint32_t epoch, std::size_t own_index) noexcept {
    std::uint64_t state = entry_.load(std::memory_order_acquire);
    for (;;) {
      if ((state >> 32) != epoch || (state & closed_bit)) return 0;
      if (entry_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return own_index;
    }
  }

  void worker_loop(std::size_t index) {
    detail::this_thread_in_pool() = true;
    const long id = detail::current_thread_id();
    worker_ids_[index - 1] = id;
    // The caller's CPU is no place to wait for it: leave it before every job.
    auto leave_caller_cpu = [&] {
      const int cpu = caller_cpu_.load(std::memory_order_relaxed);
      if (placement_.enabled() && detail::current_cpu() == cpu) placement_.move_off(id, cpu);
    };
    leave_caller_cpu();
    finished_.fetch_add(1, std::memory_order_acq_rel);  // started: the constructor waits for this
    finished_.notify_one();
    std::uint32_t seen = 0;
    for (;;) {
      seen = detail::wait_while_equal(epoch_, seen);
      if (stopping_.load(std::memory_order_relaxed)) return;
      leave_caller_cpu();
      if (enter(seen, index) == 0) continue;  // too late for that job
      execute(index);
      finished_.fetch_add(1, std::memory_order_acq_rel);
      finished_.notify_one();
    }
  }

  void stop() noexcept {
    stopping_.store(true, std::memory_order_relaxed);
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_all();
    // In a fork() child the workers never existed: joining would wait forever.
    const bool forked_child = forked();
    for (auto& t : workers_) forked_child ? t.detach() : t.join();
    workers_.clear();
  }

  std::size_t size_;
  std::uint64_t fork_generation_;  // detail::fork_generation when the pool was made
  std::vector<std::thread> workers_;
  detail::cpu_placement placement_;  // the CPUs the pool's threads may use
  std::vector<long> worker_ids_;     // thread ids for placement_, written before the constructor returns
  std::uint32_t missed_jobs_ = 0, miss_limit_ = 2;  // count_missing_workers' state; the occupying caller's
  std::atomic<bool> busy_{false};  // a job occupies the pool (one outside caller at a time)
  job job_;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> stopping_{false};
  // Separate cache lines: workers poll epoch_, enter through entry_, and count
  // themselves out in finished_, which the caller polls.
  alignas(64) std::atomic<std::uint32_t> epoch_{0};
  std::atomic<int> caller_cpu_{-1};  // where the job's caller (or the constructor) ran when it published the job
  alignas(64) std::atomic<std::uint64_t> entry_{0};
  alignas(64) std::atomic<std::uint32_t> finished_{0};
};

}  // namespace dpar
