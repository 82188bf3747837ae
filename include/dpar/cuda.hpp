#pragma once
// dpar's GPU policies: dpar::gpu (one CUDA device and stream), dpar::multi_gpu
// (several), dpar::device_vector, dpar::sharded_vector and dpar::cuda_error.
// Needs nvcc (or another CUDA compiler) with -std=c++20 --extended-lambda
// --expt-relaxed-constexpr; the dpar::dpar CMake target adds those flags to
// CUDA sources.
//
// User functions run on the device: pass functor structs whose operator() is
// __host__ __device__, or __host__ __device__ lambdas. (A __device__-only
// lambda cannot be called on the host, so the algorithms' host-side concept
// checks reject it.) See docs/gpu.md.

#if !defined(__CUDACC__)
#error "dpar/cuda.hpp needs a CUDA compiler: build this file as CUDA (nvcc, a .cu file or LANGUAGE CUDA). Code built by a plain C++ compiler includes <dpar/dpar.hpp> only."
#endif

#include "dpar.hpp"

// The public GPU types: policies, containers, errors.
#include "gpu/device_vector.hpp"    // dpar::device_vector
#include "gpu/error.hpp"            // dpar::cuda_error
#include "gpu/multi_gpu_policy.hpp" // dpar::multi_gpu
#include "gpu/policy.hpp"           // dpar::gpu
#include "gpu/sharded_vector.hpp"   // dpar::sharded_vector
#include "sharded_algorithms.hpp"   // the algorithms, sort and all_reduce on sharded_vectors

// The backends, in one list: one device (CUB), several devices (each shard on
// its device; the device all_reduce over NCCL needs DPAR_HAVE_NCCL and libnccl,
// CMake: dpar::nccl), their sorts, and deterministic(gpu or multi_gpu).
#include "detail/cuda/backend.hpp"
#include "detail/cuda/algorithms.hpp"  // the algorithms of dpar/algorithm/ that dpar::gpu runs
#include "detail/cuda/sort.hpp"
#include "detail/multi_gpu/all_reduce.hpp"
#include "detail/multi_gpu/backend.hpp"
#include "detail/multi_gpu/sort.hpp"
#include "detail/deterministic/gpu.hpp"

namespace dpar::detail {
// Both GPU backends provide every algorithm the front doors call.
static_assert(backend_for<cuda::backend, gpu_policy>);
static_assert(backend_for<multi_gpu::backend, multi_gpu_policy>);
}  // namespace dpar::detail
