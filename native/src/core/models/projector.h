// The projection head CLAMP trains through: Linear-ReLU blocks then a Linear output, no BatchNorm
// (the paper's 512 -> 2048 -> 256 for CIFAR-10, 2048 -> 8192 -> 8192 -> 512 for ImageNet). It is
// dropped after training; evaluation and serving use the backbone's features.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

namespace clamp {

struct ProjectorOptions {
  int64_t in_features = 512;
  std::vector<int64_t> hidden{2048};
  int64_t out_features = 256;
};

class ProjectorImpl : public torch::nn::Module {
 public:
  explicit ProjectorImpl(const ProjectorOptions& options = {});
  torch::Tensor forward(const torch::Tensor& features);
  const ProjectorOptions& options() const { return options_; }

 private:
  ProjectorOptions options_;
  torch::nn::Sequential layers{nullptr};
};
TORCH_MODULE(Projector);

}  // namespace clamp
