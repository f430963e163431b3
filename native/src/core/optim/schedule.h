// Learning-rate schedule of the paper's setups: linear warmup, then cosine decay, stepped every
// iteration, with the linear scaling rule lr = base_lr * batch / 256.
#pragma once

#include <cstdint>

namespace clamp {

// The linear scaling rule (Goyal et al., 2017) the paper applies to LARS.
double scaled_learning_rate(double base_lr, int64_t batch_size);

struct WarmupCosineSchedule {
  double peak_lr = 0.3;  // reached at the end of warmup (already scaled for the batch size)
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double start_lr = 0.0;  // at step 0 of warmup
  double final_lr = 0.0;  // at total_steps and after

  // The learning rate for optimiser step `step` (0-based). Throws std::invalid_argument on a schedule
  // that cannot be followed (total <= warmup, negative values).
  double at(int64_t step) const;
};

}  // namespace clamp
