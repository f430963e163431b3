// The CLAMP trainer, all native: the C++ side of TypeScript's Trainer (lib/train/trainer.ts). Each
// run() is one training step: every view of the batch through the backbone and projector as one batch,
// the fused packing loss, backward, an optimiser step with the scheduled learning rate.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distributed/collective.h"
#include "runtime.h"
#include "models/projector.h"
#include "models/resnet.h"
#include "optim/optimiser.h"
#include "optim/schedule.h"
#include "loss/packing_loss.h"

namespace clamp {

// The defaults are TypeScript's (trainerOptionsSchema in lib/train/trainer.ts, lib/config/train-config.ts)
// wherever it has one (not the schedule's peak_lr and total_steps, which it requires), so that C++ callers
// get the network TypeScript users get. The addon never relies on them: it sets every field from the
// options TypeScript has resolved (read_trainer_options, addon/trainer_binding.cpp).
struct TrainerOptions {
  ResNetOptions backbone = ResNetOptions::small();
  std::vector<int64_t> projector_hidden{2048};
  int64_t projector_out = 256;
  int64_t views = 2;
  PackingLossOptions loss;
  OptimiserOptions optimiser;
  WarmupCosineSchedule schedule;
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:<index>"
  // "auto" (bf16 autocast on Ampere and newer GPUs, float32 elsewhere), "bf16" or "fp32"; the loss
  // itself always computes in float32 (runtime.h, resolve_compute_settings).
  std::string precision = "auto";
  std::string memory_format = "auto";  // "auto" (channels_last with bf16 on a GPU), "channels_last", "contiguous"
  uint64_t seed = 0;                   // initialises the weights: same seed, same threads, same losses (on CPU)
  bool sync_batch_norm = false;        // when distributed: BatchNorm statistics over every rank's batch
};

// What one run() returns (TypeScript's TrainingStepResult).
struct StepResult {
  int64_t step = 0;  // the optimiser step just taken (0-based)
  double loss = 0;
  double learning_rate = 0;
  double grad_norm = 0;  // L2 norm of all gradients before the optimiser step
  PackingStats stats;    // pair-pass diagnostics (nearest-centre accuracy is not computed per step)
};

class Trainer {
 public:
  explicit Trainer(const TrainerOptions& options);

  // images: float32 [views * batch, channels, height, width], view-major (all images' view 0 first),
  // on the CPU (copied to the training device when that is a GPU). Throws std::invalid_argument naming
  // the problem for a wrong shape, dtype or a non-finite pixel, and TrainingDiverged (train/divergence.h)
  // when the embeddings, loss or gradients stop being finite. Either way the step leaves no trace: the
  // weights, optimiser state, BatchNorm statistics and step count are as they were.
  StepResult run(const at::Tensor& images);

  // Trains data-parallel from now on: rank 0's weights and buffers are copied to every rank, each
  // run() takes this rank's share of the global batch (views * b / world_size images per view), the
  // loss is computed on the gathered global batch and gradients are summed over the ranks. Every rank
  // then takes the same steps as one process on the global batch would.
  void distribute(std::shared_ptr<Collective> collective);
  // Whether flag is true on any rank (this rank's flag when not distributed): a collective, so every
  // rank must call it at the same point, e.g. to agree on stopping after the same step.
  bool any_rank(bool flag);

  // Backbone features [n, feature_dim] on the CPU, in evaluation mode (BatchNorm running statistics),
  // without gradients: what kNN monitors and the linear probe read.
  at::Tensor features(const at::Tensor& images);

  // Everything a checkpoint holds, as live tensors: the backbone's parameters and buffers under
  // torchvision's names, "projector.*", "optimizer.<slot>.<parameter>", and "trainer.steps".
  std::vector<NamedTensor> state();
  // Copies saved values into the live tensors. Every name state() lists must be present with the same
  // shape and dtype; otherwise std::invalid_argument names the first few differences.
  void load_state(const std::vector<NamedTensor>& saved);

  ResNet& backbone() { return backbone_; }
  Projector& projector() { return projector_; }
  Optimiser& optimiser() { return *optimiser_; }
  int64_t steps_taken() const { return steps_; }
  const at::Device& device() const { return device_; }
  const ComputeSettings& compute_settings() const { return compute_; }

 private:
  TrainerOptions options_;
  at::Device device_;
  ComputeSettings compute_;
  ResNet backbone_{nullptr};
  Projector projector_{nullptr};
  std::unique_ptr<Optimiser> optimiser_;
  std::shared_ptr<Collective> collective_;  // null: one process
  at::Tensor steps_tensor_;                 // int64 scalar mirror of steps_ for state()
  int64_t steps_ = 0;
  at::Tensor staging_;  // page-locked host copy of the batch when training on a GPU, reused every step

  using BufferSnapshot = std::vector<at::Tensor>;
  // BatchNorm's running statistics (every module buffer) before a forward pass, to undo a refused step.
  BufferSnapshot snapshot_buffers();
  void restore_buffers(const BufferSnapshot& snapshot);
  bool floating_buffers_finite();

  // The batch on the training device in the training memory format: through the page-locked staging
  // buffer and a non-blocking copy when the device is a GPU.
  at::Tensor to_device(const at::Tensor& images);
};

}  // namespace clamp
