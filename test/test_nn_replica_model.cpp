// The seam GPU replicas plug into, exercised on the CPU: a replica group that
// makes its own replica models (replica_group::make_model), as dpar::gpu and
// dpar::multi_gpu groups do. Checks how the trainer drives them: each replica
// gathers its shard (n*g/k .. n*(g+1)/k) into the model's own input buffer,
// the gradient all-reduce gets the model's gradient buffer, the host mirror is
// pushed after the initial broadcast and after resume and pulled before
// model(), save and the lockstep check; and the results equal the plain
// thread replicas' bit for bit.
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

  nn::tensor& input_buffer(std::size_t rows, std::size_t cols) override {
    auto& t = inner_.input_buffer(rows, cols);
    buffer = t.data();
    return t;
  }
  nn::shard_totals compute_gradients(const nn::tensor& x, std::span<const std::int32_t> labels,
                                     std::size_t total) override {
    shard_rows.push_back(x.rows());
    gathered_in_buffer.push_back(x.data() == buffer);
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
  std::vector<bool> gathered_in_buffer;
  const float* buffer = nullptr;
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
    threads_.all_reduce(local, data);
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
  // each gathered into the replica model's own buffer, the loss scaled by the global batch.
  for (std::size_t r = 0; r < k; ++r) {
    auto& m = *g->models[r];
    std::size_t before = r == 2 ? 0 : 1;  // replica 2 had nothing of the 2-sample step
    REQUIRE(m.shard_rows.size() == before + 11);
    for (std::size_t j = 0; j < 11; ++j) {
      std::size_t s = before + j, n = j < 10 ? 10 : 7;
      REQUIRE(m.shard_rows[s] == n / k + (r < n % k ? 1 : 0));
      REQUIRE(m.totals[s] == n);
      REQUIRE(m.gathered_in_buffer[s]);
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
