#pragma once
// Reproducible training: data_parallel_trainer(dpar::deterministic(policy), ...)
// runs on the replicas of `policy` (seq, par, par.on(pool), mpi(comm, inner),
// gpu, multi_gpu({...})), wrapped in a deterministic_group whose sum_parts is
// the correctly rounded sum of all replicas' parts. The trainer then cuts
// every batch into micro-batches of train_options::micro_batch samples at
// fixed positions, computes each one's gradient alone (the same GEMM shapes
// whoever owns it), and sums them with sum_parts: the same bits for any
// number of replicas, threads or ranks.
// Device replicas compute on their devices; their gradient parts are summed
// exactly on the host (staged through copy_gradients), as dpar::deterministic's
// device sums are.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "../detail/deterministic/backend.hpp"  // exact_columns
#include "../deterministic.hpp"
#include "../partition.hpp"
#include "replica_group.hpp"

namespace dpar::nn {

// Another group's replicas and collectives, with sum_parts made exact: the
// correctly rounded sum of all parts (dpar::deterministic's K-buffer kernel),
// which is the same bits however the parts are spread.
//   - Replicas of one process: each publishes its parts, and each sums a slice
//     of the elements over all of them into a shared result that all copy.
//   - Over MPI: every replica's parts go into their slots of a buffer of all
//     parts (-0 elsewhere), one all-reduce of the inner group fills in every
//     slot (x plus -0s is x, whatever the grouping), and every replica sums
//     the slots. (Over device replicas, whose float all-reduce takes device
//     buffers, float slots travel as doubles: exact both ways.)
// Everything else is the inner group's (forwarding_group).
class deterministic_group final : public forwarding_group {
 public:
  explicit deterministic_group(std::unique_ptr<replica_group> inner)
      : forwarding_group(std::move(inner)), floats_(local_size()), doubles_(local_size()), staged_(local_size()) {}

  // Device replicas: the part still in the model's device buffer (the others
  // are host copies already) goes to the host, the exact sum is taken there
  // and copied back, and the update runs on the device.
  void sum_and_update(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                      replica_model& model, float lr, float max_norm) override {
    if (!device_replicas()) return replica_group::sum_and_update(local, mine, first, total, model, lr, max_norm);
    std::span<float> grads = model.gradients();
    std::vector<float>& host = staged_[local];
    host.resize(grads.size());
    std::vector<const float*> parts(mine.begin(), mine.end());
    for (const float*& part : parts)
      if (part == grads.data()) {
        copy_gradients(local, grads, host);
        part = host.data();
      }
    sum_parts(local, parts, first, total, std::span<float>(host));
    if (max_norm > 0) scale(host, clip_scale(max_norm, squares(host)));
    copy_gradients(local, host, grads);
    model.update(lr);
  }

  void sum_parts(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                 std::span<float> out) override {
    exact_sum_of_parts(local, mine, first, total, out, floats_);
  }
  void sum_parts(std::size_t local, std::span<const double* const> mine, std::size_t first, std::size_t total,
                 std::span<double> out) override {
    exact_sum_of_parts(local, mine, first, total, out, doubles_);
  }
  bool sums_exactly() const noexcept override { return true; }

 private:
  template <class T>
  struct shared {
    std::vector<std::span<const T* const>> published;  // each local replica's parts, during a call
    std::vector<std::vector<T>> slots;                  // each local replica's, over MPI
    std::vector<T> result;                              // one process: the sum, sliced over the replicas
    explicit shared(std::size_t replicas) : published(replicas), slots(replicas) {}
  };

  // out[lo, hi) = the correctly rounded sum of the columns (out may be one of them).
  template <class T>
  static void exact_columns(std::span<const T* const> columns, T* out, std::size_t lo, std::size_t hi) {
    if (columns.empty()) return std::fill(out + lo, out + hi, T(0));
    auto column = [&](std::size_t p) { return columns[p]; };
    dpar::detail::deterministic::exact_sum scratch;
    dpar::detail::deterministic::exact_columns<T>(columns.size(), column, out, lo, hi, scratch);
  }

  template <class T>
  void exact_sum_of_parts(std::size_t local, std::span<const T* const> mine, std::size_t first, std::size_t total,
                          std::span<T> out, shared<T>& state) {
    const std::size_t n = out.size(), k = local_size();
    if (size() == 1) return exact_columns<T>(mine, out.data(), 0, n);
    if (size() == k) {  // one process: read the others' parts in place
      state.published[local] = mine;
      inner().barrier(local);
      if (local == 0) state.result.resize(n);
      inner().barrier(local);
      std::vector<const T*> columns;
      for (auto parts : state.published) columns.insert(columns.end(), parts.begin(), parts.end());
      exact_columns<T>(columns, state.result.data(), even_split_begin(n, k, local), even_split_begin(n, k, local + 1));
      inner().barrier(local);
      std::copy(state.result.begin(), state.result.end(), out.begin());
      inner().barrier(local);  // the parts and the result stay until every replica is done with them
      return;
    }
    auto& slots = state.slots[local];
    slots.assign(total * n, T(-0.0));  // x + -0 is x, -0 included: the slots arrive with their signs of zero
    for (std::size_t j = 0; j < mine.size(); ++j) std::copy(mine[j], mine[j] + n, slots.data() + (first + j) * n);
    if (std::is_same_v<T, float> && device_replicas()) {
      std::vector<double> wide(slots.begin(), slots.end());
      inner().all_reduce(local, std::span<double>(wide));
      std::copy(wide.begin(), wide.end(), slots.begin());
    } else {
      inner().all_reduce(local, std::span<T>(slots));
    }
    std::vector<const T*> columns(total);
    for (std::size_t p = 0; p < total; ++p) columns[p] = slots.data() + p * n;
    exact_columns<T>(columns, out.data(), 0, n);
  }

  shared<float> floats_;
  shared<double> doubles_;
  std::vector<std::vector<float>> staged_;  // each local device replica's gradient sum on the host
};

template <class Inner>
struct replica_group_for<deterministic_policy<Inner>> {
  static std::unique_ptr<replica_group> make(const deterministic_policy<Inner>& p) {
    return std::make_unique<deterministic_group>(make_replica_group(p.inner()));
  }
};

}  // namespace dpar::nn
