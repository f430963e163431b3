// The fine-tuner, the C++ side of TypeScript's FineTuner (lib/train/fine-tuner.ts): supervised training
// of a backbone and a linear classifier head on labelled images, one step per run(). Semi-supervised
// fine-tuning (the whole network, the backbone's learning rate a fraction of the head's) and, with the
// backbone frozen, the linear probe trained through augmented images (features recomputed every
// batch). Cross-entropy; the head and the backbone each have their own optimiser instance, so the
// backbone's learning rate is the head's scheduled rate times backbone_lr_scale.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/classifier_head.h"
#include "models/resnet.h"
#include "optim/optimiser.h"
#include "optim/schedule.h"
#include "state.h"

namespace clamp {

// The defaults are TypeScript's (fineTunerOptionsSchema in lib/train/fine-tuner.ts; classes has none
// there, and 0 here is refused). The addon never relies on them: it sets every field from the options
// TypeScript has resolved (read_fine_tuner_options, addon/fine_tuner_binding.cpp).
struct FineTunerOptions {
  ResNetOptions backbone = ResNetOptions::small();
  int64_t classes = 0;
  // The head's optimiser (and the backbone's, with lr scaled). SGD with Nesterov momentum and no weight
  // decay by default, as SimCLR's semi-supervised protocol.
  OptimiserOptions optimiser{OptimiserKind::sgd, 0.1, 0.0, 0.9, 1e-3, true};
  WarmupCosineSchedule schedule;   // the head's learning rate
  double backbone_lr_scale = 0.1;  // 0 freezes the backbone: evaluation mode, no gradients
  std::string device = "cpu";
  uint64_t seed = 0;  // the backbone's initial weights (before load_backbone)
};

// What one run() returns (TypeScript's FineTuneStepResult, the same name).
struct FineTuneStepResult {
  int64_t step = 0;          // the optimiser step just taken (0-based)
  double loss = 0;           // mean cross-entropy of the batch, before the update
  double learning_rate = 0;  // the head's; the backbone's is this times backbone_lr_scale
  double accuracy = 0;       // top-1 on the batch, before the update
};

class FineTuner {
 public:
  explicit FineTuner(const FineTunerOptions& options);

  // Copies a pretrained backbone's parameters and running statistics from saved state under
  // torchvision's names (a CLAMP checkpoint: its projector and optimiser entries are ignored). Throws
  // std::invalid_argument naming missing or mismatched tensors.
  void load_backbone(const std::vector<NamedTensor>& saved);

  // Backbone features [n, feature_dim] on the CPU, in evaluation mode, without gradients.
  at::Tensor features(const at::Tensor& images);
  // Sets the head's feature standardisation from features [n, feature_dim] of the labelled images.
  void standardise(const at::Tensor& features);

  // One optimiser step on images float32 [n, C, H, W] with integer labels [n] in [0, classes).
  FineTuneStepResult run(const at::Tensor& images, const at::Tensor& labels);
  // Class scores [n, classes] on the CPU, in evaluation mode, without gradients.
  at::Tensor logits(const at::Tensor& images);

  // What a fine-tuned checkpoint holds: the backbone under torchvision's names and "head.*".
  std::vector<NamedTensor> state();

  ResNet& backbone() { return backbone_; }
  ClassifierHead& head() { return head_; }
  int64_t steps_taken() const { return steps_; }
  bool backbone_frozen() const { return options_.backbone_lr_scale == 0; }

 private:
  at::Tensor backbone_features(const at::Tensor& images);

  FineTunerOptions options_;
  at::Device device_;
  bool channels_last_ = false;  // the backbone's weights and inputs in NHWC (resolve_compute_settings)
  ResNet backbone_{nullptr};
  ClassifierHead head_{nullptr};
  std::unique_ptr<Optimiser> head_optimiser_;
  std::unique_ptr<Optimiser> backbone_optimiser_;  // null while frozen
  int64_t steps_ = 0;
};

}  // namespace clamp
