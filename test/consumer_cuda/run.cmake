# Installs dpar into a scratch prefix, then builds the CUDA consumer against
# it. Running it is a separate test (it needs a device).
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
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/test/consumer_cuda -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
     -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}
     -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
