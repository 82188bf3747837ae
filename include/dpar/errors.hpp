#pragma once
// The exception types every backend shares. Vendor errors that need their
// library's headers (cuda_error, nccl_error) live with their backend.

#include <stdexcept>
#include <string>

namespace dpar {

// A collective operation failed: a participant aborted or left, or the
// participants called it inconsistently (lengths, types, roots).
class collective_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An MPI call failed, or a rank failed inside a collective dpar runs over MPI.
class mpi_error : public collective_error {
 public:
  mpi_error(const std::string& what, int code) : collective_error(what), code_(code) {}
  // MPI's error code (MPI_SUCCESS when the failure was detected by dpar itself).
  int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace dpar
