// createTrainer(options) -> Promise<Trainer>; trainer.step(images, shape) -> Promise<StepResult>;
// trainer.features(images, shape); trainer.state() -> Promise<StateEntry[]>; trainer.loadState(entries).
// Construction (weight initialisation) and every call run on the compute thread; batches and loaded
// state are read in place from the caller's typed arrays, and state() hands out snapshots without a
// further copy.
#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "addon/errors.h"
#include "core/train/training_step.h"

#include <memory>
#include <string>
#include <vector>

namespace clamp::addon {
namespace {

// The options object as lib/train/trainer.ts's schema produces it: every field present.
TrainingStepOptions read_training_options(const Napi::Object& o) {
  TrainingStepOptions options;
  options.backbone = read_backbone_options(o);
  options.projector_hidden = integer_array(o.Get("projectorHidden"), "projectorHidden");
  options.projector_out = static_cast<int64_t>(number_field(o, "projectorOut"));
  options.views = static_cast<int64_t>(number_field(o, "views"));
  options.seed = static_cast<uint64_t>(number_field(o, "seed"));
  options.loss = read_packing_loss_options(o.Get("loss"));
  const Napi::Object optimiser = object_value(o.Get("optimiser"), "optimiser");
  options.optimiser.kind = optimiser_kind_named(string_field(optimiser, "name"));
  options.optimiser.weight_decay = number_field(optimiser, "weightDecay");
  options.optimiser.momentum = number_field(optimiser, "momentum");
  options.optimiser.eta = number_field(optimiser, "eta");
  options.optimiser.nesterov = boolean_field(optimiser, "nesterov");
  options.optimiser.beta1 = number_field(optimiser, "beta1");
  options.optimiser.beta2 = number_field(optimiser, "beta2");
  options.optimiser.eps = number_field(optimiser, "eps");
  options.device = string_field(o, "device");
  const Napi::Object schedule = object_value(o.Get("schedule"), "schedule");
  options.schedule.peak_lr = number_field(schedule, "peakLr");
  options.schedule.warmup_steps = static_cast<int64_t>(number_field(schedule, "warmupSteps"));
  options.schedule.total_steps = static_cast<int64_t>(number_field(schedule, "totalSteps"));
  options.schedule.start_lr = number_field(schedule, "startLr");
  options.schedule.final_lr = number_field(schedule, "finalLr");
  options.optimiser.lr = options.schedule.peak_lr;
  return options;
}

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Trainer",
                       {InstanceMethod<&TrainerWrap::Step>("step"), InstanceMethod<&TrainerWrap::Features>("features"),
                        InstanceMethod<&TrainerWrap::State>("state"), InstanceMethod<&TrainerWrap::LoadState>("loadState"),
                        InstanceAccessor<&TrainerWrap::StepsTaken>("stepsTaken"), InstanceAccessor<&TrainerWrap::FeatureDim>("featureDim")});
  }

  // Only createTrainer makes these: info[0] is an External holding the trainer built off-thread.
  explicit TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw_type_error(info.Env(), "use createTrainer(options) to make a Trainer");
    trainer_.reset(info[0].As<Napi::External<TrainingStep>>().Data());
  }

  TrainingStep& trainer() { return *trainer_; }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Features(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value StepsTaken(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(trainer_->steps_taken())); }
  Napi::Value FeatureDim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(trainer_->backbone()->feature_dim())); }

  std::unique_ptr<TrainingStep> trainer_;
};

class CreateTrainerJob : public ComputeJob {
 public:
  explicit CreateTrainerJob(const TrainingStepOptions& options) : options_(options) {}

 protected:
  void Execute() override { trainer_ = std::make_unique<TrainingStep>(options_); }
  Napi::Value Result(Napi::Env env) override {
    return env.GetInstanceData<AddonData>()->trainer_class.New({Napi::External<TrainingStep>::New(env, trainer_.release())});
  }

 private:
  TrainingStepOptions options_;
  std::unique_ptr<TrainingStep> trainer_;
};

// A job on one trainer alone (state, loadState; the base of the batch jobs): it keeps the trainer's JavaScript object alive.
class TrainerJob : public ComputeJob {
 public:
  TrainerJob(TrainerWrap* wrap, const Napi::Object& self) : wrap_(wrap), self_(Napi::Persistent(self)) {}

 protected:
  TrainingStep& trainer() { return wrap_->trainer(); }

 private:
  TrainerWrap* wrap_;
  Napi::ObjectReference self_;
};

// A job on one trainer and one batch: it keeps both alive, and the batch's memory under the tensor
// that reads it in place, until it settles.
class TrainerBatchJob : public TrainerJob {
 public:
  TrainerBatchJob(TrainerWrap* wrap, const Napi::Object& self, const Napi::TypedArray& images, std::vector<int64_t> shape)
      : TrainerJob(wrap, self), images_reference_(Napi::Persistent(images)), images_(tensor_over(images, shape)) {}

 protected:
  const at::Tensor& images() const { return images_; }

 private:
  Napi::Reference<Napi::TypedArray> images_reference_;
  at::Tensor images_;
};

class StepJob : public TrainerBatchJob {
 public:
  using TrainerBatchJob::TrainerBatchJob;

 protected:
  void Execute() override { result_ = trainer().run(images()); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("step", double(result_.step));
    out.Set("loss", result_.loss);
    out.Set("learningRate", result_.learning_rate);
    out.Set("gradNorm", result_.grad_norm);
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("energy", result_.stats.energy);
    stats.Set("meanRadius", result_.stats.mean_radius);
    stats.Set("meanDistance", result_.stats.mean_distance);
    stats.Set("contactsPerImage", result_.stats.contacts_per_image);
    stats.Set("activity", result_.stats.activity);
    out.Set("stats", stats);
    return out;
  }

 private:
  StepResult result_;
};

class FeaturesJob : public TrainerBatchJob {
 public:
  using TrainerBatchJob::TrainerBatchJob;

 protected:
  void Execute() override { features_ = trainer().features(images()); }
  Napi::Value Result(Napi::Env env) override { return typed_array_over(env, features_); }

 private:
  at::Tensor features_;
};

const char* dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    default: throw std::invalid_argument(std::string("no JavaScript form for state of dtype ") + c10::toString(dtype));
  }
}

// Snapshots of every state tensor, on the CPU (training goes on changing the live ones).
class StateJob : public TrainerJob {
 public:
  using TrainerJob::TrainerJob;

 protected:
  void Execute() override {
    for (const auto& item : trainer().state()) snapshot_.push_back({item.name, item.tensor.detach().to(at::kCPU).clone().contiguous()});
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, snapshot_.size());
    for (size_t k = 0; k < snapshot_.size(); ++k) {
      const at::Tensor& tensor = snapshot_[k].tensor;
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", snapshot_[k].name);
      entry.Set("dtype", dtype_name(tensor.scalar_type()));
      Napi::Array shape = Napi::Array::New(env, tensor.dim());
      for (int64_t d = 0; d < tensor.dim(); ++d) shape.Set(uint32_t(d), double(tensor.size(d)));
      entry.Set("shape", shape);
      entry.Set("data", typed_array_over(env, tensor));
      out.Set(uint32_t(k), entry);
    }
    return out;
  }

 private:
  std::vector<NamedTensor> snapshot_;
};

class LoadStateJob : public TrainerJob {
 public:
  LoadStateJob(TrainerWrap* wrap, const Napi::Object& self, const Napi::Array& entries)
      : TrainerJob(wrap, self), saved_(read_state_entries(entries, references_)) {}

 protected:
  void Execute() override { trainer().load_state(saved_); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::vector<Napi::Reference<Napi::TypedArray>> references_;  // keep the arrays under the tensors alive
  std::vector<NamedTensor> saved_;
};

Napi::Value TrainerWrap::State(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    return ComputeJob::Queue(info.Env(), new StateJob(this, Value()));
  });
}

Napi::Value TrainerWrap::LoadState(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() != 1 || !info[0].IsArray()) throw_type_error(info.Env(), "loadState(entries: { name, shape, data }[])");
    return ComputeJob::Queue(info.Env(), new LoadStateJob(this, Value(), info[0].As<Napi::Array>()));
  });
}

// Reads (images: Float32Array, shape: [n, c, h, w]) and checks that they agree.
std::vector<int64_t> image_batch_shape(const Napi::CallbackInfo& info, const char* usage) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type_error(env, usage);
  const std::vector<int64_t> shape = integer_array(info[1], "shape");
  if (shape.size() != 4) throw Napi::RangeError::New(env, "shape must be [n, c, h, w]");
  int64_t count = 1;
  for (const int64_t n : shape) count *= n;
  const auto images = info[0].As<Napi::TypedArray>();
  if (count != static_cast<int64_t>(images.ElementLength()))
    throw Napi::RangeError::New(env, "images.length " + std::to_string(images.ElementLength()) + " does not match the shape");
  return shape;
}

Napi::Value TrainerWrap::Features(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const auto shape = image_batch_shape(info, "features(images: Float32Array, shape: [n, c, h, w])");
    return ComputeJob::Queue(info.Env(), new FeaturesJob(this, Value(), info[0].As<Napi::TypedArray>(), shape));
  });
}

Napi::Value TrainerWrap::Step(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const auto shape = image_batch_shape(info, "step(images: Float32Array, shape: [n, c, h, w])");
    return ComputeJob::Queue(info.Env(), new StepJob(this, Value(), info[0].As<Napi::TypedArray>(), shape));
  });
}

Napi::Value create_trainer(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsObject()) throw_type_error(info.Env(), "createTrainer(options)");
  return ComputeJob::Queue(info.Env(), new CreateTrainerJob(read_training_options(info[0].As<Napi::Object>())));
}

}  // namespace

void register_trainer(Napi::Env env, Napi::Object exports) {
  Napi::Function trainer = TrainerWrap::Define(env);
  env.GetInstanceData<AddonData>()->trainer_class = Napi::Persistent(trainer);
  exports.Set("Trainer", trainer);
  exports.Set("createTrainer", guarded<create_trainer>(env));
}

}  // namespace clamp::addon
