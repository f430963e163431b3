// The fused BatchNorm + (add +) ReLU against ATen's batch_norm, add and relu: outputs, running
// statistics and every gradient; the same bits at any thread count; NaNs kept; where it does not serve;
// and a whole ResNet trained a step with and without it.
#include "models/batch_norm_relu.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <string>

#include "check.h"
#include "network_copies.h"
#include "models/resnet.h"

namespace {

using clamp::fused_batch_norm_relu;
using clamp::fused_batch_norm_relu_serves;
using clamp::testing::check;

double worst(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Relative to the larger value's scale: gradients sum over the batch.
double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return worst(got, want) / std::max(1e-12, want.abs().max().item<double>());
}

torch::nn::BatchNorm2d make_bn(int64_t channels, c10::optional<double> momentum) {
  torch::nn::BatchNorm2d bn(torch::nn::BatchNorm2dOptions(channels).momentum(momentum));
  torch::NoGradGuard no_grad;
  bn->weight.uniform_(0.5, 1.5);
  bn->bias.uniform_(-0.3, 0.3);
  bn->running_mean.uniform_(-0.1, 0.1);
  bn->running_var.uniform_(0.9, 1.1);
  return bn;
}

struct Outcome {
  torch::Tensor y, dx, dweight, dbias, dskip, running_mean, running_var, batches;
};

// Two steps (so the running statistics are updated from a non-initial state), the second's gradients.
Outcome run(torch::nn::BatchNorm2d& bn, const torch::Tensor& x0, const torch::Tensor& skip0, const torch::Tensor& grad, bool fused) {
  Outcome o;
  for (int step = 0; step < 2; ++step) {
    bn->zero_grad();
    torch::Tensor x = (x0 * (1 + step)).detach().requires_grad_(true);
    torch::Tensor skip = skip0.defined() ? skip0.detach().requires_grad_(true) : torch::Tensor();
    check(!fused || fused_batch_norm_relu_serves(bn, x, skip), "the fused op serves a channels_last float32 batch in training");
    torch::Tensor y = fused ? fused_batch_norm_relu(bn, x, skip) : torch::relu(skip.defined() ? bn(x) + skip : bn(x));
    (y * grad).sum().backward();
    o.y = y.detach();
    o.dx = x.grad();
    o.dskip = skip.defined() ? skip.grad() : torch::Tensor();
  }
  o.dweight = bn->weight.grad().clone();
  o.dbias = bn->bias.grad().clone();
  o.running_mean = bn->running_mean.clone();
  o.running_var = bn->running_var.clone();
  o.batches = bn->num_batches_tracked.clone();
  return o;
}

void test_against_aten(int64_t n, int64_t c, int64_t h, int64_t w, bool with_skip, c10::optional<double> momentum) {
  const std::string what = std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) +
                           (with_skip ? " with a skip" : "") + (momentum ? "" : ", cumulative average");
  const auto layout = at::MemoryFormat::ChannelsLast;
  torch::Tensor x = (torch::randn({n, c, h, w}) * 2 + 0.5).contiguous(layout);
  torch::Tensor skip = with_skip ? torch::randn({n, c, h, w}).contiguous(layout) : torch::Tensor();
  torch::Tensor grad = torch::randn({n, c, h, w}).contiguous(layout);
  torch::nn::BatchNorm2d fused_bn = make_bn(c, momentum), aten_bn = make_bn(c, momentum);
  {
    torch::NoGradGuard no_grad;
    for (auto& pair : fused_bn->named_parameters()) aten_bn->named_parameters()[pair.key()].copy_(pair.value());
    for (auto& pair : fused_bn->named_buffers()) aten_bn->named_buffers()[pair.key()].copy_(pair.value());
  }
  const Outcome f = run(fused_bn, x, skip, grad, true), a = run(aten_bn, x, skip, grad, false);
  check(worst(f.y, a.y) < 2e-5, what + ": output (worst " + std::to_string(worst(f.y, a.y)) + ")");
  check(f.y.is_contiguous(layout), what + ": output in channels_last");
  check(worst(f.running_mean, a.running_mean) < 1e-6, what + ": running mean");
  check(worst(f.running_var, a.running_var) < 1e-5, what + ": running variance");
  check(f.batches.item<int64_t>() == a.batches.item<int64_t>() && f.batches.item<int64_t>() == 2, what + ": batches tracked");
  check(relative(f.dx, a.dx) < 1e-4, what + ": input gradient (relative " + std::to_string(relative(f.dx, a.dx)) + ")");
  check(relative(f.dweight, a.dweight) < 1e-4, what + ": weight gradient");
  check(relative(f.dbias, a.dbias) < 1e-4, what + ": bias gradient");
  if (with_skip) check(relative(f.dskip, a.dskip) < 1e-6, what + ": skip gradient");
}

void test_threads_do_not_change_bits() {
  const auto layout = at::MemoryFormat::ChannelsLast;
  torch::Tensor x = torch::randn({64, 16, 9, 9}).contiguous(layout), skip = torch::randn({64, 16, 9, 9}).contiguous(layout);
  torch::Tensor grad = torch::randn({64, 16, 9, 9}).contiguous(layout);
  const int threads = at::get_num_threads();
  Outcome runs[2];
  for (int k = 0; k < 2; ++k) {
    at::set_num_threads(k == 0 ? 1 : 2);
    torch::manual_seed(7);
    torch::nn::BatchNorm2d bn = make_bn(16, 0.1);
    runs[k] = run(bn, x, skip, grad, true);
  }
  at::set_num_threads(threads);
  check(torch::equal(runs[0].y, runs[1].y) && torch::equal(runs[0].dx, runs[1].dx) && torch::equal(runs[0].dweight, runs[1].dweight) &&
            torch::equal(runs[0].running_var, runs[1].running_var),
        "one and two threads give the same bits");
}

void test_nan_stays_nan() {
  torch::Tensor x = torch::randn({4, 8, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast);
  x.index_put_({0, 0, 0, 0}, std::nan(""));
  torch::nn::BatchNorm2d bn = make_bn(8, 0.1);
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = fused_batch_norm_relu(bn, x);
  }
  check(y.select(1, 0).isnan().all().item<bool>(), "a NaN in a channel makes its outputs NaN, as ATen's relu keeps it");
  check(!y.select(1, 1).isnan().any().item<bool>(), "other channels stay finite");
}

void test_where_it_serves() {
  torch::nn::BatchNorm2d bn = make_bn(8, 0.1);
  const torch::Tensor cl = torch::randn({4, 8, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast);
  check(fused_batch_norm_relu_serves(bn, cl), "serves channels_last float32 in training");
  check(!fused_batch_norm_relu_serves(bn, torch::randn({4, 8, 3, 3})), "not NCHW");
  check(!fused_batch_norm_relu_serves(bn, cl.to(torch::kFloat64)), "not float64");
  check(!fused_batch_norm_relu_serves(bn, torch::randn({4, 4, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast)), "not a channel mismatch");
  check(!fused_batch_norm_relu_serves(bn, cl, torch::randn({4, 8, 3, 3})), "not a skip in another layout");
  check(!fused_batch_norm_relu_serves(bn, torch::randn({1, 8, 1, 1}).contiguous(at::MemoryFormat::ChannelsLast)),
        "not one value a channel");
  bn->eval();
  check(!fused_batch_norm_relu_serves(bn, cl), "not in eval mode (running statistics)");
  check(!fused_batch_norm_relu_serves(torch::nn::BatchNorm2d(nullptr), cl), "not without a BatchNorm");
}

// The small ResNet, one forward and backward in training from the same weights: fused in float32,
// ATen's ops in float32 and in float64 (the truth both are measured against). The fused network must be
// as accurate as ATen's: every feature, gradient and running statistic within twice ATen's own error
// (plus a float32 rounding's worth).
void test_resnet_step() {
  torch::manual_seed(3);
  clamp::ResNetOptions options = clamp::ResNetOptions::small();
  options.in_channels = 1;
  options.conv3x3_weight_gradient = false;  // ATen's convolutions on both sides: the BatchNorms alone differ
  clamp::ResNet fused(options);
  options.fused_batch_norm_relu = false;
  clamp::ResNet aten(options), truth(options);
  clamp::testing::copy_parameters(fused, {&aten, &truth});
  truth->to(torch::kFloat64);
  fused->to_channels_last();
  aten->to_channels_last();
  truth->to_channels_last();
  const torch::Tensor images = torch::randn({32, 1, 28, 28}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor f = fused->forward(images), a = aten->forward(images), t = truth->forward(images.to(torch::kFloat64));
  // A random linear read-out: a loss like sum(f^2) puts the gradient almost in the span BatchNorm's
  // backward projects out, and then float32 cancels in any implementation.
  const torch::Tensor readout = torch::randn_like(t);
  (f * readout.to(torch::kFloat32)).sum().backward();
  (a * readout.to(torch::kFloat32)).sum().backward();
  (t * readout).sum().backward();
  const auto as_accurate = [&](const torch::Tensor& got, const torch::Tensor& reference, const torch::Tensor& exact,
                               const std::string& what) {
    const torch::Tensor exact32 = exact.to(torch::kFloat32);
    const double fused_error = relative(got, exact32), aten_error = relative(reference, exact32);
    check(fused_error <= 2 * aten_error + 1e-5,
          what + ": fused error " + std::to_string(fused_error) + " against ATen's " + std::to_string(aten_error));
  };
  as_accurate(f, a, t, "the small ResNet's features");
  for (auto& pair : fused->named_parameters())
    as_accurate(pair.value().grad(), aten->named_parameters()[pair.key()].grad(), truth->named_parameters()[pair.key()].grad(),
                pair.key() + "'s gradient");
  for (auto& pair : fused->named_buffers())
    if (pair.value().is_floating_point())
      as_accurate(pair.value(), aten->named_buffers()[pair.key()], truth->named_buffers()[pair.key()], pair.key());
    else
      check(torch::equal(pair.value(), aten->named_buffers()[pair.key()]), pair.key() + " counts the same batches");
}

}  // namespace

int main() {
  torch::manual_seed(0);
  test_against_aten(16, 16, 7, 7, false, 0.1);
  test_against_aten(16, 16, 7, 7, true, 0.1);
  test_against_aten(5, 3, 4, 6, true, c10::nullopt);  // 3 channels: no full vector, a partial last block
  test_against_aten(300, 64, 2, 2, false, 0.3);       // 1,200 rows: several blocks
  test_threads_do_not_change_bits();
  test_nan_stays_nan();
  test_where_it_serves();
  test_resnet_step();
  return clamp::testing::summary();
}
