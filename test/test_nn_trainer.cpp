// The data-parallel trainer on threads: K replicas match one replica, runs are
// reproducible, training learns, checkpoints resume exactly, a failing replica
// stops all of them, progress reports whole batches (run under TSan), losses,
// schedules, predict and model files; thread replicas' sharded update gives
// the bits of the whole update. Over MPI ranks: test_nn_mpi.cpp.
#include <dpar/nn.hpp>

#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <cstdio>
#include <functional>
#include <limits>
#include <stdexcept>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "nn_test_problem.hpp"

using namespace nn_test;

namespace {

// Runs `steps` steps of the given global batches on K replicas (K = 1: dpar::seq).
std::vector<float> run(std::size_t k, const nn::dataset& data, std::size_t batch, std::size_t steps) {
  dpar::thread_pool pool(k);
  auto t = k == 1 ? nn::data_parallel_trainer(dpar::seq, model(), options(batch))
                  : nn::data_parallel_trainer(dpar::par.on(pool), model(), options(batch));
  REQUIRE(t.replicas() == k);
  for (std::size_t s = 0; s < steps; ++s) {
    auto [x, y] = batch_of(data, batch, s);
    auto r = t.train_step(x, y);
    REQUIRE(r.samples == y.size());
  }
  return params(t);
}

// Thread replicas that end every step as the trainer did before issue 15: the
// whole gradient all-reduced, the whole update on every replica (the default
// replica_group::sum_and_update), the reference for the sharded update.
class unsharded_group final : public nn_test::forwarding_group {
 public:
  using forwarding_group::forwarding_group;
};

nn::checkpoint saved(const nn::data_parallel_trainer& t, const std::string& file) {
  t.save(file);
  return nn::load_checkpoint(file);
}

}  // namespace

TEST_CASE("trainer: K = 2, 3, 4 replicas match one replica over 20 steps (1e-5 relative)", "[nn][trainer]") {
  // 103 samples in batches of 37: shards of unequal size, and a last batch of
  // 29; batch 3 with K = 4 leaves one replica an empty shard.
  auto data = blobs(103, 12, 5, 1);
  for (std::size_t batch : {37, 3}) {
    auto one = run(1, data, batch, 20);
    for (std::size_t k : {2, 3, 4}) {
      auto many = run(k, data, batch, 20);
      double diff = max_abs_difference(one, many);
      INFO("batch " << batch << ", K = " << k << ": max |difference| " << diff << ", max |parameter| " << max_abs(one));
      REQUIRE(diff <= 1e-5 * max_abs(one));
      if (std::getenv("DPAR_NN_SHOW_DIFF")) WARN("batch " << batch << ", K = " << k << ": max |difference| " << diff << " of max |parameter| " << max_abs(one));
      REQUIRE(one != run(1, blobs(103, 12, 5, 2), batch, 20));  // the comparison can fail: other data differ
    }
  }
}

TEST_CASE("trainer: the same seed and K give bitwise-identical runs", "[nn][trainer]") {
  auto data = blobs(300, 12, 5, 4);
  dpar::thread_pool pool(3);
  auto train = [&](std::uint64_t seed) {
    auto o = options(32);
    o.seed = seed;
    nn::data_parallel_trainer t(dpar::par.on(pool), model(), o);
    t.train_epoch(data);
    t.train_epoch(data);
    return params(t);
  };
  auto a = train(5), b = train(5), c = train(6);
  REQUIRE(a == b);
  REQUIRE(a != c);  // the seed changes the data order
}

TEST_CASE("trainer: loss falls and accuracy rises on a small problem", "[nn][trainer]") {
  auto train = blobs(2000, 12, 5, 7), test = blobs(500, 12, 5, 8);
  dpar::thread_pool pool(2);
  auto o = options(50);
  o.schedule = nn::lr_schedule::constant(0.05f);
  nn::data_parallel_trainer t(dpar::par.on(pool), model(), o);
  auto before = t.evaluate(test);
  REQUIRE(before.samples == 500);
  double first_loss = 0, last_loss = 0;
  for (int e = 0; e < 5; ++e) {
    auto r = t.train_epoch(train);
    REQUIRE(r.samples == 2000);
    (e == 0 ? first_loss : last_loss) = r.loss_sum / r.samples;
  }
  auto after = t.evaluate(test);
  INFO("test loss " << before.loss_sum / 500 << " -> " << after.loss_sum / 500 << ", train loss " << first_loss
                    << " -> " << last_loss);
  REQUIRE(after.loss_sum < 0.3 * before.loss_sum);
  REQUIRE(last_loss < first_loss);
  REQUIRE(after.correct > 0.95 * 500);
  REQUIRE(t.epochs() == 5);
  REQUIRE(t.steps() == 5 * 40);
}

TEST_CASE("trainer: resuming from a checkpoint continues exactly", "[nn][trainer]") {
  auto data = blobs(250, 12, 5, 11);
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_resume_" + std::to_string(::getpid()))).string();
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer straight(dpar::par.on(pool), model(), options(40));
  for (int e = 0; e < 3; ++e) straight.train_epoch(data);

  {
    nn::data_parallel_trainer first(dpar::par.on(pool), model(), options(40));
    first.train_epoch(data);
    first.save(file);
  }  // "the process stops"
  auto fresh = model();
  fresh.initialize(99);  // resume must overwrite these parameters
  nn::data_parallel_trainer resumed(dpar::par.on(pool), fresh, options(40));
  resumed.resume(file);
  REQUIRE(resumed.epochs() == 1);
  resumed.train_epoch(data);
  resumed.train_epoch(data);
  REQUIRE(resumed.steps() == straight.steps());
  REQUIRE(params(resumed) == params(straight));
  resumed.check_replicas();

  // A checkpoint of another model, or of a run with another seed, is refused.
  auto other = nn::make_mlp({12, 10, 5});
  nn::data_parallel_trainer wrong_model(dpar::par.on(pool), other, options(40));
  REQUIRE_THROWS_WITH(wrong_model.resume(file), Catch::Contains("different model"));
  auto o = options(40);
  o.seed = 1;
  nn::data_parallel_trainer wrong_seed(dpar::par.on(pool), model(), o);
  REQUIRE_THROWS_WITH(wrong_seed.resume(file), Catch::Contains("seed 9"));

  // Another schedule (a cosine over another epoch count, another warmup) is refused, and the
  // refused trainer is untouched; resuming with the writer's options, then set_schedule, works.
  auto cosine = [](std::size_t total, std::size_t warmup) {
    auto o = options(40);
    o.schedule = nn::lr_schedule::cosine(0.1f, total).with_warmup(warmup);
    return o;
  };
  {
    nn::data_parallel_trainer writer(dpar::par.on(pool), model(), cosine(3 * 7, 3));
    writer.train_epoch(data);
    writer.save(file);
  }
  for (auto [total, warmup] : {std::pair<std::size_t, std::size_t>{4 * 7, 3}, {3 * 7, 4}}) {
    nn::data_parallel_trainer other_schedule(dpar::par.on(pool), fresh, cosine(total, warmup));
    REQUIRE_THROWS_WITH(other_schedule.resume(file), Catch::Contains("another learning-rate schedule"));
    REQUIRE(other_schedule.epochs() == 0);
    REQUIRE(params(other_schedule) == std::vector<float>(fresh.parameters().begin(), fresh.parameters().end()));
  }
  nn::data_parallel_trainer same_schedule(dpar::par.on(pool), fresh, cosine(3 * 7, 3));
  same_schedule.resume(file);
  REQUIRE(same_schedule.epochs() == 1);
  same_schedule.set_schedule(nn::lr_schedule::constant(0.01f));  // a change on purpose
  same_schedule.train_epoch(data);
  same_schedule.save(file);
  nn::data_parallel_trainer after_change(dpar::par.on(pool), fresh, cosine(3 * 7, 3));
  REQUIRE_THROWS_WITH(after_change.resume(file), Catch::Contains("another learning-rate schedule"));
  std::filesystem::remove(file);
}

TEST_CASE("trainer: bad input is refused before any update; the trainer stays usable", "[nn][trainer]") {
  auto data = blobs(40, 12, 5, 3);
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer t(dpar::par.on(pool), model(), options(8));
  auto before = params(t);
  auto x = data.images.rows_view(0, 8);
  std::vector<std::int32_t> labels(data.labels.begin(), data.labels.begin() + 8);
  labels[5] = 7;
  REQUIRE_THROWS_WITH(t.train_step(x, labels), Catch::Contains("label 7 of sample 5"));
  REQUIRE_THROWS_WITH(t.train_step(x, std::span<const std::int32_t>(labels).first(3)),
                      Catch::Contains("8 samples but 3 labels"));
  REQUIRE_THROWS_WITH(t.train_step(data.images.rows_view(0, 0), std::span<const std::int32_t>{}), Catch::Contains("empty batch"));
  nn::tensor wide(4, 13);
  REQUIRE_THROWS_WITH(t.train_step(wide, std::span<const std::int32_t>(labels).first(4)),
                      Catch::Contains("13 features"));
  REQUIRE(params(t) == before);
  labels[5] = 1;
  t.train_step(x, labels);
  REQUIRE(params(t) != before);
  // Called from inside a job of its own pool (on its worker, one caller: a
  // trainer is not to be called from two threads at once), the replicas cannot run.
  REQUIRE_THROWS_AS(pool.run([&](std::size_t thread, std::size_t) {
                      if (thread == 1) t.train_step(x, labels);
                    }),
                    std::logic_error);
  REQUIRE_THROWS_AS(nn::data_parallel_trainer(dpar::seq, model(), options(0)), std::invalid_argument);
}

TEST_CASE("trainer: the debug check catches replicas whose parameters diverge", "[nn][trainer]") {
  auto data = blobs(64, 12, 5, 3);
  nn::sequential m(12);
  m.add(nn::dense(12, 5)).add(drifting([](int copy) { return copy % 2 == 0; }));
  m.initialize(1);
  dpar::thread_pool pool(2);
  auto x = data.images.rows_view(0, 16);
  auto y = std::span<const std::int32_t>(data.labels).first(16);
  // Over groups that update every replica whole (MPI, deterministic, GPUs):
  // dpar::par's sharded update all-gathers the parameters every step, which
  // makes its replicas identical again whatever a layer did to them.
  auto unsharded = [&] { return std::make_unique<unsharded_group>(pool); };
  {
    nn::data_parallel_trainer t(dpar::par.on(pool), m, options(16));
    t.train_step(x, y);
    t.check_replicas();
  }
  {
    nn::data_parallel_trainer t(unsharded(), m, options(16));
    REQUIRE_THROWS_WITH(t.train_step(x, y), Catch::Contains("diverged from replica 0") && Catch::Contains("after step 1"));
  }
  {
    // Inside the per-epoch SPMD job: replica 0's check throws, the others are
    // released from their next collective, and the check's error reaches us.
    nn::data_parallel_trainer t(unsharded(), m, options(16));
    REQUIRE_THROWS_WITH(t.train_epoch(data), Catch::Contains("diverged from replica 0"));
  }
  {
    auto o = options(16);
    o.check_replicas = false;
    nn::data_parallel_trainer t(unsharded(), m, o);
    t.train_step(x, y);  // unchecked: no error during the step
    REQUIRE_THROWS_AS(t.check_replicas(), std::logic_error);
  }
}

namespace {
// Passes its input through, but throws on a sample whose first feature is
// huge: a user layer that fails on one replica's shard only.
class throwing final : public nn::layer {
 public:
  std::string name() const override { return "Throwing"; }
  std::size_t out_features(std::size_t in) const override { return in; }
  void forward(const nn::tensor& x, nn::tensor& y) override {
    for (std::size_t r = 0; r < x.rows(); ++r)
      if (x(r, 0) > 1e6f) throw std::runtime_error("throwing layer: poisoned sample");
    std::copy(x.data(), x.data() + x.size(), y.data());
  }
  void backward(const nn::tensor&, const nn::tensor&, const nn::tensor& dy, nn::tensor* dx) override {
    if (dx) std::copy(dy.data(), dy.data() + dy.size(), dx->data());
  }
  std::unique_ptr<nn::layer> clone() const override { return std::make_unique<throwing>(*this); }
};
}  // namespace

TEST_CASE("trainer: a replica that throws stops every replica before the update; the error reaches the caller",
          "[nn][trainer]") {
  auto data = blobs(64, 12, 5, 3);
  nn::sequential m(12);
  m.add(throwing()).add(nn::dense(12, 5));
  m.initialize(1);
  for (std::size_t k : {1, 2, 3}) {
    dpar::thread_pool pool(k);
    nn::data_parallel_trainer t(dpar::par.on(pool), m, options(16));
    auto before = params(t);
    nn::tensor x = data.images.rows_view(0, 16);
    x(15, 0) = 1e7f;  // in the last replica's shard
    auto y = std::span<const std::int32_t>(data.labels).first(16);
    REQUIRE_THROWS_WITH(t.train_step(x, y), "throwing layer: poisoned sample");
    REQUIRE(params(t) == before);
    REQUIRE(t.steps() == 0);
    t.check_replicas();
    x(15, 0) = 0.0f;
    REQUIRE(t.train_step(x, y).samples == 16);  // usable afterwards
    REQUIRE(t.steps() == 1);

    // In an epoch: replica 0's progress callback throws at step 2.
    int calls = 0;
    REQUIRE_THROWS_WITH(t.train_epoch(data, [&](std::size_t, std::size_t, double) {
      if (++calls == 2) throw std::runtime_error("progress failed");
    }),
                        "progress failed");
    REQUIRE(calls == 2);
    REQUIRE(t.epochs() == 0);
    t.check_replicas();
  }
}

TEST_CASE("trainer: progress reports whole batches in order and ends at the data size (run under TSan)",
          "[nn][trainer][progress]") {
  auto data = blobs(250, 12, 5, 12);
  for (std::size_t k : {2, 3}) {
    dpar::thread_pool pool(k);
    auto o = options(32);
    o.check_replicas = false;
    nn::data_parallel_trainer t(dpar::par.on(pool), model(), o);
    for (int epoch = 0; epoch < 3; ++epoch) {
      std::vector<std::size_t> done;
      std::vector<double> loss;
      auto r = t.train_epoch(data, [&](std::size_t d, std::size_t total, double mean) {
        REQUIRE(total == 250);  // the calling thread: Catch may assert here
        done.push_back(d);
        loss.push_back(mean);
      });
      REQUIRE(done.size() == 8);  // ceil(250 / 32)
      for (std::size_t j = 0; j < done.size(); ++j) REQUIRE(done[j] == std::min<std::size_t>(32 * (j + 1), 250));
      REQUIRE(r.samples == 250);
      REQUIRE(loss.back() == Approx(r.loss_sum / 250).epsilon(1e-12));
      for (double l : loss) REQUIRE(std::isfinite(l));
    }
  }
}

TEST_CASE("trainer: MSE on one-hot targets trains, and K replicas match one", "[nn][trainer]") {
  auto train = blobs(2000, 12, 5, 7), test = blobs(300, 12, 5, 8);
  auto o = options(50);
  o.loss = nn::loss_kind::mse;
  o.schedule = nn::lr_schedule::constant(0.1f);
  o.sgd = {};  // MSE's small gradients: plain SGD learns steadily
  o.check_replicas = false;
  dpar::thread_pool pool(3);
  nn::data_parallel_trainer one(dpar::seq, model(), o), three(dpar::par.on(pool), model(), o);
  auto before = one.evaluate(test);
  for (int e = 0; e < 10; ++e) {
    one.train_epoch(train);
    three.train_epoch(train);
  }
  auto after = one.evaluate(test);
  INFO("MSE test loss " << before.loss_sum / 300 << " -> " << after.loss_sum / 300 << ", correct " << after.correct);
  REQUIRE(after.loss_sum < 0.5 * before.loss_sum);
  REQUIRE(after.correct > 0.8 * 300);
  REQUIRE(max_abs_difference(params(one), params(three)) <= 1e-5 * max_abs(params(one)));
  // The gradient is that of the mean over columns of (out - onehot)^2.
  nn::label_loss mse(nn::loss_kind::mse);
  nn::tensor out(2, 3), grad(2, 3);
  out(0, 0) = 1.0f, out(1, 2) = 0.5f;
  std::vector<std::int32_t> y{0, 1};
  REQUIRE(mse(out, y, &grad) == Approx((0.0 + (1.0 + 0.25) / 3)));
  REQUIRE(grad(1, 1) == Approx(2.0 * (0 - 1) / (3 * 2)));
  y[1] = 3;
  REQUIRE_THROWS_WITH(mse(out, y), Catch::Contains("label 3"));
}

TEST_CASE("trainer: any callable is a schedule, and the schedule can change between epochs", "[nn][trainer]") {
  auto data = blobs(100, 12, 5, 5);
  auto o = options(25);
  std::vector<std::size_t> asked;
  o.schedule = [&](std::size_t step) {
    asked.push_back(step);  // called once per step, in the calling thread (TSan would see a race otherwise)
    return 0.0f;            // no movement at all
  };
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer t(dpar::par.on(pool), model(), o);
  auto before = params(t);
  t.train_epoch(data);
  REQUIRE(params(t) == before);
  REQUIRE(asked == std::vector<std::size_t>{0, 1, 2, 3});
  t.set_schedule(nn::lr_schedule::constant(0.1f));
  t.train_epoch(data);
  REQUIRE(params(t) != before);
  REQUIRE(asked.size() == 4);
  REQUIRE_THROWS_AS(t.set_schedule(nn::lr_function{}), std::invalid_argument);
  o.schedule = nullptr;
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::seq, model(), o), Catch::Contains("schedule is empty"));
}

TEST_CASE("trainer: the trained model predicts and classifies without being copied; model files round-trip",
          "[nn][trainer]") {
  auto train = blobs(500, 12, 5, 7), test = blobs(200, 12, 5, 8);
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer t(dpar::par.on(pool), model(), options(50));
  for (int e = 0; e < 3; ++e) t.train_epoch(train);
  const nn::sequential& m = t.model();
  nn::tensor logits = m.predict(test.images);
  auto classes = m.classify(test.images);
  REQUIRE(classes == nn::argmax(logits));
  REQUIRE(logits.rows() == 200);
  REQUIRE(logits.cols() == 5);
  std::size_t right = 0;
  for (std::size_t i = 0; i < 200; ++i) right += classes[i] == test.labels[i];
  REQUIRE(right == t.evaluate(test).correct);
  auto one = m.classify(test.images.rows_view(7, 1));  // one image, a view
  REQUIRE(one == std::vector<std::int32_t>{classes[7]});
  nn::sequential copy = m;  // predict leaves the state for backward alone: it equals forward bitwise
  const nn::tensor& forward = copy.forward(test.images);
  REQUIRE(std::equal(forward.data(), forward.data() + forward.size(), logits.data()));
  REQUIRE_THROWS_WITH(m.predict(nn::tensor(1, 11)), Catch::Contains("11 features"));

  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_model_" + std::to_string(::getpid()))).string();
  nn::save_model(file, m);
  auto loaded = model();
  loaded.initialize(77);
  nn::load_model(file, loaded);
  REQUIRE(std::equal(loaded.parameters().begin(), loaded.parameters().end(), m.parameters().begin(),
                     m.parameters().end()));
  auto other = nn::make_mlp({12, 10, 5});
  REQUIRE_THROWS_WITH(nn::load_model(file, other), Catch::Contains("different model"));
  std::filesystem::remove(file);
}

TEST_CASE("trainer: a checkpoint of another replica count is accepted and continues the same run", "[nn][trainer]") {
  auto data = blobs(250, 12, 5, 11);
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_k_" + std::to_string(::getpid()))).string();
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer straight(dpar::par.on(pool), model(), options(40));
  for (int e = 0; e < 3; ++e) straight.train_epoch(data);
  nn::data_parallel_trainer two(dpar::par.on(pool), model(), options(40));
  two.train_epoch(data);
  two.save(file);
  nn::data_parallel_trainer one(dpar::seq, model(), options(40));
  one.resume(file);
  REQUIRE(one.epochs() == 1);
  one.train_epoch(data);
  one.train_epoch(data);
  REQUIRE(one.steps() == straight.steps());
  double diff = max_abs_difference(params(one), params(straight));
  INFO("max |difference| " << diff);
  REQUIRE(diff <= 1e-5 * max_abs(params(straight)));
  REQUIRE(params(one) != params(straight));  // not bitwise: the sums are grouped differently
  std::filesystem::remove(file);
}

// Issue 15: thread replicas reduce-scatter the gradients, update one slice
// each and all-gather the parameters; each keeps its slice of the velocity
// only, until a save gathers it.
TEST_CASE("thread_group: sum_and_update updates each replica's slice; velocity is gathered on demand (run under TSan)",
          "[nn][trainer]") {
  const std::size_t k = 3;
  const float lr = 0.05f;
  dpar::thread_pool pool(k);
  nn::thread_group group(pool);
  const nn::sgd_options opt{0.9f, false, 1e-3f};
  auto m = model();
  const std::size_t n = m.parameters().size();
  std::vector<std::unique_ptr<nn::replica_model>> replicas;
  std::vector<float> sum(n, 0.0f);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (std::size_t r = 0; r < k; ++r) {
    replicas.push_back(group.make_model(r, m, {opt, nn::loss_kind::softmax_cross_entropy}));
    for (float& g : replicas[r]->gradients()) g = d(rng);
    for (std::size_t i = 0; i < n; ++i) sum[i] += replicas[r]->gradients()[i];  // replica order
  }
  // The whole step on one copy: the reference.
  std::vector<float> expected(m.parameters().begin(), m.parameters().end());
  nn::sgd reference(n, opt);
  reference.step(expected, sum, lr);
  group.run([&](std::size_t local) {
    std::vector<const float*> mine{replicas[local]->gradients().data()};
    group.sum_and_update(local, mine, local, k, *replicas[local], lr, 0.0f);
  });
  dpar::communicator cut(k);
  for (std::size_t r = 0; r < k; ++r) {
    INFO("replica " << r);
    auto p = replicas[r]->host_model().parameters();
    REQUIRE(std::vector<float>(p.begin(), p.end()) == expected);
    // It keeps the velocity of its own slice only, current: the update
    // really was sharded, and so is the state.
    auto [first, last] = cut.slice<float>(r, n);
    REQUIRE(first < last);
    REQUIRE(replicas[r]->state_window() == dpar::index_range{first, last});
    auto v = replicas[r]->host_velocity();
    REQUIRE(std::vector<float>(v.begin(), v.end()) ==
            std::vector<float>(reference.velocity().begin() + first, reference.velocity().begin() + last));
  }
  group.run([&](std::size_t local) { group.gather_velocity(local, *replicas[local]); });
  for (auto& r : replicas) {
    auto v = r->host_velocity();
    REQUIRE(std::vector<float>(v.begin(), v.end()) == std::vector<float>(reference.velocity().begin(), reference.velocity().end()));
  }
}

TEST_CASE("trainer: the sharded update on K = 2, 3 threads gives the bits of the whole update, velocity included",
          "[nn][trainer]") {
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_shard_" + std::to_string(::getpid()))).string();
  struct problem {
    const char* name;
    nn::sequential model;
    nn::dataset data;
    std::size_t batch;
  };
  auto tiny = nn::make_mlp({3, 2});  // 8 parameters: one cache line, so some replicas own no slice
  tiny.initialize(4);
  auto small_data = blobs(97, 12, 5, 6);
  auto tiny_data = small_data;
  tiny_data.images = nn::tensor(97, 3);
  for (std::size_t i = 0; i < 97; ++i) {
    tiny_data.labels[i] %= 2;
    for (std::size_t f = 0; f < 3; ++f) tiny_data.images(i, f) = small_data.images(i, f);
  }
  std::vector<problem> problems = {{"12-16-8-5 MLP", model(), small_data, 23},
                                   {"784-48-10 MLP (several chunks per slice)", fashion_model(), fashion_shaped(), 128},
                                   {"3-2 layer", tiny, tiny_data, 10}};
  const std::vector<nn::sgd_options> optimizers = {{0.9f, true, 1e-3f}, {0.8f, false, 0.0f}, {0.0f, false, 1e-3f}};
  for (std::size_t k : {2, 3})
    for (auto& pr : problems)
      for (const auto& sgd : optimizers) {
        INFO("K = " << k << ", " << pr.name << ", momentum " << sgd.momentum << ", nesterov " << sgd.nesterov);
        auto o = options(pr.batch);
        o.sgd = sgd;
        dpar::thread_pool pool(k), reference_pool(k);
        nn::data_parallel_trainer sharded(dpar::par.on(pool), pr.model, o);
        nn::data_parallel_trainer reference(std::make_unique<unsharded_group>(reference_pool), pr.model, o);
        for (std::size_t s = 0; s < 6; ++s) {
          auto [x, y] = batch_of(pr.data, pr.batch, s);
          sharded.train_step(x, y);
          reference.train_step(x, y);
          REQUIRE(params(sharded) == params(reference));
        }
        sharded.train_epoch(pr.data);
        reference.train_epoch(pr.data);
        REQUIRE(params(sharded) == params(reference));
        auto a = saved(sharded, file), b = saved(reference, file);
        REQUIRE(a.parameters == b.parameters);
        REQUIRE(a.velocity == b.velocity);
        if (sgd.momentum != 0.0f)
          REQUIRE(std::any_of(a.velocity.begin(), a.velocity.end(), [](float v) { return v != 0.0f; }));

        // A checkpoint saved after sharded steps resumes into the same run.
        sharded.save(file);
        nn::data_parallel_trainer resumed(dpar::par.on(pool), pr.model, o);
        resumed.resume(file);
        for (auto* t : {&resumed, &reference}) t->train_epoch(pr.data);
        REQUIRE(params(resumed) == params(reference));
        auto c = saved(resumed, file), e = saved(reference, file);
        REQUIRE(c.velocity == e.velocity);
      }
  std::filesystem::remove(file);
}

// Issue 22 item 4: each thread replica keeps the optimizer state of its
// slice only, 1/K of it, from construction on, through steps, save (which
// gathers the whole for a moment) and resume; the bits stay the whole update's.
TEST_CASE("trainer: ZeRO over K = 2, 3 threads keeps each replica's slice of the optimizer state only, SGD and AdamW; "
          "save and resume give the whole update's bits", "[nn][trainer][zero]") {
  auto data = blobs(120, 12, 5, 12);
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_zmem_" + std::to_string(::getpid()))).string();
  const std::size_t n = model().parameters().size();  // 389
  for (std::size_t k : {2, 3})
    for (bool adamw : {false, true}) {
      INFO("K = " << k << (adamw ? ", AdamW" : ", SGD with momentum"));
      auto o = options(24);
      if (adamw) o.adamw = nn::adamw_options{.weight_decay = 0.02f};
      const std::size_t buffers = adamw ? 2 : 1;
      dpar::thread_pool pool(k), reference_pool(k);
      auto observed = [&](nn_test::observed_group*& g) {
        auto group = std::make_unique<nn_test::observed_group>(std::make_unique<nn::thread_group>(pool));
        g = group.get();
        return group;
      };
      // Replica r keeps its slice (whole cache lines) of each state buffer; the slices tile the parameters.
      auto require_slices = [&](const nn_test::observed_group& g) {
        dpar::communicator cut(k);
        std::size_t kept = 0;
        for (std::size_t r = 0; r < k; ++r) {
          auto [first, last] = cut.slice<float>(r, n);
          REQUIRE(g.models[r]->state_window() == dpar::index_range{first, last});
          REQUIRE(g.models[r]->host_velocity().size() == buffers * (last - first));
          REQUIRE(last - first <= (n + 15) / k + 16);
          kept += last - first;
        }
        REQUIRE(kept == n);
      };
      nn_test::observed_group* g = nullptr;
      nn::data_parallel_trainer sharded(observed(g), model(), o);
      nn::data_parallel_trainer reference(std::make_unique<unsharded_group>(reference_pool), model(), o);
      require_slices(*g);  // from construction on
      sharded.train_epoch(data);
      reference.train_epoch(data);
      REQUIRE(params(sharded) == params(reference));
      require_slices(*g);
      auto a = saved(sharded, file), b = saved(reference, file);
      REQUIRE(a.velocity.size() == buffers * n);
      REQUIRE(a.velocity == b.velocity);
      require_slices(*g);  // the whole state was the save's only

      sharded.save(file);
      nn_test::observed_group* h = nullptr;
      nn::data_parallel_trainer resumed(observed(h), model(), o);
      resumed.resume(file);
      require_slices(*h);
      for (auto* t : {&resumed, &reference}) t->train_epoch(data);
      REQUIRE(params(resumed) == params(reference));
      auto c = saved(resumed, file), e = saved(reference, file);
      REQUIRE(c.velocity == e.velocity);
      REQUIRE(std::any_of(c.velocity.begin(), c.velocity.end(), [](float v) { return v != 0.0f; }));
    }
  std::filesystem::remove(file);
}

TEST_CASE("trainer: tensor targets with a user loss; one step is the step by hand, K replicas agree",
          "[nn][trainer][targets]") {
  const auto data = waves(90, 4);
  nn::train_options o;
  o.batch = 90;
  o.loss = user_huber{};
  o.schedule = nn::lr_schedule::constant(0.2f);
  o.check_replicas = true;
  // By hand: forward, the loss of the whole batch, backward, one SGD step.
  auto by_hand = waves_model();
  const nn::tensor& out = by_hand.forward(data.inputs);
  nn::tensor grad(out.rows(), out.cols());
  const double loss = user_huber{}(out, data.targets, &grad, 90);
  by_hand.backward(grad);
  nn::sgd(by_hand.parameters().size()).step(by_hand.parameters(), by_hand.gradients(), 0.2f);

  nn::data_parallel_trainer one(dpar::seq, waves_model(), o);
  auto r = one.train_step(data.inputs, data.targets);
  REQUIRE(r.samples == 90);
  REQUIRE(r.correct == 0);
  REQUIRE(r.loss_sum == Approx(loss).epsilon(1e-12));
  REQUIRE(params(one) == std::vector<float>(by_hand.parameters().begin(), by_hand.parameters().end()));
  for (std::size_t k : {2, 3}) {
    INFO(k << " replicas");
    dpar::thread_pool pool(k);
    nn::data_parallel_trainer many(dpar::par.on(pool), waves_model(), o);
    auto rk = many.train_step(data.inputs, data.targets);
    REQUIRE(rk.loss_sum == Approx(loss).epsilon(1e-6));
    REQUIRE(max_abs_difference(params(many), params(one)) <= 1e-5 * max_abs(params(one)));
    // Bad input: the wrong form of targets, a count or a width that does not fit.
    REQUIRE_THROWS_WITH(many.train_step(data.inputs, std::vector<std::int32_t>(90, 0)),
                        Catch::Contains("the loss takes a tensor of targets; pass targets, not labels"));
    REQUIRE_THROWS_WITH(many.train_step(data.inputs, data.targets.rows_view(0, 89)),
                        Catch::Contains("90 samples but 89 targets"));
    nn::data_parallel_trainer mse(dpar::par.on(pool), waves_model(), [&] {
      auto m = o;
      m.loss = nn::mse{};
      return m;
    }());
    REQUIRE_THROWS_WITH(mse.train_step(data.inputs, nn::tensor(90, 3)), Catch::Contains("outputs have 2 columns, targets 3"));
    REQUIRE(mse.steps() == 0);  // a failed step updates nothing
  }
  nn::data_parallel_trainer labels(dpar::seq, waves_model(), nn::train_options{});
  REQUIRE_THROWS_WITH(labels.train_step(data.inputs, data.targets),
                      Catch::Contains("the loss takes integer labels; pass labels, not a tensor of targets"));
}

TEST_CASE("trainer: a user loss that throws stops every replica with its own exception", "[nn][trainer][targets]") {
  struct refuses_nan {
    double operator()(const nn::tensor& out, const nn::tensor& t, nn::tensor* g, std::size_t total) const {
      for (std::size_t i = 0; i < t.size(); ++i)
        if (std::isnan(t.data()[i])) throw std::domain_error("refuses_nan: target " + std::to_string(i) + " is NaN");
      return nn::mse{}(out, t, g, total);
    }
  };
  auto data = waves(40, 5);
  data.targets(33, 1) = std::nanf("");
  nn::train_options o;
  o.batch = 40;
  o.loss = refuses_nan{};
  dpar::thread_pool pool(3);
  nn::data_parallel_trainer t(dpar::par.on(pool), waves_model(), o);
  const auto before = params(t);
  REQUIRE_THROWS_AS(t.train_step(data.inputs, data.targets), std::domain_error);
  REQUIRE(params(t) == before);
  REQUIRE_THROWS_AS(t.evaluate(data), std::domain_error);
  data.targets(33, 1) = 0.0f;
  REQUIRE(t.train_step(data.inputs, data.targets).samples == 40);  // the trainer is usable afterwards
}

TEST_CASE("trainer: regression over a tensor_dataset learns y = sin(3 x0), x0 x1", "[nn][trainer][targets]") {
  const auto train = waves(256, 6), test = waves(128, 7);
  nn::train_options o;
  o.batch = 16;
  o.loss = nn::mse{};
  o.sgd.momentum = 0.9f;
  o.schedule = nn::lr_schedule::constant(0.1f);
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer t(dpar::par.on(pool), waves_model(), o);
  const double before = t.evaluate(test).loss_sum / 128;
  std::size_t reports = 0;
  for (int e = 0; e < 40; ++e) t.train_epoch(train, [&](std::size_t, std::size_t, double) { ++reports; });
  auto after = t.evaluate(test, 50);
  REQUIRE(after.samples == 128);
  REQUIRE(reports == 40 * 16);
  REQUIRE(t.epoch_order(train, 0).size() == 256);
  INFO("test MSE " << before << " -> " << after.loss_sum / 128);
  REQUIRE(after.loss_sum / 128 < before / 10);
  // The trained model predicts the targets it learned.
  nn::tensor p = t.model().predict(test.inputs);
  REQUIRE(nn::mse{}(p, test.targets) == Approx(after.loss_sum).epsilon(1e-5));
}

TEST_CASE("trainer: AdamW on thread replicas, state sharded; a checkpoint resumes it exactly", "[nn][trainer][adamw]") {
  auto data = blobs(200, 12, 5, 15);
  auto o = options(50);
  o.adamw = nn::adamw_options{.weight_decay = 0.02f};
  o.schedule = nn::lr_schedule::constant(0.005f);
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_adamw_k_" + std::to_string(::getpid()))).string();
  dpar::thread_pool three(3);
  nn::data_parallel_trainer one(dpar::seq, model(), o), t(dpar::par.on(three), model(), o),
      unsaved(dpar::par.on(three), model(), o);
  for (int e = 0; e < 2; ++e) {
    auto a = one.train_epoch(data), b = t.train_epoch(data);
    unsaved.train_epoch(data);
    REQUIRE(b.loss_sum == Approx(a.loss_sum).epsilon(1e-5));
  }
  REQUIRE(max_abs_difference(params(t), params(one)) <= 1e-4 * max_abs(params(one)));
  REQUIRE(params(t) != params(nn::data_parallel_trainer(dpar::seq, model(), o)));  // it trains
  t.save(file);  // each replica updated a third of m and v: saving gathers both
  nn::data_parallel_trainer resumed(dpar::par.on(three), model(), o);
  resumed.resume(file);
  for (auto* run : {&t, &resumed, &unsaved}) run->train_epoch(data);
  REQUIRE(params(t) == params(unsaved));  // saving changed nothing
  REQUIRE(params(resumed) == params(unsaved));
  std::filesystem::remove(file);
}

TEST_CASE("trainer: gradient clipping by the global norm follows its definition on 1 and 3 replicas",
          "[nn][trainer][clip]") {
  auto data = blobs(60, 12, 5, 16);
  auto o = options(60);
  o.sgd = {};
  o.schedule = nn::lr_schedule::constant(0.5f);
  o.check_replicas = true;
  for (float max_norm : {0.05f, 1e6f}) {  // clipped, and a bound the gradient is under
    INFO("max norm " << max_norm);
    o.clip_norm = max_norm;
    auto by_hand = model();
    const nn::tensor& out = by_hand.forward(data.images);
    nn::tensor grad(out.rows(), out.cols());
    nn::softmax_cross_entropy{}(out, data.labels, &grad, 60);
    by_hand.backward(grad);
    double squared = 0;
    for (float g : by_hand.gradients()) squared += double(g) * g;
    const double factor = std::min(1.0, max_norm / (std::sqrt(squared) + 1e-6));
    REQUIRE((max_norm < 1 ? factor < 0.5 : factor == 1.0));  // the first bound does clip
    std::vector<double> want(by_hand.parameters().begin(), by_hand.parameters().end());
    for (std::size_t i = 0; i < want.size(); ++i) want[i] -= 0.5 * factor * by_hand.gradients()[i];
    for (std::size_t k : {1, 3}) {
      INFO(k << " replicas");
      dpar::thread_pool pool(k);
      nn::data_parallel_trainer t(dpar::par.on(pool), model(), o);
      t.train_step(data.images, data.labels);
      auto p = params(t);
      for (std::size_t i = 0; i < p.size(); ++i) REQUIRE(p[i] == Approx(want[i]).margin(1e-6).epsilon(1e-5));
    }
  }
  o.clip_norm = -1.0f;
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::seq, model(), o), Catch::Contains("clip_norm"));
}

namespace {
// An identity layer that records the most rows one forward pass saw.
struct widest_pass final : nn::layer {
  static inline std::atomic<std::size_t> rows{0};
  std::string name() const override { return "WidestPass"; }
  std::size_t out_features(std::size_t in) const override { return in; }
  void forward(const nn::tensor& x, nn::tensor& y) override {
    std::size_t seen = rows.load();
    while (x.rows() > seen && !rows.compare_exchange_weak(seen, x.rows())) {
    }
    std::copy(x.data(), x.data() + x.size(), y.data());
  }
  void backward(const nn::tensor&, const nn::tensor&, const nn::tensor& dy, nn::tensor* dx) override {
    if (dx) std::copy(dy.data(), dy.data() + dy.size(), dx->data());
  }
  std::unique_ptr<nn::layer> clone() const override { return std::make_unique<widest_pass>(*this); }
};
}  // namespace

TEST_CASE("trainer: gradient accumulation computes a replica's share in passes; the same step as one pass",
          "[nn][trainer][accumulate]") {
  auto data = blobs(60, 12, 5, 17);
  auto m = model();
  m.add(widest_pass());
  auto o = options(60);
  dpar::thread_pool pool(2);
  auto step = [&](std::size_t passes, bool exact) {
    o.accumulate = passes;
    widest_pass::rows = 0;
    auto t = exact ? nn::data_parallel_trainer(dpar::deterministic(dpar::par.on(pool)), m, o)
                   : nn::data_parallel_trainer(dpar::par.on(pool), m, o);
    for (std::size_t s = 0; s < 3; ++s) t.train_step(data.images, data.labels);
    return std::pair{params(t), widest_pass::rows.load()};
  };
  auto [one_pass, rows1] = step(1, false);
  auto [three_passes, rows3] = step(3, false);
  REQUIRE(rows1 == 30);  // 2 replicas x 30 samples
  REQUIRE(rows3 == 10);  // each replica's 30 in 3 passes of 10
  REQUIRE(max_abs_difference(three_passes, one_pass) <= 1e-5 * max_abs(one_pass));
  REQUIRE(step(100, false).second == 1);  // at most one pass per sample
  // Under deterministic the passes are the micro-batches: the same bits whatever accumulate says.
  o.micro_batch = 8;
  REQUIRE(step(4, true) == step(1, true));
  o.accumulate = 0;
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::seq, model(), o), Catch::Contains("accumulate"));
}

// ---- issue 27: sizes that cannot wrap, clear refusals, and the cases the mutation run found untested ----

TEST_CASE("trainer: batch, micro-batch and chunk near SIZE_MAX do not wrap", "[nn][trainer]") {
  const std::size_t huge = std::numeric_limits<std::size_t>::max();
  auto data = blobs(60, 12, 5, 3);
  dpar::thread_pool pool(3);
  auto o = options(huge);
  o.micro_batch = huge - 1;
  o.check_replicas = false;
  nn::data_parallel_trainer t(dpar::par.on(pool), model(), o);
  auto r = t.train_epoch(data);  // one step of every sample
  CHECK(r.samples == 60);
  CHECK(t.steps() == 1);
  CHECK(t.evaluate(data, huge).samples == 60);
  CHECK(t.evaluate(data, huge - 7).samples == 60);
  // deterministic: the parts of a batch are micro-batches of that size
  nn::data_parallel_trainer exact(dpar::deterministic(dpar::par.on(pool)), model(), o);
  CHECK(exact.train_epoch(data).samples == 60);
  auto [x, y] = batch_of(data, 30, 0);
  CHECK(exact.train_step(x, y).samples == 30);
  CHECK(exact.evaluate(data, huge).samples == 60);
}

TEST_CASE("trainer: resume refuses a model file as such, continues a format-01 checkpoint, "
          "stops before the step count wraps", "[nn][trainer]") {
  auto data = blobs(40, 12, 5, 3);
  const std::string file =
      (std::filesystem::temp_directory_path() / ("dpar_nn_resume27_" + std::to_string(::getpid()))).string();
  nn::save_model(file, model());
  nn::data_parallel_trainer t(dpar::seq, model(), options(8));
  REQUIRE_THROWS_WITH(t.resume(file), Catch::Contains("a model file (save_model), not a training checkpoint"));

  // Format 01 had no schedule fingerprint: it resumes as format 02 does.
  t.train_epoch(data);
  t.save(file);
  nn::checkpoint c = nn::load_checkpoint(file);
  std::vector<unsigned char> bytes(nn::detail::checkpoint_magic_01, nn::detail::checkpoint_magic_01 + 8);
  for (auto v : {c.epoch, c.step, c.seed, c.replicas, c.layout, std::uint64_t(c.parameters.size()),
                 std::uint64_t(c.velocity.size())})
    nn::detail::put_u64(bytes, v);
  nn::detail::put_floats(bytes, c.parameters);
  nn::detail::put_floats(bytes, c.velocity);
  const std::uint32_t sum = nn::detail::crc(bytes.data(), bytes.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<unsigned char>(sum >> (8 * i)));
  const std::string old_file = file + ".01";
  {
    std::FILE* f = std::fopen(old_file.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
    std::fclose(f);
  }
  nn::data_parallel_trainer from_02(dpar::seq, model(), options(8)), from_01(dpar::seq, model(), options(8));
  from_02.resume(file);
  from_01.resume(old_file);
  REQUIRE(from_01.epochs() == 1);
  REQUIRE(from_01.steps() == 5);
  from_02.train_epoch(data);
  from_01.train_epoch(data);
  CHECK(params(from_01) == params(from_02));

  // A checkpoint whose step count is near SIZE_MAX: the next step would wrap it.
  c.step = std::numeric_limits<std::size_t>::max() - 2;
  nn::save_checkpoint(file, c);
  nn::data_parallel_trainer late(dpar::seq, model(), options(8));
  late.resume(file);
  CHECK_THROWS_WITH(late.train_epoch(data), Catch::Contains("overflow the step count"));
  auto [x, y] = batch_of(data, 8, 0);
  late.train_step(x, y);
  late.train_step(x, y);
  CHECK_THROWS_AS(late.train_step(x, y), std::overflow_error);
  CHECK(late.steps() == std::numeric_limits<std::size_t>::max());
  std::filesystem::remove(file);
  std::filesystem::remove(old_file);
}

TEST_CASE("trainer: a progress callback that throws on an epoch's last step; a throwing schedule; a nested step",
          "[nn][trainer]") {
  auto data = blobs(40, 12, 5, 3);
  dpar::thread_pool pool(2);
  for (std::size_t k : {1, 2}) {
    INFO(k << " replicas");
    auto make = [&](nn::train_options o) {
      return k == 1 ? nn::data_parallel_trainer(dpar::seq, model(), o)
                    : nn::data_parallel_trainer(dpar::par.on(pool), model(), o);
    };
    auto t = make(options(8));
    REQUIRE_THROWS_WITH(t.train_epoch(data,
                                      [](std::size_t done, std::size_t total, double) {
                                        if (done == total) throw std::runtime_error("progress failed at the end");
                                      }),
                        "progress failed at the end");
    CHECK(t.steps() == 5);   // every step's update happened
    CHECK(t.epochs() == 0);  // but the epoch did not complete
    t.train_epoch(data);
    CHECK(t.epochs() == 1);

    // A schedule that throws from step 2: the step fails before any update, and the trainer stays usable.
    auto o = options(8);
    o.schedule = [](std::size_t step) -> float {
      if (step >= 2) throw std::out_of_range("no rate for step " + std::to_string(step));
      return 0.01f;
    };
    auto s = make(o);
    auto batch = batch_of(data, 8, 0);
    const nn::tensor& x = batch.first;
    auto y = batch.second;
    s.train_step(x, y);
    s.train_step(x, y);
    const auto before = params(s);
    CHECK_THROWS_WITH(s.train_step(x, y), "no rate for step 2");
    CHECK_THROWS_WITH(s.train_epoch(data), "no rate for step 2");
    CHECK(params(s) == before);
    CHECK(s.steps() == 2);
    s.set_schedule(nn::lr_schedule::constant(0.01f));
    CHECK(s.train_step(x, y).samples == 8);
  }
  // Thread replicas started from inside a pool job cannot run: the group says so.
  nn::data_parallel_trainer t(dpar::par.on(pool), model(), options(8));
  auto batch = batch_of(data, 8, 0);  // not a structured binding: lambdas capture x and y
  const nn::tensor& x = batch.first;
  auto y = batch.second;
  dpar::thread_pool other(2);
  REQUIRE_THROWS_WITH(other.run([&](std::size_t thread, std::size_t) {
                        if (thread == 1) t.train_step(x, y);  // one caller at a time
                      }),
                      Catch::Contains("2 replicas need the pool's threads, but they were started from inside a pool "
                                      "job"));
  CHECK(t.train_step(x, y).samples == 8);
}

TEST_CASE("schedule fingerprint: a schedule that differs at step 3 only has another fingerprint", "[nn][trainer]") {
  auto base = nn::lr_schedule::constant(0.1f);
  for (std::size_t at : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{4}, std::size_t{6},
                         std::size_t{1} << 20}) {
    INFO("differs at step " << at);
    nn::lr_function other = [=](std::size_t step) { return step == at ? 0.2f : 0.1f; };
    CHECK(nn::schedule_fingerprint(other) != nn::schedule_fingerprint(base));
  }
  CHECK(nn::schedule_fingerprint([](std::size_t) { return 0.1f; }) == nn::schedule_fingerprint(base));
}

// ---- batch_norm (SyncBatchNorm) and dropout on replicas ----
namespace {

nn::sequential norm_model(bool with_dropout) {
  nn::sequential m(12);
  m.add(nn::dense(12, 16)).add(nn::batch_norm(16)).add(nn::relu());
  if (with_dropout) m.add(nn::dropout(0.25f, 5));
  m.add(nn::dense(16, 5));
  m.initialize(3);
  return m;
}

struct run_result {
  std::vector<float> params, state;
  double loss = 0;
};

run_result result_of(const nn::data_parallel_trainer& t, double loss) {
  auto s = t.model().state();
  return {params(t), {s.begin(), s.end()}, loss};
}

// An epoch, then `steps` steps of batch_of, on policy's replicas.
template <class Policy>
run_result norm_run(const Policy& policy, const nn::sequential& m, const nn::train_options& o, const nn::dataset& data,
                    std::size_t steps) {
  nn::data_parallel_trainer t(policy, m, o);
  double loss = t.train_epoch(data).loss_sum;
  for (std::size_t s = 0; s < steps; ++s) {
    auto [x, y] = batch_of(data, o.batch, s);
    loss += t.train_step(x, y).loss_sum;
  }
  return result_of(t, loss);
}

double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  return max_abs_difference(a, b) / max_abs(b);
}

}  // namespace

TEST_CASE("SyncBN: one step on 1, 2, 3, 4 thread replicas is batch_norm over the whole global batch (1e-6)",
          "[nn][trainer][batch_norm]") {
  auto data = blobs(30, 12, 5, 4);
  nn::train_options o;
  o.batch = 30;
  o.schedule = nn::lr_schedule::constant(0.5f);
  o.check_replicas = true;
  // The reference: one model, forward and backward of the whole batch, p - lr g.
  nn::sequential ref = norm_model(false);
  const nn::tensor& out = ref.forward(data.images);
  nn::tensor g(out.rows(), out.cols());
  nn::softmax_cross_entropy{}(out, data.labels, &g, 30);
  ref.backward(g);
  std::vector<float> want(ref.parameters().begin(), ref.parameters().end());
  for (std::size_t i = 0; i < want.size(); ++i) want[i] -= 0.5f * ref.gradients()[i];
  std::vector<float> want_state(ref.state().begin(), ref.state().end());
  for (std::size_t k : {1, 2, 3, 4}) {
    dpar::thread_pool pool(k);
    nn::data_parallel_trainer t(dpar::par.on(pool), norm_model(false), o);
    t.train_step(data.images, data.labels);
    auto got = result_of(t, 0);
    INFO(k << " replicas");
    CHECK(relative_difference(got.params, want) <= 1e-6);
    CHECK(relative_difference(got.state, want_state) <= 1e-6);
  }
}

TEST_CASE("SyncBN: K = 2, 3, 4 replicas follow one replica over epochs and steps; bitwise under deterministic",
          "[nn][trainer][batch_norm]") {
  auto data = blobs(70, 12, 5, 5);
  for (bool with_dropout : {false, true}) {
    auto o = options(30);
    o.micro_batch = 8;
    INFO("dropout " << with_dropout);
    auto one = norm_run(dpar::seq, norm_model(with_dropout), o, data, 3);
    auto exact_one = norm_run(dpar::deterministic(dpar::seq), norm_model(with_dropout), o, data, 3);
    for (std::size_t k : {2, 3, 4}) {
      INFO(k << " replicas");
      dpar::thread_pool pool(k);
      auto many = norm_run(dpar::par.on(pool), norm_model(with_dropout), o, data, 3);
      CHECK(relative_difference(many.params, one.params) <= 1e-5);
      CHECK(relative_difference(many.state, one.state) <= 1e-5);
      auto exact = norm_run(dpar::deterministic(dpar::par.on(pool)), norm_model(with_dropout), o, data, 3);
      CHECK(exact.params == exact_one.params);  // bitwise: the same masks, the same statistics
      CHECK(exact.state == exact_one.state);
      CHECK(exact.loss == exact_one.loss);
    }
  }
  // A batch of 3 on 4 replicas: one has no sample, and still joins every sum.
  auto o = options(3);
  auto one = norm_run(dpar::seq, norm_model(false), o, blobs(9, 12, 5, 6), 2);
  dpar::thread_pool pool(4);
  auto many = norm_run(dpar::par.on(pool), norm_model(false), o, blobs(9, 12, 5, 6), 2);
  CHECK(relative_difference(many.params, one.params) <= 1e-5);
}

TEST_CASE("train/eval: evaluate and predict run in eval mode; training runs in train mode",
          "[nn][trainer][batch_norm][dropout]") {
  auto data = blobs(60, 12, 5, 7);
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer t(dpar::par.on(pool), norm_model(true), options(20));
  t.train_epoch(data);
  nn::step_result r = t.evaluate(data, 7);
  nn::sequential m = t.model();
  nn::tensor eval_out = m.predict(data.images);
  double eval_loss = nn::softmax_cross_entropy{}(eval_out, data.labels);
  CHECK(r.loss_sum == Approx(eval_loss).epsilon(1e-6));
  CHECK(r.correct == std::size_t(std::count_if(data.labels.begin(), data.labels.end(), [&, i = 0](std::int32_t y) mutable {
          return nn::argmax(eval_out)[i++] == y;
        })));
  m.train();
  double train_loss = nn::softmax_cross_entropy{}(m.forward(data.images, 1, 0), data.labels);
  CHECK(std::abs(train_loss - eval_loss) > 1e-3 * eval_loss);  // dropout and batch statistics change the output
  // The running statistics moved away from (0, 1) in training, and evaluate left them alone.
  auto before = t.model().state();
  std::vector<float> kept(before.begin(), before.end());
  t.evaluate(data);
  CHECK(std::vector<float>(t.model().state().begin(), t.model().state().end()) == kept);
  CHECK(kept[0] != 0.0f);
}

TEST_CASE("SyncBN: checkpoints keep the running statistics; a resumed run continues bitwise",
          "[nn][trainer][batch_norm]") {
  auto data = blobs(50, 12, 5, 8);
  const std::string file =
      (std::filesystem::temp_directory_path() / ("dpar_nn_bn_" + std::to_string(::getpid()))).string();
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer a(dpar::par.on(pool), norm_model(true), options(16));
  a.train_epoch(data);
  a.save(file);
  CHECK(nn::load_checkpoint(file).state.size() == 32);
  a.train_epoch(data);
  nn::data_parallel_trainer b(dpar::par.on(pool), norm_model(true), options(16));
  b.resume(file);
  CHECK(b.model().state()[0] != norm_model(true).state()[0]);
  b.train_epoch(data);
  CHECK(params(a) == params(b));
  CHECK(std::vector<float>(a.model().state().begin(), a.model().state().end()) ==
        std::vector<float>(b.model().state().begin(), b.model().state().end()));
  // A model without the state refuses the checkpoint.
  nn::data_parallel_trainer plain(dpar::seq, norm_model(false), options(16));
  CHECK_THROWS_AS(plain.resume(file), nn::checkpoint_error);
  std::filesystem::remove(file);
}

TEST_CASE("SyncBN: a replica that fails between two sums releases the others; every replica stops (run under TSan)",
          "[nn][trainer][batch_norm]") {
  auto data = blobs(9, 12, 4, 9);
  for (auto& y : data.labels) y = y % 4;
  data.labels[6] = 4;  // replica 2's first sample, of 3 replicas
  struct picky_loss {
    double operator()(const nn::tensor& out, std::span<const std::int32_t> labels, nn::tensor* grad,
                      std::size_t total) const {
      if (!labels.empty() && labels[0] == 4) throw std::runtime_error("picky_loss refuses label 4");
      return nn::softmax_cross_entropy{}(out, labels, grad, total);
    }
  };
  for (bool exact : {false, true}) {
    INFO("deterministic " << exact);
    auto o = options(9);
    o.micro_batch = 3;
    o.check_replicas = true;
    dpar::thread_pool pool(3);
    auto make = [&](nn::train_options opts) {
      return exact ? nn::data_parallel_trainer(dpar::deterministic(dpar::par.on(pool)), norm_model(true), opts)
                   : nn::data_parallel_trainer(dpar::par.on(pool), norm_model(true), opts);
    };
    auto with_picky = o;
    with_picky.loss = picky_loss{};
    auto t = make(with_picky);
    auto before = params(t);
    // The loss throws between the forward sums and the backward sums of replica 2 only.
    CHECK_THROWS_WITH(t.train_step(data.images, data.labels), Catch::Contains("picky_loss refuses label 4"));
    CHECK(params(t) == before);
    // A label out of range: refused on replica 2 before its forward.
    auto u = make(o);
    data.labels[6] = 5;
    CHECK_THROWS_AS(u.train_step(data.images, data.labels), std::out_of_range);
    data.labels[6] = 3;
    u.train_step(data.images, data.labels);  // and the trainer goes on
    t.train_step(data.images, data.labels);
    data.labels[6] = 4;
    CHECK(params(t) == params(u));
  }
}

namespace {
// A data source that fails to read one row while `broken` is set (a file
// gone bad mid-epoch).
class flaky_source final : public nn::data_source {
 public:
  explicit flaky_source(const nn::dataset& d) : inner_(d) {}
  std::size_t size() const override { return inner_.size(); }
  std::size_t features() const override { return inner_.features(); }
  std::size_t target_columns() const override { return 0; }
  void gather_inputs(std::span<const std::size_t> rows, float* x) const override {
    for (std::size_t r : rows)
      if (broken && r == 17) throw std::runtime_error("row 17 is unreadable");
    inner_.gather_inputs(rows, x);
  }
  void gather_labels(std::span<const std::size_t> rows, std::int32_t* y) const override { inner_.gather_labels(rows, y); }
  void gather_targets(std::span<const std::size_t> rows, float* t) const override { inner_.gather_targets(rows, t); }
  bool broken = true;

 private:
  nn::memory_source inner_;
};
}  // namespace

TEST_CASE("trainer: data sources in memory and mapped, prefetched or not, train the same bits", "[nn][trainer][data]") {
  const auto dir = std::filesystem::temp_directory_path() / ("dpar_trainer_data_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto files = write_blob_files((dir / "d").string(), 203, 12, 8);
  const nn::dataset memory = nn::idx_load_dataset(files.images, files.labels);
  const auto mapped = nn::mapped_dataset::idx(files.images, files.labels);
  dpar::thread_pool pool(3);
  auto o = options(24);
  o.accumulate = 2;
  auto run = [&](const nn::data_source& data, bool prefetch) {
    auto oo = o;
    oo.prefetch = prefetch;
    nn::data_parallel_trainer t(dpar::par.on(pool), model(), oo);
    std::vector<double> losses;
    for (int e = 0; e < 2; ++e) losses.push_back(t.train_epoch(data).loss_sum);
    losses.push_back(t.evaluate(data, 10).loss_sum);
    REQUIRE(t.steps() == 2 * 9);
    return std::pair{losses, params(t)};
  };
  const auto want = run(nn::memory_source(memory), false);
  REQUIRE(run(nn::memory_source(memory), true) == want);
  REQUIRE(run(mapped, true) == want);
  REQUIRE(run(mapped, false) == want);
  nn::data_parallel_trainer plain(dpar::par.on(pool), model(), o);  // train_epoch(dataset): the same path
  plain.train_epoch(memory);
  plain.train_epoch(memory);
  REQUIRE(params(plain) == want.second);
  std::filesystem::remove_all(dir);
}

TEST_CASE("trainer: a data source failing in a gather, prefetched or not, raises and leaves the replicas equal",
          "[nn][trainer][data]") {
  const auto data = blobs(64, 12, 5, 2);
  dpar::thread_pool pool(2);
  for (bool prefetch : {true, false}) {
    INFO("prefetch " << prefetch);
    auto o = options(8);
    o.prefetch = prefetch;
    nn::data_parallel_trainer t(dpar::par.on(pool), model(), o);
    flaky_source source(data);
    REQUIRE_THROWS_WITH(t.train_epoch(source), Catch::Contains("row 17 is unreadable"));
    REQUIRE(t.steps() < 8);
    REQUIRE(t.epochs() == 0);
    t.check_replicas();
    source.broken = false;
    REQUIRE(t.train_epoch(source).samples == 64);
    REQUIRE(t.epochs() == 1);
  }
}

TEST_CASE("trainer: a rank_shard in one process trains every sample once per epoch, in an order of its own",
          "[nn][trainer][data]") {
  const auto data = blobs(53, 12, 5, 6);
  dpar::thread_pool pool(2);
  nn::data_parallel_trainer t(dpar::par.on(pool), model(), options(10));
  const nn::rank_shard shard(data);
  auto order = t.epoch_order(shard, 0);
  REQUIRE(order != t.epoch_order(data, 0));
  std::sort(order.begin(), order.end());
  for (std::size_t i = 0; i < order.size(); ++i) REQUIRE(order[i] == i);
  std::size_t last = 0;
  REQUIRE(t.train_epoch(shard, [&](std::size_t done, std::size_t, double) { last = done; }).samples == 53);
  REQUIRE(last == 53);
  REQUIRE(t.steps() == 6);
  REQUIRE(t.evaluate(shard).samples == 53);
  nn::dataset empty;
  empty.images.resize(0, 12);
  REQUIRE(t.train_epoch(nn::rank_shard(empty)).samples == 0);
  REQUIRE(t.epochs() == 2);
  auto tiny = options(1);  // fewer samples per step than replicas: refused
  nn::data_parallel_trainer small(dpar::par.on(pool), model(), tiny);
  REQUIRE_THROWS_WITH(small.train_epoch(shard), Catch::Contains("a batch of 1 over 2 replicas"));
  REQUIRE(small.train_epoch(data).samples == 53);  // the whole data set, as before
}

namespace {

// Thread replicas that sum in buckets the plainest way (each bucket
// all-reduced at once by the thread group), recording what the trainer asks:
// the trainer's side of buckets, without MPI. With bucket_bytes 0 the same
// group sums at the step's end (replica_group's default): the reference.
class bucket_recording_group final : public nn_test::forwarding_group {
 public:
  using forwarding_group::forwarding_group;
  bool sums_in_buckets(const nn::replica_model&) const noexcept override { return true; }
  void start_bucket(std::size_t local, nn::replica_model& model, std::size_t lo, std::size_t hi) override {
    all_reduce(local, model.gradients().subspan(lo, hi - lo));
    if (local == 0) started.emplace_back(lo, hi);
  }
  void progress_buckets(std::size_t local) override {
    if (local == 0) ++progressed;
  }
  void finish_buckets(std::size_t local, nn::replica_model&) override {
    if (local == 0) ++finished;
  }
  std::vector<std::pair<std::size_t, std::size_t>> started;  // by local replica 0, in order
  std::size_t progressed = 0, finished = 0;
};

}  // namespace

TEST_CASE("trainer: gradient buckets, last layer first, give the bits of the sum at the step's end", "[nn][trainer]") {
  // model(): 12-16-8-5, dense layers of 208, 136 and 45 parameters at 0, 208 and 344.
  using ranges = std::vector<std::pair<std::size_t, std::size_t>>;
  const std::pair<std::size_t, ranges> layouts[] = {
      {1, {{344, 389}, {208, 344}, {0, 208}}},  // a bucket per layer
      {600, {{208, 389}, {0, 208}}},            // 45 floats are under 600 bytes: two layers in one
      {std::size_t{1} << 30, {{0, 389}}}};      // larger than the model: one bucket
  auto data = blobs(103, 12, 5, 1);
  for (std::size_t threads : {1, 2})
    for (bool adamw : {false, true})
      for (float clip : {0.0f, 0.5f})
        for (std::size_t batch : {37, 1}) {  // batch 1: one replica without samples
          if (batch < threads && threads == 1) continue;
          dpar::thread_pool pool(threads);
          auto o = options(batch);
          if (adamw) o.adamw = nn::adamw_options{};
          o.clip_norm = clip;
          o.bucket_bytes = 0;
          std::vector<float> want;
          {
            auto group = std::make_unique<bucket_recording_group>(pool);
            auto* g = group.get();
            nn::data_parallel_trainer t(std::move(group), model(), o);
            for (std::size_t s = 0; s < 5; ++s) {
              auto [x, y] = batch_of(data, batch, s);
              t.train_step(x, y);
            }
            REQUIRE(g->started.empty());
            want = params(t);
          }
          for (const auto& [bytes, expected] : layouts) {
            INFO(threads << " threads, " << (adamw ? "AdamW" : "SGD") << ", clip " << clip << ", batch " << batch
                         << ", buckets of " << bytes << " bytes");
            o.bucket_bytes = bytes;
            auto group = std::make_unique<bucket_recording_group>(pool);
            auto* g = group.get();
            nn::data_parallel_trainer t(std::move(group), model(), o);
            ranges all;
            for (std::size_t s = 0; s < 5; ++s) {
              auto [x, y] = batch_of(data, batch, s);
              t.train_step(x, y);
              all.insert(all.end(), expected.begin(), expected.end());
            }
            REQUIRE(g->started == all);
            REQUIRE(g->finished == 5);
            if (bytes == 1) REQUIRE(g->progressed > 0);  // the activations' turns, between buckets
            REQUIRE(params(t) == want);
          }
        }
}

TEST_CASE("trainer: buckets stay at the step's end for several parts per replica and under deterministic",
          "[nn][trainer]") {
  auto data = blobs(103, 12, 5, 1);
  dpar::thread_pool pool(2);
  auto o = options(37);
  o.bucket_bytes = 1;
  o.accumulate = 2;  // two passes per replica: the parts are summed at the end
  auto group = std::make_unique<bucket_recording_group>(pool);
  auto* g = group.get();
  nn::data_parallel_trainer t(std::move(group), model(), o);
  auto [x, y] = batch_of(data, 37, 0);
  t.train_step(x, y);
  REQUIRE(g->started.empty());
  REQUIRE(g->finished == 0);
  // deterministic(...): the exact sum, at the end, whatever bucket_bytes says.
  std::vector<float> want;
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{4096}}) {
    o = options(37);
    o.bucket_bytes = bytes;
    o.micro_batch = 64;  // one part per replica
    nn::data_parallel_trainer d(dpar::deterministic(dpar::par.on(pool)), model(), o);
    for (std::size_t s = 0; s < 5; ++s) {
      auto [xs, ys] = batch_of(data, 37, s);
      d.train_step(xs, ys);
    }
    if (want.empty()) want = params(d);
    REQUIRE(params(d) == want);
  }
}

TEST_CASE("trainer: a replica that fails during a bucketed step starts every bucket; every replica raises",
          "[nn][trainer]") {
  auto data = blobs(103, 12, 5, 1);
  dpar::thread_pool pool(3);
  auto o = options(30);
  o.bucket_bytes = 1;
  auto group = std::make_unique<bucket_recording_group>(pool);
  auto* g = group.get();
  nn::data_parallel_trainer t(std::move(group), model(), o);
  auto [x, y] = batch_of(data, 30, 0);
  std::vector<std::int32_t> labels(y.begin(), y.end());
  labels[25] = 9;  // replica 2's shard: a label out of range, found before its forward
  const auto before = params(t);
  REQUIRE_THROWS_WITH(t.train_step(x, labels), Catch::Contains("label 9"));
  REQUIRE(g->started.size() == 3);  // replica 2 started the three buckets the others waited in
  REQUIRE(params(t) == before);     // no update anywhere
  t.train_step(x, y);               // usable afterwards
  REQUIRE(g->started.size() == 6);
}
