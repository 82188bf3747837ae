#pragma once
// User ops over MPI. MPI_Op_create with commute = 0 makes MPI combine operands
// in ascending rank order (MPI standard, section "User-Defined Reduction
// Operations"), which is exactly dpar's order guarantee, while MPI keeps its
// own tree or ring algorithm. Values travel as raw bytes, so they must be
// trivially copyable.
//
// The datatype and the MPI_Op are made once per value size and per op type
// and kept until MPI_Finalize (handle_cache.hpp). MPI's op function gets no
// pointer of ours, so the C++ op object of the current call reaches it
// through a thread_local pointer, set around the collective: MPI runs a
// blocking collective's op in the calling thread, so concurrent calls from
// several threads (MPI_THREAD_MULTIPLE, one communicator each) each see
// their own object. An exception must not cross MPI's C frames, so the
// trampoline catches it, and after the MPI call agree_on_failure (error.hpp)
// tells every rank whether some op threw; a noexcept combine (where nothing
// can fail, backend.hpp's cannot_fail_v) has nothing to catch.

#include "mpi_h.hpp"

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <type_traits>
#include <utility>

#include "error.hpp"
#include "handle_cache.hpp"

namespace dpar::detail::mpi {

// A contiguous datatype of Bytes bytes, made once.
template <std::size_t Bytes>
MPI_Datatype bytes_datatype() {
  static cached_handle<MPI_Datatype> slot;
  return handle_cache::get<MPI_Datatype, &MPI_Type_free>(slot, [] {
    MPI_Datatype type = MPI_DATATYPE_NULL;
    check(MPI_Type_contiguous(static_cast<int>(Bytes), MPI_BYTE, &type), "MPI_Type_contiguous");
    const int code = MPI_Type_commit(&type);
    if (code != MPI_SUCCESS) {
      MPI_Type_free(&type);
      check(code, "MPI_Type_commit");
    }
    return type;
  });
}

// The datatype that T values cross ranks as: its bytes.
template <class T>
MPI_Datatype byte_datatype() {
  static_assert(std::is_trivially_copyable_v<T>, "dpar::mpi: values that cross ranks must be trivially copyable");
  return bytes_datatype<sizeof(T)>();
}

// An op over T values (Combine: (const T& left, const T& right) -> T) as a
// non-commutative MPI_Op, bound to `combine` while this object lives, in
// this thread.
template <class T, class Combine>
class ordered_op {
  static_assert(std::is_trivially_copyable_v<T>,
                "dpar::mpi: values combined across ranks with a user op must be trivially copyable");

 public:
  explicit ordered_op(Combine& combine) : op_(cached()), previous_(std::exchange(current(), &combine)) {}
  ordered_op(const ordered_op&) = delete;
  ordered_op& operator=(const ordered_op&) = delete;
  ~ordered_op() {
    current() = previous_;
    failure() = nullptr;  // a failure nobody took must not show in the next call
  }

  MPI_Op get() const noexcept { return op_; }

  // After the MPI call: the op's exception if it threw in this rank (pass it
  // to agree_on_failure, which tells every rank).
  std::exception_ptr take_failure() noexcept { return std::exchange(failure(), nullptr); }

 private:
  static MPI_Op cached() {
    static cached_handle<MPI_Op> slot;
    return handle_cache::get<MPI_Op, &MPI_Op_free>(slot, [] {
      MPI_Op op = MPI_OP_NULL;
      check(MPI_Op_create(&trampoline, 0, &op), "MPI_Op_create");
      return op;
    });
  }

  static Combine*& current() noexcept {
    thread_local Combine* combine = nullptr;
    return combine;
  }
  static std::exception_ptr& failure() noexcept {
    thread_local std::exception_ptr error;
    return error;
  }

  // inout[i] = in[i] op inout[i]: `in` holds the lower ranks' operand.
  static void trampoline(void* in, void* inout, int* length, MPI_Datatype*) {
    Combine* combine = current();
    if (combine == nullptr) {
      // MPI ran the op in a thread with no call of this op type in flight:
      // there is no op object to run, and guessing would give wrong results.
      std::fputs("dpar::mpi: MPI ran a user op outside the thread that called the collective\n", stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);  // the one MPI call allowed inside an op
      return;
    }
    auto apply = [&] {
      auto* left = static_cast<const unsigned char*>(in);
      auto* right = static_cast<unsigned char*>(inout);
      for (int i = 0; i < *length; ++i, left += sizeof(T), right += sizeof(T)) {
        alignas(T) unsigned char a_bytes[sizeof(T)], b_bytes[sizeof(T)];
        std::memcpy(a_bytes, left, sizeof(T));
        std::memcpy(b_bytes, right, sizeof(T));
        T result = (*combine)(*std::launder(reinterpret_cast<const T*>(a_bytes)),
                              *std::launder(reinterpret_cast<const T*>(b_bytes)));
        std::memcpy(right, &result, sizeof(T));
      }
    };
    if constexpr (std::is_nothrow_invocable_v<Combine&, const T&, const T&>) {
      apply();  // a noexcept combine: nothing can cross MPI's frames
    } else {
      if (failure()) return;  // results are discarded anyway
      try {
        apply();
      } catch (...) {
        failure() = std::current_exception();
      }
    }
  }

  MPI_Op op_;
  Combine* previous_;
};

}  // namespace dpar::detail::mpi
