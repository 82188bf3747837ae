cmake_minimum_required(VERSION 3.25)  # policies: IN_LIST
# Installs dpar into a scratch prefix, then configures, builds and runs the
# consumer project against it, asking for COMPONENTS (nn, mpi; ";"-separated
# as "," here). MPIEXEC, if given, runs the MPI consumer on 2 ranks. Any failing
# step fails the test.
set(COMPONENTS_COMMAS "${COMPONENTS}")
string(REPLACE "," ";" COMPONENTS "${COMPONENTS}")
include(${CMAKE_CURRENT_LIST_DIR}/install_dpar.cmake)
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
