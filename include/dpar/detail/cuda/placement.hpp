#pragma once
// Which device a device tensor's memory is on, in plain C++ (no CUDA header)
// so that it is tested on machines without a GPU. Kernels and cuBLAS calls on
// one device that touch memory of another fail with an illegal address, so a
// mismatch is refused here, by name, before any work is queued.

#include <stdexcept>
#include <string>

namespace dpar::detail::cuda {

// The device of a tensor bound to `bound` (-1: not bound to any yet) that
// work on device `place` (-1: no place, e.g. a plain resize) allocates or
// reads: its own; an unbound tensor binds to the place's device. Refused:
// a tensor bound to another device than the place's, and an unbound one
// with no place to take a device from. `what` names the tensor.
inline int tensor_device(int bound, int place, const std::string& what) {
  if (bound < 0 && place < 0)
    throw std::logic_error(what + " is not on any device yet: construct it with a device, or fill it through a "
                                  "place (a model, a policy) on one");
  if (bound >= 0 && place >= 0 && bound != place)
    throw std::invalid_argument(what + " is on device " + std::to_string(bound) + " but the work is on device " +
                                std::to_string(place) + "; use a tensor of device " + std::to_string(place));
  return bound >= 0 ? bound : place;
}

}  // namespace dpar::detail::cuda
