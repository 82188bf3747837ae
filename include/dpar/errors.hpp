#pragma once
// The exception types every backend shares. cuda_error, which carries CUDA's
// own error type, is in gpu/error.hpp.

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

// An NCCL call failed in a dpar::multi_gpu collective: the message names the
// operation and carries NCCL's text; code() is NCCL's ncclResult_t.
class nccl_error : public collective_error {
 public:
  nccl_error(const std::string& what, int code) : collective_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace dpar
