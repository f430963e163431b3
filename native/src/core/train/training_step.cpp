#include "train/training_step.h"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include <torch/cuda.h>

namespace clamp {
namespace {

// Seeds the generator before the modules exist, so the initial weights follow from options.seed (and
// are the same on every device: they are made on the CPU, then moved).
ResNet seeded_backbone(const TrainingStepOptions& options) {
  torch::manual_seed(options.seed);
  return ResNet(options.backbone);
}

at::Device training_device(const std::string& name) {
  at::Device device(at::kCPU);
  try {
    device = at::Device(name);
  } catch (const c10::Error&) {
    throw std::invalid_argument("device must be cpu, cuda or cuda:<index>, got " + name);
  }
  if (device.is_cuda()) {
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (count == 0) throw std::invalid_argument("device " + name + " was asked for, but this LibTorch sees no CUDA device; use --device cpu, or a CUDA build of LibTorch on a machine with a GPU");
    if (device.has_index() && device.index() >= count)
      throw std::invalid_argument("device " + name + " does not exist: " + std::to_string(count) + " CUDA device(s)");
  } else if (!device.is_cpu()) {
    throw std::invalid_argument("device must be cpu, cuda or cuda:<index>, got " + name);
  }
  return device;
}

std::string shape_of(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

}  // namespace

TrainingStep::TrainingStep(const TrainingStepOptions& options)
    : options_(options),
      device_(training_device(options.device)),
      backbone_(seeded_backbone(options)),
      projector_(ProjectorOptions{backbone_->feature_dim(), options.projector_hidden, options.projector_out}),
      steps_tensor_(torch::zeros({}, torch::kLong)) {
  if (options.views < 2) throw std::invalid_argument("views must be at least 2, got " + std::to_string(options.views));
  options.schedule.at(0);  // validates the schedule now rather than at the first step
  backbone_->to(device_);
  projector_->to(device_);
  optimiser_ = make_optimiser(ParameterSet::of_modules({{"", backbone_.ptr().get()}, {"projector.", projector_.ptr().get()}}),
                              options.optimiser);
}

at::Tensor TrainingStep::features(const at::Tensor& images) {
  if (images.dim() != 4 || images.scalar_type() != at::kFloat)
    throw std::invalid_argument("images must be float32 [n, C, H, W]");
  torch::NoGradGuard no_grad;
  backbone_->eval();
  at::Tensor out = backbone_->forward(images.to(device_, /*non_blocking=*/true)).to(at::kCPU);
  backbone_->train();
  return out;
}

StepResult TrainingStep::run(const at::Tensor& images) {
  const int64_t m = options_.views;
  if (images.dim() != 4) throw std::invalid_argument("images must be [views * batch, C, H, W], got " + std::to_string(images.dim()) + "-D");
  if (images.scalar_type() != at::kFloat) throw std::invalid_argument("images must be float32");
  if (images.size(0) % m != 0 || images.size(0) / m < 2) {
    throw std::invalid_argument(std::to_string(images.size(0)) + " images are not views * batch with views = " +
                                std::to_string(m) + " and batch >= 2");
  }
  StepResult result;
  result.step = steps_;
  result.learning_rate = options_.schedule.at(steps_);
  optimiser_->set_lr(result.learning_rate);
  backbone_->train();
  projector_->train();

  const at::Tensor embeddings = projector_->forward(backbone_->forward(images.to(device_, /*non_blocking=*/true)));
  const at::Tensor loss = packing_loss(embeddings, m, options_.loss, &result.stats, Diagnostics::pair_pass);
  optimiser_->zero_grad();
  loss.backward();
  // One reduction and one read of the result, rather than a device sync per parameter.
  std::vector<at::Tensor> norms;
  for (auto* module : {static_cast<torch::nn::Module*>(backbone_.ptr().get()), static_cast<torch::nn::Module*>(projector_.ptr().get())}) {
    for (const auto& p : module->parameters()) {
      if (p.grad().defined()) norms.push_back(p.grad().norm());
    }
  }
  result.grad_norm = norms.empty() ? 0.0 : at::stack(norms).norm().item<double>();
  optimiser_->step();
  result.loss = loss.item<double>();
  ++steps_;
  return result;
}

std::vector<NamedTensor> TrainingStep::state() {
  std::vector<NamedTensor> out;
  const auto add_module = [&out](const std::string& prefix, torch::nn::Module& module) {
    for (const auto& item : module.named_parameters(true)) out.push_back({prefix + item.key(), item.value()});
    for (const auto& item : module.named_buffers(true)) out.push_back({prefix + item.key(), item.value()});
  };
  add_module("", *backbone_);
  add_module("projector.", *projector_);
  for (const auto& item : optimiser_->state()) out.push_back({"optimizer." + item.name, item.tensor});
  steps_tensor_.fill_(steps_);
  out.push_back({"trainer.steps", steps_tensor_});
  return out;
}

void TrainingStep::load_state(const std::vector<NamedTensor>& saved) {
  std::map<std::string, at::Tensor> by_name;
  for (const auto& item : saved) by_name[item.name] = item.tensor;
  std::vector<std::string> problems;
  const std::vector<NamedTensor> live = state();
  for (const auto& item : live) {
    const auto found = by_name.find(item.name);
    if (found == by_name.end()) {
      problems.push_back(item.name + " is missing");
    } else if (found->second.sizes() != item.tensor.sizes()) {
      problems.push_back(item.name + " has shape " + shape_of(found->second) + ", the model needs " + shape_of(item.tensor));
    } else if (found->second.scalar_type() != item.tensor.scalar_type()) {
      problems.push_back(item.name + " is " + std::string(c10::toString(found->second.scalar_type())) + ", the model needs " +
                         c10::toString(item.tensor.scalar_type()));
    }
  }
  if (!problems.empty()) {
    std::string message = "the saved state does not fit this model (" + std::to_string(problems.size()) + " problem(s)): ";
    for (size_t k = 0; k < problems.size() && k < 5; ++k) message += (k ? "; " : "") + problems[k];
    if (problems.size() > 5) message += "; ...";
    throw std::invalid_argument(message);
  }
  torch::NoGradGuard no_grad;
  for (const auto& item : live) item.tensor.copy_(by_name[item.name]);
  steps_ = steps_tensor_.item<int64_t>();
}

}  // namespace clamp
