# Builds the IDX fuzzer with clang++ (libFuzzer + ASan) and runs it briefly on
# the seed corpus. Used by the CTest test fuzz.idx.
file(MAKE_DIRECTORY ${WORK_DIR}/corpus)
file(GLOB seeds ${SOURCE_DIR}/fuzz/corpus/*)
file(COPY ${seeds} DESTINATION ${WORK_DIR}/corpus)
execute_process(COMMAND ${CLANGXX} -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined
                        -I${SOURCE_DIR}/include ${SOURCE_DIR}/fuzz/fuzz_idx.cpp -lz -o ${WORK_DIR}/fuzz_idx
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the fuzzer failed (${rc})")
endif()
execute_process(COMMAND ${WORK_DIR}/fuzz_idx -runs=${RUNS} -max_total_time=20 -rss_limit_mb=1024 -malloc_limit_mb=256
                        ${WORK_DIR}/corpus
                WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the fuzzer found a crash (${rc}); the input is in ${WORK_DIR}")
endif()
