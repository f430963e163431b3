// Inputs and a loss-and-gradient probe shared by the packing-loss suites (CPU and CUDA).
#pragma once

#include <torch/torch.h>

#include "loss/packing_loss.h"

#include <algorithm>
#include <cstdint>
#include <functional>

namespace clamp::testing {

inline double relative_l2(const at::Tensor& a, const at::Tensor& b) {
  const double denominator = std::max(b.to(at::kDouble).norm().item<double>(), 1e-30);
  return (a.to(at::kDouble) - b.to(at::kDouble)).norm().item<double>() / denominator;
}

// Views scattered around b random centres: `spread` sets how far apart the images are, `noise` how
// wide each sub-manifold is. Made on the CPU, so every device gets the same values.
inline at::Tensor make_batch(int64_t m, int64_t b, int64_t d, double spread, double noise, at::ScalarType dtype, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor centres = at::randn({1, b, d}, generator, options) * spread;
  const at::Tensor views = centres + at::randn({m, b, d}, generator, options) * noise;
  return views.reshape({m * b, d}).to(dtype);
}

// One named configuration of the loss and the batch it runs on.
struct LossCase {
  const char* name;
  int64_t m, b, d;
  double spread, noise;
  PackingLossOptions options;

  at::Tensor batch(at::ScalarType dtype, uint64_t seed) const { return make_batch(m, b, d, spread, noise, dtype, seed); }
};

struct LossAndGrad {
  double loss;
  at::Tensor grad;
};

inline LossAndGrad evaluate(const std::function<at::Tensor(const at::Tensor&)>& loss_fn, const at::Tensor& z) {
  const at::Tensor input = z.detach().clone().requires_grad_(true);
  const at::Tensor loss = loss_fn(input);
  loss.backward();
  return {loss.item<double>(), input.grad()};
}

}  // namespace clamp::testing
