#pragma once
// MPI failures as exceptions. dpar's collectives run on its own duplicate of
// the caller's communicator, which has MPI_ERRORS_RETURN (private_comm.hpp;
// the caller's handler is switched to it only while that duplicate is made),
// and every error code becomes dpar::mpi_error, whose message names the MPI
// function and carries MPI's own error string.

#include "mpi_h.hpp"

#include <climits>
#include <exception>
#include <string>

#include "../../errors.hpp"

namespace dpar {

namespace detail::mpi {

inline std::string error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

// Throws mpi_error if `code`, returned by the MPI function `function`, is not MPI_SUCCESS.
inline void check(int code, const char* function) {
  if (code != MPI_SUCCESS)
    throw mpi_error(std::string("dpar::mpi: ") + function + " failed: " + error_string(code), code);
}

inline int rank_of(MPI_Comm comm) {
  int rank = 0;
  check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  return rank;
}
inline int size_of(MPI_Comm comm) {
  int size = 0;
  check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  return size;
}

// What a rank gets when a user function threw on rank `failed` and not here.
[[noreturn]] inline void throw_failed_elsewhere(int failed) {
  throw collective_error("dpar::mpi: a user function threw on rank " + std::to_string(failed) +
                         ", so this collective call failed on every rank");
}

// A rank's failure as one int, so that the lowest (MPI_MIN, or std::min
// inside an op) is the one every rank names: rank r's local phase threw: r;
// the user op threw inside MPI on rank r: ranks + r; nothing: none.
struct failure_code {
  static constexpr int none = INT_MAX;
  static int of(int rank, int ranks, std::exception_ptr local_error, std::exception_ptr op_error) noexcept {
    return local_error ? rank : op_error ? ranks + rank : none;
  }
  // On every rank after the codes were combined: a rank that failed itself
  // rethrows its own exception; the others throw naming the lowest failure.
  static void raise(int lowest, int ranks, std::exception_ptr local_error, std::exception_ptr op_error) {
    if (local_error) std::rethrow_exception(local_error);
    if (op_error) std::rethrow_exception(op_error);
    if (lowest < ranks) throw_failed_elsewhere(lowest);
    if (lowest != none)
      throw mpi_error("dpar::mpi: the reduction op threw on rank " + std::to_string(lowest - ranks), MPI_SUCCESS);
  }
};

// Collective, after a step that every rank joined even if it failed: a rank
// whose local phase threw (local_error) or whose user op threw inside MPI
// (op_error) rethrows its own exception; every other rank throws naming the
// lowest rank that failed. So nobody is left waiting in a later collective.
inline void agree_on_failure(MPI_Comm comm, std::exception_ptr local_error, std::exception_ptr op_error) {
  const int size = size_of(comm);
  int mine = failure_code::of(rank_of(comm), size, local_error, op_error), lowest = failure_code::none;
  check(MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  failure_code::raise(lowest, size, local_error, op_error);
}

// MPI_ERRORS_RETURN on `comm` while it lives, so failures come back as codes
// (for the calls on the caller's own communicator).
class errors_return {
 public:
  explicit errors_return(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_get_errhandler(comm_, &previous_), "MPI_Comm_get_errhandler");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  }
  errors_return(const errors_return&) = delete;
  errors_return& operator=(const errors_return&) = delete;
  ~errors_return() {
    MPI_Comm_set_errhandler(comm_, previous_);
    MPI_Errhandler_free(&previous_);
  }

 private:
  MPI_Comm comm_;
  MPI_Errhandler previous_ = MPI_ERRHANDLER_NULL;
};

}  // namespace detail::mpi
}  // namespace dpar
