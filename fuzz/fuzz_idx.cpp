// libFuzzer target for the IDX reader: any bytes, plain or gzip, must either
// parse or raise dpar::nn::idx_error; never crash, leak or allocate wildly.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address -Iinclude fuzz/fuzz_idx.cpp -lz
#include <dpar/nn/idx.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> bytes(data, size);
  try {
    // A small cap keeps each run fast; the logic is the same as with the default.
    auto raw = dpar::nn::idx_gunzip(bytes, "fuzz-input", std::size_t{1} << 22);
    auto array = dpar::nn::idx_parse(raw, "fuzz-input");
    // Pair the array with itself as labels: exercises the data-set checks.
    try {
      auto d = dpar::nn::idx_make_dataset(array, "images", array, "labels");
      if (d.images.rows() != d.labels.size()) __builtin_trap();
    } catch (const dpar::nn::idx_error&) {
    }
  } catch (const dpar::nn::idx_error&) {
  }
  return 0;
}
