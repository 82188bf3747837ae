// main() of test_gpu. Without a usable CUDA device it prints why and exits
// with 77, which CTest reports as skipped (SKIP_RETURN_CODE), never as passed.
// Listing tests (catch_discover_tests) needs no device. The option
// --dpar-run-without-device runs the selected tests anyway: the [nodevice]
// test checks the errors a machine without a GPU gives.
#include "catch_run.hpp"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool listing = false, without_device = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dpar-run-without-device") == 0) {
      without_device = true;
      continue;
    }
    if (std::strncmp(argv[i], "--list", 6) == 0 || std::strcmp(argv[i], "-l") == 0) listing = true;
    args.push_back(argv[i]);
  }
  if (!listing && !without_device) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      std::printf("SKIPPED: no CUDA device (%s)\n",
                  e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found 0 devices");
      return 77;
    }
#ifdef DPAR_CUDA_DEVICE_SYNTAX_ONLY
    std::printf("FAILED: this build has no device code (DPAR_CUDA_DEVICE_SYNTAX_ONLY=ON); "
                "configure without it to run on a GPU\n");
    return 1;
#endif
  }
  return dpar_test::run_catch(static_cast<int>(args.size()), args.data());
}
