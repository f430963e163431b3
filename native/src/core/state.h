// Named tensors: how modules and optimisers expose their state to checkpoints, and the one checked
// copy of saved state into live tensors (the training step and the encoder both load through it).
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace clamp {

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;
};

// The module's parameters then buffers, recursively, each named prefix + its path ("" keeps
// torchvision's names for a backbone), appended to out as live tensors.
void append_module_state(const std::string& prefix, torch::nn::Module& module, std::vector<NamedTensor>& out);

// Copies saved[name] into every live tensor. Every live name must be saved with the same shape and
// dtype; otherwise std::invalid_argument names the first few differences (what_fits says what the live
// state is, e.g. "this model"). Saved names not in live are ignored.
void copy_named_state(const std::vector<NamedTensor>& live, const std::vector<NamedTensor>& saved, const std::string& what_fits);

}  // namespace clamp
