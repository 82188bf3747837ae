#pragma once
// Argument checks that every backend's collectives share: the K buffers (one
// per replica or rank) have one length, and no two of them overlap.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dpar::detail::collective {

// Throws Error naming the first part (a "buffer", a "rank") whose length
// differs from part 0's.
template <class Error, class Length>
void check_same_lengths(const std::vector<Length>& lengths, const std::string& who, const char* part) {
  for (std::size_t r = 1; r < lengths.size(); ++r)
    if (lengths[r] != lengths[0])
      throw Error(who + ": " + part + " " + std::to_string(r) + " has " + std::to_string(lengths[r]) +
                  " elements but " + part + " 0 has " + std::to_string(lengths[0]) + "; every " + part +
                  " needs the same length");
}

// Throws Error naming the first two spans that overlap: an element must belong
// to exactly one replica.
template <class Error, class Span>
void check_disjoint(const std::vector<Span>& spans, const std::string& who) {
  auto address = [](const auto* p) { return reinterpret_cast<std::uintptr_t>(p); };
  for (std::size_t r = 0; r < spans.size(); ++r)
    for (std::size_t s = r + 1; s < spans.size(); ++s) {
      auto r_lo = address(spans[r].data()), r_hi = address(spans[r].data() + spans[r].size());
      auto s_lo = address(spans[s].data()), s_hi = address(spans[s].data() + spans[s].size());
      if (r_lo < r_hi && s_lo < s_hi && r_lo < s_hi && s_lo < r_hi)  // empty spans hold nothing
        throw Error(who + ": buffers " + std::to_string(r) + " and " + std::to_string(s) +
                    " overlap; each replica needs its own buffer");
    }
}

}  // namespace dpar::detail::collective
