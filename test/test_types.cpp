// The conformance suite's element types, orders, exceptions and nested calls
// on the CPU policies.
#include "conformance_cpu.hpp"

DPAR_CONFORMANCE_TYPES(cpu_adaptor, "cpu")
DPAR_CONFORMANCE_HOST(cpu_adaptor, "cpu")
