// LARS against a step worked out by hand; SGD and AdamW against LibTorch's own on decayed parameters;
// every method's exclusion of 1-D parameters from weight decay; the warmup-cosine schedule.
#include "optim/adamw.h"
#include "optim/lars.h"
#include "optim/schedule.h"
#include "optim/sgd.h"

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
  clamp::OptimiserOptions options;
  options.lr = 0.1;
  options.momentum = 0.9;
  options.weight_decay = 0.1;
  options.eta = 0.3;
  clamp::Lars lars(clamp::ParameterSet{{{"w", w}}, {{"b", b}}}, options);
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
  clamp::Lars lars(clamp::ParameterSet::of_modules({{"fc.", linear.ptr().get()}, {"bn.", norm.ptr().get()}}), clamp::OptimiserOptions{});
  const auto& state = lars.state();
  check(state.size() == 4, "one momentum buffer per parameter");
  check(state[0].name == "momentum.fc.weight" && state[0].tensor.dim() == 2, "the weight matrix comes first (decayed), named");
  check(state[1].name == "momentum.fc.bias" && state[3].name == "momentum.bn.bias", "biases and BN parameters excluded, named");
  // A parameter without a gradient is left alone.
  const torch::Tensor before = linear->weight.detach().clone();
  lars.step();
  check(torch::equal(before, linear->weight.detach()), "no gradient, no change");
  clamp::OptimiserOptions negative;
  negative.lr = -1;
  check_throws([&] { clamp::Lars({}, negative); }, "lr >= 0", "a negative learning rate");
  check_throws([] { clamp::optimiser_kind_named("adam"); }, "lars, sgd or adamw", "an unknown optimiser");
}

// Runs `ours` and LibTorch's `theirs` from the same weights over the same five random gradients.
template <typename Reference>
void compare_with_libtorch(clamp::OptimiserKind kind, const clamp::OptimiserOptions& options, Reference theirs_for,
                           const std::string& what) {
  torch::manual_seed(3);
  const torch::Tensor start = torch::randn({4, 3}, torch::kDouble);
  torch::Tensor ours = start.clone().requires_grad_(true), theirs = start.clone().requires_grad_(true);
  clamp::OptimiserOptions with_kind = options;
  with_kind.kind = kind;
  auto optimiser = clamp::make_optimiser(clamp::ParameterSet{{{"w", ours}}, {}}, with_kind);
  auto reference = theirs_for(theirs);
  for (int step = 0; step < 5; ++step) {
    const torch::Tensor gradient = torch::randn({4, 3}, torch::kDouble);
    ours.mutable_grad() = gradient.clone();
    theirs.mutable_grad() = gradient.clone();
    optimiser->step();
    reference.step();
  }
  const double difference = (ours - theirs).abs().max().item<double>();
  check(difference < 1e-12, what + " matches LibTorch's over 5 steps (max difference " + std::to_string(difference) + ")");
}

void test_sgd_and_adamw_match_libtorch() {
  clamp::OptimiserOptions options;
  options.lr = 0.05;
  options.momentum = 0.9;
  options.weight_decay = 0.01;
  for (const bool nesterov : {false, true}) {
    options.nesterov = nesterov;
    compare_with_libtorch(
        clamp::OptimiserKind::sgd, options,
        [&](torch::Tensor& p) {
          return torch::optim::SGD({p}, torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(0.01).nesterov(nesterov));
        },
        nesterov ? "SGD (Nesterov)" : "SGD (heavy ball)");
  }
  options.beta1 = 0.8;
  options.beta2 = 0.99;
  options.eps = 1e-6;
  compare_with_libtorch(
      clamp::OptimiserKind::adamw, options,
      [](torch::Tensor& p) {
        return torch::optim::AdamW({p}, torch::optim::AdamWOptions(0.05).betas(std::make_tuple(0.8, 0.99)).eps(1e-6).weight_decay(0.01));
      },
      "AdamW");
}

// A 1-D parameter with a zero gradient must not move under any method: no decay reaches it.
void test_every_method_excludes_1d_parameters() {
  for (const auto kind : {clamp::OptimiserKind::lars, clamp::OptimiserKind::sgd, clamp::OptimiserKind::adamw}) {
    torch::Tensor bias = torch::ones({3}, torch::kDouble).requires_grad_(true);
    torch::Tensor weight = torch::ones({3, 3}, torch::kDouble).requires_grad_(true);
    clamp::OptimiserOptions options;
    options.kind = kind;
    options.lr = 0.1;
    options.weight_decay = 0.5;
    auto optimiser = clamp::make_optimiser(clamp::ParameterSet{{{"w", weight}}, {{"b", bias}}}, options);
    bias.mutable_grad() = torch::zeros({3}, torch::kDouble);
    weight.mutable_grad() = torch::zeros({3, 3}, torch::kDouble);
    optimiser->step();
    check(torch::equal(bias.detach(), torch::ones({3}, torch::kDouble)), "the bias takes no weight decay");
    check((weight.detach() < 1).all().item<bool>(), "the weight does take weight decay");
  }
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
  test_sgd_and_adamw_match_libtorch();
  test_every_method_excludes_1d_parameters();
  test_schedule();
  return clamp::testing::summary();
}
