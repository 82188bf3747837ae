#pragma once
// Reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzip.
// Malformed input raises dpar::nn::idx_error naming the file and the problem;
// allocations are bounded by the bytes actually present (and a size cap), never
// by what a header claims.

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensor.hpp"

namespace dpar::nn {

class idx_error : public std::runtime_error {
 public:
  idx_error(const std::string& file, const std::string& problem)
      : std::runtime_error("dpar::nn IDX '" + file + "': " + problem) {}
};

// An IDX array of unsigned bytes (type code 0x08): dims and the raw values.
struct idx_array {
  std::vector<std::size_t> dims;
  std::vector<std::uint8_t> values;
};

// Largest decompressed file accepted (Fashion-MNIST's training images are 47 MB).
inline constexpr std::size_t idx_default_max_bytes = std::size_t{1} << 30;

// Gunzips `bytes` if they start with the gzip magic, else returns them as they are.
inline std::vector<std::uint8_t> idx_gunzip(std::span<const std::uint8_t> bytes, const std::string& file,
                                            std::size_t max_bytes = idx_default_max_bytes) {
  if (bytes.size() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b) {
    if (bytes.size() > max_bytes) throw idx_error(file, "larger than the limit of " + std::to_string(max_bytes) + " bytes");
    return {bytes.begin(), bytes.end()};
  }
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) throw idx_error(file, "zlib could not start inflating");
  std::vector<std::uint8_t> out;
  z.next_in = const_cast<Bytef*>(bytes.data());
  std::size_t consumed = 0;
  int rc = Z_OK;
  std::uint8_t chunk[1 << 16];
  for (;;) {
    // avail_in is 32-bit: feed at most 1 GiB at a time.
    if (z.avail_in == 0 && consumed < bytes.size()) {
      std::size_t feed = std::min<std::size_t>(bytes.size() - consumed, std::size_t{1} << 30);
      z.next_in = const_cast<Bytef*>(bytes.data() + consumed);
      z.avail_in = static_cast<uInt>(feed);
      consumed += feed;
    }
    z.next_out = chunk;
    z.avail_out = sizeof chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    std::size_t produced = sizeof chunk - z.avail_out;
    if (out.size() + produced > max_bytes) {
      inflateEnd(&z);
      throw idx_error(file, "decompresses to more than the limit of " + std::to_string(max_bytes) + " bytes");
    }
    out.insert(out.end(), chunk, chunk + produced);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      std::string msg = z.msg ? z.msg : "error " + std::to_string(rc);
      inflateEnd(&z);
      throw idx_error(file, "unreadable gzip data (" + msg + ")");
    }
    if (z.avail_in == 0 && consumed == bytes.size() && produced == 0) {
      inflateEnd(&z);
      throw idx_error(file, "gzip stream is truncated");
    }
  }
  inflateEnd(&z);
  return out;
}

// Parses decompressed IDX bytes: magic 0x00 0x00 type ndims, big-endian
// 32-bit dims, then the values. Only unsigned bytes (type 0x08) are accepted.
inline idx_array idx_parse(std::span<const std::uint8_t> bytes, const std::string& file) {
  if (bytes.size() < 4) throw idx_error(file, "truncated header: " + std::to_string(bytes.size()) + " bytes");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw idx_error(file, "wrong magic number (first bytes must be 0x00 0x00; not an IDX file?)");
  if (bytes[2] != 0x08)
    {
    const char* hex = "0123456789abcdef";
    throw idx_error(file, std::string("unsupported element type 0x") + hex[bytes[2] >> 4] + hex[bytes[2] & 15] +
                              " (only unsigned byte, 0x08)");
  }
  std::size_t ndims = bytes[3];
  if (ndims == 0) throw idx_error(file, "zero dimensions");
  std::size_t header = 4 + 4 * ndims;
  if (bytes.size() < header)
    throw idx_error(file, "truncated header: " + std::to_string(ndims) + " dimensions need " + std::to_string(header) +
                              " bytes, file has " + std::to_string(bytes.size()));
  idx_array a;
  std::size_t count = 1;
  bool overflow = false;
  for (std::size_t d = 0; d < ndims; ++d) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * d;
    std::size_t n = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | p[3];
    a.dims.push_back(n);
    if (n != 0 && count > std::numeric_limits<std::size_t>::max() / n) overflow = true;
    else count *= n;
  }
  std::size_t have = bytes.size() - header;
  auto shape = [&] {
    std::string s;
    for (std::size_t d = 0; d < ndims; ++d) {
      if (d) s.push_back('x');
      s.append(std::to_string(a.dims[d]));
    }
    return s;
  };
  if (overflow || count > have)
    throw idx_error(file, "truncated data: dimensions " + shape() + " need " +
                              (overflow ? std::string("more than 2^64") : std::to_string(count)) + " values, file has " +
                              std::to_string(have));
  if (count < have)
    throw idx_error(file, "dimensions " + shape() + " disagree with the size: " + std::to_string(have - count) +
                              " bytes left over after " + std::to_string(count) + " values");
  a.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

inline std::vector<std::uint8_t> idx_read_file_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw idx_error(file, "cannot open the file");
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0) throw idx_error(file, "cannot determine the file size");
  if (static_cast<std::size_t>(size) > idx_default_max_bytes)
    throw idx_error(file, "larger than the limit of " + std::to_string(idx_default_max_bytes) + " bytes");
  in.seekg(0);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) throw idx_error(file, "read failed");
  return bytes;
}

inline idx_array idx_load(const std::string& file) {
  auto raw = idx_read_file_bytes(file);
  return idx_parse(idx_gunzip(raw, file), file);
}

// A labelled image set: images as rows of floats in [0, 1], labels as ints.
struct dataset {
  tensor images;
  std::vector<std::int32_t> labels;
  std::size_t size() const noexcept { return labels.size(); }
};

// Pairs an images array (N x rows x cols) with a labels array (N).
inline dataset idx_make_dataset(const idx_array& images, const std::string& images_file, const idx_array& labels,
                                const std::string& labels_file) {
  if (images.dims.size() < 2)
    throw idx_error(images_file, "images need at least 2 dimensions, found " + std::to_string(images.dims.size()));
  if (labels.dims.size() != 1)
    throw idx_error(labels_file, "labels need 1 dimension, found " + std::to_string(labels.dims.size()));
  std::size_t n = images.dims[0];
  if (labels.dims[0] != n)
    throw idx_error(images_file, std::to_string(n) + " images but '" + labels_file + "' has " +
                                     std::to_string(labels.dims[0]) + " labels");
  std::size_t features = n ? images.values.size() / n : 1;
  if (features == 0) throw idx_error(images_file, "images have zero pixels");
  dataset d;
  d.images.resize(n, features);
  for (std::size_t i = 0; i < images.values.size(); ++i) d.images.data()[i] = images.values[i] * (1.0f / 255.0f);
  d.labels.assign(labels.values.begin(), labels.values.end());
  return d;
}

inline dataset idx_load_dataset(const std::string& images_file, const std::string& labels_file) {
  return idx_make_dataset(idx_load(images_file), images_file, idx_load(labels_file), labels_file);
}

}  // namespace dpar::nn
