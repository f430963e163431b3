#include "optim/lars.h"

#include <torch/torch.h>

#include <stdexcept>

namespace clamp {

Lars::Lars(std::vector<torch::Tensor> adapted, std::vector<torch::Tensor> excluded, const LarsOptions& options)
    : options_(options) {
  if (!(options.lr >= 0) || !(options.momentum >= 0) || !(options.weight_decay >= 0) || !(options.eta > 0))
    throw std::invalid_argument("LARS needs lr >= 0, momentum >= 0, weight_decay >= 0 and eta > 0");
  for (auto& p : adapted) {
    params_.push_back(p);
    adapted_.push_back(true);
  }
  for (auto& p : excluded) {
    params_.push_back(p);
    adapted_.push_back(false);
  }
  for (const auto& p : params_) momentum_.push_back(torch::zeros_like(p));
}

Lars Lars::for_modules(const std::vector<torch::nn::Module*>& modules, const LarsOptions& options) {
  std::vector<torch::Tensor> adapted, excluded;
  for (auto* module : modules) {
    for (const auto& p : module->parameters()) (p.dim() > 1 ? adapted : excluded).push_back(p);
  }
  return Lars(std::move(adapted), std::move(excluded), options);
}

void Lars::step() {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < params_.size(); ++k) {
    torch::Tensor& p = params_[k];
    if (!p.grad().defined()) continue;
    torch::Tensor update = p.grad();
    if (adapted_[k]) {
      update = update + options_.weight_decay * p;
      // The trust ratio stays a tensor (no .item()), so a CUDA step never waits on the device here. A
      // zero norm (a zero-initialised weight, or no gradient signal) leaves the step unscaled.
      const torch::Tensor weight_norm = p.norm(), update_norm = update.norm();
      const torch::Tensor trust = torch::where(weight_norm.gt(0).logical_and(update_norm.gt(0)),
                                               options_.eta * weight_norm / update_norm, torch::ones_like(weight_norm));
      update = update * trust;
    }
    momentum_[k].mul_(options_.momentum).add_(update);
    p.add_(momentum_[k], -options_.lr);
  }
}

void Lars::zero_grad() {
  for (auto& p : params_) {
    if (p.grad().defined()) p.grad().zero_();
  }
}

}  // namespace clamp
