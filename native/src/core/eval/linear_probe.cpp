#include "eval/linear_probe.h"

#include <c10/core/GradMode.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace clamp {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Classifier {
  at::Tensor weight, bias;
};

void check_pair(const at::Tensor& x, const at::Tensor& y, int64_t classes, const std::string& what) {
  if (x.dim() != 2 || !at::isFloatingType(x.scalar_type())) throw std::invalid_argument(what + " features must be floating point [n, dim]");
  if (y.dim() != 1 || y.size(0) != x.size(0))
    throw std::invalid_argument(what + " needs one label per feature: " + std::to_string(x.size(0)) + " features, " +
                                std::to_string(y.numel()) + " labels");
  if (at::isFloatingType(y.scalar_type())) throw std::invalid_argument(what + " labels must be integers");
  if (x.size(0) == 0) throw std::invalid_argument(what + " has no features");
  if (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() >= classes)
    throw std::invalid_argument(what + " labels must lie in [0, " + std::to_string(classes) + ")");
}

// Mini-batch SGD with momentum on softmax cross-entropy, the gradient written out (no autograd: the
// probe is one matrix product each way).
Classifier fit(const at::Tensor& x, const at::Tensor& y, double lr, const LinearProbeOptions& o, at::Generator& generator) {
  const int64_t n = x.size(0), d = x.size(1);
  Classifier c{at::zeros({d, o.classes}, at::kFloat), at::zeros({o.classes}, at::kFloat)};
  at::Tensor weight_velocity = at::zeros_like(c.weight), bias_velocity = at::zeros_like(c.bias);
  const int64_t batches = std::max<int64_t>(1, (n + o.batch_size - 1) / o.batch_size);
  const int64_t total = o.epochs * batches;
  const at::Tensor one_hot = at::zeros({n, o.classes}, at::kFloat).scatter_(1, y.unsqueeze(1), 1.0);
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const at::Tensor order = at::randperm(n, generator, at::kLong);
    for (int64_t b = 0; b < batches; ++b, ++step) {
      const at::Tensor index = order.slice(0, b * o.batch_size, std::min(n, (b + 1) * o.batch_size));
      const at::Tensor xb = x.index_select(0, index);
      const at::Tensor probabilities = at::softmax(at::addmm(c.bias, xb, c.weight), 1);
      const at::Tensor residual = (probabilities - one_hot.index_select(0, index)) / double(index.size(0));
      const at::Tensor weight_gradient = at::mm(xb.t(), residual) + o.weight_decay * c.weight;
      const at::Tensor bias_gradient = residual.sum(0);
      const double rate = 0.5 * lr * (1 + std::cos(kPi * double(step) / double(total)));
      weight_velocity.mul_(o.momentum).add_(weight_gradient);
      bias_velocity.mul_(o.momentum).add_(bias_gradient);
      c.weight.add_(weight_velocity, -rate);
      c.bias.add_(bias_velocity, -rate);
    }
  }
  return c;
}

at::Tensor logits(const Classifier& c, const at::Tensor& x) { return at::addmm(c.bias, x, c.weight); }

double top_k(const at::Tensor& scores, const at::Tensor& y, int64_t k) {
  const at::Tensor top = std::get<1>(scores.topk(std::min<int64_t>(k, scores.size(1)), 1));
  return top.eq(y.unsqueeze(1)).any(1).to(at::kDouble).mean().item<double>();
}

}  // namespace

LinearProbeResult linear_probe(const at::Tensor& train, const at::Tensor& train_labels, const at::Tensor& test,
                               const at::Tensor& test_labels, const LinearProbeOptions& o) {
  if (o.classes < 2) throw std::invalid_argument("the linear probe needs classes >= 2");
  if (o.epochs < 1 || o.batch_size < 1) throw std::invalid_argument("the linear probe needs epochs >= 1 and batch_size >= 1");
  if (o.learning_rates.empty()) throw std::invalid_argument("the linear probe needs at least one learning rate");
  for (const double lr : o.learning_rates) {
    if (!(lr > 0) || !std::isfinite(lr)) throw std::invalid_argument("linear-probe learning rates must be finite and > 0");
  }
  if (!(o.validation_fraction > 0 && o.validation_fraction < 1)) throw std::invalid_argument("validation_fraction must lie in (0, 1)");
  if (!(o.momentum >= 0 && o.momentum < 1) || !(o.weight_decay >= 0))
    throw std::invalid_argument("the linear probe needs 0 <= momentum < 1 and weight_decay >= 0");
  check_pair(train, train_labels, o.classes, "the probe's training set");
  check_pair(test, test_labels, o.classes, "the probe's test set");
  if (test.size(1) != train.size(1))
    throw std::invalid_argument("test features have dim " + std::to_string(test.size(1)) + ", training features " +
                                std::to_string(train.size(1)));

  c10::NoGradGuard no_grad;
  // Standardised with the training features' statistics: one learning-rate grid then suits features of
  // any scale (raw pixels, ReLU features of any width).
  const at::Tensor x_all = train.to(at::kFloat), mean = x_all.mean(0, true), scale = x_all.std(0, true, true).clamp_min(1e-6);
  const at::Tensor x = (x_all - mean) / scale, x_test = (test.to(at::kFloat) - mean) / scale;
  const at::Tensor y = train_labels.to(at::kLong), y_test = test_labels.to(at::kLong);

  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t n = x.size(0);
  if (n < 2) throw std::invalid_argument("the linear probe needs at least 2 training features");
  const int64_t held_out = std::max<int64_t>(1, std::min<int64_t>(n - 1, std::llround(o.validation_fraction * double(n))));
  const at::Tensor split = at::randperm(n, generator, at::kLong);
  const at::Tensor validation_index = split.slice(0, 0, held_out), fit_index = split.slice(0, held_out);
  const at::Tensor x_fit = x.index_select(0, fit_index), y_fit = y.index_select(0, fit_index);
  const at::Tensor x_validation = x.index_select(0, validation_index), y_validation = y.index_select(0, validation_index);

  LinearProbeResult result;
  double best = -1;
  for (const double lr : o.learning_rates) {
    const double accuracy = top_k(logits(fit(x_fit, y_fit, lr, o, generator), x_validation), y_validation, 1);
    result.validation_accuracy.push_back(accuracy);
    if (accuracy > best) {  // ties keep the smaller learning rate (the sweep is in the given order)
      best = accuracy;
      result.learning_rate = lr;
    }
  }
  const Classifier final_classifier = fit(x, y, result.learning_rate, o, generator);
  result.test_logits = logits(final_classifier, x_test);
  result.top1 = top_k(result.test_logits, y_test, 1);
  result.top5 = top_k(result.test_logits, y_test, 5);
  return result;
}

}  // namespace clamp
