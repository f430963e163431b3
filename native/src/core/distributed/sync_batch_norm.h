// SyncBatchNorm: BatchNorm in training mode with the statistics of the whole data-parallel batch (the
// paper's setting) rather than of each rank's share. Forward all-reduces each channel's sum, sum of
// squares and count; backward all-reduces the sums of dy and dy * (x - mean), so the gradient reaching
// each rank's input is the single-process gradient. The weight and bias gradients stay this rank's
// part: the training step's gradient all-reduce sums them like every other parameter's.
#pragma once

#include <torch/nn/modules/batchnorm.h>

#include "distributed/collective.h"

namespace clamp {

// bn in training mode over x [N, C, H, W]: normalised by the global batch's mean and (biased) variance,
// running statistics updated with the global mean and unbiased variance, as torch.nn.SyncBatchNorm.
at::Tensor sync_batch_norm(const at::Tensor& x, torch::nn::BatchNorm2dImpl& bn, Collective& collective);

}  // namespace clamp
