// AdamW (Loshchilov & Hutter, 2019), PyTorch's formulation: decoupled weight decay p *= 1 - lr * wd on
// weight matrices and kernels only, bias-corrected first and second moments.
#pragma once

#include "optim/optimiser.h"

namespace clamp {

class AdamW : public Optimiser {
 public:
  AdamW(ParameterSet parameters, const OptimiserOptions& options);
  void step() override;

 private:
  std::vector<torch::Tensor> first_moment_, second_moment_;
  torch::Tensor steps_;  // int64 scalar on the CPU: the bias correction's t, checkpointed with the moments
};

}  // namespace clamp
