// Regression with dpar::nn: learns y = sin(x) on [-pi, pi] from noisy samples
// with a small tanh MLP, on tensor targets, with the built-in MSE or a loss of
// the user's own (a Huber loss written here, the way a user writes one).
// Replicas: one per thread; under mpiexec, one group of threads per rank.
//
//   regression [--epochs 40] [--replicas N] [--loss mse|huber] [--seed 1] [--max-mse X]
//   mpiexec -n 2 regression --replicas 1
//
// Rank 0 prints the test MSE (against the noise-free sin) every 25 epochs and
// last "final test MSE X". --max-mse X makes the run fail (exit 1) when the
// final test MSE is above X: the CTest runs use it.
#include <dpar/nn.hpp>
#ifdef DPAR_EXAMPLE_MPI
#include <dpar/nn/mpi.hpp>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numbers>
#include <random>
#include <string>
#include <thread>

namespace nn = dpar::nn;

namespace {

struct args {
  std::size_t epochs = 40, replicas = 0;
  std::string loss = "mse";
  std::uint64_t seed = 1;
  double max_mse = 0;  // 0: no limit
};

// n samples of x uniform in [-pi, pi], targets sin(x) plus Gaussian noise.
nn::tensor_dataset sine(std::size_t n, float noise, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> x(-std::numbers::pi_v<float>, std::numbers::pi_v<float>);
  std::normal_distribution<float> e(0.0f, noise);
  nn::tensor_dataset data{nn::tensor(n, 1), nn::tensor(n, 1)};
  for (std::size_t i = 0; i < n; ++i) {
    data.inputs(i, 0) = x(g);
    data.targets(i, 0) = std::sin(data.inputs(i, 0)) + (noise > 0 ? e(g) : 0.0f);
  }
  return data;
}

// A loss of the user's own, with the signature of the built-in ones: the sum
// of the shard's per-sample losses, and the gradient of sum / total.
struct my_huber {
  double delta = 0.1;
  double operator()(const nn::tensor& out, const nn::tensor& targets, nn::tensor* grad, std::size_t total) const {
    double sum = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      double d = double(out.data()[i]) - targets.data()[i];
      sum += std::abs(d) <= delta ? 0.5 * d * d : delta * (std::abs(d) - 0.5 * delta);
      if (grad) grad->data()[i] = float(std::clamp(d, -delta, delta) / double(total));
    }
    return sum;
  }
};

nn::sequential make_model() {
  nn::sequential m(1);  // parameters are initialized as layers are added (Xavier for tanh)
  m.add(nn::dense(1, 32, nn::init::xavier)).add(nn::tanh_layer());
  m.add(nn::dense(32, 32, nn::init::xavier)).add(nn::tanh_layer());
  m.add(nn::dense(32, 1, nn::init::xavier));
  return m;
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "regression: %s\nusage: regression [--epochs N] [--replicas N] [--loss mse|huber] [--seed N] "
               "[--max-mse X]\n",
               why.c_str());
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) usage("option " + k + " needs a value");
    std::string v = argv[++i];
    try {
      if (k == "--epochs") a.epochs = std::stoul(v);
      else if (k == "--replicas") a.replicas = std::stoul(v);
      else if (k == "--loss") a.loss = v;
      else if (k == "--seed") a.seed = std::stoull(v);
      else if (k == "--max-mse") a.max_mse = std::stod(v);
      else usage("unknown option " + k);
    } catch (const std::logic_error&) {
      usage("bad value '" + v + "' for " + k);
    }
  }
  if (a.epochs == 0) usage("--epochs must be at least 1");
  if (a.loss != "mse" && a.loss != "huber") usage("--loss is mse or huber, not " + a.loss);
  return a;
}

int run(const args& a, int rank, [[maybe_unused]] int ranks) {
  const auto train = sine(2048, 0.05f, a.seed), test = sine(512, 0.0f, a.seed + 1);
  nn::train_options o;
  o.batch = 32;
  o.seed = a.seed;
  o.sgd = {.momentum = 0.9f};
  o.schedule = nn::lr_schedule::cosine(0.02f, a.epochs * (train.size() / o.batch), 0.0005f);
  if (a.loss == "huber") o.loss = my_huber{};
  else o.loss = nn::mse{};
  std::size_t threads = a.replicas ? a.replicas : std::max(1u, std::thread::hardware_concurrency());
  dpar::thread_pool pool(threads);
#ifdef DPAR_EXAMPLE_MPI
  auto trainer = ranks > 1 ? nn::data_parallel_trainer(dpar::mpi(MPI_COMM_WORLD, dpar::par.on(pool)), make_model(), o)
                           : nn::data_parallel_trainer(dpar::par.on(pool), make_model(), o);
#else
  nn::data_parallel_trainer trainer(dpar::par.on(pool), make_model(), o);
#endif
  // The test MSE against the noise-free targets, whatever loss trains (mse
  // returns the sum of the per-sample losses: divide by the sample count).
  auto test_mse = [&] { return nn::mse{}(trainer.model().predict(test.inputs), test.targets) / double(test.size()); };
  if (rank == 0) std::printf("%zu replicas, loss %s, %zu epochs\n", trainer.replicas(), a.loss.c_str(), a.epochs);
  for (std::size_t e = 1; e <= a.epochs; ++e) {
    nn::step_result r = trainer.train_epoch(train);
    if (!std::isfinite(r.loss_sum)) {
      if (rank == 0) std::fprintf(stderr, "regression: the loss diverged in epoch %zu\n", e);
      return 1;
    }
    if (rank == 0 && (e % 25 == 0 || e == a.epochs))
      std::printf("epoch %zu: train loss %.6f, test MSE %.6f\n", e, r.loss_sum / r.samples, test_mse());
  }
  double mse = test_mse();
  if (rank == 0) std::printf("final test MSE %.6g\n", mse);
  if (a.max_mse > 0 && !(mse <= a.max_mse)) {
    if (rank == 0) std::fprintf(stderr, "regression: test MSE %.6g is above --max-mse %.6g\n", mse, a.max_mse);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = 0, ranks = 1;
#ifdef DPAR_EXAMPLE_MPI
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
#endif
  int code = 0;
  try {
    code = run(parse(argc, argv), rank, ranks);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "regression: %s\n", e.what());
    code = 1;
  }
#ifdef DPAR_EXAMPLE_MPI
  MPI_Finalize();
#endif
  return code;
}
