#include "models/classifier_head.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace clamp {

ClassifierHeadImpl::ClassifierHeadImpl(int64_t in_features, int64_t classes) {
  if (in_features < 1) throw std::invalid_argument("the classifier head needs in_features >= 1");
  if (classes < 2) throw std::invalid_argument("the classifier head needs classes >= 2, got " + std::to_string(classes));
  weight = register_parameter("weight", torch::zeros({classes, in_features}));
  bias = register_parameter("bias", torch::zeros({classes}));
  mean = register_buffer("mean", torch::zeros({in_features}));
  scale = register_buffer("scale", torch::ones({in_features}));
}

torch::Tensor ClassifierHeadImpl::forward(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(1) != in_features())
    throw std::invalid_argument("the classifier head expects features [n, " + std::to_string(in_features()) + "]");
  return torch::addmm(bias, (features - mean) / scale, weight.t());
}

void ClassifierHeadImpl::standardise(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(1) != in_features() || features.size(0) < 2)
    throw std::invalid_argument("standardise needs at least 2 feature rows of width " + std::to_string(in_features()));
  torch::NoGradGuard no_grad;
  const torch::Tensor x = features.to(mean.device(), at::kFloat);
  mean.copy_(x.mean(0));
  // A dimension nearly constant on these features (a ReLU dead at initialisation) must not be blown up
  // when fine-tuning brings it to life: no dimension is scaled up more than 10x the typical one.
  const torch::Tensor std = x.std(0, /*unbiased=*/true);
  scale.copy_(std.clamp_min(std::max(1e-6, 0.1 * std.mean().item<double>())));
}

}  // namespace clamp
