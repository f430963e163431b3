// The fine-tuning step: it learns a labelled task, the frozen mode leaves the backbone untouched, the
// backbone's learning rate is the head's times the scale, a CLAMP checkpoint's backbone loads into it,
// and bad labels are refused with the reason.
#include "train/fine_tuner.h"
#include "train/trainer.h"

#include <torch/torch.h>

#include <cmath>

#include "check.h"

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

constexpr int64_t kClasses = 4;

// Images of class c: a fixed random 1x12x12 pattern for the class plus per-image noise (half its scale).
struct LabelledImages {
  at::Tensor images, labels;
};
LabelledImages labelled_images(int64_t per_class, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto pattern_generator = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor patterns = at::randn({kClasses, 1, 12, 12}, pattern_generator, at::kFloat);
  const at::Tensor labels = at::arange(kClasses, at::kLong).repeat_interleave(per_class);
  const at::Tensor images = patterns.index_select(0, labels) + 0.5 * at::randn({kClasses * per_class, 1, 12, 12}, generator, at::kFloat);
  return {images, labels};
}

clamp::FineTunerOptions tiny_options(double backbone_lr_scale) {
  clamp::FineTunerOptions options;
  options.backbone = clamp::ResNetOptions{{1, 1}, {8, 16}, false, clamp::ResNetStem::small, 1};
  options.classes = kClasses;
  options.schedule = clamp::WarmupCosineSchedule{0.1, 0, 40};
  options.backbone_lr_scale = backbone_lr_scale;
  options.seed = 3;
  return options;
}

double accuracy(clamp::FineTuner& step, const LabelledImages& data) {
  return step.logits(data.images).argmax(1).eq(data.labels).to(at::kDouble).mean().item<double>();
}

std::vector<at::Tensor> backbone_copy(clamp::FineTuner& step) {
  std::vector<at::Tensor> out;
  for (const auto& item : step.state()) {
    if (item.name.rfind("head.", 0) != 0) out.push_back(item.tensor.clone());
  }
  return out;
}

void test_learns_the_task() {
  const auto train = labelled_images(32, 1), test = labelled_images(64, 2);
  for (const double scale : {0.0, 0.1}) {
    clamp::FineTuner step(tiny_options(scale));
    step.standardise(step.features(train.images));
    double first_loss = 0, last_loss = 0;
    for (int k = 0; k < 40; ++k) {
      const auto result = step.run(train.images, train.labels);
      if (k == 0) first_loss = result.loss;
      last_loss = result.loss;
    }
    const double test_accuracy = accuracy(step, test);
    std::cout << "backbone_lr_scale " << scale << ": loss " << first_loss << " -> " << last_loss << ", test accuracy " << test_accuracy
              << "\n";
    check(std::abs(first_loss - std::log(double(kClasses))) < 1e-5, "a zero head starts at log(classes)");
    check(last_loss < 0.5 * first_loss, "the loss falls (backbone_lr_scale " + std::to_string(scale) + ")");
    check(test_accuracy > 0.85,
          "held-out images are classified (backbone_lr_scale " + std::to_string(scale) + "): " + std::to_string(test_accuracy));
  }
}

void test_frozen_backbone_is_untouched() {
  const auto train = labelled_images(8, 1);
  clamp::FineTuner frozen(tiny_options(0.0));
  const auto before = backbone_copy(frozen);
  for (int k = 0; k < 3; ++k) frozen.run(train.images, train.labels);
  const auto after = backbone_copy(frozen);
  bool same = before.size() == after.size();
  for (size_t k = 0; same && k < before.size(); ++k) same = at::equal(before[k], after[k]);
  check(same, "a frozen backbone keeps its weights and running statistics bitwise");
  check(frozen.head()->weight.abs().sum().item<double>() > 0, "the head learns while the backbone is frozen");

  clamp::FineTuner tuned(tiny_options(0.1));
  const auto start = backbone_copy(tuned);
  for (int k = 0; k < 3; ++k) tuned.run(train.images, train.labels);
  const auto end = backbone_copy(tuned);
  bool changed = false;
  for (size_t k = 0; k < start.size(); ++k) changed = changed || !at::equal(start[k], end[k]);
  check(changed, "fine-tuning changes the backbone");
}

// The head starts at zero, so no gradient reaches the backbone at step 0 and both trainers are equal
// after it; at step 1 their backbones move by the same gradient times their own learning rates.
void test_backbone_rate_is_scaled() {
  const auto train = labelled_images(8, 1);
  clamp::FineTuner a(tiny_options(0.1)), b(tiny_options(0.4));
  for (auto* step : {&a, &b}) step->run(train.images, train.labels);
  const at::Tensor a0 = a.backbone()->named_parameters()["conv1.weight"].clone();
  const at::Tensor b0 = b.backbone()->named_parameters()["conv1.weight"].clone();
  check(at::equal(a0, b0), "after the first step both backbones are the same");
  const auto result = a.run(train.images, train.labels);
  b.run(train.images, train.labels);
  const at::Tensor a_move = a.backbone()->named_parameters()["conv1.weight"] - a0;
  const at::Tensor b_move = b.backbone()->named_parameters()["conv1.weight"] - b0;
  const double ratio = b_move.norm().item<double>() / a_move.norm().item<double>();
  check(a_move.norm().item<double>() > 0, "the backbone moves at the second step");
  check(std::abs(ratio - 4.0) < 1e-3, "the backbone's step scales with backbone_lr_scale: ratio " + std::to_string(ratio));
  check(result.step == 1 && std::abs(result.learning_rate - tiny_options(0.1).schedule.at(1)) < 1e-12, "the head follows the schedule");
}

void test_loads_a_clamp_backbone() {
  clamp::TrainerOptions pretrain;
  pretrain.backbone = tiny_options(0.1).backbone;
  pretrain.projector_hidden = {16};
  pretrain.projector_out = 8;
  pretrain.seed = 11;
  clamp::Trainer trainer(pretrain);
  const auto images = labelled_images(4, 9).images;
  trainer.run(at::cat({images, images + 0.1}));  // moves the weights and running statistics off their initial values
  clamp::FineTuner step(tiny_options(0.1));
  step.load_backbone(trainer.state());
  check(at::allclose(step.features(images), trainer.features(images), 1e-6, 1e-6),
        "the loaded backbone gives the CLAMP trainer's features");

  clamp::FineTunerOptions wider = tiny_options(0.1);
  wider.backbone.widths = {8, 32};
  clamp::FineTuner other(wider);
  check_throws([&] { other.load_backbone(trainer.state()); }, "this backbone needs", "a backbone of another width");
}

void test_bad_input() {
  clamp::FineTuner step(tiny_options(0.1));
  const auto data = labelled_images(2, 1);
  check_throws([&] { step.run(data.images, data.labels.to(at::kFloat)); }, "integers", "float labels");
  check_throws([&] { step.run(data.images, data.labels.slice(0, 1)); }, "one per image", "too few labels");
  check_throws([&] { step.run(data.images, data.labels + 1); }, "[0, 4)", "a label out of range");
  check_throws([&] { step.run(data.images.repeat({1, 3, 1, 1}), data.labels); }, "3 channels", "wrong channel count");
  check_throws([&] { step.standardise(at::randn({1, 16})); }, "at least 2", "standardise on one row");
  auto options = tiny_options(-1);
  check_throws([&] { clamp::FineTuner bad(options); }, "backbone_lr_scale", "a negative scale");
  options = tiny_options(0.1);
  options.classes = 1;
  check_throws([&] { clamp::FineTuner bad(options); }, "classes >= 2", "one class");
}

}  // namespace

int main() {
  test_learns_the_task();
  test_frozen_backbone_is_untouched();
  test_backbone_rate_is_scaled();
  test_loads_a_clamp_backbone();
  test_bad_input();
  return clamp::testing::summary();
}
