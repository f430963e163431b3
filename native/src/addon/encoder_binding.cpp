// createEncoder(options, state) -> Promise<Encoder>; encoder.embed(images, shape) -> Promise<Float32Array>;
// encoder.dispose(); encoder.featureDim.
// Loading and every embedding run on the compute thread. Images are read in place (uint8 [n, H, W, C]
// or float32 [n, C, H, W] in [0, 1]); the features come back as a Float32Array over the result tensor's
// own memory. Jobs share ownership of the native encoder, so dispose() frees it at once when idle, or
// as soon as the embeddings already queued have run.
#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "addon/errors.h"
#include "core/serve/encoder.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace clamp::addon {
namespace {

EncoderOptions read_encoder_options(const Napi::Object& o) {
  EncoderOptions options;
  options.backbone = read_backbone_options(o);
  options.image_size = static_cast<int64_t>(number_field(o, "imageSize"));
  options.mean = number_array(o.Get("mean"), "mean");
  options.std = number_array(o.Get("std"), "std");
  options.device = string_field(o, "device");
  options.precision = string_field(o, "precision");
  options.max_batch = static_cast<int64_t>(number_field(o, "maxBatch"));
  return options;
}

class EncoderWrap : public Napi::ObjectWrap<EncoderWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Encoder",
                       {InstanceMethod<&EncoderWrap::Embed>("embed"), InstanceMethod<&EncoderWrap::Dispose>("dispose"),
                        InstanceAccessor<&EncoderWrap::FeatureDim>("featureDim")});
  }

  // Only createEncoder makes these: info[0] is an External holding the encoder built off-thread.
  explicit EncoderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EncoderWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw_type_error(info.Env(), "use createEncoder(options, state) to make an Encoder");
    std::unique_ptr<std::shared_ptr<Encoder>> held(info[0].As<Napi::External<std::shared_ptr<Encoder>>>().Data());
    encoder_ = *held;
    feature_dim_ = encoder_->feature_dim();
  }

 private:
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    encoder_.reset();
    return info.Env().Undefined();
  }
  Napi::Value FeatureDim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(feature_dim_)); }

  std::shared_ptr<Encoder> encoder_;
  int64_t feature_dim_ = 0;
  // How long the last embed() computed: calls like it that took under half of kPollMillis keep the
  // event loop polling while they run (ComputeJob::Queue). The first call (which folds the network)
  // does not.
  std::shared_ptr<std::atomic<int64_t>> last_embed_micros_ = std::make_shared<std::atomic<int64_t>>(ComputeJob::kPollMillis * 1000);
};

class CreateEncoderJob : public ComputeJob {
 public:
  CreateEncoderJob(const EncoderOptions& options, const Napi::Value& state)
      : options_(options), saved_(read_state_entries(state, references_)) {}

 protected:
  void Execute() override {
    encoder_ = std::make_shared<Encoder>(options_);
    encoder_->load_state(saved_);
  }
  Napi::Value Result(Napi::Env env) override {
    auto* held = new std::shared_ptr<Encoder>(std::move(encoder_));
    return env.GetInstanceData<AddonData>()->encoder_class.New({Napi::External<std::shared_ptr<Encoder>>::New(env, held)});
  }

 private:
  EncoderOptions options_;
  std::vector<Napi::Reference<Napi::TypedArray>> references_;  // keep the arrays under the tensors alive
  std::vector<NamedTensor> saved_;
  std::shared_ptr<Encoder> encoder_;
};

class EmbedJob : public ComputeJob {
 public:
  EmbedJob(std::shared_ptr<Encoder> encoder, const Napi::TypedArray& images, const std::vector<int64_t>& shape, PixelLayout layout,
           std::shared_ptr<std::atomic<int64_t>> last_micros)
      : encoder_(std::move(encoder)),
        images_reference_(Napi::Persistent(images)),
        images_(tensor_over(images, shape)),
        layout_(layout),
        last_micros_(std::move(last_micros)) {}

 protected:
  void Execute() override {
    const auto start = std::chrono::steady_clock::now();
    features_ = encoder_->embed(images_, layout_);
    last_micros_->store(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
  }
  Napi::Value Result(Napi::Env env) override { return typed_array_over(env, features_); }

 private:
  std::shared_ptr<Encoder> encoder_;
  Napi::Reference<Napi::TypedArray> images_reference_;
  at::Tensor images_;
  PixelLayout layout_;
  std::shared_ptr<std::atomic<int64_t>> last_micros_;
  at::Tensor features_;
};

Napi::Value EncoderWrap::Embed(const Napi::CallbackInfo& info) {
  return call_guarded(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    const char* usage = "embed(images: Uint8Array [n, H, W, C] | Float32Array [n, C, H, W], shape)";
    if (!encoder_) throw Napi::Error::New(env, "this Encoder was disposed; load another with Encoder.load()");
    if (info.Length() != 2 || !info[0].IsTypedArray()) throw_type_error(env, usage);
    const auto images = info[0].As<Napi::TypedArray>();
    PixelLayout layout;
    if (images.TypedArrayType() == napi_uint8_array)
      layout = PixelLayout::bytes_nhwc;
    else if (images.TypedArrayType() == napi_float32_array)
      layout = PixelLayout::unit_float_nchw;
    else
      throw_type_error(env, usage);
    const std::vector<int64_t> shape = integer_array(info[1], "shape");
    if (shape.size() != 4) throw Napi::RangeError::New(env, "shape must have 4 entries");
    for (const int64_t n : shape) {
      if (n < 1) throw Napi::RangeError::New(env, "every entry of shape must be at least 1");
    }
    const bool short_call = last_embed_micros_->load() < ComputeJob::kPollMillis * 500;
    return ComputeJob::Queue(env, new EmbedJob(encoder_, images, shape, layout, last_embed_micros_), short_call);
  });
}

Napi::Value create_encoder(const Napi::CallbackInfo& info) {
  if (info.Length() != 2 || !info[0].IsObject() || !info[1].IsArray()) throw_type_error(info.Env(), "createEncoder(options, state)");
  return ComputeJob::Queue(info.Env(), new CreateEncoderJob(read_encoder_options(info[0].As<Napi::Object>()), info[1]));
}

}  // namespace

void register_encoder(Napi::Env env, Napi::Object exports) {
  Napi::Function encoder = EncoderWrap::Define(env);
  env.GetInstanceData<AddonData>()->encoder_class = Napi::Persistent(encoder);
  exports.Set("Encoder", encoder);
  exports.Set("createEncoder", guarded<create_encoder>(env));
}

}  // namespace clamp::addon
