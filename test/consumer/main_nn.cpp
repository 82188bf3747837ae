// Built against an installed dpar with COMPONENTS nn: dpar::nn must bring
// its GEMM library (a dense layer's forward pass) and zlib (a gzip IDX file) with it.
#include <dpar/nn.hpp>

#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  // 1x2 input (1, 4) through a 2->1 dense layer with weights (2, 3), bias 4: 2*1 + 3*4 + 4.
  auto model = dpar::nn::make_mlp({2, 1});
  model.initialize(1);
  auto params = model.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) params[i] = static_cast<float>(i + 2);
  dpar::nn::tensor x(1, 2);
  x.data()[0] = 1;
  x.data()[1] = 4;
  float y = model.forward(x).data()[0];

  // A one-byte IDX vector {7}, gzipped by zlib, read back by the IDX reader.
  std::vector<unsigned char> idx = {0, 0, 8, 1, 0, 0, 0, 1, 7}, gz(256);
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  z.next_in = idx.data();
  z.avail_in = static_cast<uInt>(idx.size());
  z.next_out = gz.data();
  z.avail_out = static_cast<uInt>(gz.size());
  int rc = deflate(&z, Z_FINISH);
  gz.resize(z.total_out);
  deflateEnd(&z);
  auto array = dpar::nn::idx_parse(dpar::nn::idx_gunzip(gz, "memory"), "memory");

  std::printf("consumer_nn: dense %g (want 18), idx value %d (want 7)\n", y, array.values.at(0));
  return rc == Z_STREAM_END && std::fabs(y - 18.0f) < 1e-5f && array.values.at(0) == 7 ? 0 : 1;
}
