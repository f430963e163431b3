#include "train/trainer.h"

#include "compat.h"
#include "numerics/finite.h"
#include "runtime.h"
#include "train/divergence.h"

#include <torch/torch.h>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

namespace clamp {
namespace {

// Seeds the generator before the modules exist, so the initial weights follow from options.seed (and
// are the same on every device: they are made on the CPU, then moved).
ResNet seeded_backbone(const TrainerOptions& options) {
  torch::manual_seed(options.seed);
  return ResNet(options.backbone);
}

}  // namespace

Trainer::Trainer(const TrainerOptions& options)
    : options_(options),
      device_(device_named(options.device)),
      compute_(resolve_compute_settings(device_, options.precision, options.memory_format)),
      backbone_(seeded_backbone(options)),
      projector_(ProjectorOptions{backbone_->feature_dim(), options.projector_hidden, options.projector_out}),
      steps_tensor_(torch::zeros({}, torch::kLong)) {
  if (options.views < 2) throw std::invalid_argument("views must be at least 2, got " + std::to_string(options.views));
  if (device_.is_cuda() && !cuda_kernels_built()) throw std::invalid_argument(no_cuda_kernels_message("training on " + device_.str()));
  options.schedule.at(0);  // validates the schedule now rather than at the first step
  backbone_->to(device_);
  projector_->to(device_);
  // Before the optimiser sees the parameters, so its state takes the same layout.
  if (compute_.channels_last) backbone_->to_channels_last();
  optimiser_ =
      make_optimiser(ParameterSet::of_modules({{"", backbone_.ptr().get()}, {"projector.", projector_.ptr().get()}}), options.optimiser);
}

namespace {

const char* const kImageAdvice =
    "check how the batch was decoded and normalised (a division by a zero standard "
    "deviation gives NaN)";

}  // namespace

at::Tensor Trainer::features(const at::Tensor& images) {
  if (images.dim() != 4 || images.scalar_type() != at::kFloat) throw std::invalid_argument("images must be float32 [n, C, H, W]");
  require_finite(images, "images", "image", kImageAdvice);
  torch::NoGradGuard no_grad;
  backbone_->eval();
  at::Tensor out = backbone_->forward(to_device(images)).to(at::kCPU, at::kFloat);
  backbone_->train();
  return out;
}

at::Tensor Trainer::to_device(const at::Tensor& images) {
  at::Tensor on_device = images;
  if (device_.is_cuda()) {
    if (!staging_.defined() || staging_.sizes() != images.sizes()) {
      staging_ = at::empty(images.sizes(), images.options().pinned_memory(true));
    }
    // The previous step read its result back (loss.item()), so the last copy out of staging_ is done.
    staging_.copy_(images);
    on_device = staging_.to(device_, /*non_blocking=*/true);
  } else if (!device_.is_cpu()) {
    on_device = images.to(device_);
  }
  return compute_.channels_last ? on_device.contiguous(at::MemoryFormat::ChannelsLast) : on_device;
}

StepResult Trainer::run(const at::Tensor& images) {
  const int64_t m = options_.views;
  if (images.dim() != 4) throw std::invalid_argument("images must be [views * batch, C, H, W], got " + std::to_string(images.dim()) + "-D");
  if (images.scalar_type() != at::kFloat) throw std::invalid_argument("images must be float32");
  if (images.size(0) % m != 0 || images.size(0) / m < 2) {
    throw std::invalid_argument(std::to_string(images.size(0)) + " images are not views * batch with views = " + std::to_string(m) +
                                " and batch >= 2");
  }
  // A refused batch must leave no trace: checked before the forward pass touches BatchNorm's running
  // statistics. Every rank agrees first, or the others would wait for this one until the timeout.
  const bool bad_images = first_non_finite(images) >= 0;
  if (any_rank(bad_images)) {
    if (bad_images) require_finite(images, "images", "image", kImageAdvice);
    throw std::invalid_argument(
        "another rank's images hold a non-finite value (its own error names it); this rank "
        "took no step");
  }
  StepResult result;
  result.step = steps_;
  result.learning_rate = options_.schedule.at(steps_);
  optimiser_->set_lr(result.learning_rate);
  backbone_->train();
  projector_->train();
  const BufferSnapshot buffers = snapshot_buffers();
  auto diverged = [&](const std::string& what_happened) {
    restore_buffers(buffers);
    optimiser_->zero_grad();
    return TrainingDiverged(result.step, result.learning_rate, what_happened);
  };

  at::Tensor embeddings;
  {
    // Mixed precision covers the network only: the loss runs in float32 whatever it is handed.
    std::optional<compat::AutocastGuard> autocast;
    if (compute_.bf16_autocast) autocast.emplace(device_.type(), at::kBFloat16);
    embeddings = projector_->forward(backbone_->forward(to_device(images)));
  }
  // The loss computes in float32 whatever it is handed; gathering float32 also spares Gloo bfloat16.
  if (collective_) embeddings = collective_->gather_views(embeddings.to(at::kFloat), m);
  // BatchNorm normalises an overflowing batch back to finite outputs while its running variance turns
  // infinite: finite embeddings alone do not show it. Per-rank statistics, so the verdict is agreed.
  if (any_rank(!floating_buffers_finite())) throw diverged("BatchNorm's running statistics became non-finite");
  at::Tensor loss;
  try {
    loss = packing_loss(embeddings, m, options_.loss, &result.stats, Diagnostics::pair_pass);
  } catch (const std::invalid_argument& error) {
    // The shapes are the step's own, so what the loss refuses is the embeddings' values: non-finite or
    // overflowing. Its own scan of them is the only one (gathered first, so every rank agrees).
    throw diverged(std::string("the embeddings became unusable: ") + error.what());
  }
  optimiser_->zero_grad();
  loss.backward();
  std::vector<at::Tensor> parameters = backbone_->parameters();
  for (const auto& p : projector_->parameters()) parameters.push_back(p);
  if (collective_) collective_->sum_gradients(parameters);
  // One reduction and one read of the result, rather than a device sync per parameter.
  std::vector<at::Tensor> norms;
  for (const auto& p : parameters) {
    if (p.grad().defined()) norms.push_back(p.grad().norm());
  }
  result.grad_norm = norms.empty() ? 0.0 : at::stack(norms).norm().item<double>();
  // Summed gradients are the same on every rank, so all ranks refuse the step together.
  if (!std::isfinite(result.grad_norm))
    throw diverged("the gradients became non-finite (their norm is " + std::to_string(result.grad_norm) + ")");
  optimiser_->step();
  result.loss = loss.item<double>();
  ++steps_;
  return result;
}

Trainer::BufferSnapshot Trainer::snapshot_buffers() {
  BufferSnapshot snapshot;
  for (const auto& buffer : backbone_->buffers()) snapshot.push_back(buffer.clone());
  for (const auto& buffer : projector_->buffers()) snapshot.push_back(buffer.clone());
  return snapshot;
}

bool Trainer::floating_buffers_finite() {
  std::vector<at::Tensor> flat;
  for (const auto& module : {backbone_->buffers(), projector_->buffers()}) {
    for (const auto& buffer : module) {
      if (buffer.is_floating_point()) flat.push_back(buffer.flatten());
    }
  }
  // One check and one read for every buffer, rather than a device sync per BatchNorm layer.
  return flat.empty() || at::isfinite(at::cat(flat)).all().item<bool>();
}

void Trainer::restore_buffers(const BufferSnapshot& snapshot) {
  torch::NoGradGuard no_grad;
  size_t k = 0;
  for (auto& buffer : backbone_->buffers()) buffer.copy_(snapshot[k++]);
  for (auto& buffer : projector_->buffers()) buffer.copy_(snapshot[k++]);
}

void Trainer::distribute(std::shared_ptr<Collective> collective) {
  if (collective && !device_.is_cpu()) {
    throw std::invalid_argument(
        "data-parallel training runs on the CPU (c10d Gloo) only: GPU ranks need NCCL, which "
        "clamp-native does not build yet; train on one GPU, or use --device cpu");
  }
  collective_ = std::move(collective);
  backbone_->synchronise_batch_norm(collective_ && options_.sync_batch_norm ? collective_.get() : nullptr);
  if (!collective_) return;
  std::vector<NamedTensor> live;
  append_module_state("", *backbone_, live);
  append_module_state("projector.", *projector_, live);
  std::vector<at::Tensor> tensors;
  for (const auto& item : live) tensors.push_back(item.tensor);
  torch::NoGradGuard no_grad;
  collective_->broadcast_from_first(tensors);
}

bool Trainer::any_rank(bool flag) { return collective_ ? collective_->sum(flag ? 1.0 : 0.0) > 0 : flag; }

std::vector<NamedTensor> Trainer::state() {
  std::vector<NamedTensor> out;
  append_module_state("", *backbone_, out);
  append_module_state("projector.", *projector_, out);
  for (const auto& item : optimiser_->state()) out.push_back({"optimizer." + item.name, item.tensor});
  steps_tensor_.fill_(steps_);
  out.push_back({"trainer.steps", steps_tensor_});
  return out;
}

void Trainer::load_state(const std::vector<NamedTensor>& saved) {
  copy_named_state(state(), saved, "this model");
  steps_ = steps_tensor_.item<int64_t>();
}

}  // namespace clamp
