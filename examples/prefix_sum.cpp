// A large prefix sum and reduction, sequential against the thread pool, with
// timings. The results must agree exactly (integers), so the check is strict.
#include <dpar/dpar.hpp>

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <vector>

template <class F>
double best_ms(F&& f, int reps = 5) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

int main() {
  const std::size_t n = std::size_t{1} << 25;
  std::vector<std::int64_t> in(n), out_seq(n), out_par(n);
  dpar::transform(dpar::par, in, in.begin(), [](std::int64_t) { return std::int64_t{0}; });
  std::uint64_t x = 88172645463325252ull;  // xorshift: reproducible data
  for (auto& v : in) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v = static_cast<std::int64_t>(x % 1000);
  }
  std::printf("prefix sum of %zu int64 on %zu threads\n", n, dpar::thread_pool::global().size());

  double t_seq = best_ms([&] { dpar::inclusive_scan(dpar::seq, in, out_seq.begin()); });
  double t_par = best_ms([&] { dpar::inclusive_scan(dpar::par, in, out_par.begin()); });
  std::int64_t s_seq = 0, s_par = 0;
  double r_seq = best_ms([&] { s_seq = dpar::reduce(dpar::seq, in, std::int64_t{0}); });
  double r_par = best_ms([&] { s_par = dpar::reduce(dpar::par, in, std::int64_t{0}); });

  bool ok = out_seq == out_par && s_seq == s_par && out_par.back() == s_par;
  std::printf("  inclusive_scan  seq %8.2f ms   par %8.2f ms   speed-up %.2fx\n", t_seq, t_par, t_seq / t_par);
  std::printf("  reduce          seq %8.2f ms   par %8.2f ms   speed-up %.2fx\n", r_seq, r_par, r_seq / r_par);
  std::printf("  total %lld, results %s\n", static_cast<long long>(s_par), ok ? "agree" : "DIFFER");
  return ok ? 0 : 1;
}
