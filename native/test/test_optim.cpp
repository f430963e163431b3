// LARS against a step worked out by hand, its exclusions, and the warmup-cosine schedule.
#include "optim/lars.h"
#include "optim/schedule.h"

#include <torch/torch.h>

#include "check.h"

#include <cmath>
#include <iostream>
#include <stdexcept>
#include <string>

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

bool close(double a, double b, double tolerance = 1e-12) { return std::abs(a - b) <= tolerance * std::max(1.0, std::abs(b)); }

void test_lars_step_by_hand() {
  // w = [[3, 4]] (norm 5), g = [[0.6, 0.8]]; wd 0.1: u = g + 0.1 w = [[0.9, 1.2]] (norm 1.5);
  // trust = eta * 5 / 1.5 with eta 0.3 -> 1; so the update is u itself.
  // Bias b = [2], g_b = [0.5]: excluded, update 0.5 (no decay, no trust ratio).
  torch::Tensor w = torch::tensor({{3.0, 4.0}}, torch::kDouble).requires_grad_(true);
  torch::Tensor b = torch::tensor({2.0}, torch::kDouble).requires_grad_(true);
  clamp::Lars lars({w}, {b}, clamp::LarsOptions{0.1, 0.9, 0.1, 0.3});
  w.mutable_grad() = torch::tensor({{0.6, 0.8}}, torch::kDouble);
  b.mutable_grad() = torch::tensor({0.5}, torch::kDouble);
  lars.step();
  check(close(w[0][0].item<double>(), 3.0 - 0.1 * 0.9) && close(w[0][1].item<double>(), 4.0 - 0.1 * 1.2), "LARS step 1 on a weight");
  check(close(b[0].item<double>(), 2.0 - 0.1 * 0.5), "LARS step 1 on an excluded bias");
  // Step 2 with the same gradients: w = [[2.91, 3.88]] (norm 4.85), u = g + 0.1 w = [[0.891, 1.188]]
  // (norm 1.485), trust = 0.3 * 4.85 / 1.485; momentum = 0.9 * [[0.9, 1.2]] + trust * u.
  lars.step();
  const double trust = 0.3 * 4.85 / 1.485;
  check(close(w[0][0].item<double>(), 2.91 - 0.1 * (0.9 * 0.9 + trust * 0.891), 1e-10), "LARS step 2 with momentum");
  check(close(b[0].item<double>(), 1.95 - 0.1 * (0.9 * 0.5 + 0.5)), "excluded bias: plain momentum");
}

void test_lars_splits_modules() {
  torch::nn::Linear linear(4, 3);
  torch::nn::BatchNorm1d norm(3);
  clamp::Lars lars = clamp::Lars::for_modules({linear.ptr().get(), norm.ptr().get()}, clamp::LarsOptions{});
  check(lars.momentum_buffers().size() == 4, "one momentum buffer per parameter");
  check(lars.momentum_buffers()[0].dim() == 2, "the weight matrix comes first (adapted)");
  check(lars.momentum_buffers()[1].dim() == 1 && lars.momentum_buffers()[3].dim() == 1, "biases and BN parameters excluded");
  // A parameter without a gradient is left alone.
  const torch::Tensor before = linear->weight.detach().clone();
  lars.step();
  check(torch::equal(before, linear->weight.detach()), "no gradient, no change");
  check_throws([] { clamp::Lars({}, {}, clamp::LarsOptions{-1.0}); }, "lr >= 0", "a negative learning rate");
}

void test_schedule() {
  const clamp::WarmupCosineSchedule schedule{clamp::scaled_learning_rate(0.3, 512), 10, 110, 0.0, 0.001};
  check(close(schedule.peak_lr, 0.6), "linear scaling: 0.3 x 512 / 256 = 0.6");
  check(close(schedule.at(0), 0.0) && close(schedule.at(5), 0.3) && close(schedule.at(10), 0.6), "linear warmup");
  check(close(schedule.at(60), 0.001 + 0.5 * (0.6 - 0.001)), "cosine midpoint");
  check(close(schedule.at(110), 0.001) && close(schedule.at(500), 0.001), "final learning rate at and after the end");
  bool decreasing = true;
  for (int64_t step = 10; step < 110; ++step) decreasing = decreasing && schedule.at(step + 1) <= schedule.at(step);
  check(decreasing, "cosine decays monotonically");
  check_throws([] { clamp::WarmupCosineSchedule{0.1, 10, 10}.at(0); }, "warmup 10, total 10", "total <= warmup");
}

}  // namespace

int main() {
  test_lars_step_by_hand();
  test_lars_splits_modules();
  test_schedule();
  return clamp::testing::summary();
}
