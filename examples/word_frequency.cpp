// Word frequencies with a parallel reduction whose op merges maps: the op is
// associative but not commutative in general (here it is, but dpar does not
// need it to be), and the element type is a std::map, which no vectorized
// path could handle.
#include <dpar/dpar.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using counts = std::map<std::string, long>;

int main() {
  // A small corpus repeated many times: one line per element.
  const std::vector<std::string> base = {
      "the quick brown fox jumps over the lazy dog",
      "a journey of a thousand miles begins with a single step",
      "to be or not to be that is the question",
      "all that glitters is not gold",
  };
  std::vector<std::string> lines;
  for (int i = 0; i < 20000; ++i) lines.push_back(base[static_cast<std::size_t>(i) % base.size()]);

  auto count_line = [](const std::string& line) {
    counts c;
    std::istringstream in(line);
    for (std::string w; in >> w;) ++c[w];
    return c;
  };
  auto merge = [](counts a, const counts& b) {
    for (const auto& [w, n] : b) a[w] += n;
    return a;
  };
  counts total = dpar::transform_reduce(dpar::par, lines, counts{}, merge, count_line);
  counts check = dpar::transform_reduce(dpar::seq, lines, counts{}, merge, count_line);

  std::vector<std::pair<std::string, long>> top(total.begin(), total.end());
  std::sort(top.begin(), top.end(), [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  std::printf("word frequencies over %zu lines (%zu distinct words), top 5:\n", lines.size(), total.size());
  for (std::size_t i = 0; i < 5 && i < top.size(); ++i) std::printf("  %-8s %ld\n", top[i].first.c_str(), top[i].second);
  std::printf("parallel and sequential counts %s\n", total == check ? "agree" : "DIFFER");
  return total == check ? 0 : 1;
}
