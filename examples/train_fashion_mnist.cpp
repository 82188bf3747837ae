// Trains a classifier on Fashion-MNIST with data-parallel SGD: one replica
// per thread, a gradient all-reduce per step; under mpiexec, one such group of
// replicas per MPI rank (replicas = ranks x --replicas). --model mlp (the
// default) is an MLP 784-256-128-10; --model cnn a small CNN, two blocks of
// 3x3 convolution + ReLU + 2x2 max pooling, then a hidden dense layer.
//
//   train_fashion_mnist [--model mlp|cnn] [--epochs 20 (cnn: 8)] [--batch 128] [--lr 0.05]
//                       [--momentum 0.9] [--weight-decay 1e-4] [--replicas N] [--seed 1]
//                       [--data DIR] [--metrics FILE.csv] [--save FILE] [--resume FILE]
//                       [--stop-after N]
//   mpiexec -n 2 train_fashion_mnist --replicas 1
//   train_fashion_mnist_gpu --device gpu        one replica on GPU 0 (MLP only)
//   train_fashion_mnist_gpu --devices 0,0       one replica per listed device (a device may repeat)
//
// train_fashion_mnist_gpu is this file built by nvcc (train_fashion_mnist_gpu.cu).
// Prints a progress bar per epoch (samples/s, running loss) and the test
// accuracy after each epoch (rank 0 prints and writes the metrics). Options
// are `--name value` or `--name=value`. Bad options are usage errors (exit
// 2); the data, the --save location and --resume are checked before the first
// step, and a loss that stops being finite ends the run with exit 1. --save
// writes a checkpoint after every epoch; --resume continues from one exactly
// as if the run had not stopped (give it the same options: the learning-rate
// schedule spans --epochs). --stop-after N ends the run after epoch N, as an
// interrupted run would. --help lists the options.
#include <dpar/nn.hpp>
#ifdef DPAR_EXAMPLE_GPU
#include <dpar/nn/cuda.hpp>
#endif
#ifdef DPAR_EXAMPLE_MPI
#include <dpar/nn/mpi.hpp>
#endif

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nn = dpar::nn;

namespace {

struct args {
  std::string model = "mlp";
  std::size_t epochs = 0, batch = 128, replicas = 0, stop_after = 0;  // epochs 0: the model's default
  float lr = 0.05f, momentum = 0.9f, weight_decay = 1e-4f;
  std::uint64_t seed = 1;
  std::string data = "/usr/share/datasets/fashion-mnist", metrics, save, resume;
  std::vector<int> devices;  // GPU replicas, one per entry; empty: CPU threads
};

const char* const options_help =
    "usage: train_fashion_mnist [options]     (under MPI: mpiexec -n N train_fashion_mnist [options])\n"
    "  --model mlp|cnn    an MLP 784-256-128-10, or a small CNN (two 3x3 conv + pool blocks, dense 128) (default mlp)\n"
    "  --epochs N         passes over the training set, at least 1 (default 20 for mlp, 8 for cnn)\n"
    "  --batch N          global batch size, split over all replicas (default 128)\n"
    "  --lr X             peak learning rate of the cosine schedule, finite and > 0 (default 0.05)\n"
    "  --momentum X       Nesterov momentum in [0, 1); 0 for plain SGD (default 0.9)\n"
    "  --weight-decay X   L2 weight decay, finite and >= 0 (default 1e-4)\n"
    "  --replicas N       replicas (threads) per process; 0 means one per hardware thread (default 0)\n"
    "  --device cpu|gpu   where replicas run; gpu: one replica on device 0 (default cpu)\n"
    "  --devices LIST     GPU replicas, one per listed device, e.g. 0,1 or 0,0 (default: none)\n"
    "  --seed N           model initialization and data order (default 1)\n"
    "  --data DIR         directory of the Fashion-MNIST .gz files (default /usr/share/datasets/fashion-mnist)\n"
    "  --metrics FILE     per-epoch CSV: losses, accuracies, time (default: none)\n"
    "  --save FILE        checkpoint after every epoch (default: none)\n"
    "  --resume FILE      continue from a checkpoint, with the same options (default: none)\n"
    "  --stop-after N     stop after epoch N, as an interrupted run would (default: run all epochs)\n"
    "  --help             this text\n"
    "Options are written --name value or --name=value.\n";

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "train_fashion_mnist: " << problem << "\n" << options_help;
  std::exit(2);
}

template <class T>
T number(const std::string& flag, const std::string& text) {
  try {
    std::size_t used = 0;
    T v;
    if constexpr (std::is_floating_point_v<T>) v = static_cast<T>(std::stod(text, &used));
    else {
      if (!text.empty() && text[0] == '-') throw std::invalid_argument("negative");
      v = static_cast<T>(std::stoull(text, &used));
    }
    if (used != text.size()) throw std::invalid_argument("trailing characters");
    return v;
  } catch (const std::exception&) {
    usage(flag + " expects a number, got '" + text + "'");
  }
}

args parse(int argc, char** argv) {
  args a;
  // What each option does with its value; the one list of the options there are.
  using setter = std::function<void(const std::string& flag, const std::string& value)>;
  const std::map<std::string, setter> options = {
      {"--model",
       [&](auto& f, auto& v) {
         if (v != "mlp" && v != "cnn") usage(f + " expects mlp or cnn, got '" + v + "'");
         a.model = v;
       }},
      {"--epochs",
       [&](auto& f, auto& v) {
         a.epochs = number<std::size_t>(f, v);
         if (a.epochs == 0) usage("--epochs must be at least 1");
       }},
      {"--batch", [&](auto& f, auto& v) { a.batch = number<std::size_t>(f, v); }},
      {"--lr", [&](auto& f, auto& v) { a.lr = number<float>(f, v); }},
      {"--momentum", [&](auto& f, auto& v) { a.momentum = number<float>(f, v); }},
      {"--weight-decay", [&](auto& f, auto& v) { a.weight_decay = number<float>(f, v); }},
      {"--replicas", [&](auto& f, auto& v) { a.replicas = number<std::size_t>(f, v); }},
      {"--seed", [&](auto& f, auto& v) { a.seed = number<std::uint64_t>(f, v); }},
      {"--device",
       [&](auto& f, auto& v) {
         if (v != "cpu" && v != "gpu") usage(f + " expects cpu or gpu, got '" + v + "'");
         a.devices = v == "gpu" ? std::vector<int>{0} : std::vector<int>{};
       }},
      {"--devices",
       [&](auto& f, auto& v) {
         a.devices.clear();
         for (std::size_t at = 0; at <= v.size();) {
           std::size_t comma = std::min(v.find(',', at), v.size());
           a.devices.push_back(static_cast<int>(number<unsigned>(f, v.substr(at, comma - at))));
           at = comma + 1;
         }
       }},
      {"--data", [&](auto&, auto& v) { a.data = v; }},
      {"--metrics", [&](auto&, auto& v) { a.metrics = v; }},
      {"--save", [&](auto&, auto& v) { a.save = v; }},
      {"--resume", [&](auto&, auto& v) { a.resume = v; }},
      {"--stop-after", [&](auto& f, auto& v) { a.stop_after = number<std::size_t>(f, v); }},
  };
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i], v;
    std::size_t eq = f.rfind("--", 0) == 0 ? f.find('=') : std::string::npos;
    if (eq != std::string::npos) {  // --name=value
      v = f.substr(eq + 1);
      f.resize(eq);
    }
    if (f == "--help" || f == "-h") {
      if (eq != std::string::npos) usage(f + " takes no value");
      std::cout << options_help;
      std::exit(0);
    }
    auto option = options.find(f);
    if (option == options.end())
      usage(f.rfind("-", 0) == 0 ? "unknown option " + f : "unexpected argument '" + f + "' (options start with --)");
    if (eq == std::string::npos) {
      if (i + 1 >= argc) usage("missing value after " + f);
      v = argv[++i];
    }
    option->second(f, v);
  }
  if (a.epochs == 0) a.epochs = a.model == "cnn" ? 8 : 20;
  if (a.batch == 0) usage("--batch must be positive");
  // Written so that NaN fails every check.
  if (!(std::isfinite(a.lr) && a.lr > 0)) usage("--lr must be a finite number > 0, got " + std::to_string(a.lr));
  if (!(a.momentum >= 0 && a.momentum < 1)) usage("--momentum must be in [0, 1), got " + std::to_string(a.momentum));
  if (!(std::isfinite(a.weight_decay) && a.weight_decay >= 0))
    usage("--weight-decay must be a finite number >= 0, got " + std::to_string(a.weight_decay));
  unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  if (a.replicas == 0) a.replicas = hardware;
  if (a.replicas > hardware)
    std::fprintf(stderr,
                 "train_fashion_mnist: warning: %zu replicas on %u hardware threads; they take turns on the cores, "
                 "which is much slower than --replicas %u\n",
                 a.replicas, hardware, hardware);
  if (a.model == "cnn" && !a.devices.empty())
    usage("--model cnn trains on CPU replicas only (convolutions have no GPU path yet); drop --device/--devices");
#ifndef DPAR_EXAMPLE_GPU
  if (!a.devices.empty()) usage("this build has no GPU replicas: run train_fashion_mnist_gpu (built where nvcc is)");
#endif
  return a;
}

// --save must be writable before the first epoch is spent: its folder must
// exist and take new files (the checkpoint is written beside it, then renamed).
void check_save_target(const std::string& file) {
  namespace fs = std::filesystem;
  fs::path target(file), folder = fs::path(file).parent_path();
  if (folder.empty()) folder = ".";
  std::error_code ec;
  if (fs::is_directory(target, ec)) throw std::runtime_error("--save '" + file + "' is a directory; name a file");
  if (!fs::is_directory(folder, ec))
    throw std::runtime_error("--save '" + file + "': the folder '" + folder.string() + "' does not exist");
  if (::access(folder.c_str(), W_OK | X_OK) != 0)
    throw std::runtime_error("--save '" + file + "': cannot write in the folder '" + folder.string() + "'");
}

// Every label must name one of the model's classes and the test images must
// match the training images, before any training time is spent.
void check_data(const nn::dataset& set, const std::string& name, std::size_t features, std::size_t classes) {
  if (set.size() == 0) throw std::runtime_error("the " + name + " set is empty");
  if (set.images.cols() != features)
    throw std::runtime_error("the " + name + " images have " + std::to_string(set.images.cols()) +
                             " pixels, the training images " + std::to_string(features));
  for (std::size_t i = 0; i < set.size(); ++i)
    if (set.labels[i] < 0 || static_cast<std::size_t>(set.labels[i]) >= classes)
      throw std::runtime_error("the " + name + " set's label " + std::to_string(set.labels[i]) + " (sample " +
                               std::to_string(i) + ") is not a class in [0, " + std::to_string(classes) + ")");
}

// A loss that is no longer finite will not recover: stop instead of training on.
void check_loss(double loss, std::size_t epoch) {
  if (!std::isfinite(loss))
    throw std::runtime_error("training diverged: the loss is " + std::to_string(loss) + " in epoch " +
                             std::to_string(epoch) + " (try a smaller --lr)");
}

void progress_bar(std::size_t epoch, std::size_t epochs, std::size_t done, std::size_t total, double rate,
                  double loss) {
  constexpr int width = 30;
  int filled = static_cast<int>(width * done / std::max<std::size_t>(total, 1));
  std::string bar(filled, '=');
  if (filled < width) bar += '>' + std::string(width - filled - 1, ' ');
  std::printf("\repoch %zu/%zu [%s] %zu/%zu  %.1fk samples/s  loss %.4f", epoch, epochs, bar.c_str(), done, total,
              rate / 1000, loss);
  std::fflush(stdout);
}

// MPI for the life of main when the example is built with it: one process
// without mpiexec, N ranks under mpiexec -n N.
struct mpi_session {
  int rank = 0, ranks = 1;
#ifdef DPAR_EXAMPLE_MPI
  mpi_session(int& argc, char**& argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  }
  ~mpi_session() { MPI_Finalize(); }
  // An error that may not have reached every rank: end them all, none waits.
  void abort(int code) const { MPI_Abort(MPI_COMM_WORLD, code); }
#else
  mpi_session(int&, char**&) {}
  void abort(int) const {}
#endif
};

// The model --model names, for images of `pixels` (a square) and `classes`
// classes, with a line that describes it.
std::pair<nn::sequential, std::string> make_model(const std::string& kind, std::size_t pixels, std::size_t classes) {
  if (kind == "mlp")
    return {nn::make_mlp({pixels, 256, 128, classes}),
            "MLP " + std::to_string(pixels) + "-256-128-" + std::to_string(classes)};
  const auto side = static_cast<std::size_t>(std::lround(std::sqrt(static_cast<double>(pixels))));
  if (side * side != pixels)
    throw std::runtime_error("--model cnn needs square images; these have " + std::to_string(pixels) + " pixels");
  return {nn::make_cnn({1, side, side}, {32, 64}, 128, classes),
          "CNN conv3x3(32)-pool-conv3x3(64)-pool-dense(128)-" + std::to_string(classes)};
}

// Replicas on the pool's threads; under MPI, on every rank's pool; or on the GPUs.
nn::data_parallel_trainer make_trainer(const args& a, const mpi_session& mpi, dpar::thread_pool& pool,
                                       const nn::sequential& model, const nn::train_options& o) {
#ifdef DPAR_EXAMPLE_GPU
  if (a.devices.size() == 1) return nn::data_parallel_trainer(dpar::gpu.on(a.devices[0]), model, o);
  if (!a.devices.empty()) return nn::data_parallel_trainer(dpar::multi_gpu(a.devices), model, o);
#endif
  (void)a;
#ifdef DPAR_EXAMPLE_MPI
  if (mpi.ranks > 1) return nn::data_parallel_trainer(dpar::mpi(MPI_COMM_WORLD, dpar::par.on(pool)), model, o);
#endif
  (void)mpi;
  return nn::data_parallel_trainer(dpar::par.on(pool), model, o);
}

// Loads the data, trains, evaluates after every epoch; rank 0 reports.
int train_and_report(const args& a, const mpi_session& mpi) {
  if (!a.save.empty()) check_save_target(a.save);
  auto train = nn::idx_load_dataset(a.data + "/train-images-idx3-ubyte.gz", a.data + "/train-labels-idx1-ubyte.gz");
  auto test = nn::idx_load_dataset(a.data + "/t10k-images-idx3-ubyte.gz", a.data + "/t10k-labels-idx1-ubyte.gz");
  constexpr std::size_t classes = 10;
  check_data(train, "training", train.images.cols(), classes);
  check_data(test, "test", train.images.cols(), classes);
  // Standardize pixels with the training set's mean and deviation.
  double mean = dpar::reduce(dpar::par, train.images.flat(), 0.0) / train.images.size();
  double var = dpar::transform_reduce(dpar::par, train.images.flat().begin(), train.images.flat().end(), 0.0,
                                      std::plus<>{}, [mean](float v) { return (v - mean) * (v - mean); }) /
               train.images.size();
  float inv_std = static_cast<float>(1.0 / std::sqrt(var)), m = static_cast<float>(mean);
  for (auto* set : {&train, &test})
    dpar::transform(dpar::par, set->images.flat().begin(), set->images.flat().end(), set->images.flat().begin(),
                    [=](float v) { return (v - m) * inv_std; });

  if (a.batch > train.size())
    throw std::runtime_error("--batch " + std::to_string(a.batch) + " is larger than the training set (" +
                             std::to_string(train.size()) + " images)");
  const std::size_t steps_per_epoch = train.size() / a.batch + (train.size() % a.batch != 0);
  if (a.epochs > std::numeric_limits<std::size_t>::max() / steps_per_epoch)
    throw std::runtime_error("--epochs " + std::to_string(a.epochs) + " is too many: " + std::to_string(a.epochs) +
                             " x " + std::to_string(steps_per_epoch) + " steps overflow the step counter");
  auto [model, description] = make_model(a.model, train.images.cols(), classes);
  model.initialize(a.seed);
  nn::train_options o;
  o.batch = a.batch;
  o.seed = a.seed;
  o.sgd = {a.momentum, a.momentum > 0, a.weight_decay};
  o.schedule = nn::lr_schedule::cosine(a.lr, a.epochs * steps_per_epoch).with_warmup(steps_per_epoch / 2);

  dpar::thread_pool pool(a.devices.empty() ? a.replicas : 1);
  nn::data_parallel_trainer trainer = make_trainer(a, mpi, pool, model, o);
  const bool root = trainer.rank() == 0;  // rank 0 prints and writes the metrics
  if (!a.resume.empty()) {
    trainer.resume(a.resume);
    if (root)
      std::printf("resumed from %s after epoch %zu (step %zu)\n", a.resume.c_str(), trainer.epochs(), trainer.steps());
  }
  if (root)
    std::printf("Fashion-MNIST: %zu training / %zu test images; %s (%zu parameters); "
                "%d rank%s x %zu %s replica%s = %zu replicas, batch %zu, lr %g (cosine), momentum %g (Nesterov), "
                "weight decay %g\n",
                train.size(), test.size(), description.c_str(), model.parameters().size(), mpi.ranks,
                mpi.ranks == 1 ? "" : "s",
                trainer.local_replicas(), a.devices.empty() ? "CPU" : "GPU", trainer.local_replicas() == 1 ? "" : "s", trainer.replicas(), a.batch, a.lr, a.momentum, a.weight_decay);

  std::ofstream csv;
  if (root && !a.metrics.empty()) {
    bool append = !a.resume.empty() && std::ifstream(a.metrics).good();
    csv.open(a.metrics, append ? std::ios::app : std::ios::trunc);
    if (!csv) throw std::runtime_error("cannot write the metrics file '" + a.metrics + "'");
    if (!append) csv << "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds,samples_per_second\n";
  }

  double accuracy = 0;
  while (trainer.epochs() < a.epochs) {
    std::size_t epoch = trainer.epochs() + 1;
    auto start = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    std::size_t shown = 0;
    auto r = trainer.train_epoch(train, [&](std::size_t done, std::size_t total, double loss) {
      check_loss(loss, epoch);
      if (root && (done - shown >= 4096 || done == total)) {
        shown = done;
        progress_bar(epoch, a.epochs, done, total, done / seconds(), loss);
      }
    });
    double elapsed = seconds();
    check_loss(r.loss_sum, epoch);
    auto t = trainer.evaluate(test);
    accuracy = double(t.correct) / t.samples;
    if (root)
      std::printf("\repoch %zu/%zu  train loss %.4f acc %.4f | test loss %.4f acc %.4f | %.1fs, %.1fk samples/s\n",
                epoch, a.epochs, r.loss_sum / r.samples, double(r.correct) / r.samples, t.loss_sum / t.samples,
                accuracy, elapsed, r.samples / elapsed / 1000);
    if (csv) {
      csv << epoch << ',' << r.loss_sum / r.samples << ',' << double(r.correct) / r.samples << ','
          << t.loss_sum / t.samples << ',' << accuracy << ',' << elapsed << ',' << r.samples / elapsed << '\n';
      csv.flush();
    }
    if (!a.save.empty()) trainer.save(a.save);
    if (a.stop_after != 0 && trainer.epochs() >= a.stop_after) {
      if (root) std::printf("stopping after epoch %zu (--stop-after)\n", trainer.epochs());
      return 0;
    }
  }
  if (root) std::printf("final test accuracy %.4f\n", accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  args a = parse(argc, argv);  // before MPI starts: a usage error or --help just exits
  mpi_session mpi(argc, argv);
  try {
    return train_and_report(a, mpi);
  } catch (const std::exception& e) {
    if (mpi.ranks == 1) {
      std::fprintf(stderr, "\ntrain_fashion_mnist: %s\n", e.what());
      return 1;
    }
    std::fprintf(stderr, "\ntrain_fashion_mnist (rank %d): %s\n", mpi.rank, e.what());
    mpi.abort(1);  // in case the error did not reach every rank
    return 1;
  }
}
