// IDX reader error cases and checkpoint files.
#include <dpar/nn/checkpoint.hpp>
#include <dpar/nn/idx.hpp>

#include <catch2/catch.hpp>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace nn = dpar::nn;
namespace fs = std::filesystem;

namespace {

fs::path scratch_dir() {
  fs::path d = fs::temp_directory_path() / ("dpar_test_nn_io_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::vector<std::uint8_t> idx_bytes(std::uint8_t type, std::vector<std::uint32_t> dims, std::size_t values) {
  std::vector<std::uint8_t> b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  for (std::size_t i = 0; i < values; ++i) b.push_back(static_cast<std::uint8_t>(i * 7));
  return b;
}

std::string write_file(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  std::string path = (scratch_dir() / name).string();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return path;
}

std::string write_gz(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  std::string path = (scratch_dir() / name).string();
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return path;
}

std::vector<std::uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("idx: valid plain and gzip files load, and pair into a data set", "[nn][idx]") {
  auto images = idx_bytes(0x08, {3, 2, 2}, 12);
  auto labels = idx_bytes(0x08, {3}, 3);
  std::string ip = write_gz("images.gz", images), lp = write_file("labels", labels);
  nn::idx_array a = nn::idx_load(ip);
  REQUIRE(a.dims == std::vector<std::size_t>{3, 2, 2});
  REQUIRE(a.values.size() == 12);
  REQUIRE(a.values[5] == 35);
  nn::dataset d = nn::idx_load_dataset(ip, lp);
  REQUIRE(d.size() == 3);
  REQUIRE(d.images.rows() == 3);
  REQUIRE(d.images.cols() == 4);
  REQUIRE(d.images(1, 1) == Approx(35.0f / 255.0f));
  REQUIRE(d.labels == std::vector<std::int32_t>{0, 7, 14});
  // Zero images is a valid, empty set.
  auto empty = nn::idx_parse(idx_bytes(0x08, {0, 28, 28}, 0), "empty");
  REQUIRE(empty.values.empty());
}

TEST_CASE("idx: malformed input is an idx_error naming the file and the problem", "[nn][idx]") {
  auto parse = [](std::vector<std::uint8_t> b) { return nn::idx_parse(b, "f.idx"); };
  using Catch::Contains;
  REQUIRE_THROWS_WITH(parse({}), Contains("'f.idx'") && Contains("truncated header"));
  REQUIRE_THROWS_WITH(parse({1, 0, 8, 1, 0, 0, 0, 0}), Contains("wrong magic"));
  REQUIRE_THROWS_WITH(parse(idx_bytes(0x0d, {2}, 8)), Contains("unsupported element type 0x0d"));
  REQUIRE_THROWS_WITH(parse(idx_bytes(0x08, {}, 0)), Contains("zero dimensions"));
  REQUIRE_THROWS_WITH(parse({0, 0, 8, 3, 0, 0, 0, 1}), Contains("3 dimensions need 16 bytes"));
  REQUIRE_THROWS_WITH(parse(idx_bytes(0x08, {4, 3}, 11)), Contains("truncated data") && Contains("4x3 need 12"));
  REQUIRE_THROWS_WITH(parse(idx_bytes(0x08, {4, 3}, 13)), Contains("disagree with the size"));
  // Dimensions whose product overflows 64 bits: no allocation, a clear error.
  REQUIRE_THROWS_WITH(parse(idx_bytes(0x08, {0xffffffff, 0xffffffff, 0xffffffff}, 5)), Contains("more than 2^64"));
  // A header claiming 4 billion values with 3 present: refused, nothing huge allocated.
  REQUIRE_THROWS_WITH(parse(idx_bytes(0x08, {0xffffffff}, 3)), Contains("truncated data"));
  REQUIRE_THROWS_AS(parse({}), nn::idx_error);

  // Image and label counts that differ.
  std::string ip = write_file("i3", idx_bytes(0x08, {3, 2}, 6)), lp = write_file("l2", idx_bytes(0x08, {2}, 2));
  REQUIRE_THROWS_WITH(nn::idx_load_dataset(ip, lp), Contains("3 images but") && Contains("has 2 labels"));
  REQUIRE_THROWS_WITH(nn::idx_load_dataset(lp, lp), Contains("at least 2 dimensions"));
  REQUIRE_THROWS_WITH(nn::idx_load_dataset(ip, ip), Contains("labels need 1 dimension"));
  REQUIRE_THROWS_WITH(nn::idx_load("/nonexistent/dpar.idx"), Contains("/nonexistent/dpar.idx") && Contains("cannot open"));
}

TEST_CASE("idx: corrupt and truncated gzip streams are refused", "[nn][idx]") {
  auto good = read_all(write_gz("good.gz", idx_bytes(0x08, {50, 10}, 500)));
  REQUIRE(nn::idx_parse(nn::idx_gunzip(good, "good.gz"), "good.gz").values.size() == 500);
  auto truncated = good;
  truncated.resize(good.size() / 2);
  REQUIRE_THROWS_WITH(nn::idx_gunzip(truncated, "t.gz"), Catch::Contains("'t.gz'") && Catch::Contains("truncated"));
  auto corrupt = good;
  for (std::size_t i = 12; i < corrupt.size() - 8; ++i) corrupt[i] ^= 0x5a;
  REQUIRE_THROWS_WITH(nn::idx_gunzip(corrupt, "c.gz"), Catch::Contains("gzip"));
  std::vector<std::uint8_t> header_only = {0x1f, 0x8b};
  REQUIRE_THROWS_AS(nn::idx_gunzip(header_only, "h.gz"), nn::idx_error);
  // A stream that inflates beyond the cap (a "zip bomb") stops at the cap.
  std::vector<std::uint8_t> zeros(1 << 20, 0);
  auto bomb = read_all(write_gz("bomb.gz", zeros));
  REQUIRE_THROWS_WITH(nn::idx_gunzip(bomb, "bomb.gz", 1 << 16), Catch::Contains("more than the limit"));
}

TEST_CASE("idx: the installed Fashion-MNIST test set loads (if present)", "[nn][idx]") {
  std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!fs::exists(dir + "t10k-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist not installed; skipped");
    return;
  }
  auto d = nn::idx_load_dataset(dir + "t10k-images-idx3-ubyte.gz", dir + "t10k-labels-idx1-ubyte.gz");
  REQUIRE(d.size() == 10000);
  REQUIRE(d.images.cols() == 784);
  for (auto y : d.labels) REQUIRE((y >= 0 && y < 10));
}

TEST_CASE("checkpoint: round trip, atomic replace, corruption and truncation detected", "[nn][checkpoint]") {
  std::string path = (scratch_dir() / "ck.bin").string();
  nn::checkpoint c;
  c.epoch = 3;
  c.step = 1407;
  c.seed = 42;
  c.replicas = 2;
  c.layout = 0xabcdef;
  c.parameters = {1.5f, -2.0f, 3.25f};
  c.velocity = {0.1f, 0.2f, 0.3f};
  nn::save_checkpoint(path, c);
  nn::checkpoint r = nn::load_checkpoint(path);
  REQUIRE(r.epoch == 3);
  REQUIRE(r.step == 1407);
  REQUIRE(r.seed == 42);
  REQUIRE(r.replicas == 2);
  REQUIRE(r.layout == 0xabcdef);
  REQUIRE(r.parameters == c.parameters);
  REQUIRE(r.velocity == c.velocity);
  // Saving again replaces the file and leaves no temporary behind.
  c.epoch = 4;
  nn::save_checkpoint(path, c);
  REQUIRE(nn::load_checkpoint(path).epoch == 4);
  for (auto& e : fs::directory_iterator(scratch_dir()))
    REQUIRE(e.path().filename().string().find(".tmp.") == std::string::npos);

  auto bytes = read_all(path);
  auto flipped = bytes;
  flipped[8 + 7 * 8 + 2] ^= 1;  // one bit of a parameter
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("flip.bin", flipped)), Catch::Contains("checksum mismatch"));
  auto cut = bytes;
  cut.resize(bytes.size() - 5);
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("cut.bin", cut)), Catch::Contains("size mismatch"));
  cut.resize(10);
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("short.bin", cut)), Catch::Contains("truncated"));
  auto magic = bytes;
  magic[0] = 'X';
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("magic.bin", magic)), Catch::Contains("wrong magic"));
  REQUIRE_THROWS_WITH(nn::load_checkpoint("/nonexistent/ck"), Catch::Contains("cannot open"));
  REQUIRE_THROWS_WITH(nn::save_checkpoint("/nonexistent/dir/ck", c), Catch::Contains("cannot create"));
  fs::remove_all(scratch_dir());
}
