// The native training step: the loss falls on a fixed batch, a seed reproduces a run exactly, and bad
// batches are refused with the reason.
#include "train/training_step.h"

#include <torch/torch.h>

#include "check.h"

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

// 2 views of 16 random 1x16x16 images: each view is the image plus its own fixed noise.
at::Tensor views_of_random_images(int64_t views, int64_t batch) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(123);
  const auto options = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor images = at::randn({1, batch, 1, 16, 16}, generator, options);
  return (images + 0.3 * at::randn({views, batch, 1, 16, 16}, generator, options)).reshape({views * batch, 1, 16, 16});
}

clamp::TrainingStepOptions tiny_options() {
  clamp::TrainingStepOptions options;
  options.backbone = clamp::ResNetOptions{{1, 1}, {8, 16}, false, clamp::ResNetStem::small, 1};
  options.projector_hidden = {32};
  options.projector_out = 16;
  options.views = 2;
  options.loss.rs = 2.0;
  options.lars.lr = 1.0;
  options.schedule = clamp::WarmupCosineSchedule{1.0, 2, 30};
  options.seed = 7;
  return options;
}

std::vector<double> losses(int steps) {
  clamp::TrainingStep trainer(tiny_options());
  const at::Tensor batch = views_of_random_images(2, 16);
  std::vector<double> out;
  for (int k = 0; k < steps; ++k) out.push_back(trainer.run(batch).loss);
  return out;
}

void test_loss_falls() {
  const auto run = losses(30);
  double first = 0, last = 0;
  for (int k = 0; k < 5; ++k) first += run[k] / 5;
  for (int k = 25; k < 30; ++k) last += run[k] / 5;
  std::cout << "loss: first 5 steps " << first << ", last 5 " << last << "\n";
  check(last < first - 0.5, "the loss falls on a fixed batch: first 5 steps " + std::to_string(first) + ", last 5 " + std::to_string(last));
}

void test_seed_reproduces() {
  check(losses(5) == losses(5), "same seed and threads, bitwise the same losses");
}

void test_step_reports() {
  clamp::TrainingStep trainer(tiny_options());
  const at::Tensor batch = views_of_random_images(2, 16);
  const auto first = trainer.run(batch);
  const auto second = trainer.run(batch);
  check(first.step == 0 && second.step == 1 && trainer.steps_taken() == 2, "steps count up");
  check(first.learning_rate == 0.0 && second.learning_rate == 0.5, "the schedule's warmup drives the learning rate");
  check(first.grad_norm > 0 && std::isfinite(first.grad_norm), "a finite, non-zero gradient norm");
  check(first.stats.contacts_per_image >= 0 && first.stats.mean_radius > 0, "diagnostics come with each step");
}

void test_bad_batches() {
  clamp::TrainingStep trainer(tiny_options());
  check_throws([&] { trainer.run(at::randn({4, 16, 16})); }, "[views * batch, C, H, W]", "3-D batch");
  check_throws([&] { trainer.run(at::randn({4, 1, 16, 16}, at::kDouble)); }, "float32", "float64 batch");
  check_throws([&] { trainer.run(at::randn({3, 1, 16, 16})); }, "views * batch", "odd image count");
  check_throws([&] { trainer.run(at::randn({4, 3, 16, 16})); }, "[N, 1, H, W]", "wrong channel count");
  auto options = tiny_options();
  options.views = 1;
  check_throws([&] { clamp::TrainingStep bad(options); }, "views must be at least 2", "one view");
}

}  // namespace

int main() {
  test_loss_falls();
  test_seed_reproduces();
  test_step_reports();
  test_bad_batches();
  return clamp::testing::summary();
}
