// main() of the plain test programs.
#include "catch_run.hpp"

int main(int argc, char** argv) { return dpar_test::run_catch(argc, argv); }
