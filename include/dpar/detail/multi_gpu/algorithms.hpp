#pragma once
// The algorithms of dpar/algorithm/ that dpar::multi_gpu runs on
// dpar::sharded_vector (public overloads in sharded_algorithms.hpp). Each
// shard runs dpar::gpu's call (detail/cuda/algorithms.hpp) on its device and
// stream, every shard queued before any wait; the host combines the shards'
// results in shard order (detail/shard_combine.hpp, tested on the CPU).
//
//   fill, iota, copy          shard-local (iota counts from the shard's offset)
//   count, count_if,          one count per shard (the backend's transform_reduce),
//   any_of, all_of, none_of     summed
//   find, find_if,            one least index per shard (CUB's TransformReduce over
//   mismatch, equal             indices); the first shard that has one wins
//   copy_if, remove_copy_if,  each shard selects into a scratch buffer on its device
//   unique_copy                 (cub::DeviceSelect::If, Flagged) and counts; the counts
//                               give every shard's place in the output (exclusive
//                               offsets), and each shard copies its kept elements there
//                               (cudaMemcpyPeerAsync on its stream), so they sit at the
//                               front of the output in input order
//   adjacent_difference       per shard, each shard's first element then fixed up with
//                               the previous shard's last (copied to its device)
//   transform scans           the transform per shard into the output, then the
//                               sharded scan in place (sharded_algorithms.hpp)
//
// Never run on a GPU: compile-checked under nvcc only.

#include <thrust/iterator/counting_iterator.h>

#include <cstddef>
#include <cub/device/device_reduce.cuh>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

#include "../../functional.hpp"
#include "../../gpu/error.hpp"
#include "../../gpu/memory.hpp"
#include "../../gpu/multi_gpu_policy.hpp"
#include "../../gpu/sharded_vector.hpp"
#include "../cuda/algorithms.hpp"
#include "../shard_combine.hpp"
#include "backend.hpp"

namespace dpar::detail::multi_gpu {

template <class Pred>
struct one_if {
  Pred pred;
  template <class X>
  __host__ __device__ std::size_t operator()(const X& x) const {
    return pred(x) ? 1 : 0;
  }
};

struct algorithms {
  template <class T, class U>
  static void fill(const multi_gpu_policy& p, sharded_vector<T>& v, const U& value) {
    check_layout(p, v, "dpar::fill", "range");
    for (std::size_t i = 0; i < v.shard_count(); ++i) {
      const auto& s = v.shard_at(i);
      if (s.size) cuda::algorithms::fill(p.entry(i), s.begin(), s.end(), value);
    }
  }

  // v[i] = value + i over the whole vector.
  template <class T>
  static void iota(const multi_gpu_policy& p, sharded_vector<T>& v, const T& value) {
    check_layout(p, v, "dpar::iota", "range");
    for (std::size_t i = 0; i < v.shard_count(); ++i) {
      const auto& s = v.shard_at(i);
      if (s.size) cuda::algorithms::iota(p.entry(i), s.begin(), s.end(), value, s.offset);
    }
  }

  template <class T, class Pred>
  static std::size_t count_if(const multi_gpu_policy& p, const sharded_vector<T>& v, Pred pred) {
    return backend::sharded_transform_reduce(p, v, std::size_t{0}, std::plus<std::size_t>{}, one_if<Pred>{pred});
  }

  // The global position of the first element pred holds for, v.size() if none.
  template <class T, class Pred>
  static std::size_t find_if(const multi_gpu_policy& p, const sharded_vector<T>& v, Pred pred) {
    check_layout(p, v, "dpar::find_if", "input");
    return first_index(v.shards(), [&](const shard<T>& s, std::size_t) {
      return cuda::index_if<const T*, Pred>{s.data, pred, s.size};
    });
  }

  // The global position of the first pair pred fails for, a.size() if none.
  template <class T1, class T2, class Pred>
  static std::size_t mismatch(const multi_gpu_policy& p, const sharded_vector<T1>& a, const sharded_vector<T2>& b,
                              Pred pred) {
    check_same_layout(p, a, b, "dpar::mismatch or dpar::equal", "first input", "second input");
    return first_index(a.shards(), [&](const shard<T1>& s, std::size_t i) {
      return cuda::index_unless_equal<const T1*, const T2*, Pred>{s.data, b.shard_at(i).data, pred, s.size};
    });
  }

  // The elements pred holds for (fails for, if `negate`) to the front of
  // out, in order; returns how many. out keeps its length; the elements
  // past the kept ones are left as they were. out may be in.
  template <class T, class Pred>
  static std::size_t copy_if(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<T>& out,
                             Pred pred, bool negate, const char* algorithm) {
    return pack(p, in, out, algorithm, [&](std::size_t i, const shard<T>& s, T* scratch) {
      return cuda::algorithms::queue_copy_if(p.entry(i), s.data, s.size, scratch, pred, negate, algorithm);
    });
  }

  // The first element of each run of equal ones to the front of out, as
  // copy_if; a shard's first element is compared with the last of the
  // nearest earlier shard holding any.
  template <class T, class Pred>
  static std::size_t unique_copy(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<T>& out,
                                 Pred pred) {
    check_same_layout(p, in, out, "dpar::unique or dpar::unique_copy");
    const auto before = elements_before(in.shards());
    return pack(p, in, out, "dpar::unique or dpar::unique_copy", [&](std::size_t i, const shard<T>& s, T* scratch) {
      return cuda::algorithms::queue_unique_copy(p.entry(i), s.data, s.size, scratch, pred,
                                                 before[i] ? before[i]->template as<T>() : nullptr);
    });
  }

  // out[i] = op(in[i], in[i - 1]), out[0] = in[0] over the whole vector:
  // each shard's first element is fixed up with the last of the nearest
  // earlier shard holding any. in and out must differ (as std's ranges).
  template <class T, class U, class Op>
  static void adjacent_difference(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<U>& out,
                                  Op op) {
    check_same_layout(p, in, out, "dpar::adjacent_difference");
    if (static_cast<const void*>(&in) == static_cast<const void*>(&out))
      throw std::invalid_argument("dpar::adjacent_difference: the input and output sharded_vectors must differ");
    const auto before = elements_before(in.shards());
    for (std::size_t i = 0; i < in.shard_count(); ++i) {
      const auto &s = in.shard_at(i), &o = out.shard_at(i);
      if (s.size == 0) continue;
      cuda::algorithms::adjacent_difference(p.entry(i), s.begin(), s.end(), o.begin(), op);
      if (before[i])  // out[0] = op(in[0], the previous shard's last)
        cuda::backend::transform(p.entry(i), s.data, s.data + 1, before[i]->template as<T>(), o.data, op);
    }
  }

 private:
  // Packs what every shard selects at the front of out, in shard order:
  // select(i, shard, scratch) queues shard i's selection into a scratch
  // buffer on its device and returns its count (queue_copy_if's). All are
  // queued before any count is read; reading the counts waits for every
  // selection, so the copies that follow cannot overwrite what one still reads
  // (out may be in). The counts, in shard order, place every shard's kept
  // elements (packing_pieces), and each shard copies its pieces with
  // cudaMemcpyPeerAsync on its stream after the destination's stream, which
  // then waits for it.
  template <class T, class Select>
  static std::size_t pack(const multi_gpu_policy& p, const sharded_vector<T>& in, sharded_vector<T>& out,
                          const char* algorithm, Select select) {
    check_same_layout(p, in, out, algorithm);
    const std::size_t k = in.shard_count();
    std::vector<std::unique_ptr<cuda::temp_buffer>> kept(k), counted(k);
    for (std::size_t i = 0; i < k; ++i) {
      const auto& s = in.shard_at(i);
      if (s.size == 0) continue;
      kept[i] = std::make_unique<cuda::temp_buffer>(s.device, s.size * sizeof(T), s.stream);
      counted[i] = select(i, s, kept[i]->as<T>());
    }
    std::vector<std::size_t> counts(k), sizes(k);
    std::size_t total = 0;
    for (std::size_t i = 0; i < k; ++i) {
      sizes[i] = out.shard_at(i).size;
      counts[i] = counted[i] ? cuda::algorithms::selected_count(*counted[i]) : 0;
      total += counts[i];
    }
    const auto pieces = shards::packing_pieces(counts, sizes);
    for (const shards::piece& c : pieces) {
      const auto &from = in.shard_at(c.from), &to = out.shard_at(c.to);
      if (to.stream != from.stream)
        cuda::stream_wait(from.stream, to.device, to.stream, "ordering a compaction's copy after its destination's work");
      cuda::device_scope scope(from.device);
      cuda::check(cudaMemcpyPeerAsync(to.data + c.to_at, to.device, kept[c.from]->as<T>() + c.from_at, from.device,
                                      c.count * sizeof(T), from.stream),
                  "cudaMemcpyPeerAsync (kept elements)", from.device);
    }
    for (const shards::piece& c : pieces) {
      const auto &from = in.shard_at(c.from), &to = out.shard_at(c.to);
      if (to.stream != from.stream)
        cuda::stream_wait(to.stream, from.device, from.stream, "ordering work on a shard after a compaction's copies");
    }
    return total;  // the scratch buffers are freed in the order of their shards' streams, after the copies
  }

  // For each shard, a copy on its device of the element before its first
  // (the last of the nearest earlier shard holding any; previous_nonempty),
  // or none: copied on the shard's stream after the source's stream.
  template <class T>
  static std::vector<std::unique_ptr<cuda::temp_buffer>> elements_before(std::span<const shard<T>> shards) {
    std::vector<std::size_t> sizes;
    for (const auto& s : shards) sizes.push_back(s.size);
    const auto previous = shards::previous_nonempty(sizes);
    std::vector<std::unique_ptr<cuda::temp_buffer>> before(shards.size());
    for (std::size_t i = 0; i < shards.size(); ++i) {
      if (!previous[i]) continue;
      const shard<T>&from = shards[*previous[i]], &to = shards[i];
      before[i] = std::make_unique<cuda::temp_buffer>(to.device, sizeof(T), to.stream);
      if (from.stream != to.stream)
        cuda::stream_wait(to.stream, from.device, from.stream, "ordering the copy of a shard's last element");
      cuda::device_scope scope(to.device);
      cuda::check(cudaMemcpyPeerAsync(before[i]->as<T>(), to.device, from.data + from.size - 1, from.device,
                                      sizeof(T), to.stream),
                  "cudaMemcpyPeerAsync (a shard's last element)", to.device);
    }
    return before;
  }

  // The global position of the first index that a shard's functor,
  // make(shard, i), maps to less than the shard's size; the sum of the sizes
  // if none.
  template <class T, class Make>
  static std::size_t first_index(std::span<const shard<T>> shards, Make make) {
    std::vector<queued_partial> found(shards.size());
    for (std::size_t i = 0; i < shards.size(); ++i) {
      const shard<T>& s = shards[i];
      if (s.size == 0) continue;
      const auto f = make(s, i);
      found[i] = queue_partial<std::size_t>(s.device, s.stream, s.size, minimum<std::size_t>{}, f,
                                            [&](void* temp, std::size_t& bytes, std::size_t* out, auto count,
                                                std::size_t id) {
                                              thrust::counting_iterator<decltype(count)> index(0);
                                              return cub::DeviceReduce::TransformReduce(
                                                  temp, bytes, index, out, count, minimum<std::size_t>{}, f, id,
                                                  s.stream);
                                            });
    }
    std::vector<std::size_t> local(shards.size()), sizes(shards.size());
    for (std::size_t i = 0; i < shards.size(); ++i) {
      sizes[i] = shards[i].size;
      local[i] = found[i] ? found[i]->fetch<std::size_t>() : 0;
    }
    return shards::first_match(local, sizes);
  }
};

}  // namespace dpar::detail::multi_gpu
