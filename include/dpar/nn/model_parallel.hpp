#pragma once
// Data-model parallelism (Krizhevsky, "One weird trick for parallelizing
// convolutional neural networks", 2014): convolutions hold most of a CNN's
// computation and few of its weights, fully connected layers most of its
// weights and little computation. So the first stay data-parallel and a
// dense layer marked model_parallel(dense(in, out)) is split by output
// units: global replica g of K owns units dpar::even_split(out, K, g).
//
// Forward: the replicas' input rows are all-gathered (every replica then
// holds the global batch), each computes its units' outputs for all rows, and
// an all-to-all sends each replica its own rows of every slice. Backward:
// the output gradients travel back the same way (each owner gets its units'
// columns for all rows), the owner computes its slice's weight and bias
// gradients over the whole batch (complete: no all-reduce), and the input
// gradients' partial sums are reduce-scattered (an all-to-all, each replica
// adding the K blocks of its rows in replica order).
//
// Parameters. Each replica keeps the whole model's layout (the flat buffer
// of nn::sequential), so layout hash, checkpoints and model files are those
// of the same model with plain dense layers; a checkpoint moves freely
// between pure data-parallel and data-model runs and any replica count. But
// only a replica's own slice of a model-parallel layer is computed, summed
// and updated (with its optimizer state) there: the gradient all-reduce
// covers the other parameters only. The other slices go stale until
// gather_velocity (the trainer's save, synchronize and check_replicas)
// all-gathers them.
//
// model_parallel_group wraps the group of the trainer's policy when the model
// holds such a layer (with_model_parallel); a replica's forward then joins
// collectives, so every replica runs the same number of passes
// (lockstep_passes), empty ones included.
//
// Results equal pure data parallel up to float rounding (the split changes
// which GEMM computes each sum: a slice's weight gradient is one product over
// the global batch instead of per-shard products then summed). For the same
// reason there is no bitwise promise across replica counts, so the trainer
// refuses model-parallel layers under dpar::deterministic (nn/deterministic.hpp).
// Host (CPU) replicas only.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "layers.hpp"
#include "ops.hpp"
#include "replica_group.hpp"
#include "../partition.hpp"
#include "replica_model.hpp"
#include "tensor.hpp"

namespace dpar::nn {

// Global replica g's units of n over k replicas: the even split (partition.hpp).
inline std::pair<std::size_t, std::size_t> model_parallel_share(std::size_t n, std::size_t g, std::size_t k) {
  const index_range units = even_split(n, k, g);
  return {units.begin, units.end};
}

// What model_parallel_group needs of a layer whose parameters are split
// over the replicas (layer::as_replica_split): which of them each replica
// owns, the group to compute through, and what it sends. model_parallel_dense
// is one; another kind of split layer implements this and the group runs it.
class replica_split {
 public:
  virtual ~replica_split() = default;
  // Empty if the layer can be split over k replicas, else why not ("2 output
  // units, fewer than the 3 replicas it is split over").
  virtual std::string cannot_split(std::size_t k) const = 0;
  // The parameters global replica g of k owns, as ranges of the layer's own
  // [0, parameter_count()), in increasing order. Every parameter is owned by
  // one replica.
  virtual std::vector<std::pair<std::size_t, std::size_t>> owned(std::size_t g, std::size_t k) const = 0;
  // By the group, for the replica `local` whose model copy holds the layer:
  // the layer computes split through `group` while active() is true.
  virtual void attach(replica_group& group, std::size_t local, const std::function<bool()>& active) = 0;
  // The floats a replica sends per step for this layer, on a global batch of
  // n rows spread evenly over k replicas; first: the model's first layer.
  virtual double exchanged_values(std::size_t n, std::size_t k, bool first) const = 0;
};

// A dense layer split by output units over the replicas of a trainer. Out of
// a trainer (or outside its calls: predict on trainer.model()) it computes as
// the plain dense layer it wraps, from whole parameters.
class model_parallel_dense final : public layer, public replica_split {
 public:
  explicit model_parallel_dense(dense d) : dense_(std::move(d)) {}

  // The name of the dense layer: the same layout, so the same checkpoints.
  std::string name() const override { return dense_.name(); }
  std::size_t out_features(std::size_t in) const override { return dense_.out_features(in); }
  std::size_t parameter_count() const override { return dense_.parameter_count(); }
  std::size_t in() const noexcept { return dense_.in(); }
  std::size_t out() const noexcept { return dense_.out(); }
  void bind(float* params, float* grads) override {
    dense_.bind(params, grads);
    dw_ = grads;
  }
  void initialize(std::mt19937_64& rng) override { dense_.initialize(rng); }

  replica_split* as_replica_split() noexcept override { return this; }
  const replica_split* as_replica_split() const noexcept override { return this; }
  std::string cannot_split(std::size_t k) const override {
    if (out() >= k) return {};
    return std::to_string(out()) + " output units, fewer than the " + std::to_string(k) +
           " replicas it is split over";
  }
  // Its units' weight rows and biases.
  std::vector<std::pair<std::size_t, std::size_t>> owned(std::size_t g, std::size_t k) const override {
    const auto [lo, hi] = model_parallel_share(out(), g, k);
    const std::size_t biases = out() * in();
    return {{lo * in(), hi * in()}, {biases + lo, biases + hi}};
  }
  void attach(replica_group& group, std::size_t local, const std::function<bool()>& active) override {
    group_ = &group;
    local_ = local;
    active_ = active;
  }
  // All-gather of the inputs (its rows to the k - 1 others), all-to-all of
  // the outputs and again of their gradients (its slice of the others'
  // rows), reduce-scatter of the input gradients (the others' rows of its
  // partial sums; the first layer has none). The row counts (8 bytes per
  // replica and pass) are left out.
  double exchanged_values(std::size_t n, std::size_t k, bool first) const override {
    const double rows = static_cast<double>(n), others = static_cast<double>(k - 1) / static_cast<double>(k);
    const double in = static_cast<double>(this->in()), out = static_cast<double>(this->out());
    double values = rows * in * others + 2 * rows * out * others / static_cast<double>(k);
    if (!first) values += rows * in * others;
    return values;
  }

  void forward(const tensor& x, tensor& y) override {
    if (!split()) return dense_.forward(x, y);
    const std::size_t k = group_->size(), in = this->in(), out = this->out();
    const auto [lo, hi] = mine();
    const std::size_t w = hi - lo;
    gather_row_counts(x.rows());
    const std::size_t n = offsets_[k];
    // 1. All-gather the input rows, in replica order.
    x_all_.resize(n * in);
    send_.assign(k, std::span<const float>(x.data(), x.size()));
    for (std::size_t s = 0; s < k; ++s) recv_[s] = std::span<float>(x_all_.data() + offsets_[s] * in, rows_[s] * in);
    group_->exchange(local_, send_, recv_);
    // 2. This replica's units for every row.
    y_slice_.resize(n * w);
    ops::dense_forward_linear(host_place{}, x_all_.data(), n, in, w, dense_.weights() + lo * in, y_slice_.data());
    ops::bias_activate(host_place{}, y_slice_.data(), n, w, dense_.bias() + lo, ops::identity_fn{});
    // 3. Each replica's rows of every slice to it: block s is x.rows() x (units of s).
    blocks_.resize(x.rows() * out);
    for (std::size_t d = 0; d < k; ++d) send_[d] = std::span<const float>(y_slice_.data() + offsets_[d] * w, rows_[d] * w);
    for (std::size_t s = 0; s < k; ++s) {
      auto [slo, shi] = model_parallel_share(out, s, k);
      recv_[s] = std::span<float>(blocks_.data() + x.rows() * slo, x.rows() * (shi - slo));
    }
    group_->exchange(local_, send_, recv_);
    for (std::size_t s = 0; s < k; ++s) {
      auto [slo, shi] = model_parallel_share(out, s, k);
      const float* block = blocks_.data() + x.rows() * slo;
      for (std::size_t r = 0; r < x.rows(); ++r)
        std::copy(block + r * (shi - slo), block + (r + 1) * (shi - slo), y.row(r) + slo);
    }
  }

  // Uses the rows all-gathered by this replica's last forward, not x.
  void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) override {
    if (!split()) return dense_.backward(x, y, dy, dx);
    const std::size_t k = group_->size(), in = this->in(), out = this->out(), rows = dy.rows();
    const auto [lo, hi] = mine();
    const std::size_t w = hi - lo, n = offsets_[k];
    // 1. Each owner gets its units' columns of dy for every row.
    blocks_.resize(rows * out);
    for (std::size_t d = 0; d < k; ++d) {
      auto [dlo, dhi] = model_parallel_share(out, d, k);
      float* block = blocks_.data() + rows * dlo;
      for (std::size_t r = 0; r < rows; ++r) std::copy(dy.row(r) + dlo, dy.row(r) + dhi, block + r * (dhi - dlo));
      send_[d] = std::span<const float>(block, rows * (dhi - dlo));
    }
    dy_slice_.resize(n * w);
    for (std::size_t s = 0; s < k; ++s) recv_[s] = std::span<float>(dy_slice_.data() + offsets_[s] * w, rows_[s] * w);
    group_->exchange(local_, send_, recv_);
    // 2. The slice's gradients over the whole batch, and the partial input gradient.
    dx_all_.resize(dx ? n * in : 0);
    ops::dense_backward(host_place{}, x_all_.data(), dy_slice_.data(), n, in, w, dense_.weights() + lo * in,
                        dw_ + lo * in, dw_ + out * in + lo, dx ? dx_all_.data() : nullptr);
    if (!dx) return;  // the same layer on every replica: all skip alike
    // 3. Reduce-scatter the input gradients: replica d gets every replica's rows of d, adds them in order.
    dx_parts_.resize(k * rows * in);
    for (std::size_t d = 0; d < k; ++d) send_[d] = std::span<const float>(dx_all_.data() + offsets_[d] * in, rows_[d] * in);
    for (std::size_t s = 0; s < k; ++s) recv_[s] = std::span<float>(dx_parts_.data() + s * rows * in, rows * in);
    group_->exchange(local_, send_, recv_);
    std::copy(dx_parts_.begin(), dx_parts_.begin() + static_cast<std::ptrdiff_t>(rows * in), dx->data());
    for (std::size_t s = 1; s < k; ++s) {
      const float* part = dx_parts_.data() + s * rows * in;
      for (std::size_t i = 0; i < rows * in; ++i) dx->data()[i] += part[i];
    }
  }

  // A copy is not attached: only the trainer's replicas compute split.
  std::unique_ptr<layer> clone() const override { return std::make_unique<model_parallel_dense>(dense_); }
  model_parallel_dense(const model_parallel_dense& other) : model_parallel_dense(other.dense_) {}
  model_parallel_dense& operator=(const model_parallel_dense&) = delete;
  model_parallel_dense(model_parallel_dense&&) = default;

 private:
  bool split() const { return group_ && active_ && active_(); }
  std::pair<std::size_t, std::size_t> mine() const {
    return model_parallel_share(out(), group_->first() + local_, group_->size());
  }
  // rows_[s] = replica s's rows in this pass, offsets_ their running sums.
  void gather_row_counts(std::size_t rows) {
    const std::size_t k = group_->size();
    counts_.assign(k, 0);
    counts_[group_->first() + local_] = rows;
    group_->all_reduce(local_, std::span<std::uint64_t>(counts_));
    rows_.assign(counts_.begin(), counts_.end());
    offsets_.assign(k + 1, 0);
    for (std::size_t s = 0; s < k; ++s) offsets_[s + 1] = offsets_[s] + rows_[s];
    send_.resize(k);
    recv_.resize(k);
  }

  dense dense_;
  float* dw_ = nullptr;
  replica_group* group_ = nullptr;
  std::size_t local_ = 0;
  std::function<bool()> active_;
  std::vector<std::uint64_t> counts_;
  std::vector<std::size_t> rows_, offsets_;
  std::vector<std::span<const float>> send_;
  std::vector<std::span<float>> recv_;
  std::vector<float> x_all_, y_slice_, blocks_, dy_slice_, dx_all_, dx_parts_;
};

// Marks a dense layer model-parallel: model.add(nn::model_parallel(nn::dense(3136, 1024))).
inline model_parallel_dense model_parallel(dense d) { return model_parallel_dense(std::move(d)); }

// The replicas of an inner group (any CPU group: seq, threads, ranks x
// threads) training a model with model-parallel layers: the inner group's
// replicas and collectives (forwarding_group), plus the split parameters'
// own ends of a step.
class model_parallel_group final : public forwarding_group {
 public:
  model_parallel_group(std::unique_ptr<replica_group> inner, const sequential& model)
      : forwarding_group(std::move(inner)), active_(local_size(), 0), owned_(size()) {
    if (this->inner().sums_exactly())
      throw std::invalid_argument(
          "dpar::nn: model-parallel layers cannot run under dpar::deterministic: the split changes which product "
          "computes each sum, so the bits would depend on the replica count");
    if (this->inner().device_replicas())
      throw std::invalid_argument("dpar::nn: model-parallel layers run on CPU replicas only");
    // The replicated parameters: everything outside the split layers.
    std::size_t offset = 0, at = 0;
    for (std::size_t i = 0; i < model.size(); ++i) {
      if (const replica_split* l = model[i].as_replica_split()) {
        if (std::string why = l->cannot_split(size()); !why.empty())
          throw std::invalid_argument("dpar::nn: model-parallel layer " + std::to_string(i) + " (" + model[i].name() +
                                      ") has " + why);
        for (std::size_t g = 0; g < size(); ++g)
          for (auto [a, b] : l->owned(g, size())) owned_[g].push_back({offset + a, offset + b});
        if (offset > at) shared_.push_back({at, offset});
        at = offset + model[i].parameter_count();
      }
      offset += model[i].parameter_count();
    }
    if (offset > at) shared_.push_back({at, offset});
    for (auto [a, b] : shared_) shared_size_ += b - a;
    scratch_.resize(local_size());
  }

  // True if the model holds a model-parallel layer.
  static bool needed(const sequential& model) {
    for (std::size_t i = 0; i < model.size(); ++i)
      if (model[i].as_replica_split()) return true;
    return false;
  }

  void run(const std::function<void(std::size_t)>& f) override {
    inner().run([&](std::size_t local) {
      struct on {  // the layers compute split only inside the trainer's calls
        char& flag;
        explicit on(char& f) : flag(f) { flag = 1; }
        ~on() { flag = 0; }
      } during(active_[local]);
      f(local);
    });
  }
  bool lockstep_passes() const noexcept override { return true; }

  std::unique_ptr<replica_model> make_model(std::size_t local, const sequential& model,
                                            const replica_options& options) override {
    std::unique_ptr<replica_model> m = inner().make_model(local, model, options);
    if (!m->updates_ranges())
      throw std::invalid_argument("dpar::nn: model-parallel layers run on host replicas only");
    sequential& copy = m->host_model();
    for (std::size_t i = 0; i < copy.size(); ++i)
      if (replica_split* l = copy[i].as_replica_split())
        l->attach(*this, local, [this, local] { return active_[local] != 0; });
    return m;
  }

  // The shared parameters' gradients summed over the replicas (the inner
  // group's sum_parts, on them packed together), this replica's slices'
  // gradients summed over its own parts only, then the update of those two.
  void sum_and_update(std::size_t local, std::span<const float* const> mine, std::size_t first, std::size_t total,
                      replica_model& model, float lr, float max_norm) override {
    std::span<float> grads = model.gradients();
    scratch& s = scratch_[local];
    const std::vector<range>& owned = owned_[this->first() + local];
    for (auto [a, b] : owned)  // the parts added in order, as the inner group adds the shared ones
      if (mine.size() != 1 || mine[0] != grads.data())
        for (std::size_t i = a; i < b; ++i) {
          float v = 0.0f;
          for (const float* part : mine) v += part[i];
          grads[i] = v;
        }
    if (shared_size_ != 0) {
      s.packed.resize(std::max<std::size_t>(mine.size(), 1));
      s.parts.clear();
      for (std::size_t p = 0; p < mine.size(); ++p) {
        pack(mine[p], s.packed[p]);
        s.parts.push_back(s.packed[p].data());
      }
      if (mine.empty()) {
        s.packed[0].assign(shared_size_, 0.0f);
        s.parts.push_back(s.packed[0].data());
      }
      s.sum.resize(shared_size_);
      inner().sum_parts(local, s.parts, first, total, s.sum);
      unpack(s.sum, grads);
    }
    if (max_norm > 0) {
      double own = 0;
      for (auto [a, b] : owned) own += squares(grads.subspan(a, b - a));
      inner().all_reduce(local, std::span<double>(&own, 1));
      double squared = own;
      for (auto [a, b] : shared_) squared += squares(grads.subspan(a, b - a));
      const float factor = clip_scale(max_norm, squared);
      for (auto [a, b] : shared_) scale(grads.subspan(a, b - a), factor);
      for (auto [a, b] : owned) scale(grads.subspan(a, b - a), factor);
    }
    s.ranges = shared_;
    s.ranges.insert(s.ranges.end(), owned.begin(), owned.end());
    model.update_ranges(lr, s.ranges);
  }

  // All-gathers every split layer's slices of the parameters and of each
  // optimizer state buffer, so every replica holds them whole.
  void gather_velocity(std::size_t local, replica_model& model) override {
    std::span<float> params = model.host_model().parameters();
    gather(local, params);
    std::span<float> state = model.host_velocity();
    for (std::size_t at = 0; !params.empty() && at < state.size(); at += params.size())
      gather(local, state.subspan(at, params.size()));
  }

  // Bytes a replica sends per step for the split layers (replica_split::
  // exchanged_values), on a global batch of n rows spread evenly over k replicas.
  static double exchanged_bytes_per_replica(const sequential& model, std::size_t n, std::size_t k) {
    double values = 0;
    for (std::size_t i = 0; i < model.size(); ++i)
      if (const replica_split* l = model[i].as_replica_split()) values += l->exchanged_values(n, k, i == 0);
    return values * sizeof(float);
  }

 private:
  using range = std::pair<std::size_t, std::size_t>;
  struct scratch {
    std::vector<std::vector<float>> packed;
    std::vector<const float*> parts;
    std::vector<float> sum, gathered;
    std::vector<range> ranges;
    std::vector<std::span<const float>> send;
    std::vector<std::span<float>> recv;
  };

  void pack(const float* from, std::vector<float>& to) const {
    to.resize(shared_size_);
    std::size_t at = 0;
    for (auto [a, b] : shared_) at = static_cast<std::size_t>(std::copy(from + a, from + b, to.begin() + static_cast<std::ptrdiff_t>(at)) - to.begin());
  }
  void unpack(std::span<const float> from, std::span<float> to) const {
    std::size_t at = 0;
    for (auto [a, b] : shared_) {
      std::copy(from.begin() + static_cast<std::ptrdiff_t>(at), from.begin() + static_cast<std::ptrdiff_t>(at + b - a),
                to.begin() + static_cast<std::ptrdiff_t>(a));
      at += b - a;
    }
  }

  // Every replica's slices of buf, packed by the owner, to every replica.
  void gather(std::size_t local, std::span<float> buf) {
    scratch& s = scratch_[local];
    const std::size_t k = size();
    std::vector<std::size_t> at(k + 1, 0);
    for (std::size_t g = 0; g < k; ++g) {
      at[g + 1] = at[g];
      for (auto [a, b] : owned_[g]) at[g + 1] += b - a;
    }
    const std::size_t me = first() + local;
    s.gathered.resize(at[k]);
    float* out = s.gathered.data() + at[me];
    for (auto [a, b] : owned_[me]) out = std::copy(buf.data() + a, buf.data() + b, out);
    s.send.assign(k, std::span<const float>(s.gathered.data() + at[me], at[me + 1] - at[me]));
    s.recv.resize(k);
    for (std::size_t g = 0; g < k; ++g) s.recv[g] = std::span<float>(s.gathered.data() + at[g], at[g + 1] - at[g]);
    inner().exchange(local, s.send, s.recv);
    for (std::size_t g = 0; g < k; ++g) {
      const float* from = s.gathered.data() + at[g];
      for (auto [a, b] : owned_[g]) {
        std::copy(from, from + (b - a), buf.data() + a);
        from += b - a;
      }
    }
  }

  std::vector<char> active_;  // local replica l is inside run (written and read by its own thread)
  std::vector<std::vector<range>> owned_;  // global replica g's slices of the split layers, in increasing order
  std::vector<range> shared_;
  std::size_t shared_size_ = 0;
  std::vector<scratch> scratch_;  // one per local replica
};

// The group a trainer of `model` runs on: `group` itself, or wrapped in a
// model_parallel_group if the model holds model-parallel layers.
inline std::unique_ptr<replica_group> with_model_parallel(std::unique_ptr<replica_group> group,
                                                          const sequential& model) {
  if (!group || !model_parallel_group::needed(model)) return group;
  return std::make_unique<model_parallel_group>(std::move(group), model);
}

}  // namespace dpar::nn
