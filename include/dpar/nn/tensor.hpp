#pragma once
// dpar::nn::tensor: a row-major float matrix that owns its storage or views
// someone else's, in host memory. Its device twin, device_tensor, lives in
// <dpar/nn/cuda.hpp> (CUDA only); where() tells them apart.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpar::nn {

enum class device { host, cuda };

class tensor {
 public:
  tensor() = default;
  // An owning rows x cols matrix of zeros.
  tensor(std::size_t rows, std::size_t cols) { resize(rows, cols); }

  // A view of rows x cols floats at `data` (row-major, contiguous); not owned.
  static tensor view(float* data, std::size_t rows, std::size_t cols) {
    tensor t;
    t.data_ = data;
    t.rows_ = rows;
    t.cols_ = cols;
    return t;
  }

  tensor(const tensor& other) { *this = other; }
  tensor& operator=(const tensor& other) {
    if (this == &other) return *this;
    resize(other.rows_, other.cols_);
    std::copy(other.data_, other.data_ + other.size(), data_);
    return *this;
  }
  tensor(tensor&&) noexcept = default;
  tensor& operator=(tensor&&) noexcept = default;

  // Reshapes an owning tensor; storage grows only when the new size exceeds
  // its capacity, so a training loop that alternates batch sizes allocates once.
  // Contents are unspecified afterwards. A view cannot be resized.
  void resize(std::size_t rows, std::size_t cols) {
    if (data_ && !owned_)
      throw std::logic_error("dpar::nn::tensor: cannot resize a view to " + std::to_string(rows) + "x" +
                             std::to_string(cols));
    std::size_t n = rows * cols;
    if (n > capacity_) {
      owned_ = std::make_unique<float[]>(n);
      capacity_ = n;
    }
    data_ = owned_.get();
    rows_ = rows;
    cols_ = cols;
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t size() const noexcept { return rows_ * cols_; }
  bool owning() const noexcept { return !data_ || owned_; }
  static constexpr device where() noexcept { return device::host; }

  float* data() noexcept { return data_; }
  const float* data() const noexcept { return data_; }
  float* row(std::size_t r) noexcept { return data_ + r * cols_; }
  const float* row(std::size_t r) const noexcept { return data_ + r * cols_; }
  float& operator()(std::size_t r, std::size_t c) noexcept { return data_[r * cols_ + c]; }
  float operator()(std::size_t r, std::size_t c) const noexcept { return data_[r * cols_ + c]; }
  std::span<float> flat() noexcept { return {data_, size()}; }
  std::span<const float> flat() const noexcept { return {data_, size()}; }

  // Rows [first, first + count) as a view.
  tensor rows_view(std::size_t first, std::size_t count) {
    if (first + count > rows_)
      throw std::out_of_range("dpar::nn::tensor: rows [" + std::to_string(first) + ", " +
                              std::to_string(first + count) + ") of a tensor with " + std::to_string(rows_) + " rows");
    return view(data_ + first * cols_, count, cols_);
  }
  // A read-only use of rows of a const tensor (the view must not be written).
  tensor rows_view(std::size_t first, std::size_t count) const {
    return const_cast<tensor*>(this)->rows_view(first, count);
  }

 private:
  std::unique_ptr<float[]> owned_;
  std::size_t capacity_ = 0;
  float* data_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0;
};

// The column of each row's largest value (the first one on ties): the classes
// a classifier's logits predict.
inline std::vector<std::int32_t> argmax(const tensor& t) {
  std::vector<std::int32_t> best(t.rows());
  for (std::size_t r = 0; r < t.rows(); ++r)
    best[r] = static_cast<std::int32_t>(std::max_element(t.row(r), t.row(r) + t.cols()) - t.row(r));
  return best;
}

}  // namespace dpar::nn
