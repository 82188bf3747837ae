// train_fashion_mnist's command line and pre-training checks (issue 14): runs
// the example binary (DPAR_EXAMPLE_TRAIN) on tiny synthetic IDX data written
// here. Bad options are usage errors (exit 2) and bad data, a bad --save
// folder or --resume file fail (exit 1) before the first training step; a
// diverging run stops with exit 1.
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct outcome {
  int status;  // exit code, or -1 if it did not exit normally (killed, timed out)
  std::string output;  // stdout and stderr together
};

fs::path scratch() {
  fs::path d = fs::temp_directory_path() / ("dpar_test_example_cli_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// Runs the example with `args` (shell words), at most 120 s.
outcome run(const std::string& args) {
  fs::path out = scratch() / "output.txt";
  std::string cmd = "timeout 120 '" DPAR_EXAMPLE_TRAIN "' " + args + " > '" + out.string() + "' 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  int status = WIFEXITED(rc) && WEXITSTATUS(rc) != 124 ? WEXITSTATUS(rc) : -1;
  return {status, text.str()};
}

void write_gz(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}

std::vector<std::uint8_t> idx_header(std::vector<std::uint32_t> dims) {
  std::vector<std::uint8_t> b = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  return b;
}

// A data folder in Fashion-MNIST's layout: `train` and `test` random images of
// side x side pixels; `bad_label` (if >= 0) replaces the last test label.
std::string make_data(const std::string& name, std::uint32_t train, std::uint32_t test, std::uint32_t side = 28,
                      int bad_label = -1) {
  fs::path dir = scratch() / name;
  fs::create_directories(dir);
  std::mt19937 rng(7);
  auto write_set = [&](const std::string& prefix, std::uint32_t n, std::uint32_t pixels_side, int last_label) {
    auto images = idx_header({n, pixels_side, pixels_side});
    for (std::uint32_t i = 0; i < n * pixels_side * pixels_side; ++i) images.push_back(static_cast<std::uint8_t>(rng()));
    auto labels = idx_header({n});
    for (std::uint32_t i = 0; i < n; ++i) labels.push_back(static_cast<std::uint8_t>(i % 10));
    if (last_label >= 0) labels.back() = static_cast<std::uint8_t>(last_label);
    write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), images);
    write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), labels);
  };
  write_set("train", train, 28, -1);
  write_set("t10k", test, side, bad_label);
  return dir.string();
}

const std::string tiny = "--batch 16 --replicas 2 --epochs 1";

}  // namespace

TEST_CASE("example: bad numbers are usage errors, before any data is read", "[example]") {
  for (const char* bad : {"--lr nan", "--lr inf", "--lr -5", "--lr 0", "--lr 1e300", "--weight-decay nan",
                          "--weight-decay -1", "--weight-decay inf", "--momentum -0.5", "--momentum 1",
                          "--momentum nan", "--epochs 0", "--batch 0", "--epochs -1", "--lr 0.1x"}) {
    INFO(bad);
    outcome o = run(std::string(bad) + " --data /nonexistent");
    CHECK(o.status == 2);
    std::string flag = std::string(bad).substr(0, std::string(bad).find(' '));
    CHECK_THAT(o.output, Catch::Contains(flag) && Catch::Contains("usage:"));
  }
}

TEST_CASE("example: --help explains --replicas 0", "[example]") {
  outcome o = run("--help");
  CHECK_THAT(o.output, Catch::Contains("--replicas N") && Catch::Contains("0 means one per hardware thread"));
}

TEST_CASE("example: a tiny run trains, saves, and warns about more replicas than hardware threads", "[example]") {
  std::string data = make_data("good", 64, 20);
  fs::path ck = scratch() / "ck.bin";
  outcome o = run(tiny + " --data '" + data + "' --save '" + ck.string() + "'");
  INFO(o.output);
  CHECK(o.status == 0);
  CHECK_THAT(o.output, Catch::Contains("epoch 1/1"));
  CHECK(fs::is_regular_file(ck));
  CHECK_THAT(o.output, !Catch::Contains("warning"));  // 2 replicas fit (or a warning names them below)

  unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  o = run("--batch 16 --epochs 1 --replicas " + std::to_string(hardware + 1) + " --data '" + data + "'");
  INFO(o.output);
  CHECK(o.status == 0);
  CHECK_THAT(o.output, Catch::Contains("warning: " + std::to_string(hardware + 1) + " replicas on " +
                                       std::to_string(hardware) + " hardware threads"));
  fs::remove_all(scratch());
}

TEST_CASE("example: problems that would surface after an epoch are found before the first step", "[example]") {
  std::string good = make_data("good", 64, 20);
  struct check {
    std::string args, message;
  };
  std::vector<check> checks = {
      {"--save /nonexistent/folder/ck.bin", "the folder '/nonexistent/folder' does not exist"},
      {"--save '" + scratch().string() + "'", "is a directory"},
      {"--resume /dev/zero", "not a regular file"},
      {"--data '" + make_data("bad_label", 64, 20, 28, 10) + "'", "test set's label 10 (sample 19) is not a class"},
      {"--data '" + make_data("bad_shape", 64, 20, 27) + "'", "test images have 729 pixels, the training images 784"},
      {"--data /nonexistent", "/nonexistent/train-images-idx3-ubyte.gz"},
  };
  for (const auto& c : checks) {
    outcome o = run(tiny + (c.args.rfind("--data", 0) == 0 ? "" : " --data '" + good + "'") + " " + c.args);
    INFO(c.args << "\n" << o.output);
    CHECK(o.status == 1);
    CHECK_THAT(o.output, Catch::Contains(c.message));
    CHECK_THAT(o.output, !Catch::Contains("epoch 1/1"));  // no training step was taken
  }
  fs::remove_all(scratch());
}

TEST_CASE("example: a loss that is no longer finite stops the run with an error", "[example]") {
  std::string data = make_data("good", 64, 20);
  outcome o = run("--batch 16 --replicas 2 --epochs 3 --lr 1e30 --data '" + data + "'");
  INFO(o.output);
  CHECK(o.status == 1);
  CHECK_THAT(o.output, Catch::Contains("training diverged: the loss is"));
  fs::remove_all(scratch());
}

TEST_CASE("example: an unknown or misplaced argument is named, wherever it stands", "[example]") {
  struct check {
    std::string args, message;
  };
  for (const check& c : {check{"--epochs 1 --foo", "unknown option --foo"},
                         check{"--foo --epochs 1", "unknown option --foo"},
                         check{"--epochs 1 foo", "unexpected argument 'foo'"},
                         check{"--foo=3", "unknown option --foo"},
                         check{"--help=1", "--help takes no value"},
                         check{"--epochs", "missing value after --epochs"},
                         check{"--model rnn", "--model expects mlp or cnn, got 'rnn'"},
                         check{"--model cnn --device gpu", "--model cnn trains on CPU replicas only"},
                         check{"--epochs=0", "--epochs must be at least 1"},
                         check{"--lr=", "--lr expects a number, got ''"}}) {
    INFO(c.args);
    outcome o = run("--data /nonexistent " + c.args);
    CHECK(o.status == 2);
    CHECK_THAT(o.output, Catch::Contains(c.message) && Catch::Contains("usage:"));
  }
}

TEST_CASE("example: --name=value and --name value mean the same; --model cnn trains", "[example]") {
  std::string data = make_data("good", 64, 20);
  outcome o = run("--batch=16 --replicas=2 --epochs=1 --model=cnn --data='" + data + "'");
  INFO(o.output);
  CHECK(o.status == 0);
  CHECK_THAT(o.output, Catch::Contains("CNN conv3x3(32)") && Catch::Contains("batch 16") &&
                           Catch::Contains("2 CPU replicas") && Catch::Contains("epoch 1/1"));
  CHECK_THAT(o.output, Catch::Contains("final test accuracy"));
  o = run(tiny + " --data '" + data + "'");  // the MLP stays the default
  CHECK_THAT(o.output, Catch::Contains("MLP 784-256-128-10"));
  fs::remove_all(scratch());
}

TEST_CASE("example: a batch or an epoch count too large for the data is named, not a schedule error",
          "[example]") {
  std::string data = make_data("good", 64, 20);
  for (const std::string& bad : {std::string("--batch 18446744073709551615"), std::string("--batch 65"),
                                 std::string("--epochs 18446744073709551615")}) {
    outcome o = run("--replicas 2 --batch 16 " + bad + " --data '" + data + "'");
    INFO(bad << "\n" << o.output);
    CHECK(o.status == 1);
    CHECK_THAT(o.output, Catch::Contains(bad.substr(0, bad.find(' '))) && !Catch::Contains("lr_schedule"));
    CHECK_THAT(o.output, !Catch::Contains("epoch 1/"));
  }
  fs::remove_all(scratch());
}
