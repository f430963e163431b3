// A trained ResNet compiled for inference: every BatchNorm (an affine map once its running statistics
// are frozen) folded into the convolution before it, ReLUs applied in place, no autograd bookkeeping.
// Fewer, larger kernels: what ONNX runtimes do to the same graph, here without leaving LibTorch.
// On CPUs where LibTorch has oneDNN (MKL-DNN), the weights are also pre-packed into oneDNN's blocked
// layout once, and activations of batches of kOneDnnMinBatch images or more stay in it from the first
// convolution to the pooling: eager LibTorch reorders every weight on every call. (Measured on 2 cores:
// ResNet-18 at batch 64 +13%; below 16 images the conversions cost more than they save: the small
// Fashion-MNIST network at batch 1 was 35% slower.)
// With LibTorch 2.1 or newer (and oneDNN), float32 on the CPU goes further: oneDNN's fused convolutions
// (the mkldnn::_convolution_pointwise operators Inductor's freezing pass emits) on channels_last
// activations, the bias and ReLU applied by the convolution and each residual add (with its ReLU)
// accumulated by the block's last convolution into the shortcut's buffer, weights reordered once at
// load and shared by every batch size. Batches with too little work for oneDNN's fixed cost per
// convolution (the small network's single images) keep the plain path; see fused_min_batch() in
// folded_resnet.cpp for the measurements.
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
  // use_fused: oneDNN's fused convolutions for every batch size where this LibTorch has them (and
  // use_onednn holds); false keeps the unfused paths (the reference the tests compare with).
  // image_side: the side of the images forward() will see, for which the fused path's weights are
  // laid out (0: unknown; any side still works).
  explicit FoldedResNet(ResNetImpl& net, bool use_onednn = true, at::ScalarType dtype = at::kFloat,
                        bool channels_last = false, bool use_fused = true, int64_t image_side = 0);

  // Whether forward() runs batches of kOneDnnMinBatch images or more through oneDNN's blocked layout.
  bool onednn() const { return onednn_; }
  // Whether forward() runs batches of fused_min_batch() images or more through oneDNN's fused
  // convolutions (then onednn() is false, and smaller batches take the plain path).
  bool fused() const { return fused_; }
  // The smallest batch the fused path takes (0 when it is off): enough images for oneDNN's fixed cost
  // per convolution to pay, by the network's multiply-adds per image.
  int64_t fused_min_batch() const;
  static constexpr int64_t kOneDnnMinBatch = 16;

  // [N, C, H, W] -> [N, feature_dim], as ResNetImpl::forward in evaluation mode.
  at::Tensor forward(const at::Tensor& images) const;

 private:
  struct Conv {
    at::Tensor weight, bias;
    at::Tensor packed;  // weight in oneDNN's layout, when onednn_ or fused_
    std::vector<int64_t> stride, padding;
    // x dense, or in oneDNN's layout when onednn (then the result is too).
    at::Tensor operator()(const at::Tensor& x, bool onednn) const;
    // x channels_last; ReLU applied when relu.
    at::Tensor fused(const at::Tensor& x, bool relu) const;
    // shortcut = relu(conv(x) + shortcut), in place; shortcut channels_last.
    void fused_add_relu(const at::Tensor& x, at::Tensor& shortcut) const;
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
  bool fused_ = false;
  int64_t macs_per_image_ = 0;  // at the image side the fused weights were packed for
  std::vector<Block> blocks_;

  bool pack_for_fused(int64_t image_side);
  at::Tensor forward_fused(const at::Tensor& images) const;
};

}  // namespace clamp
