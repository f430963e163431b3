// The Winograd F(2x2, 3x3) convolution against ATen's and float64: the forward and the input's gradient
// on the shapes the ResNets use and on awkward ones (odd sides, one pixel, several channel vectors, a
// partial last block), the same bits at any thread count and for any weight layout, where it serves, and
// the small ResNet's whole step through it.
#include "models/conv3x3_winograd.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "check.h"
#include "network_copies.h"
#include "models/conv3x3.h"
#include "models/resnet.h"

namespace {

using clamp::conv3x3_winograd;
using clamp::conv3x3_winograd_serves;
using clamp::testing::check;

double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).abs().max().item<double>() / std::max(1e-12, want.abs().max().item<double>());
}

torch::Tensor channels_last(const torch::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

std::string shape_name(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k) {
  return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(k);
}

// The forward within twice ATen's own float32 error against float64 (plus a rounding's worth), and the
// input's gradient of the same layer (dy convolved with the weight transposed and turned) likewise.
void test_convolution(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k) {
  const std::string name = shape_name(n, c, h, w, k);
  const torch::Tensor x = channels_last(torch::randn({n, c, h, w}));
  const torch::Tensor weight = channels_last(torch::randn({k, c, 3, 3}) * 0.2);
  const torch::Tensor got = conv3x3_winograd(x, weight);
  check(got.sizes() == torch::IntArrayRef({n, k, h, w}) && got.is_contiguous(at::MemoryFormat::ChannelsLast),
        name + ": [N, K, H, W] in channels_last");
  const torch::Tensor truth = at::conv2d(x.to(torch::kFloat64), weight.to(torch::kFloat64), {}, 1, 1).to(torch::kFloat32);
  const double error = relative(got, truth), aten_error = relative(at::conv2d(x, weight, {}, 1, 1), truth);
  check(error <= 2 * aten_error + 1e-6,
        name + ": forward error " + std::to_string(error) + " against ATen's " + std::to_string(aten_error));

  if (k % 8 != 0 || c % 16 != 0) return;  // the input's gradient swaps the two
  const torch::Tensor dy = channels_last(torch::randn({n, k, h, w}));
  const auto input_gradient = [&](const torch::Tensor& g, const torch::Tensor& x_like, const torch::Tensor& wt) {
    return std::get<0>(
        at::convolution_backward(g, x_like, wt, c10::nullopt, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1, {true, false, false}));
  };
  const torch::Tensor dx = conv3x3_winograd(dy, weight.transpose(0, 1).flip({2, 3}));
  const torch::Tensor dx_truth =
      input_gradient(dy.to(torch::kFloat64), x.to(torch::kFloat64), weight.to(torch::kFloat64)).to(torch::kFloat32);
  const double dx_error = relative(dx, dx_truth), dx_aten = relative(input_gradient(dy, x, weight), dx_truth);
  check(dx_error <= 2 * dx_aten + 1e-6,
        name + ": input gradient error " + std::to_string(dx_error) + " against ATen's " + std::to_string(dx_aten));
}

void test_bits_do_not_depend_on_threads_or_layout() {
  const int threads = at::get_num_threads();
  // 300 images of 7x7: 4800 tiles, many blocks and a partial last one.
  const torch::Tensor x = channels_last(torch::randn({300, 32, 7, 7})), weight = torch::randn({32, 32, 3, 3});
  at::set_num_threads(1);
  const torch::Tensor one = conv3x3_winograd(x, weight);
  at::set_num_threads(2);
  const torch::Tensor two = conv3x3_winograd(x, weight);
  at::set_num_threads(threads);
  check(torch::equal(one, two), "the same bits at 1 and 2 threads");
  check(torch::equal(one, conv3x3_winograd(x, channels_last(weight))), "the same bits for an NCHW and a channels_last weight");
}

void test_where_it_serves() {
  const torch::Tensor x = channels_last(torch::randn({2, 16, 5, 5}));
  const torch::Tensor weight = torch::randn({16, 16, 3, 3});
  check(conv3x3_winograd_serves(x, weight), "serves a channels_last float32 batch of 16 channels into 16");
  check(!conv3x3_winograd_serves(x.contiguous(), weight), "not for a contiguous (NCHW) batch");
  check(!conv3x3_winograd_serves(x.to(torch::kFloat64), weight.to(torch::kFloat64)), "not for float64");
  check(!conv3x3_winograd_serves(channels_last(torch::randn({2, 4, 5, 5})), torch::randn({16, 4, 3, 3})), "not for 4 input channels");
  check(!conv3x3_winograd_serves(x, torch::randn({8, 16, 3, 3})), "not for 8 output channels");
  check(!conv3x3_winograd_serves(x, torch::randn({16, 16, 1, 1})), "not for a 1x1 kernel");
  check(!conv3x3_winograd_serves(x, torch::randn({16, 8, 3, 3})), "not for a weight of other input channels");
  check(conv3x3_winograd_serves(channels_last(torch::randn({1, 256, 2, 2})), torch::randn({256, 256, 3, 3})), "serves 256 channels");
  check(!conv3x3_winograd_serves(channels_last(torch::randn({1, 512, 2, 2})), torch::randn({256, 512, 3, 3})),
        "not for 512 input channels");
  check(!conv3x3_winograd_serves(channels_last(torch::randn({1, 256, 2, 2})), torch::randn({512, 256, 3, 3})),
        "not for 512 output channels");
  clamp::testing::check_throws([&] { conv3x3_winograd(x, torch::randn({8, 16, 3, 3})); }, "C a multiple of 8 and K of 16, both at most 256",
                               "8 output channels are refused");
}

// Through conv3x3 with winograd: a stride-1 layer's forward and input gradient are conv3x3_winograd's,
// the weight's gradient conv3x3_weight_gradient's; a stride-2 layer never takes it.
void test_autograd() {
  const torch::Tensor x0 = channels_last(torch::randn({6, 16, 7, 7})), w0 = channels_last(torch::randn({16, 16, 3, 3}));
  const torch::Tensor readout = channels_last(torch::randn({6, 16, 7, 7}));
  torch::Tensor x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
  const int64_t before = clamp::conv3x3_winograd_calls();
  const torch::Tensor y = clamp::conv3x3(x, w, 1, true);
  (y * readout).sum().backward();
  check(clamp::conv3x3_winograd_calls() - before == 2, "the forward and the input's gradient ran through it");
  check(torch::equal(y, conv3x3_winograd(x0, w0)), "the forward is conv3x3_winograd's");
  check(torch::equal(x.grad(), conv3x3_winograd(readout, w0.transpose(0, 1).flip({2, 3}))), "the input's gradient is conv3x3_winograd's");
  check(torch::equal(w.grad(), clamp::conv3x3_weight_gradient(x0, readout, 1)), "the weight's gradient is conv3x3_weight_gradient's");
  torch::Tensor xa = x0.clone().requires_grad_(true), wa = w0.clone().requires_grad_(true);
  (torch::conv2d(xa, wa, {}, 1, 1) * readout).sum().backward();
  check(relative(x.grad(), xa.grad()) < 1e-5, "the input's gradient matches ATen's");

  torch::Tensor w2 = channels_last(torch::randn({16, 16, 3, 3})).requires_grad_(true);
  const int64_t before2 = clamp::conv3x3_winograd_calls();
  (clamp::conv3x3(x0, w2, 2, true).sum()).backward();
  check(clamp::conv3x3_winograd_calls() == before2, "a stride-2 layer stays oneDNN's");
}

// Whether the small ResNet's step from seed `seed` through Winograd matches float64 as well as oneDNN's
// does: one forward and backward in training from the same weights, through Winograd, through oneDNN
// and in float64; the features and every gradient within twice oneDNN's error (plus 1e-5). Checks that
// the ten stride-1 3x3 convolutions (four in the first stage, three in each other) ran through it,
// forward and input gradient, and that the two stride-2 ones, the stem and the 1x1 downsamples did not.
bool resnet_step_matches(uint64_t seed) {
  torch::manual_seed(seed);
  clamp::ResNetOptions options = clamp::ResNetOptions::small();
  options.in_channels = 1;
  options.widths = {16, 32, 64};
  clamp::ResNet own(options);
  options.conv3x3_winograd = false;
  clamp::ResNet onednn(options), truth(options);
  clamp::testing::copy_parameters(own, {&onednn, &truth});
  own->to_channels_last();
  onednn->to_channels_last();
  truth->to(torch::kFloat64);
  own->train();
  onednn->train();
  truth->train();
  const torch::Tensor images = channels_last(torch::randn({32, 1, 28, 28}));
  const int64_t before = clamp::conv3x3_winograd_calls();
  const torch::Tensor f = own->forward(images), o = onednn->forward(images), t = truth->forward(images.to(torch::kFloat64));
  const torch::Tensor readout = torch::randn_like(t);
  (f * readout.to(torch::kFloat32)).sum().backward();
  (o * readout.to(torch::kFloat32)).sum().backward();
  (t * readout).sum().backward();
  const int64_t calls = clamp::conv3x3_winograd_calls() - before;
  check(calls == 20, "seed " + std::to_string(seed) + ": the stride-1 3x3 convolutions ran through it, forward and backward (" +
                         std::to_string(calls) + " of 20)");
  const torch::Tensor exact_features = t.to(torch::kFloat32);
  bool matches = relative(f, exact_features) <= 2 * relative(o, exact_features) + 1e-6;
  std::string worst;
  double worst_ratio = 0;
  for (auto& pair : own->named_parameters()) {
    const torch::Tensor got = pair.value().grad(), reference = onednn->named_parameters()[pair.key()].grad();
    const torch::Tensor exact = truth->named_parameters()[pair.key()].grad().to(torch::kFloat32);
    const double error = relative(got, exact), onednn_error = relative(reference, exact);
    const double ratio = error / (2 * onednn_error + 1e-5);
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = pair.key() + ": " + std::to_string(error) + " against oneDNN's " + std::to_string(onednn_error);
    }
  }
  matches = matches && worst_ratio <= 1;
  std::printf("seed %llu: %s (worst gradient %s)\n", static_cast<unsigned long long>(seed), matches ? "matches" : "does not match",
              worst.c_str());
  return matches;
}

// The small ResNet's step through Winograd on seven seeds, a majority required to match float64 as well
// as oneDNN's. Not every seed: a ReLU network's gradient is not continuous in its weights (a
// pre-activation that crosses zero switches its unit's whole gradient off), so a float32 step, whichever
// convolution it uses, can land on the other side of a switch than float64 and differ from it by
// percents. Measured on Debian's LibTorch 1.13 (2026-12-04): the float64 network's own gradients moved
// by up to 11% when its weights were scaled by 1 + 1e-6 noise (6 of 8 seeds over 0.1%), and one input of
// this suite's earlier version put Winograd's float32 step past such a switch (6% off) where oneDNN's
// was not. Errors of the forward or the input gradient, as opposed to such a switch, show on every seed.
void test_resnet_step() {
  int matched = 0;
  for (uint64_t seed = 1; seed <= 7; ++seed) matched += resnet_step_matches(seed) ? 1 : 0;
  check(matched >= 4, "the small ResNet's step through Winograd matches float64 as well as oneDNN's on " + std::to_string(matched) +
                          " of 7 seeds (a majority wanted)");
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::printf("skipped: conv3x3_winograd needs a CPU with AVX2 and FMA\n");
    return 77;
  }
  torch::manual_seed(0);
  test_convolution(8, 16, 14, 14, 16);  // layer1 of the small network
  test_convolution(6, 32, 7, 7, 32);    // layer2: an odd side, the last tile row half outside
  test_convolution(40, 64, 4, 4, 64);   // layer3
  test_convolution(3, 8, 5, 9, 16);     // not square, one channel vector
  test_convolution(5, 16, 1, 1, 16);    // one pixel: only the centre tap reads inside
  test_convolution(2, 24, 2, 3, 48);    // three channel vectors, three output chunks
  test_convolution(130, 16, 3, 3, 32);  // many blocks, a partial last one
  test_bits_do_not_depend_on_threads_or_layout();
  test_where_it_serves();
  test_autograd();
  test_resnet_step();
  return clamp::testing::summary();
}
