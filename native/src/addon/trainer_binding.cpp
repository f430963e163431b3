// createTrainer(options) -> Promise<Trainer>; trainer.step(images, shape) -> Promise<StepResult>;
// trainer.features(images, shape); trainer.state() -> Promise<StateEntry[]>; trainer.loadState(entries).
// Construction (weight initialisation) and every call run on the compute thread; batches and loaded
// state are read in place from the caller's typed arrays, and state() hands out snapshots without a
// further copy.
#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "addon/object_jobs.h"
#include "addon/errors.h"
#include "core/train/trainer.h"

#include <memory>
#include <string>
#include <vector>

namespace clamp::addon {
namespace {

// The options object as lib/train/trainer.ts's schema produces it: every field present.
TrainerOptions read_trainer_options(const Napi::Object& o) {
  TrainerOptions options;
  options.backbone = read_backbone_options(o);
  options.projector_hidden = integer_array(o.Get("projectorHidden"), "projectorHidden");
  options.projector_out = static_cast<int64_t>(number_field(o, "projectorOut"));
  options.views = static_cast<int64_t>(number_field(o, "views"));
  options.seed = static_cast<uint64_t>(number_field(o, "seed"));
  options.loss = read_packing_loss_options(o.Get("loss"));
  options.optimiser = read_optimiser_options(o.Get("optimiser"));
  options.schedule = read_schedule(o.Get("schedule"));
  options.optimiser.lr = options.schedule.peak_lr;
  options.device = string_field(o, "device");
  options.precision = string_field(o, "precision");
  options.memory_format = string_field(o, "memoryFormat");
  options.sync_batch_norm = boolean_field(o, "syncBatchNorm");
  return options;
}

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Trainer",
        {InstanceMethod<&TrainerWrap::Step>("step"), InstanceMethod<&TrainerWrap::Features>("features"),
         InstanceMethod<&TrainerWrap::State>("state"), InstanceMethod<&TrainerWrap::LoadState>("loadState"),
         InstanceMethod<&TrainerWrap::Distribute>("distribute"), InstanceMethod<&TrainerWrap::AnyRank>("anyRank"),
         InstanceMethod<&TrainerWrap::Dispose>("dispose"), InstanceAccessor<&TrainerWrap::StepsTaken>("stepsTaken"),
         InstanceAccessor<&TrainerWrap::FeatureDim>("featureDim"), InstanceAccessor<&TrainerWrap::ComputeSettingsOf>("computeSettings")});
  }

  // Only createTrainer makes these: info[0] is an External holding the trainer built off-thread.
  explicit TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw_type_error(info.Env(), "use createTrainer(options) to make a Trainer");
    trainer_.reset(info[0].As<Napi::External<Trainer>>().Data());
  }

  std::shared_ptr<Trainer> shared_target() { return trainer_.get(Env()); }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Features(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value Distribute(const Napi::CallbackInfo& info);
  Napi::Value AnyRank(const Napi::CallbackInfo& info);
  Napi::Value StepsTaken(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(shared_target()->steps_taken())); }
  Napi::Value FeatureDim(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(shared_target()->backbone()->feature_dim()));
  }
  Napi::Value ComputeSettingsOf(const Napi::CallbackInfo& info) {
    const auto trainer = shared_target();
    Napi::Object settings = Napi::Object::New(info.Env());
    settings.Set("bf16Autocast", trainer->compute_settings().bf16_autocast);
    settings.Set("channelsLast", trainer->compute_settings().channels_last);
    return settings;
  }
  // Lets go of the network, its optimiser state and its process group (GPU memory included) now, or
  // when the steps already queued have run; later calls throw.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    trainer_.dispose();
    return info.Env().Undefined();
  }

  DisposableTarget<Trainer> trainer_{"this Trainer was disposed; create another with createTrainer()"};
};

class StepJob : public ImageBatchJob<TrainerWrap> {
 public:
  using ImageBatchJob<TrainerWrap>::ImageBatchJob;

 protected:
  void Execute() override { result_ = target().run(images()); }
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

Napi::Value TrainerWrap::State(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    return ComputeJob::Queue(info.Env(), new StateSnapshotJob<TrainerWrap>(this, Value()));
  });
}

Napi::Value TrainerWrap::LoadState(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() != 1 || !info[0].IsArray()) throw_type_error(info.Env(), "loadState(entries: { name, shape, data }[])");
    return ComputeJob::Queue(
        info.Env(),
        load_state_job(this, Value(), info[0], [](Trainer& trainer, const std::vector<NamedTensor>& saved) { trainer.load_state(saved); }));
  });
}

// Joins the process group on the compute thread (the rendezvous waits for every rank) and hands it
// to the trainer, which broadcasts rank 0's weights.
class DistributeJob : public ObjectJob<TrainerWrap> {
 public:
  DistributeJob(TrainerWrap* wrap, const Napi::Object& self, CollectiveOptions options)
      : ObjectJob<TrainerWrap>(wrap, self), options_(std::move(options)) {}

 protected:
  void Execute() override { target().distribute(std::make_shared<Collective>(options_)); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  CollectiveOptions options_;
};

Napi::Value TrainerWrap::Distribute(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() != 1 || !info[0].IsObject())
      throw_type_error(info.Env(), "distribute({ masterAddr, masterPort, rank, worldSize, timeoutMs })");
    const Napi::Object o = info[0].As<Napi::Object>();
    CollectiveOptions options;
    options.master_addr = string_field(o, "masterAddr");
    options.master_port = static_cast<int64_t>(number_field(o, "masterPort"));
    options.rank = static_cast<int64_t>(number_field(o, "rank"));
    options.world_size = static_cast<int64_t>(number_field(o, "worldSize"));
    options.timeout_ms = static_cast<int64_t>(number_field(o, "timeoutMs"));
    return ComputeJob::Queue(info.Env(), new DistributeJob(this, Value(), std::move(options)));
  });
}

class AnyRankJob : public ObjectJob<TrainerWrap> {
 public:
  AnyRankJob(TrainerWrap* wrap, const Napi::Object& self, bool flag) : ObjectJob<TrainerWrap>(wrap, self), flag_(flag) {}

 protected:
  void Execute() override { flag_ = target().any_rank(flag_); }
  Napi::Value Result(Napi::Env env) override { return Napi::Boolean::New(env, flag_); }

 private:
  bool flag_;
};

Napi::Value TrainerWrap::AnyRank(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() != 1 || !info[0].IsBoolean()) throw_type_error(info.Env(), "anyRank(flag: boolean)");
    return ComputeJob::Queue(info.Env(), new AnyRankJob(this, Value(), info[0].As<Napi::Boolean>().Value()));
  });
}

Napi::Value TrainerWrap::Features(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const auto shape = image_batch_shape(info, 0, "features(images: Float32Array, shape: [n, c, h, w])");
    return ComputeJob::Queue(info.Env(), new FeaturesJob<TrainerWrap>(this, Value(), info[0].As<Napi::TypedArray>(), shape));
  });
}

Napi::Value TrainerWrap::Step(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    const auto shape = image_batch_shape(info, 0, "step(images: Float32Array, shape: [n, c, h, w])");
    return ComputeJob::Queue(info.Env(), new StepJob(this, Value(), info[0].As<Napi::TypedArray>(), shape));
  });
}

Napi::Value create_trainer(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsObject()) throw_type_error(info.Env(), "createTrainer(options)");
  return ComputeJob::Queue(info.Env(), new CreateObjectJob<Trainer, TrainerOptions>(read_trainer_options(info[0].As<Napi::Object>()),
                                                                                    &AddonData::trainer_class));
}

}  // namespace

void register_trainer(Napi::Env env, Napi::Object exports) {
  Napi::Function trainer = TrainerWrap::Define(env);
  env.GetInstanceData<AddonData>()->trainer_class = Napi::Persistent(trainer);
  exports.Set("Trainer", trainer);
  exports.Set("createTrainer", guarded<create_trainer>(env));
}

}  // namespace clamp::addon
