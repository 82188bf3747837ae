#pragma once
// MPI handles that dpar creates once and keeps until MPI_Finalize: the byte
// datatypes values cross ranks as, and the ordered MPI_Ops of user ops (and,
// through at_finalize, the communicators of private_comm.hpp).
// Creating and freeing them around every call cost more than a small
// MPI_Allreduce itself (2.4-3.5x raw at 8 bytes on 2 ranks, bench/RESULTS.md).
//
// They are freed by the delete callback of an attribute on MPI_COMM_SELF:
// MPI_Finalize deletes MPI_COMM_SELF's attributes first, while MPI still
// works (MPI-3.1 section 8.7.1), so no handle outlives MPI and none leaks.
// No call may be in flight in another thread then (MPI_Finalize requires
// that anyway).

#include "mpi_h.hpp"

#include <atomic>
#include <exception>
#include <mutex>
#include <vector>

#include "error.hpp"

namespace dpar::detail::mpi {

// One cached handle; `ready` is set once `handle` is made.
template <class Handle>
struct cached_handle {
  std::atomic<bool> ready{false};
  Handle handle{};
};

class handle_cache {
 public:
  // slot's handle, made by make() on first use; Free releases it at
  // MPI_Finalize. After the first use this is one acquire load.
  template <class Handle, int (*Free)(Handle*), class Make>
  static Handle get(cached_handle<Handle>& slot, Make&& make) {
    if (slot.ready.load(std::memory_order_acquire)) return slot.handle;
    return instance().add<Handle, Free>(slot, make);
  }

  // Calls release(p) at MPI_Finalize, with the cached handles (newest
  // first): the one hook for everything dpar keeps until then
  // (private_comm.hpp's duplicates too).
  static void at_finalize(void* p, void (*release)(void*) noexcept) {
    handle_cache& cache = instance();
    std::lock_guard lock(cache.mutex_);
    cache.hook_finalize();
    cache.entries_.push_back({p, release});
  }

 private:
  struct entry {
    void* slot;
    void (*release)(void*) noexcept;
  };

  // Never destroyed: MPI_Finalize may run from a static destructor, after
  // this file's statics would be gone.
  static handle_cache& instance() {
    static handle_cache* cache = new handle_cache;
    return *cache;
  }

  template <class Handle, int (*Free)(Handle*)>
  static void release(void* p) noexcept {
    auto& slot = *static_cast<cached_handle<Handle>*>(p);
    slot.ready.store(false, std::memory_order_relaxed);
    Free(&slot.handle);
  }

  // Under the lock, so that threads racing to a first use make one handle.
  template <class Handle, int (*Free)(Handle*), class Make>
  Handle add(cached_handle<Handle>& slot, Make& make) {
    std::lock_guard lock(mutex_);
    if (slot.ready.load(std::memory_order_relaxed)) return slot.handle;
    hook_finalize();
    entries_.reserve(entries_.size() + 1);  // so that nothing throws once the handle exists
    slot.handle = make();
    entries_.push_back({&slot, &release<Handle, Free>});
    slot.ready.store(true, std::memory_order_release);
    return slot.handle;
  }

  void hook_finalize() {
    if (keyval_ != MPI_KEYVAL_INVALID) return;
    int keyval = MPI_KEYVAL_INVALID;
    check(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &on_finalize, &keyval, nullptr), "MPI_Comm_create_keyval");
    const int code = MPI_Comm_set_attr(MPI_COMM_SELF, keyval, nullptr);
    if (code != MPI_SUCCESS) {
      MPI_Comm_free_keyval(&keyval);
      check(code, "MPI_Comm_set_attr");
    }
    keyval_ = keyval;
  }

  // MPI's C code calls this: nothing may throw out of it.
  // The releases run outside the lock: they may take locks of their own
  // (private_comm.hpp's), which are held while registering here.
  static int on_finalize(MPI_Comm, int, void*, void*) noexcept {
    handle_cache& cache = instance();
    std::vector<entry> entries;
    try {
      std::lock_guard lock(cache.mutex_);
      entries.swap(cache.entries_);
      MPI_Comm_free_keyval(&cache.keyval_);  // sets it to MPI_KEYVAL_INVALID
    } catch (...) {
      return MPI_ERR_OTHER;  // only std::mutex can throw here
    }
    for (auto e = entries.rbegin(); e != entries.rend(); ++e) e->release(e->slot);
    return MPI_SUCCESS;
  }

  std::mutex mutex_;
  std::vector<entry> entries_;
  int keyval_ = MPI_KEYVAL_INVALID;
};

}  // namespace dpar::detail::mpi
