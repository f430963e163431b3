// The core's own tests: run by ctest, with no Node involved, so they also run on a GPU machine.
#include "loss/packing_loss.h"
#include "runtime.h"

#include <torch/torch.h>

#include "check.h"
#include "loss_batches.h"

#include <cmath>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;
using clamp::testing::evaluate;
using clamp::testing::LossCase;
using clamp::testing::make_batch;
using clamp::testing::relative_l2;

void test_matches_reference() {
  const std::vector<LossCase> cases = {
      {"paper defaults, d > m", 4, 16, 12, 0.5, 0.4, clamp::PackingLossOptions()},
      {"d < m", 8, 12, 3, 0.5, 0.3, clamp::PackingLossOptions().set_rs(2.0)},
      {"potPow 2.5, lw0 > 0, log off", 3, 10, 6, 0.5, 0.3, clamp::PackingLossOptions().set_pot_pow(2.5).set_lw0(0.1).set_log(false)},
      {"maxRange binding", 4, 10, 5, 0.5, 0.6, clamp::PackingLossOptions().set_rs(20.0).set_max_range(0.8)},
  };
  for (const auto& c : cases) {
    for (const auto dtype : {at::kDouble, at::kFloat}) {
      const at::Tensor z = c.batch(dtype, 7);
      const auto fused = evaluate([&](const at::Tensor& x) { return clamp::packing_loss(x, c.m, c.options); }, z);
      const auto reference =
          evaluate([&](const at::Tensor& x) { return clamp::packing_loss_reference(x.to(at::kDouble), c.m, c.options); }, z);
      const double tolerance_loss = dtype == at::kDouble ? 1e-12 : 1e-5;
      const double tolerance_grad = dtype == at::kDouble ? 1e-10 : 1e-4;
      const std::string name = std::string(c.name) + (dtype == at::kDouble ? " (float64)" : " (float32)");
      check(std::abs(fused.loss - reference.loss) <= tolerance_loss * std::max(1.0, std::abs(reference.loss)),
            name + ": loss " + std::to_string(fused.loss) + " vs reference " + std::to_string(reference.loss));
      check(relative_l2(fused.grad, reference.grad) <= tolerance_grad,
            name + ": gradient relative L2 error " + std::to_string(relative_l2(fused.grad, reference.grad)));
    }
  }
}

void test_finite_differences() {
  const clamp::PackingLossOptions options = clamp::PackingLossOptions().set_rs(3.0).set_pot_pow(2.5).set_lw0(0.05);
  const int64_t m = 3, b = 5, d = 4;
  const at::Tensor z = make_batch(m, b, d, 0.5, 0.4, at::kDouble, 11);
  clamp::PackingStats stats;
  clamp::packing_loss(z, m, options, &stats);
  check(stats.contacts_per_image > 0, "finite differences: the batch has contacts");
  const auto analytic = evaluate([&](const at::Tensor& x) { return clamp::packing_loss(x, m, options); }, z);
  at::Tensor numeric = at::zeros_like(z);
  const double h = 1e-6;
  auto flat = z.view({-1});
  for (int64_t k = 0; k < flat.numel(); ++k) {
    at::Tensor plus = z.clone(), minus = z.clone();
    plus.view({-1})[k] += h;
    minus.view({-1})[k] -= h;
    numeric.view({-1})[k] =
        (clamp::packing_loss(plus, m, options).item<double>() - clamp::packing_loss(minus, m, options).item<double>()) / (2 * h);
  }
  const double error = relative_l2(analytic.grad, numeric);
  check(error < 1e-6, "finite differences: relative L2 error " + std::to_string(error));
}

void test_thread_count_does_not_change_result() {
  const at::Tensor z = make_batch(4, 64, 16, 0.4, 0.4, at::kFloat, 3);
  const int before = clamp::num_threads();
  clamp::set_num_threads(1);
  const auto one = evaluate([&](const at::Tensor& x) { return clamp::packing_loss(x, 4); }, z);
  clamp::set_num_threads(2);
  const auto two = evaluate([&](const at::Tensor& x) { return clamp::packing_loss(x, 4); }, z);
  clamp::set_num_threads(before);
  check(one.loss == two.loss, "threads: the loss is bitwise the same with 1 and 2 threads");
  check(at::equal(one.grad, two.grad), "threads: the gradient is bitwise the same with 1 and 2 threads");
}

// Mixed-precision training hands the loss bfloat16 (or float16) embeddings: it computes in float32 on
// the values it was given and returns the gradient in the input's dtype.
void test_reduced_precision_input() {
  const at::Tensor z = make_batch(4, 32, 16, 0.4, 0.4, at::kFloat, 5);
  for (const at::ScalarType type : {at::kBFloat16, at::kHalf}) {
    const std::string name = c10::toString(type);
    const at::Tensor reduced = z.to(type);
    const auto expected = evaluate([](const at::Tensor& x) { return clamp::packing_loss(x, 4); }, reduced.to(at::kFloat));
    const auto got = evaluate([](const at::Tensor& x) { return clamp::packing_loss(x, 4); }, reduced);
    check(got.loss == expected.loss, name + ": the loss is the float32 loss of the same values");
    check(got.grad.scalar_type() == type, name + ": the gradient comes back in the input's dtype");
    check(at::equal(got.grad, expected.grad.to(type)), name + ": the gradient is the float32 gradient, rounded");
  }
}

// The CUDA kernels' block programs, run on the CPU with each block's threads emulated in turn, through
// the glue a GPU uses: what can be checked of the GPU path without a GPU (indexing, strides, reductions,
// the order of launches). Several block widths: one thread, fewer threads than columns, more than either.
void test_gpu_block_programs_emulated() {
  const std::vector<LossCase> cases = {
      {"paper defaults", 4, 24, 12, 0.5, 0.4, clamp::PackingLossOptions()},
      {"d < m", 8, 12, 3, 0.5, 0.3, clamp::PackingLossOptions().set_rs(2.0)},
      {"potPow 2.5, lw0 > 0, log off", 3, 10, 6, 0.5, 0.3, clamp::PackingLossOptions().set_pot_pow(2.5).set_lw0(0.1).set_log(false)},
      {"maxRange binding", 4, 10, 5, 0.5, 0.6, clamp::PackingLossOptions().set_rs(20.0).set_max_range(0.8)},
      {"wide rows", 2, 300, 300, 0.5, 0.4, clamp::PackingLossOptions()},
  };
  for (const auto& c : cases) {
    for (const auto dtype : {at::kDouble, at::kFloat}) {
      const at::Tensor z = c.batch(dtype, 13);
      clamp::PackingStats cpu_stats;
      const auto cpu =
          evaluate([&](const at::Tensor& x) { return clamp::packing_loss(x, c.m, c.options, &cpu_stats, clamp::Diagnostics::all); }, z);
      for (const int64_t threads : {1, 7, 32, 256}) {
        const std::string name =
            std::string("emulated GPU, ") + c.name + ", " + std::to_string(threads) + " threads (" + c10::toString(dtype) + ")";
        clamp::PackingStats stats;
        const auto gpu = evaluate(
            [&](const at::Tensor& x) { return clamp::testing::packing_loss_emulating_gpu(x, c.m, c.options, &stats, threads); }, z);
        const double tolerance = dtype == at::kDouble ? 1e-12 : 1e-6;
        check(std::abs(gpu.loss - cpu.loss) <= tolerance * std::max(1.0, std::abs(cpu.loss)),
              name + ": loss " + std::to_string(gpu.loss) + " vs CPU " + std::to_string(cpu.loss));
        check(relative_l2(gpu.grad, cpu.grad) <= 100 * tolerance,
              name + ": gradient relative L2 " + std::to_string(relative_l2(gpu.grad, cpu.grad)));
        check(stats.contacts_per_image == cpu_stats.contacts_per_image && stats.activity == cpu_stats.activity &&
                  std::abs(stats.mean_distance - cpu_stats.mean_distance) <= tolerance &&
                  std::abs(stats.mean_radius - cpu_stats.mean_radius) <= tolerance &&
                  stats.nearest_centre_accuracy == cpu_stats.nearest_centre_accuracy,
              name + ": the same diagnostics");
      }
    }
  }
  const at::Tensor bf16 = make_batch(4, 16, 8, 0.4, 0.4, at::kBFloat16, 19);
  const auto cpu = evaluate([](const at::Tensor& x) { return clamp::packing_loss(x, 4); }, bf16);
  const auto gpu = evaluate([](const at::Tensor& x) { return clamp::testing::packing_loss_emulating_gpu(x, 4, {}, nullptr, 32); }, bf16);
  check(gpu.grad.scalar_type() == at::kBFloat16 && std::abs(gpu.loss - cpu.loss) <= 1e-6 * std::abs(cpu.loss),
        "emulated GPU, bf16 input: float32 arithmetic, bf16 gradient");
}

void test_bad_arguments() {
  const at::Tensor good = at::randn({8, 3});
  check_throws([&] { clamp::packing_loss(good, 1); }, "views", "one view");
  check_throws([&] { clamp::packing_loss(good, 3); }, "multiple of views", "rows not divisible");
  check_throws([&] { clamp::packing_loss(good, 8); }, "batch", "one image");
  check_throws([&] { clamp::packing_loss(good.to(at::kInt), 2); }, "float32, float64, bfloat16 or float16", "integer dtype");
  check_throws([&] { clamp::packing_loss(good.view({8, 3, 1}), 2); }, "2-D", "3-D input");
  check_throws([&] { clamp::packing_loss(good, 2, clamp::PackingLossOptions().set_rs(-1)); }, "rs", "negative rs");
  at::Tensor nan = good.clone();
  nan[2][1] = std::nan("");
  check_throws([&] { clamp::packing_loss(nan, 2); }, "index 7", "NaN input");
  // Finite but beyond what float32 can square: refused with the fix, not a NaN loss.
  const at::Tensor huge = good.clamp(-1, 1) * 3e38;
  check_throws([&] { clamp::packing_loss(huge, 2); }, "divide z by a constant", "inputs near float32's maximum");
  // ... and the loss really is the same for z scaled down, as the message promises.
  const double scaled = clamp::packing_loss(good * 1e-3, 2).item<double>();
  check(std::abs(scaled - clamp::packing_loss(good, 2).item<double>()) < 1e-4, "the loss is unchanged by scaling z");
}

}  // namespace

int main() {
  test_matches_reference();
  test_finite_differences();
  test_thread_count_does_not_change_result();
  test_reduced_precision_input();
  test_gpu_block_programs_emulated();
  test_bad_arguments();
  return clamp::testing::summary();
}
