#pragma once

#include <torch/types.h>

#include <cstdint>

namespace clamp {

// conv2d(x, weight) with a 3x3 kernel, stride 1, padding 1 and no bias, by Winograd's minimal filtering
// F(2x2, 3x3) on AVX2 CPUs: each 2x2 block of outputs from a 4x4 patch of inputs with 16 multiplications
// per input-output channel pair where the direct convolution takes 36, so that the narrow layers of the
// small ResNet (16 to 64 channels), where oneDNN's AVX2 kernels run near the CPU's peak already, do 2.25x
// fewer multiply-adds. The same function computes the input's gradient of a stride-1 layer: the
// convolution of the output's gradient with the weight transposed and turned 180 degrees.
//
// Tiles are processed in fixed blocks (their transforms, 16 small matrix products, the inverse
// transform), each output written by one task in one order: the same bits at any thread count. The
// weight's transform is computed in float64 and rounded once; the error against a float64 convolution
// stays within the direct float32 convolution's (clamp_test_conv3x3_winograd).
//
// x float32 [N, C, H, W] channels_last on the CPU, weight [K, C, 3, 3] float32 (any layout); the result
// is [N, K, H, W] channels_last. Call only where conv3x3_winograd_serves(x, weight); anything else throws
// std::invalid_argument.
torch::Tensor conv3x3_winograd(const torch::Tensor& x, const torch::Tensor& weight);

// Whether conv3x3_winograd takes these: a CPU with AVX2 and FMA, x as above with C a multiple of 8,
// weight [K, C, 3, 3] float32 on the CPU with K a multiple of 16, C and K at most 256 (wider layers, whose
// transformed weight outgrows the caches, stay oneDNN's: ResNet-18's and ResNet-50's last stage).
bool conv3x3_winograd_serves(const torch::Tensor& x, const torch::Tensor& weight);

// How many convolutions conv3x3_winograd has computed in this process (tests count what a network's
// forward and backward ran through it).
int64_t conv3x3_winograd_calls();

}  // namespace clamp
