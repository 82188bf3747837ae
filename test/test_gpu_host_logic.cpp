// The host-side logic of the GPU backends, tested without a GPU (label cpu):
// which device a device tensor's memory is on (detail/cuda/placement.hpp),
// the NCCL plan of the device all_reduce (detail/multi_gpu/nccl_plan.hpp:
// when NCCL may take a call, which communicator set, which rank per entry),
// and deterministic training over device replicas (nn/deterministic.hpp): the
// wrapper keeps the inner group's replicas and stages their gradients through
// copy_gradients, with the bits of deterministic(seq). The device side of each
// is in the .cu tests.
#include <dpar/detail/cuda/placement.hpp>
#include <dpar/detail/multi_gpu/nccl_plan.hpp>
#include <dpar/nn.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
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
