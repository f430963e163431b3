// A trained ResNet compiled for inference: every BatchNorm (an affine map once its running statistics
// are frozen) folded into the convolution before it, ReLUs applied in place, no autograd bookkeeping.
// Fewer, larger kernels: what ONNX runtimes do to the same graph.
// Which kernels run, for float32 on the CPU, fastest first (FoldedResNetOptions turns each off):
// - clamp's own direct convolutions (serve/direct_convolution.h) on CPUs with AVX-512 or AVX2: padded
//   NHWC buffers reused between calls, bias, residual add and ReLU applied as each tile is stored, no
//   fixed cost per layer. They take every batch of networks no wider than kDirectMaxChannels (the small
//   Fashion-MNIST network: 0.13 ms for one image against 0.50 ms through at::conv2d, and 8.2 ms against
//   8.1-9.0 ms through oneDNN at batch 64, one thread on the 2-core AVX-512 VM), and the single images of
//   wider networks that are too small for oneDNN's fixed cost.
// - With LibTorch 2.1 or newer (and oneDNN): oneDNN's fused convolutions (the
//   mkldnn::_convolution_pointwise operators Inductor's freezing pass emits) on channels_last
//   activations, the bias and ReLU applied by the convolution and each residual add (with its ReLU)
//   accumulated by the block's last convolution into the shortcut's buffer, weights reordered once at
//   load and shared by every batch size. Faster than the direct kernels on deep layers (ResNet-18).
//   Batches with too little work for oneDNN's fixed cost per convolution take the direct (or plain)
//   path; see fused_min_batch() in folded_resnet.cpp for the measurements.
// - Otherwise (LibTorch 1.13) oneDNN's blocked layout for batches of kOneDnnMinBatch images or more
//   (eager LibTorch reorders every weight on every call: ResNet-18 at batch 64 +13%), and at::conv2d
//   below.
// The geometry (strides, padding, which blocks downsample) is read from the module, not restated.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "models/resnet.h"

namespace clamp {

// Which kernels a FoldedResNet runs, for the tests and benchmarks that compare them; the defaults are
// the fastest this machine has.
struct FoldedResNetOptions {
  // clamp's own direct convolutions (serve/direct_convolution.h) for float32 on CPUs with AVX-512 or
  // AVX2; false: LibTorch's kernels, as below.
  bool direct = true;
  // oneDNN where this LibTorch has it and the weights are float32 on the CPU.
  bool onednn = true;
  // oneDNN's fused convolutions where this LibTorch has them (and onednn holds); false keeps the
  // unfused paths (the reference the tests compare with).
  bool fused = true;
  // The folded weights' and activations' type (bfloat16 halves the memory traffic and uses a GPU's
  // tensor cores; folding itself is in float64). forward() returns float32 whatever it is.
  at::ScalarType dtype = at::kFloat;
  bool channels_last = false;  // NHWC weights and activations on LibTorch's paths
  // The side of the images forward() will see, for which the fused path's weights are laid out (0:
  // unknown; any side still works).
  int64_t image_side = 0;
};

class FoldedResNet {
 public:
  // Folds the module's current weights and running statistics (later changes to the module are not
  // seen).
  explicit FoldedResNet(ResNetImpl& net, const FoldedResNetOptions& options = {});

  // Whether forward() runs batches through the direct convolutions: all of them when fused() is false,
  // those below fused_min_batch() images when it is true.
  bool direct() const { return direct_; }
  // The widest network (output channels of its widest convolution) whose every batch takes the direct
  // convolutions; see the constructor for the measurements.
  static constexpr int64_t kDirectMaxChannels = 64;
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
    // weight as [kernel][kernel][input channel stride][output channels padded], bias padded, when direct_
    at::Tensor direct_weight, direct_bias;
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
  bool direct_ = false;
  int64_t macs_per_image_ = 0;  // at the image side the fused weights were packed for
  std::vector<Block> blocks_;

  bool pack_for_fused(int64_t image_side);
  at::Tensor forward_fused(const at::Tensor& images) const;
  int64_t widest_channels() const;
  void pack_for_direct();
  at::Tensor forward_direct(const at::Tensor& images) const;
  void forward_direct_chunk(const at::Tensor& images, float* features) const;  // [n, feature_dim] into features
  // The direct path's activation buffers, kept between calls: a fresh allocation per layer and call
  // was page-faulted in again every time (glibc returns large blocks to the system). A buffer is free
  // when only this list holds it. Grows to the largest batch's working set; freed with the network.
  at::Tensor direct_buffer_memory(int64_t floats) const;
  struct BufferPool {
    std::unique_ptr<std::mutex> mutex = std::make_unique<std::mutex>();  // behind a pointer: the network stays movable
    std::vector<at::Tensor> buffers;
  };
  mutable BufferPool direct_buffers_;
};

}  // namespace clamp
