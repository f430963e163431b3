// A trained ResNet compiled for inference: every BatchNorm (an affine map once its running statistics
// are frozen) folded into the convolution before it, ReLUs applied in place, no autograd bookkeeping.
// Fewer, larger kernels: what ONNX runtimes do to the same graph, here without leaving LibTorch.
// The geometry (strides, padding, which blocks downsample) is read from the module, not restated.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "models/resnet.h"

namespace clamp {

class FoldedResNet {
 public:
  // Folds the module's current weights and running statistics (later changes to the module are not seen).
  explicit FoldedResNet(ResNetImpl& net);

  // [N, C, H, W] -> [N, feature_dim], as ResNetImpl::forward in evaluation mode.
  at::Tensor forward(const at::Tensor& images) const;

 private:
  struct Conv {
    at::Tensor weight, bias;
    std::vector<int64_t> stride, padding;
    at::Tensor operator()(const at::Tensor& x) const;
  };
  struct Block {
    std::vector<Conv> path;  // conv1, conv2[, conv3]: ReLU after every one but the last
    std::optional<Conv> downsample;
  };

  Conv stem_;
  bool max_pool_ = false;
  std::vector<Block> blocks_;
};

}  // namespace clamp
