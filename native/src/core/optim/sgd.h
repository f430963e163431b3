// SGD with momentum (and optionally Nesterov's), PyTorch's formulation with no dampening; weight decay
// (L2, added to the gradient) on weight matrices and kernels only.
#pragma once

#include "optim/optimiser.h"

namespace clamp {

class Sgd : public Optimiser {
 public:
  Sgd(ParameterSet parameters, const OptimiserOptions& options);
  void step() override;

 private:
  std::vector<torch::Tensor> momentum_;
};

}  // namespace clamp
