# Shared by the consumer tests: step(), and dpar installed into
# ${WORK_DIR}/prefix from a fresh build directory (no tests, no CUDA).
file(REMOVE_RECURSE ${WORK_DIR})
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}")
  endif()
endfunction()
step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/dpar-build -G ${GENERATOR} -DDPAR_BUILD_TESTS=OFF
     -DDPAR_BUILD_BENCHMARKS=OFF -DDPAR_BUILD_EXAMPLES=OFF -DDPAR_ENABLE_CUDA=OFF
     -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} --install ${WORK_DIR}/dpar-build)
