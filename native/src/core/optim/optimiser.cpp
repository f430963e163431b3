#include "optim/optimiser.h"

#include <torch/torch.h>

#include <stdexcept>

#include "optim/adamw.h"
#include "optim/lars.h"
#include "optim/sgd.h"

namespace clamp {

ParameterSet ParameterSet::of_modules(const std::vector<std::pair<std::string, torch::nn::Module*>>& modules) {
  ParameterSet set;
  for (const auto& [prefix, module] : modules) {
    for (const auto& item : module->named_parameters(/*recurse=*/true)) {
      (item.value().dim() > 1 ? set.decayed : set.excluded).push_back({prefix + item.key(), item.value()});
    }
  }
  return set;
}

OptimiserKind optimiser_kind_named(const std::string& name) {
  if (name == "lars") return OptimiserKind::lars;
  if (name == "sgd") return OptimiserKind::sgd;
  if (name == "adamw") return OptimiserKind::adamw;
  throw std::invalid_argument("optimiser must be lars, sgd or adamw, got " + name);
}

Optimiser::Optimiser(ParameterSet parameters, const OptimiserOptions& options) : options_(options) {
  if (!(options.lr >= 0) || !(options.weight_decay >= 0) || !(options.momentum >= 0))
    throw std::invalid_argument("the optimiser needs lr >= 0, weight_decay >= 0 and momentum >= 0");
  for (auto& p : parameters.decayed) parameters_.push_back({std::move(p.name), p.tensor, true});
  for (auto& p : parameters.excluded) parameters_.push_back({std::move(p.name), p.tensor, false});
}

std::vector<torch::Tensor> Optimiser::add_state(const std::string& slot) {
  std::vector<torch::Tensor> out;
  for (const auto& p : parameters_) {
    out.push_back(torch::zeros_like(p.tensor, torch::MemoryFormat::Preserve));
    state_.push_back({slot + "." + p.name, out.back()});
  }
  return out;
}

torch::Tensor Optimiser::add_scalar_state(const std::string& name, at::ScalarType dtype) {
  torch::Tensor scalar = torch::zeros({}, torch::TensorOptions().dtype(dtype));
  state_.push_back({name, scalar});
  return scalar;
}

void Optimiser::zero_grad() {
  for (auto& p : parameters_) {
    if (p.tensor.grad().defined()) p.tensor.mutable_grad().zero_();
  }
}

std::unique_ptr<Optimiser> make_optimiser(ParameterSet parameters, const OptimiserOptions& options) {
  switch (options.kind) {
    case OptimiserKind::lars:
      return std::make_unique<Lars>(std::move(parameters), options);
    case OptimiserKind::sgd:
      return std::make_unique<Sgd>(std::move(parameters), options);
    case OptimiserKind::adamw:
      return std::make_unique<AdamW>(std::move(parameters), options);
  }
  throw std::invalid_argument("unknown optimiser kind");
}

}  // namespace clamp
