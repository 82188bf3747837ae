#pragma once
// User ops over MPI. MPI_Op_create with commute = 0 makes MPI combine operands
// in ascending rank order (MPI standard, section "User-Defined Reduction
// Operations"), which is exactly dpar's order guarantee, while MPI keeps its
// own tree or ring algorithm. Values travel as raw bytes, so they must be
// trivially copyable.
//
// MPI calls the op from inside MPI_Allreduce / MPI_Exscan in the calling
// thread; a thread_local pointer hands it the C++ op object. An exception
// must not cross MPI's C frames, so the trampoline catches it, and after the
// MPI call agree_on_failure (error.hpp) tells every rank whether some op threw.

#include "mpi_h.hpp"

#include <cstring>
#include <exception>
#include <new>
#include <type_traits>
#include <utility>

#include "error.hpp"

namespace dpar::detail::mpi {

// A contiguous datatype of sizeof(T) bytes, freed on scope exit.
template <class T>
class byte_type {
 public:
  byte_type() {
    check(MPI_Type_contiguous(static_cast<int>(sizeof(T)), MPI_BYTE, &type_), "MPI_Type_contiguous");
    int code = MPI_Type_commit(&type_);
    if (code != MPI_SUCCESS) {
      MPI_Type_free(&type_);
      check(code, "MPI_Type_commit");
    }
  }
  byte_type(const byte_type&) = delete;
  byte_type& operator=(const byte_type&) = delete;
  ~byte_type() { MPI_Type_free(&type_); }
  MPI_Datatype get() const noexcept { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// An op over T values (Combine: (const T& left, const T& right) -> T) as a
// non-commutative MPI_Op, valid while this object lives in this thread.
template <class T, class Combine>
class ordered_op {
  static_assert(std::is_trivially_copyable_v<T>,
                "dpar::mpi: values combined across ranks with a user op must be trivially copyable");

 public:
  explicit ordered_op(Combine& combine) : previous_(current()) {
    current() = &combine;
    int code = MPI_Op_create(&trampoline, 0, &op_);
    if (code != MPI_SUCCESS) {
      current() = previous_;
      check(code, "MPI_Op_create");
    }
  }
  ordered_op(const ordered_op&) = delete;
  ordered_op& operator=(const ordered_op&) = delete;
  ~ordered_op() {
    MPI_Op_free(&op_);
    current() = previous_;
  }

  MPI_Op get() const noexcept { return op_; }

  // After the MPI call: the op's exception if it threw in this rank (pass it
  // to agree_on_failure, which tells every rank).
  std::exception_ptr take_failure() noexcept { return std::exchange(failure(), nullptr); }

 private:
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
    if (failure()) return;  // results are discarded anyway
    try {
      auto* left = static_cast<const unsigned char*>(in);
      auto* right = static_cast<unsigned char*>(inout);
      for (int i = 0; i < *length; ++i, left += sizeof(T), right += sizeof(T)) {
        alignas(T) unsigned char a_bytes[sizeof(T)], b_bytes[sizeof(T)];
        std::memcpy(a_bytes, left, sizeof(T));
        std::memcpy(b_bytes, right, sizeof(T));
        T result = (*current())(*std::launder(reinterpret_cast<const T*>(a_bytes)),
                                *std::launder(reinterpret_cast<const T*>(b_bytes)));
        std::memcpy(right, &result, sizeof(T));
      }
    } catch (...) {
      failure() = std::current_exception();
    }
  }

  Combine* previous_;
  MPI_Op op_ = MPI_OP_NULL;
};

}  // namespace dpar::detail::mpi
