#include "optim/lars.h"

#include <torch/torch.h>

#include <stdexcept>

namespace clamp {

Lars::Lars(ParameterSet parameters, const OptimiserOptions& options) : Optimiser(std::move(parameters), options) {
  if (!(options.eta > 0)) throw std::invalid_argument("LARS needs a trust coefficient eta > 0");
  momentum_ = add_state("momentum");
}

void Lars::step() {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < parameters_.size(); ++k) {
    torch::Tensor& p = parameters_[k].tensor;
    if (!p.grad().defined()) continue;
    torch::Tensor update = p.grad();
    if (parameters_[k].decayed) {
      update = update + options_.weight_decay * p;
      // The trust ratio stays a tensor (no .item()), so a CUDA step never waits on the device here. A
      // zero norm (a zero-initialised weight, or no gradient signal) leaves the step unscaled.
      const torch::Tensor weight_norm = p.norm(), update_norm = update.norm();
      const torch::Tensor trust = torch::where(weight_norm.gt(0).logical_and(update_norm.gt(0)), options_.eta * weight_norm / update_norm,
                                               torch::ones_like(weight_norm));
      update = update * trust;
    }
    momentum_[k].mul_(options_.momentum).add_(update);
    p.add_(momentum_[k], -options_.lr);
  }
}

}  // namespace clamp
