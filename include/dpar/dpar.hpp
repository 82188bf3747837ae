#pragma once
// dpar: generic data-parallel algorithms. This umbrella needs no CUDA compiler;
// GPU policies come from <dpar/cuda.hpp>, MPI ranks from <dpar/mpi.hpp>.
//
// The vocabulary headers (execution.hpp, deterministic.hpp, collective.hpp)
// name policies, traits and front doors; the umbrellas assemble the backends
// that give them meaning, each in one list (scripts/check-includes keeps every
// include running down).

#include "detail/cxx20.hpp"  // first: a clear error below C++20

// Vocabulary and front doors.
#include "algorithm.hpp"
#include "collective.hpp"
#include "communicator.hpp"
#include "concepts.hpp"
#include "deterministic.hpp"
#include "execution.hpp"
#include "functional.hpp"
#include "iterator.hpp"
#include "partition.hpp"
#include "sort.hpp"
#include "thread_pool.hpp"

// The CPU backends: seq and par (algorithms, sort, collectives), and
// deterministic(seq or par).
#include "detail/seq/backend.hpp"
#include "detail/seq/sort.hpp"
#include "detail/threads/all_reduce.hpp"
#include "detail/threads/backend.hpp"
#include "detail/threads/sort.hpp"
#include "detail/deterministic/backend.hpp"
