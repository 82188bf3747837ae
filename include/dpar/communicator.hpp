#pragma once
// dpar::communicator: collectives among K participants that each run in their
// own thread (SPMD), such as the replicas of a data-parallel training loop.
//
// Every collective call is two barrier rounds: each participant publishes its
// buffer in its slot, all meet (round 1), each checks that all called the same
// collective on the same element type and length, does its share of the work
// directly on the others' buffers, and all meet again (round 2) before anyone
// may touch its buffer or slot again. all_reduce gives participant r the r-th
// slice of the elements: it folds that slice of all K buffers in rank order
// and copies the result into every buffer (reduce-scatter, all-gather).
// reduce_scatter and all_gather are those two halves on their own, over the
// same slices (slice(): whole cache lines, in rank order), for work that
// each participant does on its own slice in between, such as a sharded
// optimizer update.
//
// Failure. A participant that throws would leave the others waiting forever in
// the next barrier. So the communicator can be poisoned: abort(rank, error)
// marks it failed and wakes every waiter; pending and later collective calls
// on every participant then throw dpar::collective_error naming the failed
// rank and its error. Collectives abort by themselves when a user op throws
// inside them or a rank is out of range. Between collectives, use one of:
//   - comm.run(pool, f): runs f(rank, K) on the K threads of `pool` and aborts
//     for any participant whose f throws; it rethrows the first original
//     error. It also catches a participant that returns while others still
//     wait in a collective (they get collective_error, nobody hangs).
//   - communicator::abort_guard g(comm, rank), spanning the participant's
//     whole use of the communicator: aborts if the scope is left by an
//     exception, and marks the rank gone if it is left normally, so that
//     others waiting for it in a collective throw instead of hanging.
// A collective that fails after round 1 still waits for every participant
// before returning, so no buffer is released while another participant writes
// it; the buffers then hold partial results. A poisoned communicator stays
// poisoned; make a new one to start over. Each rank must be used by one
// thread at a time. Prefer comm.run to pool.run: pool.run runs inline, on one
// thread, when nested or when the pool is busy with another thread's job, and
// rank 0 alone would then wait for the others (check its `threads` == K).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "detail/collective/kernels.hpp"
#include "errors.hpp"
#include "thread_pool.hpp"

namespace dpar {

class communicator {
 public:
  explicit communicator(std::size_t participants) : size_(checked_size(participants)), slots_(participants) {}
  communicator(const communicator&) = delete;
  communicator& operator=(const communicator&) = delete;

  std::size_t size() const noexcept { return size_; }

  // Every participant's `data` ends up holding the element-wise
  // op(...op(op(d0, d1), d2)..., d[K-1]) of all participants' data, rank order.
  template <class T, class Op = std::plus<>>
  void all_reduce(std::size_t rank, std::span<T> data, Op op = {}) {
    static_assert(!std::is_const_v<T>, "dpar::communicator::all_reduce writes its buffer; pass a span of non-const");
    collective(rank, kind::all_reduce, typeid(T), data.data(), data.size(), 0, [&] {
      auto buffer = [this](std::size_t r) { return static_cast<T*>(slots_[r].data); };
      detail::collective::slices<T> cut{data.size(), size_};
      detail::collective::keep finish;
      detail::collective::all_reduce_slice<T>(size_, buffer, cut.begin(rank), cut.begin(rank + 1), op, finish);
    });
  }

  // [first, last) of the elements of a `length`-element buffer of T that
  // participant `rank` owns in all_reduce, reduce_scatter and all_gather: an
  // even split of whole cache lines, in rank order; empty for some ranks when
  // there are fewer lines than participants.
  template <class T>
  std::pair<std::size_t, std::size_t> slice(std::size_t rank, std::size_t length) const {
    checked_rank(rank, "slice");
    detail::collective::slices<T> cut{length, size_};
    return {cut.begin(rank), cut.begin(rank + 1)};
  }

  // Participant r's slice r (slice<T>(r, data.size())) ends up holding the
  // element-wise op(...op(op(d0, d1), d2)..., d[K-1]) of all participants'
  // slice r, rank order: the same values all_reduce gives there. The rest of
  // each participant's buffer is left as it was.
  template <class T, class Op = std::plus<>>
  void reduce_scatter(std::size_t rank, std::span<T> data, Op op = {}) {
    static_assert(!std::is_const_v<T>, "dpar::communicator::reduce_scatter writes its buffer; pass a span of non-const");
    collective(rank, kind::reduce_scatter, typeid(T), data.data(), data.size(), 0, [&] {
      auto buffer = [this](std::size_t r) { return static_cast<T*>(slots_[r].data); };
      detail::collective::slices<T> cut{data.size(), size_};
      detail::collective::reduce_slice_into<T>(size_, buffer, rank, cut.begin(rank), cut.begin(rank + 1), op);
    });
  }

  // Every participant's slice r becomes a copy of participant r's slice r,
  // for every r (the slices of slice()): each participant copies the others'
  // slices into its own buffer.
  template <class T>
  void all_gather(std::size_t rank, std::span<T> data) {
    static_assert(!std::is_const_v<T>, "dpar::communicator::all_gather writes its buffer; pass a span of non-const");
    collective(rank, kind::all_gather, typeid(T), data.data(), data.size(), 0, [&] {
      detail::collective::slices<T> cut{data.size(), size_};
      for (std::size_t r = 0; r < size_; ++r) {
        if (r == rank) continue;
        const T* from = static_cast<const T*>(slots_[r].data);
        std::copy(from + cut.begin(r), from + cut.begin(r + 1), data.data() + cut.begin(r));
      }
    });
  }

  // Every participant's `data` ends up a copy of participant `root`'s.
  template <class T>
  void broadcast(std::size_t rank, std::span<T> data, std::size_t root = 0) {
    static_assert(!std::is_const_v<T>, "dpar::communicator::broadcast writes its buffer; pass a span of non-const");
    collective(rank, kind::broadcast, typeid(T), data.data(), data.size(), root, [&] {
      if (rank == root) return;
      const T* from = static_cast<const T*>(slots_[root].data);
      std::copy(from, from + data.size(), data.data());
    });
  }

  // Returns when all participants have called it.
  void barrier(std::size_t rank) {
    collective(rank, kind::barrier, typeid(void), nullptr, 0, 0, [] {});
  }

  // Marks participant `rank` failed with `error` and wakes everyone; all
  // pending and later collective calls throw collective_error. The first
  // abort wins; later ones are ignored.
  void abort(std::size_t rank, std::exception_ptr error = std::current_exception()) noexcept {
    std::string what = "unknown error";
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
    }
    poison("dpar::communicator: rank " + std::to_string(rank) + " failed: " + what, error);
  }

  bool aborted() const noexcept { return poisoned_.load(std::memory_order_acquire); }

  // For participants on threads of your own: put one around everything a
  // participant does with the communicator. Left by an exception, it aborts
  // the communicator for `rank`; left normally, it marks `rank` gone, like a
  // participant of run() that returns: others that wait for it in a
  // collective then throw collective_error (once every rank is gone the
  // communicator is clean again). Inside run() it does nothing; run does both.
  class abort_guard {
   public:
    abort_guard(communicator& comm, std::size_t rank)
        : comm_(comm), rank_(comm.checked_rank(rank, "abort_guard")), exceptions_(std::uncaught_exceptions()) {}
    abort_guard(const abort_guard&) = delete;
    abort_guard& operator=(const abort_guard&) = delete;
    ~abort_guard() {
      if (running_participant() == &comm_) return;
      if (std::uncaught_exceptions() > exceptions_)
        comm_.poison("dpar::communicator: rank " + std::to_string(rank_) + " left by an exception", nullptr);
      else
        comm_.depart(rank_);
    }

   private:
    communicator& comm_;
    std::size_t rank_;
    int exceptions_;
  };

  // Runs f(rank, size()) for every rank concurrently on the threads of `pool`,
  // which must run size() threads here (pool.size() == size(), not nested).
  // A participant that throws aborts the communicator; the first original
  // error is rethrown here. A participant that returns while others wait in a
  // collective makes them throw collective_error. It needs all K threads, so
  // it waits while another thread's job occupies the pool.
  template <class F>
  void run(thread_pool& pool, F&& f) {
    if (pool.concurrency() != size_)
      throw std::invalid_argument("dpar::communicator::run: the pool runs " + std::to_string(pool.concurrency()) +
                                  " threads concurrently here but the communicator has " + std::to_string(size_) +
                                  " participants");
    try {
      pool.submit_waiting([&](std::size_t rank, std::size_t) {
        struct participant_marker {
          const communicator* outer;
          explicit participant_marker(const communicator* comm) : outer(std::exchange(running_participant(), comm)) {}
          ~participant_marker() { running_participant() = outer; }
        } marker(this);
        try {
          f(rank, size_);
        } catch (...) {
          abort(rank, std::current_exception());
          throw;
        }
        depart(rank);
      });
    } catch (...) {
      std::exception_ptr first;
      {
        std::lock_guard lock(error_mutex_);
        first = first_error_;
      }
      if (first) std::rethrow_exception(first);
      throw;
    }
  }

 private:
  static constexpr std::size_t max_pool_participants = std::size_t{1} << 20;

  enum class kind : std::uint8_t { all_reduce, reduce_scatter, all_gather, broadcast, barrier };

  static const char* name(kind k) noexcept {
    switch (k) {
      case kind::all_reduce: return "all_reduce";
      case kind::reduce_scatter: return "reduce_scatter";
      case kind::all_gather: return "all_gather";
      case kind::broadcast: return "broadcast";
      default: return "barrier";
    }
  }

  // What a participant passed to its current collective; read by the others
  // between the two barrier rounds.
  struct alignas(64) slot {
    kind op = kind::barrier;
    const std::type_info* type = nullptr;
    void* data = nullptr;
    std::size_t length = 0;
    std::size_t root = 0;
    bool departed = false;
  };

  static std::size_t checked_size(std::size_t participants) {
    if (participants == 0) throw std::invalid_argument("dpar::communicator: needs at least 1 participant, got 0");
    if (participants > max_pool_participants)
      throw std::invalid_argument("dpar::communicator: " + std::to_string(participants) + " participants is too many; at most " +
                                  std::to_string(max_pool_participants));
    return participants;
  }

  // The communicator run() is running a participant of on this thread, if any.
  static const communicator*& running_participant() noexcept {
    thread_local const communicator* comm = nullptr;
    return comm;
  }

  std::size_t checked_rank(std::size_t rank, const char* what) const {
    if (rank >= size_)
      throw std::invalid_argument("dpar::communicator::" + std::string(what) + ": rank " + std::to_string(rank) +
                                  " is out of range for " + std::to_string(size_) + " participants");
    return rank;
  }

  template <class Work>
  void collective(std::size_t rank, kind op, const std::type_info& type, void* data, std::size_t length,
                  std::size_t root, Work&& work) {
    try {
      checked_rank(rank, name(op));
    } catch (const std::invalid_argument&) {
      // The others would wait for the right rank forever: abort with this
      // error, which run() then rethrows.
      abort(rank, std::current_exception());
      throw;
    }
    throw_if_poisoned();
    slots_[rank] = slot{op, &type, data, length, root, false};
    arrive_and_wait(wait_mode::until_poisoned);
    std::string mismatch = check(op);
    if (mismatch.empty()) {
      try {
        work();
      } catch (...) {
        // Others may still be working on this rank's buffer: abort, but wait
        // for everyone before leaving, then rethrow the original error.
        std::exception_ptr error = std::current_exception();
        abort(rank, error);
        try {
          arrive_and_wait(wait_mode::until_everyone);
        } catch (const collective_error&) {
        }
        std::rethrow_exception(error);
      }
    }
    arrive_and_wait(wait_mode::until_everyone);
    if (!mismatch.empty()) throw collective_error(mismatch);
  }

  // "" if every participant called the same collective as rank 0, with the
  // same element type, length and root; else a message naming the ranks.
  std::string check(kind op) const {
    const slot& first = slots_[0];
    std::string what = "dpar::communicator::" + std::string(name(op)) + ": ";
    for (std::size_t r = 1; r < size_; ++r) {
      const slot& s = slots_[r];
      std::string rank = "rank " + std::to_string(r), rank0 = "rank 0";
      if (s.op != first.op)
        return what + rank + " called " + name(s.op) + " while " + rank0 + " called " + name(first.op);
      if (*s.type != *first.type)
        return what + rank + " passed elements of type " + s.type->name() + " but " + rank0 + " passed " +
               first.type->name();
      if (s.length != first.length)
        return what + rank + " passed " + std::to_string(s.length) + " elements but " + rank0 + " passed " +
               std::to_string(first.length) + "; all participants must pass the same length";
      if (s.root != first.root)
        return what + rank + " named root " + std::to_string(s.root) + " but " + rank0 + " named root " +
               std::to_string(first.root);
    }
    if (first.root >= size_)
      return what + "root " + std::to_string(first.root) + " is out of range for " + std::to_string(size_) +
             " participants";
    return {};
  }

  void throw_if_poisoned() {
    if (!poisoned_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(error_mutex_);
    throw collective_error(error_message_);
  }

  // Round 1 of a collective may wait for a participant that will never come
  // (it threw between collectives), so its waiters leave as soon as the
  // communicator is poisoned. In round 2 everyone is inside the collective
  // and may still work on the others' buffers, so nobody leaves before all
  // have arrived.
  enum class wait_mode { until_poisoned, until_everyone };

  // One barrier round. The state word packs the round number, the arrivals
  // in it and the poison bit, so arrivals and poison are totally ordered: a
  // round whose last arrival came before the poison completes normally; one
  // that sees the poison fails for everyone. A round-1 waiter may leave on
  // poison only while its round lacks arrivals, since any later arrival sees
  // the poison and nobody will then work on its buffer.
  void arrive_and_wait(wait_mode mode) {
    std::uint64_t before = state_.fetch_add(1, std::memory_order_acq_rel);
    std::uint64_t round = before & round_mask;
    if (arrivals(before) + 1 == size_) {
      complete_round(before);
    } else {
      for (;;) {
        std::uint32_t seen = generation_.load(std::memory_order_acquire);
        std::uint64_t now = state_.load(std::memory_order_acquire);
        if ((now & round_mask) != round) break;  // completed
        if (mode == wait_mode::until_poisoned && (now & poison_bit) && arrivals(now) < size_) throw_if_poisoned();
        detail::wait_while_equal(generation_, seen);
      }
    }
    if (round_failed_.load(std::memory_order_relaxed)) throw_if_poisoned();
  }

  // A participant of run() that returned: it counts as an arrival that will
  // never wait. If all arrivals of a round are departures, run() is over and
  // the communicator is clean again; a round that mixes them means someone
  // waits for a participant that is gone.
  void depart(std::size_t rank) {
    slots_[rank].departed = true;
    departed_.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t before = state_.fetch_add(1, std::memory_order_acq_rel);
    if (arrivals(before) + 1 == size_) complete_round(before);
  }

  // Run by the last arrival; `before` is the state it saw when it arrived.
  void complete_round(std::uint64_t before) {
    bool failed = (before & poison_bit) != 0;
    std::size_t gone = departed_.load(std::memory_order_relaxed);
    if (gone == size_) {
      departed_.store(0, std::memory_order_relaxed);
      for (auto& s : slots_) s.departed = false;
    } else if (gone != 0) {
      std::string ranks;
      for (std::size_t r = 0; r < size_; ++r)
        if (slots_[r].departed) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
      poison("dpar::communicator: rank(s) " + ranks +
                 " returned from their function while other participants waited in a collective",
             nullptr);
      failed = true;
    }
    round_failed_.store(failed, std::memory_order_relaxed);
    // Next round, no arrivals, poison bit kept.
    std::uint64_t now = state_.load(std::memory_order_relaxed);
    while (!state_.compare_exchange_weak(now, (now & poison_bit) | (((now & round_mask) + round_unit) & round_mask),
                                         std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
  }

  static std::size_t arrivals(std::uint64_t state) noexcept { return static_cast<std::size_t>(state & count_mask); }

  void poison(std::string message, std::exception_ptr error) noexcept {
    {
      std::lock_guard lock(error_mutex_);
      if (poisoned_.load(std::memory_order_relaxed)) return;
      error_message_ = std::move(message);
      first_error_ = error;
      poisoned_.store(true, std::memory_order_release);
    }
    state_.fetch_or(poison_bit, std::memory_order_acq_rel);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
  }

  std::size_t size_;
  std::vector<slot> slots_;
  std::mutex error_mutex_;
  std::string error_message_;
  std::exception_ptr first_error_;
  std::atomic<bool> poisoned_{false};
  std::atomic<std::size_t> departed_{0};
  // state_: bit 63 poison, bits 32-62 round number, bits 0-31 arrivals in the round.
  static constexpr std::uint64_t poison_bit = std::uint64_t{1} << 63;
  static constexpr std::uint64_t count_mask = (std::uint64_t{1} << 32) - 1;
  static constexpr std::uint64_t round_unit = std::uint64_t{1} << 32;
  static constexpr std::uint64_t round_mask = ~(poison_bit | count_mask);
  alignas(64) std::atomic<std::uint64_t> state_{0};
  std::atomic<bool> round_failed_{false};     // set by the completer of the last round
  std::atomic<std::uint32_t> generation_{0};  // bumped by completion and poison; waiters sleep on it
};

}  // namespace dpar
