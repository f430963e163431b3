// Tests that compare one network's step with reference implementations of it (ATen's ops, oneDNN's
// convolutions, float64) build the references from the same options and copy the first one's weights in.
#pragma once

#include <torch/torch.h>

#include <initializer_list>

#include "models/resnet.h"

namespace clamp::testing {

// Copies source's parameters into each of copies (same architecture, any dtype or memory format).
inline void copy_parameters(const clamp::ResNet& source, std::initializer_list<clamp::ResNet*> copies) {
  torch::NoGradGuard no_grad;
  for (auto& pair : source->named_parameters())
    for (clamp::ResNet* copy : copies) (*copy)->named_parameters()[pair.key()].copy_(pair.value());
}

}  // namespace clamp::testing
