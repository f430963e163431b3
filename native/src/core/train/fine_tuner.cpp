#include "train/fine_tuner.h"

#include "numerics/finite.h"

#include "runtime.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace clamp {
namespace {

ResNet seeded_backbone(const FineTunerOptions& options) {
  torch::manual_seed(options.seed);
  return ResNet(options.backbone);
}

void check_images(const at::Tensor& images, int64_t channels) {
  if (images.dim() != 4 || images.scalar_type() != at::kFloat) throw std::invalid_argument("images must be float32 [n, C, H, W]");
  if (images.size(1) != channels)
    throw std::invalid_argument("images have " + std::to_string(images.size(1)) + " channels; the backbone takes " +
                                std::to_string(channels));
  // Before the forward pass, so a refused batch leaves BatchNorm's running statistics untouched.
  require_finite(images, "images", "image", "check how the batch was decoded and normalised");
}

}  // namespace

FineTuner::FineTuner(const FineTunerOptions& options)
    : options_(options), device_(device_named(options.device)), backbone_(seeded_backbone(options)) {
  if (!(options.backbone_lr_scale >= 0) || !std::isfinite(options.backbone_lr_scale))
    throw std::invalid_argument("backbone_lr_scale must be finite and >= 0 (0 freezes the backbone)");
  options.schedule.at(0);  // validates the schedule now rather than at the first step
  head_ = ClassifierHead(backbone_->feature_dim(), options.classes);
  backbone_->to(device_);
  head_->to(device_);
  // The trainer's float32 layout on this device (channels_last on the CPU with LibTorch 2.x), so the
  // features of a loaded backbone are the trainer's own, bit for bit; set before the optimisers see the
  // parameters.
  channels_last_ = resolve_compute_settings(device_, "fp32", "auto").channels_last;
  if (channels_last_) backbone_->to_channels_last();
  head_optimiser_ = make_optimiser(ParameterSet::of_modules({{"head.", head_.ptr().get()}}), options.optimiser);
  if (backbone_frozen()) {
    for (auto& p : backbone_->parameters()) p.set_requires_grad(false);
  } else {
    backbone_optimiser_ = make_optimiser(ParameterSet::of_modules({{"", backbone_.ptr().get()}}), options.optimiser);
  }
}

void FineTuner::load_backbone(const std::vector<NamedTensor>& saved) {
  std::vector<NamedTensor> live;
  append_module_state("", *backbone_, live);
  torch::NoGradGuard no_grad;
  copy_named_state(live, saved, "this backbone");
}

at::Tensor FineTuner::backbone_features(const at::Tensor& images) {
  check_images(images, options_.backbone.in_channels);
  const at::Tensor on_device = images.to(device_, /*non_blocking=*/true);
  return backbone_->forward(channels_last_ ? on_device.contiguous(at::MemoryFormat::ChannelsLast) : on_device);
}

at::Tensor FineTuner::features(const at::Tensor& images) {
  torch::NoGradGuard no_grad;
  backbone_->eval();
  return backbone_features(images).to(at::kCPU);
}

void FineTuner::standardise(const at::Tensor& features) { head_->standardise(features); }

FineTuneStepResult FineTuner::run(const at::Tensor& images, const at::Tensor& labels) {
  if (labels.dim() != 1 || labels.size(0) != images.size(0) || at::isFloatingType(labels.scalar_type()))
    throw std::invalid_argument("labels must be integers, one per image");
  if (labels.numel() == 0) throw std::invalid_argument("a fine-tuning batch needs at least one image");
  if (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= head_->classes())
    throw std::invalid_argument("labels must lie in [0, " + std::to_string(head_->classes()) + ")");
  FineTuneStepResult result;
  result.step = steps_;
  result.learning_rate = options_.schedule.at(steps_);
  head_optimiser_->set_lr(result.learning_rate);

  at::Tensor features;
  if (backbone_frozen()) {
    // The probe's protocol: running statistics stay those of pre-training.
    torch::NoGradGuard no_grad;
    backbone_->eval();
    features = backbone_features(images);
  } else {
    backbone_optimiser_->set_lr(result.learning_rate * options_.backbone_lr_scale);
    backbone_->train();
    features = backbone_features(images);
  }
  const at::Tensor target = labels.to(device_, at::kLong);
  const at::Tensor scores = head_->forward(features);
  const at::Tensor loss = torch::nn::functional::cross_entropy(scores, target);
  head_optimiser_->zero_grad();
  if (backbone_optimiser_) backbone_optimiser_->zero_grad();
  loss.backward();
  head_optimiser_->step();
  if (backbone_optimiser_) backbone_optimiser_->step();
  result.loss = loss.item<double>();
  result.accuracy = scores.detach().argmax(1).eq(target).to(at::kDouble).mean().item<double>();
  ++steps_;
  return result;
}

at::Tensor FineTuner::logits(const at::Tensor& images) {
  torch::NoGradGuard no_grad;
  backbone_->eval();
  return head_->forward(backbone_features(images)).to(at::kCPU);
}

std::vector<NamedTensor> FineTuner::state() {
  std::vector<NamedTensor> out;
  append_module_state("", *backbone_, out);
  append_module_state("head.", *head_, out);
  return out;
}

}  // namespace clamp
