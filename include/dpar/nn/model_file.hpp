#pragma once
// A model alone in a file: its parameters and a hash of its layer list, no
// optimizer state or training progress (that is a trainer checkpoint). The
// file is a checkpoint (same format, same atomic write and checksum) whose
// velocity is empty, so a model file is written and read by the same code.

#include <cstdint>
#include <string>

#include "checkpoint.hpp"
#include "layers.hpp"

namespace dpar::nn {

// Hash of a model's layer list (names and widths), stored in checkpoints and
// model files to refuse one written for another model.
inline std::uint64_t layout_hash(const sequential& m) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ '|') * 1099511628211ull;
  };
  mix(std::to_string(m.in_features()));
  for (std::size_t i = 0; i < m.size(); ++i) mix(m[i].name());
  return h;
}

inline void save_model(const std::string& file, const sequential& model) {
  checkpoint c;
  c.layout = layout_hash(model);
  c.parameters.assign(model.parameters().begin(), model.parameters().end());
  save_checkpoint(file, c);
}

// Loads parameters into `model`, which must have the layers the file was written with.
inline void load_model(const std::string& file, sequential& model) {
  checkpoint c = load_checkpoint(file);
  if (c.layout != layout_hash(model) || c.parameters.size() != model.parameters().size())
    throw checkpoint_error(file, "written for a different model (" + std::to_string(c.parameters.size()) +
                                     " parameters; this model has " + std::to_string(model.parameters().size()) + ")");
  std::copy(c.parameters.begin(), c.parameters.end(), model.parameters().begin());
}

}  // namespace dpar::nn
