// The linear-probe protocol on frozen features: a linear classifier trained with cross-entropy by SGD
// (momentum, cosine-decayed learning rate) on standardised features. Each learning rate of a sweep is
// trained on the training features minus a held-out slice, the best one on that slice is retrained on
// all the training features, and the test features are scored once, every one of them.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace clamp {

struct LinearProbeOptions {
  int64_t classes = 0;
  int64_t epochs = 100;
  int64_t batch_size = 256;
  std::vector<double> learning_rates{0.01, 0.03, 0.1, 0.3, 1.0, 3.0};
  double momentum = 0.9;
  double weight_decay = 0.0;
  double validation_fraction = 0.1;  // of the training features, held out to choose the learning rate
  uint64_t seed = 0;                 // the held-out split, initial weights and batch order
};

struct LinearProbeResult {
  double learning_rate = 0;                 // the one chosen on the held-out slice
  std::vector<double> validation_accuracy;  // one per learning rate of the sweep
  double top1 = 0, top5 = 0;                // on the test features
  at::Tensor test_logits;                   // [test, classes]
};

// train: float [n, d], train_labels: integer [n] in [0, classes); test likewise. Throws
// std::invalid_argument naming the problem for mismatched shapes, labels out of range or bad options.
LinearProbeResult linear_probe(const at::Tensor& train, const at::Tensor& train_labels, const at::Tensor& test,
                               const at::Tensor& test_labels, const LinearProbeOptions& options);

}  // namespace clamp
