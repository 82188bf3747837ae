#pragma once
// The conformance suite's adaptor for the CPU policies: seq, the global par and
// pools of 1, 2, 3 and 8 threads, all data in this process.

#include <exception>
#include <vector>

#include "common.hpp"
#include "conformance.hpp"

struct cpu_adaptor : conformance::all_data_in_host_vectors {
  static constexpr bool any_value_type = true;
  static inline const std::vector<std::size_t>& sizes = dpar_test::sizes;
  template <class Body>
  static void for_each_policy(Body&& body) {
    dpar_test::for_each_policy(body);
  }
  static bool is_failure_elsewhere(const std::exception&) { return false; }  // one participant: never asked
};
