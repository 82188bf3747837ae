// dpar::nn on a CUDA device (nn/cuda.hpp) against the CPU layers: device
// tensors and copies, the cuBLAS GEMM in every transpose combination, each
// layer's forward and backward, both losses, count-correct, the SGD update,
// 20 training steps against the CPU trainer, and parameters moving between a
// GPU model and a CPU model both ways. Then the trainer on dpar::gpu and
// dpar::multi_gpu({0, 0}) replicas: steps, epochs and evaluation against the
// CPU trainer, checkpoints from GPU to CPU and back; device tensors bound to
// the device of the place that fills them (and, with two GPUs, training on
// device 1 and on {0, 1}); models on cudaStreamPerThread from several host
// threads, each with its own cuBLAS handle, freed with the model; and
// deterministic(gpu) / deterministic(multi_gpu) training on the devices, the
// same bits for any replica count. Run by gpu_main.cpp, which skips (exit
// 77) without a CUDA device; the [nodevice] cases run everywhere.
#include <dpar/nn/cuda.hpp>

#include <catch2/catch.hpp>

#include "gpu_common.hpp"  // on_host_threads
#include "nn_test_problem.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace nn = dpar::nn;

namespace {

nn::tensor random_tensor(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  nn::tensor t(rows, cols);
  for (float& v : t.flat()) v = d(g);
  return t;
}

std::vector<std::int32_t> random_labels(std::size_t n, std::size_t k, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<std::int32_t> y(n);
  for (auto& v : y) v = static_cast<std::int32_t>(g() % k);
  return y;
}

std::vector<float> to_vector(std::span<const float> s) { return {s.begin(), s.end()}; }

std::vector<float> download(const dpar::gpu_policy& on, std::span<float> device_span) {
  std::vector<float> h(device_span.size());
  on.synchronize();
  REQUIRE(cudaMemcpy(h.data(), device_span.data(), h.size() * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  return h;
}

std::vector<float> download(const dpar::gpu_policy& on, const nn::device_tensor& t) {
  nn::tensor h;
  nn::copy(on, t, h);
  return to_vector(h.flat());
}

// Every element within rel of the larger magnitude of the two vectors (float
// rounding after reordered sums: cuBLAS and OpenBLAS group products differently).
void require_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double rel) {
  REQUIRE(gpu.size() == cpu.size());
  double scale = 1e-6;
  for (float v : cpu) scale = std::max(scale, double(std::abs(v)));
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    INFO("element " << i << ": gpu " << gpu[i] << ", cpu " << cpu[i]);
    REQUIRE(std::abs(double(gpu[i]) - double(cpu[i])) <= rel * scale);
  }
}

nn::sequential every_layer_model() {
  // Fused Dense+activation for each activation, a Dense without one, and an
  // activation first (the unfused path).
  nn::sequential m(13);
  m.add(nn::tanh_layer())
      .add(nn::dense(13, 17))
      .add(nn::relu())
      .add(nn::dense(17, 11, nn::init::xavier))
      .add(nn::tanh_layer())
      .add(nn::dense(11, 7, nn::init::xavier))
      .add(nn::sigmoid())
      .add(nn::dense(7, 5));
  m.initialize(11);
  return m;
}

struct no_device_path final : nn::layer {
  std::string name() const override { return "Custom"; }
  std::size_t out_features(std::size_t in) const override { return in; }
  void forward(const nn::tensor& x, nn::tensor& y) override { std::copy(x.data(), x.data() + x.size(), y.data()); }
  void backward(const nn::tensor&, const nn::tensor&, const nn::tensor&, nn::tensor*) override {}
  std::unique_ptr<nn::layer> clone() const override { return std::make_unique<no_device_path>(*this); }
};

}  // namespace

TEST_CASE("nn gpu: without a device, a GPU model is a cuda_error naming the cause", "[nn][nodevice]") {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) {
    (void)cudaGetLastError();
    SUCCEED("a device exists; the device cases cover this");
    return;
  }
  (void)cudaGetLastError();
  auto m = nn::make_mlp({4, 3});
  REQUIRE_THROWS_WITH(nn::gpu_model(m, dpar::gpu), Catch::Contains("no CUDA device"));
  // The cuBLAS error's text: call, device, cuBLAS's status name and string.
  nn::cublas_error e("cublasSgemm", 3, CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE_THAT(e.what(), Catch::Contains("cublasSgemm on device 3") && Catch::Contains("CUBLAS_STATUS_INVALID_VALUE"));
  REQUIRE(e.device() == 3);
}

TEST_CASE("nn gpu: device tensors, views and host copies", "[nn]") {
  auto on = dpar::gpu.on(0);
  for (std::size_t rows : {0, 1, 7, 131}) {
    nn::tensor h = random_tensor(rows, 5, rows);
    nn::device_tensor d(0, 0, 0);
    nn::copy(on, h, d);
    REQUIRE(d.rows() == rows);
    REQUIRE(d.cols() == 5);
    REQUIRE(d.where() == nn::device::cuda);
    REQUIRE(download(on, d) == to_vector(h.flat()));
    if (rows > 3) {
      auto v = d.rows_view(2, 2);
      REQUIRE_FALSE(v.owning());
      REQUIRE(download(on, v) == to_vector(h.rows_view(2, 2).flat()));
      REQUIRE_THROWS_AS(v.resize(1, 1), std::logic_error);
    }
    REQUIRE_THROWS_AS(d.rows_view(rows, 1), std::out_of_range);
  }
  // Growing keeps working after shrinking (capacity kept, as on the host).
  nn::device_tensor d(10, 10, 0);
  d.resize(2, 3);
  auto* storage = d.data();
  d.resize(5, 20);
  REQUIRE(d.data() == storage);
  d.resize(11, 10);
  REQUIRE(d.size() == 110);
}

TEST_CASE("nn gpu: cuBLAS GEMM equals the CPU BLAS, every transpose, odd sizes", "[nn]") {
  nn::gpu_place place(dpar::gpu.on(0));
  for (auto [m, n, k] : {std::array<std::size_t, 3>{1, 1, 1}, {7, 13, 5}, {64, 3, 97}, {2, 0, 3}, {3, 4, 0}}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb);
        nn::tensor a = ta ? random_tensor(k, m, 1) : random_tensor(m, k, 1);
        nn::tensor b = tb ? random_tensor(n, k, 2) : random_tensor(k, n, 2);
        nn::tensor c = random_tensor(m, n, 3), expected = c;
        // BLAS wants leading dimensions of at least 1, even where k = 0 leaves nothing to read.
        std::size_t lda = std::max<std::size_t>(1, ta ? m : k), ldb = std::max<std::size_t>(1, tb ? k : n);
        nn::host_place::gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 2.0f, expected.data(), n);
        nn::device_tensor da, db, dc;
        nn::copy(place.policy(), a, da);
        nn::copy(place.policy(), b, db);
        nn::copy(place.policy(), c, dc);
        place.gemm(ta, tb, m, n, k, 0.5f, da.data(), lda, db.data(), ldb, 2.0f, dc.data(), n);
        require_close(download(place.policy(), dc), to_vector(expected.flat()), 1e-5);
      }
  }
}

TEST_CASE("nn gpu: every layer's forward and backward and both losses equal the CPU's", "[nn]") {
  auto on = dpar::gpu.on(0);
  for (auto loss : {nn::loss_kind::softmax_cross_entropy, nn::loss_kind::mse}) {
    for (std::size_t n : {1, 7, 64}) {
      INFO("batch " << n << (loss == nn::loss_kind::mse ? " mse" : " cross-entropy"));
      nn::sequential cpu = every_layer_model();
      nn::gpu_model gpu(cpu, on);
      nn::tensor x = random_tensor(n, 13, 100 + n);
      auto labels = random_labels(n, 5, n);
      dpar::device_vector<std::int32_t> dlabels(labels, 0);
      nn::device_tensor dx;
      nn::copy(on, x, dx);

      const nn::tensor& out = cpu.forward(x);
      const nn::device_tensor& dout = gpu.forward(dx);
      require_close(download(on, dout), to_vector(out.flat()), 1e-5);

      nn::label_loss cpu_loss(loss);
      nn::tensor grad(n, 5);
      std::size_t total = 2 * n + 1;  // a shard of a bigger global batch
      double cpu_sum = cpu_loss(out, labels, &grad, total);
      nn::device_tensor dgrad;
      double gpu_sum = gpu.loss(loss, dout, dlabels.data(), &dgrad, total);
      REQUIRE(gpu_sum == Approx(cpu_sum).epsilon(1e-5));
      require_close(download(on, dgrad), to_vector(grad.flat()), 1e-5);
      REQUIRE(gpu.count_correct(dout, dlabels.data()) == nn::count_correct(out, labels));

      cpu.backward(grad);
      gpu.backward(dgrad);
      require_close(download(on, gpu.gradients()), to_vector(cpu.gradients()), 1e-5);
    }
  }
}

TEST_CASE("nn gpu: the SGD update equals the CPU optimizer's (plain, momentum, Nesterov, weight decay)", "[nn]") {
  auto on = dpar::gpu.on(0);
  for (nn::sgd_options o : {nn::sgd_options{}, nn::sgd_options{0.9f, false, 0.0f}, nn::sgd_options{0.8f, true, 1e-2f}}) {
    nn::sequential cpu = every_layer_model();
    nn::gpu_model gpu(cpu, on, o);
    nn::sgd opt(cpu.parameters().size(), o);
    nn::tensor x = random_tensor(9, 13, 5);
    auto labels = random_labels(9, 5, 6);
    dpar::device_vector<std::int32_t> dlabels(labels, 0);
    nn::device_tensor dx, dgrad;
    nn::copy(on, x, dx);
    nn::tensor grad(9, 5);
    nn::label_loss ce;
    for (int step = 0; step < 3; ++step) {
      ce(cpu.forward(x), labels, &grad);
      cpu.backward(grad);
      opt.step(cpu.parameters(), cpu.gradients(), 0.1f);
      gpu.loss(nn::loss_kind::softmax_cross_entropy, gpu.forward(dx), dlabels.data(), &dgrad, 9);
      gpu.backward(dgrad);
      gpu.sgd_step(0.1f);
    }
    require_close(download(on, gpu.parameters()), to_vector(cpu.parameters()), 1e-5);
    require_close(download(on, gpu.velocity()), to_vector(opt.velocity()), 1e-4);
  }
}

TEST_CASE("nn gpu: 20 steps on a GPU model equal the CPU trainer's within 1e-5", "[nn]") {
  auto on = dpar::gpu.on(0);
  auto data = nn_test::blobs(200, 12, 5, 4);
  auto options = nn_test::options(32);
  nn::data_parallel_trainer cpu(dpar::seq, nn_test::model(), options);
  nn::gpu_model gpu(nn_test::model(), on, options.sgd);
  nn::device_tensor dx, dgrad;
  for (std::size_t step = 0; step < 20; ++step) {
    std::size_t first = (step * 32) % 160;
    nn::tensor x = data.images.rows_view(first, 32);
    std::vector<std::int32_t> y(data.labels.begin() + first, data.labels.begin() + first + 32);
    auto r = cpu.train_step(x, y);
    dpar::device_vector<std::int32_t> dy(y, 0);
    nn::copy(on, x, dx);
    const auto& out = gpu.forward(dx);
    std::size_t correct = gpu.count_correct(out, dy.data());
    double loss = gpu.loss(nn::loss_kind::softmax_cross_entropy, out, dy.data(), &dgrad, 32);
    gpu.backward(dgrad);
    gpu.sgd_step(options.schedule(step));
    REQUIRE(loss == Approx(r.loss_sum).epsilon(1e-4));
    REQUIRE(correct == r.correct);  // before drift can flip a near-tie
  }
  require_close(download(on, gpu.parameters()), nn_test::params(cpu), 1e-5);
}

TEST_CASE("nn gpu: parameters move GPU -> CPU and CPU -> GPU unchanged", "[nn]") {
  auto on = dpar::gpu.on(0);
  nn::sequential cpu = every_layer_model();
  nn::gpu_model gpu(cpu, on);
  nn::sequential back = every_layer_model();
  back.initialize(99);
  gpu.download_parameters(back);
  REQUIRE(to_vector(back.parameters()) == to_vector(cpu.parameters()));
  back.initialize(98);
  gpu.upload_parameters(back);
  REQUIRE(download(on, gpu.parameters()) == to_vector(back.parameters()));
  // Another layout is refused, naming both sizes.
  auto other = nn::make_mlp({13, 4});
  REQUIRE_THROWS_WITH(gpu.download_parameters(other), Catch::Contains("another layout"));
}

TEST_CASE("nn gpu: bad input is refused with a clear message", "[nn]") {
  auto on = dpar::gpu.on(0);
  nn::sequential m(4);
  m.add(no_device_path());
  REQUIRE_THROWS_WITH(nn::gpu_model(m, on), Catch::Contains("Custom") && Catch::Contains("no device path"));
  nn::gpu_model gpu(nn::make_mlp({4, 3}), on);
  nn::device_tensor x(2, 5, 0);
  REQUIRE_THROWS_WITH(gpu.forward(x), Catch::Contains("5 features"));
  nn::device_tensor dy(2, 3, 0);
  REQUIRE_THROWS_AS(nn::gpu_model(nn::make_mlp({4, 3}), on).backward(dy), std::logic_error);
  nn::device_tensor x4(2, 4, 0), wrong(2, 4, 0);
  gpu.forward(x4);
  REQUIRE_THROWS_WITH(gpu.backward(wrong), Catch::Contains("2x4") && Catch::Contains("2x3"));
  REQUIRE_THROWS_AS(nn::gpu_model(nn::make_mlp({4, 3}), on, {0.0f, true, 0.0f}), std::invalid_argument);
}

namespace {
// `steps` train_step calls on consecutive 32-sample batches of data.
void train_steps(nn::data_parallel_trainer& t, const nn::dataset& data, std::size_t first_step, std::size_t steps) {
  for (std::size_t s = first_step; s < first_step + steps; ++s) {
    std::size_t first = (s * 32) % (data.size() - 32);
    std::vector<std::int32_t> y(data.labels.begin() + first, data.labels.begin() + first + 32);
    t.train_step(data.images.rows_view(first, 32), y);
  }
}
}  // namespace

TEST_CASE("nn gpu trainer: 20 steps on gpu, multi_gpu({0,0}) and the CPU agree within 1e-5", "[nn][trainer]") {
  auto data = nn_test::blobs(300, 12, 5, 4);
  auto options = nn_test::options(32);
  nn::data_parallel_trainer cpu(dpar::seq, nn_test::model(), options);
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer cpu2(dpar::par.on(pool), nn_test::model(), options);
  nn::data_parallel_trainer one(dpar::gpu.on(0), nn_test::model(), options);
  nn::data_parallel_trainer two(dpar::multi_gpu({0, 0}), nn_test::model(), options);
  REQUIRE(one.replicas() == 1);
  REQUIRE(two.replicas() == 2);
  for (auto* t : {&cpu, &cpu2, &one, &two}) train_steps(*t, data, 0, 20);
  auto expected = nn_test::params(cpu);
  require_close(nn_test::params(cpu2), expected, 1e-5);
  require_close(nn_test::params(one), expected, 1e-5);
  require_close(nn_test::params(two), expected, 1e-5);
  two.check_replicas();  // both device replicas hold the same bits

  // An epoch (shards gathered into pinned staging) and an evaluation.
  auto a = cpu.train_epoch(data), b = two.train_epoch(data);
  REQUIRE(b.samples == a.samples);
  REQUIRE(b.loss_sum == Approx(a.loss_sum).epsilon(1e-4));
  require_close(nn_test::params(two), nn_test::params(cpu), 1e-5);
  for (auto [c, g] : {std::pair{&cpu, &two}, std::pair{&cpu2, &one}}) {  // same training so far
    auto ec = c->evaluate(data, 64), eg = g->evaluate(data, 64);
    REQUIRE(eg.samples == ec.samples);
    REQUIRE(eg.loss_sum == Approx(ec.loss_sum).epsilon(1e-4));
  }
}

TEST_CASE("nn gpu trainer: a checkpoint from the GPU resumes on the CPU, and the reverse", "[nn][trainer]") {
  auto data = nn_test::blobs(300, 12, 5, 8);
  auto options = nn_test::options(32);
  auto dir = std::filesystem::temp_directory_path();
  std::string from_gpu = (dir / "dpar_nn_gpu_from_gpu.ckpt").string(), from_cpu = (dir / "dpar_nn_gpu_from_cpu.ckpt").string();

  nn::data_parallel_trainer gpu(dpar::multi_gpu({0, 0}), nn_test::model(), options);
  nn::data_parallel_trainer cpu(dpar::seq, nn_test::model(), options);
  train_steps(gpu, data, 0, 5);
  train_steps(cpu, data, 0, 5);
  gpu.save(from_gpu);
  cpu.save(from_cpu);

  nn::data_parallel_trainer cpu_resumed(dpar::seq, nn_test::model(), options);
  cpu_resumed.resume(from_gpu);
  REQUIRE(cpu_resumed.steps() == 5);
  REQUIRE(nn_test::params(cpu_resumed) == nn_test::params(gpu));  // bits, as written
  nn::data_parallel_trainer gpu_resumed(dpar::gpu.on(0), nn_test::model(), options);
  gpu_resumed.resume(from_cpu);
  REQUIRE(nn_test::params(gpu_resumed) == nn_test::params(cpu));

  // Both continue as the uninterrupted CPU run does (momentum state included).
  train_steps(cpu, data, 5, 5);
  train_steps(cpu_resumed, data, 5, 5);
  train_steps(gpu_resumed, data, 5, 5);
  require_close(nn_test::params(cpu_resumed), nn_test::params(cpu), 1e-5);
  require_close(nn_test::params(gpu_resumed), nn_test::params(cpu), 1e-5);
  std::remove(from_gpu.c_str());
  std::remove(from_cpu.c_str());
}

namespace {
int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}
}  // namespace

TEST_CASE("nn gpu: device tensors take the device of the place that fills them, and refuse another", "[nn]") {
  auto on = dpar::gpu.on(0);
  nn::device_tensor unbound;
  REQUIRE_THROWS_AS(unbound.resize(2, 2), std::logic_error);  // no device to take
  nn::copy(on, random_tensor(3, 4, 1), unbound);
  REQUIRE(unbound.device() == 0);
  nn::gpu_model gpu(nn::make_mlp({4, 3}), on);
  nn::device_tensor grad;  // bound by the loss, on the model's device
  const auto& out = gpu.forward(unbound);
  dpar::device_vector<std::int32_t> labels(std::vector<std::int32_t>{0, 1, 2}, 0);
  gpu.loss(nn::loss_kind::softmax_cross_entropy, out, labels.data(), &grad, 3);
  REQUIRE(grad.device() == 0);
  REQUIRE(grad.rows() == 3);
  if (device_count() < 2) {
    WARN("one CUDA device: the device-1 half of this case did not run");
    return;
  }
  // A model on device 1: its replica's loss gradient lives there; a tensor of
  // device 0 is refused by name instead of read across devices.
  auto on1 = dpar::gpu.on(1);
  nn::gpu_model gpu1(nn::make_mlp({4, 3}), on1);
  REQUIRE_THROWS_WITH(gpu1.forward(unbound), Catch::Contains("on device 0") && Catch::Contains("device 1"));
  nn::device_tensor x1;
  nn::copy(on1, random_tensor(3, 4, 1), x1);
  REQUIRE(x1.device() == 1);
  const auto& out1 = gpu1.forward(x1);
  dpar::device_vector<std::int32_t> labels1(std::vector<std::int32_t>{0, 1, 2}, 1);
  REQUIRE_THROWS_WITH(gpu1.loss(nn::loss_kind::softmax_cross_entropy, out1, labels1.data(), &grad, 3),
                      Catch::Contains("on device 0"));
  auto data = nn_test::blobs(300, 12, 5, 4);
  auto options = nn_test::options(32);
  nn::data_parallel_trainer cpu(dpar::seq, nn_test::model(), options);
  nn::data_parallel_trainer dev1(dpar::gpu.on(1), nn_test::model(), options);
  nn::data_parallel_trainer both(dpar::multi_gpu({0, 1}), nn_test::model(), options);
  nn::data_parallel_trainer reversed(dpar::multi_gpu({1, 0}), nn_test::model(), options);
  for (auto* t : {&cpu, &dev1, &both, &reversed}) train_steps(*t, data, 0, 10);
  require_close(nn_test::params(dev1), nn_test::params(cpu), 1e-5);
  require_close(nn_test::params(both), nn_test::params(cpu), 1e-5);
  require_close(nn_test::params(reversed), nn_test::params(cpu), 1e-5);
  both.check_replicas();
}

TEST_CASE("nn gpu: models on cudaStreamPerThread from several host threads, each with its own cuBLAS handle",
          "[nn]") {
  // One handle per place: threads sharing the stream value
  // cudaStreamPerThread (each thread's own stream) no longer share a handle
  // and its workspace. Each thread's forward and backward equal the CPU's.
  nn::sequential cpu = every_layer_model();
  nn::tensor x = random_tensor(64, 13, 5);
  std::vector<float> want_out, want_grads;
  {
    nn::sequential m = cpu;
    const nn::tensor& y = m.forward(x);
    want_out.assign(y.data(), y.data() + y.size());
    nn::tensor dy(y.rows(), y.cols());
    std::fill(dy.data(), dy.data() + dy.size(), 0.5f);
    m.backward(dy);
    want_grads = to_vector(m.gradients());
  }
  const int threads = 4;
  std::vector<std::vector<float>> outs(threads), grads(threads);
  dpar_test::on_host_threads(threads, 120, "gpu models on cudaStreamPerThread", [&](int t) {
    auto on = dpar::gpu.on(0, cudaStreamPerThread);
    nn::gpu_model gpu(cpu, on);
    for (int round = 0; round < 10; ++round) {
      nn::device_tensor dx, dy;
      nn::copy(on, x, dx);
      const auto& out = gpu.forward(dx);
      nn::tensor ones(out.rows(), out.cols());
      std::fill(ones.data(), ones.data() + ones.size(), 0.5f);
      nn::copy(on, ones, dy);
      gpu.backward(dy);
      outs[t] = download(on, out);
      nn::tensor g;  // no Catch assertion off the main thread: nn::copy throws on failure
      nn::copy(on, nn::device_tensor::view(gpu.gradients().data(), 1, gpu.gradients().size(), 0), g);
      grads[t] = to_vector(g.flat());
    }
  });
  for (int t = 0; t < threads; ++t) {
    INFO("thread " << t);
    require_close(outs[t], want_out, 1e-5);
    require_close(grads[t], want_grads, 1e-5);
  }
}

TEST_CASE("nn gpu: a model's cuBLAS handle and workspace are freed with it", "[nn]") {
  // cuBLAS keeps a workspace per handle (megabytes on sm_90): 40 models that
  // each leaked theirs would hold far more than the margin below.
  auto on = dpar::gpu.on(0);
  nn::tensor x = random_tensor(32, 13, 3);
  auto one_model = [&] {
    nn::gpu_model gpu(every_layer_model(), on);
    nn::device_tensor dx;
    nn::copy(on, x, dx);
    gpu.forward(dx);
    on.synchronize();
  };
  one_model();  // warm-up: the memory pool, the context's own allocations
  std::size_t free_before = 0, free_after = 0, total = 0;
  REQUIRE(cudaMemGetInfo(&free_before, &total) == cudaSuccess);
  for (int i = 0; i < 40; ++i) one_model();
  REQUIRE(cudaMemGetInfo(&free_after, &total) == cudaSuccess);
  INFO("free before " << free_before << ", after " << free_after);
  CHECK(free_after + (std::size_t{64} << 20) >= free_before);
}

TEST_CASE("nn gpu trainer: deterministic(gpu) and deterministic(multi_gpu) train on the devices, same bits for any replica count",
          "[nn][trainer][deterministic]") {
  auto data = nn_test::blobs(300, 12, 5, 6);
  auto options = nn_test::options(96);
  options.micro_batch = 16;  // 6 parts: 1, 2 and 3 replicas own different ones
  nn::data_parallel_trainer cpu(dpar::deterministic(dpar::seq), nn_test::model(), options);
  nn::data_parallel_trainer one(dpar::deterministic(dpar::gpu.on(0)), nn_test::model(), options);
  nn::data_parallel_trainer two(dpar::deterministic(dpar::multi_gpu({0, 0})), nn_test::model(), options);
  nn::data_parallel_trainer three(dpar::deterministic(dpar::multi_gpu({0, 0, 0})), nn_test::model(), options);
  REQUIRE(three.replicas() == 3);
  auto steps = [&](nn::data_parallel_trainer& t) {
    std::vector<std::uint64_t> losses;
    for (std::size_t s = 0; s < 8; ++s) {
      std::size_t first = (s * 96) % (data.size() - 96);
      std::vector<std::int32_t> y(data.labels.begin() + first, data.labels.begin() + first + 96);
      double loss = t.train_step(data.images.rows_view(first, 96), y).loss_sum;
      std::uint64_t bits = 0;
      std::memcpy(&bits, &loss, sizeof bits);
      losses.push_back(bits);
    }
    return losses;
  };
  steps(cpu);
  const auto want = steps(one);
  CHECK(steps(two) == want);
  CHECK(steps(three) == want);
  CHECK(nn_test::params(two) == nn_test::params(one));
  CHECK(nn_test::params(three) == nn_test::params(one));
  require_close(nn_test::params(one), nn_test::params(cpu), 1e-5);  // cuBLAS's products, not the CPU's
  three.check_replicas();
}

TEST_CASE("nn gpu trainer: dropout and batch_norm are refused by name; SyncBN's sums run over GPU groups' host threads",
          "[nn][trainer]") {
  nn::sequential bn(4);
  bn.add(nn::dense(4, 3)).add(nn::batch_norm(3)).add(nn::dense(3, 2));
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::gpu.on(0), bn, nn::train_options{}),
                      Catch::Contains("BatchNorm(3,1e-05,0.1) has no device path"));
  nn::sequential drop(4);
  drop.add(nn::dense(4, 3)).add(nn::dropout(0.5f)).add(nn::dense(3, 2));
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::multi_gpu({0, 0}), drop, nn::train_options{}),
                      Catch::Contains("Dropout(0.5,0) has no device path"));
  // The hook batch_norm's statistics go through, over multi_gpu({0,0})'s host threads.
  nn::multi_gpu_group group(dpar::multi_gpu({0, 0}));
  const std::size_t sizes[] = {3};
  std::vector<std::vector<double>> out(2, std::vector<double>(3));
  group.run([&](std::size_t local) {
    const double part[3] = {1.0 + double(local), 2.0, -3.0 * double(local)};
    const double* mine[] = {part};
    nn::group_batch_sync sync(group, local, local, 1, 2, sizes);
    sync.sum(mine, out[local]);
  });
  for (auto& o : out) REQUIRE(o == std::vector<double>{3.0, 4.0, -3.0});
}
