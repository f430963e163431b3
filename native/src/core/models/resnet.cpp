#include "models/resnet.h"

#include "distributed/sync_batch_norm.h"
#include "models/batch_norm_relu.h"
#include "models/conv3x3.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>

#include <stdexcept>
#include <string>

namespace clamp {
namespace {

namespace F = torch::nn::functional;

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// A BatchNorm registered under `name`, or none (an empty holder) for a BatchNorm-free network.
torch::nn::BatchNorm2d norm(torch::nn::Module& owner, const std::string& name, int64_t channels, bool batch_norm) {
  return batch_norm ? owner.register_module(name, torch::nn::BatchNorm2d(channels)) : torch::nn::BatchNorm2d(nullptr);
}

// bn(x); with a sync collective and in training mode, over the whole data-parallel batch; x when there is no BatchNorm.
torch::Tensor normed(torch::nn::BatchNorm2d& bn, const torch::Tensor& x, const BatchNormSync& sync) {
  if (bn.is_empty()) return x;
  if (sync.collective != nullptr && bn->is_training()) return sync_batch_norm(x, *bn, *sync.collective);
  return bn(x);
}

// relu(bn(x) + skip) (no skip: relu(bn(x))): one fused op where it serves (training on the CPU, not
// synchronised), bn, add and relu otherwise.
torch::Tensor normed_relu(torch::nn::BatchNorm2d& bn, const torch::Tensor& x, const BatchNormSync& sync, bool fuse,
                          const torch::Tensor& skip = {}) {
  if (fuse && sync.collective == nullptr && fused_batch_norm_relu_serves(bn, x, skip)) return fused_batch_norm_relu(bn, x, skip);
  const torch::Tensor y = normed(bn, x, sync);
  return F::relu(skip.defined() ? y + skip : y);
}

// conv(x); a 3x3 convolution (`stride` > 0, conv()'s padding 1) through conv3x3, with its hand-written
// weight gradient, where that serves (training on an AVX2 CPU).
torch::Tensor convolved(torch::nn::Conv2d& conv, const torch::Tensor& x, int64_t stride, bool winograd) {
  if (stride > 0 && conv3x3_serves(x, conv->weight, stride)) return conv3x3(x, conv->weight, stride, winograd);
  return conv(x);
}

// torchvision's BasicBlock (expansion 1) and Bottleneck (expansion 4, stride on the 3x3 conv), with
// the same submodule names: conv1, bn1, conv2, bn2[, conv3, bn3], downsample.{0,1}.
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(int64_t in, int64_t width, int64_t stride, bool bottleneck, const ResNetOptions& options, std::shared_ptr<BatchNormSync> sync)
      : bottleneck_(bottleneck), fuse_(options.fused_batch_norm_relu), winograd_(options.conv3x3_winograd), sync_(std::move(sync)) {
    const bool batch_norm = options.batch_norm;
    // The strides of the block's 3x3 convolutions, for conv3x3 (0: a 1x1, or conv3x3 not wanted).
    const bool own = options.conv3x3_weight_gradient;
    stride1_ = own && !bottleneck ? stride : 0;
    stride2_ = own ? (bottleneck ? stride : 1) : 0;
    const int64_t out = bottleneck ? width * 4 : width;
    if (bottleneck) {
      conv1_ = register_module("conv1", conv(in, width, 1, 1));
      bn1_ = norm(*this, "bn1", width, batch_norm);
      conv2_ = register_module("conv2", conv(width, width, 3, stride));
      bn2_ = norm(*this, "bn2", width, batch_norm);
      conv3_ = register_module("conv3", conv(width, out, 1, 1));
      bn3_ = norm(*this, "bn3", out, batch_norm);
    } else {
      conv1_ = register_module("conv1", conv(in, width, 3, stride));
      bn1_ = norm(*this, "bn1", width, batch_norm);
      conv2_ = register_module("conv2", conv(width, out, 3, 1));
      bn2_ = norm(*this, "bn2", out, batch_norm);
    }
    if (stride != 1 || in != out) {
      // Registered as torchvision's downsample.{0,1}; run piecewise so its BatchNorm can synchronise.
      downsample_conv_ = conv(in, out, 1, stride);
      torch::nn::Sequential downsample(downsample_conv_);
      if (batch_norm) {
        downsample_bn_ = torch::nn::BatchNorm2d(out);
        downsample->push_back(downsample_bn_);
      }
      downsample_ = register_module("downsample", downsample);
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    const BatchNormSync& sync = *sync_;
    torch::Tensor y = normed_relu(bn1_, convolved(conv1_, x, stride1_, winograd_), sync, fuse_);
    if (bottleneck_) y = normed_relu(bn2_, convolved(conv2_, y, stride2_, winograd_), sync, fuse_);
    const torch::Tensor skip = downsample_ ? normed(downsample_bn_, downsample_conv_(x), sync) : x;
    const torch::Tensor last = bottleneck_ ? conv3_(y) : convolved(conv2_, y, stride2_, winograd_);
    return normed_relu(bottleneck_ ? bn3_ : bn2_, last, sync, fuse_, skip);
  }

 private:
  bool bottleneck_, fuse_, winograd_;
  int64_t stride1_ = 0, stride2_ = 0;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
  torch::nn::Conv2d downsample_conv_{nullptr};
  torch::nn::BatchNorm2d downsample_bn_{nullptr};
  std::shared_ptr<BatchNormSync> sync_;
};
TORCH_MODULE(Block);

}  // namespace

ResNetOptions ResNetOptions::named(const std::string& name) {
  if (name == "resnet18") return resnet18();
  if (name == "resnet34") return resnet34();
  if (name == "resnet50") return resnet50();
  if (name == "small") return small();
  throw std::invalid_argument("unknown backbone '" + name + "': choose resnet18, resnet34, resnet50 or small");
}

ResNetImpl::ResNetImpl(const ResNetOptions& options) : options_(options) {
  if (options.blocks.empty() || options.blocks.size() != options.widths.size())
    throw std::invalid_argument("ResNet needs one width per stage and at least one stage");
  if (options.in_channels < 1) throw std::invalid_argument("ResNet in_channels must be at least 1");
  const int64_t stem_width = options.widths.front();
  conv1 = register_module("conv1", options.stem == ResNetStem::imagenet
                                       ? conv(options.in_channels, stem_width, 7, 2)
                                       : conv(options.in_channels, stem_width, 3, options.stem == ResNetStem::small ? 2 : 1));
  bn1 = norm(*this, "bn1", stem_width, options.batch_norm);
  const int64_t expansion = options.bottleneck ? 4 : 1;
  int64_t channels = stem_width;
  for (size_t stage = 0; stage < options.blocks.size(); ++stage) {
    torch::nn::Sequential blocks;
    for (int64_t k = 0; k < options.blocks[stage]; ++k) {
      const int64_t stride = (stage > 0 && k == 0) ? 2 : 1;
      blocks->push_back(Block(channels, options.widths[stage], stride, options.bottleneck, options, sync_));
      channels = options.widths[stage] * expansion;
    }
    stages_.push_back(register_module("layer" + std::to_string(stage + 1), blocks));
  }
  feature_dim_ = channels;
  // torchvision's initialisation: He-normal (fan-out) convolutions, BatchNorm weight 1 and bias 0.
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
}

void ResNetImpl::to_channels_last() {
  channels_last_ = true;
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
  }
}

torch::Tensor ResNetImpl::forward(const torch::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != options_.in_channels) {
    throw std::invalid_argument("ResNet expects images [N, " + std::to_string(options_.in_channels) + ", H, W], got " +
                                std::to_string(images.dim()) + "-D input" +
                                (images.dim() == 4 ? " with " + std::to_string(images.size(1)) + " channels" : ""));
  }
  torch::Tensor stem = conv1(images);
  // A one-channel batch is channels_last and contiguous at once, and the convolution then answers in
  // NCHW: made channels_last here, so that the BatchNorm + ReLU after it and the first block run fused
  // and in the layout of the rest of the network.
  if (channels_last_) stem = stem.contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor x = normed_relu(bn1, stem, *sync_, options_.fused_batch_norm_relu);
  if (options_.stem == ResNetStem::imagenet) x = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
  for (auto& stage : stages_) x = stage->forward(x);
  return x.mean({2, 3});
}

}  // namespace clamp
