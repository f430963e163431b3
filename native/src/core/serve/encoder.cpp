#include "serve/encoder.h"

#include <torch/torch.h>

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "runtime.h"

namespace clamp {

Encoder::Encoder(const EncoderOptions& options)
    : options_(options),
      device_(device_named(options.device)),
      // The CPU serving path (folded BatchNorm, direct convolutions) is tuned for NCHW (bench/embed.mjs),
      // so it stays contiguous there even where training's "auto" means channels_last.
      compute_(resolve_compute_settings(device_, options.precision, device_.is_cpu() ? "contiguous" : "auto")),
      backbone_(ResNet(options.backbone)) {
  if (options.max_batch < 0) throw std::invalid_argument("max_batch must be >= 0, got " + std::to_string(options.max_batch));
  if (options.image_size < 1) throw std::invalid_argument("image_size must be at least 1, got " + std::to_string(options.image_size));
  if (options.mean.size() != options.std.size()) throw std::invalid_argument("mean and std need the same number of entries");
  const int64_t channels = options.backbone.in_channels;
  if (!options.mean.empty()) {
    std::vector<float> mean(channels), std_dev(channels);
    for (int64_t c = 0; c < channels; ++c) {
      const double s = options.std[c % options.std.size()];
      if (!(s > 0)) throw std::invalid_argument("every std entry must be positive, got " + std::to_string(s));
      mean[c] = static_cast<float>(options.mean[c % options.mean.size()]);
      std_dev[c] = static_cast<float>(s);
    }
    mean_ = torch::tensor(mean).view({1, channels, 1, 1}).to(device_);
    std_ = torch::tensor(std_dev).view({1, channels, 1, 1}).to(device_);
  }
  backbone_->to(device_);
  backbone_->eval();
  for (auto& p : backbone_->parameters()) p.set_requires_grad(false);
}

void Encoder::load_state(const std::vector<NamedTensor>& saved) {
  std::vector<NamedTensor> live;
  append_module_state("", *backbone_, live);
  copy_named_state(live, saved, "this encoder's backbone");
  folded_.reset();  // folded again, from these weights, by the next embed()
}

at::Tensor Encoder::preprocess(const at::Tensor& images, PixelLayout layout) const {
  const int64_t channels = options_.backbone.in_channels;
  if (images.dim() != 4) throw std::invalid_argument("images must be a 4-D batch, got " + std::to_string(images.dim()) + "-D");
  at::Tensor x;
  if (layout == PixelLayout::bytes_nhwc) {
    if (images.scalar_type() != at::kByte) throw std::invalid_argument("raw pixels must be uint8 [n, H, W, C]");
    if (images.size(3) != channels)
      throw std::invalid_argument("raw pixels have " + std::to_string(images.size(3)) +
                                  " channel(s) (the last axis of [n, H, W, C]); this encoder takes " + std::to_string(channels));
    // The division happens on the device: a quarter of the bytes cross to a GPU.
    x = images.to(device_, /*non_blocking=*/true).permute({0, 3, 1, 2}).to(at::kFloat).div_(255);
  } else {
    if (images.scalar_type() != at::kFloat) throw std::invalid_argument("float images must be float32 [n, C, H, W] in [0, 1]");
    if (images.size(1) != channels)
      throw std::invalid_argument("float images have " + std::to_string(images.size(1)) +
                                  " channel(s) (the second axis of [n, C, H, W]); this encoder takes " + std::to_string(channels));
    x = images.to(device_, /*non_blocking=*/true);
  }
  if (images.size(0) < 1 || x.size(2) < 1 || x.size(3) < 1) throw std::invalid_argument("images must hold at least one pixel of one image");
  const int64_t side = options_.image_size;
  if (x.size(2) != side || x.size(3) != side) {
    x = at::upsample_bilinear2d(x.contiguous(), {side, side}, /*align_corners=*/false);
  }
  if (mean_.defined()) x = (x - mean_) / std_;  // as lib/augment's normalize: subtract, then divide
  return x.contiguous();
}

at::Tensor Encoder::embed(const at::Tensor& images, PixelLayout layout) {
  c10::InferenceMode inference;
  if (!folded_) {
    FoldedResNetOptions folding;
    folding.dtype = compute_.bf16_autocast ? at::kBFloat16 : at::kFloat;
    folding.channels_last = compute_.channels_last;
    folding.image_side = options_.image_size;
    folded_.emplace(*backbone_, folding);
  }
  const int64_t n = images.dim() > 0 ? images.size(0) : 0;
  const int64_t chunk = options_.max_batch > 0 ? options_.max_batch : n;
  if (n <= chunk) return folded_->forward(preprocess(images, layout)).to(at::kCPU).contiguous();
  at::Tensor out = at::empty({n, feature_dim()}, at::kFloat);
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t end = std::min(start + chunk, n);
    out.slice(0, start, end).copy_(folded_->forward(preprocess(images.slice(0, start, end), layout)));
  }
  return out;
}

}  // namespace clamp
