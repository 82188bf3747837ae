#pragma once
// MPI failures as exceptions. dpar switches the communicator to
// MPI_ERRORS_RETURN for the duration of each call (restoring the caller's
// handler afterwards) and turns every error code into dpar::mpi_error, whose
// message names the MPI function and carries MPI's own error string.

#include <mpi.h>

#include <string>

#include "../../communicator.hpp"  // dpar::collective_error

namespace dpar {

class mpi_error : public collective_error {
 public:
  mpi_error(const std::string& what, int code) : collective_error(what), code_(code) {}
  // MPI's error code (MPI_SUCCESS when the failure was detected by dpar itself).
  int code() const noexcept { return code_; }

 private:
  int code_;
};

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

// MPI_ERRORS_RETURN on `comm` while it lives, so failures come back as codes.
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
