#pragma once
// Reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzip.
// Malformed input raises dpar::nn::idx_error naming the file and the problem;
// allocations are bounded by the bytes actually present (and a size cap), never
// by what a header claims. Only regular files are read.

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "detail/input_file.hpp"
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

// Largest file accepted, after decompression; idx_load_dataset applies it to
// the float images it returns (Fashion-MNIST's training images are 47 MB, 188 MB
// as floats).
inline constexpr std::size_t idx_default_max_bytes = std::size_t{1} << 30;

namespace detail {

inline bool is_gzip(std::span<const std::uint8_t> bytes) noexcept {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

// The size the last gzip member says it decompresses to (mod 2^32): a hint to
// reserve the output at once instead of growing it (which peaks at 1.5-2x).
inline std::size_t gzip_size_hint(std::span<const std::uint8_t> bytes) noexcept {
  if (bytes.size() < 18) return 0;
  const std::uint8_t* t = bytes.data() + bytes.size() - 4;
  return std::size_t{t[0]} | std::size_t{t[1]} << 8 | std::size_t{t[2]} << 16 | std::size_t{t[3]} << 24;
}

}  // namespace detail

// Gunzips `bytes` if they start with the gzip magic, else returns them as they
// are. Every member of a multi-member file is read, as gunzip does.
inline std::vector<std::uint8_t> idx_gunzip(std::span<const std::uint8_t> bytes, const std::string& file,
                                            std::size_t max_bytes = idx_default_max_bytes) {
  if (!detail::is_gzip(bytes)) {
    if (bytes.size() > max_bytes) throw idx_error(file, "larger than the limit of " + std::to_string(max_bytes) + " bytes");
    return {bytes.begin(), bytes.end()};
  }
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) throw idx_error(file, "zlib could not start inflating");
  auto fail = [&](const std::string& problem) {
    inflateEnd(&z);
    throw idx_error(file, problem);
  };
  std::vector<std::uint8_t> out;
  out.reserve(std::min(detail::gzip_size_hint(bytes), max_bytes));
  std::size_t consumed = 0;  // bytes handed to zlib so far; z.avail_in of them are still unread
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
    int rc = inflate(&z, Z_NO_FLUSH);
    std::size_t produced = sizeof chunk - z.avail_out;
    if (out.size() + produced > max_bytes)
      fail("decompresses to more than the limit of " + std::to_string(max_bytes) + " bytes");
    out.insert(out.end(), chunk, chunk + produced);
    if (rc == Z_STREAM_END) {
      // Another member may follow (cat a.gz b.gz): read it too.
      std::size_t next = consumed - z.avail_in;
      if (next == bytes.size()) break;
      if (!detail::is_gzip(bytes.subspan(next)))
        fail("unreadable gzip data (" + std::to_string(bytes.size() - next) + " bytes after the end of the gzip stream)");
      if (inflateReset(&z) != Z_OK) fail("zlib could not restart inflating");
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) fail("unreadable gzip data (" + std::string(z.msg ? z.msg : "error " + std::to_string(rc)) + ")");
    if (z.avail_in == 0 && consumed == bytes.size() && produced == 0) fail("gzip stream is truncated");
  }
  inflateEnd(&z);
  if (out.capacity() > out.size() + out.size() / 8) out.shrink_to_fit();  // the size hint was wrong
  return out;
}

namespace detail {

// Checks an IDX header against the bytes: magic 0x00 0x00 type ndims,
// big-endian 32-bit dims, then exactly the values. Returns the dims and the
// header's length. Only unsigned bytes (type 0x08) are accepted.
inline std::size_t idx_check(std::span<const std::uint8_t> bytes, const std::string& file, std::vector<std::size_t>& dims) {
  if (bytes.size() < 4) throw idx_error(file, "truncated header: " + std::to_string(bytes.size()) + " bytes");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw idx_error(file, "wrong magic number (first bytes must be 0x00 0x00; not an IDX file?)");
  if (bytes[2] != 0x08) {
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
  dims.clear();
  std::size_t count = 1;
  bool overflow = false;
  for (std::size_t d = 0; d < ndims; ++d) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * d;
    std::size_t n = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | p[3];
    dims.push_back(n);
    if (n != 0 && count > std::numeric_limits<std::size_t>::max() / n) overflow = true;
    else count *= n;
  }
  std::size_t have = bytes.size() - header;
  auto shape = [&] {
    std::string s;
    for (std::size_t d = 0; d < ndims; ++d) {
      if (d) s.push_back('x');
      s.append(std::to_string(dims[d]));
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
  return header;
}

}  // namespace detail

// Parses decompressed IDX bytes (see detail::idx_check) into a copy.
inline idx_array idx_parse(std::span<const std::uint8_t> bytes, const std::string& file) {
  idx_array a;
  std::size_t header = detail::idx_check(bytes, file, a.dims);
  a.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

// Reads a whole regular file of at most max_bytes (a directory, device or
// FIFO is refused at once).
inline std::vector<std::uint8_t> idx_read_file_bytes(const std::string& file,
                                                     std::size_t max_bytes = idx_default_max_bytes) {
  dpar::nn::detail::input_file<idx_error> in(file);
  if (in.size() > max_bytes)
    throw idx_error(file, "larger than the limit of " + std::to_string(max_bytes) + " bytes");
  std::vector<std::uint8_t> bytes(in.size());
  in.read(bytes.data(), bytes.size());
  return bytes;
}

// Loads an IDX file, plain or gzip, of at most max_bytes once decompressed.
// The values are parsed in place: the decompressed bytes are held once.
inline idx_array idx_load(const std::string& file, std::size_t max_bytes = idx_default_max_bytes) {
  auto bytes = idx_read_file_bytes(file, max_bytes);
  if (detail::is_gzip(bytes)) bytes = idx_gunzip(bytes, file, max_bytes);
  idx_array a;
  std::size_t header = detail::idx_check(bytes, file, a.dims);
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header));
  a.values = std::move(bytes);
  return a;
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

// Loads images and labels. max_bytes bounds the float images returned (so the
// bytes they decode from are at most a quarter of it); the peak memory is the
// float images plus their bytes, 1.25x that.
inline dataset idx_load_dataset(const std::string& images_file, const std::string& labels_file,
                                std::size_t max_bytes = idx_default_max_bytes) {
  constexpr std::size_t longest_header = 4 + 4 * 255;
  idx_array images = idx_load(images_file, max_bytes / sizeof(float) + longest_header);
  idx_array labels = idx_load(labels_file, max_bytes);
  if (images.values.size() > max_bytes / sizeof(float))
    throw idx_error(images_file, std::to_string(images.values.size()) + " pixels need more than the limit of " +
                                     std::to_string(max_bytes) + " bytes as floats");
  return idx_make_dataset(images, images_file, labels, labels_file);
}

}  // namespace dpar::nn
