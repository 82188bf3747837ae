// Trains an MLP (784-256-128-10) on Fashion-MNIST with data-parallel SGD: one
// replica per thread, a gradient all-reduce per step.
//
//   train_fashion_mnist [--epochs 20] [--batch 128] [--lr 0.05] [--momentum 0.9]
//                       [--weight-decay 1e-4] [--replicas N] [--seed 1] [--data DIR]
//                       [--metrics FILE.csv] [--save FILE] [--resume FILE] [--stop-after N]
//
// Prints a progress bar per epoch (samples/s, running loss) and the test
// accuracy after each epoch. --save writes a checkpoint after every epoch;
// --resume continues from one exactly as if the run had not stopped (give it
// the same options: the learning-rate schedule spans --epochs). --stop-after N
// ends the run after epoch N, as an interrupted run would.
#include <dpar/nn.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
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
               "                           [--save FILE] [--resume FILE] [--stop-after N]\n";
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
  if (a.batch == 0) usage("--batch must be positive");
  if (a.replicas == 0) a.replicas = std::max(1u, std::thread::hardware_concurrency());
  return a;
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
  auto train = nn::idx_load_dataset(a.data + "/train-images-idx3-ubyte.gz", a.data + "/train-labels-idx1-ubyte.gz");
  auto test = nn::idx_load_dataset(a.data + "/t10k-images-idx3-ubyte.gz", a.data + "/t10k-labels-idx1-ubyte.gz");
  // Standardize pixels with the training set's mean and deviation.
  double mean = dpar::reduce(dpar::par, train.images.flat(), 0.0) / train.images.size();
  double var = dpar::transform_reduce(dpar::par, train.images.flat().begin(), train.images.flat().end(), 0.0,
                                      std::plus<>{}, [mean](float v) { return (v - mean) * (v - mean); }) /
               train.images.size();
  float inv_std = static_cast<float>(1.0 / std::sqrt(var)), m = static_cast<float>(mean);
  for (auto* set : {&train, &test})
    dpar::transform(dpar::par, set->images.flat().begin(), set->images.flat().end(), set->images.flat().begin(),
                    [=](float v) { return (v - m) * inv_std; });

  auto model = nn::make_mlp({train.images.cols(), 256, 128, 10});
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
      if (done - shown >= 4096 || done == total) {
        shown = done;
        progress_bar(epoch, a.epochs, done, total, done / seconds(), loss);
      }
    });
    double elapsed = seconds();
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
