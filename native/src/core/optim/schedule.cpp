#include "optim/schedule.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace clamp {

double scaled_learning_rate(double base_lr, int64_t batch_size) {
  if (batch_size < 1) throw std::invalid_argument("batch size must be at least 1, got " + std::to_string(batch_size));
  return base_lr * double(batch_size) / 256.0;
}

double WarmupCosineSchedule::at(int64_t step) const {
  if (warmup_steps < 0 || total_steps <= warmup_steps || step < 0) {
    throw std::invalid_argument("warmup-cosine schedule needs 0 <= warmup_steps < total_steps and step >= 0 (warmup " +
                                std::to_string(warmup_steps) + ", total " + std::to_string(total_steps) + ", step " + std::to_string(step) +
                                ")");
  }
  if (step < warmup_steps) return start_lr + (peak_lr - start_lr) * double(step) / double(warmup_steps);
  if (step >= total_steps) return final_lr;
  const double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);
  return final_lr + 0.5 * (peak_lr - final_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace clamp
