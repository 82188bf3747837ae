#pragma once
// Reading the files dpar::nn is given (IDX data, checkpoints): only regular
// files, and never more bytes than the file really holds. A directory, a
// device such as /dev/zero or a FIFO is refused at once with an error naming
// the file (Error(file, problem)), instead of reading without end or blocking.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace dpar::nn::detail {

template <class Error>
class input_file {
 public:
  explicit input_file(const std::string& path) : path_(path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) throw Error(path_, std::string("cannot open the file: ") + std::strerror(errno));
    struct stat st {};
    const char* problem = nullptr;
    if (::fstat(fd_, &st) != 0) problem = "cannot stat the file";
    else if (S_ISDIR(st.st_mode)) problem = "is a directory, not a file";
    else if (!S_ISREG(st.st_mode)) problem = "is not a regular file (a device, FIFO or socket?)";
    if (problem) {
      ::close(fd_);
      throw Error(path_, problem);
    }
    size_ = static_cast<std::size_t>(st.st_size);
  }
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  ~input_file() { ::close(fd_); }

  // The file's size when it was opened.
  std::size_t size() const noexcept { return size_; }
  // The open descriptor (to map the file), closed with this object.
  int descriptor() const noexcept { return fd_; }

  // Reads exactly n bytes from the current position; a file that ends first
  // (it shrank meanwhile) is an error.
  void read(void* into, std::size_t n) {
    auto* p = static_cast<unsigned char*>(into);
    while (n > 0) {
      ssize_t got = ::read(fd_, p, n);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw Error(path_, std::string("read failed: ") + std::strerror(errno));
      if (got == 0) throw Error(path_, "the file ended early (did it change while being read?)");
      p += got;
      n -= static_cast<std::size_t>(got);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::size_t size_ = 0;
};

}  // namespace dpar::nn::detail
