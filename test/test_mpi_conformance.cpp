// The conformance suite over MPI ranks (part of test_mpi, whose main is in
// mpi_main.cpp).
#include "mpi_common.hpp"

using dpar_test_mpi::mpi_adaptor;

// One element type: the MPI backend treats every arithmetic type alike (a
// built-in datatype), each type costs compile time, and the CPU suite covers
// int, long long, float and double; mat2 and money below take the ordered
// user-op path.
DPAR_CONFORMANCE_ALGORITHMS(mpi_adaptor, "mpi", long long)
DPAR_CONFORMANCE_TYPES(mpi_adaptor, "mpi")
DPAR_CONFORMANCE_HOST(mpi_adaptor, "mpi")
DPAR_CONFORMANCE_DERIVED(mpi_adaptor, "mpi")

// deterministic(mpi(...)) runs the derived algorithms as mpi(...) does.
struct deterministic_mpi_adaptor : mpi_adaptor {
  template <class Body>
  static void for_each_policy(Body&& body) {
    dpar_test::within_seconds(120, "an MPI conformance case", [&] {
      body(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD)), std::string("deterministic(mpi(seq))"));
      body(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD, dpar::par)), std::string("deterministic(mpi(par))"));
    });
  }
};
DPAR_CONFORMANCE_DERIVED(deterministic_mpi_adaptor, "deterministic_mpi")
