// The linear probe: ~100% on a linearly separable set, ~chance on shuffled labels, a sensible choice
// of learning rate, and its argument checks.
#include "eval/linear_probe.h"

#include <torch/torch.h>

#include "check.h"

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

// Four Gaussian clusters in 8-D with well-separated means: linearly separable.
std::pair<at::Tensor, at::Tensor> clusters(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  const at::Tensor labels = torch::randint(0, 4, {n}, torch::kLong);
  const at::Tensor centres = torch::eye(4, 8) * 6.0;
  return {centres.index_select(0, labels) + torch::randn({n, 8}), labels};
}

clamp::LinearProbeOptions quick() {
  clamp::LinearProbeOptions options;
  options.classes = 4;
  options.epochs = 10;
  options.batch_size = 64;
  options.learning_rates = {0.01, 0.1, 1.0};
  return options;
}

void test_separable() {
  const auto [train, train_labels] = clusters(800, 1);
  const auto [test, test_labels] = clusters(400, 2);
  const auto result = clamp::linear_probe(train, train_labels, test, test_labels, quick());
  check(result.top1 > 0.99, "separable clusters: test top-1 " + std::to_string(result.top1));
  check(result.top5 == 1.0, "top-5 of 4 classes is 1");
  check(result.validation_accuracy.size() == 3, "one validation accuracy per learning rate");
  check(result.test_logits.sizes() == at::IntArrayRef({400, 4}), "test logits [test, classes]");
}

// Labels shuffled on both sets carry nothing the probe could carry over: top-1 is 1/4 up to sampling
// noise (sd 0.01 at 2000 test features).
void test_shuffled_labels_give_chance() {
  const auto [train, train_labels] = clusters(800, 3);
  const auto [test, test_labels] = clusters(2000, 4);
  const at::Tensor shuffled_train = train_labels.index_select(0, torch::randperm(800, torch::kLong));
  const at::Tensor shuffled_test = test_labels.index_select(0, torch::randperm(2000, torch::kLong));
  const auto result = clamp::linear_probe(train, shuffled_train, test, shuffled_test, quick());
  check(result.top1 > 0.2 && result.top1 < 0.3, "shuffled labels: chance (0.25), got " + std::to_string(result.top1));
}

void test_repeatable() {
  const auto [train, train_labels] = clusters(300, 5);
  const auto [test, test_labels] = clusters(100, 6);
  const auto a = clamp::linear_probe(train, train_labels, test, test_labels, quick());
  const auto b = clamp::linear_probe(train, train_labels, test, test_labels, quick());
  check(torch::equal(a.test_logits, b.test_logits), "the same seed gives the same probe");
}

void test_bad_arguments() {
  const auto [x, y] = clusters(50, 7);
  auto options = quick();
  check_throws([&] { clamp::linear_probe(x, y, x.slice(1, 0, 4), y, options); }, "test features have dim 4", "mismatched widths");
  check_throws([&] { clamp::linear_probe(x, y.slice(0, 0, 10), x, y, options); }, "one label per feature", "too few labels");
  check_throws([&] { clamp::linear_probe(x, y + 4, x, y, options); }, "[0, 4)", "labels out of range");
  options.learning_rates = {};
  check_throws([&] { clamp::linear_probe(x, y, x, y, options); }, "at least one learning rate", "an empty sweep");
  options = quick();
  options.validation_fraction = 1.0;
  check_throws([&] { clamp::linear_probe(x, y, x, y, options); }, "validation_fraction", "no training data left");
}

}  // namespace

int main() {
  test_separable();
  test_shuffled_labels_give_chance();
  test_repeatable();
  test_bad_arguments();
  return clamp::testing::summary();
}
