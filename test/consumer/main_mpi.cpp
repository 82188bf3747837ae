// Built against an installed dpar with COMPONENTS mpi: dpar::mpi brings MPI.
#include <dpar/mpi.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<long> local(1000);
  std::iota(local.begin(), local.end(), 1L + 1000L * rank);
  long sum = dpar::reduce(dpar::mpi(MPI_COMM_WORLD), local, 0L);
  long n = 1000L * size, expected = n * (n + 1) / 2;
  if (rank == 0) std::printf("consumer_mpi: %d ranks, sum %ld, expected %ld\n", size, sum, expected);
  MPI_Finalize();
  return sum == expected ? 0 : 1;
}
