# Compiles SOURCE with NVCC and passes only if that fails with dpar's message
# (MESSAGE, a regular expression; by default the host-iterator one).
if(NOT DEFINED MESSAGE)
  set(MESSAGE "dpar::gpu takes device iterators only")
endif()
execute_process(COMMAND ${NVCC} -std=c++20 --extended-lambda --expt-relaxed-constexpr -arch=sm_${ARCH}
                        -I${INCLUDE_DIR} -c ${SOURCE} -o ${OUTPUT}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but must not (expected: ${MESSAGE})")
endif()
if(NOT "${out}${err}" MATCHES "${MESSAGE}")
  message(FATAL_ERROR "${SOURCE} failed without dpar's message:\n${out}${err}")
endif()
message(STATUS "rejected as expected")
