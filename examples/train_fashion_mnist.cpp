// Trains an MLP (784-256-128-10) on Fashion-MNIST with data-parallel SGD: one
// replica per thread, a gradient all-reduce per step.
//
//   train_fashion_mnist [--epochs 20] [--batch 128] [--lr 0.05] [--momentum 0.9]
//                       [--weight-decay 1e-4] [--replicas N] [--seed 1] [--data DIR]
//                       [--metrics FILE.csv] [--save FILE] [--resume FILE] [--stop-after N]
//
// Prints a progress bar per epoch (samples/s, running loss) and the test
// accuracy after each epoch. Bad options are usage errors (exit 2); the data,
// the --save location and --resume are checked before the first step, and a
// loss that stops being finite ends the run with exit 1. --save writes a
// checkpoint after every epoch; --resume continues from one exactly as if the
// run had not stopped (give it the same options: the learning-rate schedule
// spans --epochs). --stop-after N ends the run after epoch N, as an
// interrupted run would.
#include <dpar/nn.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

namespace nn = dpar::nn;

namespace {

struct args {
  std::size_t epochs = 20, batch = 128, replicas = 0, stop_after = 0;
  float lr = 0.05f, momentum = 0.9f, weight_decay = 1e-4f;
  std::uint64_t seed = 1;
  std::string data = "/usr/share/datasets/fashion-mnist", metrics, save, resume;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "train_fashion_mnist: " << problem << "\n"
            << "usage: train_fashion_mnist [--epochs N] [--batch N] [--lr X] [--momentum X] [--weight-decay X]\n"
               "                           [--replicas N] [--seed N] [--data DIR] [--metrics FILE.csv]\n"
               "                           [--save FILE] [--resume FILE] [--stop-after N]\n"
               "  --epochs N        epochs to train, N >= 1 (default 20)\n"
               "  --lr X            peak learning rate, finite and > 0 (default 0.05)\n"
               "  --momentum X      Nesterov momentum in [0, 1); 0 turns it off (default 0.9)\n"
               "  --weight-decay X  finite and >= 0 (default 1e-4)\n"
               "  --replicas N      data-parallel replicas (threads); 0 means one per hardware thread (default 0)\n";
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
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "--help" || f == "-h") usage("help");
    if (i + 1 >= argc) usage("missing value after " + f);
    std::string v = argv[++i];
    if (f == "--epochs") a.epochs = number<std::size_t>(f, v);
    else if (f == "--batch") a.batch = number<std::size_t>(f, v);
    else if (f == "--lr") a.lr = number<float>(f, v);
    else if (f == "--momentum") a.momentum = number<float>(f, v);
    else if (f == "--weight-decay") a.weight_decay = number<float>(f, v);
    else if (f == "--replicas") a.replicas = number<std::size_t>(f, v);
    else if (f == "--seed") a.seed = number<std::uint64_t>(f, v);
    else if (f == "--data") a.data = v;
    else if (f == "--metrics") a.metrics = v;
    else if (f == "--save") a.save = v;
    else if (f == "--resume") a.resume = v;
    else if (f == "--stop-after") a.stop_after = number<std::size_t>(f, v);
    else usage("unknown option " + f);
  }
  if (a.epochs == 0) usage("--epochs must be at least 1");
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

}  // namespace

int main(int argc, char** argv) try {
  args a = parse(argc, argv);
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

  auto model = nn::make_mlp({train.images.cols(), 256, 128, classes});
  model.initialize(a.seed);
  std::size_t steps_per_epoch = (train.size() + a.batch - 1) / a.batch;
  nn::train_options o;
  o.batch = a.batch;
  o.seed = a.seed;
  o.sgd = {a.momentum, a.momentum > 0, a.weight_decay};
  o.schedule = nn::lr_schedule::cosine(a.lr, a.epochs * steps_per_epoch).with_warmup(steps_per_epoch / 2);

  dpar::thread_pool pool(a.replicas);
  nn::data_parallel_trainer trainer(dpar::par.on(pool), model, o);
  if (!a.resume.empty()) {
    trainer.resume(a.resume);
    std::printf("resumed from %s after epoch %zu (step %zu)\n", a.resume.c_str(), trainer.epochs(), trainer.steps());
  }
  std::printf("Fashion-MNIST: %zu training / %zu test images; MLP 784-256-128-10 (%zu parameters); "
              "%zu replicas, batch %zu, lr %g (cosine), momentum %g (Nesterov), weight decay %g\n",
              train.size(), test.size(), model.parameters().size(), trainer.replicas(), a.batch, a.lr, a.momentum,
              a.weight_decay);

  std::ofstream csv;
  if (!a.metrics.empty()) {
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
      if (done - shown >= 4096 || done == total) {
        shown = done;
        progress_bar(epoch, a.epochs, done, total, done / seconds(), loss);
      }
    });
    double elapsed = seconds();
    check_loss(r.loss_sum, epoch);
    auto t = trainer.evaluate(test);
    accuracy = double(t.correct) / t.samples;
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
      std::printf("stopping after epoch %zu (--stop-after)\n", trainer.epochs());
      return 0;
    }
  }
  std::printf("final test accuracy %.4f\n", accuracy);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "\ntrain_fashion_mnist: %s\n", e.what());
  return 1;
}
