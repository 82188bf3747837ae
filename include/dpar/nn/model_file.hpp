#pragma once
// A model alone in a file: its parameters, its state (batch_norm's running
// statistics), a hash of its layer list, and the architecture: a small
// versioned text listing the input width and each layer's name, which holds
// its kind and shapes ("Dense(784,256)", "BatchNorm(256,1e-05,0.1)"), so
// load_model(file) rebuilds the model without code. No optimizer state or
// training progress (that is a trainer checkpoint). The file is a checkpoint
// (same format, same atomic write and checksum) whose velocity is empty, so
// a model file is written and read by the same code.
//
// Layers are rebuilt by kind (a name up to its '(') through a registry that
// knows the built-in layers; a user layer registers its kind and a factory
// (register_layer). Files written before the architecture was recorded (the
// checkpoint formats 01 and 02) still load into a model built by hand.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "batch_norm.hpp"
#include "checkpoint.hpp"
#include "conv.hpp"
#include "dropout.hpp"
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

// Makes a layer from the arguments of its name (the text between the
// parentheses, split at commas; none for a name without them) and the
// features it takes.
using layer_factory = std::function<std::unique_ptr<layer>(const std::vector<std::string>& args, std::size_t in)>;

namespace detail {

inline std::size_t layer_arg_count(const std::string& kind, const std::vector<std::string>& args, std::size_t n) {
  if (args.size() != n)
    throw std::invalid_argument(kind + " takes " + std::to_string(n) + " arguments, got " + std::to_string(args.size()));
  return n;
}
inline std::size_t size_arg(const std::string& s, const char* prefix = "") {
  const std::size_t skip = std::char_traits<char>::length(prefix);
  if (s.compare(0, skip, prefix) != 0 || s.size() == skip || s.find_first_not_of("0123456789", skip) != s.npos)
    throw std::invalid_argument("'" + s + "' is not a size" + (skip ? std::string(" after '") + prefix + "'" : ""));
  return std::stoull(s.substr(skip));
}
inline double number_arg(const std::string& s) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size()) throw std::invalid_argument("'" + s + "' is not a number");
  return v;
}
inline image_shape shape_arg(const std::string& s) {
  std::size_t x1 = s.find('x'), x2 = x1 == s.npos ? s.npos : s.find('x', x1 + 1);
  if (x2 == s.npos) throw std::invalid_argument("'" + s + "' is not an image shape CxHxW");
  return {size_arg(s.substr(0, x1)), size_arg(s.substr(x1 + 1, x2 - x1 - 1)), size_arg(s.substr(x2 + 1))};
}

struct layer_registry {
  std::mutex mutex;
  std::map<std::string, layer_factory> factories;
  layer_registry() {
    using args = const std::vector<std::string>&;
    factories["Dense"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("Dense", a, 2);
      return std::make_unique<dense>(size_arg(a[0]), size_arg(a[1]));
    };
    factories["ReLU"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("ReLU", a, 0);
      return std::make_unique<relu>();
    };
    factories["Tanh"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("Tanh", a, 0);
      return std::make_unique<tanh_layer>();
    };
    factories["Sigmoid"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("Sigmoid", a, 0);
      return std::make_unique<sigmoid>();
    };
    factories["Dropout"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("Dropout", a, 2);
      return std::make_unique<dropout>(static_cast<float>(number_arg(a[0])), size_arg(a[1]));
    };
    factories["BatchNorm"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("BatchNorm", a, 3);
      return std::make_unique<batch_norm>(size_arg(a[0]), static_cast<float>(number_arg(a[1])),
                                          static_cast<float>(number_arg(a[2])));
    };
    factories["Conv2d"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("Conv2d", a, 5);
      return std::make_unique<conv2d>(shape_arg(a[0]), size_arg(a[1]), size_arg(a[2], "k"), size_arg(a[3], "s"),
                                      size_arg(a[4], "p"));
    };
    factories["MaxPool2d"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("MaxPool2d", a, 3);
      return std::make_unique<max_pool2d>(shape_arg(a[0]), size_arg(a[1], "k"), size_arg(a[2], "s"));
    };
    factories["Flatten"] = [](args a, std::size_t) -> std::unique_ptr<layer> {
      layer_arg_count("Flatten", a, 1);
      return std::make_unique<flatten>(shape_arg(a[0]));
    };
  }
  static layer_registry& get() {
    static layer_registry r;
    return r;
  }
};

inline constexpr const char* architecture_magic = "dpar::nn model 1";

}  // namespace detail

// Registers (or replaces) the factory load_model(file) rebuilds layers of
// kind `kind` with: the part of their name() before any '('. Thread-safe.
inline void register_layer(const std::string& kind, layer_factory factory) {
  if (kind.empty() || kind.find_first_of("(),\n") != kind.npos || !factory)
    throw std::invalid_argument("dpar::nn::register_layer: '" + kind +
                                "' is not a layer kind (non-empty, no parentheses, commas or newlines) with a factory");
  auto& r = detail::layer_registry::get();
  std::lock_guard lock(r.mutex);
  r.factories[kind] = std::move(factory);
}

// A model's architecture as model files record it: a version line, the
// input width, then one line per layer, its name().
inline std::string architecture_of(const sequential& m) {
  std::string text = std::string(detail::architecture_magic) + "\nin " + std::to_string(m.in_features()) + "\n";
  for (std::size_t i = 0; i < m.size(); ++i) {
    const std::string name = m[i].name();
    if (name.find('\n') != name.npos)
      throw std::invalid_argument("dpar::nn: layer " + std::to_string(i) + "'s name has a newline: '" + name + "'");
    text += name + "\n";
  }
  return text;
}

// A model of freshly made layers (parameters initialized as by add) from an
// architecture text; `file` names its source in errors.
inline sequential model_of_architecture(const std::string& text, const std::string& file) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != detail::architecture_magic)
    throw checkpoint_error(file, "the architecture header is '" + line + "', expected '" +
                                     detail::architecture_magic + "' (a newer or corrupt file)");
  std::size_t features = 0;
  try {
    if (!std::getline(in, line) || line.rfind("in ", 0) != 0) throw std::invalid_argument("no 'in' line");
    features = detail::size_arg(line.substr(3));
  } catch (const std::exception& e) {
    throw checkpoint_error(file, std::string("bad input width in the architecture: ") + e.what());
  }
  sequential m(features);
  for (std::size_t i = 0; std::getline(in, line); ++i) {
    std::string kind = line;
    std::vector<std::string> args;
    if (auto open = line.find('('); open != line.npos) {
      if (line.back() != ')') throw checkpoint_error(file, "layer " + std::to_string(i) + " '" + line + "' is malformed");
      kind = line.substr(0, open);
      std::string inner = line.substr(open + 1, line.size() - open - 2);
      for (std::size_t at = 0; !inner.empty();) {
        std::size_t comma = inner.find(',', at);
        args.push_back(inner.substr(at, comma - at));
        if (comma == inner.npos) break;
        at = comma + 1;
      }
    }
    layer_factory make;
    {
      auto& r = detail::layer_registry::get();
      std::lock_guard lock(r.mutex);
      if (auto it = r.factories.find(kind); it != r.factories.end()) make = it->second;
    }
    if (!make)
      throw checkpoint_error(file, "layer " + std::to_string(i) + " '" + line + "' is of kind '" + kind +
                                       "', which is not registered (dpar::nn::register_layer)");
    try {
      std::unique_ptr<layer> l = make(args, m.out_features());
      if (!l) throw std::invalid_argument("its factory made no layer");
      if (l->name() != line) throw std::invalid_argument("its factory made '" + l->name() + "'");
      m.add(std::move(l));
    } catch (const checkpoint_error&) {
      throw;
    } catch (const std::exception& e) {
      throw checkpoint_error(file, "cannot rebuild layer " + std::to_string(i) + " '" + line + "': " + e.what());
    }
  }
  return m;
}

inline void save_model(const std::string& file, const sequential& model) {
  checkpoint c;
  c.layout = layout_hash(model);
  c.parameters.assign(model.parameters().begin(), model.parameters().end());
  c.state.assign(model.state().begin(), model.state().end());
  c.architecture = architecture_of(model);
  save_checkpoint(file, c);
}

namespace detail {
inline void fill_model(const std::string& file, const checkpoint& c, sequential& model) {
  if (c.layout != layout_hash(model) || c.parameters.size() != model.parameters().size())
    throw checkpoint_error(file, "written for a different model (" + std::to_string(c.parameters.size()) +
                                     " parameters; this model has " + std::to_string(model.parameters().size()) + ")");
  if (c.state.size() != model.state().size())
    throw checkpoint_error(file, "holds " + std::to_string(c.state.size()) + " state values; this model keeps " +
                                     std::to_string(model.state().size()));
  std::copy(c.parameters.begin(), c.parameters.end(), model.parameters().begin());
  std::copy(c.state.begin(), c.state.end(), model.state().begin());
}
}  // namespace detail

// Loads parameters and state into `model`, which must have the layers the file was written with.
inline void load_model(const std::string& file, sequential& model) { detail::fill_model(file, load_checkpoint(file), model); }

// Rebuilds the model a file holds, layers and all (built-in layers and
// registered ones).
inline sequential load_model(const std::string& file) {
  checkpoint c = load_checkpoint(file);
  if (c.architecture.empty())
    throw checkpoint_error(file, c.velocity.empty()
                                     ? "records no architecture (written before model files did): build the model "
                                       "and call load_model(file, model)"
                                     : "a training checkpoint, not a model file (save_model)");
  sequential m = model_of_architecture(c.architecture, file);
  detail::fill_model(file, c, m);
  return m;
}

}  // namespace dpar::nn
