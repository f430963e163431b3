// A trained ResNet compiled for inference: every BatchNorm (an affine map once its running statistics
// are frozen) folded into the convolution before it, ReLUs applied in place, no autograd bookkeeping.
// Fewer, larger kernels: what ONNX runtimes do to the same graph, here without leaving LibTorch.
// On CPUs where LibTorch has oneDNN (MKL-DNN), the weights are also pre-packed into oneDNN's blocked
// layout once, and activations of batches of kOneDnnMinBatch images or more stay in it from the first
// convolution to the pooling: eager LibTorch reorders every weight on every call. (Measured on 2 cores:
// ResNet-18 at batch 64 +13%; below 16 images the conversions cost more than they save: the small
// Fashion-MNIST network at batch 1 was 35% slower.)
// The geometry (strides, padding, which blocks downsample) is read from the module, not restated.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "models/resnet.h"

namespace clamp {

class FoldedResNet {
 public:
  // Folds the module's current weights and running statistics (later changes to the module are not
  // seen). use_onednn: run through oneDNN when this LibTorch has it and the weights are float32 on the CPU.
  // dtype: the folded weights' and activations' type (bfloat16 halves the memory traffic and uses a
  // GPU's tensor cores; folding itself is in float64); channels_last: NHWC weights and activations.
  // forward() returns float32 whatever dtype is.
  explicit FoldedResNet(ResNetImpl& net, bool use_onednn = true, at::ScalarType dtype = at::kFloat,
                        bool channels_last = false);

  // Whether forward() runs batches of kOneDnnMinBatch images or more through oneDNN's blocked layout.
  bool onednn() const { return onednn_; }
  static constexpr int64_t kOneDnnMinBatch = 16;

  // [N, C, H, W] -> [N, feature_dim], as ResNetImpl::forward in evaluation mode.
  at::Tensor forward(const at::Tensor& images) const;

 private:
  struct Conv {
    at::Tensor weight, bias;
    at::Tensor packed;  // weight in oneDNN's layout, when onednn_
    std::vector<int64_t> stride, padding;
    // x dense, or in oneDNN's layout when onednn (then the result is too).
    at::Tensor operator()(const at::Tensor& x, bool onednn) const;
  };
  struct Block {
    std::vector<Conv> path;  // conv1, conv2[, conv3]: ReLU after every one but the last
    std::optional<Conv> downsample;
  };

  Conv stem_;
  at::ScalarType dtype_ = at::kFloat;
  bool channels_last_ = false;
  bool max_pool_ = false;
  bool onednn_ = false;
  std::vector<Block> blocks_;
};

}  // namespace clamp
