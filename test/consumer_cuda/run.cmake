# Installs dpar into a scratch prefix, then builds the CUDA consumer against
# it. Running it is a separate test (it needs a device).
include(${CMAKE_CURRENT_LIST_DIR}/../consumer/install_dpar.cmake)
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/test/consumer_cuda -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
     -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}
     -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
