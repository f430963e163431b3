#include "serve/folded_resnet.h"

#include <ATen/Config.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include <algorithm>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "compat.h"
#include "serve/direct_convolution.h"

// oneDNN's fused convolutions are operators of LibTorch 2.x (registered for Inductor); 1.13 keeps the
// unfused paths.
#if AT_MKLDNN_ENABLED() && CLAMP_TORCH_VERSION_AT_LEAST(2, 1)
#define CLAMP_FUSED_CONVOLUTIONS 1
#else
#define CLAMP_FUSED_CONVOLUTIONS 0
#endif

namespace clamp {
namespace {

#if CLAMP_FUSED_CONVOLUTIONS
// The operators as their schemas declare them (LibTorch has no at:: functions for them), found once.
// A LibTorch that lacks one, or registered it with another C++ signature, leaves the unfused paths.
struct FusedOps {
  using Unary = at::Tensor(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b, c10::IntArrayRef padding,
                           c10::IntArrayRef stride, c10::IntArrayRef dilation, int64_t groups, c10::string_view attr,
                           c10::List<c10::optional<at::Scalar>> scalars, c10::optional<c10::string_view> algorithm);
  using BinaryInPlace = at::Tensor&(at::Tensor& other, const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b,
                                    c10::IntArrayRef padding, c10::IntArrayRef stride, c10::IntArrayRef dilation, int64_t groups,
                                    c10::string_view binary_attr, c10::optional<at::Scalar> alpha,
                                    c10::optional<c10::string_view> unary_attr, c10::List<c10::optional<at::Scalar>> unary_scalars,
                                    c10::optional<c10::string_view> unary_algorithm);
  using Reorder = at::Tensor(const at::Tensor& w, c10::IntArrayRef padding, c10::IntArrayRef stride, c10::IntArrayRef dilation,
                             int64_t groups, at::OptionalIntArrayRef input_size);

  c10::TypedOperatorHandle<Unary> unary;
  c10::TypedOperatorHandle<BinaryInPlace> add_relu_;
  c10::TypedOperatorHandle<Reorder> reorder;
};

std::optional<FusedOps> find_fused_ops() {
  try {
    auto& dispatcher = c10::Dispatcher::singleton();
    return FusedOps{dispatcher.findSchemaOrThrow("mkldnn::_convolution_pointwise", "").typed<FusedOps::Unary>(),
                    dispatcher.findSchemaOrThrow("mkldnn::_convolution_pointwise_", "binary").typed<FusedOps::BinaryInPlace>(),
                    dispatcher.findSchemaOrThrow("mkldnn::_reorder_convolution_weight", "").typed<FusedOps::Reorder>()};
  } catch (const c10::Error&) {
    return std::nullopt;
  }
}

const FusedOps* fused_ops() {
  static const std::optional<FusedOps> ops = find_fused_ops();
  return ops ? &*ops : nullptr;
}
#endif

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

at::Tensor FoldedResNet::Conv::fused(const at::Tensor& x, bool relu) const {
#if CLAMP_FUSED_CONVOLUTIONS
  return fused_ops()->unary.call(x, packed, bias, padding, stride, /*dilation=*/{1, 1}, /*groups=*/1, relu ? "relu" : "none",
                                 c10::List<c10::optional<at::Scalar>>(), c10::nullopt);
#else
  throw std::logic_error("fused convolutions need LibTorch 2.1 or newer with oneDNN");
#endif
}

void FoldedResNet::Conv::fused_add_relu(const at::Tensor& x, at::Tensor& shortcut) const {
#if CLAMP_FUSED_CONVOLUTIONS
  // oneDNN's sum post-op: the convolution accumulates into the shortcut's memory, then the ReLU.
  fused_ops()->add_relu_.call(shortcut, x, packed, bias, padding, stride, /*dilation=*/{1, 1}, /*groups=*/1, "add", c10::nullopt,
                              c10::string_view("relu"), c10::List<c10::optional<at::Scalar>>(), c10::nullopt);
#else
  throw std::logic_error("fused convolutions need LibTorch 2.1 or newer with oneDNN");
#endif
}

FoldedResNet::FoldedResNet(ResNetImpl& net, const FoldedResNetOptions& options)
    : dtype_(options.dtype), channels_last_(options.channels_last) {
  const at::ScalarType dtype = options.dtype;
  const bool channels_last = options.channels_last;
  if (!net.options().batch_norm)
    throw std::invalid_argument("serving needs a backbone with BatchNorm; a BatchNorm-free ResNet is a test model");
  ModuleMap modules;
  for (const auto& item : net.named_modules("", /*include_self=*/false)) modules[item.key()] = item.value();
  // conv then BatchNorm: y = gamma (conv(x) - mean) / sqrt(var + eps) + beta = conv'(x) + b'. In float64.
  const auto fold = [&modules, dtype, channels_last](const std::string& conv_name, const std::string& bn_name) {
    const auto& conv = module_named<torch::nn::Conv2dImpl>(modules, conv_name);
    const auto& bn = module_named<torch::nn::BatchNorm2dImpl>(modules, bn_name);
    const at::Tensor scale = bn.weight.to(at::kDouble) / (bn.running_var.to(at::kDouble) + bn.options.eps()).sqrt();
    Conv out;
    out.weight = (conv.weight.to(at::kDouble) * scale.view({-1, 1, 1, 1}))
                     .to(dtype)
                     .contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
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
  const bool cpu_float = stem_.weight.device().is_cpu() && stem_.weight.scalar_type() == at::kFloat;
  const bool onednn_capable = options.onednn && at::hasMKLDNN() && cpu_float;
  const bool direct_capable = options.direct && cpu_float && direct::instruction_set() != nullptr;
  // The direct kernels take every batch of a network no wider than kDirectMaxChannels; wider networks
  // keep oneDNN's fused convolutions, which were faster on their deep layers (ResNet-18, CIFAR stem, at
  // batch 1 and 64, 1 and 2 threads: 0.66x to 0.85x of the fused path's images/s), and take the direct
  // ones only for batches below the fused path's minimum, in place of the plain path.
  const bool direct_only = direct_capable && widest_channels() <= kDirectMaxChannels;
  fused_ = onednn_capable && !direct_only && options.fused && pack_for_fused(options.image_side);
  direct_ = direct_capable && (direct_only || !fused_ || fused_min_batch() > 1);
  if (direct_) pack_for_direct();
  onednn_ = onednn_capable && !fused_ && !direct_;
  if (onednn_) {
    const auto pack = [](Conv& conv) {
      conv.packed = at::mkldnn_reorder_conv2d_weight(conv.weight.to_mkldnn(), conv.padding, conv.stride, {1, 1}, 1);
    };
    pack(stem_);
    for (Block& block : blocks_) {
      for (Conv& conv : block.path) pack(conv);
      if (block.downsample) pack(*block.downsample);
    }
  }
}

bool FoldedResNet::pack_for_fused(int64_t image_side) {
#if CLAMP_FUSED_CONVOLUTIONS
  const FusedOps* ops = fused_ops();
  if (ops == nullptr) return false;
  // oneDNN picks a weight layout per input shape; a weight packed in another layout is reordered on
  // every call (ONEDNN_VERBOSE showed one such reorder per ResNet-18 call when packed without the
  // input's size). Packed for one image of image_side: the channels_last kernels chose the same layouts
  // for batches of 1 and 64 (no run-time weight reorder in ONEDNN_VERBOSE, small network and
  // ResNet-18), so one copy serves every batch size; a layout that did differ would cost time, not
  // correctness. Returns the convolution's output side.
  macs_per_image_ = 0;
  const auto pack = [this, ops, image_side](Conv& conv, int64_t side) {
    const c10::optional<std::vector<int64_t>> input_size =
        image_side > 0 ? c10::make_optional(std::vector<int64_t>{1, conv.weight.size(1), side, side}) : c10::nullopt;
    conv.packed = ops->reorder.call(conv.weight.contiguous(), conv.padding, conv.stride, {1, 1}, 1,
                                    input_size ? at::OptionalIntArrayRef(*input_size) : at::OptionalIntArrayRef());
    const int64_t out_side = (side + 2 * conv.padding[0] - conv.weight.size(2)) / conv.stride[0] + 1;
    if (image_side > 0) macs_per_image_ += out_side * out_side * conv.weight[0].numel() * conv.weight.size(0);
    return out_side;
  };
  int64_t side = pack(stem_, image_side);
  if (max_pool_) side = (side + 2 - 3) / 2 + 1;
  for (Block& block : blocks_) {
    if (block.downsample) pack(*block.downsample, side);
    for (Conv& conv : block.path) side = pack(conv, side);
  }
  // Batches the fused path runs alone need no dense copies, which would double the weights' memory.
  if (fused_min_batch() == 1) {
    const auto drop_dense = [](Conv& conv) { conv.weight = at::Tensor(); };
    drop_dense(stem_);
    for (Block& block : blocks_) {
      for (Conv& conv : block.path) drop_dense(conv);
      if (block.downsample) drop_dense(*block.downsample);
    }
  }
  return true;
#else
  (void)image_side;
  return false;
#endif
}

at::Tensor FoldedResNet::forward_fused(const at::Tensor& images) const {
  at::Tensor x = stem_.fused(images.contiguous(at::MemoryFormat::ChannelsLast), /*relu=*/true);
  if (max_pool_) x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
  for (const Block& block : blocks_) {
    at::Tensor y = x;
    for (size_t k = 0; k + 1 < block.path.size(); ++k) y = block.path[k].fused(y, /*relu=*/true);
    // The identity shortcut is the block's input, which nothing reads after this block: accumulated
    // into in place, as a downsampling shortcut's fresh output is.
    at::Tensor shortcut = block.downsample ? block.downsample->fused(x, /*relu=*/false) : x;
    block.path.back().fused_add_relu(y, shortcut);
    x = shortcut;
  }
  return x.mean({2, 3});
}

int64_t FoldedResNet::fused_min_batch() const {
  if (!fused_) return 0;
  // Below ~8M multiply-adds a call, oneDNN's fixed cost per convolution (~18 us on the 2-core VM: its
  // kernels' own time summed to 0.13 of the 0.40 ms a one-image call of the small network took,
  // ONEDNN_VERBOSE against wall time) outweighs what the fusion saves: the small network (5.5M per
  // image) at batch 1 took 0.40 ms fused, 0.35 ms through at::conv2d; at batch 2 (11M), 0.51 ms
  // against 0.88. ResNet-18 (CIFAR stem) at batch 1 took 10.9 ms fused against 16.4.
  constexpr int64_t kFusedMinMacs = 8'000'000;
  return macs_per_image_ <= 0 ? 1 : std::max<int64_t>(1, (kFusedMinMacs + macs_per_image_ - 1) / macs_per_image_);
}

namespace {

int64_t aligned_channels(int64_t channels) {
  return (channels + direct::kChannelAlign - 1) / direct::kChannelAlign * direct::kChannelAlign;
}

// A buffer for direct::convolve, and the tensor that owns its memory.
struct DirectBuffer {
  at::Tensor memory;
  direct::Activation view;
};

}  // namespace

int64_t FoldedResNet::widest_channels() const {
  int64_t widest = stem_.bias.size(0);
  for (const Block& block : blocks_) {
    for (const Conv& conv : block.path) widest = std::max(widest, conv.bias.size(0));
    if (block.downsample) widest = std::max(widest, block.downsample->bias.size(0));
  }
  return widest;
}

at::Tensor FoldedResNet::direct_buffer_memory(int64_t floats) const {
  std::lock_guard<std::mutex> lock(*direct_buffers_.mutex);
  at::Tensor* best = nullptr;
  for (at::Tensor& buffer : direct_buffers_.buffers) {
    if (buffer.use_count() == 1 && buffer.numel() >= floats && (best == nullptr || buffer.numel() < best->numel())) best = &buffer;
  }
  if (best != nullptr) return *best;
  direct_buffers_.buffers.push_back(at::empty({floats}, at::kFloat));
  return direct_buffers_.buffers.back();
}

void FoldedResNet::pack_for_direct() {
  // [out, in, k, k] -> [k][k][in stride][out padded], zeros in the padded channels. The stem reads the
  // image as it comes (its channel count unpadded); every later layer reads a padded buffer.
  const auto pack = [](Conv& conv, bool stem) {
    const int64_t out = conv.weight.size(0), in = conv.weight.size(1);
    const int64_t in_stride = stem ? in : aligned_channels(in), out_padded = aligned_channels(out);
    conv.direct_weight = at::zeros({conv.weight.size(2), conv.weight.size(3), in_stride, out_padded}, at::kFloat);
    conv.direct_weight.narrow(2, 0, in).narrow(3, 0, out).copy_(conv.weight.permute({2, 3, 1, 0}));
    conv.direct_bias = at::zeros({out_padded}, at::kFloat);
    conv.direct_bias.narrow(0, 0, out).copy_(conv.bias);
    if (conv.weight.size(2) != conv.weight.size(3) || conv.stride[0] != conv.stride[1]) {
      throw std::logic_error("the direct convolutions take square kernels and strides");
    }
    conv.weight = at::Tensor();  // the direct path replaces the plain one: no dense copy of the weights
  };
  pack(stem_, /*stem=*/true);
  for (Block& block : blocks_) {
    for (Conv& conv : block.path) pack(conv, false);
    if (block.downsample) pack(*block.downsample, false);
  }
}

at::Tensor FoldedResNet::forward_direct(const at::Tensor& images) const {
  // The batch in chunks whose largest activation (the stem's output) fits in ~256 KB, so that each
  // layer reads its input from the L2 cache the previous layer wrote it to. The small network at batch
  // 64 (1 MB per activation) took 8.2 ms in one piece; its weights are small enough to be read again
  // per chunk.
  const int64_t batch = images.size(0), features = blocks_.back().path.back().bias.size(0);
  const int64_t side = (images.size(2) + 2 * stem_.padding[0] - stem_.direct_weight.size(0)) / stem_.stride[0] + 1 + 2;
  const int64_t stem_bytes = side * side * stem_.direct_bias.size(0) * int64_t{sizeof(float)};
  const int64_t chunk = std::clamp<int64_t>((int64_t{256} << 10) / std::max<int64_t>(1, stem_bytes), 1, batch);
  at::Tensor out = at::empty({batch, features}, at::kFloat);
  for (int64_t start = 0; start < batch; start += chunk) {
    const int64_t n = std::min(chunk, batch - start);
    forward_direct_chunk(images.narrow(0, start, n), out.data_ptr<float>() + start * features);
  }
  return out;
}

void FoldedResNet::forward_direct_chunk(const at::Tensor& images, float* features_out) const {
  const int64_t batch = images.size(0);
  // Every buffer has a border of 1 (what a 3x3 convolution pads), the image the stem's padding.
  constexpr int64_t kPad = 1;
  const auto direct_buffer = [this](int64_t batch, int64_t height, int64_t width, int64_t channels, int64_t pad) {
    DirectBuffer buffer;
    buffer.view = direct::Activation{nullptr, batch, height, width, channels, pad};
    buffer.memory = direct_buffer_memory(buffer.view.floats());
    buffer.view.data = buffer.memory.data_ptr<float>();
    direct::zero_border(buffer.view);
    return buffer;
  };
  DirectBuffer x = direct_buffer(batch, images.size(2), images.size(3), images.size(1), stem_.padding[0]);
  {
    const at::Tensor interior =
        at::from_blob(x.view.data, {batch, x.view.height + 2 * x.view.pad, x.view.width + 2 * x.view.pad, x.view.channels}, at::kFloat);
    interior.narrow(1, x.view.pad, x.view.height).narrow(2, x.view.pad, x.view.width).copy_(images.permute({0, 2, 3, 1}));
  }
  // out = relu?(conv(in) [+ out's current values]), in a new buffer or accumulated into residual's.
  const auto convolve = [batch, &direct_buffer](const Conv& conv, const DirectBuffer& in, bool relu, DirectBuffer* residual) {
    const int64_t k = conv.direct_weight.size(0), s = conv.stride[0], p = conv.padding[0];
    if (in.view.pad < p) throw std::logic_error("a direct convolution's input has too narrow a border");
    direct::Convolution c{conv.direct_weight.data_ptr<float>(), conv.direct_bias.data_ptr<float>(), k, s, p, conv.direct_bias.size(0)};
    const int64_t height = (in.view.height + 2 * p - k) / s + 1, width = (in.view.width + 2 * p - k) / s + 1;
    if (residual != nullptr &&
        (residual->view.height != height || residual->view.width != width || residual->view.channels != c.out_channels)) {
      throw std::logic_error("a residual block's shortcut and its last convolution differ in shape");
    }
    DirectBuffer out = residual != nullptr ? *residual : direct_buffer(batch, height, width, c.out_channels, kPad);
    // Rows in chunks of at least ~2M multiply-adds (~40 us): a layer with less work stays on the calling
    // thread. Handing a small layer to LibTorch's OpenMP team costs more than it saves, and far more when
    // a team thread has lost its core: the small network at batch 1 with 2 threads, each layer split in
    // two (256K per chunk), took 1.0 ms a call in bench/embed.mjs against 0.16 ms on one thread.
    const int64_t row_macs = std::max<int64_t>(1, width * k * k * in.view.channels * c.out_channels);
    at::parallel_for(0, batch * height, std::max<int64_t>(1, (int64_t{1} << 21) / row_macs), [&](int64_t begin, int64_t end) {
      direct::convolve(c, in.view, out.view, residual != nullptr ? &out.view : nullptr, relu, begin, end);
    });
    return out;
  };
  x = convolve(stem_, x, /*relu=*/true, nullptr);
  if (max_pool_) {
    DirectBuffer pooled = direct_buffer(batch, (x.view.height - 1) / 2 + 1, (x.view.width - 1) / 2 + 1, x.view.channels, kPad);
    direct::max_pool_3x3_stride2(x.view, pooled.view);
    x = std::move(pooled);
  }
  for (const Block& block : blocks_) {
    DirectBuffer y = x;
    for (size_t k = 0; k + 1 < block.path.size(); ++k) y = convolve(block.path[k], y, /*relu=*/true, nullptr);
    // As on the fused path: the last convolution accumulates into the shortcut's buffer (the block's
    // input, which nothing reads after this block, or the downsampling's fresh output).
    DirectBuffer shortcut = block.downsample ? convolve(*block.downsample, x, /*relu=*/false, nullptr) : x;
    convolve(block.path.back(), y, /*relu=*/true, &shortcut);
    x = std::move(shortcut);
  }
  direct::mean_pool(x.view, blocks_.back().path.back().bias.size(0), features_out);
}

at::Tensor FoldedResNet::forward(const at::Tensor& images_in) const {
  if (direct_ && (!fused_ || images_in.size(0) < fused_min_batch())) return forward_direct(images_in.to(at::kFloat));
  if (fused_ && images_in.size(0) >= fused_min_batch()) return forward_fused(images_in.to(at::kFloat));
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
