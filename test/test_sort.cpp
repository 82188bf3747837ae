// dpar::sort, stable_sort and sort_by_key on the CPU policies, against
// std::sort / std::stable_sort: the radix path (arithmetic keys with
// std::less / std::greater) and the merge path (other types, comparators and
// iterators), sizes across the cut-offs, key patterns, stability, element types
// that are neither default-constructible nor trivially copyable, and
// comparators that throw; and the exact splits of a multi-device sample sort
// (detail/sort_splits.hpp) with host vectors as shards.
#include "common.hpp"

#include <dpar/detail/sort_splits.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

using dpar_test::for_each_policy;

namespace {

// Across the cut-offs: radix (2048), a merge run (4096: parallel merges from
// 8192); big_size: parallel radix passes (32768 elements a part) and three
// rounds of merges on 8 threads (from 32768).
const std::vector<std::size_t> sort_sizes = {0, 1, 2, 3, 7, 97, 2047, 2048, 4099, 20011};
constexpr std::size_t big_size = 70001;

enum class pattern { random, all_equal, sorted, reversed, few_distinct };
const pattern patterns[] = {pattern::random, pattern::all_equal, pattern::sorted, pattern::reversed,
                            pattern::few_distinct};

template <class T>
T random_value(std::mt19937_64& rng) {
  if constexpr (std::is_floating_point_v<T>) {
    // wide range of magnitudes and both signs
    return static_cast<T>(std::uniform_real_distribution<double>(-1, 1)(rng) *
                          std::pow(10.0, std::uniform_int_distribution<int>(-20, 20)(rng)));
  } else {
    return static_cast<T>(rng());  // every bit random: negative and positive for signed types
  }
}

template <class T>
std::vector<T> keys(std::size_t n, pattern p, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = random_value<T>(rng);
  switch (p) {
    case pattern::random: break;
    case pattern::all_equal: std::fill(v.begin(), v.end(), T(3)); break;
    case pattern::sorted: std::sort(v.begin(), v.end()); break;
    case pattern::reversed: std::sort(v.begin(), v.end(), std::greater<>{}); break;
    case pattern::few_distinct:
      for (auto& x : v) x = static_cast<T>(static_cast<int>(rng() % 7) - 3);
      break;
  }
  return v;
}

template <class T>
void check_arithmetic_sorts() {
  std::uint64_t seed = 1;
  auto sizes = sort_sizes;
  sizes.push_back(big_size);
  for (std::size_t n : sizes) {
    for (pattern p : patterns) {
      if (n == big_size && p != pattern::random) continue;
      const auto input = keys<T>(n, p, ++seed);
      auto ascending = input, descending = input;
      std::sort(ascending.begin(), ascending.end());
      std::sort(descending.begin(), descending.end(), std::greater<>{});
      for_each_policy([&](const auto& policy, const std::string& name) {
        INFO(name << ", n = " << n << ", pattern " << static_cast<int>(p));
        auto v = input;
        dpar::sort(policy, v.begin(), v.end());
        CHECK(v == ascending);
        v = input;
        dpar::stable_sort(policy, v);
        CHECK(v == ascending);
        v = input;
        dpar::sort(policy, v, std::greater<T>{});
        CHECK(v == descending);
        v = input;
        dpar::stable_sort(policy, v.begin(), v.end(), std::ranges::greater{});
        CHECK(v == descending);
      });
    }
  }
}

// 16 bytes, ordered by key only: equal keys are told apart by `order`.
struct record {
  std::int64_t key;
  std::int64_t order;
  friend bool operator==(const record&, const record&) = default;
};
struct by_key {
  bool operator()(const record& a, const record& b) const { return a.key < b.key; }
};

std::vector<record> records(std::size_t n, std::int64_t distinct, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<record> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = {static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(distinct)),
                                              static_cast<std::int64_t>(i)};
  return v;
}

// Neither default-constructible nor trivially copyable; moved-from values are empty.
class word {
 public:
  explicit word(std::string s) : s_(std::move(s)) {}
  const std::string& str() const { return s_; }
  friend bool operator<(const word& a, const word& b) { return a.s_ < b.s_; }
  friend bool operator==(const word&, const word&) = default;

 private:
  std::string s_;
};

std::vector<word> words(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<word> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string s = std::to_string(rng() % 5000);
    s.append(i % 3 * 8, 'x');
    v.emplace_back(std::move(s));
  }
  return v;
}

}  // namespace

TEST_CASE("sort and stable_sort give std::sort's order: int32 (radix)", "[sort]") { check_arithmetic_sorts<std::int32_t>(); }
TEST_CASE("sort and stable_sort give std::sort's order: uint64 (radix)", "[sort]") { check_arithmetic_sorts<std::uint64_t>(); }
TEST_CASE("sort and stable_sort give std::sort's order: float (radix)", "[sort]") { check_arithmetic_sorts<float>(); }
TEST_CASE("sort and stable_sort give std::sort's order: double (radix)", "[sort]") { check_arithmetic_sorts<double>(); }
TEST_CASE("sort and stable_sort give std::sort's order: int8 and int16 (radix)", "[sort]") {
  for (std::size_t n : {std::size_t{5000}, std::size_t{70001}}) {
    const auto bytes = keys<std::int8_t>(n, pattern::random, n);
    const auto shorts = keys<std::int16_t>(n, pattern::random, n + 1);
    auto want_bytes = bytes;
    auto want_shorts = shorts;
    std::sort(want_bytes.begin(), want_bytes.end());
    std::sort(want_shorts.begin(), want_shorts.end());
    for_each_policy([&](const auto& policy, const std::string& name) {
      INFO(name << ", n = " << n);
      auto b = bytes;
      auto s = shorts;
      dpar::sort(policy, b);
      dpar::sort(policy, s);
      CHECK(b == want_bytes);
      CHECK(s == want_shorts);
    });
  }
}

TEST_CASE("floats: -0.0 and +0.0 are equal keys, kept in input order by stable_sort", "[sort]") {
  for (std::size_t n : {std::size_t{100}, std::size_t{5003}, std::size_t{70001}}) {
    std::mt19937_64 rng(n);
    std::vector<double> input(n);
    for (auto& x : input) {
      const auto r = rng() % 4;
      x = r == 0 ? -0.0 : r == 1 ? 0.0 : r == 2 ? -1.5 : 2.5;
    }
    auto want = input;  // the sign bits of the zeros, in order, are the witness
    std::stable_sort(want.begin(), want.end());
    for_each_policy([&](const auto& policy, const std::string& name) {
      INFO(name << ", n = " << n);
      for (auto comp : {0, 1}) {
        auto v = input;
        if (comp == 0) dpar::stable_sort(policy, v);
        else dpar::sort_by_key(policy, v, std::vector<int>(n));
        REQUIRE(v.size() == want.size());
        bool same_bits = true;
        for (std::size_t i = 0; i < n; ++i) same_bits = same_bits && std::signbit(v[i]) == std::signbit(want[i]) && v[i] == want[i];
        CHECK(same_bits);
      }
      auto v = input;
      dpar::sort(policy, v);
      CHECK(std::is_sorted(v.begin(), v.end()));
      CHECK(std::count_if(v.begin(), v.end(), [](double x) { return x == 0 && std::signbit(x); }) ==
            std::count_if(input.begin(), input.end(), [](double x) { return x == 0 && std::signbit(x); }));
    });
  }
}

TEST_CASE("floats: NaNs go to the ends by sign bit, infinities in order", "[sort]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::vector<double> input;
  for (int i = 0; i < 1000; ++i)
    for (double x : {nan, 1.0, -inf, -nan, inf, -2.0, 0.0}) input.push_back(x);
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    auto v = input;
    dpar::sort(policy, v);
    const auto first_number = std::find_if(v.begin(), v.end(), [](double x) { return !std::isnan(x); });
    const auto last_number = std::find_if(first_number, v.end(), [](double x) { return std::isnan(x); });
    CHECK(first_number - v.begin() == 1000);
    CHECK(std::all_of(v.begin(), first_number, [](double x) { return std::signbit(x); }));
    CHECK(v.end() - last_number == 1000);
    CHECK(std::none_of(last_number, v.end(), [](double x) { return std::signbit(x) || !std::isnan(x); }));
    CHECK(std::is_sorted(first_number, last_number));
    CHECK(*first_number == -inf);
  });
}

TEST_CASE("16-byte records by a user comparator: stable_sort is stable, sort orders", "[sort]") {
  auto sizes = sort_sizes;
  sizes.push_back(big_size);
  for (std::size_t n : sizes) {
    for (std::int64_t distinct : {std::int64_t{1}, std::int64_t{13}, std::int64_t{1} << 40}) {
      if (n == big_size && distinct != 13) continue;
      const auto input = records(n, distinct, n + static_cast<std::size_t>(distinct));
      auto want = input;
      std::stable_sort(want.begin(), want.end(), by_key{});
      for_each_policy([&](const auto& policy, const std::string& name) {
        INFO(name << ", n = " << n << ", distinct keys " << distinct);
        auto v = input;
        dpar::stable_sort(policy, v, by_key{});
        CHECK(v == want);
        v = input;
        dpar::sort(policy, v.begin(), v.end(), by_key{});
        CHECK(std::is_sorted(v.begin(), v.end(), by_key{}));
        // the same multiset: equal once each key's records are in input order
        std::stable_sort(v.begin(), v.end(), [](const record& a, const record& b) { return a.order < b.order; });
        CHECK(v == input);
      });
    }
  }
}

TEST_CASE("elements neither default-constructible nor trivially copyable, and deque iterators", "[sort]") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{3001}, std::size_t{20011}}) {
    const auto input = words(n, n);
    auto want = input;
    std::stable_sort(want.begin(), want.end());
    const auto numbers = keys<int>(n, pattern::random, n);
    auto want_numbers = numbers;
    std::sort(want_numbers.begin(), want_numbers.end());
    for_each_policy([&](const auto& policy, const std::string& name) {
      INFO(name << ", n = " << n);
      auto v = input;
      dpar::stable_sort(policy, v);
      CHECK(v == want);
      v = input;
      dpar::sort(policy, v);
      CHECK(v == want);  // equal words are equal
      std::deque<int> d(numbers.begin(), numbers.end());  // not contiguous: the merge path
      dpar::sort(policy, d);
      CHECK(std::equal(d.begin(), d.end(), want_numbers.begin(), want_numbers.end()));
    });
  }
}

TEST_CASE("sort_by_key: stable, values follow their keys", "[sort][by_key]") {
  auto sizes = sort_sizes;
  sizes.push_back(big_size);
  for (std::size_t n : sizes) {
    for (pattern p : {pattern::random, pattern::few_distinct}) {
      if (n == big_size && p != pattern::random) continue;
      const auto k32 = keys<std::int32_t>(n, p, n + 7);
      const auto k64 = keys<double>(n, p, n + 8);
      std::vector<std::size_t> order(n);
      std::iota(order.begin(), order.end(), std::size_t{0});
      // The reference: positions sorted stably by key.
      auto reference = [&](const auto& k, auto comp) {
        auto o = order;
        std::stable_sort(o.begin(), o.end(), [&](std::size_t a, std::size_t b) { return comp(k[a], k[b]); });
        return o;
      };
      const auto want32 = reference(k32, std::less<>{});
      const auto want64 = reference(k64, std::greater<>{});
      for_each_policy([&](const auto& policy, const std::string& name) {
        INFO(name << ", n = " << n << ", pattern " << static_cast<int>(p));
        auto k = k32;
        auto values = order;
        dpar::sort_by_key(policy, k.begin(), k.end(), values.begin());
        CHECK(values == want32);
        CHECK(std::is_sorted(k.begin(), k.end()));
        auto d = k64;
        std::vector<word> labels;  // values that are not default-constructible
        for (std::size_t i = 0; i < n; ++i) labels.emplace_back(std::to_string(i));
        dpar::sort_by_key(policy, d, labels, std::greater<>{});
        bool follows = true;
        for (std::size_t i = 0; i < n; ++i) follows = follows && labels[i].str() == std::to_string(want64[i]);
        CHECK(follows);
        CHECK(std::is_sorted(d.begin(), d.end(), std::greater<>{}));
      });
    }
  }
}

TEST_CASE("sort_by_key with a user comparator and non-trivial keys", "[sort][by_key]") {
  for (std::size_t n : {std::size_t{0}, std::size_t{2}, std::size_t{999}, std::size_t{20011}}) {
    const auto k = words(n, n + 3);
    std::vector<int> position(n);
    std::iota(position.begin(), position.end(), 0);
    auto want = position;
    std::stable_sort(want.begin(), want.end(), [&](int a, int b) { return k[a] < k[b]; });
    for_each_policy([&](const auto& policy, const std::string& name) {
      INFO(name << ", n = " << n);
      auto keys_copy = k;
      auto values = position;
      dpar::sort_by_key(policy, keys_copy, values.begin(), [](const word& a, const word& b) { return a < b; });
      CHECK(values == want);
      bool keys_follow = true;
      for (std::size_t i = 0; i < n; ++i) keys_follow = keys_follow && keys_copy[i] == k[static_cast<std::size_t>(want[i])];
      CHECK(keys_follow);
    });
  }
}

TEST_CASE("sort_by_key: a values range shorter than the keys is an error naming both sizes", "[sort][by_key]") {
  std::vector<int> k(10), v(9);
  CHECK_THROWS_WITH(dpar::sort_by_key(dpar::par, k, v), "dpar::sort_by_key: 10 keys but only 9 values");
}

TEST_CASE("a comparator that throws reaches the caller; the pool works afterwards", "[sort][exceptions]") {
  const auto input = records(30000, 1000, 5);
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    std::atomic<int> calls{0};
    auto failing = [&](const record& a, const record& b) {
      if (calls.fetch_add(1, std::memory_order_relaxed) == 20000) throw std::runtime_error("comparator failed");
      return a.key < b.key;
    };
    auto v = input;
    CHECK_THROWS_WITH(dpar::sort(policy, v, failing), "comparator failed");
    calls = 0;
    v = input;
    CHECK_THROWS_WITH(dpar::stable_sort(policy, v, failing), "comparator failed");
    calls = 0;
    auto w = words(10000, 4);
    std::vector<int> values(w.size());
    CHECK_THROWS_WITH(dpar::sort_by_key(policy, w, values,
                                        [&](const word& a, const word& b) {
                                          if (calls.fetch_add(1, std::memory_order_relaxed) == 15000)
                                            throw std::runtime_error("comparator failed");
                                          return a < b;
                                        }),
                      "comparator failed");
    // afterwards: a correct sort on the same policy
    v = input;
    dpar::stable_sort(policy, v, by_key{});
    auto want = input;
    std::stable_sort(want.begin(), want.end(), by_key{});
    CHECK(v == want);
  });
}

TEST_CASE("deterministic(policy) sorts as stable_sort: one order for every pool size", "[sort][deterministic]") {
  const auto input = records(70001, 100, 11);
  auto want = input;
  std::stable_sort(want.begin(), want.end(), by_key{});
  for_each_policy([&](const auto& policy, const std::string& name) {
    INFO(name);
    auto v = input;
    dpar::sort(dpar::deterministic(policy), v, by_key{});
    CHECK(v == want);
  });
}

TEST_CASE("sort inside a pool job (nested) runs and sorts", "[sort][nested]") {
  auto& pool = dpar_test::pool(3);
  std::vector<std::vector<int>> lists(6);
  for (std::size_t i = 0; i < lists.size(); ++i) lists[i] = keys<int>(20000 + i, pattern::random, i);
  dpar::for_each(dpar::par.on(pool), lists, [](std::vector<int>& l) { dpar::sort(dpar::par, l); });
  for (const auto& l : lists) CHECK(std::is_sorted(l.begin(), l.end()));
}

// ---- exact splits (detail/sort_splits.hpp), as dpar::multi_gpu uses them ----
namespace {

// A sorted host vector as the shard exact_splits asks; counts its probes.
template <class K, class Comp>
struct host_shard {
  const std::vector<K>* keys;
  Comp comp;
  std::size_t* probes;
  std::size_t size() const { return keys->size(); }
  K key_at(std::size_t pos) const {
    ++*probes;
    return (*keys)[pos];
  }
  std::size_t lower_bound(const K& key, std::size_t lo, std::size_t hi) const {
    return static_cast<std::size_t>(std::lower_bound(keys->begin() + static_cast<std::ptrdiff_t>(lo),
                                                     keys->begin() + static_cast<std::ptrdiff_t>(hi), key, comp) -
                                    keys->begin());
  }
  std::size_t upper_bound(const K& key, std::size_t lo, std::size_t hi) const {
    return static_cast<std::size_t>(std::upper_bound(keys->begin() + static_cast<std::ptrdiff_t>(lo),
                                                     keys->begin() + static_cast<std::ptrdiff_t>(hi), key, comp) -
                                    keys->begin());
  }
};

// Sorts every shard, splits them between destinations of the given sizes
// and checks the splits against (key, shard, position) order: destination d's
// runs are exactly the elements of global positions [offset_d, offset_d + size_d).
template <class K, class Comp>
void check_splits(std::vector<std::vector<K>> shards, const std::vector<std::size_t>& destination_sizes, Comp comp) {
  std::size_t probes = 0, longest = 0;
  std::vector<host_shard<K, Comp>> views;
  for (auto& shard : shards) {
    std::sort(shard.begin(), shard.end(), comp);
    longest = std::max(longest, shard.size());
    views.push_back({&shard, comp, &probes});
  }
  const auto splits = dpar::detail::exact_splits(views, destination_sizes);
  REQUIRE(splits.size() == shards.size());
  // (shard, position) of every element, in (key, shard, position) order
  std::vector<std::pair<std::size_t, std::size_t>> order;
  for (std::size_t s = 0; s < shards.size(); ++s)
    for (std::size_t i = 0; i < shards[s].size(); ++i) order.emplace_back(s, i);
  std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    return comp(shards[a.first][a.second], shards[b.first][b.second]);
  });
  std::size_t offset = 0;
  std::vector<std::size_t> taken(shards.size(), 0);  // per shard: elements before the boundary
  for (std::size_t d = 0; d <= destination_sizes.size(); ++d) {
    for (std::size_t s = 0; s < shards.size(); ++s) {
      INFO("destination boundary " << d << ", shard " << s);
      REQUIRE(splits[s].size() == destination_sizes.size() + 1);
      CHECK(splits[s][d] == taken[s]);
    }
    if (d == destination_sizes.size()) break;
    for (std::size_t i = offset; i < offset + destination_sizes[d]; ++i) ++taken[order[i].first];
    offset += destination_sizes[d];
  }
  // about shards x log2(longest) probes a boundary
  const std::size_t boundaries = destination_sizes.empty() ? 0 : destination_sizes.size() - 1;
  CHECK(probes <= boundaries * shards.size() * (static_cast<std::size_t>(std::bit_width(longest)) + 1));
}

template <class K>
std::vector<std::vector<K>> random_shards(const std::vector<std::size_t>& sizes, K distinct, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<K>> shards;
  for (std::size_t size : sizes) {
    std::vector<K> shard(size);
    std::uniform_int_distribution<long long> key(0, static_cast<long long>(distinct) - 1);
    for (auto& x : shard) x = static_cast<K>(key(rng));
    shards.push_back(std::move(shard));
  }
  return shards;
}

}  // namespace

TEST_CASE("exact splits of sorted shards: random keys, many equal keys, empty shards, one shard holding all",
          "[sort][splits]") {
  std::mt19937_64 rng(21);
  for (std::size_t count = 1; count <= 8; ++count) {
    for (int distinct : {1, 3, 50, 1000000}) {
      for (int layout = 0; layout < 4; ++layout) {
        // layout 0: random sizes; 1: some shards empty; 2: one shard holds all; 3: all empty
        std::vector<std::size_t> sizes(count);
        for (std::size_t s = 0; s < count; ++s) {
          const std::size_t size = std::uniform_int_distribution<std::size_t>(0, 3000)(rng);
          sizes[s] = layout == 0 ? size : layout == 1 ? (s % 2 == 0 ? 0 : size) : 0;
        }
        if (layout == 2) sizes[count / 2] = 5000;
        INFO(count << " shards, " << distinct << " distinct keys, layout " << layout);
        const auto shards = random_shards<int>(sizes, distinct, rng());
        check_splits(shards, sizes, std::less<>{});
        check_splits(shards, sizes, std::greater<>{});
        // destinations of other sizes than the shards (the same total)
        const std::size_t total = std::accumulate(sizes.begin(), sizes.end(), std::size_t{0});
        std::vector<std::size_t> other(count + 1, total / (count + 1));
        other.back() += total % (count + 1);
        check_splits(shards, other, std::less<>{});
      }
    }
  }
}

TEST_CASE("exact splits by a user comparator on records: equal keys in shard order", "[sort][splits]") {
  struct record {
    int key;
    int payload;
  };
  auto by_key_mod = [](const record& a, const record& b) { return a.key % 7 < b.key % 7; };
  std::mt19937_64 rng(5);
  std::vector<std::vector<record>> shards(5);
  for (auto& shard : shards) {
    shard.resize(std::uniform_int_distribution<std::size_t>(0, 400)(rng));
    for (auto& r : shard) r = {static_cast<int>(rng() % 1000), static_cast<int>(rng() % 1000)};
  }
  std::vector<std::size_t> sizes;
  for (const auto& shard : shards) sizes.push_back(shard.size());
  check_splits(shards, sizes, by_key_mod);
}

TEST_CASE("exact splits: every destination gets its size even under a comparator that is no order (NaN)",
          "[sort][splits]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::vector<float>> shards = {{nan, 1, 2, nan, 3}, {0, nan}, {}, {nan, nan, -1, 5, nan, 2}};
  std::vector<std::size_t> sizes = {5, 2, 0, 6};
  std::size_t probes = 0;
  std::vector<host_shard<float, std::less<>>> views;
  for (auto& shard : shards) views.push_back({&shard, {}, &probes});
  const auto splits = dpar::detail::exact_splits(views, sizes);
  for (std::size_t d = 0; d < sizes.size(); ++d) {
    std::size_t received = 0;
    for (std::size_t s = 0; s < shards.size(); ++s) {
      CHECK(splits[s][d] <= splits[s][d + 1]);
      received += splits[s][d + 1] - splits[s][d];
    }
    CHECK(received == sizes[d]);
  }
}

TEST_CASE("exact splits: destination sizes that do not add up are an error", "[sort][splits]") {
  std::vector<int> keys = {1, 2, 3};
  std::size_t probes = 0;
  std::vector<host_shard<int, std::less<>>> views = {{&keys, {}, &probes}};
  CHECK_THROWS_AS(dpar::detail::exact_splits(views, {1, 1}), std::invalid_argument);
}
