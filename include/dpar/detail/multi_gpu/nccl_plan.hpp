#pragma once
// The host-side choices of the device all_reduce's NCCL path, in plain C++ (no
// CUDA or NCCL header), so that they are tested on machines without a GPU:
// whether NCCL may take a call at all, which communicator set it uses, and
// which rank of that set each entry of the policy drives.

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../../functional.hpp"

namespace dpar::detail::multi_gpu {

// NCCL refuses a device listed twice ("Duplicate GPU detected").
inline bool distinct_devices(const std::vector<int>& devices) {
  std::vector<int> sorted = devices;
  std::sort(sorted.begin(), sorted.end());
  return std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
}

// True where NCCL's own order of combining the entries (ring, tree or NVLS,
// chosen by NCCL and changing with the size) can give other bits than entry
// order: sums and products of floating-point values. Such calls take the
// ordered path unless the policy opts into NCCL's order.
template <class Op, class T>
inline constexpr bool order_changes_bits =
    std::is_floating_point_v<T> && (op_kind_v<Op, T> == op_kind::sum || op_kind_v<Op, T> == op_kind::product);

// One communicator set per SET of distinct devices, whatever their order in a
// policy's list: {0,1} and {1,0} share one. `devices` (the cache key) is the
// list sorted, rank i of the set drives devices[i], and entry r of the policy
// uses rank rank_of[r].
struct nccl_ranks {
  std::vector<int> devices;
  std::vector<std::size_t> rank_of;
};

inline nccl_ranks nccl_ranks_of(const std::vector<int>& list) {
  nccl_ranks r{list, {}};
  std::sort(r.devices.begin(), r.devices.end());
  if (std::adjacent_find(r.devices.begin(), r.devices.end()) != r.devices.end())
    throw std::invalid_argument("dpar::multi_gpu: NCCL needs distinct devices; a device is listed twice");
  for (int d : list)
    r.rank_of.push_back(static_cast<std::size_t>(std::lower_bound(r.devices.begin(), r.devices.end(), d) -
                                                 r.devices.begin()));
  return r;
}

}  // namespace dpar::detail::multi_gpu
