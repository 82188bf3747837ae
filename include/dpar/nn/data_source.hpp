#pragma once
// Random-access data sets for the trainer: a data_source says how many
// samples it has, their shapes (features; integer labels or a tensor of
// targets of some columns) and gathers any rows into a batch. The trainer
// asks each replica's source only for the rows that replica trains on, so a
// source need not hold the data set in memory. Three kinds:
//   - memory_source: a dataset or tensor_dataset in memory (what
//     train_epoch(dataset) uses);
//   - mapped_dataset: uncompressed IDX files or raw float32 files,
//     memory-mapped: a gather touches only the rows asked for, and gives their
//     pages back afterwards, so a rank's memory is a batch, not the data set;
//   - rank_shard: a rank's own part of the data (loaded by the user, of any
//     size, even empty), instead of the same data set on every rank.
// With the first two every rank passes the same data set and each replica
// reads exactly the rows the 1-rank run gives it (so under
// dpar::deterministic any rank count trains the same bits). A rank_shard's
// rows are its own; see data_parallel_trainer::train_epoch.
//
// Gathers are const and may run concurrently from several threads (the
// replicas and their prefetch threads).

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "agreement.hpp"
#include "detail/input_file.hpp"
#include "idx.hpp"
#include "tensor.hpp"

namespace dpar::nn {

// Samples with a tensor of targets, a row per sample (regression,
// multi-output, soft labels): what train_epoch and evaluate take for a loss
// of tensor targets, as nn::dataset (labels) for a loss of labels.
struct tensor_dataset {
  tensor inputs, targets;
  std::size_t size() const noexcept { return targets.rows(); }
};

class data_source {
 public:
  virtual ~data_source() = default;

  virtual std::size_t size() const = 0;      // samples
  virtual std::size_t features() const = 0;  // inputs per sample
  // 0: each sample has an integer label; else the columns of its row of targets.
  virtual std::size_t target_columns() const = 0;

  // Samples rows[0], rows[1], ... (each < size()) into x, rows.size() x
  // features() floats, row-major.
  virtual void gather_inputs(std::span<const std::size_t> rows, float* x) const = 0;
  // Their labels (target_columns() == 0) or targets (rows.size() x target_columns()).
  virtual void gather_labels(std::span<const std::size_t> rows, std::int32_t* labels) const = 0;
  virtual void gather_targets(std::span<const std::size_t> rows, float* targets) const = 0;

  // Raises what is inconsistent in the source itself (inputs and labels of
  // different lengths); the trainer calls it where a failure reaches every rank.
  virtual void check() const {}
  // A hash of the contents where reading them all is cheap (in memory), so
  // that ranks holding different data sets are told; 0 where it is not (a
  // mapped file: only the shapes are compared).
  virtual std::uint64_t fingerprint() const { return 0; }
  // True for a rank's own shard; false where every rank passes the same data set.
  virtual bool per_rank() const { return false; }
};

// A dataset or tensor_dataset in memory, viewed (the caller keeps it alive).
class memory_source final : public data_source {
 public:
  memory_source(const dataset& d) : inputs_(&d.images), labels_(d.labels) {}                   // NOLINT: a view
  memory_source(const tensor_dataset& d) : inputs_(&d.inputs), targets_(&d.targets) {}  // NOLINT: a view

  std::size_t size() const override { return targets_ ? targets_->rows() : labels_.size(); }
  std::size_t features() const override { return inputs_->cols(); }
  std::size_t target_columns() const override { return targets_ ? std::max<std::size_t>(targets_->cols(), 1) : 0; }

  void gather_inputs(std::span<const std::size_t> rows, float* x) const override {
    copy_rows(*inputs_, rows, x);
  }
  void gather_labels(std::span<const std::size_t> rows, std::int32_t* labels) const override {
    for (std::size_t i = 0; i < rows.size(); ++i) labels[i] = labels_[rows[i]];
  }
  void gather_targets(std::span<const std::size_t> rows, float* targets) const override {
    copy_rows(*targets_, rows, targets);
  }
  void check() const override {
    if (targets_ && targets_->cols() == 0) throw std::invalid_argument("dpar::nn: the targets have no columns");
    if (inputs_->rows() != size())
      throw std::invalid_argument("dpar::nn: data set has " + std::to_string(inputs_->rows()) + " samples but " +
                                  std::to_string(size()) + (targets_ ? " targets" : " labels"));
  }
  std::uint64_t fingerprint() const override {
    return targets_ ? agreement::contents_of(*targets_) : agreement::contents_of(labels_);
  }

  const tensor& inputs() const noexcept { return *inputs_; }

 private:
  static void copy_rows(const tensor& from, std::span<const std::size_t> rows, float* to) {
    const std::size_t c = from.cols();
    for (std::size_t i = 0; i < rows.size(); ++i) std::copy(from.row(rows[i]), from.row(rows[i]) + c, to + i * c);
  }

  const tensor* inputs_;
  std::span<const std::int32_t> labels_;
  const tensor* targets_ = nullptr;
};

namespace detail {

// A regular file mapped read-only (nothing mapped for an empty one). Pages
// are read in on first touch, without read-ahead (MADV_RANDOM: a gather
// touches scattered rows), and release() hands a range's pages back: they
// leave this process's resident memory (the page cache keeps them for the
// next touch, shared by the ranks of a machine).
class mapped_file {
 public:
  explicit mapped_file(const std::string& path) : path_(path) {
    input_file<idx_error> in(path);
    size_ = in.size();
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, in.descriptor(), 0);
    if (p == MAP_FAILED) throw idx_error(path, std::string("cannot map the file: ") + std::strerror(errno));
    data_ = static_cast<const std::uint8_t*>(p);
    ::madvise(p, size_, MADV_RANDOM);  // advice only: a failure changes nothing but speed
  }
  mapped_file(mapped_file&& o) noexcept
      : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapped_file& operator=(mapped_file&&) = delete;
  mapped_file(const mapped_file&) = delete;
  ~mapped_file() {
    if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
  }

  std::span<const std::uint8_t> bytes() const noexcept { return {data_, size_}; }
  const std::string& path() const noexcept { return path_; }

  // Gives back the whole pages of [at, at + n) bytes; their contents stay the
  // file's (a private read-only mapping is never written).
  void release(std::size_t at, std::size_t n) const {
    static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    if (n == 0) return;
    std::size_t begin = at / page * page, end = std::min(size_, (at + n + page - 1) / page * page);
    ::madvise(const_cast<std::uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
  }

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// The rows of `columns` float32 values in a raw file.
inline std::size_t raw_rows(const mapped_file& f, std::size_t columns) {
  if (f.bytes().empty()) return 0;
  if (columns > f.bytes().size() / sizeof(float))
    throw idx_error(f.path(), "a row of " + std::to_string(columns) + " floats is longer than the file (" +
                                  std::to_string(f.bytes().size()) + " bytes)");
  const std::size_t row = columns * sizeof(float);
  if (f.bytes().size() % row != 0)
    throw idx_error(f.path(), "raw float32 data of " + std::to_string(f.bytes().size()) +
                                  " bytes is not a whole number of rows of " + std::to_string(columns) + " floats (" +
                                  std::to_string(row) + " bytes): truncated, or another column count?");
  return f.bytes().size() / row;
}

}  // namespace detail

// A data set in uncompressed files, memory-mapped. Inputs: an IDX file of
// unsigned bytes (N x ..., scaled to [0, 1] as idx_load_dataset does) or raw
// float32 rows in this machine's byte order; labels: an IDX file of N
// unsigned bytes; or targets: raw float32 rows. A file that is not what it
// should be (truncated, a wrong magic or element type, dimensions that
// disagree with its size or with the other file) raises idx_error naming it.
// Gathered input and target rows are handed back to the page cache at once
// (labels, a byte per sample, stay mapped). gzip files are read by
// idx_load_dataset into memory instead (decompression is sequential).
class mapped_dataset final : public data_source {
 public:
  static mapped_dataset idx(const std::string& images_file, const std::string& labels_file) {
    mapped_dataset d(images_file);
    std::vector<std::size_t> dims;
    if (detail::is_gzip(d.inputs_.bytes()))
      throw idx_error(images_file, "is gzip-compressed: a mapped data set reads uncompressed files (gunzip it, or "
                                   "load it into memory with idx_load_dataset)");
    d.header_ = detail::idx_check(d.inputs_.bytes(), images_file, dims);
    if (dims.size() < 2)
      throw idx_error(images_file, "images need at least 2 dimensions, found " + std::to_string(dims.size()));
    d.samples_ = dims[0];
    d.features_ = d.samples_ ? (d.inputs_.bytes().size() - d.header_) / d.samples_ : 1;
    if (d.features_ == 0) throw idx_error(images_file, "images have zero pixels");
    d.map_labels(labels_file);
    return d;
  }
  // Raw float32 inputs of `features` columns, with IDX labels.
  static mapped_dataset raw(const std::string& inputs_file, std::size_t features, const std::string& labels_file) {
    mapped_dataset d = raw_inputs(inputs_file, features);
    d.map_labels(labels_file);
    return d;
  }
  // Raw float32 inputs and raw float32 targets of `target_columns` columns.
  static mapped_dataset raw(const std::string& inputs_file, std::size_t features, const std::string& targets_file,
                            std::size_t target_columns) {
    mapped_dataset d = raw_inputs(inputs_file, features);
    if (target_columns == 0) throw idx_error(targets_file, "targets need at least one column");
    d.targets_.emplace(targets_file);
    std::size_t rows = detail::raw_rows(*d.targets_, target_columns);
    if (rows != d.samples_)
      throw idx_error(targets_file, std::to_string(rows) + " rows of targets but '" + inputs_file + "' has " +
                                        std::to_string(d.samples_) + " samples");
    d.target_columns_ = target_columns;
    return d;
  }

  std::size_t size() const override { return samples_; }
  std::size_t features() const override { return features_; }
  std::size_t target_columns() const override { return target_columns_; }

  void gather_inputs(std::span<const std::size_t> rows, float* x) const override {
    const std::uint8_t* base = inputs_.bytes().data() + header_;
    if (raw_) {
      copy_released(inputs_, header_, features_ * sizeof(float), rows, reinterpret_cast<std::uint8_t*>(x));
      return;
    }
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const std::uint8_t* from = base + rows[i] * features_;
      for (std::size_t k = 0; k < features_; ++k) x[i * features_ + k] = from[k] * (1.0f / 255.0f);
      inputs_.release(header_ + rows[i] * features_, features_);
    }
  }
  void gather_labels(std::span<const std::size_t> rows, std::int32_t* labels) const override {
    if (!labels_) throw std::logic_error("dpar::nn::mapped_dataset: this data set has targets, not labels");
    const std::uint8_t* base = labels_->bytes().data() + labels_header_;
    for (std::size_t i = 0; i < rows.size(); ++i) labels[i] = base[rows[i]];
  }
  void gather_targets(std::span<const std::size_t> rows, float* targets) const override {
    if (!targets_) throw std::logic_error("dpar::nn::mapped_dataset: this data set has labels, not targets");
    copy_released(*targets_, 0, target_columns_ * sizeof(float), rows, reinterpret_cast<std::uint8_t*>(targets));
  }

 private:
  explicit mapped_dataset(const std::string& inputs_file) : inputs_(inputs_file) {}

  static mapped_dataset raw_inputs(const std::string& inputs_file, std::size_t features) {
    mapped_dataset d(inputs_file);
    if (features == 0) throw idx_error(inputs_file, "samples need at least one feature");
    d.raw_ = true;
    d.features_ = features;
    d.samples_ = detail::raw_rows(d.inputs_, features);
    return d;
  }

  void map_labels(const std::string& labels_file) {
    labels_.emplace(labels_file);
    std::vector<std::size_t> dims;
    labels_header_ = detail::idx_check(labels_->bytes(), labels_file, dims);
    if (dims.size() != 1) throw idx_error(labels_file, "labels need 1 dimension, found " + std::to_string(dims.size()));
    if (dims[0] != samples_)
      throw idx_error(inputs_.path(), std::to_string(samples_) + " samples but '" + labels_file + "' has " +
                                          std::to_string(dims[0]) + " labels");
  }

  // Rows of `row_bytes` bytes from `at` on, copied out, their pages given back.
  static void copy_released(const detail::mapped_file& f, std::size_t at, std::size_t row_bytes,
                            std::span<const std::size_t> rows, std::uint8_t* to) {
    for (std::size_t i = 0; i < rows.size(); ++i) {
      std::memcpy(to + i * row_bytes, f.bytes().data() + at + rows[i] * row_bytes, row_bytes);
      f.release(at + rows[i] * row_bytes, row_bytes);
    }
  }

  detail::mapped_file inputs_;
  std::optional<detail::mapped_file> labels_, targets_;
  std::size_t header_ = 0, labels_header_ = 0, samples_ = 0, features_ = 0, target_columns_ = 0;
  bool raw_ = false;
};

// A rank's own part of the training data (DistributedSampler's habit: each
// rank loads its shard itself). Shards may differ in size, one may be empty;
// train_epoch then takes each replica's share of the global batch from its
// rank's shard, ranks that run out join the remaining steps with no samples,
// and each step's loss is the mean over the samples it really had.
class rank_shard final : public data_source {
 public:
  explicit rank_shard(const data_source& shard) : source_(&shard) {}
  explicit rank_shard(const dataset& shard) : own_(std::in_place, shard), source_(&*own_) {}
  explicit rank_shard(const tensor_dataset& shard) : own_(std::in_place, shard), source_(&*own_) {}
  rank_shard(const rank_shard&) = delete;
  rank_shard& operator=(const rank_shard&) = delete;

  std::size_t size() const override { return source_->size(); }
  std::size_t features() const override { return source_->features(); }
  std::size_t target_columns() const override { return source_->target_columns(); }
  void gather_inputs(std::span<const std::size_t> rows, float* x) const override { source_->gather_inputs(rows, x); }
  void gather_labels(std::span<const std::size_t> rows, std::int32_t* labels) const override {
    source_->gather_labels(rows, labels);
  }
  void gather_targets(std::span<const std::size_t> rows, float* targets) const override {
    source_->gather_targets(rows, targets);
  }
  void check() const override { source_->check(); }
  bool per_rank() const override { return true; }  // its contents differ by rank: no fingerprint

 private:
  std::optional<memory_source> own_;
  const data_source* source_;
};

}  // namespace dpar::nn
