# Compiles SOURCE with NVCC and passes only if that fails with dpar's message.
execute_process(COMMAND ${NVCC} -std=c++20 --extended-lambda --expt-relaxed-constexpr -arch=sm_${ARCH}
                        -I${INCLUDE_DIR} -c ${SOURCE} -o ${OUTPUT}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but dpar::gpu must reject host iterators")
endif()
if(NOT "${out}${err}" MATCHES "dpar::gpu takes device iterators only")
  message(FATAL_ERROR "${SOURCE} failed without dpar's message:\n${out}${err}")
endif()
message(STATUS "rejected as expected")
