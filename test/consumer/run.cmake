cmake_minimum_required(VERSION 3.25)  # policies: IN_LIST
# Installs dpar into a scratch prefix, then configures, builds and runs the
# consumer project against it, asking for COMPONENTS (nn, mpi; ";"-separated
# as "," here). MPIEXEC, if given, runs the MPI consumer on 2 ranks. Any failing
# step fails the test.
file(REMOVE_RECURSE ${WORK_DIR})
set(COMPONENTS_COMMAS "${COMPONENTS}")
string(REPLACE "," ";" COMPONENTS "${COMPONENTS}")
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
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/test/consumer -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
     -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DDPAR_COMPONENTS=${COMPONENTS_COMMAS})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
step(${WORK_DIR}/consumer-build/consumer)
if("nn" IN_LIST COMPONENTS)
  step(${WORK_DIR}/consumer-build/consumer_nn)
endif()
if("mpi" IN_LIST COMPONENTS)
  string(REPLACE "," ";" MPIEXEC "${MPIEXEC}")
  step(${MPIEXEC} ${WORK_DIR}/consumer-build/consumer_mpi)
endif()
