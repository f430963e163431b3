// createTrainer(options) -> Promise<Trainer>; trainer.step(images, n, c, h, w) -> Promise<StepResult>.
// Construction (weight initialisation) and every step run on the compute thread; the batch is read in
// place from the caller's Float32Array.
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
  options.backbone = ResNetOptions::named(string_field(o, "backbone"));
  const std::string stem = string_field(o, "stem");
  if (stem == "imagenet") options.backbone.stem = ResNetStem::imagenet;
  else if (stem == "cifar") options.backbone.stem = ResNetStem::cifar;
  else if (stem == "small") options.backbone.stem = ResNetStem::small;
  else throw std::invalid_argument("stem must be imagenet, cifar or small, got " + stem);
  options.backbone.in_channels = static_cast<int64_t>(number_field(o, "inChannels"));
  options.projector_hidden = integer_array(o.Get("projectorHidden"), "projectorHidden");
  options.projector_out = static_cast<int64_t>(number_field(o, "projectorOut"));
  options.views = static_cast<int64_t>(number_field(o, "views"));
  options.seed = static_cast<uint64_t>(number_field(o, "seed"));
  options.loss = read_packing_loss_options(o.Get("loss"));
  const Napi::Object lars = object_value(o.Get("lars"), "lars");
  options.lars.momentum = number_field(lars, "momentum");
  options.lars.weight_decay = number_field(lars, "weightDecay");
  options.lars.eta = number_field(lars, "eta");
  const Napi::Object schedule = object_value(o.Get("schedule"), "schedule");
  options.schedule.peak_lr = number_field(schedule, "peakLr");
  options.schedule.warmup_steps = static_cast<int64_t>(number_field(schedule, "warmupSteps"));
  options.schedule.total_steps = static_cast<int64_t>(number_field(schedule, "totalSteps"));
  options.schedule.start_lr = number_field(schedule, "startLr");
  options.schedule.final_lr = number_field(schedule, "finalLr");
  options.lars.lr = options.schedule.peak_lr;
  return options;
}

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Trainer",
                       {InstanceMethod<&TrainerWrap::Step>("step"), InstanceMethod<&TrainerWrap::Features>("features"), InstanceAccessor<&TrainerWrap::StepsTaken>("stepsTaken"),
                        InstanceAccessor<&TrainerWrap::FeatureDim>("featureDim")});
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

// A job on one trainer and one batch: it keeps both alive, and the batch's memory under the tensor
// that reads it in place, until it settles.
class TrainerBatchJob : public ComputeJob {
 public:
  TrainerBatchJob(TrainerWrap* wrap, const Napi::Object& self, const Napi::TypedArray& images, std::vector<int64_t> shape)
      : wrap_(wrap), self_(Napi::Persistent(self)), images_reference_(Napi::Persistent(images)),
        images_(tensor_over(images, shape)) {}

 protected:
  TrainingStep& trainer() { return wrap_->trainer(); }
  const at::Tensor& images() const { return images_; }

 private:
  TrainerWrap* wrap_;
  Napi::ObjectReference self_;
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
