// What every optimiser of the training step shares: named parameters split into those that get weight
// decay (and, for LARS, the trust ratio) and those that get neither (every 1-D parameter: biases and
// normalisation weights, as the SSL literature does), a settable learning rate, and named state that a
// checkpoint saves and restores.
//
// Plain classes over tensors rather than torch::optim::Optimizer subclasses: that API changed between
// LibTorch 1.13 and 2.x, and the state we checkpoint is a few named buffers.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "state.h"

namespace clamp {

struct ParameterSet {
  std::vector<NamedTensor> decayed;   // weight matrices and kernels
  std::vector<NamedTensor> excluded;  // biases and normalisation parameters

  // Each module's parameters named with its prefix ("" keeps torchvision's names for the backbone);
  // 1-D ones are excluded.
  static ParameterSet of_modules(const std::vector<std::pair<std::string, torch::nn::Module*>>& modules);
};

enum class OptimiserKind { lars, sgd, adamw };

struct OptimiserOptions {
  OptimiserKind kind = OptimiserKind::lars;
  double lr = 0.3;
  double weight_decay = 1e-6;
  double momentum = 0.9;  // LARS and SGD
  double eta = 1e-3;      // LARS trust coefficient
  bool nesterov = false;  // SGD
  double beta1 = 0.9;     // AdamW
  double beta2 = 0.999;   // AdamW
  double eps = 1e-8;      // AdamW
};

OptimiserKind optimiser_kind_named(const std::string& name);  // "lars" | "sgd" | "adamw"

class Optimiser {
 public:
  Optimiser(ParameterSet parameters, const OptimiserOptions& options);
  virtual ~Optimiser() = default;
  Optimiser(const Optimiser&) = delete;
  Optimiser& operator=(const Optimiser&) = delete;

  virtual void step() = 0;
  void zero_grad();
  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  const OptimiserOptions& options() const { return options_; }

  // The live state tensors, named "<slot>.<parameter name>" (e.g. "momentum.layer1.0.conv1.weight"):
  // a checkpoint reads them, and a resume copies saved values into them.
  const std::vector<NamedTensor>& state() const { return state_; }

 protected:
  struct Parameter {
    std::string name;
    torch::Tensor tensor;
    bool decayed;
  };
  // A zero-initialised state tensor for each parameter, registered under `slot`; returns them in
  // parameter order.
  std::vector<torch::Tensor> add_state(const std::string& slot);
  // One scalar state tensor (a step count), registered under `name`.
  torch::Tensor add_scalar_state(const std::string& name, at::ScalarType dtype);

  std::vector<Parameter> parameters_;
  OptimiserOptions options_;

 private:
  std::vector<NamedTensor> state_;
};

std::unique_ptr<Optimiser> make_optimiser(ParameterSet parameters, const OptimiserOptions& options);

}  // namespace clamp
