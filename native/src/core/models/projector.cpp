#include "models/projector.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>

#include <stdexcept>
#include <string>

namespace clamp {

ProjectorImpl::ProjectorImpl(const ProjectorOptions& options) : options_(options) {
  if (options.in_features < 1 || options.out_features < 1) throw std::invalid_argument("projector widths must be at least 1");
  torch::nn::Sequential sequence;
  int64_t width = options.in_features;
  for (const int64_t hidden : options.hidden) {
    if (hidden < 1) throw std::invalid_argument("projector hidden width must be at least 1, got " + std::to_string(hidden));
    sequence->push_back(torch::nn::Linear(width, hidden));
    sequence->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
    width = hidden;
  }
  sequence->push_back(torch::nn::Linear(width, options.out_features));
  layers = register_module("layers", sequence);
}

torch::Tensor ProjectorImpl::forward(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(1) != options_.in_features) {
    throw std::invalid_argument("projector expects features [N, " + std::to_string(options_.in_features) + "]");
  }
  return layers->forward(features);
}

}  // namespace clamp
