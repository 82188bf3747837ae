// The seam GPU replicas plug into, exercised on the CPU: a replica group that
// makes its own replica models (replica_group::make_model), as dpar::gpu and
// dpar::multi_gpu groups do. Checks how the trainer drives them: each replica
// gets its shard (dpar::even_split of the batch), the gradient all-reduce
// gets the model's gradient buffer, the host mirror is
// pushed after the initial broadcast and after resume and pulled before
// model(), save and the lockstep check; and the results equal the plain
// thread replicas' bit for bit. Then data-model parallelism
// (nn/model_parallel.hpp) on 1, 2, 3 thread replicas against pure data parallel.
#include <dpar/nn.hpp>

#include <catch2/catch.hpp>

#include "nn_test_problem.hpp"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace nn = dpar::nn;

namespace {

// A host replica that records what the trainer asks of it. Each is touched by
// its own replica's thread only; the test reads it after the run has joined.
class recording_model final : public nn::replica_model {
 public:
  recording_model(const nn::sequential& m, const nn::replica_options& o) : inner_(m, o) {}

  nn::tensor& input_buffer(std::size_t rows, std::size_t cols) override { return inner_.input_buffer(rows, cols); }
  nn::shard_totals compute_gradients(const nn::tensor& x, std::span<const std::int32_t> labels,
                                     std::size_t total) override {
    shard_rows.push_back(x.rows());
    totals.push_back(total);
    return inner_.compute_gradients(x, labels, total);
  }
  nn::shard_totals evaluate(const nn::tensor& x, std::span<const std::int32_t> labels) override {
    return inner_.evaluate(x, labels);
  }
  void zero_gradients() override {
    ++zeroed;
    inner_.zero_gradients();
  }
  std::span<float> gradients() override { return inner_.gradients(); }
  void update(float lr) override { inner_.update(lr); }
  nn::sequential& host_model() override { return inner_.host_model(); }
  std::span<float> host_velocity() override { return inner_.host_velocity(); }
  void push() override { ++pushes; }
  void pull() override { ++pulls; }

  std::vector<std::size_t> shard_rows, totals;
  int pushes = 0, pulls = 0, zeroed = 0;

 private:
  nn::host_replica_model inner_;
};

// Thread replicas whose models are recording_models; the float all-reduce
// checks that it is handed each replica's own gradient buffer.
class recording_group final : public nn_test::forwarding_group {
 public:
  explicit recording_group(dpar::thread_pool& pool) : forwarding_group(pool), models(pool.size()) {}
  using forwarding_group::all_reduce;
  void all_reduce(std::size_t local, std::span<float> data) override {
    if (data.data() != models[local]->gradients().data()) throw std::logic_error("not the model's gradient buffer");
    inner().all_reduce(local, data);
  }
  std::unique_ptr<nn::replica_model> make_model(std::size_t local, const nn::sequential& m,
                                                const nn::replica_options& o) override {
    auto model = std::make_unique<recording_model>(m, o);
    models[local] = model.get();
    return model;
  }

  std::vector<recording_model*> models;
};

}  // namespace

TEST_CASE("replica models: the trainer shards, gathers, reduces, pushes and pulls through them", "[nn][trainer]") {
  constexpr std::size_t k = 3;
  dpar::thread_pool pool(k), plain_pool(k);
  auto data = nn_test::blobs(107, 12, 5, 2);  // a prime: the last batch is short
  auto options = nn_test::options(10);
  options.check_replicas = false;  // counted separately below
  auto group = std::make_unique<recording_group>(pool);
  auto* g = group.get();
  nn::data_parallel_trainer t(std::move(group), nn_test::model(), options);
  nn::data_parallel_trainer plain(dpar::par.on(plain_pool), nn_test::model(), options);
  for (auto* m : g->models) REQUIRE(m->pushes == 1);  // after the initial broadcast

  // A 2-sample step: replica 2's shard is empty (dpar::even_split(2, 3, 2)), so it zeroes its gradients.
  std::vector<std::int32_t> two_labels(data.labels.begin(), data.labels.begin() + 2);
  t.train_step(data.images.rows_view(0, 2), two_labels);
  plain.train_step(data.images.rows_view(0, 2), two_labels);
  REQUIRE(g->models[2]->zeroed == 1);
  REQUIRE(g->models[0]->shard_rows == std::vector<std::size_t>{1});
  REQUIRE(g->models[1]->shard_rows == std::vector<std::size_t>{1});

  t.train_epoch(data);
  plain.train_epoch(data);
  // Batches of 10 (the last of 7) split 4/3/3 (the last 3/2/2) over the replicas,
  // the loss scaled by the global batch. (The epoch gathers each batch through
  // its data source into the trainer's batch buffer, not the replica model's
  // input_buffer: one more host copy for device replicas.)
  for (std::size_t r = 0; r < k; ++r) {
    auto& m = *g->models[r];
    std::size_t before = r == 2 ? 0 : 1;  // replica 2 had nothing of the 2-sample step
    REQUIRE(m.shard_rows.size() == before + 11);
    for (std::size_t j = 0; j < 11; ++j) {
      std::size_t s = before + j, n = j < 10 ? 10 : 7;
      REQUIRE(m.shard_rows[s] == n / k + (r < n % k ? 1 : 0));
      REQUIRE(m.totals[s] == n);
    }
  }
  REQUIRE(nn_test::params(t) == nn_test::params(plain));  // model() pulls replica 0
  REQUIRE(g->models[0]->pulls == 1);

  auto file = (std::filesystem::temp_directory_path() / "dpar_replica_model_test.ckpt").string();
  t.save(file);
  REQUIRE(g->models[0]->pulls == 2);  // replica 0 writes, after a pull
  t.resume(file);
  for (auto* m : g->models) REQUIRE(m->pushes == 2);  // every replica, after loading
  t.check_replicas();
  for (auto* m : g->models) REQUIRE(m->pulls >= 1);  // each hashes its pulled mirror
  std::remove(file.c_str());
}

// ---- Data-model parallelism (nn/model_parallel.hpp): dense layers split by
// output units over the replicas, the rest data-parallel; results equal pure
// data parallel within float rounding. ----

namespace {

using nn_test::max_abs;
using nn_test::max_abs_difference;

// nn_test::small_cnn's convolutions, then a model-parallel hidden layer.
nn::sequential cnn(bool split) {
  nn::conv2d c1({1, 8, 8}, 4, 3, 1, 1);
  nn::max_pool2d p1(c1.output_shape(), 2);
  nn::conv2d c2(p1.output_shape(), 6, 3, 2, 1);
  nn::flatten f(c2.output_shape());
  nn::sequential m(64);
  m.add(c1).add(nn::relu()).add(p1).add(c2).add(nn::relu()).add(f);
  nn::dense hidden(c2.output_shape().size(), 10);
  if (split)
    m.add(nn::model_parallel(hidden));
  else
    m.add(hidden);
  m.add(nn::relu()).add(nn::dense(10, 4));
  m.initialize(17);
  return m;
}

std::vector<float> whole(nn::data_parallel_trainer& t) {
  t.synchronize();
  return nn_test::params(t);
}

// 20 steps of batches of `batch` (odd, and some smaller than the replica count).
std::vector<float> train_20(nn::data_parallel_trainer& t, const nn::dataset& data, std::size_t batch) {
  for (std::size_t s = 0; s < 20; ++s) {
    std::size_t b = s % 7 == 6 ? 2 : batch;  // now and then fewer samples than replicas
    auto [x, y] = nn_test::batch_of(data, b, s);
    t.train_step(x, y);
  }
  return whole(t);
}

// nn_test::options without the per-step lockstep check, which gathers the
// split layers' slices: every replica then holds only its own slice current.
nn::train_options unchecked(std::size_t batch) {
  nn::train_options o = nn_test::options(batch);
  o.check_replicas = false;
  return o;
}

void require_close(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  INFO("max difference " << max_abs_difference(got, want) << " of " << max_abs(want));
  REQUIRE(max_abs_difference(got, want) <= 1e-5 * max_abs(want));
}

}  // namespace

TEST_CASE("model parallel: the marked layers keep the dense layout and initial parameters", "[nn][model_parallel]") {
  nn::sequential split = nn_test::split_model(), plain = nn_test::model();
  REQUIRE(nn::layout_hash(split) == nn::layout_hash(plain));
  REQUIRE(std::vector<float>(split.parameters().begin(), split.parameters().end()) ==
          std::vector<float>(plain.parameters().begin(), plain.parameters().end()));
  // Outside a trainer it computes as the dense layer it wraps.
  auto data = nn_test::blobs(9, 12, 5, 4);
  nn::tensor a = split.predict(data.images), b = plain.predict(data.images);
  REQUIRE(std::vector<float>(a.data(), a.data() + a.size()) == std::vector<float>(b.data(), b.data() + b.size()));
}

TEST_CASE("model parallel: MLP on 1, 2, 3 thread replicas matches pure data parallel over 20 steps (1e-5)",
          "[nn][model_parallel]") {
  auto data = nn_test::blobs(200, 12, 5, 7);
  nn::data_parallel_trainer reference(dpar::seq, nn_test::model(), nn_test::options(37));
  const std::vector<float> want = train_20(reference, data, 37);
  for (std::size_t k : {1u, 2u, 3u}) {
    dpar::thread_pool pool(k);
    nn::data_parallel_trainer t(dpar::par.on(pool), nn_test::split_model(), unchecked(37));
    INFO(k << " replicas");
    require_close(train_20(t, data, 37), want);
  }
}

TEST_CASE("model parallel: epochs with accumulation, AdamW and clipping, evaluate; 3 replicas match data parallel",
          "[nn][model_parallel]") {
  auto data = nn_test::blobs(61, 12, 5, 8);
  nn::train_options o = nn_test::options(16);
  o.adamw = nn::adamw_options{};
  o.clip_norm = 0.5f;
  o.accumulate = 2;
  dpar::thread_pool pool(3);
  nn::data_parallel_trainer plain(dpar::par.on(pool), nn_test::model(), o), split(dpar::par.on(pool), nn_test::split_model(), o);
  for (int e = 0; e < 3; ++e) {
    auto a = plain.train_epoch(data), b = split.train_epoch(data);
    REQUIRE(a.samples == b.samples);
    REQUIRE(a.correct == b.correct);
    REQUIRE(std::abs(a.loss_sum - b.loss_sum) <= 1e-5 * std::abs(a.loss_sum));
  }
  require_close(whole(split), nn_test::params(plain));
  auto ea = plain.evaluate(data, 7), eb = split.evaluate(data, 7);  // chunks of 7: replicas run unequal counts
  REQUIRE(ea.samples == eb.samples);
  REQUIRE(ea.correct == eb.correct);
  REQUIRE(std::abs(ea.loss_sum - eb.loss_sum) <= 1e-5 * std::abs(ea.loss_sum));
}

TEST_CASE("model parallel: a CNN with a model-parallel hidden layer on 2 and 3 replicas matches data parallel",
          "[nn][model_parallel]") {
  const nn::dataset& data = nn_test::quadrant_images();
  nn::data_parallel_trainer reference(dpar::seq, cnn(false), nn_test::options(24));
  const std::vector<float> want = train_20(reference, data, 24);
  for (std::size_t k : {2u, 3u}) {
    dpar::thread_pool pool(k);
    nn::data_parallel_trainer t(dpar::par.on(pool), cnn(true), unchecked(24));
    INFO(k << " replicas");
    require_close(train_20(t, data, 24), want);
  }
}

TEST_CASE("model parallel: model() needs synchronize(); checkpoints resume on another replica count and in plain "
          "data parallel",
          "[nn][model_parallel]") {
  auto data = nn_test::blobs(200, 12, 5, 9);
  const std::string file = (std::filesystem::temp_directory_path() / "dpar_model_parallel.ckpt").string();
  nn::data_parallel_trainer straight(dpar::seq, nn_test::model(), nn_test::options(30));
  dpar::thread_pool two(2), three(3);
  nn::data_parallel_trainer first(dpar::par.on(two), nn_test::split_model(), unchecked(30));
  for (std::size_t s = 0; s < 10; ++s) {
    auto [x, y] = nn_test::batch_of(data, 30, s);
    straight.train_step(x, y);
    first.train_step(x, y);
  }
  REQUIRE_THROWS_WITH(first.model(), Catch::Contains("synchronize()"));
  first.save(file);
  REQUIRE_NOTHROW(first.model());  // save gathered the slices
  require_close(nn_test::params(first), nn_test::params(straight));
  nn::data_parallel_trainer on_three(dpar::par.on(three), nn_test::split_model(), unchecked(30));
  nn::data_parallel_trainer plain(dpar::seq, nn_test::model(), nn_test::options(30));
  on_three.resume(file);
  plain.resume(file);
  for (std::size_t s = 10; s < 20; ++s) {
    auto [x, y] = nn_test::batch_of(data, 30, s);
    straight.train_step(x, y);
    on_three.train_step(x, y);
    plain.train_step(x, y);
  }
  require_close(whole(on_three), nn_test::params(straight));
  require_close(nn_test::params(plain), nn_test::params(straight));
  std::remove(file.c_str());
}

TEST_CASE("model parallel: bad input is refused clearly", "[nn][model_parallel]") {
  dpar::thread_pool pool(3);
  nn::sequential narrow(12);
  narrow.add(nn::model_parallel(nn::dense(12, 2))).add(nn::dense(2, 5));
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::par.on(pool), narrow, nn_test::options(8)),
                      Catch::Contains("2 output units, fewer than the 3 replicas"));
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::deterministic(dpar::par.on(pool)), nn_test::split_model(),
                                                nn_test::options(8)),
                      Catch::Contains("dpar::deterministic"));
  // A bad label on one replica's shard stops every replica before the forward's collectives.
  auto data = nn_test::blobs(30, 12, 5, 3);
  data.labels[25] = 7;
  nn::data_parallel_trainer t(dpar::par.on(pool), nn_test::split_model(), nn_test::options(30));
  REQUIRE_THROWS_AS(t.train_step(data.images, data.labels), std::out_of_range);
  REQUIRE_THROWS_AS(t.evaluate(data, 4), std::out_of_range);
  data.labels[25] = 1;
  REQUIRE_NOTHROW(t.train_step(data.images, data.labels));  // still usable
}
