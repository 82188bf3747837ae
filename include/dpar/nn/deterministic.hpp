#pragma once
// Reproducible training: data_parallel_trainer(dpar::deterministic(policy), ...)
// runs on the replicas of `policy` (seq, par, par.on(pool), mpi(comm, inner)),
// wrapped in a deterministic_group whose sum_parts is the correctly rounded sum
// of all replicas' parts. The trainer then cuts every batch into micro-batches
// of train_options::micro_batch samples at fixed positions, computes each
// one's gradient alone (the same GEMM shapes whoever owns it), and sums them
// with sum_parts: the same bits for any number of replicas, threads or ranks.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "../deterministic.hpp"
#include "replica_group.hpp"

namespace dpar::nn {

// Another group's replicas and collectives, with sum_parts made exact: every
// replica's parts go into their slots of a buffer of all parts (zeros
// elsewhere), one all-reduce of the inner group fills in every slot (x plus
// zeros is x, whatever the grouping), and every replica sums the slots exactly
// (dpar::deterministic's K-buffer kernel) and rounds once.
class deterministic_group final : public replica_group {
 public:
  explicit deterministic_group(std::unique_ptr<replica_group> inner)
      : replica_group(inner->size(), inner->local_size(), inner->first(), inner->process_rank()),
        inner_(std::move(inner)),
        floats_(local_size()),
        doubles_(local_size()) {}

  int process_of(std::size_t g) const override { return inner_->process_of(g); }
  void run(const std::function<void(std::size_t)>& f) override { inner_->run(f); }
  void all_reduce(std::size_t local, std::span<float> data) override { inner_->all_reduce(local, data); }
  void all_reduce(std::size_t local, std::span<double> data) override { inner_->all_reduce(local, data); }
  void all_reduce(std::size_t local, std::span<std::uint64_t> data) override { inner_->all_reduce(local, data); }
  void broadcast(std::size_t local, std::span<std::byte> data, std::size_t root) override {
    inner_->broadcast(local, data, root);
  }
  void barrier(std::size_t local) override { inner_->barrier(local); }

  void sum_parts(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                 std::span<float> out) override {
    exact_sum_of_parts(local, mine, first, total, out, floats_[local]);
  }
  void sum_parts(std::size_t local, std::span<const double* const> mine, std::size_t first, std::size_t total,
                 std::span<double> out) override {
    exact_sum_of_parts(local, mine, first, total, out, doubles_[local]);
  }
  bool sums_exactly() const noexcept override { return true; }

 private:
  template <class T>
  void exact_sum_of_parts(std::size_t local, std::span<const T* const> mine, std::size_t first, std::size_t total,
                          std::span<T> out, std::vector<T>& slots) {
    const std::size_t n = out.size();
    slots.assign(total * n, T(0));
    for (std::size_t j = 0; j < mine.size(); ++j) {
      // + 0 makes -0 into +0, as the all-reduce would where another replica adds a zero: the same on any count.
      T* slot = slots.data() + (first + j) * n;
      for (std::size_t i = 0; i < n; ++i) slot[i] = mine[j][i] + T(0);
    }
    inner_->all_reduce(local, std::span<T>(slots));
    if (total == 0) return std::fill(out.begin(), out.end(), T(0));
    auto column = [&](std::size_t p) -> const T* { return slots.data() + p * n; };
    dpar::detail::deterministic::exact_sum scratch;
    dpar::detail::deterministic::exact_columns<T>(total, column, out.data(), 0, n, scratch);
  }

  std::unique_ptr<replica_group> inner_;
  std::vector<std::vector<float>> floats_;  // each local replica's slots, kept between steps
  std::vector<std::vector<double>> doubles_;
};

template <class Inner>
struct replica_group_for<deterministic_policy<Inner>> {
  static std::unique_ptr<replica_group> make(const deterministic_policy<Inner>& p) {
    return std::make_unique<deterministic_group>(make_replica_group(p.inner()));
  }
};

}  // namespace dpar::nn
