// A trained backbone for serving: frozen, in evaluation mode, with the evaluation view built in —
// pixels scaled to [0, 1], the whole image resized (bilinear, half-pixel centres: lib/augment's
// cropAndResize) to the side the backbone was trained at, then normalised per channel — so a service's
// raw images give the vectors evaluation computes (to float rounding: BatchNorm is folded into the
// convolutions, see folded_resnet.h). No projector, optimiser or autograd state.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/resnet.h"
#include "runtime.h"
#include "serve/folded_resnet.h"
#include "state.h"

namespace clamp {

struct EncoderOptions {
  ResNetOptions backbone = ResNetOptions::small();
  int64_t image_size = 28;   // the side the backbone sees
  std::vector<double> mean;  // per channel, cycled over channels; empty: no normalisation
  std::vector<double> std;
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:<index>"
  // "auto": bfloat16 weights and activations, channels_last, on GPUs of compute capability 8.0 and newer;
  // float32 elsewhere. "bf16" or "fp32" to choose. Embeddings come back float32 either way.
  std::string precision = "auto";
  int64_t max_batch = 0;  // images per forward pass (bounds activation memory); 0: all at once
};

enum class PixelLayout {
  bytes_nhwc,       // uint8 [n, H, W, C], 0..255: decoded images as they come
  unit_float_nchw,  // float32 [n, C, H, W] in [0, 1]: torchvision's ToTensor() layout
};

class Encoder {
 public:
  explicit Encoder(const EncoderOptions& options);

  // The backbone's parameters and buffers from a checkpoint's tensors (torchvision names; projector,
  // optimiser and trainer entries are ignored). A checkpoint of another architecture is refused,
  // naming the tensors that do not fit.
  void load_state(const std::vector<NamedTensor>& saved);

  // Model-ready images [n, C, image_size, image_size] float32 on the encoder's device. Throws
  // std::invalid_argument naming the problem for a wrong dtype, rank or channel count.
  at::Tensor preprocess(const at::Tensor& images, PixelLayout layout) const;

  // Backbone features [n, feature_dim] float32, contiguous, on the CPU, in forward passes of at most
  // max_batch images.
  at::Tensor embed(const at::Tensor& images, PixelLayout layout);

  int64_t feature_dim() const { return backbone_->feature_dim(); }
  int64_t in_channels() const { return options_.backbone.in_channels; }
  const EncoderOptions& options() const { return options_; }
  const ComputeSettings& compute_settings() const { return compute_; }

 private:
  EncoderOptions options_;
  at::Device device_;
  ComputeSettings compute_;
  ResNet backbone_{nullptr};  // holds the loaded weights under their checkpoint names
  std::optional<FoldedResNet>
      folded_;             // what embed() runs: the backbone with BatchNorm folded in (built by the first embed() after a load)
  at::Tensor mean_, std_;  // [1, C, 1, 1] on the device, or undefined
};

}  // namespace clamp
