#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

namespace clamp {

// relu(bn(x) + skip), or relu(bn(x)) with no skip, for a BatchNorm in training mode: normalised by the
// batch's statistics, the running statistics updated as torch's BatchNorm2d updates them, and a hand-
// written backward. On the CPU that is two passes over the activations forward (statistics, then the
// normalise-add-ReLU in one) and two backward (the gradient's sums with the ReLU's mask folded in, then
// the input's gradient), where ATen's batch_norm, add and relu take five and five: the step's BatchNorm
// and ReLU are memory-bound, so the passes are the cost. Sums run over fixed blocks of rows combined in
// order, so results depend on neither the thread count nor the CPU's vector width.
//
// Call only where fused_batch_norm_relu_serves(bn, x, skip).
torch::Tensor fused_batch_norm_relu(torch::nn::BatchNorm2d& bn, const torch::Tensor& x, const torch::Tensor& skip = {});

// Whether fused_batch_norm_relu serves these: bn training, affine, tracking running statistics; x a
// float32 CPU tensor [N, C, H, W] in channels_last (the CPU training layout) with at least two values per
// channel; skip, when given, the same shape, dtype and layout.
bool fused_batch_norm_relu_serves(const torch::nn::BatchNorm2d& bn, const torch::Tensor& x, const torch::Tensor& skip = {});

}  // namespace clamp
