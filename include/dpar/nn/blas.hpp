#pragma once
// The one place dpar::nn calls a BLAS: C = alpha * op(A) * op(B) + beta * C on
// row-major tensors. Replicas give the parallelism, so OpenBLAS is asked to run
// single-threaded in each caller.

#include <cblas.h>

#include <cstddef>
#include <mutex>

#include "tensor.hpp"

// OpenBLAS's own knob; weak so that another CBLAS links too.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace dpar::nn::blas {

inline void use_one_thread() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  });
}

// Raw row-major GEMM: C[m,n] = alpha * op(A) * op(B) + beta * C.
inline void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                 std::size_t ldc) {
  if (m == 0 || n == 0) return;
  use_one_thread();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace dpar::nn::blas
