# Finds oneDNN (Debian: libdnnl-dev) and defines the imported target
# dpar::onednn, which carries DPAR_NN_GEMM_ONEDNN so that dpar/nn/blas.hpp
# calls dnnl_sgemm. Plain find_path/find_library: Debian's own dnnl CMake
# package insists on OpenCL headers that the CPU GEMM never uses.
if(NOT TARGET dpar::onednn)
  find_path(DPAR_ONEDNN_INCLUDE_DIR dnnl.h)
  find_library(DPAR_ONEDNN_LIBRARY dnnl)
  if(DPAR_ONEDNN_INCLUDE_DIR AND DPAR_ONEDNN_LIBRARY)
    add_library(dpar::onednn UNKNOWN IMPORTED)
    set_target_properties(dpar::onednn PROPERTIES
      IMPORTED_LOCATION "${DPAR_ONEDNN_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${DPAR_ONEDNN_INCLUDE_DIR}"
      INTERFACE_COMPILE_DEFINITIONS DPAR_NN_GEMM_ONEDNN)
  endif()
endif()
