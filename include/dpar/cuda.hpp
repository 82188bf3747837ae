#pragma once
// dpar's GPU policies: dpar::gpu (one CUDA device and stream), dpar::cuda_error
// and dpar::device_vector. Needs nvcc (or another CUDA compiler) with
// -std=c++20 --extended-lambda --expt-relaxed-constexpr; the dpar::dpar CMake
// target adds those flags to CUDA sources.
//
// User functions run on the device: pass functor structs whose operator() is
// __host__ __device__, or __host__ __device__ lambdas. (A __device__-only
// lambda cannot be called on the host, so the algorithms' host-side concept
// checks reject it.) See docs/gpu.md.

#if !defined(__CUDACC__)
#error "dpar/cuda.hpp needs a CUDA compiler: build this file as CUDA (nvcc, a .cu file or LANGUAGE CUDA). Code built by a plain C++ compiler includes <dpar/dpar.hpp> only."
#endif

#include "dpar.hpp"
#include "detail/cuda/algorithms.hpp"
#include "detail/cuda/backend.hpp"
#include "detail/cuda/device_vector.hpp"
#include "detail/cuda/error.hpp"
#include "detail/cuda/policy.hpp"

// dpar::multi_gpu, dpar::sharded_vector and the device all_reduce. The NCCL
// path of all_reduce needs DPAR_HAVE_NCCL and libnccl (CMake: dpar::nccl).
#include "detail/multi_gpu/all_reduce.hpp"
#include "detail/multi_gpu/backend.hpp"
#include "detail/multi_gpu/policy.hpp"
#include "detail/multi_gpu/sharded_vector.hpp"
#include "sharded_algorithms.hpp"

// dpar::sort, stable_sort and sort_by_key on dpar::gpu (CUB) and dpar::multi_gpu.
#include "detail/cuda/sort.hpp"
#include "detail/multi_gpu/sort.hpp"

namespace dpar::detail {
// Both GPU backends provide every algorithm the front doors call.
static_assert(backend_for<cuda::backend, gpu_policy>);
static_assert(backend_for<multi_gpu::backend, multi_gpu_policy>);
}  // namespace dpar::detail

// dpar::deterministic(dpar::gpu...) and deterministic(dpar::multi_gpu(...)).
#include "detail/deterministic/gpu.hpp"
