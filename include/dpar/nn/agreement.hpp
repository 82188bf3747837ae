#pragma once
// What the ranks of a data-parallel trainer must agree on, checked once per
// call in one small collective.
//
// Under MPI every rank calls the same trainer methods with the same options
// and data. A rank that does not (another batch size, a shorter data set, a
// stale checkpoint, another learning rate) would make the others hang in a
// collective of another length, or train on silently with other parameters.
// So at construction, at resume, and when train_step / train_epoch / evaluate
// start, each rank describes its call in an `agreement` (a fixed list of
// 64-bit fields: the options, the progress, the data's size and shape and a
// hash of its labels, the learning rates the call will use, the checkpoint
// loaded) and agree() compares them across ranks in one all-reduce of a few
// words per rank. The same call also carries a failure flag: a rank whose
// call failed before its collective part (a bad argument, a throwing
// schedule) still joins it, so every rank raises instead of waiting forever.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint.hpp"
#include "tensor.hpp"
#include "replica_group.hpp"

namespace dpar::nn {

// The trainer calls that agree.
enum class trainer_call : std::uint64_t { construct = 1, train_step, train_epoch, evaluate, resume };

class agreement {
 public:
  enum field : std::size_t {
    call,
    batch,
    micro_batch,
    seed,
    loss,
    optimizer,
    check_replicas,
    bucket_bytes,
    step,
    epoch,
    samples,
    features,
    labels,
    rates,
    chunk,
    checkpoint_step,
    checkpoint_epoch,
    checkpoint_contents,
    field_count
  };

  // A call with the trainer's options (train_options: a template only because
  // that struct is defined after this header).
  template <class Options>
  agreement(trainer_call c, const Options& o) {
    value_[call] = static_cast<std::uint64_t>(c);
    value_[batch] = o.batch;
    value_[micro_batch] = o.micro_batch;
    value_[seed] = o.seed;
    // A built-in loss by its kind; a user's callable by its form only (its
    // code cannot be compared).
    value_[loss] = o.loss.kind() ? 1 + static_cast<std::uint64_t>(*o.loss.kind()) : (o.loss.takes_targets() ? 0 : ~0ull);
    const float sgd[] = {o.sgd.momentum, o.sgd.weight_decay, o.clip_norm};
    std::uint64_t h = hash_of(std::span<const float>(sgd), o.sgd.nesterov ^ (std::uint64_t{o.accumulate} << 1));
    if (o.adamw) {
      const float adamw[] = {o.adamw->beta1, o.adamw->beta2, o.adamw->eps, o.adamw->weight_decay};
      h = hash_of(std::span<const float>(adamw), h);
    }
    value_[optimizer] = h;
    value_[check_replicas] = o.check_replicas;
    value_[bucket_bytes] = o.bucket_bytes;  // the buckets' bounds: each rank starts the same sums
  }

  // The trainer's progress so far.
  agreement& progress(std::size_t steps, std::size_t epochs) {
    value_[step] = steps;
    value_[epoch] = epochs;
    return *this;
  }
  // A batch or data set: rows x cols samples and their labels, or their
  // tensor of targets.
  agreement& data(std::size_t rows, std::size_t cols, std::span<const std::int32_t> y) {
    return data(rows, cols, contents_of(y));
  }
  agreement& data(std::size_t rows, std::size_t cols, const tensor& targets) {
    return data(rows, cols, contents_of(targets));
  }
  // `contents`: contents_of the labels or targets, or what a data source
  // offers instead (data_source::fingerprint).
  agreement& data(std::size_t rows, std::size_t cols, std::uint64_t contents) {
    value_[samples] = rows;
    value_[features] = cols;
    value_[labels] = contents;
    return *this;
  }
  static std::uint64_t contents_of(std::span<const std::int32_t> y) { return hash_of(y, y.size()); }
  static std::uint64_t contents_of(const tensor& targets) {
    return hash_of(std::span<const float>(targets.data(), targets.size()), targets.cols());
  }
  // The learning rates the call will use.
  agreement& learning_rates(std::span<const float> lr) {
    value_[rates] = hash_of(lr, lr.size());
    return *this;
  }
  agreement& evaluation_chunk(std::size_t c) {
    value_[chunk] = c;
    return *this;
  }
  agreement& loaded(const checkpoint& c) {
    value_[checkpoint_step] = c.step;
    value_[checkpoint_epoch] = c.epoch;
    value_[checkpoint_contents] =
        hash_of(std::span<const float>(c.state),
                hash_of(std::span<const float>(c.velocity),
                        hash_of(std::span<const float>(c.parameters), c.seed ^ c.schedule)));
    return *this;
  }

  std::uint64_t operator[](field f) const noexcept { return value_[f]; }

  // What the error message calls a field; hashed ones are compared, not shown.
  static const char* name(field f) noexcept {
    static constexpr const char* names[field_count] = {
        "the call",           "options.batch",     "options.micro_batch", "options.seed",
        "options.loss",       "the optimizer options",       "options.check_replicas", "options.bucket_bytes", "the steps taken",
        "the epochs done",    "the sample count",  "the feature count",   "the labels or targets",
        "the learning rates", "the evaluation chunk", "the checkpoint's step", "the checkpoint's epoch",
        "the checkpoint's contents"};
    return names[f];
  }
  static bool hashed(field f) noexcept {
    return f == optimizer || f == labels || f == rates || f == checkpoint_contents || f == loss;
  }
  static const char* call_name(std::uint64_t c) noexcept {
    switch (static_cast<trainer_call>(c)) {
      case trainer_call::construct: return "the constructor";
      case trainer_call::train_step: return "train_step";
      case trainer_call::train_epoch: return "train_epoch";
      case trainer_call::evaluate: return "evaluate";
      case trainer_call::resume: return "resume";
    }
    return "no call";
  }

 private:
  // FNV-1a over the values' bytes, from `start`.
  template <class T>
  static std::uint64_t hash_of(std::span<const T> values, std::uint64_t start) {
    std::uint64_t h = 1469598103934665603ull ^ start;
    const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
    for (std::size_t i = 0; i < values.size_bytes(); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    return h;
  }

  std::uint64_t value_[field_count] = {};
};

// How agree() ended, the same on every replica of every process.
struct agreement_result {
  enum class kind { agreed, failed, differ };
  kind what = kind::agreed;
  std::size_t failed_replica = 0;  // failed: the first global replica that failed
  std::string message;             // failed: its error's message; differ: what differs, and where
};

// The exception's message ("unknown exception" for one that is not a std::exception).
inline std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

// Collective, by every local replica, once some collective has shown that a
// replica failed: the first failed global replica and its error's message, on
// every replica. `error`: this replica's failure, if any.
inline std::pair<std::size_t, std::string> first_failure(replica_group& group, std::size_t local,
                                                         const std::exception_ptr& error) {
  const std::size_t k = group.size(), g = group.first() + local;
  std::vector<std::uint64_t> failed(k, 0);
  if (error) failed[g] = 1;
  group.all_reduce(local, std::span<std::uint64_t>(failed));
  const auto root = static_cast<std::size_t>(std::find(failed.begin(), failed.end(), 1u) - failed.begin());
  std::string text = g == root ? message_of(error) : std::string();
  std::uint64_t length = text.size();
  group.broadcast(local, std::as_writable_bytes(std::span(&length, 1)), root);
  text.resize(length);
  group.broadcast(local, std::as_writable_bytes(std::span(text.data(), text.size())), root);
  return {root, std::move(text)};
}

namespace detail {
// "rank 0 has 600, rank 1 has 540" or "ranks 1, 2 differ from rank 0": the
// processes whose value of f differs from process 0's.
inline std::string disagreement(agreement::field f, std::span<const std::uint64_t> values, std::size_t processes,
                                std::size_t slot) {
  auto value = [&](std::size_t p) { return values[p * slot + 1 + f]; };
  auto shown = [&](std::uint64_t v) {
    return f == agreement::call ? " calls " + std::string(agreement::call_name(v)) : " has " + std::to_string(v);
  };
  std::string ranks;
  std::size_t count = 0;
  for (std::size_t p = 1; p < processes; ++p) {
    if (value(p) == value(0)) continue;
    ++count;
    if (agreement::hashed(f)) ranks += (ranks.empty() ? "" : ", ") + std::to_string(p);
    else ranks += ", rank " + std::to_string(p) + shown(value(p));
  }
  if (count == 0) return {};
  if (agreement::hashed(f))
    return (count == 1 ? "rank " : "ranks ") + ranks + (count == 1 ? " differs" : " differ") + " from rank 0";
  return "rank 0" + shown(value(0)) + ranks;
}
}  // namespace detail

// Collective, by every local replica at the start of a trainer call: compares
// `mine` (local replica 0's speaks for its process) across the processes, and
// carries each replica's failure so far (`error`) to all.
inline agreement_result agree(replica_group& group, std::size_t local, const agreement& mine,
                              const std::exception_ptr& error) {
  agreement_result result;
  if (group.size() == 1) {
    if (error) result = {agreement_result::kind::failed, 0, message_of(error)};
    return result;
  }
  // One slot per process: [failed replicas, fields...], written by its replicas.
  constexpr std::size_t slot = 1 + agreement::field_count;
  const auto processes = static_cast<std::size_t>(group.process_of(group.size() - 1)) + 1;
  const auto me = static_cast<std::size_t>(group.process_rank());
  std::vector<std::uint64_t> values(processes * slot, 0);
  values[me * slot] = error ? 1 : 0;
  if (local == 0)
    for (std::size_t f = 0; f < agreement::field_count; ++f) values[me * slot + 1 + f] = mine[agreement::field(f)];
  group.all_reduce(local, std::span<std::uint64_t>(values));
  for (std::size_t p = 0; p < processes; ++p)
    if (values[p * slot] != 0) {
      auto [root, text] = first_failure(group, local, error);
      return {agreement_result::kind::failed, root, std::move(text)};
    }
  std::string what;
  for (std::size_t f = 0; f < agreement::field_count; ++f) {
    std::string d = detail::disagreement(agreement::field(f), values, processes, slot);
    if (!d.empty()) what += std::string(what.empty() ? "" : "; ") + agreement::name(agreement::field(f)) + ": " + d;
  }
  if (what.empty()) return result;
  result.what = agreement_result::kind::differ;
  result.message = std::string("dpar::nn::data_parallel_trainer: the ranks disagree at ") +
                   agreement::call_name(values[1 + agreement::call]) + " (" + what +
                   "); under MPI every rank makes the same calls with the same options and data";
  return result;
}

// Runs f, returning what it threw (null if nothing): a failure to carry into agree().
template <class F>
std::exception_ptr failure_of(F&& f) {
  try {
    f();
    return nullptr;
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace dpar::nn
