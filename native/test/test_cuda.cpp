// The GPU path: the fused loss's CUDA kernels against the CPU implementation (value, gradient and
// diagnostics), at the largest batch the kernels promise, on mixed-precision input, and a training step on
// the GPU whose loss falls. Exits 77 (ctest: skipped) on a machine without a CUDA device; scripts/gpu-check.sh
// runs it on one.
#include "loss/packing_loss.h"
#include "runtime.h"
#include "train/trainer.h"

#include <torch/torch.h>

#include "check.h"
#include "loss_batches.h"

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;
using clamp::testing::evaluate;
using clamp::testing::LossCase;
using clamp::testing::make_batch;
using clamp::testing::relative_l2;

const at::Device kGpu(at::kCUDA, 0);

clamp::TrainerOptions small_gpu_options() {
  clamp::TrainerOptions options;
  options.backbone = clamp::ResNetOptions{{1, 1}, {16, 32}, false, clamp::ResNetStem::small, 1};
  options.projector_hidden = {64};
  options.projector_out = 32;
  options.views = 2;
  options.loss.rs = 2.0;
  options.optimiser.lr = 1.0;
  options.schedule = clamp::WarmupCosineSchedule{1.0, 2, 30};
  options.seed = 7;
  options.device = "cuda";
  return options;
}

#if defined(CLAMP_WITH_CUDA)

at::Tensor loss_with_stats(const at::Tensor& z, int64_t m, const clamp::PackingLossOptions& options, clamp::PackingStats* stats) {
  return clamp::packing_loss(z, m, options, stats, clamp::Diagnostics::all);
}

// Every branch of the formula: the paper's defaults, d < m, a general power with lw0 and no log, the
// max_range clamp binding for most pairs, a min_margin that excludes close pairs.
void test_matches_cpu() {
  const std::vector<LossCase> cases = {
      {"paper defaults", 4, 64, 32, 0.5, 0.4, clamp::PackingLossOptions()},
      {"d < m", 8, 48, 3, 0.5, 0.3, clamp::PackingLossOptions().set_rs(2.0)},
      {"potPow 2.5, lw0, log off", 3, 40, 16, 0.5, 0.3, clamp::PackingLossOptions().set_pot_pow(2.5).set_lw0(0.1).set_log(false)},
      {"maxRange binds", 4, 64, 8, 0.2, 0.6, clamp::PackingLossOptions().set_max_range(0.3)},
      {"minMargin excludes", 2, 64, 4, 0.05, 0.3, clamp::PackingLossOptions().set_min_margin(0.08)},
      {"b not a multiple of the block", 4, 300, 700, 0.5, 0.4, clamp::PackingLossOptions()},
  };
  for (const auto& c : cases) {
    for (const at::ScalarType dtype : {at::kDouble, at::kFloat}) {
      const std::string name = std::string(c.name) + " (" + c10::toString(dtype) + ")";
      const at::Tensor z = c.batch(dtype, 17);
      clamp::PackingStats cpu_stats, gpu_stats;
      const auto cpu = evaluate([&](const at::Tensor& x) { return loss_with_stats(x, c.m, c.options, &cpu_stats); }, z);
      const auto gpu = evaluate([&](const at::Tensor& x) { return loss_with_stats(x, c.m, c.options, &gpu_stats); }, z.to(kGpu));
      // float64: the same arithmetic up to summation order. float32: cuBLAS and the CPU's BLAS round the
      // Gram matrix differently; each is within ~1e-4 (gradient, L2) of float64 (the CPU suites).
      const double tolerance = dtype == at::kDouble ? 1e-10 : 1e-4;
      const double loss_error = std::abs(gpu.loss - cpu.loss) / std::max(std::abs(cpu.loss), 1e-12);
      check(loss_error < tolerance, name + ": loss " + std::to_string(gpu.loss) + " vs CPU " + std::to_string(cpu.loss));
      const double grad_error = relative_l2(gpu.grad.cpu(), cpu.grad);
      check(grad_error < 10 * tolerance, name + ": gradient relative L2 " + std::to_string(grad_error));
      check(gpu.grad.is_cuda() && gpu.grad.scalar_type() == dtype, name + ": the gradient stays on the GPU in its dtype");
      check(gpu_stats.contacts_per_image == cpu_stats.contacts_per_image || dtype == at::kFloat,
            name + ": the same contacts " + std::to_string(gpu_stats.contacts_per_image) + " vs " +
                std::to_string(cpu_stats.contacts_per_image));
      check(std::abs(gpu_stats.mean_distance - cpu_stats.mean_distance) < 10 * tolerance,
            name + ": mean distance " + std::to_string(gpu_stats.mean_distance));
      check(std::abs(gpu_stats.activity - cpu_stats.activity) < 0.02 &&
                std::abs(gpu_stats.nearest_centre_accuracy - cpu_stats.nearest_centre_accuracy) < 0.02,
            name + ": activity and nearest-centre accuracy agree");
    }
  }
}

// The kernels promise b up to 16,384. At d = 256 a [b, b, d] float32 tensor would need 256 GiB, more
// than any single GPU has: the loss running at all shows the fused path built none.
void test_largest_batch() {
  const int64_t m = 2, b = 16384, d = 256;
  const at::Tensor z = make_batch(m, b, d, 0.05, 0.05, at::kFloat, 23);
  clamp::PackingStats cpu_stats, gpu_stats;
  const clamp::PackingLossOptions options;
  const auto cpu = evaluate([&](const at::Tensor& x) { return loss_with_stats(x, m, options, &cpu_stats); }, z);
  const auto gpu = evaluate([&](const at::Tensor& x) { return loss_with_stats(x, m, options, &gpu_stats); }, z.to(kGpu));
  check(cpu_stats.contacts_per_image > 1,
        "b = 16384: the batch has contacts (" + std::to_string(cpu_stats.contacts_per_image) + " per image)");
  const double loss_error = std::abs(gpu.loss - cpu.loss) / std::abs(cpu.loss);
  check(loss_error < 1e-4, "b = 16384: loss " + std::to_string(gpu.loss) + " vs CPU " + std::to_string(cpu.loss));
  const double grad_error = relative_l2(gpu.grad.cpu(), cpu.grad);
  check(grad_error < 1e-3, "b = 16384: gradient relative L2 " + std::to_string(grad_error));
}

// bfloat16 embeddings from an autocast forward: float32 arithmetic on the values given, bf16 gradient.
void test_bf16_input() {
  const at::Tensor z = make_batch(4, 256, 128, 0.4, 0.4, at::kBFloat16, 29);
  const auto cpu = evaluate([](const at::Tensor& x) { return clamp::packing_loss(x, 4); }, z.to(at::kFloat));
  const auto gpu = evaluate([](const at::Tensor& x) { return clamp::packing_loss(x, 4); }, z.to(kGpu));
  check(std::abs(gpu.loss - cpu.loss) < 1e-4 * std::abs(cpu.loss), "bf16 input: the float32 loss of the same values");
  check(gpu.grad.scalar_type() == at::kBFloat16, "bf16 input: bf16 gradient");
  check(relative_l2(gpu.grad.cpu(), cpu.grad) < 1e-2, "bf16 input: the float32 gradient, rounded");
}

void test_trainer_on_gpu() {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(123);
  const at::Tensor images = at::randn({1, 32, 1, 16, 16}, generator);
  const at::Tensor batch = (images + 0.3 * at::randn({2, 32, 1, 16, 16}, generator)).reshape({64, 1, 16, 16});
  auto options = small_gpu_options();
  clamp::Trainer trainer(options);  // precision auto: bf16 + channels_last on Ampere and newer
  const auto settings = trainer.compute_settings();
  const auto device = clamp::runtime_info().cuda_devices.at(0);
  std::cout << "training on " << device.name << " (sm_" << device.major << device.minor << "): bf16 autocast " << settings.bf16_autocast
            << ", channels_last " << settings.channels_last << "\n";
  check(settings.bf16_autocast == (device.major >= 8), "precision auto: bf16 exactly on compute capability 8.0 and newer");
  std::vector<double> run;
  for (int k = 0; k < 30; ++k) run.push_back(trainer.run(batch).loss);
  double first = 0, last = 0;
  for (int k = 0; k < 5; ++k) first += run[k] / 5;
  for (int k = 25; k < 30; ++k) last += run[k] / 5;
  std::cout << "GPU loss: first 5 steps " << first << ", last 5 " << last << "\n";
  check(last < first - 0.5, "GPU: the loss falls on a fixed batch: " + std::to_string(first) + " -> " + std::to_string(last));
  const at::Tensor features = trainer.features(batch);
  check(features.device().is_cpu() && features.scalar_type() == at::kFloat, "GPU: features come back float32 on the CPU");

  // float32 on the GPU against the CPU: the same first loss up to cuDNN's algorithms (TF32 convolutions).
  options.precision = "fp32";
  const double gpu_first = clamp::Trainer(options).run(batch).loss;
  options.device = "cpu";
  const double cpu_first = clamp::Trainer(options).run(batch).loss;
  check(std::abs(gpu_first - cpu_first) < 2e-2 * std::abs(cpu_first),
        "fp32 first step: GPU loss " + std::to_string(gpu_first) + " vs CPU " + std::to_string(cpu_first));
}

#else  // a build without the kernels, on a machine with a GPU: CUDA work is refused with the fix

void test_without_kernels() {
  check_throws([] { clamp::packing_loss(make_batch(2, 4, 3, 1, 1, at::kFloat, 1).to(kGpu), 2); }, "CUDA kernels",
               "the loss on a GPU tensor without the kernels");
  check_throws([] { clamp::Trainer step(small_gpu_options()); }, "CUDA kernels", "training on a GPU without the kernels");
}

#endif

}  // namespace

int main() {
  if (!torch::cuda::is_available()) {
    std::cout << "no CUDA device: skipped (scripts/gpu-check.sh runs this suite on a GPU machine)\n";
    return 77;
  }
#if defined(CLAMP_WITH_CUDA)
  test_matches_cpu();
  test_largest_batch();
  test_bf16_input();
  test_trainer_on_gpu();
#else
  test_without_kernels();
#endif
  return clamp::testing::summary();
}
