// Catch2's implementation, compiled once for all test programs: each main
// (main.cpp, gpu_main.cpp, mpi_main.cpp, test_nn_mpi.cpp) only runs a session
// through run_catch (catch_run.hpp).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "catch_run.hpp"

int dpar_test::run_catch(int argc, char** argv) { return Catch::Session().run(argc, argv); }
