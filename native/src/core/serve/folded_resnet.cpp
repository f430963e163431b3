#include "serve/folded_resnet.h"

#include <c10/core/GradMode.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include <map>
#include <stdexcept>
#include <string>

namespace clamp {
namespace {

using ModuleMap = std::map<std::string, std::shared_ptr<torch::nn::Module>>;

template <typename Impl>
Impl& module_named(const ModuleMap& modules, const std::string& name) {
  const auto found = modules.find(name);
  Impl* module = found == modules.end() ? nullptr : found->second->as<Impl>();
  if (module == nullptr) throw std::logic_error("the ResNet has no " + name + " of the expected kind");
  return *module;
}

}  // namespace

at::Tensor FoldedResNet::Conv::operator()(const at::Tensor& x, bool onednn) const {
  if (onednn) return at::mkldnn_convolution(x, packed, bias, padding, stride, /*dilation=*/{1, 1}, /*groups=*/1);
  return at::conv2d(x, weight, bias, stride, padding);
}

FoldedResNet::FoldedResNet(ResNetImpl& net, bool use_onednn, at::ScalarType dtype, bool channels_last)
    : dtype_(dtype), channels_last_(channels_last) {
  if (!net.options().batch_norm) throw std::invalid_argument("serving needs a backbone with BatchNorm; a BatchNorm-free ResNet is a test model");
  ModuleMap modules;
  for (const auto& item : net.named_modules("", /*include_self=*/false)) modules[item.key()] = item.value();
  // conv then BatchNorm: y = gamma (conv(x) - mean) / sqrt(var + eps) + beta = conv'(x) + b'. In float64.
  const auto fold = [&modules, dtype, channels_last](const std::string& conv_name, const std::string& bn_name) {
    const auto& conv = module_named<torch::nn::Conv2dImpl>(modules, conv_name);
    const auto& bn = module_named<torch::nn::BatchNorm2dImpl>(modules, bn_name);
    const at::Tensor scale = bn.weight.to(at::kDouble) / (bn.running_var.to(at::kDouble) + bn.options.eps()).sqrt();
    Conv out;
    out.weight = (conv.weight.to(at::kDouble) * scale.view({-1, 1, 1, 1})).to(dtype).contiguous(
        channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    out.bias = (bn.bias.to(at::kDouble) - bn.running_mean.to(at::kDouble) * scale).to(dtype);
    const auto& stride = conv.options.stride();
    out.stride = {stride->at(0), stride->at(1)};
    // The padding option is a variant whose accessors differ between LibTorch 1.13 and 2.x; the ResNet
    // pads every convolution by kernel / 2, which the weight's shape gives.
    out.padding = {conv.weight.size(2) / 2, conv.weight.size(3) / 2};
    return out;
  };
  c10::NoGradGuard no_grad;
  stem_ = fold("conv1", "bn1");
  max_pool_ = net.options().stem == ResNetStem::imagenet;
  for (size_t stage = 0; stage < net.options().blocks.size(); ++stage) {
    for (int64_t k = 0; k < net.options().blocks[stage]; ++k) {
      const std::string prefix = "layer" + std::to_string(stage + 1) + "." + std::to_string(k) + ".";
      Block block;
      for (const char* n : {"1", "2", "3"}) {
        if (modules.count(prefix + "conv" + n)) block.path.push_back(fold(prefix + "conv" + n, prefix + "bn" + n));
      }
      if (modules.count(prefix + "downsample")) block.downsample = fold(prefix + "downsample.0", prefix + "downsample.1");
      blocks_.push_back(std::move(block));
    }
  }
  onednn_ = use_onednn && at::hasMKLDNN() && stem_.weight.device().is_cpu() && stem_.weight.scalar_type() == at::kFloat;
  if (onednn_) {
    const auto pack = [](Conv& conv) { conv.packed = at::mkldnn_reorder_conv2d_weight(conv.weight.to_mkldnn(), conv.padding, conv.stride, {1, 1}, 1); };
    pack(stem_);
    for (Block& block : blocks_) {
      for (Conv& conv : block.path) pack(conv);
      if (block.downsample) pack(*block.downsample);
    }
  }
}

at::Tensor FoldedResNet::forward(const at::Tensor& images_in) const {
  const bool onednn = onednn_ && images_in.size(0) >= kOneDnnMinBatch;
  const at::Tensor images = images_in.to(dtype_).contiguous(channels_last_ ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  at::Tensor x = stem_(onednn ? images.to_mkldnn() : images, onednn).relu_();
  if (max_pool_) x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
  for (const Block& block : blocks_) {
    at::Tensor y = x;
    for (size_t k = 0; k < block.path.size(); ++k) {
      y = block.path[k](y, onednn);
      if (k + 1 < block.path.size()) y.relu_();
    }
    y.add_(block.downsample ? (*block.downsample)(x, onednn) : x).relu_();
    x = y;
  }
  if (onednn) return at::adaptive_avg_pool2d(x, {1, 1}).to_dense().flatten(1);
  return x.mean({2, 3}, /*keepdim=*/false, at::kFloat);  // the pooled features in float32, whatever dtype_ is
}

}  // namespace clamp
