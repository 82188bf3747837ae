#pragma once
// dpar: generic data-parallel algorithms. This umbrella needs no CUDA compiler;
// GPU policies come from <dpar/cuda.hpp>.

#include "detail/cxx20.hpp"  // first: a clear error below C++20

#include "algorithm.hpp"
#include "collective.hpp"
#include "concepts.hpp"
#include "deterministic.hpp"
#include "execution.hpp"
#include "functional.hpp"
#include "iterator.hpp"
#include "sort.hpp"
#include "thread_pool.hpp"
