#include "optim/sgd.h"

#include <torch/torch.h>

namespace clamp {

Sgd::Sgd(ParameterSet parameters, const OptimiserOptions& options) : Optimiser(std::move(parameters), options) {
  momentum_ = add_state("momentum");
}

void Sgd::step() {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < parameters_.size(); ++k) {
    torch::Tensor& p = parameters_[k].tensor;
    if (!p.grad().defined()) continue;
    torch::Tensor gradient = p.grad();
    if (parameters_[k].decayed && options_.weight_decay != 0) gradient = gradient + options_.weight_decay * p;
    // A zero buffer times momentum plus g is g: PyTorch's first-step initialisation, without a flag.
    momentum_[k].mul_(options_.momentum).add_(gradient);
    const torch::Tensor update = options_.nesterov ? gradient + options_.momentum * momentum_[k] : momentum_[k];
    p.add_(update, -options_.lr);
  }
}

}  // namespace clamp
