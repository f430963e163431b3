// ResNet backbones with torchvision's parameter names (conv1, bn1, layer1.0.conv1, ..., no fc), so
// weights move between clamp-native and torchvision, and the stems CLAMP uses: ImageNet (7x7 stride 2
// + max-pool), the paper's CIFAR variant (3x3 stride 1, no max-pool) and a small stride-2 stem for
// 28x28 inputs on CPU.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace clamp {

class Collective;

// Where a ResNet's BatchNorms take their training-mode statistics: their own batch, or the whole
// data-parallel batch through a collective (SyncBatchNorm). Shared by the network and its blocks.
struct BatchNormSync {
  Collective* collective = nullptr;
};

enum class ResNetStem {
  imagenet,  // 7x7 conv stride 2, BN, ReLU, 3x3 max-pool stride 2 (torchvision)
  cifar,     // 3x3 conv stride 1, BN, ReLU, no max-pool (the paper's CIFAR-10 setup)
  small,     // 3x3 conv stride 2, BN, ReLU, no max-pool (28x28 inputs on a CPU budget)
};

struct ResNetOptions {
  std::vector<int64_t> blocks{2, 2, 2, 2};         // residual blocks per stage
  std::vector<int64_t> widths{64, 128, 256, 512};  // base width per stage (x4 at the output of bottlenecks)
  bool bottleneck = false;                         // Bottleneck (1x1-3x3-1x1) instead of BasicBlock
  ResNetStem stem = ResNetStem::imagenet;
  int64_t in_channels = 3;
  // false drops every BatchNorm (the modules and their state): a test model whose output does not
  // depend on how a batch is split, for exact data-parallel parity checks. Serving refuses it.
  bool batch_norm = true;
  // Each BatchNorm + ReLU (+ the residual add) as one fused op on the CPU in training
  // (models/batch_norm_relu.h); false runs ATen's batch_norm, add and relu (the reference, in tests).
  bool fused_batch_norm_relu = true;
  // Each block's 3x3 convolutions' weight gradient hand-written on AVX2 CPUs in training
  // (models/conv3x3.h); false leaves it to ATen (oneDNN), the reference in tests.
  bool conv3x3_weight_gradient = true;
  // With it, the stride-1 3x3 convolutions' forward and input gradient by Winograd's F(2x2, 3x3)
  // (models/conv3x3_winograd.h); false leaves them to oneDNN.
  bool conv3x3_winograd = true;

  ResNetOptions& set_stem(ResNetStem value) {
    stem = value;
    return *this;
  }
  ResNetOptions& set_in_channels(int64_t value) {
    in_channels = value;
    return *this;
  }

  static ResNetOptions resnet18() { return {}; }
  static ResNetOptions resnet34() { return ResNetOptions{{3, 4, 6, 3}}; }
  static ResNetOptions resnet50() { return ResNetOptions{{3, 4, 6, 3}, {64, 128, 256, 512}, true}; }
  // Three stages of 32-64-128 behind a stride-2 stem: ~0.7M parameters, for 28x28 images on CPU.
  static ResNetOptions small() { return ResNetOptions{{2, 2, 2}, {32, 64, 128}, false, ResNetStem::small}; }

  // "resnet18", "resnet34", "resnet50", "small"; throws std::invalid_argument naming the choices.
  static ResNetOptions named(const std::string& name);
};

class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(const ResNetOptions& options = {});
  // [N, C, H, W] -> [N, feature_dim()] after global average pooling.
  torch::Tensor forward(const torch::Tensor& images);
  int64_t feature_dim() const { return feature_dim_; }
  // Convolution weights in NHWC, like channels_last activations, so oneDNN (CPU) and cuDNN (GPU) run
  // their native NHWC kernels without reordering the weights at every call.
  void to_channels_last();
  const ResNetOptions& options() const { return options_; }
  // Training-mode BatchNorm over every rank's batch from now on (null: each rank's own); the
  // collective must outlive the network's use of it.
  void synchronise_batch_norm(Collective* collective) { sync_->collective = collective; }

 private:
  ResNetOptions options_;
  std::shared_ptr<BatchNormSync> sync_ = std::make_shared<BatchNormSync>();
  int64_t feature_dim_ = 0;
  bool channels_last_ = false;  // to_channels_last() was called: activations are kept channels_last too
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> stages_;
};
TORCH_MODULE(ResNet);

}  // namespace clamp
