// IDX reader error cases and checkpoint files.
#include <dpar/nn/checkpoint.hpp>
#include <dpar/nn/idx.hpp>
#include <dpar/nn/trainer.hpp>

#include <catch2/catch.hpp>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>
#include <cmath>
#include <memory>
#include <random>
#include <algorithm>

#include "collective_common.hpp"  // within_seconds: a hang fails the test
#include "nn_test_problem.hpp"

namespace nn = dpar::nn;
namespace fs = std::filesystem;

namespace {

// This process's scratch directory, removed when the process exits (CTest
// runs every case in a process of its own; fork() children leave by _Exit).
struct scratch_directory {
  const pid_t owner = ::getpid();
  const fs::path path = fs::temp_directory_path() / ("dpar_test_nn_io_" + std::to_string(owner));
  ~scratch_directory() {
    std::error_code ignored;
    if (::getpid() == owner) fs::remove_all(path, ignored);
  }
};

fs::path scratch_dir() {
  static const scratch_directory d;
  fs::create_directories(d.path);
  return d.path;
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
  REQUIRE_THROWS_WITH(parse({0, 1, 8, 1, 0, 0, 0, 0}), Contains("wrong magic"));  // the second byte counts too
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
  c.schedule = 0x5eed;
  c.parameters = {1.5f, -2.0f, 3.25f};
  c.velocity = {0.1f, 0.2f, 0.3f};
  nn::save_checkpoint(path, c);
  nn::checkpoint r = nn::load_checkpoint(path);
  REQUIRE(r.epoch == 3);
  REQUIRE(r.step == 1407);
  REQUIRE(r.seed == 42);
  REQUIRE(r.replicas == 2);
  REQUIRE(r.layout == 0xabcdef);
  REQUIRE(r.schedule == 0x5eed);
  REQUIRE(r.parameters == c.parameters);
  REQUIRE(r.velocity == c.velocity);
  c.state = {7.0f, 8.0f};
  c.architecture = "text";
  nn::save_checkpoint(path, c);
  r = nn::load_checkpoint(path);
  REQUIRE(r.state == c.state);
  REQUIRE(r.architecture == "text");
  c.state.clear();
  c.architecture.clear();
  // Saving again replaces the file and leaves no temporary behind.
  c.epoch = 4;
  nn::save_checkpoint(path, c);
  REQUIRE(nn::load_checkpoint(path).epoch == 4);
  for (auto& e : fs::directory_iterator(scratch_dir()))
    REQUIRE(e.path().filename().string().find(".tmp") == std::string::npos);

  auto bytes = read_all(path);
  auto flipped = bytes;
  flipped[8 + 10 * 8 + 2] ^= 1;  // one bit of a parameter
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("flip.bin", flipped)), Catch::Contains("checksum mismatch"));
  // The checksum covers the header too: one bit of the epoch.
  flipped = bytes;
  flipped[8] ^= 1;
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("flip_epoch.bin", flipped)), Catch::Contains("checksum mismatch"));
  auto cut = bytes;
  cut.resize(bytes.size() - 5);
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("cut.bin", cut)), Catch::Contains("size mismatch"));
  cut.resize(10);
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("short.bin", cut)), Catch::Contains("truncated"));
  // Formats 01 (no schedule field) and 02 (no state and architecture) still
  // load, with the schedule "not recorded", no state and no architecture.
  auto format_02 = bytes;
  format_02[7] = '2';
  format_02.erase(format_02.begin() + 8 + 8 * 8, format_02.begin() + 8 + 10 * 8);
  format_02.resize(format_02.size() - 4);
  std::uint32_t sum_02 = static_cast<std::uint32_t>(crc32(0, format_02.data(), static_cast<uInt>(format_02.size())));
  for (int i = 0; i < 4; ++i) format_02.push_back(static_cast<unsigned char>(sum_02 >> (8 * i)));
  nn::checkpoint old_02 = nn::load_checkpoint(write_file("format_02.bin", format_02));
  REQUIRE(old_02.schedule == 0x5eed);
  REQUIRE(old_02.parameters == c.parameters);
  REQUIRE(old_02.velocity == c.velocity);
  REQUIRE(old_02.state.empty());
  REQUIRE(old_02.architecture.empty());
  auto format_01 = bytes;
  format_01[7] = '1';
  format_01.erase(format_01.begin() + 8 + 8 * 8, format_01.begin() + 8 + 10 * 8);
  format_01.erase(format_01.begin() + 8 + 5 * 8, format_01.begin() + 8 + 6 * 8);
  format_01.resize(format_01.size() - 4);
  std::uint32_t sum = static_cast<std::uint32_t>(crc32(0, format_01.data(), static_cast<uInt>(format_01.size())));
  for (int i = 0; i < 4; ++i) format_01.push_back(static_cast<unsigned char>(sum >> (8 * i)));
  nn::checkpoint old = nn::load_checkpoint(write_file("format_01.bin", format_01));
  REQUIRE(old.schedule == 0);
  REQUIRE(old.layout == 0xabcdef);
  REQUIRE(old.parameters == c.parameters);
  REQUIRE(old.velocity == c.velocity);
  auto magic = bytes;
  magic[0] = 'X';
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("magic.bin", magic)), Catch::Contains("wrong magic"));
  REQUIRE_THROWS_WITH(nn::load_checkpoint("/nonexistent/ck"), Catch::Contains("cannot open"));
  REQUIRE_THROWS_WITH(nn::save_checkpoint("/nonexistent/dir/ck", c), Catch::Contains("cannot create"));
}

namespace {

// True when built with a sanitizer, whose allocator and shadow memory make
// resident-memory figures meaningless.
constexpr bool sanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    true;
#else
    false;
#endif

std::string make_fifo(const std::string& name) {
  std::string path = (scratch_dir() / name).string();
  fs::remove(path);
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  return path;
}

// Runs body in a fork() child; returns its exit status (or 128 + signal).
template <class Body>
int in_child(Body&& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);  // the child's own watchdog
    int rc = body();
    std::fflush(nullptr);
    std::_Exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

long resident_kib() {
  long pages = 0, resident = 0;
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

// Resets this process's peak resident size to its current one (Linux 4.0+);
// a fork() child otherwise starts from its parent's peak.
bool reset_peak() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

long peak_kib() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

}  // namespace

TEST_CASE("checkpoint: devices, directories and FIFOs are refused at once, naming the file", "[nn][checkpoint]") {
  dpar_test::within_seconds(30, "load_checkpoint of a non-regular file", [&] {
    REQUIRE_THROWS_WITH(nn::load_checkpoint("/dev/zero"),
                        Catch::Contains("'/dev/zero'") && Catch::Contains("not a regular file"));
    std::string dir = scratch_dir().string();
    REQUIRE_THROWS_AS(nn::load_checkpoint(dir), nn::checkpoint_error);
    REQUIRE_THROWS_WITH(nn::load_checkpoint(dir), Catch::Contains(dir) && Catch::Contains("is a directory"));
    std::string fifo = make_fifo("ck.fifo");
    REQUIRE_THROWS_WITH(nn::load_checkpoint(fifo), Catch::Contains("not a regular file"));
  });
  // A header promising more than the file holds reads nothing beyond the file.
  nn::checkpoint c;
  c.parameters.assign(10, 1.0f);
  std::string path = (scratch_dir() / "big_claim.bin").string();
  nn::save_checkpoint(path, c);
  auto bytes = read_all(path);
  bytes[8 + 6 * 8 + 7] = 0x40;  // parameter count ~ 2^62
  REQUIRE_THROWS_WITH(nn::load_checkpoint(write_file("big_claim.bin", bytes)), Catch::Contains("size mismatch"));
}

TEST_CASE("checkpoint: saves killed mid-write leave no temporary files behind", "[nn][checkpoint]") {
  // a directory of its own: only this test's files are counted below
  const fs::path dir = scratch_dir() / "killed";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string path = (dir / "killed.bin").string();
  nn::checkpoint big;
  big.parameters.assign(100000, 0.5f);  // 400 KB: more than the child may write
  for (int kill = 0; kill < 5; ++kill) {
    int status = in_child([&] {
      rlimit limit{64 * 1024, 64 * 1024}, no_core{0, 0};  // writing past 64 KB raises SIGXFSZ: killed mid-save
      ::setrlimit(RLIMIT_FSIZE, &limit);
      ::setrlimit(RLIMIT_CORE, &no_core);
      nn::save_checkpoint(path, big);
      return 0;
    });
    REQUIRE(status == 128 + SIGXFSZ);
  }
  std::size_t leftovers = 0;
  for (auto& e : fs::directory_iterator(dir)) leftovers += e.path().filename() != "killed.bin.tmp";
  REQUIRE(leftovers == 0);  // the killed saves share one temporary file
  nn::checkpoint c;
  c.epoch = 7;
  c.parameters = {1, 2, 3};
  nn::save_checkpoint(path, c);
  REQUIRE(nn::load_checkpoint(path).epoch == 7);
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  REQUIRE(names == std::vector<std::string>{"killed.bin"});
}

TEST_CASE("checkpoint: concurrent saves to one file take turns and leave a valid checkpoint", "[nn][checkpoint]") {
  std::string path = (scratch_dir() / "shared.bin").string();
  std::vector<std::thread> savers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    savers.emplace_back([&, t] {
      nn::checkpoint c;
      c.epoch = static_cast<std::uint64_t>(t);
      c.parameters.assign(5000, static_cast<float>(t));
      for (int i = 0; i < 10; ++i) {
        try {
          nn::save_checkpoint(path, c);
        } catch (...) {
          ++failures;
        }
      }
    });
  for (auto& s : savers) s.join();
  REQUIRE(failures == 0);
  nn::checkpoint r = nn::load_checkpoint(path);
  REQUIRE(r.epoch < 4);
  REQUIRE(r.parameters == std::vector<float>(5000, static_cast<float>(r.epoch)));
}

TEST_CASE("idx: directories and FIFOs are clear errors, not a size limit or a hang", "[nn][idx]") {
  dpar_test::within_seconds(30, "idx_load of a non-regular file", [&] {
    std::string dir = scratch_dir().string();
    REQUIRE_THROWS_WITH(nn::idx_load(dir), Catch::Contains(dir) && Catch::Contains("is a directory"));
    REQUIRE_THROWS_WITH(nn::idx_load(make_fifo("idx.fifo")), Catch::Contains("not a regular file"));
    REQUIRE_THROWS_WITH(nn::idx_load("/dev/zero"), Catch::Contains("not a regular file"));
  });
}

TEST_CASE("idx: every member of a multi-member gzip file is read, as gunzip does", "[nn][idx]") {
  auto whole = idx_bytes(0x08, {6, 5}, 30);
  std::vector<std::uint8_t> first(whole.begin(), whole.begin() + 11), second(whole.begin() + 11, whole.end());
  auto a = read_all(write_gz("part1.gz", first)), b = read_all(write_gz("part2.gz", second));
  std::vector<std::uint8_t> joined = a;  // cat part1.gz part2.gz
  joined.insert(joined.end(), b.begin(), b.end());
  std::string path = write_file("joined.gz", joined);
  nn::idx_array arr = nn::idx_load(path);
  REQUIRE(arr.dims == std::vector<std::size_t>{6, 5});
  REQUIRE(arr.values == std::vector<std::uint8_t>(whole.begin() + 12, whole.end()));
  // Bytes after the last member that are not another member: an error, not ignored.
  joined.push_back(0x42);
  REQUIRE_THROWS_WITH(nn::idx_gunzip(joined, "garbage.gz"), Catch::Contains("1 bytes after the end of the gzip stream"));
}

TEST_CASE("idx: the size cap bounds the float images, and loading holds the bytes once", "[nn][idx]") {
  // 20000 images of 32x32 (20 MB of bytes, 80 MB of floats), gzipped.
  const std::uint32_t n = 20000;
  std::string images = write_gz("big-images.gz", idx_bytes(0x08, {n, 32, 32}, std::size_t{n} * 1024));
  std::string labels = write_gz("big-labels.gz", idx_bytes(0x08, {n}, n));
  const std::size_t bytes = std::size_t{n} * 1024, floats = bytes * sizeof(float);
  if (sanitized) {
    WARN("peak-memory checks skipped under a sanitizer");
  } else {
    // In a child, so that the peak is this load's: idx_load holds the
    // decompressed bytes once (growing or copying them would double it), and
    // idx_load_dataset the floats plus those bytes.
    int status = in_child([&] {
      if (!reset_peak()) return 77;
      long before = resident_kib();
      auto arr = nn::idx_load(images);
      long grew = peak_kib() - before;
      std::printf("idx_load: %zu bytes decompressed, peak grew by %ld KiB\n", arr.values.size(), grew);
      return arr.values.size() == bytes && grew < static_cast<long>(bytes * 14 / 10 / 1024) ? 0 : 1;
    });
    if (status == 77) {
      WARN("cannot reset the peak resident size (/proc/self/clear_refs); peak-memory checks skipped");
    } else {
      REQUIRE(status == 0);
      status = in_child([&] {
        reset_peak();
        long before = resident_kib();
        auto d = nn::idx_load_dataset(images, labels);
        long grew = peak_kib() - before;
        std::printf("idx_load_dataset: %zu floats, peak grew by %ld KiB\n", d.images.size(), grew);
        return grew < static_cast<long>(floats * 14 / 10 / 1024) ? 0 : 1;
      });
      REQUIRE(status == 0);
    }
  }
  REQUIRE_THROWS_WITH(nn::idx_load_dataset(images, labels, floats - 4),
                      Catch::Contains("more than the limit of " + std::to_string(floats - 4) + " bytes as floats"));
  REQUIRE_THROWS_WITH(nn::idx_load_dataset(images, labels, floats / 2), Catch::Contains("more than the limit"));
  REQUIRE(nn::idx_load_dataset(images, labels, floats).images.size() == bytes);
}

// A label equal to the class count is the first bad one (labels are
// 0..classes-1): refused before any replica takes a step, whether it is in the
// first batch or a later one, so the replicas stay equal and untouched.
TEST_CASE("trainer: a label equal to the class count is refused before any replica runs", "[nn][trainer]") {
  const std::size_t classes = 3;
  dpar::thread_pool pool(2);
  nn::sequential model = nn::make_mlp({4, 5, classes});
  model.initialize(1);
  nn::train_options options;
  options.batch = 4;
  nn::data_parallel_trainer trainer(dpar::par.on(pool), model, options);
  nn::dataset data;
  data.images.resize(8, 4);
  for (std::size_t i = 0; i < data.images.size(); ++i) data.images.data()[i] = static_cast<float>(i % 5) / 5.0f;
  data.labels = {0, 1, 2, 0, 1, 2, 0, 2};
  auto untouched = std::vector<float>(model.parameters().begin(), model.parameters().end());
  for (std::size_t bad_at : {std::size_t{7}, std::size_t{0}}) {
    auto labels = data.labels;
    data.labels[bad_at] = static_cast<std::int32_t>(classes);
    bool progressed = false;
    REQUIRE_THROWS_WITH(trainer.train_epoch(data, [&](std::size_t, std::size_t, double) { progressed = true; }),
                        Catch::Contains("label 3"));
    REQUIRE_THROWS_WITH(trainer.train_step(data.images, data.labels), Catch::Contains("label 3"));
    data.labels = labels;
    CHECK_FALSE(progressed);
    CHECK(trainer.steps() == 0);
    for (std::size_t r = 0; r < trainer.replicas(); ++r) {
      auto p = trainer.model(r).parameters();
      CHECK(std::vector<float>(p.begin(), p.end()) == untouched);
    }
  }
  // The largest good label trains.
  trainer.train_epoch(data);
  CHECK(trainer.steps() == 2);
}

// ---- model files that record the architecture ----
namespace {

// y = x * factor, a user layer with one parameter (its kind: "Scale").
class scale final : public nn::layer {
 public:
  std::string name() const override { return "Scale"; }
  std::size_t out_features(std::size_t in) const override { return in; }
  std::size_t parameter_count() const override { return 1; }
  void bind(float* params, float* grads) override { factor_ = params, grad_ = grads; }
  void initialize(std::mt19937_64&) override { *factor_ = 1.0f; }
  void forward(const nn::tensor& x, nn::tensor& y) override {
    for (std::size_t i = 0; i < x.size(); ++i) y.data()[i] = x.data()[i] * *factor_;
  }
  void backward(const nn::tensor& x, const nn::tensor&, const nn::tensor& dy, nn::tensor* dx) override {
    float g = 0;
    for (std::size_t i = 0; i < x.size(); ++i) g += x.data()[i] * dy.data()[i];
    *grad_ = g;
    if (dx)
      for (std::size_t i = 0; i < dy.size(); ++i) dx->data()[i] = dy.data()[i] * *factor_;
  }
  std::unique_ptr<nn::layer> clone() const override { return std::make_unique<scale>(*this); }

 private:
  float *factor_ = nullptr, *grad_ = nullptr;
};

nn::tensor some_inputs(std::size_t rows, std::size_t cols) {
  nn::tensor x(rows, cols);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = std::sin(0.37f * float(i));
  return x;
}

void require_same_model(const nn::sequential& a, const nn::sequential& b) {
  REQUIRE(a.size() == b.size());
  REQUIRE(a.in_features() == b.in_features());
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a[i].name() == b[i].name());
  REQUIRE(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin(), b.parameters().end()));
  REQUIRE(std::equal(a.state().begin(), a.state().end(), b.state().begin(), b.state().end()));
  nn::tensor x = some_inputs(5, a.in_features());
  nn::tensor ya = a.predict(x), yb = b.predict(x);
  REQUIRE(std::equal(ya.data(), ya.data() + ya.size(), yb.data(), yb.data() + yb.size()));
}

}  // namespace

TEST_CASE("model file: load_model(file) rebuilds every built-in layer kind, state included", "[nn][model_file]") {
  const std::string path = (scratch_dir() / "arch.model").string();
  nn::sequential mlp(6);
  mlp.add(nn::dense(6, 8, nn::init::xavier)).add(nn::batch_norm(8, 1e-3f, 0.2f)).add(nn::tanh_layer());
  mlp.add(nn::dropout(0.1f, 77)).add(nn::dense(8, 4)).add(nn::sigmoid()).add(nn::dense(4, 3)).add(nn::relu());
  mlp.forward(some_inputs(9, 6));  // train mode: the running statistics move
  REQUIRE(mlp.state()[0] != 0.0f);
  nn::save_model(path, mlp);
  require_same_model(nn::load_model(path), mlp);
  REQUIRE(nn::load_checkpoint(path).architecture.rfind("dpar::nn model 1\nin 6\nDense(6,8)\nBatchNorm(8,0.001,0.2)\n", 0) == 0);

  nn::sequential cnn(1 * 8 * 8);
  nn::conv2d c({1, 8, 8}, 3, 3, 1, 1);
  nn::max_pool2d pool(c.output_shape(), 2, 2);
  cnn.add(c).add(nn::relu()).add(pool).add(nn::flatten(pool.output_shape())).add(nn::dense(pool.output_shape().size(), 2));
  nn::save_model(path, cnn);
  require_same_model(nn::load_model(path), cnn);

  // load_model(file, model) fills a model built by hand, state too.
  nn::sequential same(6);
  same.add(nn::dense(6, 8)).add(nn::batch_norm(8, 1e-3f, 0.2f)).add(nn::tanh_layer());
  same.add(nn::dropout(0.1f, 77)).add(nn::dense(8, 4)).add(nn::sigmoid()).add(nn::dense(4, 3)).add(nn::relu());
  nn::save_model(path, mlp);
  nn::load_model(path, same);
  require_same_model(same, mlp);
}

TEST_CASE("model file: a user layer registers its kind and factory; unknown kinds and bad files name the file",
          "[nn][model_file]") {
  const std::string path = (scratch_dir() / "user.model").string();
  nn::sequential m(4);
  m.add(nn::dense(4, 4)).add(scale()).add(nn::dense(4, 2));
  m.parameters()[20] = 2.5f;  // the scale
  nn::save_model(path, m);
  REQUIRE_THROWS_WITH(nn::load_model(path), Catch::Contains(path) && Catch::Contains("'Scale'") &&
                                                Catch::Contains("not registered"));
  nn::register_layer("Scale", [](const std::vector<std::string>& args, std::size_t) {
    if (!args.empty()) throw std::invalid_argument("Scale takes no arguments");
    return std::unique_ptr<nn::layer>(std::make_unique<scale>());
  });
  nn::sequential back = nn::load_model(path);
  require_same_model(back, m);
  REQUIRE(back.parameters()[20] == 2.5f);
  REQUIRE_THROWS_AS(nn::register_layer("Bad(kind", [](const std::vector<std::string>&, std::size_t) {
                      return std::unique_ptr<nn::layer>();
                    }),
                    std::invalid_argument);

  // Architectures that cannot be rebuilt: each error names the file and the problem.
  auto with_architecture = [&](const std::string& text) {
    nn::checkpoint c = nn::load_checkpoint(path);
    c.architecture = text;
    nn::save_checkpoint(path, c);
    return path;
  };
  REQUIRE_THROWS_WITH(nn::load_model(with_architecture("dpar::nn model 9\nin 4\n")),
                      Catch::Contains(path) && Catch::Contains("architecture header"));
  REQUIRE_THROWS_WITH(nn::load_model(with_architecture("dpar::nn model 1\nin four\n")),
                      Catch::Contains(path) && Catch::Contains("input width"));
  REQUIRE_THROWS_WITH(nn::load_model(with_architecture("dpar::nn model 1\nin 4\nDense(4,x)\n")),
                      Catch::Contains(path) && Catch::Contains("layer 0 'Dense(4,x)'"));
  REQUIRE_THROWS_WITH(nn::load_model(with_architecture("dpar::nn model 1\nin 4\nDense(5,4)\n")),
                      Catch::Contains("layer 0") && Catch::Contains("expected 5"));
  REQUIRE_THROWS_WITH(nn::load_model(with_architecture("dpar::nn model 1\nin 4\nDense(4,4\n")),
                      Catch::Contains("malformed"));
  // Well formed, but for other parameters than the file holds.
  REQUIRE_THROWS_WITH(nn::load_model(with_architecture("dpar::nn model 1\nin 4\nDense(4,3)\n")),
                      Catch::Contains(path) && Catch::Contains("different model"));
}

TEST_CASE("model file: files of the earlier format load into a model built by hand", "[nn][model_file]") {
  const std::string path = (scratch_dir() / "old.model").string();
  nn::sequential m(3);
  m.add(nn::dense(3, 5)).add(nn::relu()).add(nn::dense(5, 2));
  // Written as save_model wrote model files before the architecture: format
  // 02, no state, no architecture, empty velocity.
  std::vector<unsigned char> bytes(nn::detail::checkpoint_magic_02, nn::detail::checkpoint_magic_02 + 8);
  std::vector<float> p(m.parameters().begin(), m.parameters().end());
  for (auto& v : p) v *= 0.5f;
  for (std::uint64_t v : {std::uint64_t(0), std::uint64_t(0), std::uint64_t(0), std::uint64_t(0), nn::layout_hash(m),
                          std::uint64_t(0), std::uint64_t(p.size()), std::uint64_t(0)})
    nn::detail::put_u64(bytes, v);
  nn::detail::put_floats(bytes, p);
  const std::uint32_t sum = nn::detail::crc(bytes.data(), bytes.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<unsigned char>(sum >> (8 * i)));
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  nn::load_model(path, m);
  REQUIRE(std::vector<float>(m.parameters().begin(), m.parameters().end()) == p);
  REQUIRE_THROWS_WITH(nn::load_model(path), Catch::Contains(path) && Catch::Contains("records no architecture"));
  nn::sequential other(3);
  other.add(nn::dense(3, 5)).add(nn::batch_norm(5)).add(nn::dense(5, 2));
  REQUIRE_THROWS_WITH(nn::load_model(path, other), Catch::Contains(path) && Catch::Contains("different model"));
}

// The memory-mapped data set: the rows idx_load_dataset gives, read in any
// order; files that are not what they should be are idx_errors naming them.
TEST_CASE("mapped_dataset: IDX and raw float files give idx_load_dataset's rows; bad files name the file and problem",
          "[nn][idx][data]") {
  const fs::path dir = scratch_dir();
  const std::string stem = (dir / "m").string();
  const auto files = nn_test::write_blob_files(stem, 37, 12, 4);
  const nn::dataset memory = nn::idx_load_dataset(files.images, files.labels);
  const auto idx = nn::mapped_dataset::idx(files.images, files.labels);
  const auto raw = nn::mapped_dataset::raw(files.raw, 12, files.labels);
  const std::vector<std::size_t> rows = {5, 0, 36, 5, 17};
  for (const nn::data_source* source : {static_cast<const nn::data_source*>(&idx), static_cast<const nn::data_source*>(&raw)}) {
    REQUIRE(source->size() == 37);
    REQUIRE(source->features() == 12);
    REQUIRE(source->target_columns() == 0);
    std::vector<float> x(rows.size() * 12, -1.0f);
    std::vector<std::int32_t> y(rows.size(), -1);
    source->gather_inputs(rows, x.data());
    source->gather_labels(rows, y.data());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      REQUIRE(y[i] == memory.labels[rows[i]]);
      for (std::size_t k = 0; k < 12; ++k) REQUIRE(x[i * 12 + k] == memory.images(rows[i], k));
    }
    source->gather_inputs({}, nullptr);  // no rows: nothing touched
    REQUIRE_THROWS_WITH(source->gather_targets(rows, x.data()), Catch::Contains("labels, not targets"));
  }
  // Images of 3 dimensions (N x 3 x 4) are rows of 12 as well.
  {
    auto bytes = nn_test::idx_u8({37, 3, 4}, std::vector<std::uint8_t>(37 * 12, 9));
    nn_test::write_bytes(stem + ".3d", bytes.data(), bytes.size());
    REQUIRE(nn::mapped_dataset::idx(stem + ".3d", files.labels).features() == 12);
  }
  // Raw targets.
  {
    std::vector<float> targets(37 * 3);
    for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<float>(i) * 0.5f;
    nn_test::write_bytes(stem + ".t", targets.data(), targets.size() * sizeof(float));
    const auto t = nn::mapped_dataset::raw(files.raw, 12, stem + ".t", 3);
    REQUIRE(t.target_columns() == 3);
    std::vector<float> got(rows.size() * 3);
    t.gather_targets(rows, got.data());
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (std::size_t k = 0; k < 3; ++k) REQUIRE(got[i * 3 + k] == targets[rows[i] * 3 + k]);
    std::vector<std::int32_t> y(rows.size());
    REQUIRE_THROWS_WITH(t.gather_labels(rows, y.data()), Catch::Contains("targets, not labels"));
    REQUIRE_THROWS_WITH(nn::mapped_dataset::raw(files.raw, 12, stem + ".t", 4),
                        Catch::Contains(stem + ".t") && Catch::Contains("not a whole number of rows of 4 floats"));
    REQUIRE_THROWS_WITH(nn::mapped_dataset::raw(files.raw, 12, files.raw, 1),
                        Catch::Contains("444 rows of targets but") && Catch::Contains("has 37 samples"));
  }
  auto fails = [](auto&& make, const std::string& file, const std::string& problem) {
    try {
      make();
      FAIL("no error for " << problem);
    } catch (const nn::idx_error& e) {
      INFO(e.what());
      REQUIRE_THAT(e.what(), Catch::Contains("'" + file + "'") && Catch::Contains(problem));
    }
  };
  auto image_bytes = nn_test::idx_u8({37, 12}, std::vector<std::uint8_t>(37 * 12, 1));
  const std::string bad = stem + ".bad";
  auto write_bad = [&](std::vector<std::uint8_t> b) { nn_test::write_bytes(bad, b.data(), b.size()); };
  write_bad({image_bytes.begin(), image_bytes.end() - 1});
  fails([&] { nn::mapped_dataset::idx(bad, files.labels); }, bad, "truncated data");
  auto magic = image_bytes;
  magic[0] = 7;
  write_bad(magic);
  fails([&] { nn::mapped_dataset::idx(bad, files.labels); }, bad, "wrong magic number");
  write_bad(nn_test::idx_u8({37 * 12}, std::vector<std::uint8_t>(37 * 12, 1)));
  fails([&] { nn::mapped_dataset::idx(bad, files.labels); }, bad, "images need at least 2 dimensions, found 1");
  write_bad(nn_test::idx_u8({36}, std::vector<std::uint8_t>(36, 1)));
  fails([&] { nn::mapped_dataset::idx(files.images, bad); }, files.images, "37 samples but '" + bad + "' has 36 labels");
  fails([&] { nn::mapped_dataset::raw(files.raw, 12, bad); }, files.raw, "has 36 labels");
  write_bad(nn_test::idx_u8({37, 1}, std::vector<std::uint8_t>(37, 1)));
  fails([&] { nn::mapped_dataset::idx(files.images, bad); }, bad, "labels need 1 dimension, found 2");
  write_bad({0x1f, 0x8b, 8, 0, 0, 0, 0, 0});
  fails([&] { nn::mapped_dataset::idx(bad, files.labels); }, bad, "gzip");
  write_bad(std::vector<std::uint8_t>(12 * 4 * 37 - 1, 0));
  fails([&] { nn::mapped_dataset::raw(bad, 12, files.labels); }, bad, "not a whole number of rows of 12 floats");
  fails([&] { nn::mapped_dataset::raw(files.raw, 10000, files.labels); }, files.raw, "longer than the file");
  fails([&] { nn::mapped_dataset::raw(files.raw, 0, files.labels); }, files.raw, "at least one feature");
  write_bad({});
  fails([&] { nn::mapped_dataset::idx(bad, files.labels); }, bad, "truncated header");
  fails([&] { nn::mapped_dataset::raw(bad, 12, files.labels); }, bad, "0 samples but");
  fails([&] { nn::mapped_dataset::idx(stem + ".missing", files.labels); }, stem + ".missing", "cannot open");
  fails([&] { nn::mapped_dataset::idx(dir.string(), files.labels); }, dir.string(), "is a directory");
  fs::remove_all(dir);
}
