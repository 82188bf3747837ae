#pragma once
// Settings that libraries read when they load, before main (libgomp reads
// OMP_NUM_THREADS and OMP_WAIT_POLICY then): main says what it wants, and the
// program runs itself again, once, if the environment had to change.

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace bench {

class environment_settler {
 public:
  // var = value unless the caller set var (overwrite: unless it is value already).
  void want(const char* var, const std::string& value, bool overwrite) {
    const char* now = std::getenv(var);
    if (now && (!overwrite || value == now)) return;
    setenv(var, value.c_str(), 1);
    changed_ = true;
  }
  // Runs this program again with the new environment if want changed it.
  void settle(char** argv) const {
    if (!changed_) return;
    execv("/proc/self/exe", argv);
    throw std::runtime_error(std::string("cannot re-run /proc/self/exe: ") + std::strerror(errno));
  }

 private:
  bool changed_ = false;
};

}  // namespace bench
