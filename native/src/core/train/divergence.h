// The one failure a training step reports that is not the caller's input: the run itself diverged (the
// embeddings, the loss or the gradients stopped being finite). The step has left no trace when this is
// thrown, so the caller can keep its last checkpoint and say which step, epoch and learning rate.
#pragma once

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace clamp {

class TrainingDiverged : public std::runtime_error {
 public:
  TrainingDiverged(int64_t step, double learning_rate, const std::string& what_happened)
      : std::runtime_error("training diverged at step " + std::to_string(step) + " (learning rate " + format(learning_rate) +
                           "): " + what_happened),
        step_(step),
        learning_rate_(learning_rate) {}

  int64_t step() const { return step_; }
  double learning_rate() const { return learning_rate_; }

 private:
  static std::string format(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.4g", value);
    return text;
  }
  int64_t step_;
  double learning_rate_;
};

}  // namespace clamp
