#pragma once
// dpar::nn: a small neural-network module trained with data-parallel SGD.
// Matrix products go through CBLAS (OpenBLAS); everything elementwise, the
// reductions and the gradient all-reduce go through dpar. Link dpar::nn.

#include "detail/cxx20.hpp"  // first: a clear error below C++20

#include "dpar.hpp"  // the algorithms and every CPU backend the trainer runs on
#include "nn/batch_norm.hpp"
#include "nn/blas.hpp"
#include "nn/checkpoint.hpp"
#include "nn/conv.hpp"
#include "nn/dropout.hpp"
#include "nn/idx.hpp"
#include "nn/layers.hpp"
#include "nn/loss.hpp"
#include "nn/model_file.hpp"
#include "nn/model_parallel.hpp"
#include "nn/optim.hpp"
#include "nn/replica_group.hpp"
#include "nn/tensor.hpp"
#include "nn/trainer.hpp"
