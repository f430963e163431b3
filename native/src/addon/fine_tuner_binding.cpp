// createFineTuner(options) -> Promise<FineTuner>: a backbone and a linear classifier head trained on
// labelled images (semi-supervised fine-tuning, or with the backbone frozen the augmented linear
// probe). fineTuner.loadBackbone(entries), features(images, shape), standardise(features, dim),
// step(images, shape, labels), logits(images, shape), state(). Every call runs on the compute thread
// and reads the caller's typed arrays in place.
#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "addon/errors.h"
#include "addon/object_jobs.h"
#include "core/train/fine_tuner.h"

#include <memory>
#include <string>
#include <vector>

namespace clamp::addon {
namespace {

// The options object as lib/train/fine-tuner.ts's schema produces it: every field present.
FineTunerOptions read_fine_tuner_options(const Napi::Object& o) {
  FineTunerOptions options;
  options.backbone = read_backbone_options(o);
  options.classes = static_cast<int64_t>(number_field(o, "classes"));
  options.optimiser = read_optimiser_options(o.Get("optimiser"));
  options.schedule = read_schedule(o.Get("schedule"));
  options.optimiser.lr = options.schedule.peak_lr;
  options.backbone_lr_scale = number_field(o, "backboneLrScale");
  options.device = string_field(o, "device");
  options.seed = static_cast<uint64_t>(number_field(o, "seed"));
  return options;
}

class FineTunerWrap : public Napi::ObjectWrap<FineTunerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FineTuner",
                       {InstanceMethod<&FineTunerWrap::LoadBackbone>("loadBackbone"), InstanceMethod<&FineTunerWrap::Features>("features"),
                        InstanceMethod<&FineTunerWrap::Standardise>("standardise"), InstanceMethod<&FineTunerWrap::Step>("step"),
                        InstanceMethod<&FineTunerWrap::Logits>("logits"), InstanceMethod<&FineTunerWrap::State>("state"),
                        InstanceMethod<&FineTunerWrap::Dispose>("dispose"), InstanceAccessor<&FineTunerWrap::StepsTaken>("stepsTaken"),
                        InstanceAccessor<&FineTunerWrap::FeatureDim>("featureDim")});
  }

  // Only createFineTuner makes these: info[0] is an External holding the fine-tuner built off-thread.
  explicit FineTunerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FineTunerWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw_type_error(info.Env(), "use createFineTuner(options) to make a FineTuner");
    fine_tuner_.reset(info[0].As<Napi::External<FineTuner>>().Data());
  }

  std::shared_ptr<FineTuner> shared_target() { return fine_tuner_.get(Env()); }

 private:
  Napi::Value LoadBackbone(const Napi::CallbackInfo& info);
  Napi::Value Features(const Napi::CallbackInfo& info);
  Napi::Value Standardise(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Logits(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value StepsTaken(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(shared_target()->steps_taken())); }
  Napi::Value FeatureDim(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(shared_target()->backbone()->feature_dim()));
  }
  // Lets go of the network and its optimiser state now, or when the calls already queued have run.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    fine_tuner_.dispose();
    return info.Env().Undefined();
  }

  DisposableTarget<FineTuner> fine_tuner_{"this FineTuner was disposed; create another with createFineTuner()"};
};

class StepJob : public ImageBatchJob<FineTunerWrap> {
 public:
  StepJob(FineTunerWrap* wrap, const Napi::Object& self, const Napi::TypedArray& images, const std::vector<int64_t>& shape,
          const Napi::TypedArray& labels)
      : ImageBatchJob<FineTunerWrap>(wrap, self, images, shape),
        labels_reference_(Napi::Persistent(labels)),
        labels_(tensor_over(labels, {static_cast<int64_t>(labels.ElementLength())})) {}

 protected:
  void Execute() override { result_ = target().run(images(), labels_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("step", double(result_.step));
    out.Set("loss", result_.loss);
    out.Set("learningRate", result_.learning_rate);
    out.Set("accuracy", result_.accuracy);
    return out;
  }

 private:
  Napi::Reference<Napi::TypedArray> labels_reference_;
  at::Tensor labels_;
  FineTuneStepResult result_;
};

class LogitsJob : public ImageBatchJob<FineTunerWrap> {
 public:
  using ImageBatchJob<FineTunerWrap>::ImageBatchJob;

 protected:
  void Execute() override { logits_ = target().logits(images()); }
  Napi::Value Result(Napi::Env env) override { return typed_array_over(env, logits_); }

 private:
  at::Tensor logits_;
};

class StandardiseJob : public ObjectJob<FineTunerWrap> {
 public:
  StandardiseJob(FineTunerWrap* wrap, const Napi::Object& self, const Napi::TypedArray& features, int64_t dim)
      : ObjectJob<FineTunerWrap>(wrap, self), features_reference_(Napi::Persistent(features)), features_(rows_over(features, dim)) {}

 protected:
  void Execute() override { target().standardise(features_); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  Napi::Reference<Napi::TypedArray> features_reference_;
  at::Tensor features_;
};

Napi::Value FineTunerWrap::LoadBackbone(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() != 1 || !info[0].IsArray()) throw_type_error(info.Env(), "loadBackbone(entries: { name, shape, data }[])");
    return ComputeJob::Queue(
        info.Env(), load_state_job(this, Value(), info[0],
                                   [](FineTuner& fine_tuner, const std::vector<NamedTensor>& saved) { fine_tuner.load_backbone(saved); }));
  });
}

Napi::Value FineTunerWrap::Features(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const auto shape = image_batch_shape(info, 0, "features(images: Float32Array, shape: [n, c, h, w])");
    return ComputeJob::Queue(info.Env(), new FeaturesJob<FineTunerWrap>(this, Value(), info[0].As<Napi::TypedArray>(), shape));
  });
}

Napi::Value FineTunerWrap::Standardise(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* usage = "standardise(features: Float32Array, dim: number)";
    if (info.Length() != 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        !info[1].IsNumber())
      throw_type_error(info.Env(), usage);
    const auto features = info[0].As<Napi::TypedArray>();
    const int64_t dim = info[1].As<Napi::Number>().Int64Value();
    if (dim < 1 || static_cast<int64_t>(features.ElementLength()) % dim != 0)
      throw Napi::RangeError::New(
          info.Env(), "features.length " + std::to_string(features.ElementLength()) + " is not a multiple of dim " + std::to_string(dim));
    return ComputeJob::Queue(info.Env(), new StandardiseJob(this, Value(), features, dim));
  });
}

Napi::Value FineTunerWrap::Step(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* usage = "step(images: Float32Array, shape: [n, c, h, w], labels: Uint8Array | Int32Array)";
    const auto shape = image_batch_shape(info, 0, usage);
    if (info.Length() != 3 || !info[2].IsTypedArray()) throw_type_error(info.Env(), usage);
    const auto labels = info[2].As<Napi::TypedArray>();
    if (labels.TypedArrayType() != napi_uint8_array && labels.TypedArrayType() != napi_int32_array) throw_type_error(info.Env(), usage);
    if (static_cast<int64_t>(labels.ElementLength()) != shape[0])
      throw Napi::RangeError::New(info.Env(),
                                  std::to_string(labels.ElementLength()) + " labels for " + std::to_string(shape[0]) + " images");
    return ComputeJob::Queue(info.Env(), new StepJob(this, Value(), info[0].As<Napi::TypedArray>(), shape, labels));
  });
}

Napi::Value FineTunerWrap::Logits(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const auto shape = image_batch_shape(info, 0, "logits(images: Float32Array, shape: [n, c, h, w])");
    return ComputeJob::Queue(info.Env(), new LogitsJob(this, Value(), info[0].As<Napi::TypedArray>(), shape));
  });
}

Napi::Value FineTunerWrap::State(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    return ComputeJob::Queue(info.Env(), new StateSnapshotJob<FineTunerWrap>(this, Value()));
  });
}

Napi::Value create_fine_tuner(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsObject()) throw_type_error(info.Env(), "createFineTuner(options)");
  return ComputeJob::Queue(info.Env(), new CreateObjectJob<FineTuner, FineTunerOptions>(read_fine_tuner_options(info[0].As<Napi::Object>()),
                                                                                        &AddonData::fine_tuner_class));
}

}  // namespace

void register_fine_tuner(Napi::Env env, Napi::Object exports) {
  Napi::Function fine_tuner = FineTunerWrap::Define(env);
  env.GetInstanceData<AddonData>()->fine_tuner_class = Napi::Persistent(fine_tuner);
  exports.Set("FineTuner", fine_tuner);
  exports.Set("createFineTuner", guarded<create_fine_tuner>(env));
}

}  // namespace clamp::addon
