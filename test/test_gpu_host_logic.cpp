// The host-side logic of the GPU backends, tested without a GPU (label cpu):
// which device a device tensor's memory is on (detail/cuda/placement.hpp),
// the NCCL plan of the device all_reduce (detail/multi_gpu/nccl_plan.hpp:
// when NCCL may take a call, which communicator set, which rank per entry),
// and deterministic training over device replicas (nn/deterministic.hpp): the
// wrapper keeps the inner group's replicas and stages their gradients through
// copy_gradients, with the bits of deterministic(seq), and how multi_gpu
// combines per-shard results (detail/shard_combine.hpp: the first match and
// the extremes over the shards, where compacted and partitioned elements go,
// the carries of scans by key). The device side of each is in
// the .cu tests.
#include <dpar/detail/cuda/placement.hpp>
#include <dpar/detail/multi_gpu/nccl_plan.hpp>
#include <dpar/detail/shard_combine.hpp>
#include <dpar/nn.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn_test_problem.hpp"

namespace {

namespace nn = dpar::nn;
using dpar::detail::cuda::tensor_device;
namespace mg = dpar::detail::multi_gpu;

// A thread_group whose replicas say they compute on devices: the wrapper must
// ask it for the replicas and copy their gradients through it.
class pretend_device_group final : public nn_test::forwarding_group {
 public:
  using forwarding_group::forwarding_group;
  std::unique_ptr<nn::replica_model> make_model(std::size_t local, const nn::sequential& model,
                                                const nn::replica_options& options) override {
    ++models;
    return inner().make_model(local, model, options);
  }
  bool device_replicas() const noexcept override { return true; }
  void copy_gradients(std::size_t local, std::span<const float> from, std::span<float> to) override {
    ++copies;
    inner().copy_gradients(local, from, to);
  }

  std::atomic<int> models{0}, copies{0};
};

std::vector<float> train_steps(nn::data_parallel_trainer& t, std::size_t steps) {
  const auto& data = nn_test::fashion_shaped();
  for (std::size_t s = 0; s < steps; ++s) {
    auto [x, y] = nn_test::batch_of(data, 96, s);
    t.train_step(x, y);
  }
  return nn_test::params(t);
}

}  // namespace

TEST_CASE("gpu host logic: the first match over shards is the first shard's that has one", "[gpu-host][shards]") {
  using dpar::detail::shards::first_match;
  const std::vector<std::size_t> sizes = {3, 0, 4, 2};
  // shard 0 has none (its size), shard 1 is empty, shard 2 matches at 1, shard 3 at 0
  CHECK(first_match(std::vector<std::size_t>{3, 0, 1, 0}, sizes) == 4);
  CHECK(first_match(std::vector<std::size_t>{2, 0, 1, 0}, sizes) == 2);
  CHECK(first_match(std::vector<std::size_t>{3, 0, 4, 1}, sizes) == 8);
  CHECK(first_match(std::vector<std::size_t>{3, 0, 4, 2}, sizes) == 9);  // none: the total
  CHECK(first_match(std::vector<std::size_t>{}, std::vector<std::size_t>{}) == 0);
}

TEST_CASE("gpu host logic: a shard's first element follows the last of the nearest earlier shard holding any",
          "[gpu-host][shards]") {
  using dpar::detail::shards::previous_nonempty;
  using opt = std::optional<std::size_t>;
  CHECK(previous_nonempty(std::vector<std::size_t>{0, 3, 0, 0, 2, 1, 0}) ==
        std::vector<opt>{std::nullopt, std::nullopt, std::nullopt, std::nullopt, opt(1), opt(4), std::nullopt});
  CHECK(previous_nonempty(std::vector<std::size_t>{}).empty());
}

TEST_CASE("gpu host logic: packing pieces put every shard's kept elements at the front, in shard order",
          "[gpu-host][shards]") {
  using dpar::detail::shards::packing_pieces;
  using dpar::detail::shards::piece;
  // kept 2, 0, 3, 1 into shards of 3, 0, 2, 4: global [0,2) [2,5) [5,6)
  CHECK(packing_pieces(std::vector<std::size_t>{2, 0, 3, 1}, std::vector<std::size_t>{3, 0, 2, 4}) ==
        std::vector<piece>{{0, 0, 0, 0, 2}, {2, 0, 0, 2, 1}, {2, 1, 2, 0, 2}, {3, 0, 3, 0, 1}});
  CHECK(packing_pieces(std::vector<std::size_t>{0, 0}, std::vector<std::size_t>{0, 5}).empty());

  // Random layouts (as multi_gpu's: each shard keeps at most its size): the
  // pieces, applied to shards of data, give std::copy_if's result.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t k = 1 + rng() % 6;
    std::vector<std::vector<int>> in(k), out(k);
    std::vector<std::size_t> counts(k), sizes(k);
    std::vector<int> all, want;
    int next = 0;
    for (std::size_t s = 0; s < k; ++s) {
      sizes[s] = rng() % 3 == 0 ? 0 : rng() % 9;
      for (std::size_t i = 0; i < sizes[s]; ++i) in[s].push_back(next++);
      out[s].assign(sizes[s], -1);
    }
    auto keep = [&](int x) { return (x * 2654435761u >> 7) % 3 != 0; };
    std::vector<std::vector<int>> kept(k);
    for (std::size_t s = 0; s < k; ++s) {
      std::copy_if(in[s].begin(), in[s].end(), std::back_inserter(kept[s]), keep);
      counts[s] = kept[s].size();
      std::copy_if(in[s].begin(), in[s].end(), std::back_inserter(want), keep);
    }
    for (const piece& c : packing_pieces(counts, sizes)) {
      REQUIRE(c.count > 0);
      REQUIRE(c.from_at + c.count <= counts[c.from]);
      REQUIRE(c.to_at + c.count <= sizes[c.to]);
      std::copy_n(kept[c.from].begin() + static_cast<std::ptrdiff_t>(c.from_at), c.count,
                  out[c.to].begin() + static_cast<std::ptrdiff_t>(c.to_at));
    }
    for (const auto& shard : out) all.insert(all.end(), shard.begin(), shard.end());
    want.resize(all.size(), -1);
    CHECK(all == want);
  }
}

// Random shard layouts for the tests below: sizes 0 (often), 1, and up to 13
// (primes among them).
static std::vector<std::size_t> random_sizes(std::mt19937& rng) {
  std::vector<std::size_t> sizes(1 + rng() % 6);
  for (auto& n : sizes) n = rng() % 3 == 0 ? 0 : rng() % 4 == 0 ? 1 : rng() % 14;
  return sizes;
}

TEST_CASE("gpu host logic: a shard's last element precedes the first of the nearest later shard holding any",
          "[gpu-host][shards]") {
  using dpar::detail::shards::next_nonempty;
  using opt = std::optional<std::size_t>;
  CHECK(next_nonempty(std::vector<std::size_t>{0, 3, 0, 0, 2, 1, 0}) ==
        std::vector<opt>{std::nullopt, opt(4), std::nullopt, std::nullopt, opt(5), std::nullopt, std::nullopt});
  CHECK(next_nonempty(std::vector<std::size_t>{}).empty());
}

TEST_CASE("gpu host logic: packing from a start position gives std::stable_partition across shards",
          "[gpu-host][shards]") {
  using dpar::detail::shards::packing_pieces;
  using dpar::detail::shards::piece;
  // 2 kept after position 4 of shards 3, 0, 2, 4: shard 2 at 1, shard 3 at 0
  CHECK(packing_pieces(std::vector<std::size_t>{0, 2}, std::vector<std::size_t>{3, 0, 2, 4}, 4) ==
        std::vector<piece>{{1, 0, 2, 1, 1}, {1, 1, 3, 0, 1}});
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const auto sizes = random_sizes(rng);
    const std::size_t k = sizes.size();
    std::vector<std::vector<int>> in(k), yes(k), no(k), out(k);
    std::vector<int> all;
    for (std::size_t s = 0; s < k; ++s) {
      for (std::size_t i = 0; i < sizes[s]; ++i) in[s].push_back(static_cast<int>(rng() % 100));
      all.insert(all.end(), in[s].begin(), in[s].end());
      out[s].assign(sizes[s], -1);
    }
    auto odd = [](int x) { return x % 2 != 0; };
    std::vector<std::size_t> yes_counts(k), no_counts(k);
    for (std::size_t s = 0; s < k; ++s) {
      std::partition_copy(in[s].begin(), in[s].end(), std::back_inserter(yes[s]), std::back_inserter(no[s]), odd);
      yes_counts[s] = yes[s].size();
      no_counts[s] = no[s].size();
    }
    std::size_t kept = 0;
    for (std::size_t c : yes_counts) kept += c;
    auto apply = [&](const std::vector<std::vector<int>>& from, const std::vector<piece>& pieces) {
      for (const piece& c : pieces) {
        REQUIRE(c.count > 0);
        REQUIRE(c.to_at + c.count <= sizes[c.to]);
        std::copy_n(from[c.from].begin() + static_cast<std::ptrdiff_t>(c.from_at), c.count,
                    out[c.to].begin() + static_cast<std::ptrdiff_t>(c.to_at));
      }
    };
    apply(yes, packing_pieces(yes_counts, sizes));
    apply(no, packing_pieces(no_counts, sizes, kept));
    std::vector<int> got;
    for (const auto& shard : out) got.insert(got.end(), shard.begin(), shard.end());
    std::stable_partition(all.begin(), all.end(), odd);
    CHECK(got == all);
  }
}

TEST_CASE("gpu host logic: the extremes over shards are std's (first smallest, first largest, last largest)",
          "[gpu-host][shards]") {
  using dpar::detail::shards::extreme_position;
  std::mt19937 rng(5);
  auto less = std::less<>{};
  auto by_magnitude = [](int a, int b) { return std::abs(a) < std::abs(b); };  // ties between different values
  for (int trial = 0; trial < 300; ++trial) {
    const auto sizes = random_sizes(rng);
    const std::size_t k = sizes.size();
    std::vector<std::vector<int>> shard(k);
    std::vector<int> all;
    for (std::size_t s = 0; s < k; ++s) {
      for (std::size_t i = 0; i < sizes[s]; ++i) shard[s].push_back(static_cast<int>(rng() % 7) - 3);
      all.insert(all.end(), shard[s].begin(), shard[s].end());
    }
    auto check = [&](const auto& comp) {
      // each shard's own extreme, as multi_gpu's per-shard reduction finds it
      auto global = [&](auto local_of, bool largest, bool last) {
        std::vector<std::size_t> local(k);
        std::vector<int> values(k);
        for (std::size_t s = 0; s < k; ++s) {
          if (sizes[s] == 0) continue;
          local[s] = static_cast<std::size_t>(local_of(shard[s].begin(), shard[s].end()) - shard[s].begin());
          values[s] = shard[s][local[s]];
        }
        return extreme_position<int>(local, values, sizes, comp, largest, last);
      };
      auto at = [&](auto it) { return static_cast<std::size_t>(it - all.begin()); };
      CHECK(global([&](auto f, auto l) { return std::min_element(f, l, comp); }, false, false) ==
            at(std::min_element(all.begin(), all.end(), comp)));
      CHECK(global([&](auto f, auto l) { return std::max_element(f, l, comp); }, true, false) ==
            at(std::max_element(all.begin(), all.end(), comp)));
      CHECK(global([&](auto f, auto l) { return std::minmax_element(f, l, comp).second; }, true, true) ==
            at(std::minmax_element(all.begin(), all.end(), comp).second));
    };
    check(less);
    check(by_magnitude);
  }
}

TEST_CASE("gpu host logic: scan by key carries across shards, op on the left, give the whole scan",
          "[gpu-host][shards]") {
  using dpar::detail::shards::segment_carries;
  // string concatenation: associative, not commutative
  auto cat = [](const std::string& a, const std::string& b) { return a + b; };
  std::mt19937 rng(3);
  for (int trial = 0; trial < 400; ++trial) {
    const auto sizes = random_sizes(rng);
    const std::size_t k = sizes.size();
    const int distinct = 1 + static_cast<int>(rng() % 3);  // few keys: long runs, whole shards in one
    std::vector<std::vector<int>> keys(k);
    std::vector<std::vector<std::string>> values(k);
    std::vector<int> all_keys;
    std::vector<std::string> all_values;
    for (std::size_t s = 0; s < k; ++s)
      for (std::size_t i = 0; i < sizes[s]; ++i) {
        const int repeat = all_keys.empty() ? 0 : all_keys.back();
        keys[s].push_back(rng() % 4 == 0 ? static_cast<int>(rng() % static_cast<unsigned>(distinct)) : repeat);
        values[s].push_back(std::string(1, static_cast<char>('a' + rng() % 26)));
        all_keys.push_back(keys[s].back());
        all_values.push_back(values[s].back());
      }
    // each shard scanned alone; its first global head, its last result
    std::vector<std::vector<std::string>> scanned(k);
    std::vector<std::size_t> head(k);
    std::vector<std::string> last(k);
    std::optional<int> previous_key;
    for (std::size_t s = 0; s < k; ++s) {
      head[s] = sizes[s];
      for (std::size_t i = 0; i < sizes[s]; ++i) {
        const bool starts = i == 0 ? !previous_key || *previous_key != keys[s][0] : keys[s][i - 1] != keys[s][i];
        if (starts && head[s] == sizes[s]) head[s] = i;
        scanned[s].push_back(i == 0 || keys[s][i - 1] != keys[s][i] ? values[s][i] : scanned[s].back() + values[s][i]);
      }
      if (sizes[s]) {
        last[s] = scanned[s].back();
        previous_key = keys[s].back();
      }
    }
    const auto carry = segment_carries<std::string>(head, sizes, last, cat);
    std::vector<std::string> got;
    for (std::size_t s = 0; s < k; ++s) {
      CHECK(carry[s].has_value() == (sizes[s] != 0 && head[s] != 0));
      for (std::size_t i = 0; i < sizes[s]; ++i)
        got.push_back(carry[s] && i < head[s] ? cat(*carry[s], scanned[s][i]) : scanned[s][i]);
    }
    std::vector<std::string> want;
    for (std::size_t i = 0; i < all_keys.size(); ++i)
      want.push_back(i == 0 || all_keys[i - 1] != all_keys[i] ? all_values[i] : want.back() + all_values[i]);
    CHECK(got == want);
  }
}

TEST_CASE("gpu host logic: a device tensor's memory is on its own device or the place's, never another",
          "[gpu-host]") {
  CHECK(tensor_device(1, 1, "t") == 1);
  CHECK(tensor_device(1, -1, "t") == 1);  // a plain resize stays on the tensor's device
  CHECK(tensor_device(-1, 3, "t") == 3);  // an unbound tensor binds to the place's device
  CHECK_THROWS_WITH(tensor_device(0, 1, "the gradient"),
                    Catch::Contains("the gradient is on device 0") && Catch::Contains("work is on device 1"));
  CHECK_THROWS_AS(tensor_device(0, 1, "t"), std::invalid_argument);
  CHECK_THROWS_AS(tensor_device(-1, -1, "t"), std::logic_error);
}

TEST_CASE("gpu host logic: NCCL communicators per sorted device set, ranks permuted per entry", "[gpu-host]") {
  auto a = mg::nccl_ranks_of({0, 1});
  auto b = mg::nccl_ranks_of({1, 0});
  CHECK(a.devices == b.devices);  // one communicator set for both orders
  CHECK(a.devices == std::vector<int>{0, 1});
  CHECK(a.rank_of == std::vector<std::size_t>{0, 1});
  CHECK(b.rank_of == std::vector<std::size_t>{1, 0});
  auto c = mg::nccl_ranks_of({5, 2, 7, 3});
  CHECK(c.devices == std::vector<int>{2, 3, 5, 7});
  CHECK(c.rank_of == std::vector<std::size_t>{2, 0, 3, 1});
  for (std::size_t r = 0; r < 4; ++r) CHECK(c.devices[c.rank_of[r]] == std::vector<int>{5, 2, 7, 3}[r]);
  CHECK_THROWS_WITH(mg::nccl_ranks_of({0, 1, 0}), Catch::Contains("listed twice"));
  CHECK(mg::distinct_devices({3, 1, 2}));
  CHECK(mg::distinct_devices({}));
  CHECK_FALSE(mg::distinct_devices({2, 1, 2}));
}

TEST_CASE("gpu host logic: float sums and products keep entry order unless the policy opts into NCCL's",
          "[gpu-host]") {
  STATIC_REQUIRE(mg::order_changes_bits<std::plus<>, float>);
  STATIC_REQUIRE(mg::order_changes_bits<std::plus<double>, double>);
  STATIC_REQUIRE(mg::order_changes_bits<std::multiplies<>, float>);
  STATIC_REQUIRE_FALSE(mg::order_changes_bits<dpar::minimum<>, float>);
  STATIC_REQUIRE_FALSE(mg::order_changes_bits<dpar::maximum<>, double>);
  STATIC_REQUIRE_FALSE(mg::order_changes_bits<std::plus<>, std::int64_t>);
  STATIC_REQUIRE_FALSE(mg::order_changes_bits<std::multiplies<>, int>);
}

TEST_CASE("gpu host logic: deterministic training over device replicas keeps them and stages their gradients",
          "[gpu-host][nn][deterministic]") {
  auto o = nn_test::options(96);
  o.micro_batch = 32;  // 3 parts: 2 replicas own 1 and 2
  auto want_trainer = nn::data_parallel_trainer(dpar::deterministic(dpar::seq), nn_test::fashion_model(), o);
  const auto want = train_steps(want_trainer, 4);
  dpar::thread_pool pool(2);
  auto inner = std::make_unique<pretend_device_group>(pool);
  auto* devices = inner.get();
  auto group = std::make_unique<nn::deterministic_group>(std::move(inner));
  CHECK(group->device_replicas());
  nn::data_parallel_trainer t(std::move(group), nn_test::fashion_model(), o);
  CHECK(devices->models == 2);  // the inner group's replicas, not host ones made by the wrapper
  CHECK(train_steps(t, 4) == want);
  // per step: replica 1 keeps its first part (1 copy); each replica stages its
  // model's part to the host and the sum back (2 copies each)
  CHECK(devices->copies == 4 * (1 + 2 * 2));
}
