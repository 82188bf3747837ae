cmake_minimum_required(VERSION 3.25)
# Configures dpar as the top-level project as if Catch2 and Google Benchmark
# were not installed: it must succeed, skipping tests and benchmarks with a message.
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR} -G ${GENERATOR} -DDPAR_ENABLE_CUDA=OFF
                        -DCMAKE_DISABLE_FIND_PACKAGE_Catch2=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring without Catch2 and Google Benchmark failed (${rc})")
endif()
foreach(expected "Catch2 v2 not found; tests are not built" "Google Benchmark not found; benchmarks are not built")
  string(FIND "${out}${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "no message '${expected}'")
  endif()
endforeach()
