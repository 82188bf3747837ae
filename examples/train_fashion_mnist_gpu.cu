// train_fashion_mnist with GPU replicas (--device gpu, --devices 0,0): the
// same program, built by nvcc with dpar/nn/cuda.hpp.
#define DPAR_EXAMPLE_GPU
#include "train_fashion_mnist.cpp"
