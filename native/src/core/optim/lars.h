// LARS (You et al., 2017) as CLAMP and the SSL literature use it: weight decay and the layer-wise
// trust ratio eta * ||w|| / ||g + wd w|| apply to weight matrices and kernels only; biases and
// normalisation parameters get neither. Then heavy-ball momentum.
#pragma once

#include "optim/optimiser.h"

namespace clamp {

class Lars : public Optimiser {
 public:
  Lars(ParameterSet parameters, const OptimiserOptions& options);
  void step() override;

 private:
  std::vector<torch::Tensor> momentum_;
};

}  // namespace clamp
