// The serving encoder: the vectors the training step's evaluation computes, from raw bytes and from
// [0, 1] floats alike; whole-image resizing; refusal of foreign checkpoints and bad batches.
#include "serve/direct_convolution.h"
#include "serve/encoder.h"

#include <torch/torch.h>

#include <atomic>
#include <cstdlib>

#include "check.h"
#include "train/trainer.h"

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

const std::vector<double> kMean{0.3}, kStd{0.25};

clamp::TrainerOptions trainer_options() {
  clamp::TrainerOptions options;
  options.backbone = clamp::ResNetOptions{{1, 1}, {8, 16}, false, clamp::ResNetStem::small, 1};
  options.projector_hidden = {32};
  options.projector_out = 16;
  options.schedule = clamp::WarmupCosineSchedule{0.5, 1, 10};
  options.seed = 3;
  return options;
}

clamp::Encoder encoder_for(clamp::Trainer& trainer) {
  clamp::EncoderOptions options;
  options.backbone = trainer_options().backbone;
  options.image_size = 16;
  options.mean = kMean;
  options.std = kStd;
  clamp::Encoder encoder(options);
  encoder.load_state(trainer.state());
  return encoder;
}

at::Tensor random_bytes(int64_t n, int64_t side) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(9);
  return at::randint(0, 256, {n, side, side, 1}, generator, at::TensorOptions().dtype(at::kByte));
}

void test_matches_training_features() {
  clamp::Trainer trainer(trainer_options());
  // A few steps, so that the BatchNorm running statistics are not their initial values.
  for (int k = 0; k < 3; ++k) trainer.run(at::randn({2 * 8, 1, 16, 16}));
  clamp::Encoder encoder = encoder_for(trainer);

  const at::Tensor bytes = random_bytes(5, 16);
  const at::Tensor unit = bytes.permute({0, 3, 1, 2}).to(at::kFloat) / 255;
  const at::Tensor expected = trainer.features((unit - kMean[0]) / kStd[0]);
  const at::Tensor from_bytes = encoder.embed(bytes, clamp::PixelLayout::bytes_nhwc);
  const at::Tensor from_floats = encoder.embed(unit.contiguous(), clamp::PixelLayout::unit_float_nchw);
  check(from_bytes.sizes() == expected.sizes(), "features are [n, feature_dim]");
  const double bytes_error = (from_bytes - expected).abs().max().item<double>();
  const double floats_error = (from_floats - expected).abs().max().item<double>();
  std::cout << "largest difference from the training step's features: bytes " << bytes_error << ", floats " << floats_error << "\n";
  check(bytes_error < 1e-5, "raw bytes give the training step's evaluation features");
  check(floats_error < 1e-5, "[0, 1] floats give the training step's evaluation features");
  clamp::EncoderOptions chunked_options = encoder.options();
  chunked_options.max_batch = 2;
  clamp::Encoder chunked(chunked_options);
  chunked.load_state(trainer.state());
  // Not bitwise: convolution kernels may accumulate in another order for another batch size.
  check((chunked.embed(bytes, clamp::PixelLayout::bytes_nhwc) - from_bytes).abs().max().item<double>() < 1e-5,
        "forward passes of max_batch images give the same features");
  check(from_bytes.is_contiguous() && from_bytes.device().is_cpu(), "features come back contiguous on the CPU");
}

// LibTorch's kernels (or, with direct, clamp's direct convolutions), chosen for a test.
clamp::FoldedResNetOptions libtorch_kernels(bool onednn, bool fused, bool direct = false, int64_t image_side = 0) {
  clamp::FoldedResNetOptions options;
  options.direct = direct;
  options.onednn = onednn;
  options.fused = fused;
  options.image_side = image_side;
  return options;
}

void test_onednn_and_plain_paths_agree() {
  clamp::Trainer trainer(trainer_options());
  for (int k = 0; k < 3; ++k) trainer.run(at::randn({2 * 8, 1, 16, 16}));
  c10::InferenceMode inference;
  // Enough images for the oneDNN path (smaller batches take the plain one).
  const at::Tensor images = at::randn({clamp::FoldedResNet::kOneDnnMinBatch, 1, 16, 16});
  const at::Tensor expected = trainer.features(images);
  for (const int path : {0, 1, 2, 3}) {  // plain, oneDNN's blocked layout, fused, direct
    const clamp::FoldedResNet folded(*trainer.backbone(), libtorch_kernels(/*onednn=*/path > 0, /*fused=*/path == 2, /*direct=*/path == 3));
    const double error = (folded.forward(images) - expected).abs().max().item<double>();
    const std::string name = folded.direct() ? " (direct)" : folded.fused() ? " (fused)" : folded.onednn() ? " (oneDNN)" : " (plain)";
    std::cout << "folded" << name << ": largest difference " << error << "\n";
    check(error < 1e-5, "the folded backbone gives the module's evaluation features" + name);
  }
  const clamp::FoldedResNet folded(*trainer.backbone());
  check(folded.direct() == (clamp::direct::instruction_set() != nullptr),
        "the direct convolutions are used where the CPU has their instructions");
  const clamp::FoldedResNet on_libtorch(*trainer.backbone(), libtorch_kernels(true, true));
  check((on_libtorch.onednn() || on_libtorch.fused()) == at::hasMKLDNN(), "oneDNN is used where LibTorch has it");
}

// BatchNorm statistics and affine parameters away from their initial values, so folding them is tested.
void randomise_batch_norm(clamp::ResNetImpl& net) {
  torch::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
  for (auto& item : net.named_buffers()) {
    if (item.key().find("running_mean") != std::string::npos) item.value().normal_(0, 0.2, generator);
    if (item.key().find("running_var") != std::string::npos) item.value().uniform_(0.5, 2, generator);
  }
  for (auto& item : net.named_parameters()) {
    if (item.key().find("bn") == std::string::npos && item.key().find("downsample.1") == std::string::npos) continue;
    if (item.key().find("weight") != std::string::npos) item.value().uniform_(0.5, 1.5, generator);
    if (item.key().find("bias") != std::string::npos) item.value().normal_(0, 0.1, generator);
  }
}

// A network to compare paths on: its options, the image side, and the batch sizes to try.
struct Case {
  std::string name;
  clamp::ResNetOptions options;
  int64_t side;
  std::vector<int64_t> batches;
};

// oneDNN's fused convolutions (bias, ReLU and the residual add in the kernel, channels_last, weights
// reordered at load) against the unfused plain path, for the shapes the Encoder serves: the small
// network, ResNet-18 with the CIFAR stem, and ResNet-50's bottlenecks behind the ImageNet stem (at 64
// pixels, not 224, to keep the suite quick), at batch 1 and at batches that take other kernels.
void test_fused_matches_unfused() {
  const std::vector<Case> cases{
      {"small 16-32-64", clamp::ResNetOptions{{2, 2, 2}, {16, 32, 64}, false, clamp::ResNetStem::small, 1}, 28, {1, 2, 7, 16, 33}},
      {"ResNet-18 (CIFAR stem)", clamp::ResNetOptions::resnet18().set_stem(clamp::ResNetStem::cifar), 32, {1, 3, 16}},
      {"ResNet-50", clamp::ResNetOptions::resnet50(), 64, {1, 3}},
  };
  c10::InferenceMode inference;
  for (const Case& c : cases) {
    clamp::ResNet net(c.options);
    randomise_batch_norm(*net);
    net->eval();
    const clamp::FoldedResNet unfused(*net, libtorch_kernels(/*onednn=*/false, /*fused=*/false));
    // image_side 0: the fused path for every batch size, batch 1 included.
    const clamp::FoldedResNet fused(*net, libtorch_kernels(/*onednn=*/true, /*fused=*/true));
    if (!fused.fused()) std::cout << c.name << ": this LibTorch has no fused convolutions; the unfused paths are compared\n";
    for (const int64_t n : c.batches) {
      const at::Tensor images = at::rand({n, c.options.in_channels, c.side, c.side});
      const at::Tensor expected = unfused.forward(images);
      const at::Tensor got = fused.forward(images);
      const double relative = ((got - expected).abs().max() / expected.abs().max()).item<double>();
      std::cout << c.name << " batch " << n << (fused.fused() ? " fused" : " oneDNN") << " vs unfused: relative difference " << relative
                << "\n";
      check(got.sizes() == expected.sizes() && relative < 1e-4,
            c.name + ": the fused path gives the unfused features at batch " + std::to_string(n));
    }
  }
  // What the Encoder builds: the small network's single images stay on the plain path (too little work
  // per call for oneDNN's fixed cost per convolution), ResNet-18's take the fused one.
  clamp::ResNet small(cases[0].options), resnet18(cases[1].options);
  const clamp::FoldedResNet small_folded(*small, libtorch_kernels(true, true, false, 28)),
      resnet18_folded(*resnet18, libtorch_kernels(true, true, false, 32));
  if (small_folded.fused()) {
    check(small_folded.fused_min_batch() == 2,
          "the small network's fused path starts at 2 images, got " + std::to_string(small_folded.fused_min_batch()));
    check(resnet18_folded.fused_min_batch() == 1, "ResNet-18's fused path takes single images");
  }
}

// clamp's direct convolutions against LibTorch's unfused path: the small network (and one of widths
// that are no multiple of the vector width, so padded channels are exercised), ResNet-18 with the
// CIFAR stem, ResNet-50's bottlenecks behind the ImageNet stem and its max-pool, on one and two
// threads (rows split between them), at batch sizes that leave partial tiles.
void test_direct_matches_unfused() {
  if (clamp::direct::instruction_set() == nullptr) {
    std::cout << "this CPU or compiler has no direct convolution kernels; LibTorch's paths serve\n";
    return;
  }
  std::cout << "direct convolutions: " << clamp::direct::instruction_set() << "\n";
  const char* forced = std::getenv("CLAMP_CPU_KERNELS");
  if (forced != nullptr && std::string(forced) == "avx2")
    check(std::string(clamp::direct::instruction_set()) == "avx2", "CLAMP_CPU_KERNELS=avx2 takes the AVX2 kernels");
  {
    // The rows are split with at::parallel_for, a header template: without OpenMP in the core's own
    // build it runs everything on the calling thread (as it did before the build asked for OpenMP).
    const int threads = at::get_num_threads();
    at::set_num_threads(2);
    std::atomic<int> helpers{0};
    at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
      if (at::get_thread_num() > 0) helpers++;
    });
    at::set_num_threads(threads);
    check(helpers > 0, "the core's at::parallel_for runs on LibTorch's other threads");
  }
  const std::vector<Case> cases{
      // 33 images: three chunks of the batch (16, 16 and 1; see forward_direct).
      {"small 16-32-64", clamp::ResNetOptions{{2, 2, 2}, {16, 32, 64}, false, clamp::ResNetStem::small, 1}, 28, {1, 2, 7, 33}},
      {"small 24-40-72, RGB", clamp::ResNetOptions{{1, 1, 1}, {24, 40, 72}, false, clamp::ResNetStem::small, 3}, 19, {1, 3}},
      {"ResNet-18 (CIFAR stem)", clamp::ResNetOptions::resnet18().set_stem(clamp::ResNetStem::cifar), 32, {1, 3}},
      {"ResNet-50", clamp::ResNetOptions::resnet50(), 64, {1, 2}},
  };
  c10::InferenceMode inference;
  const int threads = at::get_num_threads();
  for (const Case& c : cases) {
    clamp::ResNet net(c.options);
    randomise_batch_norm(*net);
    net->eval();
    const clamp::FoldedResNet unfused(*net, libtorch_kernels(false, false));
    clamp::FoldedResNetOptions without_onednn;  // the direct kernels for every batch, wide networks included
    without_onednn.fused = false;
    const clamp::FoldedResNet direct(*net, without_onednn);
    check(direct.direct() && !direct.fused(), c.name + ": the direct convolutions serve float32 on this CPU");
    for (const int64_t n : c.batches) {
      const at::Tensor images = at::rand({n, c.options.in_channels, c.side, c.side});
      const at::Tensor expected = unfused.forward(images);
      for (const int t : {1, 2}) {
        at::set_num_threads(t);
        const at::Tensor got = direct.forward(images);
        const double relative = ((got - expected).abs().max() / expected.abs().max()).item<double>();
        std::cout << c.name << " batch " << n << ", " << t << " thread(s), direct vs unfused: relative difference " << relative << "\n";
        check(got.sizes() == expected.sizes() && relative < 1e-4, c.name + ": the direct convolutions give the unfused features at batch " +
                                                                      std::to_string(n) + " on " + std::to_string(t) + " thread(s)");
      }
    }
  }
  at::set_num_threads(threads);
  // What the Encoder builds: the small network takes the direct kernels for every batch; ResNet-18 takes
  // oneDNN's fused convolutions (faster on its deep layers) where this LibTorch has them; a small network
  // wider than kDirectMaxChannels takes the fused ones from fused_min_batch() and the direct ones below.
  clamp::ResNet small(cases[0].options), resnet18(cases[2].options), wider(clamp::ResNetOptions::small().set_in_channels(1));
  const clamp::FoldedResNet small_folded(*small, libtorch_kernels(true, true, true, 28)),
      resnet18_folded(*resnet18, libtorch_kernels(true, true, true, 32)),
      wider_folded(*wider, libtorch_kernels(true, true, true,
                                            14));  // 14x14: few enough multiply-adds for single images to fall below the fused minimum
  check(small_folded.direct() && !small_folded.fused(), "the small network takes the direct convolutions at every batch size");
  if (resnet18_folded.fused()) {
    check(!resnet18_folded.direct(), "ResNet-18 takes oneDNN's fused convolutions at every batch size");
    check(wider_folded.fused() && wider_folded.direct() && wider_folded.fused_min_batch() > 1,
          "a 32-64-128 network takes the direct convolutions below the fused path's minimum batch");
    const at::Tensor one = at::rand({1, 1, 14, 14});
    const at::Tensor expected = clamp::FoldedResNet(*wider, libtorch_kernels(false, false)).forward(one);
    check(((wider_folded.forward(one) - expected).abs().max() / expected.abs().max()).item<double>() < 1e-4,
          "its single images give the unfused features");
  }
}

void test_resizes_whole_image() {
  clamp::Trainer trainer(trainer_options());
  clamp::Encoder encoder = encoder_for(trainer);
  // A constant image is the same constant at every size under bilinear resizing.
  const at::Tensor small = at::full({1, 16, 16, 1}, 77, at::TensorOptions().dtype(at::kByte));
  const at::Tensor large = at::full({1, 40, 24, 1}, 77, at::TensorOptions().dtype(at::kByte));
  check((encoder.embed(small, clamp::PixelLayout::bytes_nhwc) - encoder.embed(large, clamp::PixelLayout::bytes_nhwc))
                .abs()
                .max()
                .item<double>() < 1e-5,
        "a larger image is resized to the encoder's side");
  // A 32x32 image that is a 2x nearest upsampling of a 16x16 one: bilinear half-pixel resizing back
  // to 16 averages each 2x2 block, which is the original pixel.
  const at::Tensor original = random_bytes(2, 16);
  const at::Tensor doubled = original.repeat_interleave(2, 1).repeat_interleave(2, 2).contiguous();
  const double error =
      (encoder.preprocess(doubled, clamp::PixelLayout::bytes_nhwc) - encoder.preprocess(original, clamp::PixelLayout::bytes_nhwc))
          .abs()
          .max()
          .item<double>();
  check(error < 1e-5, "downscaling by 2 uses half-pixel centres (error " + std::to_string(error) + ")");
}

void test_refuses_foreign_state_and_bad_batches() {
  clamp::Trainer trainer(trainer_options());
  clamp::EncoderOptions wider;
  wider.backbone = clamp::ResNetOptions{{1, 1}, {8, 32}, false, clamp::ResNetStem::small, 1};
  wider.image_size = 16;
  clamp::Encoder other(wider);
  check_throws([&] { other.load_state(trainer.state()); }, "does not fit this encoder's backbone",
               "a checkpoint of another width is refused");
  check_throws([&] { other.load_state({}); }, "conv1.weight is missing", "an empty checkpoint names what is missing");

  clamp::Encoder encoder = encoder_for(trainer);
  check_throws([&] { encoder.embed(at::zeros({2, 16, 16, 3}, at::kByte), clamp::PixelLayout::bytes_nhwc); }, "this encoder takes 1",
               "wrong channel count");
  check_throws([&] { encoder.embed(at::zeros({2, 16, 16}, at::kByte), clamp::PixelLayout::bytes_nhwc); }, "4-D", "a 3-D batch");
  check_throws([&] { encoder.embed(at::zeros({2, 1, 16, 16}, at::kDouble), clamp::PixelLayout::unit_float_nchw); }, "float32",
               "float64 images");
  check_throws([&] { encoder.embed(at::zeros({2, 16, 16, 1}, at::kFloat), clamp::PixelLayout::bytes_nhwc); }, "uint8",
               "floats given as bytes");
  check_throws(
      [] {
        clamp::EncoderOptions options;
        options.device = "tpu";
        clamp::Encoder bad(options);
      },
      "device must be cpu", "an unknown device");
}

}  // namespace

int main() {
  torch::set_num_threads(1);
  test_matches_training_features();
  test_onednn_and_plain_paths_agree();
  test_fused_matches_unfused();
  test_direct_matches_unfused();
  test_resizes_whole_image();
  test_refuses_foreign_state_and_bad_batches();
  return clamp::testing::summary();
}
