#include "optim/adamw.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace clamp {

AdamW::AdamW(ParameterSet parameters, const OptimiserOptions& options) : Optimiser(std::move(parameters), options) {
  if (!(options.beta1 >= 0 && options.beta1 < 1) || !(options.beta2 >= 0 && options.beta2 < 1) || !(options.eps > 0))
    throw std::invalid_argument("AdamW needs 0 <= beta1, beta2 < 1 and eps > 0");
  first_moment_ = add_state("exp_avg");
  second_moment_ = add_state("exp_avg_sq");
  steps_ = add_scalar_state("step", at::kLong);
}

void AdamW::step() {
  torch::NoGradGuard no_grad;
  const int64_t t = steps_.item<int64_t>() + 1;
  steps_.fill_(t);
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double first_correction = 1 - std::pow(b1, double(t));
  const double root_second_correction = std::sqrt(1 - std::pow(b2, double(t)));
  for (size_t k = 0; k < parameters_.size(); ++k) {
    torch::Tensor& p = parameters_[k].tensor;
    if (!p.grad().defined()) continue;
    const torch::Tensor& g = p.grad();
    if (parameters_[k].decayed) p.mul_(1 - options_.lr * options_.weight_decay);
    first_moment_[k].mul_(b1).add_(g, 1 - b1);
    second_moment_[k].mul_(b2).addcmul_(g, g, 1 - b2);
    const torch::Tensor denominator = (second_moment_[k].sqrt() / root_second_correction).add_(options_.eps);
    p.addcdiv_(first_moment_[k], denominator, -options_.lr / first_correction);
  }
}

}  // namespace clamp
