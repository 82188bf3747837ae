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
