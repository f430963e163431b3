// The serving encoder: the vectors the training step's evaluation computes, from raw bytes and from
// [0, 1] floats alike; whole-image resizing; refusal of foreign checkpoints and bad batches.
#include "serve/encoder.h"

#include <torch/torch.h>

#include "check.h"
#include "train/training_step.h"

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

const std::vector<double> kMean{0.3}, kStd{0.25};

clamp::TrainingStepOptions trainer_options() {
  clamp::TrainingStepOptions options;
  options.backbone = clamp::ResNetOptions{{1, 1}, {8, 16}, false, clamp::ResNetStem::small, 1};
  options.projector_hidden = {32};
  options.projector_out = 16;
  options.schedule = clamp::WarmupCosineSchedule{0.5, 1, 10};
  options.seed = 3;
  return options;
}

clamp::Encoder encoder_for(clamp::TrainingStep& trainer) {
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
  clamp::TrainingStep trainer(trainer_options());
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

void test_onednn_and_plain_paths_agree() {
  clamp::TrainingStep trainer(trainer_options());
  for (int k = 0; k < 3; ++k) trainer.run(at::randn({2 * 8, 1, 16, 16}));
  c10::InferenceMode inference;
  // Enough images for the oneDNN path (smaller batches take the plain one).
  const at::Tensor images = at::randn({clamp::FoldedResNet::kOneDnnMinBatch, 1, 16, 16});
  const at::Tensor expected = trainer.features(images);
  for (const bool onednn : {false, true}) {
    const clamp::FoldedResNet folded(*trainer.backbone(), onednn);
    const double error = (folded.forward(images) - expected).abs().max().item<double>();
    std::cout << "folded" << (folded.onednn() ? " (oneDNN)" : " (plain)") << ": largest difference " << error << "\n";
    check(error < 1e-5, std::string("the folded backbone gives the module's evaluation features") + (folded.onednn() ? " through oneDNN" : ""));
  }
  check(clamp::FoldedResNet(*trainer.backbone(), true).onednn() == at::hasMKLDNN(), "oneDNN is used where LibTorch has it");
}

void test_resizes_whole_image() {
  clamp::TrainingStep trainer(trainer_options());
  clamp::Encoder encoder = encoder_for(trainer);
  // A constant image is the same constant at every size under bilinear resizing.
  const at::Tensor small = at::full({1, 16, 16, 1}, 77, at::TensorOptions().dtype(at::kByte));
  const at::Tensor large = at::full({1, 40, 24, 1}, 77, at::TensorOptions().dtype(at::kByte));
  check((encoder.embed(small, clamp::PixelLayout::bytes_nhwc) - encoder.embed(large, clamp::PixelLayout::bytes_nhwc)).abs().max().item<double>() < 1e-5,
        "a larger image is resized to the encoder's side");
  // A 32x32 image that is a 2x nearest upsampling of a 16x16 one: bilinear half-pixel resizing back
  // to 16 averages each 2x2 block, which is the original pixel.
  const at::Tensor original = random_bytes(2, 16);
  const at::Tensor doubled = original.repeat_interleave(2, 1).repeat_interleave(2, 2).contiguous();
  const double error = (encoder.preprocess(doubled, clamp::PixelLayout::bytes_nhwc) - encoder.preprocess(original, clamp::PixelLayout::bytes_nhwc)).abs().max().item<double>();
  check(error < 1e-5, "downscaling by 2 uses half-pixel centres (error " + std::to_string(error) + ")");
}

void test_refuses_foreign_state_and_bad_batches() {
  clamp::TrainingStep trainer(trainer_options());
  clamp::EncoderOptions wider;
  wider.backbone = clamp::ResNetOptions{{1, 1}, {8, 32}, false, clamp::ResNetStem::small, 1};
  wider.image_size = 16;
  clamp::Encoder other(wider);
  check_throws([&] { other.load_state(trainer.state()); }, "does not fit this encoder's backbone", "a checkpoint of another width is refused");
  check_throws([&] { other.load_state({}); }, "conv1.weight is missing", "an empty checkpoint names what is missing");

  clamp::Encoder encoder = encoder_for(trainer);
  check_throws([&] { encoder.embed(at::zeros({2, 16, 16, 3}, at::kByte), clamp::PixelLayout::bytes_nhwc); }, "this encoder takes 1", "wrong channel count");
  check_throws([&] { encoder.embed(at::zeros({2, 16, 16}, at::kByte), clamp::PixelLayout::bytes_nhwc); }, "4-D", "a 3-D batch");
  check_throws([&] { encoder.embed(at::zeros({2, 1, 16, 16}, at::kDouble), clamp::PixelLayout::unit_float_nchw); }, "float32", "float64 images");
  check_throws([&] { encoder.embed(at::zeros({2, 16, 16, 1}, at::kFloat), clamp::PixelLayout::bytes_nhwc); }, "uint8", "floats given as bytes");
  check_throws([] {
    clamp::EncoderOptions options;
    options.device = "tpu";
    clamp::Encoder bad(options);
  }, "device must be cpu", "an unknown device");
}

}  // namespace

int main() {
  torch::set_num_threads(1);
  test_matches_training_features();
  test_onednn_and_plain_paths_agree();
  test_resizes_whole_image();
  test_refuses_foreign_state_and_bad_batches();
  return clamp::testing::summary();
}
