#pragma once
// Training checkpoints: parameters, optimizer state and progress in one file,
// written atomically (temp file, fsync, rename) and guarded by a CRC-32 of
// the whole file, so a crash mid-write leaves the previous checkpoint intact
// and a corrupt or mismatched file is refused with a clear error.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "detail/input_file.hpp"

namespace dpar::nn {

class checkpoint_error : public std::runtime_error {
 public:
  checkpoint_error(const std::string& file, const std::string& problem)
      : std::runtime_error("dpar::nn checkpoint '" + file + "': " + problem) {}
};

struct checkpoint {
  std::uint64_t epoch = 0;     // completed epochs
  std::uint64_t step = 0;      // optimizer steps taken
  std::uint64_t seed = 0;      // the run's seed (data order derives from it)
  std::uint64_t replicas = 0;  // K of the run that wrote it (bitwise resumption needs the same K)
  std::uint64_t layout = 0;    // hash of the model's layer list
  std::uint64_t schedule = 0;  // fingerprint of the learning-rate schedule (0: not recorded)
  std::vector<float> parameters;
  std::vector<float> velocity;
  std::vector<float> state;  // the model's values kept but not trained (batch_norm's running statistics)
  std::string architecture;  // a model file's layer list (model_file.hpp); empty in checkpoints
};

namespace detail {
// Format 02 added the schedule fingerprint, 03 the model's state and the
// architecture text (two more counts in the header, two more payloads at
// the end); files of formats 01 and 02 still load.
inline constexpr char checkpoint_magic[8] = {'D', 'P', 'A', 'R', 'N', 'N', '0', '3'};
inline constexpr char checkpoint_magic_02[8] = {'D', 'P', 'A', 'R', 'N', 'N', '0', '2'};
inline constexpr char checkpoint_magic_01[8] = {'D', 'P', 'A', 'R', 'N', 'N', '0', '1'};

inline void put_u64(std::vector<unsigned char>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
inline std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}
inline void put_floats(std::vector<unsigned char>& out, const std::vector<float>& v) {
  auto* p = reinterpret_cast<const unsigned char*>(v.data());
  out.insert(out.end(), p, p + v.size() * sizeof(float));
}
// CRC-32 of n bytes, continuing from `c` (a CRC so far).
inline std::uint32_t crc(const unsigned char* p, std::size_t n, std::uint32_t so_far = 0) {
  uLong c = so_far;
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(c);
}
}  // namespace detail

// Writes `c` to `file` atomically. The temporary file is `file`.tmp, one per
// target: a save that was killed leaves at most that one behind, and the next
// save reuses and removes it. Concurrent saves to one file take turns (flock).
inline void save_checkpoint(const std::string& file, const checkpoint& c) {
  std::vector<unsigned char> bytes(detail::checkpoint_magic, detail::checkpoint_magic + 8);
  for (auto v : {c.epoch, c.step, c.seed, c.replicas, c.layout, c.schedule, std::uint64_t(c.parameters.size()),
                 std::uint64_t(c.velocity.size()), std::uint64_t(c.state.size()), std::uint64_t(c.architecture.size())})
    detail::put_u64(bytes, v);
  detail::put_floats(bytes, c.parameters);
  detail::put_floats(bytes, c.velocity);
  detail::put_floats(bytes, c.state);
  bytes.insert(bytes.end(), c.architecture.begin(), c.architecture.end());
  std::uint32_t sum = detail::crc(bytes.data(), bytes.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<unsigned char>(sum >> (8 * i)));

  const std::string tmp = file + ".tmp";
  int fd = -1;
  bool locked = false;
  auto fail = [&](const char* what) {
    int err = errno;
    if (locked) ::unlink(tmp.c_str());  // ours while we hold the lock
    if (fd >= 0) ::close(fd);
    throw checkpoint_error(file, std::string(what) + ": " + std::strerror(err));
  };
  // Lock the temporary file, then make sure it is still the one at `tmp`: a
  // save that held the lock before may have renamed it to `file` meanwhile.
  for (;;) {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot create the temporary file");
    if (::flock(fd, LOCK_EX) != 0) fail("cannot lock the temporary file");
    struct stat ours {}, named {};
    if (::fstat(fd, &ours) == 0 && ::stat(tmp.c_str(), &named) == 0 && ours.st_dev == named.st_dev &&
        ours.st_ino == named.st_ino)
      break;
    ::close(fd);
  }
  locked = true;
  if (::ftruncate(fd, 0) != 0) fail("cannot truncate the temporary file");
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("write failed");
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0) fail("fsync failed");
  if (::rename(tmp.c_str(), file.c_str()) != 0) fail("rename failed");
  ::close(fd);  // releases the lock; the file is now `file`
}

// Reads a checkpoint, refusing anything but a regular file; every read is
// bounded by the file's real size, checked against the sizes in its header.
inline checkpoint load_checkpoint(const std::string& file) {
  detail::input_file<checkpoint_error> in(file);
  constexpr std::size_t header_01 = 8 + 7 * 8, trailer = 4;
  if (in.size() < header_01 + trailer)
    throw checkpoint_error(file, "truncated: " + std::to_string(in.size()) + " bytes is shorter than the header");
  unsigned char head[8 + 10 * 8];
  in.read(head, 8);
  const bool format_01 = std::memcmp(head, detail::checkpoint_magic_01, 8) == 0;
  const bool format_02 = std::memcmp(head, detail::checkpoint_magic_02, 8) == 0;
  if (!format_01 && !format_02 && std::memcmp(head, detail::checkpoint_magic, 8) != 0)
    throw checkpoint_error(file, "not a dpar::nn checkpoint or model file (wrong magic)");
  const std::size_t header = format_01 ? header_01 : format_02 ? header_01 + 8 : header_01 + 3 * 8;
  if (in.size() < header + trailer)
    throw checkpoint_error(file, "truncated: " + std::to_string(in.size()) + " bytes is shorter than the header");
  in.read(head + 8, header - 8);
  const unsigned char* p = head + 8;
  checkpoint c;
  for (std::uint64_t* field : {&c.epoch, &c.step, &c.seed, &c.replicas, &c.layout}) {
    *field = detail::get_u64(p);
    p += 8;
  }
  if (!format_01) {
    c.schedule = detail::get_u64(p);
    p += 8;
  }
  std::uint64_t np = detail::get_u64(p), nv = detail::get_u64(p + 8), ns = 0, na = 0;
  if (!format_01 && !format_02) ns = detail::get_u64(p + 16), na = detail::get_u64(p + 24);
  std::size_t body = in.size() - header - trailer;
  const std::size_t floats = body / sizeof(float);
  if (np > floats || nv > floats || ns > floats || na > body ||
      (np + nv + ns) * sizeof(float) + na != body)
    throw checkpoint_error(file, "size mismatch: header promises " + std::to_string(np) + " parameters, " +
                                     std::to_string(nv) + " velocities, " + std::to_string(ns) + " state values and " +
                                     std::to_string(na) + " bytes of architecture, file holds " +
                                     std::to_string(body) + " payload bytes (truncated or corrupt)");
  c.parameters.resize(np);
  c.velocity.resize(nv);
  c.state.resize(ns);
  c.architecture.resize(na);
  in.read(c.parameters.data(), np * sizeof(float));
  in.read(c.velocity.data(), nv * sizeof(float));
  in.read(c.state.data(), ns * sizeof(float));
  in.read(c.architecture.data(), na);
  unsigned char tail[trailer];
  in.read(tail, trailer);
  std::uint32_t stored = 0;
  for (std::size_t i = 0; i < trailer; ++i) stored |= std::uint32_t{tail[i]} << (8 * i);
  // The checksum covers the header too, not just the payload.
  auto as_bytes = [](const std::vector<float>& v) { return reinterpret_cast<const unsigned char*>(v.data()); };
  std::uint32_t sum = detail::crc(head, header);
  sum = detail::crc(as_bytes(c.parameters), np * sizeof(float), sum);
  sum = detail::crc(as_bytes(c.velocity), nv * sizeof(float), sum);
  sum = detail::crc(as_bytes(c.state), ns * sizeof(float), sum);
  sum = detail::crc(reinterpret_cast<const unsigned char*>(c.architecture.data()), na, sum);
  if (sum != stored) throw checkpoint_error(file, "checksum mismatch (file is corrupt)");
  return c;
}

}  // namespace dpar::nn
