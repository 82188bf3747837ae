#pragma once
// dpar's own duplicate of each communicator it is given, made on first use
// with MPI_ERRORS_RETURN set once, and every collective of that policy runs
// on it. Why:
//   - switching the user's communicator to MPI_ERRORS_RETURN and back around
//     each call (errors_return) was 7-9% of an 8-byte reduce on 2 ranks
//     (bench/RESULTS.md); the duplicate's handler never changes, and the
//     user's is never touched after the first call;
//   - dpar's messages live in the duplicate's own context, so they cannot
//     match the user's own traffic on the same communicator (a user's
//     pending MPI_Irecv with MPI_ANY_TAG never sees dpar's messages).
//
// The duplicate is an attribute of the user's communicator: MPI_Comm_free of
// the user's communicator runs the delete callback, which frees it.
// Predefined communicators are never freed by the user, so MPI_Finalize
// frees what is left, first thing (handle_cache's hook on MPI_COMM_SELF).
//
// MPI_Comm_dup is collective. The first dpar call on a communicator is a
// collective call, so every rank of it makes the duplicate in that same call.
// Two threads never make the same communicator's duplicate at once: that
// would be two collective calls on one communicator at once, which MPI
// forbids; so no lock is held across MPI_Comm_dup (a lock there would let
// thread A of rank 0 wait for thread B's duplicate while rank 1's thread B
// waits in MPI_Comm_dup for rank 0's).

#include "mpi_h.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "error.hpp"
#include "handle_cache.hpp"

namespace dpar::detail::mpi {

// A communicator with this process's rank in it and its size, which never
// change: kept beside it, they cost no MPI call per collective (MPI_Comm_rank
// and MPI_Comm_size together took 8 ns, near 2% of an 8-byte reduce).
struct ranked_comm {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 0;
};

class private_comms {
 public:
  // The duplicate of `user` (collective on its first use for `user`).
  static const ranked_comm& of(MPI_Comm user) {
    // A one-entry cache per thread: a call finds its communicator in a few
    // nanoseconds, not the 17-25 ns of MPI_Comm_get_attr. `generation`
    // changes whenever a duplicate is freed, so a freed communicator whose
    // handle MPI reuses never finds a stale entry.
    thread_local last_use last;
    private_comms& all = instance();
    const unsigned long generation = all.generation_.load(std::memory_order_acquire);
    if (last.user == user && last.generation == generation) return last.dup;
    ranked_comm dup{all.find_or_make(user)};
    check(MPI_Comm_rank(dup.comm, &dup.rank), "MPI_Comm_rank");
    check(MPI_Comm_size(dup.comm, &dup.size), "MPI_Comm_size");
    last = {user, dup, generation};
    return last.dup;
  }

 private:
  // The attribute's value: a duplicate, or MPI_COMM_NULL once MPI_Finalize
  // freed it (the attribute itself may be deleted later than that).
  struct entry {
    MPI_Comm dup = MPI_COMM_NULL;
  };
  struct last_use {
    MPI_Comm user = MPI_COMM_NULL;
    ranked_comm dup;
    unsigned long generation = 0;
  };

  // Never destroyed: MPI may delete attributes from a static destructor.
  static private_comms& instance() {
    static private_comms* comms = new private_comms;
    return *comms;
  }

  // The keyval of the attribute, made once, under the lock (no collective
  // in there), with the duplicates left at MPI_Finalize freed then.
  int keyval() {
    std::lock_guard lock(mutex_);
    if (keyval_ != MPI_KEYVAL_INVALID) return keyval_;
    // MPI_COMM_NULL_COPY_FN: a communicator the user duplicates gets its own
    // duplicate on its first use, not this one.
    int key = MPI_KEYVAL_INVALID;
    check(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &on_delete, &key, nullptr), "MPI_Comm_create_keyval");
    try {
      handle_cache::at_finalize(this, &on_finalize);
    } catch (...) {
      MPI_Comm_free_keyval(&key);
      throw;
    }
    keyval_ = key;
    return keyval_;
  }

  MPI_Comm find_or_make(MPI_Comm user) {
    // Under the caller's error handler switched to MPI_ERRORS_RETURN, as
    // every dpar call was before; a duplicate made here inherits it.
    errors_return guard(user);
    const int key = keyval();
    void* value = nullptr;
    int found = 0;
    check(MPI_Comm_get_attr(user, key, &value, &found), "MPI_Comm_get_attr");
    if (found) return static_cast<entry*>(value)->dup;
    auto made = std::make_unique<entry>();
    {
      std::lock_guard lock(mutex_);
      entries_.push_back(made.get());  // first: nothing may throw once the duplicate exists
    }
    const char* step = "MPI_Comm_dup";
    int code = MPI_Comm_dup(user, &made->dup);
    if (code == MPI_SUCCESS) step = "MPI_Comm_set_errhandler", code = MPI_Comm_set_errhandler(made->dup, MPI_ERRORS_RETURN);
    if (code == MPI_SUCCESS) step = "MPI_Comm_set_attr", code = MPI_Comm_set_attr(user, key, made.get());
    if (code != MPI_SUCCESS) {
      if (made->dup != MPI_COMM_NULL) MPI_Comm_free(&made->dup);
      {
        std::lock_guard lock(mutex_);
        std::erase(entries_, made.get());
      }
      check(code, step);
    }
    return made.release()->dup;
  }

  // The user freed `user` (or MPI_Finalize deletes a predefined
  // communicator's attributes): free its duplicate unless MPI_Finalize did.
  // MPI's C code calls these two: nothing may throw out of them.
  static int on_delete(MPI_Comm, int, void* value, void*) noexcept {
    private_comms& all = instance();
    std::unique_ptr<entry> e(static_cast<entry*>(value));
    try {
      std::lock_guard lock(all.mutex_);
      std::erase(all.entries_, e.get());
    } catch (...) {
      return MPI_ERR_OTHER;  // only std::mutex can throw here
    }
    int code = MPI_SUCCESS;
    if (e->dup != MPI_COMM_NULL) code = MPI_Comm_free(&e->dup);
    all.generation_.fetch_add(1, std::memory_order_acq_rel);
    return code;
  }

  // MPI_Finalize: frees every duplicate left, while MPI still works. Their
  // entries stay (reachable, MPI_COMM_NULL) until their attributes are
  // deleted, if ever.
  static void on_finalize(void* self) noexcept {
    private_comms& all = *static_cast<private_comms*>(self);
    try {
      std::lock_guard lock(all.mutex_);
      for (auto e = all.entries_.rbegin(); e != all.entries_.rend(); ++e)
        if ((*e)->dup != MPI_COMM_NULL) MPI_Comm_free(&(*e)->dup);  // sets it to MPI_COMM_NULL
      MPI_Comm_free_keyval(&all.keyval_);  // MPI keeps it while attributes use it
    } catch (...) {
      return;  // only std::mutex can throw here; MPI_Finalize goes on
    }
    all.generation_.fetch_add(1, std::memory_order_acq_rel);
  }

  std::mutex mutex_;
  std::vector<entry*> entries_;  // those whose attribute is not deleted yet
  int keyval_ = MPI_KEYVAL_INVALID;
  std::atomic<unsigned long> generation_{1};
};

// The communicator dpar's collectives run on for a policy over `user`.
inline MPI_Comm private_comm(MPI_Comm user) { return private_comms::of(user).comm; }
// The same with this process's rank in it and its size.
inline ranked_comm private_ranked_comm(MPI_Comm user) { return private_comms::of(user); }

}  // namespace dpar::detail::mpi
