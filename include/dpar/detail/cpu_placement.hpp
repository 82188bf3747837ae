#pragma once
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
