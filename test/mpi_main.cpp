// main() of the MPI test programs (test_mpi, test_deterministic_mpi): every
// rank runs the Catch session; the program fails on every rank if a test
// failed on any.
#include "catch_run.hpp"

#include <mpi.h>

int main(int argc, char** argv) {
  // MPI_THREAD_MULTIPLE where MPI has it: the cache tests call from two threads.
  int provided = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int result = dpar_test::run_catch(argc, argv);
  int worst = 0;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
