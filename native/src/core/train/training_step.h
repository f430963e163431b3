// One CLAMP training step, all native: every view of the batch through the backbone and projector as
// one batch, the fused packing loss, backward, a LARS step with the scheduled learning rate.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "models/projector.h"
#include "models/resnet.h"
#include "optim/lars.h"
#include "optim/schedule.h"
#include "packing_loss.h"

namespace clamp {

struct TrainingStepOptions {
  ResNetOptions backbone = ResNetOptions::small();
  std::vector<int64_t> projector_hidden{512};
  int64_t projector_out = 128;
  int64_t views = 2;
  PackingLossOptions loss;
  LarsOptions lars;
  WarmupCosineSchedule schedule;
  uint64_t seed = 0;  // initialises the weights: same seed, same threads, same losses (on CPU)
};

struct StepResult {
  int64_t step = 0;  // the optimiser step just taken (0-based)
  double loss = 0;
  double learning_rate = 0;
  double grad_norm = 0;  // L2 norm of all gradients before the LARS step
  PackingStats stats;    // pair-pass diagnostics (nearest-centre accuracy is not computed per step)
};

class TrainingStep {
 public:
  explicit TrainingStep(const TrainingStepOptions& options);

  // images: float32 [views * batch, channels, height, width], view-major (all images' view 0 first).
  // Throws std::invalid_argument naming the problem for a wrong shape or dtype.
  StepResult run(const at::Tensor& images);

  // Backbone features [n, feature_dim] in evaluation mode (BatchNorm running statistics), without
  // gradients: what kNN monitors and the linear probe read.
  at::Tensor features(const at::Tensor& images);

  ResNet& backbone() { return backbone_; }
  Projector& projector() { return projector_; }
  Lars& optimiser() { return optimiser_; }
  int64_t steps_taken() const { return steps_; }

 private:
  TrainingStepOptions options_;
  ResNet backbone_{nullptr};
  Projector projector_{nullptr};
  Lars optimiser_;
  int64_t steps_ = 0;
};

}  // namespace clamp
