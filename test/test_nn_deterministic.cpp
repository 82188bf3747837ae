// Reproducible training: data_parallel_trainer(dpar::deterministic(policy))
// gives the same bits (parameters, losses, correct counts after every step,
// evaluate totals) on seq and pools of 1 to 4 replicas, and a checkpoint
// resumes on another replica count bitwise. Label cpu: runs under TSan and
// ASan too. Over MPI ranks: test_nn_mpi.cpp.
#include <dpar/nn.hpp>

#include <catch2/catch.hpp>
#include <unistd.h>

#include <bit>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nn_test_problem.hpp"

using namespace nn_test;

namespace {

struct trace {
  std::vector<std::vector<float>> params;  // after every step
  std::vector<std::uint64_t> losses;       // the loss sums' bits
  std::vector<std::size_t> correct;
  std::uint64_t eval_loss = 0;
  std::size_t eval_correct = 0;
  bool operator==(const trace&) const = default;
};

// 30 steps, then evaluate; threads 0: dpar::seq, else a pool of that many.
trace train(std::size_t threads, std::uint64_t seed = 9) {
  dpar::thread_pool pool(threads == 0 ? 1 : threads);
  auto o = options(128);
  o.seed = seed;
  o.micro_batch = 32;  // 4 parts (32, 32, 32, 8 in the short batch): 3 replicas own 1, 1 and 2
  auto t = threads == 0 ? nn::data_parallel_trainer(dpar::deterministic(dpar::seq), fashion_model(), o)
                        : nn::data_parallel_trainer(dpar::deterministic(dpar::par.on(pool)), fashion_model(), o);
  REQUIRE(t.replicas() == (threads == 0 ? 1 : threads));
  trace r;
  const auto& data = fashion_shaped();
  for (std::size_t s = 0; s < 30; ++s) {
    auto [x, y] = batch_of(data, 128, s + seed);
    auto step = t.train_step(x, y);
    REQUIRE(step.samples == y.size());
    r.params.push_back(params(t));
    r.losses.push_back(std::bit_cast<std::uint64_t>(step.loss_sum));
    r.correct.push_back(step.correct);
  }
  auto e = t.evaluate(data, 96);
  r.eval_loss = std::bit_cast<std::uint64_t>(e.loss_sum);
  r.eval_correct = e.correct;
  return r;
}

}  // namespace

TEST_CASE("deterministic trainer: seq and 1, 2, 3, 4 replicas give the same bits after every step",
          "[nn][deterministic]") {
  const trace one = train(0);
  REQUIRE(one.params.front() != one.params.back());  // it trains
  REQUIRE(one.correct.back() > one.correct.front());
  for (std::size_t threads : {1, 2, 3, 4}) {
    INFO(threads << " replicas");
    const trace many = train(threads);
    for (std::size_t s = 0; s < one.params.size(); ++s) {
      INFO("step " << s);
      REQUIRE(many.losses[s] == one.losses[s]);
      REQUIRE(many.correct[s] == one.correct[s]);
      REQUIRE(many.params[s] == one.params[s]);
    }
    REQUIRE(many.eval_loss == one.eval_loss);
    REQUIRE(many.eval_correct == one.eval_correct);
  }
  REQUIRE(train(2, 10).params.back() != one.params.back());  // the comparison can fail: another data order differs
}

TEST_CASE("deterministic trainer: epochs and a checkpoint resumed on another replica count continue bitwise",
          "[nn][deterministic]") {
  // 300 samples in batches of 128: a last batch of 44 (micro-batches 32 + 12).
  auto data = blobs(300, 12, 5, 11);
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_det_" + std::to_string(::getpid()))).string();
  dpar::thread_pool two(2), three(3), four(4);
  auto o = options(128);
  o.micro_batch = 16;
  nn::data_parallel_trainer straight(dpar::deterministic(dpar::par.on(two)), model(), o);
  std::vector<nn::step_result> epochs;
  for (int e = 0; e < 3; ++e) epochs.push_back(straight.train_epoch(data));
  auto evaluated = straight.evaluate(data, 7);

  nn::data_parallel_trainer first(dpar::deterministic(dpar::par.on(three)), model(), o);
  auto e0 = first.train_epoch(data);
  REQUIRE(std::bit_cast<std::uint64_t>(e0.loss_sum) == std::bit_cast<std::uint64_t>(epochs[0].loss_sum));
  REQUIRE(e0.correct == epochs[0].correct);
  first.save(file);
  for (auto resume_on : {std::size_t{0}, std::size_t{4}}) {
    INFO("resumed on " << resume_on << " threads (0: seq)");
    auto t = resume_on == 0 ? nn::data_parallel_trainer(dpar::deterministic(dpar::seq), model(), o)
                            : nn::data_parallel_trainer(dpar::deterministic(dpar::par.on(four)), model(), o);
    t.resume(file);
    for (int e = 1; e < 3; ++e) {
      auto r = t.train_epoch(data);
      REQUIRE(std::bit_cast<std::uint64_t>(r.loss_sum) == std::bit_cast<std::uint64_t>(epochs[e].loss_sum));
      REQUIRE(r.correct == epochs[e].correct);
    }
    REQUIRE(t.steps() == straight.steps());
    REQUIRE(params(t) == params(straight));
    auto ev = t.evaluate(data, 7);
    REQUIRE(std::bit_cast<std::uint64_t>(ev.loss_sum) == std::bit_cast<std::uint64_t>(evaluated.loss_sum));
    REQUIRE(ev.correct == evaluated.correct);
  }
  std::filesystem::remove(file);
}

TEST_CASE("deterministic trainer: a user loss of tensor targets gives the same bits on seq and 1, 2, 3 replicas",
          "[nn][deterministic][targets]") {
  // 100 samples in batches of 40 (a last one of 20), micro-batches of 8:
  // 3 replicas own 2, 2 and 1 parts of the full batches.
  const auto data = waves(100, 12);
  auto o = options(40);
  o.micro_batch = 8;
  o.loss = user_huber{};
  auto run = [&](std::size_t threads) {
    dpar::thread_pool pool(threads == 0 ? 1 : threads);
    auto t = threads == 0 ? nn::data_parallel_trainer(dpar::deterministic(dpar::seq), waves_model(), o)
                          : nn::data_parallel_trainer(dpar::deterministic(dpar::par.on(pool)), waves_model(), o);
    std::vector<std::uint64_t> losses;
    for (int e = 0; e < 2; ++e) losses.push_back(std::bit_cast<std::uint64_t>(t.train_epoch(data).loss_sum));
    losses.push_back(std::bit_cast<std::uint64_t>(t.train_step(data.inputs.rows_view(3, 37), data.targets.rows_view(3, 37)).loss_sum));
    losses.push_back(std::bit_cast<std::uint64_t>(t.evaluate(data, 9).loss_sum));
    return std::pair{losses, params(t)};
  };
  const auto one = run(0);
  REQUIRE(one.second != params(nn::data_parallel_trainer(dpar::seq, waves_model(), o)));  // it trains
  for (std::size_t threads : {1, 2, 3}) {
    INFO(threads << " replicas");
    const auto many = run(threads);
    REQUIRE(many.first == one.first);
    REQUIRE(many.second == one.second);
  }
}

TEST_CASE("deterministic trainer: AdamW with clipping gives the same bits on 1, 3 replicas and resumes on 2",
          "[nn][deterministic][adamw]") {
  auto data = blobs(200, 12, 5, 14);
  auto o = options(64);
  o.micro_batch = 16;
  o.adamw = nn::adamw_options{};
  o.clip_norm = 0.5f;  // below the gradients' norm here: every step clips
  o.schedule = nn::lr_schedule::constant(0.01f);
  std::string file = (std::filesystem::temp_directory_path() / ("dpar_nn_adamw_" + std::to_string(::getpid()))).string();
  dpar::thread_pool two(2), three(3);
  nn::data_parallel_trainer one(dpar::deterministic(dpar::seq), model(), o);
  nn::data_parallel_trainer on3(dpar::deterministic(dpar::par.on(three)), model(), o);
  for (int e = 0; e < 2; ++e) {
    auto a = one.train_epoch(data), b = on3.train_epoch(data);
    REQUIRE(std::bit_cast<std::uint64_t>(a.loss_sum) == std::bit_cast<std::uint64_t>(b.loss_sum));
    REQUIRE(params(on3) == params(one));
  }
  auto unclipped = o;
  unclipped.clip_norm = 0;
  nn::data_parallel_trainer free(dpar::deterministic(dpar::seq), model(), unclipped);
  free.train_epoch(data);
  free.train_epoch(data);
  REQUIRE(params(free) != params(one));  // the clipping took effect
  on3.save(file);  // the moments were updated in 3 slices: saving gathers them
  nn::data_parallel_trainer on2(dpar::deterministic(dpar::par.on(two)), model(), o);
  on2.resume(file);
  one.train_epoch(data);
  on2.train_epoch(data);
  REQUIRE(params(on2) == params(one));  // moments and update count (bias correction) continued
  // An SGD run's checkpoint has another optimizer state: refused.
  auto sgd_options = options(64);
  nn::data_parallel_trainer sgd(dpar::seq, model(), sgd_options);
  sgd.save(file);
  REQUIRE_THROWS_WITH(on2.resume(file), Catch::Contains("written with another optimizer"));
  std::filesystem::remove(file);
}

TEST_CASE("deterministic trainer: parts are summed exactly whichever replica holds them", "[nn][deterministic]") {
  // Three parts whose sum in any order but the exact one loses the 1.
  const float parts[3][3] = {{1e20f, -0.0f, -0.0f}, {1.0f, -0.0f, 0.0f}, {-1e20f, -0.0f, -0.0f}};
  for (std::size_t k : {1, 2, 3}) {
    INFO(k << " replicas");
    dpar::thread_pool pool(k);
    auto group = nn::make_replica_group(dpar::deterministic(dpar::par.on(pool)));
    REQUIRE(group->sums_exactly());
    std::vector<std::vector<float>> out(k, std::vector<float>(3, 7.0f));
    group->run([&](std::size_t local) {
      std::size_t first = 3 * local / k, last = 3 * (local + 1) / k;
      std::vector<const float*> mine;
      for (std::size_t p = first; p < last; ++p) mine.push_back(parts[p]);
      group->sum_parts(local, mine, first, 3, std::span<float>(out[local]));
    });
    for (const auto& o : out) {
      REQUIRE(o[0] == 1.0f);
      REQUIRE(std::bit_cast<std::uint32_t>(o[1]) == 0x80000000u);  // as the exact sum: -0 only if every term is
      REQUIRE(std::bit_cast<std::uint32_t>(o[2]) == 0u);
    }
  }
}

TEST_CASE("deterministic trainer: a zero micro-batch size is refused", "[nn][deterministic]") {
  auto o = options(128);
  o.micro_batch = 0;
  REQUIRE_THROWS_WITH(nn::data_parallel_trainer(dpar::deterministic(dpar::seq), model(), o),
                      Catch::Contains("micro-batch"));
}
