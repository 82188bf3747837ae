#pragma once
// The one place dpar::nn calls a GEMM: C = alpha * op(A) * op(B) + beta * C on
// row-major float matrices. Replicas give the parallelism, so the library is
// asked to run single-threaded in each calling thread.
//
// Two implementations, chosen when dpar::nn is configured (CMake option
// DPAR_NN_GEMM, which defines DPAR_NN_GEMM_ONEDNN for the first):
//   - oneDNN's dnnl_sgemm: JIT kernels for the ISA found at run time (AVX-512
//     where present), measured about 2x OpenBLAS on these shapes when OpenBLAS
//     is held to its AVX2 kernels (OPENBLAS_CORETYPE=Haswell); bench/RESULTS.md.
//   - any CBLAS (OpenBLAS by default).

#ifdef DPAR_NN_GEMM_ONEDNN
#include <dnnl.h>
#else
#include <cblas.h>
#endif

#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <string>

#include "tensor.hpp"

// The libraries' own thread-count knobs; weak so that any build links.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" void omp_set_num_threads(int) __attribute__((weak));

namespace dpar::nn::blas {

// The GEMM library dpar::nn was configured with, for reports and benchmarks.
inline const char* implementation() noexcept {
#ifdef DPAR_NN_GEMM_ONEDNN
  return "oneDNN";
#else
  return "CBLAS";
#endif
}

// One thread per call. OpenBLAS's count is global; oneDNN (built on OpenMP in
// Debian) reads the calling thread's OpenMP thread count, so each thread sets
// its own, once.
inline void use_one_thread() {
#ifdef DPAR_NN_GEMM_ONEDNN
  thread_local const bool once = [] {
    if (omp_set_num_threads) omp_set_num_threads(1);
    return true;
  }();
  (void)once;
#else
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  });
#endif
}

// Raw row-major GEMM: C[m,n] = alpha * op(A) * op(B) + beta * C.
inline void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                 std::size_t ldc) {
  if (m == 0 || n == 0) return;
  use_one_thread();
#ifdef DPAR_NN_GEMM_ONEDNN
  auto dim = [](std::size_t v) { return static_cast<dnnl_dim_t>(v); };
  dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', dim(m), dim(n), dim(k), alpha, a,
                                    dim(lda), b, dim(ldb), beta, c, dim(ldc));
  if (status != dnnl_success)
    throw std::runtime_error("dpar::nn::blas::gemm: dnnl_sgemm failed with status " + std::to_string(status) +
                             " for m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
#else
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
#endif
}

}  // namespace dpar::nn::blas
