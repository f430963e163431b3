#pragma once

#include <torch/types.h>

#include <cstdint>

namespace clamp {

// conv2d(x, weight) with a 3x3 kernel, padding 1, no bias and stride 1 or 2 (a ResNet block's 3x3
// convolutions), whose weight gradient is hand-written for the CPU: oneDNN's takes about twice its own
// forward's time on these narrow layers (16 to 64 channels: 7.2 against 4.9 ms for 16 channels at 14x14,
// batch 512, AVX2). With `winograd`, a stride-1 layer's forward and input gradient run
// conv3x3_winograd (models/conv3x3_winograd.h) where it serves; otherwise they are oneDNN's. The weight gradient sums
// over fixed blocks of images, each in float32, the blocks combined in float64 in order: the same bits
// at any thread count.
//
// Call only where conv3x3_serves(x, weight, stride).
torch::Tensor conv3x3(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride, bool winograd = false);

// Whether conv3x3 serves these: gradients recorded, a CPU with AVX2 and FMA, stride 1 or 2; x float32
// [N, C, H, W] in channels_last; weight [K, C, 3, 3] float32 needing its gradient, C a multiple of 16 and K of 4.
bool conv3x3_serves(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride);

// The weight gradient itself, [K, C, 3, 3] in channels_last: the sum over images and output positions of
// dy[n, k, y, x] * x[n, c, stride * y + i - 1, stride * x + j - 1] (zero outside the image), for x
// [N, C, H, W] and dy [N, K, (H - 1) / stride + 1, (W - 1) / stride + 1] as conv3x3_serves allows (dy in
// channels_last too). Throws std::invalid_argument for anything else.
torch::Tensor conv3x3_weight_gradient(const torch::Tensor& x, const torch::Tensor& dy, int64_t stride = 1);

// How many weight gradients conv3x3_weight_gradient has computed in this process: tests count what a
// network's backward ran through it (its results may equal oneDNN's bit for bit on small batches).
int64_t conv3x3_weight_gradients_computed();

}  // namespace clamp
