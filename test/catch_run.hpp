#pragma once
// Runs the Catch2 session of a test program (implemented in catch_impl.cpp,
// where Catch2's implementation is compiled once for all of them).
namespace dpar_test {
int run_catch(int argc, char** argv);
}
