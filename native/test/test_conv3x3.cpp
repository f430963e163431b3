// The 3x3 convolution (stride 1 and 2) with the hand-written weight gradient against ATen's and float64: the
// weight gradient on the shapes the ResNets use and on awkward ones (one-pixel images, a partial channel
// chunk, several blocks), the same bits at any thread count, where it serves, and the small ResNet's
// whole step with and without it.
#include "models/conv3x3.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <string>

#include "check.h"
#include "network_copies.h"
#include "models/resnet.h"

namespace {

using clamp::conv3x3;
using clamp::conv3x3_serves;
using clamp::conv3x3_weight_gradient;
using clamp::testing::check;

double worst(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return worst(got, want) / std::max(1e-12, want.abs().max().item<double>());
}

torch::Tensor channels_last(const torch::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// ATen's weight gradient of conv2d(x, w, stride, padding 1), in x's dtype.
torch::Tensor aten_weight_gradient(const torch::Tensor& x, const torch::Tensor& dy, int64_t out_channels, int64_t stride) {
  const torch::Tensor w = torch::zeros({out_channels, x.size(1), 3, 3}, x.options());
  return std::get<1>(
      at::convolution_backward(dy, x, w, c10::nullopt, {stride, stride}, {1, 1}, {1, 1}, false, {0, 0}, 1, {false, true, false}));
}

std::string shape_name(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride) {
  return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(k) +
         ", stride " + std::to_string(stride);
}

// Within twice ATen's own float32 error against float64 (plus a rounding's worth), in channels_last.
void test_weight_gradient(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride = 1) {
  const std::string name = shape_name(n, c, h, w, k, stride);
  const torch::Tensor x = channels_last(torch::randn({n, c, h, w}));
  const torch::Tensor dy = channels_last(torch::randn({n, k, (h - 1) / stride + 1, (w - 1) / stride + 1}));
  const torch::Tensor got = conv3x3_weight_gradient(x, dy, stride);
  check(got.sizes() == torch::IntArrayRef({k, c, 3, 3}) && got.is_contiguous(at::MemoryFormat::ChannelsLast),
        name + ": [K, C, 3, 3] in channels_last");
  const torch::Tensor truth = aten_weight_gradient(x.to(torch::kFloat64), dy.to(torch::kFloat64), k, stride).to(torch::kFloat32);
  const torch::Tensor aten = aten_weight_gradient(x, dy, k, stride);
  const double error = relative(got, truth), aten_error = relative(aten, truth);
  check(error <= 2 * aten_error + 1e-6, name + ": error " + std::to_string(error) + " against ATen's " + std::to_string(aten_error));
}

void test_threads_do_not_change_bits() {
  const int threads = at::get_num_threads();
  // 300 images of 4x4: three blocks of whole images, four chunks of output channels.
  const torch::Tensor x = channels_last(torch::randn({300, 32, 4, 4})), dy = channels_last(torch::randn({300, 64, 4, 4}));
  at::set_num_threads(1);
  const torch::Tensor one = conv3x3_weight_gradient(x, dy);
  at::set_num_threads(2);
  const torch::Tensor two = conv3x3_weight_gradient(x, dy);
  at::set_num_threads(threads);
  check(torch::equal(one, two), "the weight gradient has the same bits at 1 and 2 threads");
}

// Forward and the input's gradient are ATen's own; the weight's is conv3x3_weight_gradient's.
void test_autograd(int64_t stride) {
  const std::string name = "stride " + std::to_string(stride) + ": ";
  const torch::Tensor x0 = channels_last(torch::randn({6, 16, 7, 7}));
  const torch::Tensor w0 = channels_last(torch::randn({8, 16, 3, 3}));
  const int64_t side = (7 - 1) / stride + 1;
  const torch::Tensor readout = channels_last(torch::randn({6, 8, side, side}));
  torch::Tensor x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
  check(conv3x3_serves(x, w, stride), name + "serves a channels_last float32 batch whose weight needs its gradient");
  const torch::Tensor y = conv3x3(x, w, stride);
  (y * readout).sum().backward();
  torch::Tensor xa = x0.clone().requires_grad_(true), wa = w0.clone().requires_grad_(true);
  const torch::Tensor ya = torch::conv2d(xa, wa, {}, stride, 1);
  (ya * readout).sum().backward();
  check(torch::equal(y, ya), name + "the forward is ATen's");
  check(relative(x.grad(), xa.grad()) < 1e-5, name + "the input's gradient is ATen's");
  check(relative(w.grad(), wa.grad()) < 1e-4, name + "the weight's gradient matches ATen's");
  check(torch::equal(w.grad(), conv3x3_weight_gradient(x0, channels_last(readout), stride)),
        name + "the weight's gradient is conv3x3_weight_gradient's");

  // An input that needs no gradient (a network's first layer) gets none.
  torch::Tensor w2 = w0.clone().requires_grad_(true);
  (conv3x3(x0, w2, stride) * readout).sum().backward();
  check(w2.grad().defined() && torch::equal(w2.grad(), w.grad()), name + "with an input that needs no gradient, the weight's is the same");
}

void test_where_it_serves() {
  const torch::Tensor x = channels_last(torch::randn({2, 16, 5, 5}));
  const torch::Tensor w = channels_last(torch::randn({8, 16, 3, 3})).requires_grad_(true);
  check(!conv3x3_serves(x.contiguous(), w, 1), "not for a contiguous (NCHW) batch");
  check(!conv3x3_serves(x.to(torch::kFloat64), w.detach().to(torch::kFloat64).requires_grad_(true), 1), "not for float64");
  check(!conv3x3_serves(x, w.detach(), 1), "not for a weight that needs no gradient");
  check(!conv3x3_serves(channels_last(torch::randn({2, 8, 5, 5})), channels_last(torch::randn({8, 8, 3, 3})).requires_grad_(true), 1),
        "not for 8 input channels");
  check(!conv3x3_serves(x, channels_last(torch::randn({6, 16, 3, 3})).requires_grad_(true), 1), "not for 6 output channels");
  check(!conv3x3_serves(x, channels_last(torch::randn({8, 16, 1, 1})).requires_grad_(true), 1), "not for a 1x1 kernel");
  check(!conv3x3_serves(x, w, 3), "not for stride 3");
  {
    torch::NoGradGuard no_grad;
    check(!conv3x3_serves(x, w, 1), "not where no gradient is recorded");
  }
  clamp::testing::check_throws([&] { conv3x3_weight_gradient(x, channels_last(torch::randn({2, 6, 5, 5}))); }, "multiple of 16 and K of 4",
                               "a dy of 6 channels is refused");
  clamp::testing::check_throws([&] { conv3x3_weight_gradient(x.contiguous(), channels_last(torch::randn({2, 8, 5, 5}))); }, "channels_last",
                               "an NCHW x is refused");
  clamp::testing::check_throws([&] { conv3x3_weight_gradient(x, channels_last(torch::randn({2, 8, 5, 5})), 2); }, "(H - 1) / stride + 1",
                               "a dy of the stride-1 size for stride 2 is refused");
  clamp::testing::check_throws([&] { conv3x3_weight_gradient(x, channels_last(torch::randn({2, 8, 2, 2})), 3); }, "stride 1 or 2",
                               "stride 3 is refused");
}

// The small ResNet, one forward and backward in training from the same weights, with the hand-written
// weight gradient, with ATen's, and in float64: every gradient within twice ATen's own error.
void test_resnet_step() {
  torch::manual_seed(5);
  clamp::ResNetOptions options = clamp::ResNetOptions::small();
  options.in_channels = 1;
  options.widths = {16, 32, 64};
  options.conv3x3_winograd = false;  // the forward and the input's gradient oneDNN's (test_conv3x3_winograd has the rest)
  clamp::ResNet own(options);
  options.conv3x3_weight_gradient = false;
  clamp::ResNet aten(options), truth(options);
  clamp::testing::copy_parameters(own, {&aten, &truth});
  own->to_channels_last();
  aten->to_channels_last();
  truth->to(torch::kFloat64);
  own->train();
  aten->train();
  truth->train();
  const torch::Tensor images = channels_last(torch::randn({32, 1, 28, 28}));
  const torch::Tensor f = own->forward(images), a = aten->forward(images), t = truth->forward(images.to(torch::kFloat64));
  const torch::Tensor readout = torch::randn_like(t);
  const int64_t before = clamp::conv3x3_weight_gradients_computed();
  (f * readout.to(torch::kFloat32)).sum().backward();
  (a * readout.to(torch::kFloat32)).sum().backward();
  (t * readout).sum().backward();
  check(torch::equal(f, a), "the features are ATen's (the forward is unchanged)");
  for (auto& pair : own->named_parameters()) {
    const torch::Tensor got = pair.value().grad(), reference = aten->named_parameters()[pair.key()].grad();
    const torch::Tensor exact = truth->named_parameters()[pair.key()].grad().to(torch::kFloat32);
    const double error = relative(got, exact), aten_error = relative(reference, exact);
    check(error <= 2 * aten_error + 1e-5,
          pair.key() + "'s gradient: error " + std::to_string(error) + " against ATen's " + std::to_string(aten_error));
  }
  // Every block's two 3x3 convolutions (four a stage), stride 1 or 2; the stem (one input channel) and
  // the 1x1 downsamples stay oneDNN's.
  const int64_t computed = clamp::conv3x3_weight_gradients_computed() - before;
  check(computed == 12, "the blocks' 3x3 convolutions took the hand-written gradient (" + std::to_string(computed) + " of 12)");
}

}  // namespace

int main() {
  torch::manual_seed(0);
  test_weight_gradient(8, 16, 14, 14, 16);     // layer1 of the small network
  test_weight_gradient(6, 32, 7, 7, 32);       // layer2
  test_weight_gradient(40, 64, 4, 4, 64);      // layer3
  test_weight_gradient(300, 16, 4, 4, 20);     // three blocks; a chunk of 16 output channels and one of 4
  test_weight_gradient(3, 16, 5, 9, 12);       // not square
  test_weight_gradient(5, 32, 1, 1, 4);        // one pixel: only the centre tap reads inside
  test_weight_gradient(2, 16, 2, 3, 8);        // every tap clipped
  test_weight_gradient(8, 16, 14, 14, 32, 2);  // layer2's first block
  test_weight_gradient(6, 32, 7, 7, 64, 2);    // layer3's first block: an odd side
  test_weight_gradient(3, 16, 5, 8, 12, 2);
  test_weight_gradient(4, 16, 1, 2, 4, 2);  // one output pixel a row; taps past the image
  test_threads_do_not_change_bits();
  test_autograd(1);
  test_autograd(2);
  test_where_it_serves();
  test_resnet_step();
  return clamp::testing::summary();
}
