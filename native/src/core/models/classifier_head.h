// A linear classifier over backbone features, with the features standardised first by fixed
// statistics (measured once on the labelled training images): the linear probe's parametrisation, so
// one learning-rate grid suits features of any scale, and a learning rate the feature probe chose
// carries over to a probe trained through augmented images.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace clamp {

class ClassifierHeadImpl : public torch::nn::Module {
 public:
  // Zero weights and bias (every class equally likely at first, as the linear probe starts), identity
  // standardisation until standardise() is called.
  ClassifierHeadImpl(int64_t in_features, int64_t classes);

  // [n, in_features] -> logits [n, classes].
  torch::Tensor forward(const torch::Tensor& features);
  // Sets the standardisation to the features' per-dimension mean and (unbiased) standard deviation,
  // the deviation floored at a tenth of its mean over the dimensions.
  void standardise(const torch::Tensor& features);

  int64_t in_features() const { return weight.size(1); }
  int64_t classes() const { return weight.size(0); }

  torch::Tensor weight, bias;  // [classes, in_features], [classes]: torch.nn.Linear's layout
  torch::Tensor mean, scale;   // [in_features] buffers
};
TORCH_MODULE(ClassifierHead);

}  // namespace clamp
