// dpar::deterministic(dpar::mpi(...)), run by CTest under mpiexec -n 1, 2, 3
// and 4: float and double sums equal the tests' exact reference bit for bit
// for every rank count and every split of the data (some ranks empty), and
// all_reduce is correctly rounded per element. Every rank builds the same
// global data from fixed seeds.
#include <dpar/mpi.hpp>

#include "collective_common.hpp"
#include "common.hpp"
#include "exact_reference.hpp"

#include <bit>
#include <numeric>
#include <string>
#include <vector>

using dpar_test::exact_reference;
using dpar_test::mat2;
using dpar_test::mat2_mul;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Ways to cut n elements over the ranks: even, uneven with rank 1 empty, all on the last rank.
std::vector<std::vector<std::size_t>> cuts(std::size_t n) {
  const auto ranks = static_cast<std::size_t>(world_size());
  std::vector<std::vector<std::size_t>> all;
  std::vector<std::size_t> even{0}, uneven{0}, last(ranks, 0);
  for (std::size_t r = 1; r <= ranks; ++r) even.push_back(n * r / ranks);
  for (std::size_t r = 0; r < ranks; ++r) {
    std::size_t share = (r == 1) ? 0 : n * (r + 1) * 2 / (ranks * (ranks + 1));
    uneven.push_back(std::min(n, uneven.back() + share));
  }
  uneven.back() = n;
  last.push_back(n);
  return {even, uneven, last};
}

template <class T>
std::vector<T> my_part(const std::vector<T>& global, const std::vector<std::size_t>& cut) {
  const int r = world_rank();
  return std::vector<T>(global.begin() + static_cast<std::ptrdiff_t>(cut[r]),
                        global.begin() + static_cast<std::ptrdiff_t>(cut[r + 1]));
}

template <class Body>
void for_each_policy(Body&& body) {
  body(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD)), std::string("deterministic(mpi(seq))"));
  body(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD, dpar::par)), std::string("deterministic(mpi(par))"));
  body(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD, dpar::par.on(dpar_test::pool(3)))),
       std::string("deterministic(mpi(par.on(pool(3))))"));
}

template <class T>
bool same_bits(T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  return (std::isnan(a) && std::isnan(b)) || std::bit_cast<U>(a) == std::bit_cast<U>(b);
}

const std::vector<std::size_t> sizes = {0, 1, 2, 13, 1009, 100003, (std::size_t{1} << 20) + 3};

}  // namespace

TEST_CASE("deterministic mpi sums are correctly rounded for any rank count and split", "[mpi][deterministic]") {
  dpar_test::within_seconds(280, "deterministic mpi sums", [] {
    for (std::size_t n : sizes) {
      auto doubles = dpar_test::wide_range<double>(n, n + 1);
      auto floats = dpar_test::cancelling<float>(n, n + 2);
      auto other = dpar_test::wide_range<double>(n, n + 3);
      exact_reference sum, sum_f, dot;
      for (std::size_t i = 0; i < n; ++i) sum.add(doubles[i]), sum_f.add(floats[i]), dot.add_product(doubles[i], other[i]);
      sum.add(0.5), sum_f.add(0.5), dot.add(0.5);
      for (auto& cut : cuts(n)) {
        auto my_doubles = my_part(doubles, cut), my_other = my_part(other, cut);
        auto my_floats = my_part(floats, cut);
        for_each_policy([&](auto p, const std::string& name) {
          INFO(name << " n=" << n << " ranks=" << world_size());
          double s = dpar::reduce(p, my_doubles, 0.5);
          CHECK(same_bits(s, sum.rounded(s)));
          float f = dpar::reduce(p, my_floats, 0.5f);
          CHECK(same_bits(f, sum_f.rounded(f)));
          double d = dpar::transform_reduce(p, my_doubles.begin(), my_doubles.end(), my_other.begin(), 0.5);
          CHECK(same_bits(d, dot.rounded(d)));
        });
      }
    }
  });
}

// Issue 27, item 13: subnormal results over MPI are rounded once (each rank's
// part exact, the ranks' digits merged, one rounding at the subnormal unit).
TEST_CASE("deterministic mpi sums with subnormal results are rounded once", "[mpi][deterministic]") {
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{1009}, std::size_t{16411}}) {
    const auto doubles = dpar_test::subnormal_products<double>(n, 3 * n);
    const auto floats = dpar_test::subnormal_products<float>(n, 3 * n + 1);
    const auto &a = doubles.first, &b = doubles.second;
    const auto &fa = floats.first, &fb = floats.second;
    auto tiny = dpar_test::binade_range(n, -160, -126, 3 * n + 2);  // sums are subnormal floats
    exact_reference products, float_products, tiny_sum;
    for (std::size_t i = 0; i < n; ++i)
      products.add_product(a[i], b[i]), float_products.add_product(fa[i], fb[i]), tiny_sum.add(tiny[i]);
    for (auto& cut : cuts(n)) {
      auto my_a = my_part(a, cut), my_b = my_part(b, cut), my_tiny = my_part(tiny, cut);
      auto my_fa = my_part(fa, cut), my_fb = my_part(fb, cut);
      for_each_policy([&](auto p, const std::string& name) {
        INFO(name << " n=" << n << " ranks=" << world_size());
        const double d = dpar::transform_reduce(p, my_a.begin(), my_a.end(), my_b.begin(), 0.0);
        CHECK(same_bits(d, products.rounded(d)));
        const float f = dpar::transform_reduce(p, my_fa.begin(), my_fa.end(), my_fb.begin(), 0.0f);
        CHECK(same_bits(f, float_products.rounded(f)));
        const float r = dpar::reduce(p, my_tiny, 0.0f);
        CHECK(same_bits(r, tiny_sum.rounded(r)));
        const float t = dpar::transform_reduce(p, my_tiny, 0.0f, std::plus<>{}, [](double x) { return x; });
        CHECK(same_bits(t, tiny_sum.rounded(t)));
      });
    }
  }
  // all_reduce of subnormal columns over the ranks
  std::vector<std::vector<double>> columns;
  for (int r = 0; r < world_size(); ++r)
    columns.push_back(dpar_test::subnormal<double>(1009, 70 + static_cast<std::uint64_t>(r)));
  auto summed = columns[static_cast<std::size_t>(world_rank())];
  dpar::all_reduce(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD)), summed);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < summed.size(); ++i) {
    exact_reference e;
    for (const auto& c : columns) e.add(c[i]);
    wrong += !same_bits(summed[i], e.rounded(summed[i]));
  }
  CHECK(wrong == 0);
}

TEST_CASE("deterministic mpi all_reduce is correctly rounded per element", "[mpi][deterministic]") {
  dpar_test::within_seconds(280, "deterministic mpi all_reduce", [] {
    const int ranks = world_size();
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1009}, std::size_t{300007}}) {
      std::vector<std::vector<double>> all;
      for (int r = 0; r < ranks; ++r) all.push_back(dpar_test::wide_range<double>(n, 50 * n + r));
      if (ranks >= 2)
        for (std::size_t i = 0; i < n; i += 3) all[1][i] = -all[0][i];  // cancellation
      std::vector<float> exact_f(n);
      std::vector<double> exact(n);
      for (auto p_name : {0, 1}) {
        for_each_policy([&](auto p, const std::string& name) {
          INFO(name << " n=" << n << " ranks=" << ranks << (p_name ? " float" : " double"));
          std::size_t wrong = 0;
          if (p_name == 0) {
            auto mine = all[static_cast<std::size_t>(world_rank())];
            dpar::all_reduce(p, mine);
            for (std::size_t i = 0; i < n; ++i) {
              exact_reference e;
              for (int r = 0; r < ranks; ++r) e.add(all[static_cast<std::size_t>(r)][i]);
              wrong += !same_bits(mine[i], e.rounded(mine[i]));
            }
            auto mean = all[static_cast<std::size_t>(world_rank())];
            dpar::all_reduce_mean(p, mean);
            for (std::size_t i = 0; i < n; ++i) wrong += !same_bits(mean[i], mine[i] / ranks);
          } else {
            std::vector<float> mine(n);
            for (std::size_t i = 0; i < n; ++i) mine[i] = static_cast<float>(all[static_cast<std::size_t>(world_rank())][i]);
            dpar::all_reduce(p, mine);
            for (std::size_t i = 0; i < n; ++i) {
              exact_reference e;
              for (int r = 0; r < ranks; ++r) e.add(static_cast<float>(all[static_cast<std::size_t>(r)][i]));
              wrong += !same_bits(mine[i], e.rounded(mine[i]));
            }
          }
          CHECK(wrong == 0);
        });
      }
    }
    // lengths that differ between ranks are an error on every rank
    std::vector<double> uneven(ranks > 1 && world_rank() == 1 ? 5 : 4);
    if (ranks > 1)
      CHECK_THROWS_AS(dpar::all_reduce(dpar::deterministic(dpar::mpi(MPI_COMM_WORLD)), uneven), dpar::collective_error);
  });
}

TEST_CASE("deterministic mpi: other ops in rank order, scans the same bits for any pool", "[mpi][deterministic]") {
  dpar_test::within_seconds(280, "deterministic mpi other ops", [] {
    for (std::size_t n : {std::size_t{0}, std::size_t{13}, std::size_t{40009}}) {
      auto mats = dpar_test::random_mat2s(n, n + 5);
      auto doubles = dpar_test::wide_range<double>(n, n + 6);
      mat2 expected = std::accumulate(mats.begin(), mats.end(), dpar_test::mat2_identity, mat2_mul{});
      std::vector<mat2> scanned(n);
      std::inclusive_scan(mats.begin(), mats.end(), scanned.begin(), mat2_mul{});
      for (auto& cut : cuts(n)) {
        auto my_mats = my_part(mats, cut);
        auto my_doubles = my_part(doubles, cut);
        std::vector<double> first_scan;
        for_each_policy([&](auto p, const std::string& name) {
          INFO(name << " n=" << n << " ranks=" << world_size());
          CHECK(dpar::reduce(p, my_mats, dpar_test::mat2_identity, mat2_mul{}) == expected);
          std::vector<mat2> out(my_mats.size());
          dpar::inclusive_scan(p, my_mats, out.begin(), mat2_mul{});
          CHECK(out == my_part(scanned, cut));
          std::vector<double> scan(my_doubles.size());
          dpar::exclusive_scan(p, my_doubles, scan.begin(), 0.25);
          if (first_scan.empty()) first_scan = scan;
          CHECK(std::equal(scan.begin(), scan.end(), first_scan.begin(), first_scan.end(),
                           [](double a, double b) { return same_bits(a, b); }));
        });
      }
    }
  });
}
