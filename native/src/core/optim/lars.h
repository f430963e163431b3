// LARS (You et al., 2017) as CLAMP and the SSL literature use it: weight decay and the layer-wise
// trust ratio eta * ||w|| / ||g + wd w|| apply to weight matrices and kernels only; biases and
// normalisation parameters (every 1-D parameter) get neither. Then heavy-ball momentum.
//
// A plain class over tensors rather than a torch::optim::Optimizer subclass: the optimiser API of
// LibTorch changed between 1.13 and 2.x, and the state we checkpoint is just the momentum buffers.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <vector>

namespace clamp {

struct LarsOptions {
  double lr = 0.3;
  double momentum = 0.9;
  double weight_decay = 1e-6;
  double eta = 1e-3;  // trust coefficient
};

class Lars {
 public:
  // `adapted`: parameters that get weight decay and the trust ratio; `excluded`: neither.
  Lars(std::vector<torch::Tensor> adapted, std::vector<torch::Tensor> excluded, const LarsOptions& options);

  // Splits a module's parameters: 1-D ones (biases, BatchNorm weights and biases) are excluded.
  static Lars for_modules(const std::vector<torch::nn::Module*>& modules, const LarsOptions& options);

  void step();
  void zero_grad();
  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  const LarsOptions& options() const { return options_; }
  // One buffer per parameter, adapted ones first, in construction order: what a checkpoint saves.
  std::vector<torch::Tensor>& momentum_buffers() { return momentum_; }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<bool> adapted_;
  std::vector<torch::Tensor> momentum_;
  LarsOptions options_;
};

}  // namespace clamp
