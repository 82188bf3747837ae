#pragma once
// <mpi.h> without the deprecated MPI C++ bindings (dpar uses the C API only),
// which also keeps their warnings and compile time away.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
